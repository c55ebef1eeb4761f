// Load time and frame time of the web UI on a big run, in headless Debian
// chromium (not a test; bench/ui_scale.sh drives it, docs/ui-scale.md):
//   node bench_scale.mjs URL [seconds] [screenshot-prefix]
// Reports: the renderer the page chose; the time from navigation to the first
// epoch drawn and to every epoch loaded; the longest main-thread task while
// loading (PerformanceObserver "longtask": how long the page was blocked);
// frame intervals while playing through the epochs (requestAnimationFrame);
// one point-layer draw alone (finished on the GPU); a hover pick (first one
// builds the spatial index). Screenshots at rest, zoomed in, and mid-motion.
// Set URL's query to ?gl=0 to measure the Canvas2D fallback.

import { playFrames } from './play_frames.mjs';
import { launchChromium } from './tardis_proc.mjs';

const [url, secs = '6', shot] = process.argv.slice(2);
if (!url) { console.error('usage: node bench_scale.mjs URL [seconds] [screenshot-prefix]'); process.exit(2); }
const browser = await launchChromium();
const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
page.on('pageerror', (e) => console.log('page error:', e.message));
page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') console.log(`console ${m.type()}: ${m.text()}`); });
await page.addInitScript(() => {
  window.__long = [];
  new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push([e.startTime, e.duration]); })
    .observe({ type: 'longtask', buffered: true });
});
const t0 = Date.now();
await page.goto(url);
await page.waitForFunction(() => window.tardis && window.tardis.ready(), null, { timeout: 600000, polling: 50 });
const tFirst = Date.now() - t0;
await page.waitForFunction(() => window.tardis.allLoaded(), null, { timeout: 600000, polling: 50 });
const tAll = Date.now() - t0;
const info = await page.evaluate(() => {
  const t = window.tardis, L = window.__long;
  return {
    n: t.state.N, epochs: t.state.epochs.length, renderer: `${t.renderer()} (${t.pointMode()})`,
    longMax: L.reduce((m, [, d]) => Math.max(m, d), 0), longSum: L.reduce((s, [, d]) => s + d, 0), longN: L.length,
  };
});
console.log(`chromium ${browser.version()}, ${info.n} points, ${info.epochs} epochs, renderer ${info.renderer}, viewport 1440x900`);
console.log(`load: first epoch drawn ${(tFirst / 1000).toFixed(2)} s, all epochs ${(tAll / 1000).toFixed(2)} s; ` +
  `longest main-thread task ${info.longMax.toFixed(0)} ms (${info.longN} tasks over 50 ms, ${info.longSum.toFixed(0)} ms in all)`);
if (shot) await page.screenshot({ path: `${shot}-rest.png` });

const res = await playFrames(page, +secs * 1000);
res.parts = await page.evaluate(() => window.tardis.frameParts());
if (shot) await page.screenshot({ path: `${shot}-moving.png` });
await page.evaluate(() => window.tardis.play(false));
await page.waitForFunction(() => window.tardis.settled(), null, { timeout: 60000 });
console.log(`playing: ${res.fps.toFixed(1)} frames/s over ${res.frames} frames, frame interval median ${res.p50.toFixed(1)} ms, p95 ${res.p95.toFixed(1)} ms`);
const P = res.parts;
console.log(`  main thread per frame (median): ${P.whole.toFixed(1)} ms = interpolation ${P.interp.toFixed(1)} + points ${P.points.toFixed(1)} + overlay ${P.overlay.toFixed(1)} + territory/rest`);

const still = await page.evaluate(() => window.tardis.benchDraw(10));
console.log(`point layer alone (finished): ${still.toFixed(1)} ms`);
const pick = await page.evaluate(() => {
  const t = window.tardis, g = t.state.nTrain >> 1;
  const [sx, sy] = t.screenOf(g);
  let t0 = performance.now();
  const a = t.pickAt(sx, sy);
  const first = performance.now() - t0;
  t0 = performance.now();
  for (let k = 0; k < 100; k++) t.pickAt(sx + (k % 7), sy - (k % 5));
  // The sample picked is g, or one drawn at the very same place (ties go to the one on top).
  const [ax, ay] = a >= 0 ? t.screenOf(a) : [NaN, NaN];
  return { first, next: (performance.now() - t0) / 100, ok: a === g || Math.hypot(ax - sx, ay - sy) < 0.01 };
});
console.log(`hover pick: first ${pick.first.toFixed(1)} ms (builds the grid unless idle time did), then ${pick.next.toFixed(3)} ms; picked the sample under the pointer: ${pick.ok}`);
if (shot) {
  // Zoomed in 8× at the middle of the canvas: the level of detail gives way to rings and dots.
  const box = await page.locator('#canvas-wrap').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  for (let k = 0; k < 8; k++) await page.mouse.wheel(0, -240);
  await page.waitForTimeout(500);
  await page.screenshot({ path: `${shot}-zoom.png` });
}
await browser.close();
