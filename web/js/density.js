// Density rendering of the point layer, for when the points would cover the
// canvas several times over (hundreds of thousands of samples zoomed out,
// docs/ui-scale.md): every sample is binned into the 2×2 device-pixel cell it
// falls on, and each cell shows the weighted mean colour of its samples with an
// opacity that grows with their number, so dense regions read as solid
// colour, sparse ones as faint dust, and a lone outlier still shows. One pass
// over the samples and one over the pixels: no per-point drawing, which is
// what a software rasteriser cannot afford a million times per frame.
// Mispredicted samples weigh 8× and are binned in the colour of their
// prediction (the canvas's "dot"), so a wrong region shows through its
// cluster; dimmed (filtered-out) samples weigh little and are grey.

const W_DIM = 1, W_OK = 3, W_BAD = 24;
// Opacity (0..255) of a pixel holding n samples: 1 - exp(-n / 1.5), at least ~45 %.
const ALPHA = Uint8Array.from({ length: 64 }, (_, n) => (n ? Math.round(255 * Math.max(0.45, 1 - Math.exp(-n / 1.5))) : 0));

export class Density {
  constructor() {
    this.bin = 2;    // device px per cell side
    this.acc = null; // per cell: weighted r, g, b sums, weight sum, count
    this.out = null; // RGBA (little-endian words, not premultiplied), a cell a pixel
    this.touched = null; // the cells holding samples (only they are composed and cleared)
    this.nTouched = 0;
  }

  // o: {pos, lerp ({a, b, t} or null: positions a + (b - a) t), lists {dim,
  // ok, bad}, c1, c2 (per-sample palette indices: the colour is c1's, or c2's
  // where c1 is 255), cBad (index array for mispredicted samples), pal
  // (Uint32Array [256] packed RGB), dimRgb, k, ox, oy, W, H (device px)}.
  // Answers {rgba (Uint32Array [w·h], reused across calls), w, h, bin}: cell
  // (x, y) covers device px [x·bin, (x+1)·bin) × [y·bin, (y+1)·bin).
  render(o) {
    const B = this.bin, w = Math.ceil(o.W / B), h = Math.ceil(o.H / B), P = w * h;
    if (!this.acc || this.out.length !== P) {
      this.acc = new Uint32Array(5 * P);
      this.out = new Uint32Array(P);
      this.touched = new Int32Array(P);
    } else {
      const { acc, out, touched } = this;
      for (let m = 0; m < this.nTouched; m++) {
        const c = touched[m], q = 5 * c;
        acc[q] = acc[q + 1] = acc[q + 2] = acc[q + 3] = acc[q + 4] = 0;
        out[c] = 0;
      }
    }
    const { acc, touched } = this;
    let nt = 0;
    const s = o.k / B, ox = o.ox / B, oy = o.oy / B, pal = o.pal;
    const a = o.lerp ? o.lerp.a : o.pos, b = o.lerp ? o.lerp.b : o.pos, t = o.lerp ? o.lerp.t : 0;
    const bin = (ids, cA, cB, fixed, wt) => {
      for (let q = 0; q < ids.length; q++) {
        const i = ids[q], j = 2 * i;
        const x = a[j] + (b[j] - a[j]) * t, y = a[j + 1] + (b[j + 1] - a[j + 1]) * t;
        const sx = x * s + ox, sy = oy - y * s;
        if (!(sx >= 0 && sy >= 0 && sx < w && sy < h)) continue; // also drops NaN
        const c = (sy | 0) * w + (sx | 0), p = 5 * c;
        let col = fixed;
        if (cA) { const k = cA[i]; col = pal[k !== 255 ? k : cB[i]]; }
        if (acc[p + 4] === 0) touched[nt++] = c;
        acc[p] += (col & 255) * wt;
        acc[p + 1] += ((col >>> 8) & 255) * wt;
        acc[p + 2] += ((col >>> 16) & 255) * wt;
        acc[p + 3] += wt;
        acc[p + 4]++;
      }
    };
    const [dr, dg, db] = o.dimRgb;
    if (o.lists.dim && o.lists.dim.length) bin(o.lists.dim, null, null, (db << 16) | (dg << 8) | dr, W_DIM);
    bin(o.lists.ok, o.c1, o.c2, 0, W_OK);
    bin(o.lists.bad, o.cBad, o.cBad, 0, W_BAD);
    this.nTouched = nt;
    const out = this.out;
    for (let m = 0; m < nt; m++) {
      const c = touched[m], q = 5 * c, n = acc[q + 4], wsum = acc[q + 3];
      out[c] = ((ALPHA[n < 63 ? n : 63] << 24) | (((acc[q + 2] / wsum) | 0) << 16) |
        (((acc[q + 1] / wsum) | 0) << 8) | ((acc[q] / wsum) | 0)) >>> 0;
    }
    return { rgba: out, w, h, bin: B };
  }
}

// How many times over the points would cover the canvas: points in view
// (estimated as n / zoom², the data filling the canvas at zoom 1) × disc area
// / canvas area, all in device px.
export function crowding(n, zoom, r, W, H) {
  return (n / Math.max(1, zoom * zoom)) * Math.PI * r * r / (W * H);
}
