// Model repair in the UI (docs/repair.md, docs/ui.md): the diagnosis panel
// (per-label metrics and verdicts, the test confusion matrix, the layer
// probes, the heat maps of one label) from GET /api/diagnosis/{E}, and for a
// run made by `tardis repair` its rounds on the epoch timeline, a panel of
// what each round did, and the samples it chose marked on the canvas (from
// GET /api/repair). Nothing is computed here: the server serves what
// `tardis diagnose` and `tardis repair` wrote.

import { timelinePos } from './tasks.js';

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const pct = (v, d = 1) => (typeof v === 'number' ? `${(100 * v).toFixed(d)}` : '—');
// A round's guard (docs/repair.md, "The no-new-bug guard"): the worst
// held-out loss against the parent, in points, before → after its offsets.
function worstLoss(parent, acc) {
  let w = Infinity;
  (parent || []).forEach((p, l) => { if (typeof p === 'number' && typeof acc[l] === 'number') w = Math.min(w, 100 * (acc[l] - p)); });
  return w;
}
function guardCell(g) {
  if (!g) return '<td>—</td>';
  const a = worstLoss(g.acc_parent, g.acc_before || []), b = worstLoss(g.acc_parent, g.acc_after || []);
  const f = (x) => (Number.isFinite(x) ? `${x > 0 ? '+' : ''}${x.toFixed(1)}` : '—');
  return `<td class="guard${g.met ? '' : ' bad'}" data-before="${a}" data-after="${b}" ` +
    `title="offsets fitted on ${g.n_held} held-out pool samples${g.met ? '' : '; not every label within the bound'}">${f(a)} → ${f(b)}</td>`;
}
const VERDICT = {
  underfitting: { cls: 'v-under', short: 'under' },
  overfitting: { cls: 'v-over', short: 'over' },
  healthy: { cls: 'v-ok', short: 'ok' },
};
// The maps of one label, in reading order: the differential map sits after
// the two maps it is the difference of (docs/repair.md, "Heat maps").
const MAPS = [
  ['hm_correct', 'correct', 'inputs of the label predicted as it'],
  ['hm_missed', 'missed', 'inputs of the label predicted as another'],
  ['dhm_under', 'Δ under', 'correct − missed: what the label\'s correct inputs have that its missed ones lack (repair ranks pool inputs of an underfitting label by it)'],
  ['hm_wrong', 'wrong', 'inputs of other labels predicted as this one'],
  ['dhm_over', 'Δ over', 'correct − wrong: what tells the label\'s inputs from those taken for it (repair ranks an overfitting label\'s pool inputs against it)'],
  ['hm_confused', 'confused', 'inputs of the label predicted as its most-confused label'],
  ['probe_w', 'probe W', 'the linear probe\'s weights for the label'],
];
export const PICK_COLOR = '#00897b';

export class DiagnosisView {
  // ctx: {S, api, className, swatch, displayedEpoch, gotoEpoch, onChange}
  constructor(ctx) {
    this.ctx = ctx;
    this.epochs = [];        // diagnosed epochs
    this.repaired = false;
    this.cache = new Map();  // epoch → diagnosis.json (+ maps), or an Error
    this.cur = null;         // the diagnosis on screen
    this.curEpoch = null;
    this.label = null;       // the label whose heat maps are shown (null: the worst)
    this.repair = null;      // repair.json, or null
    this.repairError = '';
    this.showPicks = true;
    this.picked = [];        // per round: Int32Array of sample rows (index into the points)
    this.lastMarks = { trained: 0, chosen: 0 };
    this.loading = null;
    const $ = (id) => document.getElementById(id);
    this.el = {
      panel: $('diag-panel'), note: $('diag-note'), empty: $('diag-empty'), body: $('diag-body'),
      sum: $('diag-sum'), table: $('diag-table'), conf: $('diag-conf'), probes: $('diag-probes'),
      maps: $('diag-maps'), reload: $('diag-reload'),
      rpanel: $('repair-panel'), rsum: $('repair-sum'), rounds: $('repair-rounds'),
      rlabels: $('repair-labels'), rmarks: $('repair-marks'), tl: $('tl-repair'),
      goto: $('goto-diag'),
    };
    this.el.reload.addEventListener('click', () => this.load());
    this.el.rmarks.addEventListener('change', () => { this.showPicks = this.el.rmarks.checked; ctx.onChange(); });
    this.el.goto.addEventListener('click', () => {
      const p = this.repair ? this.el.rpanel : this.el.panel;
      p.scrollIntoView({ block: 'start', behavior: 'smooth' });
    });
  }

  // Lists the diagnoses and reads repair.json (on start and on "reload").
  async load() {
    const run = this.loading = (async () => {
      let list = { epochs: [], repaired: false };
      try { list = await this.ctx.api.json('/api/diagnosis'); } catch (e) { console.error(e); }
      this.epochs = Array.isArray(list.epochs) ? list.epochs : [];
      this.repaired = !!list.repaired;
      this.cache.clear();
      this.curEpoch = null;
      this.repair = null;
      this.repairError = '';
      if (this.repaired) {
        try { this.repair = await this.ctx.api.json('/api/repair'); } catch (e) { this.repairError = e.message; }
      }
      this.indexPicks();
      this.renderRepair();
      this.renderTimeline();
      await this.epochShown(this.ctx.displayedEpoch());
      this.ctx.onChange();
    })();
    await run;
  }

  ready() { return !!this.loading; }

  // ---- which diagnosis: the newest at or before the epoch on screen (the
  // model as it was then), else the first.
  epochFor(e) {
    if (!this.epochs.length) return null;
    let best = null;
    for (const d of this.epochs) if (e === undefined || e === null || d <= e) best = d;
    return best ?? this.epochs[0];
  }

  async epochShown(e) {
    const want = this.epochFor(e);
    this.renderRepairEpoch(e);
    if (want === null) { this.renderEmpty(); return; }
    if (want === this.curEpoch) { this.renderNote(e); return; }
    this.curEpoch = want;
    if (!this.cache.has(want)) {
      try { this.cache.set(want, await this.ctx.api.json(`/api/diagnosis/${want}`)); } catch (err) { this.cache.set(want, err); }
      if (this.curEpoch !== want) return; // the epoch moved on meanwhile
    }
    const d = this.cache.get(want);
    this.cur = d instanceof Error ? null : d;
    this.render(d);
    this.renderNote(e);
  }

  renderEmpty() {
    const { empty, body, note } = this.el;
    this.cur = null;
    body.hidden = true;
    empty.hidden = false;
    note.textContent = '';
    const parent = this.repair && this.repair.run;
    empty.innerHTML = 'No diagnosis of this run yet: run <code>tardis diagnose RUN</code> and reload.' +
      (parent ? ` The test accuracy per label before and after the repair is in the Repair panel; the parent run <code>${esc(parent)}</code> may have a diagnosis of its own.` : '');
  }

  renderNote(e) {
    const d = this.curEpoch;
    this.el.note.textContent = d === null ? '' : d === e ? `epoch ${d}` : `epoch ${d} (on screen: ${e})`;
  }

  // ---- the diagnosis panel
  render(d) {
    const { empty, body } = this.el;
    if (d instanceof Error) {
      body.hidden = true;
      empty.hidden = false;
      empty.innerHTML = `<span class="bad">${esc(d.message)}</span>`;
      return;
    }
    empty.hidden = true;
    body.hidden = false;
    const labels = d.labels || [];
    if (this.label === null || this.label >= labels.length) {
      // the label furthest from healthy: lowest train accuracy among the buggy ones
      const buggy = labels.filter((L) => L.verdict !== 'healthy');
      const worst = (buggy.length ? buggy : labels).reduce((w, L) => (w === null || (L.train_acc ?? 1) < (w.train_acc ?? 1) ? L : w), null);
      this.label = worst ? worst.label : 0;
    }
    const other = this.epochs.filter((x) => x !== d.epoch);
    this.el.sum.innerHTML = `epoch <b>${d.epoch}</b> · train <b>${pct(d.train_acc)}%</b> · test <b>${pct(d.test_acc)}%</b> · ` +
      `<b>${d.n_buggy ?? labels.filter((L) => L.verdict !== 'healthy').length}</b> buggy label${d.n_buggy === 1 ? '' : 's'}` +
      (other.length ? ` <span class="muted">· also ${other.map((x) => `<button class="link dg-ep" data-e="${x}">epoch ${x}</button>`).join(', ')}</span>` : '');
    for (const b of this.el.sum.querySelectorAll('.dg-ep')) b.addEventListener('click', () => this.ctx.gotoEpoch(+b.dataset.e));
    this.renderTable(d);
    this.renderConfusion(d);
    this.renderProbes(d);
    this.renderMaps(d);
  }

  pick(l) {
    this.label = l;
    if (this.cur) { this.renderTable(this.cur); this.renderConfusion(this.cur); this.renderMaps(this.cur); }
  }

  renderTable(d) {
    const rows = (d.labels || []).map((L) => {
      const v = VERDICT[L.verdict] || { cls: '', short: L.verdict };
      const name = L.name ?? this.ctx.className(L.label);
      return `<tr data-label="${L.label}" data-verdict="${esc(L.verdict)}" class="${L.label === this.label ? 'on' : ''}" ` +
        `title="${esc(name)}: ${L.n_train} trained-on, ${L.n_test} test samples; most often taken for ${esc(this.ctx.className(L.confused))}">` +
        `<td class="dg-name">${this.ctx.swatch(L.label)}${esc(name)}</td><td>${L.n_train}</td>` +
        `<td>${pct(L.train_acc, 0)}</td><td>${pct(L.test_acc, 0)}</td><td>${pct(L.precision, 0)}</td><td>${pct(L.recall, 0)}</td>` +
        `<td><span class="verdict ${v.cls}" title="${esc(L.verdict)}">${esc(v.short)}</span></td></tr>`;
    }).join('');
    this.el.table.innerHTML = '<table><thead><tr><th>label</th><th title="trained-on samples">n</th><th title="train accuracy (%)">train</th>' +
      '<th title="test accuracy (%)">test</th><th title="precision on the test set (%)">prec</th><th title="recall on the test set (%) = test accuracy">rec</th>' +
      `<th>verdict</th></tr></thead><tbody>${rows}</tbody></table>`;
    for (const tr of this.el.table.querySelectorAll('tbody tr')) tr.addEventListener('click', () => this.pick(+tr.dataset.label));
  }

  // The test confusion matrix as a heat grid: each row (a true label) scaled
  // by its own count, the diagonal blue, the errors red.
  renderConfusion(d) {
    const M = d.confusion || [];
    const C = M.length;
    const cells = [];
    for (let i = 0; i < C; i++) {
      const n = M[i].reduce((s, v) => s + v, 0);
      cells.push(`<div class="cf-lab${i === this.label ? ' on' : ''}" title="${esc(this.ctx.className(i))}">${this.ctx.swatch(i)}</div>`);
      for (let j = 0; j < C; j++) {
        const f = n ? M[i][j] / n : 0;
        const a = Math.sqrt(f).toFixed(3);
        const bg = f === 0 ? '#f7f8fa' : i === j ? `rgba(59,111,182,${a})` : `rgba(214,39,40,${a})`;
        cells.push(`<div class="cf${i === this.label ? ' on' : ''}" style="background:${bg}" ` +
          `title="${esc(this.ctx.className(i))} → ${esc(this.ctx.className(j))}: ${M[i][j]} of ${n} (${pct(f)}%)"></div>`);
      }
    }
    cells.push('<div></div>');
    for (let j = 0; j < C; j++) cells.push(`<div class="cf-lab" title="predicted ${esc(this.ctx.className(j))}">${this.ctx.swatch(j)}</div>`);
    this.el.conf.style.gridTemplateColumns = `14px repeat(${C}, 1fr)`;
    this.el.conf.innerHTML = cells.join('');
  }

  renderProbes(d) {
    const hm = d.heatmaps || {};
    const name = (l) => (l < 0 ? 'repr' : `layer ${l}`);
    this.el.probes.innerHTML = (d.probes || []).map((p) =>
      `<div class="pb-row${p.layer === hm.layer ? ' sat' : ''}" data-layer="${p.layer}" title="linear softmax probe on the ${p.pooled ? 'channel means of the ' : ''}${p.dim} features of ${name(p.layer)}">` +
      `<span class="pb-name">${name(p.layer)} <span class="muted">${p.dim}${p.pooled ? ' ch' : ''}</span></span>` +
      `<span class="pb-bar"><i class="tr" style="width:${pct(p.train_acc)}%"></i><i class="te" style="width:${pct(p.test_acc)}%"></i></span>` +
      `<span class="pb-v">${pct(p.train_acc, 0)} / ${pct(p.test_acc, 0)}</span>` +
      `<span class="pb-sat">${p.layer === hm.layer ? '◀ saturates' : ''}</span></div>`).join('') +
      `<div class="muted small">probe train / test accuracy (%); heat maps at ${name(hm.layer ?? -1)}${hm.dim ? ` (${hm.dim} features)` : ''}</div>`;
  }

  // The maps of the picked label: one strip each, cropped out of the PNG
  // (one row per label, one column per feature) by CSS, so every map is
  // loaded once whatever label is picked.
  renderMaps(d) {
    const C = (d.labels || []).length;
    const l = this.label;
    const L = (d.labels || [])[l] || {};
    const row = 16;
    const maps = d.maps || {};
    const want = L.verdict === 'overfitting' ? 'dhm_over' : L.verdict === 'underfitting' ? 'dhm_under' : '';
    const strips = MAPS.filter(([k]) => maps[k]).map(([k, title, help]) => {
      const t = k === 'hm_confused' ? `as ${esc(this.ctx.className(L.confused))}` : esc(title);
      return `<div class="hm-row${k === want ? ' used' : ''}" data-map="${k}" title="${esc(help)}">` +
        `<span class="hm-name">${t}</span><span class="hm-strip" style="height:${row}px">` +
        `<img src="${maps[k]}" alt="${k} of label ${l}" style="height:${row * C}px;top:${-row * l}px"></span></div>`;
    }).join('');
    this.el.maps.innerHTML = `<div class="hm-head">${this.ctx.swatch(l)}<b>${esc(L.name ?? this.ctx.className(l))}</b>` +
      ` <span class="muted small">(click a row of the table for another label)</span></div>` +
      (strips || '<div class="muted small">no heat-map PNGs in this diagnosis</div>') +
      '<div class="hm-scale muted small"><i class="neg"></i> &lt; 0 &lt; <i class="pos"></i>, each map scaled by its largest magnitude; one column per feature</div>';
    for (const img of this.el.maps.querySelectorAll('img')) {
      const mark = () => markZeroRow(img, l, C);
      if (img.complete && img.naturalWidth) mark(); else img.addEventListener('load', mark, { once: true });
    }
  }

  // ---- the repair: rounds, per-label change, the picks on the canvas
  // Training index → row of the points (a subset run's rows are named by
  // their training index; an index it does not hold is dropped).
  indexPicks() {
    const S = this.ctx.S;
    this.picked = [];
    if (!this.repair || !Array.isArray(this.repair.rounds)) return;
    const rowOf = (t) => {
      if (!S.subset) return t < S.nTrain ? t : -1;
      let lo = 0, hi = S.subset.length - 1;
      while (lo <= hi) {
        const m = (lo + hi) >> 1;
        if (S.subset[m] === t) return m;
        if (S.subset[m] < t) lo = m + 1; else hi = m - 1;
      }
      return -1;
    };
    this.picked = this.repair.rounds.map((r) => Int32Array.from((r.selected || []).map(rowOf).filter((x) => x >= 0)));
  }

  renderRepair() {
    const { rpanel, rsum, rounds, rlabels } = this.el;
    const R = this.repair;
    rpanel.hidden = !R && !this.repairError;
    this.el.goto.hidden = !R && !this.epochs.length;
    rounds.innerHTML = rlabels.innerHTML = '';
    if (this.repairError) { rsum.innerHTML = `<span class="bad">${esc(this.repairError)}</span>`; return; }
    if (!R) return;
    const legend = document.getElementById('legend');
    if (legend && !document.getElementById('lg-repair')) {
      legend.insertAdjacentHTML('beforeend', '<div class="lg-note" id="lg-repair" title="the pool samples tardis repair chose (Repair panel)">' +
        `<svg width="14" height="14"><path d="M7 2L12 11H2z" fill="${PICK_COLOR}"/></svg>chosen by repair ` +
        `<svg width="14" height="14"><path d="M7 2L12 11H2z" fill="#fff" stroke="${PICK_COLOR}" stroke-width="1.5"/></svg>chosen here</div>`);
    }
    const parent = String(R.run || '').split('/').filter(Boolean).pop() || '—';
    rsum.innerHTML = `<b>${esc(R.strategy || '?')}</b> from <code title="${esc(R.run || '')}">${esc(parent)}</code> · ` +
      `${R.n_selected ?? '?'} of ${R.budget ?? '?'} picked in ${(R.rounds || []).length} round${(R.rounds || []).length === 1 ? '' : 's'}` +
      ` · test <b>${pct(R.test_before)}%</b> → <b>${pct(R.test_after)}%</b>${R.stopped_clean ? ' · no label buggy at the end' : ''}`;
    const guarded = (R.rounds || []).some((r) => r.guard);
    if (guarded) {
      rsum.innerHTML += ` · guard: no label more than <b>${(100 * R.max_label_loss).toFixed(1)}</b> points below the parent ` +
        `on ${R.n_heldout ?? '?'} held-out pool samples`;
    }
    rounds.innerHTML = '<table><thead><tr><th>round</th><th>epochs</th><th>picks</th><th>test %</th><th>buggy</th>' +
      (guarded ? '<th title="the worst held-out loss against the parent, points: before → after the guard\'s offsets">guard</th>' : '') +
      '</tr></thead><tbody>' +
      (R.rounds || []).map((r, k) => `<tr data-round="${k + 1}" data-epoch="${r.epoch_after}" title="go to epoch ${r.epoch_after}, after round ${k + 1}">` +
        `<td><span class="rd-tag">R${k + 1}</span></td><td>${r.epoch_before} → ${r.epoch_after}</td><td>${r.n_selected ?? (r.selected || []).length}</td>` +
        `<td>${pct(r.test_before)} → ${pct(r.test_after)}</td><td>${r.n_buggy_before ?? '—'} → ${r.n_buggy_after ?? '—'}</td>` +
        (guarded ? guardCell(r.guard) : '') + '</tr>').join('') +
      '</tbody></table>';
    for (const tr of rounds.querySelectorAll('tbody tr')) tr.addEventListener('click', () => this.ctx.gotoEpoch(+tr.dataset.epoch));
    const C = Math.max((R.acc_before || []).length, (R.acc_after || []).length);
    const picks = new Array(C).fill(0);
    for (const r of R.rounds || []) (r.per_label || []).forEach((n, l) => { if (l < C) picks[l] += n; });
    rlabels.innerHTML = '<table><thead><tr><th>label</th><th>picks</th><th>before</th><th>after</th><th>change</th></tr></thead><tbody>' +
      Array.from({ length: C }, (_, l) => {
        const a = (R.acc_before || [])[l], b = (R.acc_after || [])[l];
        const dlt = typeof a === 'number' && typeof b === 'number' ? 100 * (b - a) : NaN;
        const cls = !Number.isFinite(dlt) ? '' : dlt > 0.05 ? 'up' : dlt < -0.05 ? 'down' : '';
        return `<tr data-label="${l}"><td class="dg-name">${this.ctx.swatch(l)}${esc(this.ctx.className(l))}</td><td>${picks[l]}</td>` +
          `<td>${pct(a)}</td><td>${pct(b)}</td><td class="${cls}">${Number.isFinite(dlt) ? `${dlt > 0 ? '+' : ''}${dlt.toFixed(1)}` : '—'}</td></tr>`;
      }).join('') + '</tbody></table><div class="muted small">test accuracy per label (%) before the first round and after the last</div>';
  }

  // The round of the epoch on screen in the rounds table.
  renderRepairEpoch(e) {
    for (const tr of this.el.rounds.querySelectorAll('tbody tr')) {
      const r = this.repair && this.repair.rounds[+tr.dataset.round - 1];
      tr.classList.toggle('now', !!r && e > r.epoch_before && e <= r.epoch_after);
    }
  }

  // One bracket per round over the epochs it fine-tuned, labelled with the
  // round and its test accuracy after.
  renderTimeline() {
    const box = this.el.tl;
    box.textContent = '';
    const R = this.repair;
    if (!R || !Array.isArray(R.rounds)) return;
    const epochs = this.ctx.S.epochs;
    R.rounds.forEach((r, k) => {
      const p0 = timelinePos(epochs, r.epoch_before), p1 = timelinePos(epochs, r.epoch_after);
      if (p0 === null || p1 === null) return;
      const b = document.createElement('button');
      b.className = 'tl-round';
      b.style.left = `${100 * p0}%`;
      b.style.width = `${Math.max(0, 100 * (p1 - p0))}%`;
      b.dataset.round = k + 1;
      b.title = `repair round ${k + 1}: ${r.n_selected ?? (r.selected || []).length} pool samples chosen at epoch ${r.epoch_before}, ` +
        `fine-tuned to epoch ${r.epoch_after}; test accuracy ${pct(r.test_before)}% → ${pct(r.test_after)}%, ` +
        `buggy labels ${r.n_buggy_before ?? '—'} → ${r.n_buggy_after ?? '—'}`;
      b.setAttribute('aria-label', `repair round ${k + 1}`);
      b.innerHTML = `<span>R${k + 1} · ${pct(r.test_after)}%</span>`;
      b.addEventListener('click', () => this.ctx.gotoEpoch(r.epoch_after));
      box.appendChild(b);
    });
  }

  // The picks to mark at epoch e: those of every round chosen before e
  // (trained on by then: filled) and those chosen at e (the next round's,
  // not trained on yet: hollow).
  picksAt(e) {
    const out = { trained: [], chosen: [] };
    if (!this.repair || !this.showPicks || e === undefined) return out;
    this.repair.rounds.forEach((r, k) => {
      if (r.epoch_before < e) out.trained.push(this.picked[k]);
      else if (r.epoch_before === e) out.chosen.push(this.picked[k]);
    });
    return out;
  }
}

// A map whose row is pure white is zero for the label: the set it averages
// is empty (e.g. "correct" for a label never predicted right). Said in
// words, or the strip reads as an image that failed to load.
function markZeroRow(img, l, C) {
  const w = img.naturalWidth, h = img.naturalHeight;
  if (!w || !h || !C) return;
  const c = document.createElement('canvas');
  c.width = w; c.height = 1;
  const g = c.getContext('2d', { willReadFrequently: true });
  g.imageSmoothingEnabled = false;
  g.drawImage(img, 0, Math.floor(((l + 0.5) * h) / C), w, 1, 0, 0, w, 1);
  const px = g.getImageData(0, 0, w, 1).data;
  let zero = true;
  // Pure white only where |v| < 1/510 of the map's largest magnitude.
  for (let k = 0; k < px.length && zero; k += 4) zero = px[k] === 255 && px[k + 1] === 255 && px[k + 2] === 255;
  const strip = img.parentElement;
  strip.classList.toggle('zero', zero);
  strip.dataset.zero = zero ? 'all zero (an empty set)' : '';
}

// Draws the picks on the overlay: a triangle on top of each point (filled:
// trained on by the epoch on screen; hollow: chosen at this epoch for the
// next round). toScreen(i) → [sx, sy] or null. Returns the counts drawn.
export function drawPicks(ctx, picks, toScreen) {
  const tri = (lists, r) => {
    let n = 0;
    ctx.beginPath();
    for (const rows of lists) {
      for (const i of rows) {
        const p = toScreen(i);
        if (!p) continue;
        const [sx, sy] = p;
        ctx.moveTo(sx, sy - r); ctx.lineTo(sx + 0.87 * r, sy + 0.5 * r); ctx.lineTo(sx - 0.87 * r, sy + 0.5 * r); ctx.closePath();
        n++;
      }
    }
    return n;
  };
  ctx.lineJoin = 'miter';
  const trained = tri(picks.trained, 5.5);
  ctx.fillStyle = 'rgba(0,137,123,0.75)'; ctx.fill();
  ctx.strokeStyle = '#fff'; ctx.lineWidth = 1.2; ctx.stroke();
  const chosen = tri(picks.chosen, 6);
  ctx.strokeStyle = '#fff'; ctx.lineWidth = 3.4; ctx.stroke();
  ctx.strokeStyle = PICK_COLOR; ctx.lineWidth = 1.6; ctx.stroke();
  return { trained, chosen };
}
