// The suspicious-samples panel (DeepDebugger's loop, docs/suspects.md): a
// feedback session kept by the server in RUN/tardis.db, its recommendations as
// cards, the user's verdicts, and the exports. The canvas marks are drawn by
// main.js from what this panel exposes (recs, verdicts, accepted, hover).

const FEATURE = {
  aum: 'AUM', loss: 'mean loss', confidence: 'confidence', variability: 'variability',
  forgetting: 'forgetting', uncertainty: 'uncertainty', rarity_pos: 'rare path',
  rarity_vel: 'rare velocity', rarity_acc: 'rare acceleration',
};

function fmtNum(v) {
  if (!Number.isFinite(v)) return '—';
  const a = Math.abs(v);
  return a >= 100 || Number.isInteger(v) ? String(Math.round(v)) : a >= 1 ? v.toFixed(2) : v.toPrecision(2);
}

// "top 0.05 %": how rare the sample's value is among the training set.
function fmtTop(p) {
  const t = 100 * (1 - p);
  return `top ${t < 0.1 ? t.toFixed(2) : t < 1 ? t.toFixed(1) : Math.round(t)} %`;
}

const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));

export class SuspectsPanel {
  // host: {api, run, className(c), swatch(c), predOf(i), truthOf(i), onChange(),
  //        onPick(i), onPlay()}
  constructor(root, host) {
    this.root = root;
    this.h = host;
    this.q = (sel) => root.querySelector(sel);
    this.session = null;
    this.sessions = [];
    this.recs = [];          // the round on screen: suspects objects from the server
    this.rankedBy = '';
    this.verdicts = new Map(); // index → 'accept' | 'reject', not yet submitted
    this.accepted = new Set(); // submitted, all rounds
    this.rejected = new Set();
    this.hover = -1;         // card under the mouse or focused
    this.trails = true;
    this.busy = false;
    this.storeKey = `tardis.suspects:${host.run.name}`;
    this.store = this._load();
    this.q('#sus-k').value = this.store.k || 20;
    this.q('#sus-trails').checked = this.trails = this.store.trails !== false;
    this._wire();
    this._render();
  }

  // ---------------------------------------------------------------- storage
  // Only the session id, K, the trails switch and unsubmitted verdicts live in
  // the browser; everything submitted is on the server.
  _load() {
    try { return JSON.parse(localStorage.getItem(this.storeKey)) || {}; } catch { return {}; }
  }
  _save() {
    const st = this.store;
    st.session = this.session ? this.session.id : null;
    st.k = this.k();
    st.trails = this.trails;
    st.drafts = st.drafts || {};
    if (this.session) {
      if (this.verdicts.size) st.drafts[this.session.id] = Object.fromEntries(this.verdicts);
      else delete st.drafts[this.session.id];
    }
    try { localStorage.setItem(this.storeKey, JSON.stringify(st)); } catch { /* private mode */ }
  }

  k() {
    const v = Math.round(+this.q('#sus-k').value);
    return Number.isFinite(v) ? Math.max(1, Math.min(200, v)) : 20;
  }

  // ---------------------------------------------------------------- server
  // Continue the session this browser used last, else the most recently touched.
  async start() {
    await this._refreshSessions();
    const want = this.sessions.find((s) => s.id === this.store.session) ||
      [...this.sessions].sort((a, b) => (a.updated < b.updated ? 1 : a.updated > b.updated ? -1 : b.id - a.id))[0];
    if (want) await this.open(want.id);
    else this._render();
  }

  async _refreshSessions() {
    try { this.sessions = (await this.h.api.suspectSessions()).sessions; }
    catch (e) { this._error(e); }
  }

  async _task(label, fn) {
    if (this.busy) return;
    this.busy = true;
    this._msg(label);
    this._render();
    try { await fn(); this._msg(''); }
    catch (e) { this._error(e); }
    finally { this.busy = false; this._render(); }
  }

  async open(id) {
    const s = this.sessions.find((x) => x.id === id);
    if (!s) return;
    this.session = s;
    this.recs = []; this.rankedBy = '';
    this.verdicts = new Map(Object.entries((this.store.drafts || {})[id] || {}).map(([k, v]) => [+k, v]));
    this._save();
    await this._task('loading the session…', async () => {
      const api = this.h.api;
      const [a, r] = await Promise.all([
        api.json(api.exportUrl(id, 'accept', 'json')),
        api.json(api.exportUrl(id, 'reject', 'json')),
      ]);
      this.accepted = new Set(a.indices);
      this.rejected = new Set(r.indices);
      await this._recommend();
    });
    this.h.onChange();
  }

  async create() {
    await this._task('creating a session…', async () => {
      const s = await this.h.api.newSuspectSession();
      this.sessions.unshift(s);
      this.session = s;
      this.accepted = new Set(); this.rejected = new Set(); this.verdicts = new Map();
      this._save();
      await this._recommend();
    });
    this.h.onChange();
  }

  async recommend() {
    if (!this.session) return this.create();
    await this._task('ranking…', () => this._recommend());
    this.h.onChange();
  }

  // The server ranks every unjudged sample; samples a previous round showed and
  // the user passed over (skipped) go to the back, so a new round shows new
  // samples — they come back only when nothing else is left.
  async _recommend() {
    const k = this.k(), skipped = this._skipped();
    const r = await this.h.api.recommend(this.session.id, Math.min(1000, k + skipped.size));
    this.session = r.session;
    this._replaceSession(r.session);
    const fresh = r.suspects.filter((x) => !skipped.has(x.index));
    this.recs = fresh.concat(r.suspects.filter((x) => skipped.has(x.index))).slice(0, k);
    this.rankedBy = r.ranked_by;
    // Verdicts on samples no longer listed were judged elsewhere (another tab): drop them.
    const listed = new Set(this.recs.map((s) => s.index));
    for (const i of [...this.verdicts.keys()]) if (!listed.has(i)) this.verdicts.delete(i);
    this._save();
  }

  // Samples shown in submitted rounds of this session and never judged.
  _skipped() {
    const id = this.session ? this.session.id : 0;
    return new Set(((this.store.skipped || {})[id]) || []);
  }

  async submit() {
    if (!this.session || !this.verdicts.size) return;
    const accept = [], reject = [];
    for (const [i, v] of this.verdicts) (v === 'accept' ? accept : reject).push(i);
    const skipped = this._skipped();
    for (const r of this.recs) if (!this.verdicts.has(r.index)) skipped.add(r.index);
    for (const i of this.verdicts.keys()) skipped.delete(i);
    await this._task('saving…', async () => {
      const r = await this.h.api.feedback(this.session.id, accept, reject);
      for (const i of accept) { this.accepted.add(i); this.rejected.delete(i); }
      for (const i of reject) { this.rejected.add(i); this.accepted.delete(i); }
      this.verdicts.clear();
      this.store.skipped = this.store.skipped || {};
      this.store.skipped[r.session.id] = [...skipped];
      this._replaceSession(r.session);
      this.session = r.session;
      this._save();
      await this._recommend(); // the next round, from all feedback so far
    });
    this.q('#sus-list').scrollTop = 0; // the new round opens at its top
    this.hover = -1;
    this.h.onChange();
  }

  _replaceSession(s) {
    const k = this.sessions.findIndex((x) => x.id === s.id);
    if (k >= 0) this.sessions[k] = s; else this.sessions.unshift(s);
  }

  // ---------------------------------------------------------------- verdicts
  setVerdict(i, v) {
    if (this.verdicts.get(i) === v || v === null) this.verdicts.delete(i);
    else this.verdicts.set(i, v);
    this._save();
    this._syncCard(i);
    this._renderCounts();
    this.h.onChange();
  }

  verdictOf(i) { return this.verdicts.get(i) || null; }

  // ---------------------------------------------------------------- DOM
  _wire() {
    const list = this.q('#sus-list');
    this.q('#sus-new').addEventListener('click', () => this.create());
    this.q('#sus-rec').addEventListener('click', () => this.recommend());
    this.q('#sus-submit').addEventListener('click', () => this.submit());
    this.q('#sus-session').addEventListener('change', (ev) => this.open(+ev.target.value));
    this.q('#sus-k').addEventListener('change', () => { this.q('#sus-k').value = this.k(); this._save(); });
    this.q('#sus-trails').addEventListener('change', (ev) => { this.trails = ev.target.checked; this._save(); this.h.onChange(); });
    this.q('#sus-play').addEventListener('click', () => {
      if (!this.trails) { this.trails = true; this.q('#sus-trails').checked = true; this._save(); }
      this.h.onPlay();
    });
    list.addEventListener('click', (ev) => {
      const card = ev.target.closest('.sc');
      if (!card) return;
      const i = +card.dataset.i;
      const b = ev.target.closest('button');
      if (b) this.setVerdict(i, b.dataset.v);
      else this.h.onPick(i);
    });
    const setHover = (i) => { if (i !== this.hover) { this.hover = i; this.h.onChange(); } };
    list.addEventListener('mouseover', (ev) => { const c = ev.target.closest('.sc'); if (c) setHover(+c.dataset.i); });
    list.addEventListener('mouseleave', () => {
      const f = document.activeElement && document.activeElement.closest && document.activeElement.closest('#sus-list .sc');
      setHover(f ? +f.dataset.i : -1);
    });
    list.addEventListener('focusin', (ev) => { const c = ev.target.closest('.sc'); if (c) setHover(+c.dataset.i); });
    list.addEventListener('focusout', (ev) => { if (!list.contains(ev.relatedTarget)) setHover(-1); });
    // a / r judge the focused card and move on to the next, so a round is a few keys.
    list.addEventListener('keydown', (ev) => {
      const card = ev.target.closest('.sc');
      if (!card || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      const i = +card.dataset.i;
      const move = (d) => {
        const cards = [...list.querySelectorAll('.sc')];
        const n = cards[cards.indexOf(card) + d];
        if (n) n.focus();
      };
      const key = ev.key.toLowerCase();
      let used = true;
      if (key === 'a') { this.setVerdict(i, 'accept'); if (this.verdicts.has(i)) move(1); }
      else if (key === 'r') { this.setVerdict(i, 'reject'); if (this.verdicts.has(i)) move(1); }
      else if (key === 'u' || key === 'backspace' || key === 'delete') this.setVerdict(i, null);
      else if (key === 'arrowdown' || key === 'j') move(1);
      else if (key === 'arrowup' || key === 'k') move(-1);
      else if (key === 'enter') this.h.onPick(i);
      else used = false;
      if (used) { ev.preventDefault(); ev.stopPropagation(); }
    });
  }

  _msg(text) { const m = this.q('#sus-msg'); m.textContent = text; m.classList.remove('err'); m.hidden = !text; }
  _error(e) {
    console.warn(e);
    const m = this.q('#sus-msg');
    m.textContent = e && e.message ? e.message : String(e);
    m.classList.add('err');
    m.hidden = false;
  }

  _render() {
    const s = this.session;
    const sel = this.q('#sus-session');
    sel.innerHTML = this.sessions.length
      ? this.sessions.map((x) => `<option value="${x.id}"${s && x.id === s.id ? ' selected' : ''}>${esc(x.name)} · ${x.accepted} ✓ ${x.rejected} ✗</option>`).join('')
      : '<option value="">no session yet</option>';
    sel.disabled = this.busy || !this.sessions.length;
    this.q('#sus-new').disabled = this.busy;
    this.q('#sus-rec').disabled = this.busy;
    this.q('#sus-rec').textContent = s ? 'Recommend' : 'Start';
    this.q('#sus-rec').title = s ? 'the next K unjudged samples, ranked from all feedback so far' : 'start a feedback session and recommend K samples';
    this.q('#sus-ranked').textContent = this.rankedBy ? `by ${this.rankedBy === 'model' ? 'feedback' : 'prior'}` : '';
    this.q('#sus-ranked').title = this.rankedBy === 'model'
      ? 'a model fitted to the accepted/rejected samples ranks this round'
      : 'the prior score (AUM, confidence) ranks this round';
    this._renderCards();
    this._renderCounts();
    const id = s ? s.id : 0;
    const base = `suspects-${this.h.run.name.replace(/[^\w.-]+/g, '_')}-s${id}-accepted`;
    for (const [sel2, fmt] of [['#sus-json', 'json'], ['#sus-csv', 'csv']]) {
      const a = this.q(sel2);
      if (s) { a.href = this.h.api.exportUrl(id, 'accept', fmt); a.download = `${base}.${fmt}`; }
      else a.removeAttribute('href');
      a.classList.toggle('off', !s);
    }
    this.q('#sus-empty').hidden = !!(s && this.recs.length) || this.busy;
    this.q('#sus-empty').textContent = !s
      ? 'Rank the training samples most likely mislabelled, judge them, and get a better ranking each round. Start a session.'
      : 'Nothing left to recommend: every sample is judged.';
  }

  _renderCounts() {
    const s = this.session;
    const c = this.q('#sus-counts');
    c.hidden = !s;
    if (!s) return;
    const marked = this.verdicts.size;
    c.innerHTML = `<span><b>${this.accepted.size}</b> accepted</span> <span><b>${this.rejected.size}</b> rejected</span> ` +
      `<span title="${s.rounds} feedback rounds saved">round <b>${s.rounds + 1}</b></span>`;
    const sub = this.q('#sus-submit');
    sub.disabled = this.busy || !marked;
    sub.textContent = marked ? `Submit ${marked}` : 'Submit';
    sub.title = 'save the verdicts and recommend the next round';
  }

  _card(r) {
    const h = this.h, i = r.index, name = r.sample ?? i; // a subset run's rows name their sample
    const img = h.run.files.train_inputs
      ? `<img src="${h.api.thumbnail(i, 'train', 2)}" alt="" loading="lazy">` : '<span class="noimg"></span>';
    const t = h.truthOf(i);
    const noisy = t !== null && t !== r.label ? ' <span class="tag" title="the clean label differs">noisy</span>' : '';
    const w = r.why && r.why[0];
    const why = w ? `<b>${FEATURE[w.feature] || w.feature}</b> ${fmtNum(w.value)} · ${fmtTop(w.percentile)}` : `score ${fmtNum(r.score)}`;
    const whyAll = (r.why || []).map((w) => `${FEATURE[w.feature] || w.feature} ${fmtNum(w.value)} (${fmtTop(w.percentile)})`).join('\n');
    return `<div class="sc" tabindex="0" role="option" data-i="${i}" title="train #${name} · score ${fmtNum(r.score)}${whyAll ? `\n${esc(whyAll)}` : ''}">` +
      `${img}<div class="sc-body"><div class="sc-t">#${name}${noisy}</div>` +
      `<div class="sc-lp">${h.swatch(r.label)}${esc(h.className(r.label))}<span class="sc-pred"></span></div>` +
      `<div class="sc-why">${why}</div></div>` +
      '<div class="sc-btns"><button data-v="accept" class="v-acc" title="suspicious: accept (a)" aria-label="accept">✓</button>' +
      '<button data-v="reject" class="v-rej" title="fine: reject (r)" aria-label="reject">✗</button></div></div>';
  }

  _renderCards() {
    const list = this.q('#sus-list');
    const had = document.activeElement && list.contains(document.activeElement);
    list.innerHTML = this.recs.map((r) => this._card(r)).join('');
    for (const r of this.recs) this._syncCard(r.index);
    this.refreshPredictions();
    if (had) { const f = list.querySelector('.sc'); if (f) f.focus(); }
  }

  _syncCard(i) {
    const card = this.q(`#sus-list .sc[data-i="${i}"]`);
    if (!card) return;
    const v = this.verdicts.get(i);
    card.classList.toggle('acc', v === 'accept');
    card.classList.toggle('rej', v === 'reject');
    card.setAttribute('aria-selected', v ? 'true' : 'false');
  }

  // Prediction at the epoch on screen (the cards follow the timeline).
  refreshPredictions() {
    for (const sp of this.root.querySelectorAll('.sc-pred')) {
      const card = sp.closest('.sc');
      const i = +card.dataset.i;
      const p = this.h.predOf(i);
      const rec = this.recs.find((r) => r.index === i);
      if (p === null) { sp.innerHTML = ''; continue; }
      const wrong = rec && p !== rec.label;
      sp.innerHTML = ` → ${this.h.swatch(p)}${esc(this.h.className(p))}${wrong ? ' <span class="bad">✗</span>' : ''}`;
    }
  }
}
