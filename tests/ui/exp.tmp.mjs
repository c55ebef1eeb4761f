import { chromium } from 'playwright-core';
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless','--no-sandbox','--disable-gpu'] });
const page = await b.newPage({ viewport: { width: 1440, height: 900 } });
await page.goto(process.argv[2]);
await page.waitForFunction(() => window.tardis && window.tardis.ready(), null, { timeout: 600000 });
const r = await page.evaluate(() => {
  const t = window.tardis, G = t.scatter().gl.constructor, orig = G.lod;
  const out = {};
  out.normal = t.benchDraw(5);
  G.lod = (n, z, r) => [0.5 / r, 1]; out.pixel = t.benchDraw(5);
  G.lod = (n, z, r) => [1, 1]; out.full = t.benchDraw(5);
  G.lod = orig;
  // empty draw: only clear + readPixels
  const sc = t.scatter();
  const L = { dim: new Int32Array(0), ok: new Int32Array(0), bad: new Int32Array(0) };
  let t0 = performance.now(); for (let k = 0; k < 5; k++) sc.drawPoints(t.state.data.get(t.displayedEpoch()).pos, L, t.state.label, t.state.data.get(t.displayedEpoch()).pred, 1, 1e9); sc.finish(); out.empty = (performance.now() - t0) / 5;
  return out;
});
console.log(JSON.stringify(r));
await b.close();
