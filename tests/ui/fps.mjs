// Frame-rate measurement of the web UI in headless Debian chromium (not a test):
//   node fps.mjs URL [seconds] [screenshot.png]
// Plays through the epochs of the run served at URL and reports frames per second
// and the time spent drawing the points, for the record in docs/ui.md.

import { playFrames } from './play_frames.mjs';
import { launchChromium } from './tardis_proc.mjs';

const [url, secs = '6', shot] = process.argv.slice(2);
if (!url) { console.error('usage: node fps.mjs URL [seconds] [screenshot.png]'); process.exit(2); }
const browser = await launchChromium();
const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
page.on('pageerror', (e) => console.log('page error:', e.message));
await page.goto(url);
await page.waitForFunction(() => window.tardis && window.tardis.ready() && window.tardis.allLoaded(), null, { timeout: 120000 });
const info = await page.evaluate(() => ({ n: window.tardis.state.N, epochs: window.tardis.state.epochs.length }));
const ua = await browser.version();
const res = await playFrames(page, +secs * 1000);
res.drawMs = await page.evaluate(() => { window.tardis.play(false); return window.tardis.drawMs(); });
const still = await page.evaluate(() => window.tardis.benchDraw(30));
console.log(`chromium ${ua}, ${info.n} points, ${info.epochs} epochs, viewport 1440x900`);
console.log(`playing: ${res.fps.toFixed(1)} frames/s, frame interval median ${res.p50.toFixed(1)} ms, p95 ${res.p95.toFixed(1)} ms`);
console.log(`point layer draw: ${res.drawMs.toFixed(1)} ms while playing, ${still.toFixed(1)} ms alone`);
if (shot) await page.screenshot({ path: shot });
await browser.close();
