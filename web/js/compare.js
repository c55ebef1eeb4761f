// The compare view: a second canvas beside the main one showing another epoch
// (B) of the same run, with the same camera, filters and colouring, so that a
// point's place in both epochs is the same place on both canvases. The main
// canvas stays the timeline's epoch (A). Hovering or clicking a sample in
// either pane rings it in both; colour-by "prediction changed" compares A with
// B while the view is open (main.js), which makes it a diff of who flipped.

import { Scatter, GridIndex } from './scatter.js';
import { ViewTerritory } from './viewterr.js';

export class ComparePane {
  // ctx: {S, api, dataOf(e), loadEpoch(e), listsFor(d), colorByOf(d, other),
  //       zoomLevel(), hoverAt(i, sx, sy, pane), select(i), mainScatter(),
  //       userView(), panBy(dx, dy), zoomAt(sx, sy, f), fit(), invalidate(),
  //       drawMarks(ctx, pos, scatter) -> {suspects, noisy}: the main pane's
  //       sample marks (suspect diamonds, noisy-label ×) at these positions}
  constructor(wrap, ctx) {
    this.wrap = wrap;
    this.ctx = ctx;
    this.on = false;
    this.epoch = null;  // epoch B
    this.scatter = null;
    this.lists = null;
    this.key = '';      // what the territory and points were drawn for
    this.grid = new GridIndex();
    this.gridKey = '';
    this.vt = null;
    this.draws = 0;     // point-layer draws (for the test)
    this.marks = null;  // what drawMarks drew last (for the test)
  }

  open(epoch) {
    const { S } = this.ctx;
    if (!S.epochs.includes(epoch)) return false;
    this.epoch = epoch;
    this.on = true;
    this.wrap.hidden = false;
    document.body.classList.add('comparing');
    if (!this.scatter) {
      this.scatter = new Scatter(this.wrap);
      this.scatter.onresize = () => { this.key = ''; this.ctx.invalidate(); };
      this.vt = new ViewTerritory(this.ctx.api, () => { this.key = ''; this.ctx.invalidate(); });
      this._wire();
    }
    this.scatter.pointRadius = this.ctx.mainScatter().pointRadius;
    this.key = '';
    this.ctx.loadEpoch(epoch);
    return true;
  }

  close() {
    this.on = false;
    this.wrap.hidden = true;
    document.body.classList.remove('comparing');
  }

  data() { return this.on ? this.ctx.dataOf(this.epoch) : null; }

  // Called from the main frame after the main canvas is drawn. dA: the epoch
  // on screen in the main pane (A) — its predictions are the diff's reference.
  draw(dA, settled, force) {
    const d = this.data();
    if (!d || !this.scatter) return;
    const { S } = this.ctx;
    const sc = this.scatter, main = this.ctx.mainScatter();
    // Its own epoch's extent, as the main pane follows A's (DVI's scales
    // differ between epochs); once the user zooms or pans either pane, the
    // main pane's camera (both panes are the same size).
    if (this.ctx.userView()) sc.view = { ...main.view };
    else sc.fit(d.extent, 0.97, 0, this.wrap.querySelector('.pane-tag').offsetHeight + 14);
    const cb = this.ctx.colorByOf(d, dA);
    const v = sc.view;
    const key = `${d.epoch}|${S.filterVersion}|${S.split}|${cb ? S.colorBy : ''}|${dA ? dA.epoch : ''}|` +
      `${v.cx},${v.cy},${v.scale}|${sc.W}x${sc.H}|${!!cb}`;
    if (key !== this.key || force) {
      this.lists = this.ctx.listsFor(d);
      const layers = [];
      if (d.terr) layers.push({ ...d.terr, alpha: 1 });
      const vl = this.vt.layer(d.epoch, 1);
      if (vl) layers.push(vl);
      sc.drawTerritory(layers);
      this.vt.request(d.epoch, sc, settled, S.rev.get(d.epoch) || 0);
      sc.drawPoints(d.pos, this.lists, S.label, d.pred, this.ctx.zoomLevel(), S.nTrain, cb);
      this.draws++;
      this.key = key;
      this.gridKey = '';
    }
    this.drawOverlay(d);
  }

  drawOverlay(d) {
    const { S } = this.ctx;
    const ctx = this.scatter.overlayContext();
    const ring = (i, r, color, w) => {
      const x = d.pos[2 * i], y = d.pos[2 * i + 1];
      if (!Number.isFinite(x)) return;
      const [sx, sy] = this.scatter.toScreen(x, y);
      ctx.beginPath(); ctx.arc(sx, sy, r, 0, 2 * Math.PI);
      ctx.strokeStyle = '#fff'; ctx.lineWidth = w + 2.5; ctx.stroke();
      ctx.strokeStyle = color; ctx.lineWidth = w; ctx.stroke();
    };
    // The same marks as pane A, so that a noisy or suspected sample can be
    // followed from one epoch to the other (test samples are squares in both).
    this.marks = this.ctx.drawMarks(ctx, d.pos, this.scatter);
    if (S.selected >= 0) ring(S.selected, 8, '#1d2433', 2);
    if (S.hover >= 0 && S.hover !== S.selected) ring(S.hover, 6.5, '#1d2433', 1.5);
  }

  // Screen position (CSS px in this pane) of sample g at epoch B.
  screenOf(g) {
    const d = this.data();
    return d ? this.scatter.toScreen(d.pos[2 * g], d.pos[2 * g + 1]) : [NaN, NaN];
  }

  nearestAt(sx, sy) {
    const d = this.data();
    if (!d || !this.lists) return -1;
    if (this.gridKey !== this.key) {
      this.grid.build(d.pos, this.lists.active.length ? this.lists.active : new Int32Array(0));
      this.gridKey = this.key;
    }
    const [x, y] = this.scatter.toData(sx, sy);
    return this.grid.nearest(x, y, 9 / this.scatter.view.scale);
  }

  // Hover and click pick samples at epoch B; wheel and drag move the shared
  // camera (main.js's handlers on the main pane do the same).
  _wire() {
    const w = this.wrap;
    let drag = null;
    const local = (ev) => { const r = w.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; };
    const onTag = (ev) => ev.target.closest('.pane-tag');
    w.addEventListener('pointerdown', (ev) => {
      if (ev.button !== 0 || onTag(ev)) return;
      drag = { x: ev.clientX, y: ev.clientY, moved: false };
      w.setPointerCapture(ev.pointerId);
    });
    w.addEventListener('pointermove', (ev) => {
      if (drag) {
        const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
        if (drag.moved || Math.hypot(dx, dy) > 3) {
          drag.moved = true;
          this.ctx.panBy(dx, dy);
          drag.x = ev.clientX; drag.y = ev.clientY;
          return;
        }
      }
      if (onTag(ev)) { this.ctx.hoverAt(-1); return; }
      const [sx, sy] = local(ev);
      this.ctx.hoverAt(this.nearestAt(sx, sy), sx, sy, this);
    });
    w.addEventListener('pointerup', (ev) => {
      if (drag && !drag.moved && !onTag(ev)) this.ctx.select(this.nearestAt(...local(ev)));
      drag = null;
    });
    w.addEventListener('pointerleave', () => this.ctx.hoverAt(-1));
    w.addEventListener('wheel', (ev) => {
      ev.preventDefault();
      this.ctx.zoomAt(...local(ev), Math.exp(-ev.deltaY * 0.0015));
    }, { passive: false });
    w.addEventListener('dblclick', (ev) => { if (!onTag(ev)) this.ctx.fit(); });
  }
}

// Number of samples whose prediction differs between two epochs' data.
export function countChanged(a, b) {
  if (!a || !b) return 0;
  let n = 0;
  for (let i = 0; i < a.pred.length; i++) n += a.pred[i] !== 255 && b.pred[i] !== 255 && a.pred[i] !== b.pred[i];
  return n;
}
