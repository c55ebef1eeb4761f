// Thin wrappers over the HTTP API of `tardis serve` (docs/api.md).

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function checked(path, r) {
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    try { msg = (await r.json()).error || msg; } catch { /* not JSON */ }
    throw new ApiError(r.status, `${path}: ${msg}`);
  }
  return r;
}

// The server fills this start's token into the page (docs/api.md,
// "Security"); requests that change state must send it back.
const TOKEN = document.querySelector('meta[name="tardis-token"]')?.content || '';
const TOKEN_HEADERS = TOKEN ? { 'X-Tardis-Token': TOKEN } : {};

async function get(path) {
  return checked(path, await fetch(path, { headers: TOKEN_HEADERS }));
}

// The suspects routes answer 503 with Retry-After while the server computes
// the features (docs/api.md): wait and ask again.
// `serve --follow` on a run not started yet answers the same way (onWait: told each time).
async function getWhenReady(path, onWait) {
  for (;;) {
    const r = await fetch(path, { headers: TOKEN_HEADERS });
    const wait = r.status === 503 ? Number(r.headers.get('Retry-After')) : NaN;
    if (!(wait >= 0)) return checked(path, r);
    if (onWait) onWait();
    await new Promise((done) => setTimeout(done, 1000 * Math.min(Math.max(wait, 0.2), 10)));
  }
}

// POST is accepted only under /api/suspects/ (docs/api.md).
async function post(path, body) {
  const r = await fetch(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...TOKEN_HEADERS },
    body: JSON.stringify(body),
  });
  return (await checked(path, r)).json();
}

function withQuery(path, q) {
  const parts = Object.entries(q)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`);
  return parts.length ? `${path}?${parts.join('&')}` : path;
}

export const api = {
  method: null, // projection method for every request; null = the server's default

  json(path, q = {}) {
    return get(withQuery(path, q)).then((r) => r.json());
  },
  async binary(path, q, Type) {
    const r = await get(withQuery(path, q));
    return new Type(await r.arrayBuffer());
  },
  // Like binary() but answers null on 404 (optional files).
  async optional(path, q, Type) {
    try {
      return await this.binary(path, q, Type);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return null;
      throw e;
    }
  },

  run(onWait) { return getWhenReady('/api/run', onWait).then((r) => r.json()); },
  epochs() { return this.json('/api/epochs', { method: this.method }); },
  async quality() {
    try { return await this.json('/api/quality', { method: this.method }); }
    catch (e) { if (e.status === 404) return null; throw e; }
  },
  labels(split) { return this.optional('/api/labels', { split }, Uint8Array); },
  embedding(e, split) {
    return this.optional(`/api/epochs/${e}/embedding`, { split, method: this.method }, Float32Array);
  },
  confidence(e, split) {
    return this.optional(`/api/epochs/${e}/confidence`, { split }, Float32Array);
  },
  loss(e, split) {
    return this.optional(`/api/epochs/${e}/loss`, { split }, Float32Array);
  },
  recordedLoss(e) {
    return this.optional(`/api/epochs/${e}/recorded_loss`, {}, Float32Array);
  },
  predictions(e, split) {
    return this.optional(`/api/epochs/${e}/predictions`, { split }, Uint8Array);
  },
  async territory(e) {
    try { return await this.json(`/api/epochs/${e}/territory`, { method: this.method }); }
    catch (err) { if (err.status === 404) return null; throw err; }
  },
  territoryPng(e, size) {
    return withQuery(`/api/epochs/${e}/territory.png`, { size, method: this.method });
  },
  territoryViewPng(e, ext, w, h) {
    const view = ext.map((v) => v.toPrecision(7)).join(',');
    return withQuery(`/api/epochs/${e}/territory.png`, { view, w, h, method: this.method });
  },
  neighbors(i, split, epoch, k) {
    return this.json(`/api/samples/${i}/neighbors`, { split, epoch, k, method: this.method });
  },
  sample(i, split, epoch) {
    return this.json(`/api/samples/${i}`, { split, epoch, method: this.method });
  },
  thumbnail(i, split, scale = 4) {
    return withQuery(`/api/samples/${i}/thumbnail.png`, { split, scale });
  },
  filter(q) { return this.json('/api/filter', q); },
  // A subset run's training index of each recorded row (docs/api.md).
  subset() { return this.binary('/api/subset', {}, Int32Array); },

  // Suspicious samples and their feedback sessions (kept in RUN/tardis.db).
  suspectSessions() { return this.json('/api/suspects/sessions'); },
  // The server wants a JSON object even when no name is given.
  newSuspectSession(name) { return post('/api/suspects/sessions', name ? { name } : {}); },
  async recommend(id, k) {
    const path = withQuery(`/api/suspects/sessions/${id}/recommend`, { k });
    return (await getWhenReady(path)).json();
  },
  feedback(id, accept, reject) { return post(`/api/suspects/sessions/${id}/feedback`, { accept, reject }); },
  exportUrl(id, verdict, format) {
    return withQuery(`/api/suspects/sessions/${id}/export`, { verdict, format });
  },
};
