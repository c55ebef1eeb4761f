// Checks of a subset run (docs/storage.md), run by ui.test.mjs: a small run
// that records 300 of its 1500 training samples in float16, projected and
// served by a `tardis serve` of its own. The page draws the 300 rows and
// names each by its training index (RUN/subset.npy), never by its row.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { serve, tardis } from './tardis_proc.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

export async function subsetChecks({ browser, check, expect }) {
  const bin = process.env.TD_BIN;
  const web = process.env.TD_WEB || path.resolve(HERE, '../../web');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tardis-ui-subset.'));
  const runDir = path.join(tmp, 'run');
  let server = null, page = null;
  const errors = [];
  try {
    await check('a subset run names its samples by training index', async () => {
      tardis(bin, ['train', '--out', runDir, '--epochs', '2', '--limit', '1500', '--record-subset', '300',
        '--repr-dtype', 'float16', '--no-model', '--quiet'], 600000);
      tardis(bin, ['project', runDir, '--method', 'pca'], 600000);
      server = await serve(bin, runDir, web, 60000);
      page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
      page.on('pageerror', (e) => errors.push(String(e)));
      page.on('response', (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`); });
      await page.goto(server.url);
      await page.waitForFunction(() => window.tardis && window.tardis.ready(), null, { timeout: 60000 });
      const T = (f, a) => page.evaluate(f, a);
      const st = await T(() => ({ n: window.tardis.state.nTrain, sub: Array.from(window.tardis.state.subset || []) }));
      expect(st.n === 300 && st.sub.length === 300, `nTrain ${st.n}, subset of ${st.sub.length}`);
      const name = await page.textContent('#run-name');
      expect(name.includes('300 of 1,500 train (subset)'), `run name "${name}"`);
      const served = await T(async () => {
        const token = document.querySelector('meta[name="tardis-token"]')?.content || '';
        const r = await fetch('/api/subset', { headers: { 'X-Tardis-Token': token } });
        return Array.from(new Int32Array(await r.arrayBuffer()));
      });
      expect(served.length === 300 && served.every((v, i) => v === st.sub[i]), 'page subset differs from /api/subset');
      // A training row whose training index differs from its row number.
      const g = await T(() => {
        const t = window.tardis, S = t.state, sc = t.scatter();
        for (let r = 0; r < S.nTrain; r++) {
          if (S.subset[r] === r) continue;
          const [x, y] = t.screenOf(r);
          if (x < 250 || y < 40 || x > sc.W - 40 || y > sc.H - 40) continue;
          let alone = true;
          for (let h = 0; h < S.N && alone; h++) {
            if (h === r) continue;
            const [u, v] = t.screenOf(h);
            if (Math.hypot(u - x, v - y) < 5) alone = false;
          }
          if (alone) return r;
        }
        return -1;
      });
      expect(g >= 0, 'no isolated training row found');
      const box = await page.locator('#canvas-wrap').boundingBox();
      const [sx, sy] = await T((r) => window.tardis.screenOf(r), g);
      await page.mouse.move(box.x + sx + 1, box.y + sy + 1);
      await page.waitForSelector('#tooltip:not([hidden])', { timeout: 60000 });
      const title = await page.textContent('#tt-title');
      expect(title === `train #${st.sub[g]}`, `tooltip "${title}" for row ${g} (sample ${st.sub[g]})`);
      await page.mouse.click(box.x + sx + 1, box.y + sy + 1);
      await page.waitForFunction(() => window.tardis.state.selInfo !== null, null, { timeout: 60000 });
      const dl = await page.textContent('#sel-dl');
      expect(dl.includes(`train #${st.sub[g]}`), `sample panel: ${dl}`);
      expect(errors.length === 0, errors.join(' | '));
    });
  } finally {
    if (page) await page.close();
    if (server) { server.proc.kill('SIGTERM'); }
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
