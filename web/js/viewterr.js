// The territory of exactly what is on screen. The stored territory covers the
// square the epoch's samples were fitted into; zoomed out, or on a canvas wider
// than tall, the rest would be blank, and zoomed in its cells grow coarse. Once
// the view has been still for a moment the server decodes the visible rectangle
// (territory.png?view=x0,y0,x1,y1&w=&h=, docs/api.md) and that image is drawn
// over the stored one until the view or the epoch changes.

const SETTLE_MS = 180;

export class ViewTerritory {
  constructor(api, onload) {
    this.api = api;
    this.onload = onload;
    this.cur = null;   // {key, epoch, extent, img}
    this.want = '';
    this.timer = 0;
    this.loads = 0;    // images received (for the test)
  }

  // The layer to draw for the epoch on screen, or null.
  layer(epoch, alpha) {
    const c = this.cur;
    return c && c.epoch === epoch && alpha > 0 ? { extent: c.extent, img: c.img, alpha } : null;
  }

  // Called whenever the territory is redrawn; settled: no motion in progress.
  request(epoch, scatter, settled, rev) {
    clearTimeout(this.timer);
    if (!settled || epoch === undefined || !scatter.W || !scatter.H) return;
    const [x0, y1] = scatter.toData(0, 0);
    const [x1, y0] = scatter.toData(scatter.W, scatter.H);
    const ext = [x0, y0, x1, y1];
    const w = Math.round(scatter.W), h = Math.round(scatter.H);
    const key = `${epoch}|${rev}|${ext.map((v) => v.toPrecision(7)).join(',')}|${w}x${h}`;
    if (key === this.want || (this.cur && this.cur.key === key)) return;
    this.timer = setTimeout(() => this._load(key, epoch, ext, w, h, rev), SETTLE_MS);
  }

  async _load(key, epoch, ext, w, h, rev) {
    this.want = key;
    const img = new Image();
    img.src = this.api.territoryViewPng(epoch, ext, w, h) + (rev ? `&rev=${rev}` : '');
    try { await img.decode(); } catch { return; }
    if (this.want !== key) return; // the view moved on meanwhile
    this.cur = { key, epoch, extent: ext, img };
    this.loads++;
    this.onload();
  }
}
