// Small hand-written SVG line charts (training curves, quality metrics).

const NS = 'http://www.w3.org/2000/svg';

function el(tag, attrs = {}, parent = null) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function niceTicks(lo, hi, n = 3) {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0) || step0;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}

// series: [{name, color, points: [[x, y], ...], dash?}]
// opts: {title, height, yMin, yMax, current (x), fmt (y → text), onPick (x)}
export function lineChart(container, series, opts = {}) {
  container.textContent = '';
  const W = container.clientWidth || 300, H = opts.height || 110;
  const m = { l: 34, r: 8, t: 18, b: 18 };
  const svg = el('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'lc' }, container);
  const all = series.flatMap((s) => s.points.filter((p) => Number.isFinite(p[1])));
  if (opts.title) el('text', { x: 0, y: 11, class: 'lc-title' }, svg).textContent = opts.title;
  if (!all.length) {
    el('text', { x: W / 2, y: H / 2, class: 'lc-empty', 'text-anchor': 'middle' }, svg).textContent = 'no data';
    return;
  }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  if (x0 === x1) { x0 -= 0.5; x1 += 0.5; }
  let y0 = opts.yMin ?? Math.min(...ys), y1 = opts.yMax ?? Math.max(...ys);
  if (opts.yMin === undefined || opts.yMax === undefined) {
    const pad = (y1 - y0) * 0.08 || Math.abs(y1) * 0.1 || 0.1;
    if (opts.yMin === undefined) y0 -= pad;
    if (opts.yMax === undefined) y1 += pad;
  }
  const X = (x) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const Y = (y) => m.t + (1 - (y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const fmt = opts.fmt || ((v) => (Math.abs(v) >= 10 ? v.toFixed(0) : v.toFixed(2)));

  for (const t of niceTicks(y0, y1, 3)) {
    el('line', { x1: m.l, x2: W - m.r, y1: Y(t), y2: Y(t), class: 'lc-grid' }, svg);
    el('text', { x: m.l - 4, y: Y(t) + 3, class: 'lc-tick', 'text-anchor': 'end' }, svg).textContent = fmt(t);
  }
  for (const t of niceTicks(x0, x1, Math.min(6, Math.round(x1 - x0)) || 1).filter(Number.isInteger)) {
    el('text', { x: X(t), y: H - 4, class: 'lc-tick', 'text-anchor': 'middle' }, svg).textContent = t;
  }
  if (opts.current !== undefined && opts.current !== null) {
    el('line', { x1: X(opts.current), x2: X(opts.current), y1: m.t - 4, y2: H - m.b, class: 'lc-now' }, svg);
  }
  // Legend, right-aligned on the title line.
  let lx = W - m.r;
  for (const s of [...series].reverse()) {
    const t = el('text', { x: lx, y: 11, class: 'lc-leg', 'text-anchor': 'end', fill: s.color }, svg);
    t.textContent = s.name;
    lx -= s.name.length * 6 + 12;
  }
  for (const s of series) {
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    if (!pts.length) continue;
    el('path', {
      d: pts.map((p, i) => `${i ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(''),
      class: 'lc-line', stroke: s.color, ...(s.dash ? { 'stroke-dasharray': s.dash } : {}),
    }, svg);
    if (pts.length < 40) {
      for (const p of pts) el('circle', { cx: X(p[0]), cy: Y(p[1]), r: 1.8, fill: s.color }, svg);
    }
    const cur = pts.find((p) => p[0] === opts.current);
    if (cur) el('circle', { cx: X(cur[0]), cy: Y(cur[1]), r: 3.2, fill: '#fff', stroke: s.color, 'stroke-width': 1.6 }, svg);
  }
  if (opts.onPick) {
    svg.style.cursor = 'pointer';
    svg.addEventListener('click', (ev) => {
      const r = svg.getBoundingClientRect();
      const x = x0 + ((ev.clientX - r.left - m.l) / (W - m.l - m.r)) * (x1 - x0);
      opts.onPick(Math.round(x));
    });
  }
}
