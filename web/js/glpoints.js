// The point layer on WebGL 2 (docs/ui-scale.md): every sample is one
// gl.POINTS vertex whose disc, square (test sample) or ring is shaded in the
// fragment shader, so a frame costs one draw call per list (dimmed, correct,
// mispredicted) whatever the number of points. Arrays go to the GPU once
// (cached by identity: an array handed here must never be written again), and
// the motion between two epochs is interpolated in the vertex shader, so
// playing uploads nothing. Class colours come from a 256×1 palette texture.
// When the points would cover the canvas many times over, Scatter draws a
// density image instead (density.js), shown here by drawImage. Scatter
// (scatter.js) falls back to its Canvas2D splatter when WebGL 2 is missing.

const VS = `#version 300 es
precision highp float;
precision highp int;
layout(location = 0) in vec2 a_pa;
layout(location = 1) in vec2 a_pb;
layout(location = 2) in uint a_c1;
layout(location = 3) in uint a_c2;
uniform float u_t;
uniform vec2 u_k, u_off;
uniform int u_mode, u_firstTest;
uniform float u_size;
uniform sampler2D u_pal;
uniform vec3 u_fixed;
out vec3 v_c1;
out vec3 v_c2;
flat out float v_sq;
void main() {
  vec2 p = mix(a_pa, a_pb, u_t);
  if (isnan(p.x) || isnan(p.y)) { gl_Position = vec4(4.0, 4.0, 4.0, 1.0); gl_PointSize = 1.0; return; }
  gl_Position = vec4(p * u_k + u_off, 0.0, 1.0);
  gl_PointSize = u_size;
  v_sq = gl_VertexID >= u_firstTest ? 1.0 : 0.0;
  uint c = a_c1 != 255u ? a_c1 : a_c2;
  v_c1 = u_mode == 0 ? u_fixed : texelFetch(u_pal, ivec2(int(c), 0), 0).rgb;
  v_c2 = texelFetch(u_pal, ivec2(int(a_c2), 0), 0).rgb;
}`;

// u_r: the shape's radius (device px); mode 2 draws a ring of outer radius
// u_r and inner radius u_ringIn in colour 1 around a dot of radius u_inner in
// colour 2, the canvas path's "ring = label, dot = prediction".
const FS = `#version 300 es
precision highp float;
precision highp int;
in vec3 v_c1;
in vec3 v_c2;
flat in float v_sq;
uniform int u_mode;
uniform float u_r, u_ringIn, u_inner, u_alpha, u_size;
out vec4 o;
float cover(float d, float r) { return clamp(r + 0.5 - d, 0.0, 1.0); }
void main() {
  vec2 e = (gl_PointCoord - 0.5) * u_size;
  float d = v_sq > 0.5 ? max(abs(e.x), abs(e.y)) / 0.9 : length(e);
  vec4 c;
  if (u_mode == 2) {
    float ring = cover(d, u_r) - cover(d, u_ringIn);
    float inner = cover(d, u_inner);
    c = vec4(v_c2 * inner, inner) + vec4(v_c1 * ring, ring) * (1.0 - inner);
  } else {
    float a = cover(d, u_r) * u_alpha;
    c = vec4(v_c1 * a, a);
  }
  if (c.a < 0.016) discard;
  o = c;
}`;

// An RGBA image of cells (not premultiplied, row 0 at the top), each cell
// u_bin × u_bin device px, onto the canvas: one triangle over the viewport.
const IMG_VS = `#version 300 es
void main() {
  vec2 p = vec2(gl_VertexID == 1 ? 3.0 : -1.0, gl_VertexID == 2 ? 3.0 : -1.0);
  gl_Position = vec4(p, 0.0, 1.0);
}`;
const IMG_FS = `#version 300 es
precision highp float;
uniform sampler2D u_img;
uniform int u_h, u_bin;
out vec4 o;
void main() {
  vec4 c = texelFetch(u_img, ivec2(int(gl_FragCoord.x) / u_bin, (u_h - 1 - int(gl_FragCoord.y)) / u_bin), 0);
  o = vec4(c.rgb * c.a, c.a);
}`;

const CACHE_BYTES = 256 << 20; // GPU memory for cached arrays before the oldest go

function program(gl, vs, fs) {
  const p = gl.createProgram();
  gl.attachShader(p, compile(gl, gl.VERTEX_SHADER, vs));
  gl.attachShader(p, compile(gl, gl.FRAGMENT_SHADER, fs));
  gl.linkProgram(p);
  if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(`glpoints: link: ${gl.getProgramInfoLog(p)}`);
  return p;
}

function compile(gl, type, src) {
  const s = gl.createShader(type);
  gl.shaderSource(s, src);
  gl.compileShader(s);
  if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(`glpoints: shader: ${gl.getShaderInfoLog(s)}`);
  return s;
}

export class GlPoints {
  // Answers null where WebGL 2 is missing or the shaders do not build.
  static create(canvas) {
    let gl = null;
    try {
      gl = canvas.getContext('webgl2', { alpha: true, premultipliedAlpha: true, antialias: false, preserveDrawingBuffer: true });
      return gl ? new GlPoints(gl) : null;
    } catch (e) {
      console.warn(e.message);
      return null;
    }
  }

  constructor(gl) {
    this.gl = gl;
    const p = program(gl, VS, FS);
    this.prog = p;
    this.imgProg = program(gl, IMG_VS, IMG_FS);
    this.imgTex = null;
    this.u = {};
    for (const n of ['u_t', 'u_k', 'u_off', 'u_mode', 'u_firstTest', 'u_size', 'u_pal', 'u_fixed', 'u_r', 'u_ringIn', 'u_inner', 'u_alpha']) {
      this.u[n] = gl.getUniformLocation(p, n);
    }
    this.vao = gl.createVertexArray();
    this.bufs = new Map(); // typed array → {buf, bytes}, in use order (oldest first)
    this.bytes = 0;
    this.listsOf = null; // the lists object drawn last, and its index buffer
    this.L = null;
    this.pals = new Map(); // palette Uint32Array → texture
    this.maxSize = gl.getParameter(gl.ALIASED_POINT_SIZE_RANGE)[1];
    this.lost = false;
    gl.canvas.addEventListener('webglcontextlost', (ev) => { ev.preventDefault(); this.lost = true; });
  }

  // The GL buffer holding a typed array (uploaded on first use).
  _buffer(arr, target) {
    const gl = this.gl;
    let b = this.bufs.get(arr);
    if (b) { this.bufs.delete(arr); this.bufs.set(arr, b); return b.buf; } // now the newest
    b = { buf: gl.createBuffer(), bytes: arr.byteLength };
    gl.bindBuffer(target, b.buf);
    gl.bufferData(target, arr, gl.STATIC_DRAW);
    this.bufs.set(arr, b);
    this.bytes += b.bytes;
    for (const [k, old] of this.bufs) {
      if (this.bytes <= CACHE_BYTES || k === arr) break;
      gl.deleteBuffer(old.buf);
      this.bytes -= old.bytes;
      this.bufs.delete(k);
    }
    return b.buf;
  }

  _palette(pal) {
    const gl = this.gl;
    let t = this.pals.get(pal);
    if (t) return t;
    t = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, t);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, 256, 1, 0, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(pal.buffer, pal.byteOffset, 1024));
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    this.pals.set(pal, t);
    return t;
  }

  // One index buffer for the three lists, drawn as ranges of it. A scatter
  // draws one set of lists at a time: a new set replaces the buffer.
  _lists(lists) {
    if (this.listsOf === lists) return this.L;
    const gl = this.gl, parts = [lists.dim || new Int32Array(0), lists.ok, lists.bad];
    const all = new Uint32Array(parts.reduce((s, a) => s + a.length, 0));
    let off = 0;
    const ranges = parts.map((a) => { all.set(a, off); off += a.length; return [off - a.length, a.length]; });
    if (this.L) gl.deleteBuffer(this.L.buf);
    const buf = gl.createBuffer();
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, buf);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, all, gl.STATIC_DRAW);
    this.L = { buf, dim: ranges[0], ok: ranges[1], bad: ranges[2] };
    this.listsOf = lists;
    return this.L;
  }

  _attrib(loc, arr, size, int) {
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this._buffer(arr, gl.ARRAY_BUFFER));
    gl.enableVertexAttribArray(loc);
    if (int) gl.vertexAttribIPointer(loc, size, gl.UNSIGNED_BYTE, 0, 0);
    else gl.vertexAttribPointer(loc, size, gl.FLOAT, false, 0, 0);
  }

  // o: {pa, pb, t, lists, c1, c2 (Uint8Array per sample; for colour-by both
  // the palette indices), pal, firstTest, k, ox, oy (device px transform as
  // in scatter.js), W, H, r (radius of a correct sample, device px), dpr,
  // ringMode (mispredicted as ring + dot), dimRgb}
  draw(o) {
    const gl = this.gl, u = this.u;
    gl.viewport(0, 0, o.W, o.H);
    gl.clearColor(0, 0, 0, 0);
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (this.lost) return;
    gl.useProgram(this.prog);
    gl.bindVertexArray(this.vao);
    this._attrib(0, o.pa, 2, false);
    this._attrib(1, o.pb || o.pa, 2, false);
    const L = this._lists(o.lists);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, L.buf);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, this._palette(o.pal));
    gl.uniform1i(u.u_pal, 0);
    gl.uniform1f(u.u_t, o.pb ? o.t : 0);
    gl.uniform2f(u.u_k, (2 * o.k) / o.W, (2 * o.k) / o.H);
    gl.uniform2f(u.u_off, (2 * o.ox) / o.W - 1, 1 - (2 * o.oy) / o.H);
    gl.uniform1i(u.u_firstTest, Math.min(o.firstTest, 0x7fffffff));
    const r = o.r, dpr = o.dpr;
    const pass = (range, mode, rad, a, c1, c2, extra = {}) => {
      if (!range[1]) return;
      this._attrib(2, c1, 1, true);
      this._attrib(3, c2, 1, true);
      // Just wide enough for the anti-aliased edge (coverage ends at rad + 0.5):
      // the fragments shaded are the cost of a frame on a software rasteriser.
      const size = Math.min(this.maxSize, 2 * rad + 1.5);
      gl.uniform1i(u.u_mode, mode);
      gl.uniform1f(u.u_r, rad);
      gl.uniform1f(u.u_size, size);
      gl.uniform1f(u.u_alpha, a);
      gl.uniform1f(u.u_ringIn, extra.ringIn ?? -1);
      gl.uniform1f(u.u_inner, extra.inner ?? -1);
      gl.drawElements(gl.POINTS, range[1], gl.UNSIGNED_INT, range[0] * 4);
    };
    const [dr, dg, db] = o.dimRgb;
    gl.uniform3f(u.u_fixed, dr / 255, dg / 255, db / 255);
    pass(L.dim, 0, Math.max(0.8, r * 0.7), 0.35, o.c1, o.c2);
    pass(L.ok, 1, r, 1, o.c1, o.c2);
    if (o.ringMode) {
      // Mispredicted on top: ring in the label colour around a dot in the predicted one.
      const rr = r + 1.2 * dpr, ringW = Math.max(1, 0.9 * dpr);
      pass(L.bad, 2, rr, 1, o.c1, o.c2, { ringIn: rr - ringW - 0.35, inner: Math.max(0.7, r - 0.6 * dpr) });
    } else pass(L.bad, 1, r, 1, o.c1, o.c2);
    gl.bindVertexArray(null);
  }

  // Shows a density image (density.js: {rgba, w, h, bin}) as the point
  // layer of a W×H canvas.
  drawImage(img, W, H) {
    const gl = this.gl;
    gl.viewport(0, 0, W, H);
    gl.clearColor(0, 0, 0, 0);
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (this.lost) return;
    if (!this.imgTex) this.imgTex = gl.createTexture();
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, this.imgTex);
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 4);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, img.w, img.h, 0, gl.RGBA, gl.UNSIGNED_BYTE,
      new Uint8Array(img.rgba.buffer, img.rgba.byteOffset, 4 * img.w * img.h));
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    gl.useProgram(this.imgProg);
    gl.uniform1i(gl.getUniformLocation(this.imgProg, 'u_img'), 0);
    gl.uniform1i(gl.getUniformLocation(this.imgProg, 'u_h'), H);
    gl.uniform1i(gl.getUniformLocation(this.imgProg, 'u_bin'), img.bin);
    gl.bindVertexArray(this.vao);
    gl.disableVertexAttribArray(0); gl.disableVertexAttribArray(1);
    gl.disableVertexAttribArray(2); gl.disableVertexAttribArray(3);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    gl.bindVertexArray(null);
  }

  // Waits for the GPU to finish the frame (for timing only).
  finish() {
    const px = new Uint8Array(4);
    this.gl.readPixels(0, 0, 1, 1, this.gl.RGBA, this.gl.UNSIGNED_BYTE, px);
  }
}
