// The projection canvas: territory underneath, every sample on top, overlay for
// hover / selection / trajectory. The points are drawn with WebGL 2 where the
// browser has it (glpoints.js: a million points per frame, docs/ui-scale.md);
// otherwise (or with ?gl=0 in the page's URL) they are splatted into an
// ImageData buffer (no per-point canvas calls), which keeps 70k points
// interactive on a software rasteriser. The territory is drawn with drawImage
// on its own layer.

import { classColor, hexToRgb, DIM_RGB } from './colors.js';
import { GlPoints } from './glpoints.js';
import { Density, crowding } from './density.js';

// Above this crowding (density.js) the point layer is a density image: the
// points would cover the canvas more than twice over. ?density=0 in the
// page's URL turns it off (every point drawn, for comparison).
const DENSITY_AT = 2;

const SUB = 4; // sub-pixel phases per axis, so slow motion does not jump by whole pixels
// Colours packed as little-endian RGBA words (alpha added per pixel).
const pack = ([r, g, b]) => (b << 16) | (g << 8) | r;
const PACKED = Uint32Array.from({ length: 256 }, (_, c) => pack(hexToRgb(classColor(c))));
const PACKED_DIM = pack(DIM_RGB);

// Anti-aliased coverage sprites for a disc (or ring, with rIn) of radius r in
// device px, one per sub-pixel phase. Coverage is stored as integer alpha
// 0..255 already multiplied by the layer's opacity.
// square: the shape of test samples (Chebyshev distance, a square of side ~1.8 r).
function discSprite(r, fx, fy, rIn, alpha, square) {
  const R = Math.ceil(r + 1);
  const dx = [], dy = [], a = [];
  for (let y = -R; y <= R; y++) {
    for (let x = -R; x <= R; x++) {
      const ex = x + 0.5 - fx, ey = y + 0.5 - fy;
      const d = square ? Math.max(Math.abs(ex), Math.abs(ey)) / 0.9 : Math.hypot(ex, ey);
      let c = Math.min(1, Math.max(0, r + 0.5 - d));
      if (rIn >= 0) c -= Math.min(1, Math.max(0, rIn + 0.5 - d));
      const A = Math.round(c * alpha * 255);
      if (A > 4) { dx.push(x); dy.push(y); a.push(A); }
    }
  }
  return { R, dx: Int16Array.from(dx), dy: Int16Array.from(dy), a: Uint8Array.from(a), off: null };
}

function spriteSet(r, rIn, alpha, W, square = false) {
  const set = [];
  for (let j = 0; j < SUB; j++) {
    for (let i = 0; i < SUB; i++) {
      const s = discSprite(r, i / SUB, j / SUB, rIn, alpha, square);
      // Linear pixel offsets for the fast path (sprite fully inside the buffer).
      s.off = Int32Array.from(s.dx, (x, k) => s.dy[k] * W + x);
      set.push(s);
    }
  }
  return set;
}

// Stamps every sample of ids with one sprite set and one colour per sample,
// blending with "over" into a non-premultiplied RGBA buffer. Opaque pixels are
// written as one 32-bit store; only anti-aliased edges do arithmetic.
// cls / cls2: per-sample class arrays (cls2 is the fallback where cls is 255);
// with cls null every sample gets the colour `fixed`.
// Samples from index `firstTest` on (test samples) use setTest (squares).
function stampAll(buf, W, H, pos, ids, k, ox, oy, sets, cls, cls2, fixed, firstTest, pal = PACKED) {
  const [setTrain, setTest] = sets;
  const R = Math.max(setTrain[0].R, setTest[0].R) + 1;
  for (let q = 0; q < ids.length; q++) {
    const i = ids[q];
    const sx = pos[2 * i] * k + ox, sy = oy - pos[2 * i + 1] * k;
    if (!(sx > -R && sy > -R && sx < W + R && sy < H + R)) continue; // also drops NaN
    const ix = Math.floor(sx), iy = Math.floor(sy);
    const set = i >= firstTest ? setTest : setTrain;
    const s = set[(((sy - iy) * SUB) | 0) * SUB + (((sx - ix) * SUB) | 0)];
    let col = fixed;
    if (cls) { const c = cls[i]; col = pal[c !== 255 ? c : cls2[i]]; }
    const cr = col & 255, cg = (col >>> 8) & 255, cb = (col >>> 16) & 255;
    const A = s.a, n = A.length;
    const inside = ix - R >= 0 && iy - R >= 0 && ix + R < W && iy + R < H;
    const base = iy * W + ix;
    for (let j = 0; j < n; j++) {
      let p;
      if (inside) p = base + s.off[j];
      else {
        const x = ix + s.dx[j], y = iy + s.dy[j];
        if (x < 0 || y < 0 || x >= W || y >= H) continue;
        p = y * W + x;
      }
      const a = A[j];
      const dst = buf[p];
      const da = dst >>> 24;
      if (a === 255 || da === 0) { buf[p] = ((a << 24) | (col & 0xffffff)) >>> 0; continue; }
      const dr = dst & 255, dg = (dst >>> 8) & 255, db = (dst >>> 16) & 255;
      if (da === 255) {
        const na = 255 - a;
        buf[p] = (0xff000000 | ((((cb * a + db * na) / 255) | 0) << 16) |
          ((((cg * a + dg * na) / 255) | 0) << 8) | (((cr * a + dr * na) / 255) | 0)) >>> 0;
      } else {
        const af = a / 255, oa = af + (da / 255) * (1 - af), w = af / oa, nw = 1 - w;
        buf[p] = ((((oa * 255) | 0) << 24) | (((cb * w + db * nw) | 0) << 16) |
          (((cg * w + dg * nw) | 0) << 8) | ((cr * w + dr * nw) | 0)) >>> 0;
      }
    }
  }
}

export class Scatter {
  constructor(wrap) {
    this.wrap = wrap;
    this.bg = this._layer('bg');
    this.pts = this._layer('pts');
    this.ov = this._layer('ov');
    const q = new URLSearchParams(location.search);
    const noGl = q.get('gl') === '0';
    this.densityAt = q.get('density') === '0' ? Infinity : DENSITY_AT;
    this.density = new Density();
    this.mode = 'points'; // what the last drawPoints drew: 'points' or 'density'
    this.gl = noGl ? null : GlPoints.create(this.pts);
    if (!this.gl && !noGl) { // a failed WebGL start may leave the canvas unusable for 2-D
      const c = this._layer('pts');
      this.pts.replaceWith(c);
      this.pts = c;
    }
    this.renderer = this.gl ? 'webgl2' : 'canvas2d';
    this.view = { cx: 0, cy: 0, scale: 1 }; // data → CSS px
    this.W = 1; this.H = 1; this.dpr = 1;
    this.pointRadius = 2; // CSS px, for correct samples
    this.img = null;
    this.lastDrawMs = 0;
    new ResizeObserver(() => this.resize()).observe(wrap);
    this.resize();
  }

  _layer(name) {
    const c = document.createElement('canvas');
    c.className = `layer layer-${name}`;
    this.wrap.prepend(c);
    return c;
  }

  resize() {
    const r = this.wrap.getBoundingClientRect();
    const W = Math.max(1, Math.round(r.width));
    const H = Math.max(1, Math.round(r.height));
    // Cap the backing scale: the splat cost grows with the pixel count.
    const dpr = Math.min(2, window.devicePixelRatio || 1);
    if (W === this.W && H === this.H && dpr === this.dpr && this.img) return;
    const old = { W: this.W, H: this.H };
    this.W = W; this.H = H; this.dpr = dpr;
    for (const c of [this.bg, this.pts, this.ov]) {
      c.width = Math.round(W * dpr);
      c.height = Math.round(H * dpr);
      c.style.width = `${W}px`;
      c.style.height = `${H}px`;
    }
    if (!this.gl) {
      this.img = this.pts.getContext('2d').createImageData(this.pts.width, this.pts.height);
      this.buf32 = new Uint32Array(this.img.data.buffer);
    } else this.img = true;
    this._sprites = null;
    if (this.onresize) this.onresize(old);
  }

  // ---- view transform -------------------------------------------------------
  toScreen(x, y) {
    const v = this.view;
    return [(x - v.cx) * v.scale + this.W / 2, this.H / 2 - (y - v.cy) * v.scale];
  }
  toData(sx, sy) {
    const v = this.view;
    return [(sx - this.W / 2) / v.scale + v.cx, v.cy - (sy - this.H / 2) / v.scale];
  }
  // insetLeft / insetTop: CSS px on the left / at the top kept clear (the
  // legend sits there).
  fit(ext, margin = 0.97, insetLeft = 0, insetTop = 0) {
    const [x0, y0, x1, y1] = ext;
    const w = Math.max(1e-9, x1 - x0), h = Math.max(1e-9, y1 - y0);
    const inset = Math.min(insetLeft, 0.5 * this.W), top = Math.min(insetTop, 0.5 * this.H);
    const scale = margin * Math.min((this.W - inset) / w, (this.H - top) / h);
    this.view = {
      cx: (x0 + x1) / 2 - inset / 2 / scale,
      cy: (y0 + y1) / 2 + top / 2 / scale,
      scale,
    };
  }
  zoomAt(sx, sy, factor) {
    const [x, y] = this.toData(sx, sy);
    this.view.scale *= factor;
    const [x2, y2] = this.toData(sx, sy);
    this.view.cx += x - x2;
    this.view.cy += y - y2;
  }
  panBy(dsx, dsy) {
    this.view.cx -= dsx / this.view.scale;
    this.view.cy += dsy / this.view.scale;
  }

  // Radius grows gently with zoom so that zooming in separates points.
  effectiveRadius(zoom) {
    return this.pointRadius * Math.min(3, Math.max(1, Math.pow(zoom, 0.35)));
  }

  _ensureSprites(zoom) {
    const r = this.effectiveRadius(zoom) * this.dpr;
    const W = this.pts.width;
    const key = `${Math.round(r * 8)}|${W}`;
    if (this._sprites && this._sprites.key === key) return this._sprites;
    const ringW = Math.max(1, 0.9 * this.dpr);
    const rr = r + 1.2 * this.dpr;
    const both = (rad, rIn, alpha) => [spriteSet(rad, rIn, alpha, W), spriteSet(rad, rIn, alpha, W, true)];
    this._sprites = {
      key,
      dot: both(r, -1, 1),
      dim: both(Math.max(0.8, r * 0.7), -1, 0.35),
      ring: both(rr, rr - ringW - 0.35, 1),
      inner: both(Math.max(0.7, r - 0.6 * this.dpr), -1, 1),
    };
    return this._sprites;
  }

  // ---- territory layer ------------------------------------------------------
  // layers: [{img, extent, alpha}] drawn in order.
  drawTerritory(layers) {
    const ctx = this.bg.getContext('2d');
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, this.W, this.H);
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = 'high';
    for (const l of layers) {
      if (!l.img || !l.img.complete || !l.img.naturalWidth || l.alpha <= 0) continue;
      const [x0, y0, x1, y1] = l.extent;
      const [sx0, sy0] = this.toScreen(x0, y1);
      const [sx1, sy1] = this.toScreen(x1, y0);
      ctx.globalAlpha = l.alpha;
      ctx.drawImage(l.img, sx0, sy0, sx1 - sx0, sy1 - sy0);
    }
    ctx.globalAlpha = 1;
  }

  // ---- point layer ----------------------------------------------------------
  // pos: Float32Array [2N] data coordinates; lists: {dim, ok, bad} Int32Arrays of
  // sample ids in draw order; label/pred: Uint8Array [N] (255 = unknown).
  // Samples from index firstTest on are test samples, drawn as squares.
  // colorBy: {idx: Uint8Array [N] palette indices, pal: Uint32Array [256]} or null.
  // lerp: {a, b, t} when pos is a blend a + (b - a) t of two arrays, which
  // WebGL draws from a and b (already on the GPU) rather than from pos.
  // WebGL keeps every array it is given on the GPU, found again by identity:
  // never write into an array once drawn (pass lerp for a blend buffer).
  drawPoints(pos, lists, label, pred, zoom, firstTest = Infinity, colorBy = null, lerp = null) {
    const t0 = performance.now();
    const n = (lists.dim ? lists.dim.length : 0) + lists.ok.length + lists.bad.length;
    const rDev = this.effectiveRadius(zoom) * this.dpr;
    if (crowding(n, zoom, rDev, this.pts.width, this.pts.height) > this.densityAt) {
      this._drawDensity(pos, lists, label, pred, colorBy, lerp);
      this.mode = 'density';
      this.lastDrawMs = performance.now() - t0;
      return;
    }
    this.mode = 'points';
    if (this.gl) {
      const W = this.pts.width, H = this.pts.height, v = this.view, k = v.scale * this.dpr;
      this.gl.draw({
        pa: lerp ? lerp.a : pos, pb: lerp ? lerp.b : null, t: lerp ? lerp.t : 0, lists,
        c1: colorBy ? colorBy.idx : label, c2: colorBy ? colorBy.idx : pred, pal: colorBy ? colorBy.pal : PACKED,
        ringMode: !colorBy, firstTest, k, ox: W / 2 - v.cx * k, oy: H / 2 + v.cy * k, W, H,
        r: rDev, dpr: this.dpr, dimRgb: DIM_RGB,
      });
      this.lastDrawMs = performance.now() - t0;
      return;
    }
    const sp = this._ensureSprites(zoom);
    const W = this.pts.width, H = this.pts.height, buf = this.buf32;
    buf.fill(0);
    const v = this.view, k = v.scale * this.dpr;
    const ox = W / 2 - v.cx * k, oy = H / 2 + v.cy * k;
    const ft = firstTest;
    if (lists.dim && lists.dim.length) stampAll(buf, W, H, pos, lists.dim, k, ox, oy, sp.dim, null, null, PACKED_DIM, ft);
    if (colorBy) {
      // Colour-by: every shown sample a dot in its value's colour, no rings.
      stampAll(buf, W, H, pos, lists.ok, k, ox, oy, sp.dot, colorBy.idx, colorBy.idx, 0, ft, colorBy.pal);
      stampAll(buf, W, H, pos, lists.bad, k, ox, oy, sp.dot, colorBy.idx, colorBy.idx, 0, ft, colorBy.pal);
    } else {
      stampAll(buf, W, H, pos, lists.ok, k, ox, oy, sp.dot, label, pred, 0, ft);
      // Mispredicted on top: ring in the label colour around a dot in the predicted one.
      stampAll(buf, W, H, pos, lists.bad, k, ox, oy, sp.ring, label, label, 0, ft);
      stampAll(buf, W, H, pos, lists.bad, k, ox, oy, sp.inner, pred, pred, 0, ft);
    }
    this.pts.getContext('2d').putImageData(this.img, 0, 0);
    this.lastDrawMs = performance.now() - t0;
  }

  _drawDensity(pos, lists, label, pred, colorBy, lerp) {
    const W = this.pts.width, H = this.pts.height, v = this.view, k = v.scale * this.dpr;
    const img = this.density.render({
      pos, lerp, lists, c1: colorBy ? colorBy.idx : label, c2: colorBy ? colorBy.idx : pred,
      cBad: colorBy ? colorBy.idx : pred, pal: colorBy ? colorBy.pal : PACKED, dimRgb: DIM_RGB,
      k, ox: W / 2 - v.cx * k, oy: H / 2 + v.cy * k, W, H,
    });
    if (this.gl) { this.gl.drawImage(img, W, H); return; }
    // Canvas2D: the cells into a small canvas, scaled up without smoothing.
    if (!this._cells || this._cells.width !== img.w || this._cells.height !== img.h) {
      this._cells = document.createElement('canvas');
      this._cells.width = img.w; this._cells.height = img.h;
      this._cellsImg = this._cells.getContext('2d').createImageData(img.w, img.h);
    }
    new Uint32Array(this._cellsImg.data.buffer).set(img.rgba);
    this._cells.getContext('2d').putImageData(this._cellsImg, 0, 0);
    const ctx = this.pts.getContext('2d');
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this._cells, 0, 0, img.w * img.bin, img.h * img.bin);
  }

  // RGBA bytes (not premultiplied, as getImageData) of the point layer, read
  // through a 2-D copy whatever draws it (tests and exports).
  pointPixels() {
    if (!this.gl) return this.pts.getContext('2d').getImageData(0, 0, this.pts.width, this.pts.height).data;
    const c = document.createElement('canvas');
    c.width = this.pts.width; c.height = this.pts.height;
    const ctx = c.getContext('2d');
    ctx.drawImage(this.pts, 0, 0);
    return ctx.getImageData(0, 0, c.width, c.height).data;
  }

  // Waits until the points drawn are on the canvas (timing only).
  finish() {
    if (this.gl) this.gl.finish();
  }

  overlayContext() {
    const ctx = this.ov.getContext('2d');
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.clearRect(0, 0, this.W, this.H);
    return ctx;
  }
}

// Uniform grid over the current positions of the hoverable samples, so that the
// nearest sample to the cursor is found by looking at a few cells, not 70k points.
export class GridIndex {
  build(pos, ids) {
    const n = ids.length;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (let q = 0; q < n; q++) {
      const i = ids[q], x = pos[2 * i], y = pos[2 * i + 1];
      if (x < x0) x0 = x; if (x > x1) x1 = x;
      if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    if (!n) { this.n = 0; return; }
    const G = Math.max(1, Math.min(512, Math.round(Math.sqrt(n / 2))));
    const w = Math.max(1e-9, x1 - x0) / G, h = Math.max(1e-9, y1 - y0) / G;
    const cell = new Int32Array(n);
    const start = new Int32Array(G * G + 1);
    for (let q = 0; q < n; q++) {
      const i = ids[q];
      const cx = Math.min(G - 1, ((pos[2 * i] - x0) / w) | 0);
      const cy = Math.min(G - 1, ((pos[2 * i + 1] - y0) / h) | 0);
      cell[q] = cy * G + cx;
      start[cell[q] + 1]++;
    }
    for (let c = 0; c < G * G; c++) start[c + 1] += start[c];
    const fillAt = start.slice(0, G * G);
    const items = new Int32Array(n);
    for (let q = 0; q < n; q++) items[fillAt[cell[q]]++] = ids[q];
    Object.assign(this, { n, G, x0, y0, w, h, start, items, pos });
  }

  // Nearest sample within radius r (data units), or -1.
  nearest(x, y, r) {
    if (!this.n) return -1;
    const { G, x0, y0, w, h, start, items, pos } = this;
    const ca = Math.max(0, Math.floor((x - r - x0) / w)), cb = Math.min(G - 1, Math.floor((x + r - x0) / w));
    const ra = Math.max(0, Math.floor((y - r - y0) / h)), rb = Math.min(G - 1, Math.floor((y + r - y0) / h));
    let best = -1, bd = r * r;
    for (let cy = ra; cy <= rb; cy++) {
      for (let cx = ca; cx <= cb; cx++) {
        const c = cy * G + cx;
        for (let q = start[c]; q < start[c + 1]; q++) {
          const i = items[q];
          const dx = pos[2 * i] - x, dy = pos[2 * i + 1] - y;
          const dd = dx * dx + dy * dy;
          // Later items are drawn on top; prefer them on ties.
          if (dd <= bd) { bd = dd; best = i; }
        }
      }
    }
    return best;
  }
}
