// Point-layer cost at sizes beyond the run served: replicates the samples on
// screen (with a small jitter) to N points and times Scatter.drawPoints in
// headless Debian chromium (software rendering), the dominant cost of a frame
// while playing, and a whole playing frame (interpolation, territory, points,
// overlay marks) (docs/ui.md).
//   node bench_points.mjs URL [N ...]      (default 70000 300000)
import { chromium } from 'playwright-core';

const [url, ...ns] = process.argv.slice(2);
if (!url) { console.error('usage: node bench_points.mjs URL [N ...]'); process.exit(2); }
const sizes = ns.length ? ns.map(Number) : [70000, 300000];
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'] });
const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
await page.goto(url);
await page.waitForFunction(() => window.tardis && window.tardis.ready() && window.tardis.allLoaded(), null, { timeout: 60000 });
for (const N of sizes) {
  const r = await page.evaluate((N) => {
    const t = window.tardis, st = t.state, sc = t.scatter();
    const d = st.data.get(t.displayedEpoch()), n0 = st.N;
    const pos = new Float32Array(2 * N), label = new Uint8Array(N), pred = new Uint8Array(N);
    let seed = 1;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296 - 0.5) * 0.3;
    const ok = [], bad = [];
    for (let i = 0; i < N; i++) {
      const g = i % n0;
      pos[2 * i] = d.pos[2 * g] + rnd(); pos[2 * i + 1] = d.pos[2 * g + 1] + rnd();
      label[i] = st.label[g]; pred[i] = d.pred[g];
      (label[i] !== pred[i] ? bad : ok).push(i);
    }
    const lists = { dim: new Int32Array(0), ok: Int32Array.from(ok), bad: Int32Array.from(bad) };
    sc.drawPoints(pos, lists, label, pred, 1, N);
    const times = [];
    for (let k = 0; k < 15; k++) { const t0 = performance.now(); sc.drawPoints(pos, lists, label, pred, 1, N); sc.finish(); times.push(performance.now() - t0); }
    times.sort((a, b) => a - b);
    // A whole frame while playing: interpolate every position between two
    // epochs, redraw the territory (stored square, cross-fade), the points,
    // and the overlay's noisy-label marks (10 % of the points).
    const pos2 = pos.map((v, k) => v + (k % 2 ? 0.5 : -0.5)), interp = new Float32Array(2 * N);
    const terr = d.terr ? [{ ...d.terr, alpha: 1 }, { ...d.terr, alpha: 0.5 }] : [];
    const frames = [];
    for (let k = 0; k < 15; k++) {
      const t0 = performance.now(), f = (k + 1) / 16;
      for (let j = 0; j < 2 * N; j++) interp[j] = pos[j] + (pos2[j] - pos[j]) * f;
      sc.drawTerritory(terr);
      // WebGL blends the two arrays itself (interp is written every frame: never hand it over alone).
      sc.drawPoints(interp, lists, label, pred, 1, N, null, { a: pos, b: pos2, t: f });
      const ctx = sc.overlayContext();
      ctx.beginPath();
      for (let i = 0; i < N; i += 10) {
        const [x, y] = sc.toScreen(interp[2 * i], interp[2 * i + 1]);
        ctx.moveTo(x - 2.4, y - 2.4); ctx.lineTo(x + 2.4, y + 2.4); ctx.moveTo(x - 2.4, y + 2.4); ctx.lineTo(x + 2.4, y - 2.4);
      }
      ctx.stroke();
      sc.ov.getContext('2d').getImageData(0, 0, 1, 1); // wait for the canvas work to finish
      sc.finish();
      frames.push(performance.now() - t0);
    }
    frames.sort((a, b) => a - b);
    return { median: times[7], p90: times[13], frame: frames[7], frame90: frames[13] };
  }, N);
  console.log(`${N} points (${await page.evaluate(() => `${window.tardis.renderer()}, ${window.tardis.pointMode()}`)}): point layer median ${r.median.toFixed(1)} ms, p90 ${r.p90.toFixed(1)} ms; ` +
    `whole frame median ${r.frame.toFixed(1)} ms, p90 ${r.frame90.toFixed(1)} ms`);
}
await browser.close();
