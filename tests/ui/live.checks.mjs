// Checks of live mode, run by ui.test.mjs: `tardis train --serve` (TD_BIN from
// run.sh) trains a small run while the page is open; new epochs must appear
// without a reload, the "live" toggle must follow the newest drawn epoch while
// on and stay put while off, and a projection the server replaces (a draft
// redone) must replace the page's copy. Waits are deadlines, never sleeps.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startServing } from './tardis_proc.mjs';

const EPOCHS = 10;

// Starts the training with its server; resolves with the URL it reports.
function trainServe(bin, runDir) {
  return startServing(bin, ['train', '--out', runDir, '--epochs', String(EPOCHS), '--limit', '4000',
    '--seed', '1', '--quiet', '--force', '--serve', '--port', '0'],
  /serving .* live at (http:\/\/127\.0\.0\.1:\d+)/, 20000, 'tardis train --serve');
}

export async function liveChecks({ browser, outDir, check, expect }) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tardis-ui-live.'));
  const runDir = path.join(tmp, 'run');
  const errors = [];
  let trainer = null, page = null, base = '', n0 = 0;
  const T = (expr, arg) => page.evaluate(expr, arg);
  const wait = (fn, arg, ms = 60000) => page.waitForFunction(fn, arg, { timeout: ms });
  const epochsOnPage = () => T(() => window.tardis.state.epochs.slice());

  try {
    await check('live: the page opens while `train --serve` trains and waits for the first epoch', async () => {
      trainer = await trainServe(process.env.TD_BIN, runDir);
      base = trainer.url;
      page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('console', (m) => {
        if (m.type() === 'error' && !/^Failed to load resource: .* status of 503 /.test(m.text())) errors.push(`console: ${m.text()}`);
      });
      // 503 + Retry-After is "still computing" (docs/api.md), which the page retries.
      page.on('response', (r) => {
        if (r.status() >= 400 && !(r.status() === 503 && r.headers()['retry-after'])) errors.push(`${r.status()} ${r.url()}`);
      });
      await page.goto(base);
      await wait(() => document.body.classList.contains('ready'), null, 30000);
      await T(() => { window.__sameDocument = true; }); // gone if the page reloads
      n0 = (await epochsOnPage()).length;
      expect(n0 < EPOCHS, `every epoch was drawn before the page loaded (${n0}); nothing live to see`);
      expect(await page.isVisible('#follow') && await page.isChecked('#follow'), 'live toggle shown and on');
      console.log(`     the page opened with ${n0} of ${EPOCHS} epochs drawn`);
      if (n0 === 0) {
        const msg = await page.textContent('#message');
        expect(/waiting for the first epoch/.test(msg), `empty run shows "${msg}"`);
      }
    });

    await check('live: new epochs appear without a reload and the view follows the newest', async () => {
      await wait((n) => window.tardis.state.epochs.length > Math.max(n, 1), n0);
      await wait(() => {
        const S = window.tardis.state, last = S.epochs[S.epochs.length - 1];
        return window.tardis.displayedEpoch() === last && window.tardis.settled() && S.data.has(last);
      });
      const s = await T(() => ({
        same: window.__sameDocument === true,
        max: +document.getElementById('epoch-slider').max,
        n: window.tardis.state.epochs.length,
        message: document.getElementById('message').hidden,
        of: document.getElementById('epoch-of').textContent,
        last: window.tardis.state.epochs[window.tardis.state.epochs.length - 1],
        status: document.getElementById('live-text').textContent,
      }));
      expect(s.same, 'the page reloaded');
      expect(s.max === s.n - 1, `slider max ${s.max} for ${s.n} epochs`);
      expect(s.message, 'the waiting message is still shown');
      expect(s.of.includes(String(s.last)), `epoch label "${s.of}"`);
      expect(/recorded .* drawn/.test(s.status), `status bar "${s.status}"`);
      await page.screenshot({ path: path.join(outDir, 'live.png') });
    });

    await check('live: stepping by hand turns it off; the chosen epoch stays while epochs arrive', async () => {
      const before = await epochsOnPage();
      await page.locator('#epoch-slider').fill('0');
      await wait(() => window.tardis.settled(), null, 30000);
      expect(!(await page.isChecked('#follow')) && !(await T(() => window.tardis.following())), 'live still on');
      const chosen = await T(() => window.tardis.displayedEpoch());
      expect(chosen === before[0], `shows ${chosen}, chose ${before[0]}`);
      const p0 = await T(() => window.tardis.projections());
      // Until the server has drawn every epoch (and redone its drafts).
      const deadline = Date.now() + 300000; // generous: the server projects on a loaded 2-core CI machine
      for (;;) {
        const r = await (await fetch(new URL('api/run', base))).json();
        const ep = await (await fetch(new URL('api/epochs', base))).json();
        if (r.finished && r.projecting === null && ep.epochs.length === EPOCHS && ep.epochs.every((e) => e.projected)) break;
        expect(Date.now() < deadline, 'the server did not draw every epoch in 300 s');
        expect(await T(() => window.tardis.displayedEpoch()) === chosen, 'the view left the chosen epoch');
        await page.waitForTimeout(250);
      }
      await wait((n) => window.tardis.state.epochs.length === n && window.tardis.allLoaded(), EPOCHS, 30000);
      const after = await T(() => ({ e: window.tardis.displayedEpoch(), p: window.tardis.projections() }));
      expect(after.p > p0, 'no projection arrived while live was off');
      expect(after.e === chosen, `the view moved to ${after.e} from ${chosen}`);
    });

    await check('live: turning it on again jumps to the newest epoch', async () => {
      await page.locator('#follow').check();
      await wait((n) => window.tardis.displayedEpoch() === n && window.tardis.settled(), EPOCHS, 30000);
      expect(await T(() => window.tardis.following()), 'live off');
    });

    await check('live: the page holds the final projection of every epoch (redrawn drafts reloaded)', async () => {
      // Once the server has drawn every epoch and redone its drafts (already so
      // unless the check before failed early).
      const until = Date.now() + 300000;
      for (;;) {
        const r = await (await fetch(new URL('api/run', base))).json();
        const ep = await (await fetch(new URL('api/epochs', base))).json();
        if (r.finished && r.projecting === null && ep.epochs.length === EPOCHS && ep.epochs.every((e) => e.projected && !e.draft)) break;
        expect(Date.now() < until, 'the server did not draw every epoch in 300 s');
        await page.waitForTimeout(250);
      }
      const method = (await (await fetch(new URL('api/epochs', base))).json()).method;
      const deadline = Date.now() + 20000;
      let stale = [];
      do {
        stale = [];
        for (let e = 1; e <= EPOCHS; e++) {
          const r = await fetch(new URL(`api/epochs/${e}/embedding?split=train&method=${method}`, base));
          // 503 + Retry-After: the server is redrawing it; ask again.
          if (r.status === 503 && r.headers.get('retry-after')) { await r.arrayBuffer(); stale.push(e); continue; }
          expect(r.ok, `epoch ${e} embedding: HTTP ${r.status}`);
          const srv = new Float32Array(await r.arrayBuffer());
          const same = await T(([ep, xs]) => {
            const d = window.tardis.state.data.get(ep);
            if (!d) return false;
            for (let k = 0; k < xs.length; k++) if (d.pos[k] !== xs[k]) return false;
            return true;
          }, [e, Array.from(srv.subarray(0, 2 * 64))]);
          if (!same) stale.push(e);
        }
        if (stale.length) await page.waitForTimeout(250);
      } while (stale.length && Date.now() < deadline);
      expect(!stale.length, `epochs ${stale.join(', ')} differ from the server's`);
    });

    await check('live: no page errors and no failed requests', async () => {
      expect(!errors.length, errors.join(' | '));
    });
  } finally {
    if (page) await page.close().catch(() => {});
    if (trainer) {
      const gone = new Promise((r) => trainer.proc.once('exit', r));
      trainer.proc.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
      if (trainer.proc.exitCode === null) trainer.proc.kill('SIGKILL');
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
