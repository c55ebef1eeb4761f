// The view on screen as an SVG document: the territory layer as an embedded
// PNG (it is a raster decoded by the server), every sample on screen as a
// vector shape (a circle, a square for test samples; a mispredicted sample a
// dot in its prediction's colour ringed in its label's, as on the canvas),
// dimmed samples faint, then the markers: noisy labels ×, the suspects
// round's diamonds, the selected sample's ring and trajectory. Each sample's
// element carries data-i (its global index: test samples after the training
// ones), so the file can be read back and checked.

import { classColor, DIM_RGB } from './colors.js';

const f2 = (v) => (Math.round(v * 100) / 100).toString();
const rgbOfPacked = (c) => `rgb(${c & 255},${(c >>> 8) & 255},${(c >>> 16) & 255})`;
const esc = (t) => String(t).replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]);

// o: {scatter, pos, lists {dim, ok, bad}, label, pred, nTrain, zoom, colorBy
//     ({idx, pal}) or null, noisy (Uint8Array truth, or null), suspects
//     [[i, 'none'|'accept'|'reject']], selected, trajectory [[e, x, y]], title}
export function exportSvg(o) {
  const sc = o.scatter, W = sc.W, H = sc.H;
  const r = sc.effectiveRadius(o.zoom);
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`,
    `<title>${esc(o.title)}</title>`,
    `<image id="territory" x="0" y="0" width="${W}" height="${H}" preserveAspectRatio="none" href="${sc.bg.toDataURL('image/png')}"/>`];
  const onScreen = (i) => {
    const x = o.pos[2 * i], y = o.pos[2 * i + 1];
    if (!Number.isFinite(x)) return null;
    const p = sc.toScreen(x, y);
    return p[0] > -2 * r && p[1] > -2 * r && p[0] < W + 2 * r && p[1] < H + 2 * r ? p : null;
  };
  const color = (i, c, c2) => {
    if (o.colorBy) return rgbOfPacked(o.colorBy.pal[o.colorBy.idx[i]]);
    const k = c[i] !== 255 ? c[i] : c2[i];
    return k === 255 ? '#9aa1ab' : classColor(k);
  };
  // One element per sample: circle (train) or square (test) of radius rad.
  const shape = (i, p, rad, attrs) => (i >= o.nTrain
    ? `<rect data-i="${i}" x="${f2(p[0] - 0.9 * rad)}" y="${f2(p[1] - 0.9 * rad)}" width="${f2(1.8 * rad)}" height="${f2(1.8 * rad)}" ${attrs}/>`
    : `<circle data-i="${i}" cx="${f2(p[0])}" cy="${f2(p[1])}" r="${f2(rad)}" ${attrs}/>`);

  out.push(`<g id="dimmed" fill="rgb(${DIM_RGB.join(',')})" fill-opacity="0.35">`);
  for (const i of o.lists.dim) { const p = onScreen(i); if (p) out.push(shape(i, p, Math.max(0.8, 0.7 * r), '')); }
  out.push('</g><g id="samples">');
  for (const i of o.lists.ok) { const p = onScreen(i); if (p) out.push(shape(i, p, r, `fill="${color(i, o.label, o.pred)}"`)); }
  const ringW = 0.9, rr = r + 1.2;
  for (const i of o.lists.bad) {
    const p = onScreen(i);
    if (!p) continue;
    out.push(o.colorBy ? shape(i, p, r, `fill="${color(i, o.label, o.pred)}"`)
      : shape(i, p, rr - ringW / 2, `fill="${color(i, o.pred, o.pred)}" stroke="${color(i, o.label, o.label)}" stroke-width="${ringW}"`));
  }
  out.push('</g>');

  if (o.noisy) {
    const d = [], m = 2.4;
    for (let i = 0; i < o.nTrain; i++) {
      const t = o.noisy[i];
      if (t === 255 || t === o.label[i]) continue;
      const p = onScreen(i);
      if (p) d.push(`M${f2(p[0] - m)} ${f2(p[1] - m)}L${f2(p[0] + m)} ${f2(p[1] + m)}M${f2(p[0] - m)} ${f2(p[1] + m)}L${f2(p[0] + m)} ${f2(p[1] - m)}`);
    }
    if (d.length) out.push(`<path id="noisy-labels" d="${d.join('')}" stroke="rgba(20,20,20,0.6)" stroke-width="1" fill="none"/>`);
  }
  const style = { none: 'fill="none" stroke="#d81b60" stroke-width="1.8"', accept: 'fill="rgba(216,27,96,0.55)" stroke="#d81b60" stroke-width="1.8"',
    reject: 'fill="none" stroke="#8a93a6" stroke-width="1.3"' };
  for (const v of ['reject', 'none', 'accept']) {
    const rad = v === 'reject' ? 5 : 6.5, d = [];
    for (const [i, w] of o.suspects) {
      if (w !== v) continue;
      const p = onScreen(i);
      if (p) d.push(`M${f2(p[0])} ${f2(p[1] - rad)}L${f2(p[0] + rad)} ${f2(p[1])}L${f2(p[0])} ${f2(p[1] + rad)}L${f2(p[0] - rad)} ${f2(p[1])}Z`);
    }
    if (d.length) out.push(`<path class="suspects-${v}" d="${d.join('')}" ${style[v]}/>`);
  }
  if (o.selected >= 0) {
    if (o.trajectory && o.trajectory.length > 1) {
      const pts = o.trajectory.map(([, x, y]) => sc.toScreen(x, y).map(f2).join(',')).join(' ');
      out.push(`<polyline id="trajectory" points="${pts}" fill="none" stroke="#1d2433" stroke-width="1.6" stroke-linejoin="round"/>`);
    }
    const p = onScreen(o.selected);
    if (p) out.push(`<circle id="selected" cx="${f2(p[0])}" cy="${f2(p[1])}" r="8" fill="none" stroke="#1d2433" stroke-width="2"/>`);
  }
  out.push('</svg>');
  return out.join('\n');
}
