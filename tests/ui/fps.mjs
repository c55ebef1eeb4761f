// Frame-rate measurement of the web UI in headless Debian chromium (not a test):
//   node fps.mjs URL [seconds] [screenshot.png]
// Plays through the epochs of the run served at URL and reports frames per second
// and the time spent drawing the points, for the record in docs/ui.md.

import { chromium } from 'playwright-core';

const [url, secs = '6', shot] = process.argv.slice(2);
if (!url) { console.error('usage: node fps.mjs URL [seconds] [screenshot.png]'); process.exit(2); }
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
page.on('pageerror', (e) => console.log('page error:', e.message));
await page.goto(url);
await page.waitForFunction(() => window.tardis && window.tardis.ready() && window.tardis.allLoaded(), null, { timeout: 120000 });
const info = await page.evaluate(() => ({ n: window.tardis.state.N, epochs: window.tardis.state.epochs.length }));
const ua = await browser.version();
// Play at a speed that keeps moving for the whole measurement.
const res = await page.evaluate(async (ms) => {
  const t = window.tardis;
  t.state.speed = Math.max(0.25, (t.state.epochs.length - 1) / (ms / 1000));
  t.state.tpos = t.state.target = 0;
  t.play(true);
  const times = [];
  await new Promise((done) => {
    const t0 = performance.now();
    const tick = (now) => { times.push(now); if (now - t0 < ms) requestAnimationFrame(tick); else done(); };
    requestAnimationFrame(tick);
  });
  t.play(false);
  const gaps = times.slice(1).map((v, k) => v - times[k]).sort((a, b) => a - b);
  return {
    fps: (times.length - 1) / ((times[times.length - 1] - times[0]) / 1000),
    p50: gaps[Math.floor(gaps.length / 2)],
    p95: gaps[Math.floor(gaps.length * 0.95)],
    drawMs: t.drawMs(),
  };
}, +secs * 1000);
const still = await page.evaluate(() => window.tardis.benchDraw(30));
console.log(`chromium ${ua}, ${info.n} points, ${info.epochs} epochs, viewport 1440x900`);
console.log(`playing: ${res.fps.toFixed(1)} frames/s, frame interval median ${res.p50.toFixed(1)} ms, p95 ${res.p95.toFixed(1)} ms`);
console.log(`point layer draw: ${res.drawMs.toFixed(1)} ms while playing, ${still.toFixed(1)} ms alone`);
if (shot) await page.screenshot({ path: shot });
await browser.close();
