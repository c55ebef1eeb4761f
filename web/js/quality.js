// Projection-quality panel: per-epoch metrics from /api/epochs (quality) with a
// sparkline each, and the run-level ones from /api/quality.

// [key, name, short explanation (shown), full explanation (tooltip), higher is better]
const METRICS = [
  ['nn@15', 'nn@15', 'neighbours kept in 2-D', 'share of each sample’s 15 nearest neighbours (high-dim) that stay its neighbours on the canvas', true],
  ['test_nn@15', 'test nn@15', 'same, test samples', 'nn@15 of the test samples', true],
  ['boundary_nn@15', 'boundary nn@15', 'same, boundary samples', 'nn@15 among the boundary samples', true],
  ['ppr', 'ppr', 'prediction kept by inverse', 'share of samples whose prediction survives encoder → decoder → head', true],
  ['test_ppr', 'test ppr', 'same, test samples', 'ppr of the test samples (the inverse never saw them)', true],
  ['territory_agree', 'on own class', 'drawn on own prediction', 'share of samples drawn on their predicted class’s territory', true],
  ['unsure', 'unsure', 'classifier unsure (pale)', 'share of samples the classifier itself hardly prefers a class for; drawn on pale territory', false],
  ['boundary_kept', 'boundary kept', 'boundary samples on pale', 'share of boundary samples landing where the territory is unsure', true],
  ['inv_conf_diff', 'conf. diff', 'confidence moved by inverse', 'mean confidence change through the inverse (lower is better)', false],
];

function spark(points, cur, good) {
  const W = 92, H = 22, p = 2;
  const ys = points.map((q) => q[1]);
  const xs = points.map((q) => q[0]);
  if (points.length < 2) return `<svg width="${W}" height="${H}"></svg>`;
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
  const X = (x) => p + ((x - x0) / (x1 - x0)) * (W - 2 * p);
  const Y = (y) => H - p - ((y - y0) / (y1 - y0)) * (H - 2 * p);
  const d = points.map((q, i) => `${i ? 'L' : 'M'}${X(q[0]).toFixed(1)},${Y(q[1]).toFixed(1)}`).join('');
  const c = points.find((q) => q[0] === cur);
  const color = good ? '#3b6fb6' : '#8a6d3b';
  return `<svg width="${W}" height="${H}" class="spark"><path d="${d}" fill="none" stroke="${color}" stroke-width="1.3"/>` +
    (c ? `<circle cx="${X(c[0])}" cy="${Y(c[1])}" r="2.6" fill="#fff" stroke="${color}" stroke-width="1.4"/>` : '') + '</svg>';
}

export function qualityPanel(el, epochInfo, quality, current) {
  const rows = [];
  for (const [key, name, short, help, good] of METRICS) {
    const pts = epochInfo
      .filter((e) => e.quality && typeof e.quality[key] === 'number')
      .map((e) => [e.epoch, e.quality[key]]);
    if (!pts.length) continue;
    const c = pts.find((q) => q[0] === current);
    rows.push(`<tr title="${help}"><td class="qn">${name}<div class="qh">${short}</div></td><td class="qv">${c ? c[1].toFixed(3) : '—'}</td><td>${spark(pts, current, good)}</td></tr>`);
  }
  const extra = [];
  if (quality && typeof quality.temporal_corr === 'number') {
    extra.push(`<span title="per sample, the Pearson correlation over epoch pairs of its high-dim kNN overlap and its 2-D movement, averaged (more negative is better). With few epochs it mostly rewards a projection whose overall movement shrinks as training settles (PCA: −0.71 on a 6k run, −0.05 once each pair&#39;s mean is removed; docs/projection.md)">temporal corr <b>${quality.temporal_corr.toFixed(3)}</b> <span class="qh">(more negative: moves follow neighbourhood changes)</span></span>`);
  }
  if (quality && typeof quality.temporal_corr_test === 'number') {
    extra.push(`<span>test <b>${quality.temporal_corr_test.toFixed(3)}</b></span>`);
  }
  if (!rows.length && !extra.length) {
    el.innerHTML = '<div class="muted small">No metrics yet — run <code>tardis eval RUN</code>.</div>';
    return;
  }
  el.innerHTML = `<table class="qt">${rows.join('')}</table>` + (extra.length ? `<div class="qx">${extra.join(' · ')}</div>` : '');
}
