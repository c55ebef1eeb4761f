// tardis web UI: wires the API, the canvas, the timeline, filters and panels.

import { api } from './api.js';
import { Scatter, GridIndex } from './scatter.js';
import { lineChart } from './charts.js';
import { classColor } from './colors.js';
import { qualityPanel } from './quality.js';
import { parseIndexList } from './filters.js';
import { SuspectsPanel } from './suspects.js';
import { TasksView } from './tasks.js';
import { AlertsView } from './alerts.js';
import { DiagnosisView, drawPicks } from './diagnosis.js';
import { ViewTerritory } from './viewterr.js';
import { ComparePane, countChanged } from './compare.js';
import { exportSvg } from './svgexport.js';
import { colorIndices, PALETTE, CLASS_PALETTE, MODES, RAMP_CSS, lossTop } from './colorby.js';

const $ = (id) => document.getElementById(id);
const NONE = 255; // "unknown" in the label / prediction / truth arrays

const S = {
  run: null, classes: [], nTrain: 0, nTest: 0, N: 0,
  epochInfo: [],      // /api/epochs entries
  epochs: [],         // projected epoch numbers = slider positions
  loading: new Map(), // epoch → Promise
  data: new Map(),    // epoch → {pos, pred, terr}
  label: null, truth: null,
  split: 'both',
  tpos: 0, target: 0, playing: false, speed: 1,
  filter: { label: '', pred: '', mis: '', noisy: '', idx: null, hide: false, cmin: '', cmax: '' },
  filterVersion: 0,
  selected: -1, selInfo: null, hover: -1,
  quality: null,
  userView: false,
  liveAvail: false,   // the server draws new epochs as they land (/api/run "follow")
  follow: false,      // "live" on: the view follows the newest drawn epoch
  rev: new Map(),     // epoch → times its projection was replaced (cache-busting)
  drafts: new Set(),  // epochs drawn as live drafts, not fitted yet (docs/vis-format.md)
  curExtent: null,    // extent of the frame on screen (interpolated between epochs)
  markNoisy: true,    // draw × on the samples whose label is not the clean one
  colorBy: 'class',   // colorby.js MODES
  conf: new Map(),    // epoch → Float32Array [N] confidences (colour-by confidence)
};

let scatter, grid = new GridIndex(), gridKey = '';
let sus = null;     // the suspicious-samples panel
let cmp = null;     // the compare view's second pane (compare.js)
let tasks = null, alerts = null; // continual-learning and alert views (tasks.js, alerts.js)
let diag = null; // diagnosis and repair (diagnosis.js)
const extraFilters = () => [tasks, alerts].filter((x) => x && x.active());
let lists = null, listsKey = '';
let cur = null;    // positions of the frame on screen (an epoch's array or interp)
let interp = null; // interpolation buffer
let curLerp = null; // {a, b, t} when cur is interp: the blend WebGL draws itself
let projections = 0; // projection events received (for the test)
let raf = 0, lastFrame = 0, dirtyTerritory = true, dirtyPoints = true;
const viewTerr = new ViewTerritory(api, () => { dirtyTerritory = true; invalidate(); });
const frameTimes = [];
const drawTimes = [];

// ---------------------------------------------------------------- helpers
const isTest = (g) => g >= S.nTrain;
const localIndex = (g) => (isTest(g) ? g - S.nTrain : g);
// What a person calls sample li of a split: a subset run's rows are named by
// their training index (docs/run-format.md#subset-runs).
const sampleName = (split, li) => `${split} #${split === 'train' && S.subset ? S.subset[li] : li}`;
const splitOf = (g) => (isTest(g) ? 'test' : 'train');
const className = (c) => (c === NONE || c === null || c === undefined ? '—' : S.classes[c] ?? String(c));
const dispIdx = () => Math.max(0, Math.min(S.epochs.length - 1, Math.round(S.tpos)));
const dispEpoch = () => S.epochs[dispIdx()];
const fmtInt = (n) => n.toLocaleString('en-US');

function swatch(c) {
  return `<i class="sw" style="background:${c === NONE ? '#bbb' : classColor(c)}"></i>`;
}

function invalidate() {
  if (!raf) raf = requestAnimationFrame(frame);
}

function showMessage(text) {
  const m = $('message');
  m.hidden = !text;
  m.textContent = text || '';
}

// ---------------------------------------------------------------- loading
function boundsOf(pos) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (let k = 0; k < pos.length; k += 2) {
    const x = pos[k], y = pos[k + 1];
    if (!Number.isFinite(x)) continue;
    if (x < x0) x0 = x; if (x > x1) x1 = x;
    if (y < y0) y0 = y; if (y > y1) y1 = y;
  }
  if (!(x1 >= x0)) return [-1, -1, 1, 1];
  const p = 0.1 * Math.max(x1 - x0, y1 - y0, 1e-6);
  return [x0 - p, y0 - p, x1 + p, y1 + p];
}

async function loadEpoch(e) {
  if (S.loading.has(e)) return S.loading.get(e);
  const rev = S.rev.get(e);
  const info = S.epochInfo.find((x) => x.epoch === e) || {};
  const p = (async () => {
    const wantTest = S.nTest > 0;
    const [tr, te, ptr, pte, terr] = await Promise.all([
      api.embedding(e, 'train'),
      wantTest ? api.embedding(e, 'test') : null,
      api.predictions(e, 'train'),
      wantTest && info.has_test ? api.predictions(e, 'test') : null,
      api.territory(e),
    ]);
    if (!tr) throw new Error(`epoch ${e} has no embedding`);
    const pos = new Float32Array(2 * S.N).fill(NaN);
    pos.set(tr.subarray(0, 2 * S.nTrain), 0);
    if (te) pos.set(te.subarray(0, 2 * S.nTest), 2 * S.nTrain);
    const pred = new Uint8Array(S.N).fill(NONE);
    if (ptr) pred.set(ptr.subarray(0, S.nTrain), 0);
    if (pte) pred.set(pte.subarray(0, S.nTest), S.nTrain);
    let t = null;
    if (terr) {
      const img = new Image();
      // A replaced projection gets a new URL: the page's image cache keeps the old one.
      img.src = api.territoryPng(e, 1024) + (rev ? `&rev=${rev}` : '');
      try { await img.decode(); t = { extent: terr.extent, img }; } catch { t = null; }
    }
    // The epoch's canvas extent: its territory's, else the points' box + 10 %.
    const extent = terr ? terr.extent : boundsOf(pos);
    const d = { epoch: e, pos, pred, terr: t, extent };
    if (S.loading.get(e) !== p) return S.data.get(e) || d; // replaced again meanwhile
    S.data.set(e, d);
    if (S.epochs[dispIdx()] === e) listsKey = ''; // new positions: rebuild lists and grid
    // Redraw only for an epoch the frame uses (at a million points a redraw
    // per epoch loaded in the background is most of the loading's main-thread time).
    const k = S.epochs.indexOf(e);
    if (Math.abs(k - S.tpos) < 1 || k === Math.round(S.target) || (cmp && cmp.on)) dirtyTerritory = true;
    invalidate();
    return d;
  })();
  S.loading.set(e, p);
  p.catch((err) => { if (S.loading.get(e) === p) S.loading.delete(e); console.error(err); });
  return p;
}

// The live projector drew epoch e again (a draft redone from its predecessor):
// fetch it anew if the page has it; the old data stays on screen until then.
function reloadEpoch(e) {
  if (!S.loading.has(e) && !S.data.has(e)) return;
  S.rev.set(e, (S.rev.get(e) || 0) + 1);
  S.loading.delete(e);
  loadEpoch(e).catch(() => {});
}

// Load the epoch on screen first, then the rest a few at a time.
async function loadAll(first) {
  if (first !== undefined) await loadEpoch(first).catch(() => {});
  const pending = S.epochs.filter((e) => !S.loading.has(e));
  const workers = Array.from({ length: 3 }, async () => {
    while (pending.length) await loadEpoch(pending.shift()).catch(() => {});
  });
  await Promise.all(workers);
}

async function refreshEpochs() {
  const r = await api.epochs();
  S.epochInfo = r.epochs;
  // metrics.json exists exactly when some epoch has quality; skip the 404 otherwise.
  S.quality = r.epochs.some((x) => x.quality) ? await api.quality().catch(() => null) : null;
  const before = S.epochs.length ? dispEpoch() : null;
  const beforeIdx = dispIdx();
  // The epoch the view is moving to (the one chosen by hand, mid-motion).
  const aimed = S.epochs.length ? S.epochs[Math.round(S.target)] : null;
  const wasAtEnd = S.epochs.length === 0 || S.target >= S.epochs.length - 1;
  S.epochs = r.epochs.filter((x) => x.projected).map((x) => x.epoch);
  S.drafts = new Set(r.epochs.filter((x) => x.projected && x.draft).map((x) => x.epoch));
  const slider = $('epoch-slider');
  slider.max = Math.max(0, S.epochs.length - 1);
  renderTicks();
  if (before === null) {
    S.tpos = S.target = Math.max(0, S.epochs.length - 1); // first projection(s): open on the newest
  } else {
    const k = S.epochs.indexOf(before), kAimed = S.epochs.indexOf(aimed);
    // With the live toggle, it decides; without it, follow when the newest was on screen.
    const follow = S.liveAvail ? S.follow : wasAtEnd && !S.playing;
    // The same epochs stay on screen and aimed at (back-filled ones may go
    // before them): a motion under way goes on from where it is, to the
    // newest when following, else to the epoch it was going to.
    if (k >= 0) S.tpos = Math.max(0, S.tpos + k - beforeIdx);
    if (follow && S.epochs.length) S.target = S.epochs.length - 1;
    else if (kAimed >= 0) S.target = S.playing ? Math.round(S.tpos) : kAimed;
    else if (k >= 0) S.target = k;
  }
  renderCharts();
  renderQuality();
  if (!S.epochs.length) showMessage(waitingText(r));
  else showMessage('');
  loadAll(S.epochs[Math.round(S.target)]);
  invalidate();
}

// What an empty canvas is waiting for; a following server draws by itself.
function waitingText(r) {
  const n = S.epochInfo.length;
  if (S.liveAvail) return n ? `waiting for the first epoch… (${n} recorded, drawing)` : 'waiting for the first epoch…';
  return n ? `${n} epochs recorded, none projected yet with "${r.method}". Run: tardis project RUN`
    : 'No epochs recorded yet. Waiting for training…';
}

// ---------------------------------------------------------------- filters
function readFilters() {
  const f = S.filter;
  f.label = $('f-label').value;
  f.pred = $('f-pred').value;
  f.mis = $('f-mis').value;
  f.noisy = $('f-noisy').value;
  f.hide = $('f-hide').checked;
  const bound = (id) => { const v = $(id).value.trim(); return v === '' || !Number.isFinite(+v) ? '' : +v; };
  f.cmin = bound('f-cmin');
  f.cmax = bound('f-cmax');
  const parsed = parseIndexList($('f-idx').value, S);
  $('f-idx').classList.toggle('bad', !!parsed.error);
  $('f-idx').title = parsed.error || '';
  f.idx = parsed.mask;
  S.filterVersion++;
  saveUrl();
  invalidate();
}

// ---------------------------------------------------------------- URL state
// ?epoch=&sel=&label=&pred=&mis=&noisy=&idx=&hide=1&color= — the view on
// screen, so that a link (or a reload) opens the same view. Written with
// replaceState on every change (no history entries); read once at start.
let urlReady = false;
function saveUrl() {
  if (!urlReady) return;
  const q = new URLSearchParams(location.search);
  const f = S.filter;
  const set = (k, v) => (v === '' || v === null || v === undefined ? q.delete(k) : q.set(k, v));
  set('epoch', S.epochs.length ? dispEpoch() : '');
  set('sel', S.selected >= 0 ? (isTest(S.selected) ? `t:${localIndex(S.selected)}` : String(S.selected)) : '');
  set('label', f.label); set('pred', f.pred); set('mis', f.mis); set('noisy', f.noisy);
  set('idx', $('f-idx').value.trim());
  set('hide', f.hide ? '1' : '');
  set('cmin', f.cmin); set('cmax', f.cmax);
  set('color', S.colorBy !== 'class' ? S.colorBy : '');
  set('cmp', cmp && cmp.on ? cmp.epoch : '');
  const s = q.toString();
  history.replaceState(null, '', s ? `?${s}` : location.pathname);
}

// Applies the URL's state; returns the epoch index to open at, or -1.
function loadUrl() {
  const q = new URLSearchParams(location.search);
  for (const [k, id] of [['label', 'f-label'], ['pred', 'f-pred'], ['mis', 'f-mis'], ['noisy', 'f-noisy']]) {
    const v = q.get(k);
    if (v !== null && [...$(id).options].some((o) => o.value === v)) $(id).value = v;
  }
  if (q.get('idx')) $('f-idx').value = q.get('idx');
  if (q.get('hide') === '1') $('f-hide').checked = true;
  for (const k of ['cmin', 'cmax']) if (q.get(k) !== null && Number.isFinite(+q.get(k))) $(`f-${k}`).value = q.get(k);
  if (q.get('color')) setColorBy(q.get('color'));
  const sel = q.get('sel');
  if (sel) {
    const m = /^(t:)?(\d+)$/.exec(sel);
    const g = m ? (m[1] ? S.nTrain + +m[2] : +m[2]) : -1;
    if (m && (m[1] ? +m[2] < S.nTest : +m[2] < S.nTrain)) S.urlSelect = g;
  }
  if (q.get('cmp') !== null && S.epochs.includes(+q.get('cmp'))) S.urlCmp = +q.get('cmp');
  const e = q.has('epoch') ? S.epochs.indexOf(+q.get('epoch')) : -1;
  return e;
}

function filterActive() {
  const f = S.filter;
  return f.label !== '' || f.pred !== '' || f.mis !== '' || f.noisy !== '' || !!f.idx ||
    f.cmin !== '' || f.cmax !== '' || extraFilters().length > 0;
}

function matches(i, pred, epoch) {
  const f = S.filter, l = S.label[i];
  if (f.label !== '' && l !== +f.label) return false;
  if (f.pred !== '' && (!pred || pred[i] !== +f.pred)) return false;
  if (f.mis !== '') {
    if (l === NONE || !pred || pred[i] === NONE) return false;
    if ((pred[i] !== l) !== (f.mis === '1')) return false;
  }
  if (f.noisy !== '') {
    const t = S.truth ? S.truth[i] : NONE;
    if (t === NONE) return false;
    if ((t !== l) !== (f.noisy === '1')) return false;
  }
  if (f.idx && !f.idx[i]) return false;
  if (f.cmin !== '' || f.cmax !== '') {
    const c = S.conf.get(epoch);
    if (!c) { loadConfidence(epoch); return false; }
    if (!(c[i] >= (f.cmin === '' ? -Infinity : f.cmin) && c[i] <= (f.cmax === '' ? Infinity : f.cmax))) return false;
  }
  for (const x of extraFilters()) if (!x.match(i, epoch)) return false;
  return true;
}

// Draw lists for one epoch: dimmed (filtered out), correct, mispredicted.
// count: write the counts under the filters (the main pane's lists only).
function buildLists(d, count = true) {
  const N = S.N, pred = d.pred, label = S.label;
  const dim = new Int32Array(N), ok = new Int32Array(N), bad = new Int32Array(N);
  let nd = 0, no = 0, nb = 0, shownTotal = 0;
  const active = filterActive();
  const lo = S.split === 'test' ? S.nTrain : 0;
  const hi = S.split === 'train' ? S.nTrain : N;
  for (let i = lo; i < hi; i++) {
    if (Number.isNaN(d.pos[2 * i])) continue;
    shownTotal++;
    if (active && !matches(i, pred, d.epoch)) {
      if (!S.filter.hide) dim[nd++] = i;
      continue;
    }
    const l = label[i], p = pred[i];
    if (l !== NONE && p !== NONE && l !== p) bad[nb++] = i;
    else ok[no++] = i;
  }
  const L = { dim: dim.subarray(0, nd), ok: ok.subarray(0, no), bad: bad.subarray(0, nb), shownTotal };
  L.active = new Int32Array(no + nb);
  L.active.set(L.ok, 0);
  L.active.set(L.bad, no);
  if (count) $('f-count').textContent = active
    ? `${fmtInt(no + nb)} of ${fmtInt(shownTotal)} match`
    : `${fmtInt(shownTotal)} samples · ${fmtInt(nb)} misclassified`;
  return L;
}

// ---------------------------------------------------------------- frame
function smooth(t) { return t * t * (3 - 2 * t); }

function frame(now) {
  raf = 0;
  const dt = lastFrame ? Math.min(100, now - lastFrame) : 16;
  lastFrame = now;
  const n = S.epochs.length;
  if (!n || !S.label) { scatter.overlayContext(); return; }
  const last = n - 1;
  const prevT = S.tpos;

  // Only move into an epoch whose data is there, so motion never shows holes
  // (loadEpoch redraws when it arrives).
  const canEnter = (dir) => S.data.has(S.epochs[dir > 0 ? Math.min(last, Math.floor(S.tpos) + 1) : Math.max(0, Math.ceil(S.tpos) - 1)]);
  if (S.playing) {
    if (canEnter(1)) S.tpos = Math.min(last, S.tpos + (dt / 1000) * S.speed);
    S.target = Math.round(S.tpos);
    if (S.tpos >= last) { S.tpos = S.target = last; setPlaying(false); }
  } else if (S.tpos !== S.target) {
    const diff = S.target - S.tpos;
    const step = (dt / 1000) * 3.5 * Math.max(1, Math.abs(diff));
    if (canEnter(Math.sign(diff))) S.tpos = Math.abs(diff) <= step ? S.target : S.tpos + Math.sign(diff) * step;
  }

  const a = Math.floor(S.tpos), b = Math.min(last, a + 1);
  const dA = S.data.get(S.epochs[a]);
  const dB = S.data.get(S.epochs[b]) || dA;
  const dShow = S.data.get(S.epochs[dispIdx()]) || dA;
  if (!dA || !dShow) { scatter.overlayContext(); setTimeout(invalidate, 50); return; }
  const t = smooth(S.tpos - a);
  // Unless the user zoomed or panned, the camera follows the epochs' extents, so
  // every epoch fills the canvas (DVI's scales differ from epoch to epoch).
  S.curExtent = dA.extent.map((v, j) => v + (dB.extent[j] - v) * t);
  if (!S.userView) {
    const v = scatter.view;
    const inset = legendInset();
    scatter.fit(S.curExtent, 0.97, inset.left, inset.top);
    const nv = scatter.view;
    if (nv.cx !== v.cx || nv.cy !== v.cy || nv.scale !== v.scale) dirtyTerritory = true;
  }

  const tInterp = performance.now();
  curLerp = null;
  if (t === 0 || dB === dA) cur = dA.pos;
  else {
    // A buffer of its own: cur may alias an epoch's positions, never write there.
    if (!interp || interp.length !== dA.pos.length) interp = new Float32Array(dA.pos.length);
    const pa = dA.pos, pb = dB.pos;
    for (let k = 0; k < interp.length; k++) interp[k] = pa[k] + (pb[k] - pa[k]) * t;
    cur = interp;
    curLerp = { a: pa, b: pb, t };
  }

  const key = `${dShow.epoch}|${S.filterVersion}|${S.split}`;
  if (key !== listsKey) { lists = buildLists(dShow); listsKey = key; gridKey = ''; dirtyPoints = true; }

  const moved = S.tpos !== prevT;
  const tTerr = performance.now();
  if (dirtyTerritory || moved) {
    const layers = [];
    if (dA.terr) layers.push({ ...dA.terr, alpha: 1 });
    if (dB !== dA && dB.terr && t > 0) layers.push({ ...dB.terr, alpha: t });
    for (const l of [viewTerr.layer(dA.epoch, 1 - t), viewTerr.layer(dB.epoch, t)]) if (l) layers.push(l);
    scatter.drawTerritory(layers);
    viewTerr.request(dShow.epoch, scatter, !S.playing && S.tpos === S.target, S.rev.get(dShow.epoch) || 0);
    dirtyTerritory = false;
    dirtyPoints = true;
  }
  // Hover and selection changes only touch the overlay; the points stay as drawn.
  if (dirtyPoints) {
    scatter.drawPoints(cur, lists, S.label, dShow.pred, zoomLevel(), S.nTrain, colorByOf(dShow, cmp.on ? cmp.data() : undefined), curLerp);
    drawTimes.push(scatter.lastDrawMs);
    if (drawTimes.length > 60) drawTimes.shift();
    dirtyPoints = false;
  }
  const tOv = performance.now();
  drawOverlay();
  framePart({ interp: tTerr - tInterp, points: scatter.lastDrawMs, overlay: performance.now() - tOv, whole: performance.now() - tInterp });
  if (cmp.on) { cmp.draw(dShow, !S.playing && S.tpos === S.target); syncCompareText(dShow); }

  frameTimes.push(now);
  while (frameTimes.length && now - frameTimes[0] > 1000) frameTimes.shift();
  updateTimelineUi();

  if (S.playing || S.tpos !== S.target) invalidate();
  else scheduleGrid();
}

// Where the last frames' main-thread time went (ms; for bench_scale.mjs):
// interp = interpolation, lists and grid keys; points = the point layer's
// draw call(s); overlay = marks, rings, trails; whole = the frame up to there.
const partMs = [];
function framePart(p) {
  partMs.push(p);
  if (partMs.length > 120) partMs.shift();
}

// The legend's right edge (CSS px from the canvas's left), kept clear of the
// data when the camera fits an epoch: the legend never covers a cluster.
// Comparing, the panes are narrow and the legend is a compact block across
// the top (app.css): the data is kept below it instead.
function legendInset() {
  const lg = $('legend');
  if (!lg || !lg.offsetWidth) return { left: 0, top: 0 };
  if (cmp && cmp.on) return { left: 0, top: lg.offsetTop + lg.offsetHeight + 4 };
  return { left: lg.offsetLeft + lg.offsetWidth + 4, top: 0 };
}

// Palette indices of the colour-by mode for an epoch's data (cached per epoch
// and mode); null for 'class' or while the epoch's confidences load.
// other: the epoch to compare with in mode 'changed' (the compare view's
// other epoch), else the projected epoch before d.
const cbCache = new Map();
function colorByOf(d, other) {
  if (S.colorBy === 'class' || !d) return null;
  const vals = VALUE_MODES[S.colorBy] ? valuesOf(S.colorBy, d.epoch) : null;
  if (VALUE_MODES[S.colorBy] && !vals) return null;
  const k = S.epochs.indexOf(d.epoch);
  const prev = other !== undefined ? other : k > 0 ? S.data.get(S.epochs[k - 1]) : null;
  const key = `${S.colorBy}|${d.epoch}|${prev ? prev.epoch : ''}`;
  if (!cbCache.has(key)) {
    const idx = colorIndices(S.colorBy, { N: S.N, nTrain: S.nTrain, label: S.label, truth: S.truth, pred: d.pred, conf: vals,
      prevPred: prev ? prev.pred : null, C: S.classes.length });
    const pal = S.colorBy === 'label' || S.colorBy === 'prediction' ? CLASS_PALETTE : PALETTE;
    if (cbCache.size > 6) cbCache.delete(cbCache.keys().next().value);
    cbCache.set(key, idx && { idx, pal });
  }
  return cbCache.get(key);
}

// Per-sample values of an epoch that colour-by fetches: kind → [train, test] requests.
const VALUE_MODES = {
  confidence: (e) => [api.confidence(e, 'train'), S.nTest ? api.confidence(e, 'test') : null],
  loss: (e) => [api.loss(e, 'train'), S.nTest && S.run.files.test_labels ? api.loss(e, 'test') : null],
  recorded_loss: (e) => [api.recordedLoss(e), null],
};
const valueMaps = { confidence: S.conf, loss: new Map(), recorded_loss: new Map() };
function valuesOf(kind, e) {
  const v = valueMaps[kind].get(e);
  if (!v) loadValues(kind, e);
  return v;
}

const valLoading = new Set();
async function loadValues(kind, e) {
  const key = `${kind}|${e}`;
  if (valLoading.has(key)) return;
  valLoading.add(key);
  try {
    const [a, b] = await Promise.all(VALUE_MODES[kind](e));
    const c = new Float32Array(S.N).fill(NaN);
    if (a) c.set(a.subarray(0, S.nTrain), 0);
    if (b) c.set(b.subarray(0, S.nTest), S.nTrain);
    valueMaps[kind].set(e, c);
    if (kind === 'confidence' && (S.filter.cmin !== '' || S.filter.cmax !== '')) S.filterVersion++;
    dirtyPoints = true;
    invalidate();
  } finally { valLoading.delete(key); }
}
const loadConfidence = (e) => loadValues('confidence', e);

// The three layers of the canvas flattened into one PNG, downloaded.
function exportPng() {
  const layers = [...document.querySelectorAll('#canvas-wrap canvas')];
  if (!layers.length) return null;
  const out = document.createElement('canvas');
  out.width = layers[0].width; out.height = layers[0].height;
  const ctx = out.getContext('2d');
  for (const c of layers) ctx.drawImage(c, 0, 0);
  const url = out.toDataURL('image/png');
  const a = document.createElement('a');
  a.href = url;
  a.download = `${(S.run && S.run.name ? S.run.name : 'tardis').replace(/[^\w.-]+/g, '_')}-epoch${dispEpoch()}.png`;
  document.body.appendChild(a); a.click(); a.remove();
  return url;
}

function setColorBy(mode) {
  S.colorBy = MODES[mode] ? mode : 'class';
  $('color-by').value = S.colorBy;
  const m = MODES[S.colorBy];
  const el = $('lg-colorby');
  el.hidden = S.colorBy === 'class';
  if (S.colorBy === 'confidence') el.innerHTML = `confidence <span class="lg-ramp" style="background:${RAMP_CSS}"></span> 0 → 1`;
  else if (S.colorBy === 'correct') el.innerHTML = '<i style="background:#2a9d4b"></i>correct <i style="background:#d62728"></i>wrong';
  else if (S.colorBy === 'noise') el.innerHTML = '<i style="background:#d62728"></i>noisy label <i style="background:#9aa1ab"></i>clean / unknown';
  else if (S.colorBy === 'changed') el.innerHTML = cmp.on
    ? '<i style="background:#d62728"></i>prediction differs <i style="background:#9aa1ab"></i>same in both epochs'
    : '<i style="background:#d62728"></i>prediction changed <i style="background:#9aa1ab"></i>same as the epoch before';
  else if (S.colorBy === 'loss' || S.colorBy === 'recorded_loss') {
    el.innerHTML = `${S.colorBy === 'loss' ? 'loss' : 'recorded loss'} <span class="lg-ramp" style="background:${RAMP_CSS}"></span> 0 → ${lossTop(S.classes.length).toFixed(1)} (log)`;
  } else if (S.colorBy === 'label' || S.colorBy === 'prediction') el.innerHTML = `dot = ${S.colorBy}, no rings`;
  el.title = m.name;
  dirtyPoints = true;
  saveUrl();
  invalidate();
}

// ---------------------------------------------------------------- compare view
// Epoch B beside the timeline's epoch A (compare.js); null closes it.
function setCompare(e) {
  if (e === null || e === undefined || !cmp.open(e)) cmp.close();
  $('cmp-epoch').value = cmp.on ? String(cmp.epoch) : '';
  $('pane-a').hidden = !cmp.on;
  $('compare').setAttribute('aria-pressed', String(cmp.on));
  cmpDiff.key = '';
  if (S.colorBy === 'changed') setColorBy('changed'); // its legend says which epochs
  dirtyTerritory = true;
  saveUrl();
  invalidate();
}

// The epoch B a click on "compare" opens: the first projected epoch, or the
// last when the first is on screen, so that the panes show the run's two ends.
// A zoom or pan in the compare pane: from now on both panes share its camera.
function linkCamera() {
  if (!S.userView) scatter.view = { ...cmp.scatter.view };
  S.userView = true;
}

function defaultCompareEpoch() {
  const e = dispEpoch(), first = S.epochs[0], last = S.epochs[S.epochs.length - 1];
  return e !== first ? first : last;
}

function wireCompare() {
  $('compare').addEventListener('click', () => setCompare(cmp.on ? null : defaultCompareEpoch()));
  $('cmp-epoch').addEventListener('change', (ev) => setCompare(+ev.target.value));
  $('cmp-close').addEventListener('click', () => setCompare(null));
  $('cmp-show-diff').addEventListener('click', () => setColorBy(S.colorBy === 'changed' ? 'class' : 'changed'));
}

function syncCompareOptions() {
  const sel = $('cmp-epoch');
  sel.innerHTML = S.epochs.map((e) => `<option value="${e}">${e}</option>`).join('');
  if (cmp && cmp.on) sel.value = String(cmp.epoch);
}

// "N of M predictions differ from epoch A", for the epochs on screen.
const cmpDiff = { key: '', n: 0 };
function syncCompareText(dA) {
  const dB = cmp.data();
  const key = `${dA.epoch}|${dB ? dB.epoch : ''}|${S.colorBy === 'changed'}`;
  if (!dB || key === cmpDiff.key) return;
  cmpDiff.key = key;
  cmpDiff.n = countChanged(dA, dB);
  $('cmp-diff').textContent = dA.epoch === dB.epoch ? '(same as the timeline)'
    : `· ${fmtInt(cmpDiff.n)} predictions differ from epoch ${dA.epoch}`;
  $('cmp-show-diff').textContent = S.colorBy === 'changed' ? 'hide' : 'show';
}

// Hover from the compare pane: ring the sample in both panes, tooltip in the pane.
function hoverAt(i, sx, sy, pane) {
  if (i !== S.hover) { S.hover = i; invalidate(); }
  if (i < 0) { $('tooltip').hidden = true; return; }
  showTooltip(i, sx, sy, pane ? pane.wrap : $('canvas-wrap'), pane ? pane.data() : null);
}

// The view on screen as an SVG file (svgexport.js); download: save it.
function exportView(download = true) {
  const d = S.data.get(dispEpoch());
  if (!d || !cur || !lists) return null;
  const svg = exportSvg({
    scatter, pos: cur, lists, label: S.label, pred: d.pred, nTrain: S.nTrain, zoom: zoomLevel(),
    colorBy: colorByOf(d, cmp.on ? cmp.data() : undefined),
    noisy: S.markNoisy && S.truth && S.split !== 'test' ? S.truth : null,
    suspects: sus && S.split !== 'test' ? sus.recs.map((r) => [r.index, sus.verdictOf(r.index) || 'none']) : [],
    selected: S.selected, trajectory: S.selected >= 0 && S.selInfo ? S.selInfo.trajectory : null,
    epoch: dispEpoch(), title: `${S.run.name} · epoch ${dispEpoch()}`,
  });
  if (download) {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([svg], { type: 'image/svg+xml' }));
    a.download = `${(S.run && S.run.name ? S.run.name : 'tardis').replace(/[^\w.-]+/g, '_')}-epoch${dispEpoch()}.svg`;
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }
  return svg;
}

function zoomLevel() {
  const e = S.curExtent;
  if (!e) return 1;
  const base = 0.97 * Math.min(scatter.W / (e[2] - e[0]), scatter.H / (e[3] - e[1]));
  return scatter.view.scale / base;
}

// "draft" beside the epoch number while the epoch on screen is a live draft.
function syncDraft() {
  $('epoch-draft').hidden = !S.drafts.has(dispEpoch());
}

let shownEpoch = null;
function updateTimelineUi() {
  const e = dispEpoch();
  if (document.activeElement !== $('epoch-slider') || S.playing) $('epoch-slider').value = Math.round(S.tpos);
  $('epoch-num').textContent = e;
  $('pane-a-epoch').textContent = e;
  syncDraft();
  $('epoch-of').textContent = ` / ${S.epochs[S.epochs.length - 1]}`;
  const fps = frameTimes.length;
  const ms = drawTimes.reduce((s, v) => s + v, 0) / Math.max(1, drawTimes.length);
  $('hud').textContent = `${fmtInt(lists ? lists.shownTotal : 0)} points · ${S.playing || S.tpos !== S.target ? `${fps} fps · ` : ''}draw ${ms.toFixed(1)} ms`;
  if (e !== shownEpoch) {
    shownEpoch = e;
    renderCharts();
    renderQuality();
    if (S.selected >= 0 && !S.playing) refreshSelection();
    if (sus) sus.refreshPredictions();
    if (alerts) alerts.epochShown(e);
    if (diag && diag.ready()) diag.epochShown(e);
    if (!S.playing) saveUrl();
  }
}

// ---------------------------------------------------------------- overlay
// A polyline through [[epoch, x, y], …] with a dot per epoch (the current one
// filled) and the epoch numbers at both ends, so the direction is readable.
function drawTrajectory(ctx, tr, e, color = '#1d2433') {
  if (tr.length < 1) return;
  ctx.lineJoin = 'round';
  ctx.lineCap = 'round';
  const path = () => {
    ctx.beginPath();
    tr.forEach(([, x, y], k) => { const [sx, sy] = scatter.toScreen(x, y); k ? ctx.lineTo(sx, sy) : ctx.moveTo(sx, sy); });
  };
  path(); ctx.strokeStyle = 'rgba(255,255,255,0.85)'; ctx.lineWidth = 4.5; ctx.stroke();
  path(); ctx.strokeStyle = color; ctx.lineWidth = 1.6; ctx.stroke();
  for (const [ep, x, y] of tr) {
    const [sx, sy] = scatter.toScreen(x, y);
    ctx.beginPath();
    ctx.arc(sx, sy, ep === e ? 3.5 : 2.4, 0, 2 * Math.PI);
    ctx.fillStyle = ep === e ? color : '#fff';
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.2;
    ctx.fill(); ctx.stroke();
  }
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = color;
  for (const k of [0, tr.length - 1]) {
    const [sx, sy] = scatter.toScreen(tr[k][1], tr[k][2]);
    ctx.fillText(String(tr[k][0]), sx + 5, sy - 5);
  }
}

// Trajectory of sample g from the embeddings already in the page (no request).
function trajectoryOf(g) {
  const tr = [];
  for (const e of S.epochs) {
    const d = S.data.get(e);
    if (d && Number.isFinite(d.pos[2 * g])) tr.push([e, d.pos[2 * g], d.pos[2 * g + 1]]);
  }
  return tr;
}

const SUS = '#d81b60';
const TRAIL_MAX = 400; // accepted samples with a trail (the most recent ones)

// Accepted samples: a trail through their positions from the first epoch to the
// frame on screen, older segments fainter, so playing animates them. Batched by
// segment age: a handful of strokes, whatever the number of samples.
function drawTrails(ctx) {
  let ids = [...sus.accepted];
  if (ids.length > TRAIL_MAX) ids = ids.slice(ids.length - TRAIL_MAX);
  if (!ids.length) return;
  const k0 = Math.floor(S.tpos);
  const pts = []; // positions arrays, one per point of the trail
  for (let k = 0; k <= k0; k++) {
    const d = S.data.get(S.epochs[k]);
    if (!d) { pts.length = 0; continue; } // a hole: start after it
    pts.push(d.pos);
  }
  if (S.tpos > k0 && cur) pts.push(cur);
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  const nSeg = pts.length - 1;
  for (let s = 0; s < nSeg; s++) {
    const a = pts[s], b = pts[s + 1];
    ctx.beginPath();
    for (const i of ids) {
      if (!Number.isFinite(a[2 * i]) || !Number.isFinite(b[2 * i])) continue;
      const [x0, y0] = scatter.toScreen(a[2 * i], a[2 * i + 1]);
      const [x1, y1] = scatter.toScreen(b[2 * i], b[2 * i + 1]);
      ctx.moveTo(x0, y0); ctx.lineTo(x1, y1);
    }
    const age = nSeg - 1 - s;
    ctx.globalAlpha = Math.max(0.3, 1 - 0.17 * age);
    ctx.strokeStyle = 'rgba(255,255,255,0.75)'; ctx.lineWidth = 4; ctx.stroke();
    ctx.strokeStyle = SUS; ctx.lineWidth = 2; ctx.stroke();
  }
  ctx.globalAlpha = 1;
  // Heads: where each accepted sample is now.
  ctx.beginPath();
  for (const i of ids) {
    const x = cur[2 * i], y = cur[2 * i + 1];
    if (!Number.isFinite(x)) continue;
    const [sx, sy] = scatter.toScreen(x, y);
    ctx.moveTo(sx + 3, sy);
    ctx.arc(sx, sy, 3, 0, 2 * Math.PI);
  }
  ctx.fillStyle = SUS; ctx.strokeStyle = '#fff'; ctx.lineWidth = 1.2;
  ctx.fill(); ctx.stroke();
}

// The round's recommendations: a diamond on top of the point (hollow: not judged
// yet, filled: accepted, grey: rejected), so the point itself stays visible.
function drawSuspectMarks(ctx, pos = cur, sc = scatter) {
  const groups = { none: [], accept: [], reject: [] };
  for (const r of sus.recs) groups[sus.verdictOf(r.index) || 'none'].push(r.index);
  const diamonds = (ids, rad) => {
    ctx.beginPath();
    for (const i of ids) {
      const x = pos[2 * i], y = pos[2 * i + 1];
      if (!Number.isFinite(x)) continue;
      const [sx, sy] = sc.toScreen(x, y);
      ctx.moveTo(sx, sy - rad); ctx.lineTo(sx + rad, sy); ctx.lineTo(sx, sy + rad); ctx.lineTo(sx - rad, sy); ctx.closePath();
    }
  };
  ctx.lineJoin = 'miter';
  diamonds(groups.reject, 5);
  ctx.strokeStyle = '#fff'; ctx.lineWidth = 3; ctx.stroke();
  ctx.strokeStyle = '#8a93a6'; ctx.lineWidth = 1.3; ctx.stroke();
  diamonds(groups.none, 6.5);
  ctx.strokeStyle = '#fff'; ctx.lineWidth = 3.6; ctx.stroke();
  ctx.strokeStyle = SUS; ctx.lineWidth = 1.8; ctx.stroke();
  diamonds(groups.accept, 6.5);
  ctx.fillStyle = 'rgba(216,27,96,0.55)'; ctx.fill();
  ctx.strokeStyle = '#fff'; ctx.lineWidth = 3.6; ctx.stroke();
  ctx.strokeStyle = SUS; ctx.lineWidth = 1.8; ctx.stroke();
}

// A dark × on every training sample whose recorded label is not its clean label
// (train_truth.npy), so known noise is visible without filtering for it.
function drawNoiseMarks(ctx, pos = cur, sc = scatter) {
  const r = 2.4;
  let n = 0;
  ctx.beginPath();
  for (let i = 0; i < S.nTrain; i++) {
    const t = S.truth[i];
    if (t === NONE || t === S.label[i]) continue;
    const x = pos[2 * i], y = pos[2 * i + 1];
    if (!Number.isFinite(x)) continue;
    const [sx, sy] = sc.toScreen(x, y);
    if (sx < -r || sy < -r || sx > sc.W + r || sy > sc.H + r) continue;
    ctx.moveTo(sx - r, sy - r); ctx.lineTo(sx + r, sy + r);
    ctx.moveTo(sx - r, sy + r); ctx.lineTo(sx + r, sy - r);
    n++;
  }
  markCounts.noisy = n;
  // Thousands of marks on screen (a big run zoomed out) would hatch the
  // clusters black: they fade as they crowd, and come back on zooming in.
  ctx.strokeStyle = `rgba(20,20,20,${(0.6 * Math.min(1, Math.sqrt(2000 / Math.max(1, n)))).toFixed(3)})`;
  ctx.lineWidth = 1;
  ctx.stroke();
}

// The noisy-label marks on screen in the pane drawn last (for the test).
const markCounts = { noisy: 0 };

// The marks of the main pane's overlay that belong to samples (the suspects
// round's diamonds, the noisy-label ×), for the compare pane: its epoch's
// positions pos on its scatter sc. Returns what it drew (for the test).
function drawPaneMarks(ctx, pos, sc) {
  const out = { suspects: 0, noisy: 0 };
  if (!pos || S.split === 'test') return out;
  if (sus) { drawSuspectMarks(ctx, pos, sc); out.suspects = sus.recs.length; }
  const marksFit = sc.mode === 'points' || noisyCount() <= NOISY_DENSE;
  if (S.markNoisy && S.truth && marksFit) { drawNoiseMarks(ctx, pos, sc); out.noisy = markCounts.noisy; }
  return out;
}

const NOISY_DENSE = 5000; // noisy-label marks drawn over a density image at most
let nNoisy = -1;
function noisyCount() {
  if (nNoisy < 0 && S.truth) {
    nNoisy = 0;
    for (let i = 0; i < S.nTrain; i++) nNoisy += S.truth[i] !== NONE && S.truth[i] !== S.label[i];
  }
  return nNoisy;
}

function drawOverlay() {
  const ctx = scatter.overlayContext();
  // Suspects are training samples: nothing to mark when only the test split is shown.
  const susOn = sus && cur && S.split !== 'test';
  if (susOn && sus.trails) drawTrails(ctx);
  if (susOn) drawSuspectMarks(ctx);
  if (susOn && sus.hover >= 0 && sus.hover !== S.selected) drawTrajectory(ctx, trajectoryOf(sus.hover), dispEpoch(), SUS);
  // Level of detail: over a density image (a big run zoomed out) thousands of
  // × marks would only hatch it; they come back when zooming in draws points.
  const marksFit = scatter.mode === 'points' || noisyCount() <= NOISY_DENSE;
  if (S.markNoisy && S.truth && cur && S.split !== 'test' && marksFit) drawNoiseMarks(ctx);
  // The repair's picks are training samples too.
  if (diag && cur && S.split !== 'test') {
    diag.lastMarks = drawPicks(ctx, diag.picksAt(dispEpoch()), (i) => {
      const x = cur[2 * i], y = cur[2 * i + 1];
      return Number.isFinite(x) ? scatter.toScreen(x, y) : null;
    });
  }
  if (S.selected >= 0 && S.selInfo && S.selInfo.trajectory) drawTrajectory(ctx, S.selInfo.trajectory, dispEpoch());
  const ring = (i, r, color, w) => {
    const x = cur[2 * i], y = cur[2 * i + 1];
    if (!Number.isFinite(x)) return;
    const [sx, sy] = scatter.toScreen(x, y);
    ctx.beginPath(); ctx.arc(sx, sy, r, 0, 2 * Math.PI);
    ctx.strokeStyle = '#fff'; ctx.lineWidth = w + 2.5; ctx.stroke();
    ctx.strokeStyle = color; ctx.lineWidth = w; ctx.stroke();
  };
  if (S.selected >= 0 && S.selNN) for (const g of S.selNN.high) ring(g, 5, '#e67e00', 1.6);
  if (S.selected >= 0) ring(S.selected, 8, '#1d2433', 2);
  if (S.hover >= 0 && S.hover !== S.selected) ring(S.hover, 6.5, '#1d2433', 1.5);
  if (susOn && sus.hover >= 0) ring(sus.hover, 10, SUS, 2.2);
}

// ---------------------------------------------------------------- hover / select
// The spatial index of the frame on screen, rebuilt when the frame changed.
function ensureGrid() {
  const key = `${listsKey}|${S.tpos}`;
  if (key !== gridKey) { grid.build(cur, lists.active.length ? lists.active : new Int32Array(0)); gridKey = key; }
}

// Once the view comes to rest, the index is built while the page is idle, so
// that the first hover over a million points does not wait for it.
let gridIdle = 0;
function scheduleGrid() {
  if (gridIdle || !cur || !lists || `${listsKey}|${S.tpos}` === gridKey) return;
  const idle = window.requestIdleCallback || ((f) => setTimeout(f, 50));
  gridIdle = idle(() => {
    gridIdle = 0;
    if (!S.playing && S.tpos === S.target && cur && lists) ensureGrid();
  });
}

function nearestAt(sx, sy) {
  if (!cur || !lists) return -1;
  ensureGrid();
  const [x, y] = scatter.toData(sx, sy);
  return grid.nearest(x, y, 9 / scatter.view.scale);
}

// host: the pane the cursor is in (the compare view has two).
// d: the epoch data whose prediction to show (the compare pane's epoch).
function showTooltip(i, sx, sy, host = $('canvas-wrap'), dPane = null) {
  const tt = $('tooltip');
  if (i < 0) { tt.hidden = true; return; }
  if (tt.parentElement !== host) host.appendChild(tt);
  const split = splitOf(i), li = localIndex(i);
  const d = dPane || S.data.get(dispEpoch());
  const l = S.label[i], p = d ? d.pred[i] : NONE, t = S.truth ? S.truth[i] : NONE;
  const hasImg = S.run.files[`${split}_inputs`];
  const img = $('tt-img');
  img.hidden = !hasImg;
  if (hasImg) {
    const src = api.thumbnail(li, split, 3);
    if (img.getAttribute('src') !== src) img.src = src;
  }
  $('tt-title').textContent = sampleName(split, li);
  $('tt-label').innerHTML = `${swatch(l)}label <b>${className(l)}</b>`;
  $('tt-pred').innerHTML = `${swatch(p)}pred <b>${className(p)}</b>${l !== NONE && p !== NONE && p !== l ? ' <span class="bad">✗</span>' : ''}`;
  $('tt-extra').innerHTML = t !== NONE && t !== l ? `${swatch(t)}clean <b>${className(t)}</b> <span class="tag">noisy</span>` : '';
  tt.hidden = false;
  S.ttAnchor = [sx, sy];
  placeTooltip(tt, sx, sy);
}

// Screen points along the trajectories on the overlay (the selected sample's,
// a hovered suspect card's), every ~8 px along each segment.
function trajectoryScreenPoints() {
  const out = [];
  const gs = [S.selected, sus && sus.hover >= 0 ? sus.hover : -1].filter((g) => g >= 0);
  for (const g of gs) {
    const tr = trajectoryOf(g).map(([, x, y]) => scatter.toScreen(x, y));
    for (let k = 0; k < tr.length; k++) {
      out.push(tr[k]);
      if (k + 1 < tr.length) {
        const [ax, ay] = tr[k], [bx, by] = tr[k + 1];
        const n = Math.min(200, Math.ceil(Math.hypot(bx - ax, by - ay) / 8));
        for (let j = 1; j < n; j++) out.push([ax + (bx - ax) * j / n, ay + (by - ay) * j / n]);
      }
    }
  }
  return out;
}

// Beside the cursor, on the side that covers the fewest trajectory points
// (a click draws the sample's trajectory right under the tooltip otherwise).
function placeTooltip(tt, sx, sy) {
  const W = scatter.W, H = scatter.H;
  const w = tt.offsetWidth, h = tt.offsetHeight, g = 14;
  const clampX = (x) => Math.max(4, Math.min(W - w - 4, x));
  const clampY = (y) => Math.max(4, Math.min(H - h - 4, y));
  const cands = [
    [sx + g, sy - h / 2], [sx - g - w, sy - h / 2], [sx - w / 2, sy - g - h], [sx - w / 2, sy + g],
    [sx + g, sy - g - h], [sx - g - w, sy - g - h], [sx + g, sy + g], [sx - g - w, sy + g],
  ].map(([x, y]) => [clampX(x), clampY(y)]);
  const pts = trajectoryScreenPoints();
  const cost = ([x, y]) => {
    let c = 0;
    for (const [px, py] of pts) if (px > x - 4 && px < x + w + 4 && py > y - 4 && py < y + h + 4) c++;
    // Never over the cursor's own sample either.
    if (sx > x - 6 && sx < x + w + 6 && sy > y - 6 && sy < y + h + 6) c += 1000;
    return c;
  };
  let best = cands[0], bc = cost(best);
  for (const c of cands.slice(1)) { if (bc === 0) break; const v = cost(c); if (v < bc) { best = c; bc = v; } }
  tt.style.left = `${best[0]}px`;
  tt.style.top = `${best[1]}px`;
}

let selToken = 0;
async function refreshSelection() {
  const i = S.selected;
  if (i < 0) return;
  const token = ++selToken;
  try {
    const info = await api.sample(localIndex(i), splitOf(i), dispEpoch());
    if (token !== selToken) return;
    S.selInfo = info;
    renderSelection();
    invalidate();
  } catch (e) {
    console.error(e);
  }
  refreshNeighbors(i, token);
}

// High-D vs 2-D nearest neighbours of the selection (/api/samples/{i}/neighbors).
async function refreshNeighbors(i, token) {
  const split = splitOf(i), off = isTest(i) ? S.nTrain : 0;
  let nn = null;
  try { nn = await api.neighbors(localIndex(i), split, dispEpoch(), 8); } catch (e) { console.error(e); }
  if (token !== selToken || S.selected !== i) return;
  const el = $('sel-nn');
  if (!nn) { S.selNN = null; el.textContent = ''; return; }
  const high = nn.high.map((x) => x.index + off), low = nn.low.map((x) => x.index + off);
  S.selNN = { high, low, shared: nn.shared, epoch: nn.epoch };
  const hasImg = S.run.files[`${split}_inputs`];
  const both = new Set(high.filter((g) => low.includes(g)));
  const row = (gs) => gs.map((g) => {
    const li = localIndex(g);
    const inner = hasImg ? `<img src="${api.thumbnail(li, split, 1)}" alt="">` : `<span class="nn-i">${sampleName(split, li).split('#')[1]}</span>`;
    return `<button data-g="${g}" class="${both.has(g) ? 'shared' : ''}" title="${sampleName(split, li)} · label ${className(S.label[g])}">${inner}</button>`;
  }).join('');
  el.innerHTML = `<div>high-D neighbours (classifier) <span class="muted">· ${nn.shared} of ${nn.k} also 2-D neighbours</span></div>` +
    `<div class="nn-row" id="nn-high">${row(high)}</div><div>2-D neighbours (canvas)</div><div class="nn-row" id="nn-low">${row(low)}</div>`;
  for (const b of el.querySelectorAll('button[data-g]')) b.addEventListener('click', () => select(+b.dataset.g));
  invalidate();
}

function select(i) {
  S.selected = i;
  S.selInfo = null;
  S.selNN = null;
  $('sel-nn').textContent = '';
  $('sel-clear').hidden = i < 0;
  renderSelection();
  if (i >= 0) refreshSelection();
  saveUrl();
  // The click drew a trajectory: move the tooltip off it.
  if (!$('tooltip').hidden && S.ttAnchor) placeTooltip($('tooltip'), ...S.ttAnchor);
  invalidate();
}

function renderSelection() {
  const i = S.selected;
  $('sel-empty').hidden = i >= 0;
  $('sel-body').hidden = i < 0;
  if (i < 0) return;
  const s = S.selInfo;
  const split = splitOf(i), li = localIndex(i);
  const img = $('sel-img');
  img.hidden = !S.run.files[`${split}_inputs`];
  if (!img.hidden) {
    const src = api.thumbnail(li, split, 4);
    if (img.getAttribute('src') !== src) img.src = src;
  }
  const rows = [['sample', sampleName(split, li)]];
  if (s) {
    rows.push(['epoch', s.epoch]);
    rows.push(['label', `${swatch(s.label ?? NONE)}${className(s.label)}`]);
    rows.push(['prediction', `${swatch(s.prediction ?? NONE)}${className(s.prediction)}${s.label !== null && s.prediction !== s.label ? ' <span class="bad">✗</span>' : ''}`]);
    if (s.truth !== null && s.truth !== undefined) {
      rows.push(['clean label', `${swatch(s.truth)}${className(s.truth)}${s.noisy ? ' <span class="tag">noisy</span>' : ''}`]);
    }
    rows.push(['loss', s.loss === null ? '—' : s.loss.toFixed(3)]);
    rows.push(['confidence', s.confidence === null ? '—' : `${(100 * s.confidence).toFixed(1)} %`]);
  } else rows.push(['', '<span class="muted">loading…</span>']);
  $('sel-dl').innerHTML = rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('');
  // Softmax of the logits as small bars: shows what the model hesitates between.
  const probs = $('sel-probs');
  probs.textContent = '';
  if (s && Array.isArray(s.logits)) {
    const m = Math.max(...s.logits);
    const ex = s.logits.map((z) => Math.exp(z - m));
    const sum = ex.reduce((a, b) => a + b, 0);
    probs.innerHTML = ex.map((v, c) => {
      const p = v / sum;
      return `<div class="pr${c === s.label ? ' is-label' : ''}"><span class="pn">${className(c)}</span>` +
        `<span class="pb"><i style="width:${(100 * p).toFixed(1)}%;background:${classColor(c)}"></i></span>` +
        `<span class="pv">${(100 * p).toFixed(p < 0.1 ? 1 : 0)}</span></div>`;
    }).join('');
  }
}

// ---------------------------------------------------------------- panels
function renderCharts() {
  const e = S.epochs.length ? dispEpoch() : null;
  const pts = (k) => S.epochInfo.map((x) => [x.epoch, x.metrics ? x.metrics[k] : NaN]).filter((p) => typeof p[1] === 'number');
  const pick = (ep) => gotoEpoch(ep);
  lineChart($('chart-loss'), [
    { name: 'train', color: '#3b6fb6', points: pts('train_loss') },
    { name: 'test', color: '#d9822b', points: pts('test_loss'), dash: '4 3' },
  ], { title: 'loss', current: e, onPick: pick, height: 104 });
  lineChart($('chart-acc'), [
    { name: 'train', color: '#3b6fb6', points: pts('train_acc') },
    { name: 'test', color: '#d9822b', points: pts('test_acc'), dash: '4 3' },
  ], { title: 'accuracy', current: e, onPick: pick, height: 104, fmt: (v) => `${Math.round(v * 100)}%` });
  if (tasks) tasks.renderChart(e, pick);
}

function renderQuality() {
  qualityPanel($('quality'), S.epochInfo, S.quality, S.epochs.length ? dispEpoch() : null);
}

function renderTicks() {
  const t = $('ticks');
  t.innerHTML = S.epochs.map((e, k) => {
    const left = S.epochs.length > 1 ? (100 * k) / (S.epochs.length - 1) : 0;
    const lab = S.epochs.length <= 25 || k % Math.ceil(S.epochs.length / 20) === 0 ? e : '';
    return `<span style="left:${left}%">${lab}</span>`;
  }).join('');
  if (tasks) { tasks.epochsChanged(); tasks.renderTimeline(); }
  syncCompareOptions();
  if (alerts) alerts.renderTimeline();
  if (diag) diag.renderTimeline();
}

function renderLegend() {
  $('legend').innerHTML = S.classes.map((c, k) =>
    `<button class="lg" data-c="${k}" title="show only label ${c}"><i style="background:${classColor(k)}"></i>${c}</button>`).join('') +
    '<div class="lg-note"><svg width="14" height="14"><circle cx="7" cy="7" r="5" fill="none" stroke="#888" stroke-width="1.6"/><circle cx="7" cy="7" r="2.2" fill="#888"/></svg>ring = label, dot = prediction</div>' +
    '<div class="lg-note lg-more"><svg width="14" height="14"><rect x="3" y="3" width="8" height="8" fill="#888"/></svg>test sample' +
    (S.hasTruth ? '<svg width="14" height="14"><path d="M3 3L11 11M3 11L11 3" stroke="#222" stroke-width="1.5"/></svg>noisy label' : '') + '</div>' +
    '<div class="lg-note lg-more" title="territory: pale where the model is unsure, a grey line on the decision boundary, hatched grey where no sample is near">' +
    '<svg width="14" height="14"><path d="M1 13L13 1" stroke="#777" stroke-width="1.2"/></svg>boundary' +
    '<svg width="14" height="14"><rect width="14" height="14" fill="#eef3f8"/></svg>unsure' +
    '<svg width="14" height="14"><rect width="14" height="14" fill="#f2f2f2"/><path d="M-2 6L6 -2M-2 13L13 -2M5 16L16 5" stroke="#ccc"/></svg>no data</div>' +
    '<div class="lg-note lg-colorby" id="lg-colorby" hidden></div>';
  for (const b of $('legend').querySelectorAll('.lg')) {
    b.addEventListener('click', () => {
      const sel = $('f-label');
      sel.value = sel.value === b.dataset.c ? '' : b.dataset.c;
      readFilters();
      syncLegend();
    });
  }
}

function syncLegend() {
  const v = $('f-label').value;
  for (const b of $('legend').querySelectorAll('.lg')) b.classList.toggle('off', v !== '' && b.dataset.c !== v);
}

// ---------------------------------------------------------------- timeline
// The "live" toggle: on, the view follows the newest drawn epoch as it lands;
// turning it on jumps there. Moving through the epochs by hand turns it off.
function setFollow(on) {
  S.follow = on && S.liveAvail;
  $('follow').checked = S.follow;
  if (S.follow && S.epochs.length) {
    if (S.playing) setPlaying(false);
    S.target = S.epochs.length - 1;
    invalidate();
  }
}

function gotoEpoch(ep) {
  if (!S.epochs.length) return;
  setFollow(false);
  let k = S.epochs.indexOf(ep);
  if (k < 0) { // nearest projected epoch
    let best = 0;
    S.epochs.forEach((e, j) => { if (Math.abs(e - ep) < Math.abs(S.epochs[best] - ep)) best = j; });
    k = best;
  }
  setPlaying(false);
  S.target = k;
  invalidate();
}

function step(delta) {
  setFollow(false);
  setPlaying(false);
  S.target = Math.max(0, Math.min(S.epochs.length - 1, Math.round(S.target) + delta));
  invalidate();
}

function setPlaying(on) {
  if (on && S.epochs.length < 2) on = false;
  if (on) setFollow(false);
  if (on && S.tpos >= S.epochs.length - 1) S.tpos = S.target = 0; // replay from the start
  S.playing = on;
  document.body.classList.toggle('playing', on);
  $('play').setAttribute('aria-label', on ? 'pause' : 'play');
  if (!on) { S.target = Math.round(S.tpos); if (S.selected >= 0) refreshSelection(); }
  invalidate();
}

// ---------------------------------------------------------------- wiring
function wireCanvas() {
  const wrap = $('canvas-wrap');
  let drag = null;
  wrap.addEventListener('pointerdown', (ev) => {
    if (ev.button !== 0 || ev.target.closest('.legend, .canvas-btn')) return;
    drag = { x: ev.clientX, y: ev.clientY, moved: false };
    wrap.setPointerCapture(ev.pointerId);
  });
  wrap.addEventListener('pointermove', (ev) => {
    const r = wrap.getBoundingClientRect();
    const sx = ev.clientX - r.left, sy = ev.clientY - r.top;
    if (drag) {
      const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (drag.moved || Math.hypot(dx, dy) > 3) {
        drag.moved = true;
        scatter.panBy(dx, dy);
        drag.x = ev.clientX; drag.y = ev.clientY;
        S.userView = true;
        dirtyTerritory = true;
        $('tooltip').hidden = true;
        invalidate();
        return;
      }
    }
    if (ev.target.closest('.legend, .canvas-btn')) { S.hover = -1; $('tooltip').hidden = true; invalidate(); return; }
    const i = nearestAt(sx, sy);
    if (i !== S.hover) { S.hover = i; invalidate(); }
    showTooltip(i, sx, sy);
  });
  wrap.addEventListener('pointerup', (ev) => {
    if (drag && !drag.moved && !ev.target.closest('.legend, .canvas-btn')) {
      const r = wrap.getBoundingClientRect();
      const i = nearestAt(ev.clientX - r.left, ev.clientY - r.top);
      select(i);
    }
    drag = null;
  });
  wrap.addEventListener('pointerleave', () => { S.hover = -1; $('tooltip').hidden = true; invalidate(); });
  wrap.addEventListener('wheel', (ev) => {
    ev.preventDefault();
    const r = wrap.getBoundingClientRect();
    scatter.zoomAt(ev.clientX - r.left, ev.clientY - r.top, Math.exp(-ev.deltaY * 0.0015));
    S.userView = true;
    dirtyTerritory = true;
    invalidate();
  }, { passive: false });
  wrap.addEventListener('dblclick', () => fitView());
}

// Back to the automatic camera (it follows the epochs' extents).
function fitView() {
  S.userView = false;
  dirtyTerritory = true;
  invalidate();
}

function wireControls() {
  $('play').addEventListener('click', () => setPlaying(!S.playing));
  $('epoch-slider').addEventListener('input', (ev) => { setFollow(false); setPlaying(false); S.target = +ev.target.value; invalidate(); });
  $('follow').addEventListener('change', (ev) => setFollow(ev.target.checked));
  $('speed').addEventListener('change', (ev) => { S.speed = +ev.target.value; });
  for (const id of ['f-label', 'f-pred', 'f-mis', 'f-noisy', 'f-hide']) {
    $(id).addEventListener('change', () => { readFilters(); syncLegend(); });
  }
  let idxTimer = 0;
  $('f-idx').addEventListener('input', () => { clearTimeout(idxTimer); idxTimer = setTimeout(readFilters, 200); });
  for (const id of ['f-cmin', 'f-cmax']) $(id).addEventListener('input', () => { clearTimeout(idxTimer); idxTimer = setTimeout(readFilters, 200); });
  $('f-clear').addEventListener('click', () => {
    for (const id of ['f-label', 'f-pred', 'f-mis', 'f-noisy', 'f-cmin', 'f-cmax']) $(id).value = '';
    $('f-idx').value = '';
    $('f-hide').checked = false;
    for (const x of [tasks, alerts]) if (x) x.clear();
    readFilters(); syncLegend();
  });
  $('sel-clear').addEventListener('click', () => select(-1));
  for (const b of $('split-seg').querySelectorAll('button')) {
    b.addEventListener('click', () => {
      S.split = b.dataset.split;
      for (const o of $('split-seg').querySelectorAll('button')) o.classList.toggle('on', o === b);
      if (S.selected >= 0 && ((S.split === 'train' && isTest(S.selected)) || (S.split === 'test' && !isTest(S.selected)))) select(-1);
      readFilters(); // bare indices refer to the split on screen

    });
  }
  $('method').addEventListener('change', async (ev) => {
    api.method = ev.target.value;
    S.loading.clear(); S.data.clear(); listsKey = '';
    S.userView = false;
    await refreshEpochs();
    await loadEpoch(S.epochs[Math.round(S.target)]).catch(() => {});
    fitView();
    if (S.selected >= 0) refreshSelection();
  });
  document.addEventListener('keydown', (ev) => {
    const tag = ev.target.tagName;
    if ((tag === 'INPUT' && ev.target.type !== 'range' && ev.target.type !== 'checkbox') || tag === 'SELECT' || tag === 'TEXTAREA') return;
    // Space means play/pause everywhere; a focused button must not also click.
    if (ev.key === ' ') { ev.preventDefault(); if (!ev.repeat) setPlaying(!S.playing); }
    else if (ev.key === 'ArrowLeft') { ev.preventDefault(); step(-1); }
    else if (ev.key === 'ArrowRight') { ev.preventDefault(); step(1); }
    else if (ev.key === 'Escape') select(-1);
    else if (ev.key === 'f') fitView();
  });
}

function wireSpaceOnButtons() {
  document.addEventListener('keyup', (ev) => {
    if (ev.key === ' ' && ev.target.tagName === 'BUTTON') ev.preventDefault();
  });
}

function wireEvents() {
  const live = $('live');
  const set = (state, text) => { live.dataset.state = state; $('live-text').textContent = text; };
  const es = new EventSource('/api/events');
  es.onopen = () => set('on', 'live');
  es.onerror = () => set('off', 'offline');
  let pending = 0;
  const refresh = () => { clearTimeout(pending); pending = setTimeout(() => refreshEpochs().catch(console.error), 150); };
  // Counts from the server; "drawing" only while its projector really is.
  const onCounts = (ev) => {
    try {
      const { recorded, drawn, projecting } = JSON.parse(ev.data);
      set('on', `live · ${recorded} recorded · ${drawn} drawn${projecting != null ? ` · drawing ${projecting}` : ''}`);
    } catch { /* ignore */ }
    refresh();
  };
  es.addEventListener('epoch', onCounts);
  es.addEventListener('projection', (ev) => {
    // A second projection of an epoch the page holds (a draft replaced by its fit): reload it.
    projections++;
    try {
      const { epoch, projected, draft } = JSON.parse(ev.data);
      if (projected) { S.drafts[draft ? 'add' : 'delete'](epoch); reloadEpoch(epoch); syncDraft(); }
    } catch { /* ignore */ }
    onCounts(ev);
  });
  es.addEventListener('quality', refresh);
  es.addEventListener('alert', () => alerts.refresh());
}

async function init() {
  scatter = new Scatter($('canvas-wrap'));
  cmp = new ComparePane($('cmp-wrap'), {
    S, api, invalidate,
    dataOf: (e) => S.data.get(e),
    loadEpoch: (e) => loadEpoch(e).catch(() => {}),
    listsFor: (d) => buildLists(d, false),
    colorByOf: (d, other) => colorByOf(d, other),
    zoomLevel: () => zoomLevel(),
    mainScatter: () => scatter,
    hoverAt: (i, sx, sy, pane) => hoverAt(i, sx, sy, pane),
    select: (i) => select(i),
    // Zooming or panning either pane links the cameras (from the one moved).
    userView: () => S.userView,
    panBy: (dx, dy) => { linkCamera(); scatter.panBy(dx, dy); dirtyTerritory = true; invalidate(); },
    zoomAt: (sx, sy, f) => { linkCamera(); scatter.zoomAt(sx, sy, f); dirtyTerritory = true; invalidate(); },
    fit: () => fitView(),
    drawMarks: (ctx, pos, sc) => drawPaneMarks(ctx, pos, sc),
  });
  scatter.pointRadius = 2;
  scatter.onresize = () => { dirtyTerritory = true; renderCharts(); renderQuality(); invalidate(); };
  wireCanvas();
  wireControls();
  wireSpaceOnButtons();
  try {
    S.run = await api.run(() => showMessage('waiting for the run to start…'));
  } catch (e) {
    showMessage(`Cannot reach the tardis server: ${e.message}`);
    return;
  }
  const r = S.run;
  // The page keeps classes in one byte per sample (255: unknown), so a run
  // of more is refused in words rather than drawn with wrapped classes.
  if (r.classes.length > NONE) {
    showMessage(`This run has ${r.classes.length} classes; the web UI shows at most ${NONE}. ` +
      'The HTTP API serves it (docs/api.md: class arrays come as int16).');
    return;
  }
  S.liveAvail = !!r.follow;
  $('follow-wrap').hidden = !S.liveAvail;
  // On while epochs still arrive: training, or a finished run still being drawn.
  setFollow(!!r.follow && (!r.finished || !!r.drawing));
  S.classes = r.classes;
  S.nTrain = r.n_train;
  S.nTest = r.n_test || 0;
  S.N = S.nTrain + S.nTest;
  // A subset run: row i of the training split is training sample S.subset[i].
  S.subset = r.subset ? await api.subset() : null;
  document.title = `tardis · ${r.name}`;
  const trainText = S.subset ? `${fmtInt(r.n_train)} of ${fmtInt(r.n_train_all)} train (subset)` : `${fmtInt(r.n_train)} train`;
  $('run-name').textContent = `${r.name} · ${trainText}${S.nTest ? ` + ${fmtInt(S.nTest)} test` : ''}`;
  scatter.pointRadius = S.N > 30000 ? 1.6 : S.N > 8000 ? 2 : 2.6;

  const methods = r.methods || [];
  api.method = methods.includes(r.method) || !methods.length ? null : methods[0];
  if (methods.length > 1) {
    $('method-wrap').hidden = false;
    $('method').innerHTML = methods.map((m) => `<option${m === (api.method || r.method) ? ' selected' : ''}>${m}</option>`).join('');
  }
  if (!S.nTest) $('split-seg').hidden = true;

  const opts = r.classes.map((c, k) => `<option value="${k}">${c}</option>`).join('');
  $('f-label').insertAdjacentHTML('beforeend', opts);
  $('f-pred').insertAdjacentHTML('beforeend', opts);
  if (!r.files.train_truth) { $('f-noisy').disabled = true; $('f-noisy').title = 'the run has no clean labels (train_truth.npy)'; }
  S.hasTruth = !!r.files.train_truth;
  $('mark-noisy-wrap').hidden = !S.hasTruth;
  S.markNoisy = $('f-marknoisy').checked;
  $('f-marknoisy').addEventListener('change', (ev) => { S.markNoisy = ev.target.checked; invalidate(); });
  if (!S.hasTruth) $('color-by').querySelector('option[value="noise"]').disabled = true;
  renderLegend();
  $('color-by').addEventListener('change', (ev) => setColorBy(ev.target.value));
  $('export-png').addEventListener('click', (ev) => { ev.stopPropagation(); exportPng(); });
  $('export-svg').addEventListener('click', (ev) => { ev.stopPropagation(); exportView(); });
  wireCompare();
  startTasksAndAlerts();

  const [ltr, lte, tru] = await Promise.all([
    api.labels('train'),
    S.nTest && r.files.test_labels ? api.labels('test') : null,
    r.files.train_truth ? api.labels('truth') : null,
  ]);
  S.label = new Uint8Array(S.N).fill(NONE);
  S.label.set(ltr.subarray(0, S.nTrain), 0);
  if (lte) S.label.set(lte.subarray(0, S.nTest), S.nTrain);
  if (tru) { S.truth = new Uint8Array(S.N).fill(NONE); S.truth.set(tru.subarray(0, S.nTrain), 0); }

  // Open on the last projected epoch: the state the user trained towards.
  S.epochs = [];
  await refreshEpochs();
  await alerts.refresh();
  S.tpos = S.target = Math.max(0, S.epochs.length - 1);
  const urlEpoch = loadUrl();
  if (urlEpoch >= 0 && urlEpoch !== S.target) { S.tpos = S.target = urlEpoch; setFollow(false); }
  if (S.epochs.length) await loadEpoch(S.epochs[S.target]).catch(() => {});
  fitView();
  wireEvents();
  urlReady = true;
  readFilters();
  if (S.urlSelect !== undefined) select(S.urlSelect);
  if (S.urlCmp !== undefined) setCompare(S.urlCmp);
  startSuspects();
  diag.load().catch((e) => console.error(e));
  document.body.classList.add('ready');
  invalidate();
}

function startTasksAndAlerts() {
  const ctx = {
    S, api, className, swatch: (c) => swatch(c ?? NONE),
    displayedEpoch: () => dispEpoch(),
    gotoEpoch: (ep) => gotoEpoch(ep),
    onFilterChange: () => { S.filterVersion++; invalidate(); },
  };
  tasks = new TasksView(ctx);
  alerts = new AlertsView(ctx);
  diag = new DiagnosisView({ ...ctx, onChange: invalidate });
}

function startSuspects() {
  sus = new SuspectsPanel($('sus-panel'), {
    api,
    run: S.run,
    className,
    swatch: (c) => swatch(c ?? NONE),
    predOf: (i) => {
      const d = S.data.get(dispEpoch());
      return d && d.pred[i] !== NONE ? d.pred[i] : null;
    },
    truthOf: (i) => (S.truth && S.truth[i] !== NONE ? S.truth[i] : null),
    onChange: invalidate,
    onPick: (i) => select(i),
    // Replay the epochs from the first so the accepted trails grow as the points move.
    onPlay: () => {
      if (S.epochs.length < 2) return;
      S.tpos = S.target = 0;
      setPlaying(true);
    },
  });
  sus.start(); // continues the last session in the background
}

// Hooks for the end-to-end test and for measuring frame rates.
window.tardis = {
  state: S,
  ready: () => document.body.classList.contains('ready') && S.data.has(dispEpoch()),
  allLoaded: () => S.epochs.every((e) => S.data.has(e)),
  displayedEpoch: () => dispEpoch(),
  settled: () => !S.playing && S.tpos === S.target,
  fps: () => frameTimes.length,
  following: () => S.follow,
  drafts: () => [...S.drafts],
  projections: () => projections,
  drawMs: () => drawTimes.reduce((s, v) => s + v, 0) / Math.max(1, drawTimes.length),
  colorBy: () => colorByOf(S.data.get(dispEpoch()), cmp.on ? cmp.data() : undefined),
  counts: () => lists && { dim: lists.dim.length, ok: lists.ok.length, bad: lists.bad.length, shown: lists.shownTotal },
  // Screen position (CSS px, relative to the canvas) of sample g at the frame on screen.
  screenOf: (g) => scatter.toScreen(cur[2 * g], cur[2 * g + 1]),
  play: (on) => setPlaying(on),
  goto: (ep) => gotoEpoch(ep),
  // Redraws the points n times with nothing else going on; mean ms per draw.
  benchDraw: (n = 30) => {
    const d = S.data.get(dispEpoch());
    const t0 = performance.now();
    for (let r = 0; r < n; r++) scatter.drawPoints(cur, lists, S.label, d.pred, zoomLevel(), S.nTrain, null, curLerp);
    scatter.finish();
    return (performance.now() - t0) / n;
  },
  scatter: () => scatter,
  renderer: () => scatter.renderer,
  pointMode: () => scatter.mode,
  // Draws the point layer again on the next frame (after a test changes the scatter's settings).
  redraw: () => { dirtyPoints = true; invalidate(); },
  // Median of each part of the recent frames (framePart above).
  frameParts: () => {
    const med = (k) => { const v = partMs.map((p) => p[k]).sort((a, b) => a - b); return v.length ? v[v.length >> 1] : NaN; };
    return { frames: partMs.length, interp: med('interp'), points: med('points'), overlay: med('overlay'), whole: med('whole') };
  },
  // The sample a pointer at (sx, sy) (CSS px in the canvas) hovers or picks.
  pickAt: (sx, sy) => nearestAt(sx, sy),
  trajectoryScreen: () => trajectoryScreenPoints(),
  neighbors: () => S.selNN,
  compare: () => cmp.on && { epoch: cmp.epoch, draws: cmp.draws, diff: cmpDiff.n, ready: !!cmp.data() && cmp.key !== '', marks: cmp.marks },
  compareScreenOf: (g) => cmp.screenOf(g),
  compareNearest: (sx, sy) => cmp.nearestAt(sx, sy),
  exportSvg: () => exportView(false),
  viewTerritory: () => viewTerr.cur && { epoch: viewTerr.cur.epoch, extent: viewTerr.cur.extent, loads: viewTerr.loads },
  suspects: () => sus,
  tasks: () => tasks,
  alerts: () => alerts,
  diagnosis: () => diag,
};

init();
