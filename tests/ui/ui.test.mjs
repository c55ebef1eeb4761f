// End-to-end test of the tardis web UI in headless Debian chromium.
//   node ui.test.mjs URL RUN_DIR OUT_DIR
// URL: a `tardis serve RUN_DIR` already listening; OUT_DIR receives screenshots.
// Prints one line per check and a closing "N passed, N failed"; exits 1 on failure.

import fs from 'node:fs';
import path from 'node:path';
import { suspectsChecks } from './suspects.checks.mjs';
import { tasksChecks } from './tasks.checks.mjs';
import { liveChecks } from './live.checks.mjs';
import { viewsChecks } from './views.checks.mjs';
import { classesChecks } from './classes.checks.mjs';
import { scaleChecks } from './scale.checks.mjs';
import { subsetChecks } from './subset.checks.mjs';
import { diagnosisChecks } from './diagnosis.checks.mjs';
import { launchChromium } from './tardis_proc.mjs';

const [url, runDir, outDir] = process.argv.slice(2);
if (!url || !runDir || !outDir) {
  console.error('usage: node ui.test.mjs URL RUN_DIR OUT_DIR');
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });


let passed = 0, failed = 0;
async function check(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e && e.message ? e.message.split('\n')[0] : e}`);
  }
}
function expect(cond, msg) { if (!cond) throw new Error(msg); }

async function apiJson(p) {
  const r = await fetch(new URL(p, url));
  if (!r.ok) throw new Error(`${p}: HTTP ${r.status}`);
  return r.json();
}

const browser = await launchChromium();
const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
const pageErrors = [];
const badResponses = [];
page.on('pageerror', (e) => pageErrors.push(e.message));
page.on('console', (m) => {
  if (m.type() === 'error' && !/^Failed to load resource: .* status of 503 /.test(m.text())) pageErrors.push(`console: ${m.text()}`);
});
// 503 + Retry-After is "still computing" (docs/api.md), which the page retries.
page.on('response', (r) => {
  if (r.status() >= 400 && !(r.status() === 503 && r.headers()['retry-after'])) badResponses.push(`${r.status()} ${r.url()}`);
});
// Only the server under test may be reached.
const origin = new URL(url).origin;
await page.route('**/*', (route) => {
  const u = route.request().url();
  if (u.startsWith(origin) || u.startsWith('data:')) route.continue();
  else { pageErrors.push(`blocked request to ${u}`); route.abort(); }
});

const T = (expr, arg) => page.evaluate(expr, arg);
const settle = () => page.waitForFunction(() => window.tardis.settled(), null, { timeout: 60000 });
const canvasBox = () => page.locator('#canvas-wrap').boundingBox();

try {
  const run = await apiJson('/api/run');
  const epochsResp = await apiJson('/api/epochs');
  const projected = epochsResp.epochs.filter((e) => e.projected).map((e) => e.epoch);

  await check('page loads and shows the last projected epoch', async () => {
    await page.goto(url);
    await page.waitForFunction(() => window.tardis && window.tardis.ready(), null, { timeout: 60000 });
    await page.waitForFunction(() => window.tardis.allLoaded(), null, { timeout: 60000 });
    expect(projected.length >= 2, `the test run needs >= 2 projected epochs, has ${projected.length}`);
    const e = await T(() => window.tardis.displayedEpoch());
    expect(e === projected[projected.length - 1], `displayed epoch ${e}`);
    const name = await page.textContent('#run-name');
    expect(name.includes(run.name), `run name "${name}"`);
    expect(await page.locator('#legend .lg').count() === run.n_classes, 'legend entries');
    const c = await T(() => window.tardis.counts());
    expect(c.shown === run.n_train + run.n_test, `points shown ${c.shown}`);
    expect(c.ok + c.bad === c.shown && c.dim === 0, 'every point drawn once');
  });

  await check('points and territory are painted', async () => {
    // Sample the canvases: the point layer must be mostly transparent with coloured
    // pixels, the territory layer must not be blank white.
    const r = await T(() => {
      const sc = window.tardis.scatter();
      const px = sc.pointPixels();
      let painted = 0;
      for (let k = 3; k < px.length; k += 4) if (px[k] > 0) painted++;
      const bg = sc.bg.getContext('2d').getImageData(0, 0, sc.bg.width, sc.bg.height).data;
      let tinted = 0;
      for (let k = 0; k < bg.length; k += 4) if (bg[k] < 245 || bg[k + 1] < 245 || bg[k + 2] < 245) tinted++;
      return { painted, tinted, total: px.length / 4 };
    });
    expect(r.painted > 1000, `only ${r.painted} painted point pixels`);
    expect(r.tinted > r.total * 0.05, `territory covers ${r.tinted} of ${r.total} pixels`);
  });

  await check('arrow keys step through epochs with interpolation', async () => {
    await page.locator('#canvas-wrap').focus();
    await page.keyboard.press('ArrowLeft');
    // The move is animated: some frame must sit between two epochs.
    const between = await page.waitForFunction(() => {
      const t = window.tardis.state.tpos;
      return t !== Math.round(t) ? t : null;
    }, null, { timeout: 5000, polling: 'raf' }).then((h) => h.jsonValue());
    expect(between > 0, `tpos ${between}`);
    await settle();
    const e = await T(() => window.tardis.displayedEpoch());
    expect(e === projected[projected.length - 2], `after ← displayed ${e}`);
    await page.keyboard.press('ArrowRight');
    await settle();
    expect(await T(() => window.tardis.displayedEpoch()) === projected[projected.length - 1], 'after →');
  });

  await check('slider jumps to the first epoch', async () => {
    await page.locator('#epoch-slider').fill('0');
    await settle();
    expect(await T(() => window.tardis.displayedEpoch()) === projected[0], 'slider → first epoch');
    expect((await page.textContent('#epoch-num')).trim() === String(projected[0]), 'epoch label');
  });

  await check('space plays through to the last epoch', async () => {
    await page.keyboard.press('Space');
    expect(await T(() => window.tardis.state.playing), 'playing after space');
    await page.waitForFunction(() => !window.tardis.state.playing, null, { timeout: 60000 });
    expect(await T(() => window.tardis.displayedEpoch()) === projected[projected.length - 1], 'ends at last epoch');
    // Space again restarts and pauses.
    await page.keyboard.press('Space');
    await page.waitForTimeout(200);
    await page.keyboard.press('Space');
    expect(!(await T(() => window.tardis.state.playing)), 'paused after second space');
    await page.locator('#epoch-slider').fill(String(projected.length - 1));
    await settle();
    // Interpolation must never write into an epoch's own positions.
    for (const e of projected) {
      const r = await fetch(new URL(`/api/epochs/${e}/embedding`, url));
      const want = new Float32Array(await r.arrayBuffer());
      const same = await T(([ep, w]) => {
        const p = window.tardis.state.data.get(ep).pos;
        return w.every((v, k) => p[k] === v);
      }, [e, Array.from(want)]);
      expect(same, `positions of epoch ${e} differ from /api/epochs/${e}/embedding`);
    }
  });

  await check('play button and space on a focused button toggle once', async () => {
    await page.click('#play');
    expect(await T(() => window.tardis.state.playing), 'playing after click');
    await page.keyboard.press('Space'); // the button has focus now
    await page.waitForTimeout(50);
    expect(!(await T(() => window.tardis.state.playing)), 'space paused exactly once');
    await page.locator('#epoch-slider').fill(String(projected.length - 1));
    await settle();
  });

  await check('split buttons show train only and test only', async () => {
    const frameDone = () => T(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    await page.click('#split-seg button[data-split="train"]');
    await frameDone();
    expect((await T(() => window.tardis.counts())).shown === run.n_train, 'train only');
    if (run.n_test) {
      await page.click('#split-seg button[data-split="test"]');
      await frameDone();
      expect((await T(() => window.tardis.counts())).shown === run.n_test, 'test only');
    }
    await page.click('#split-seg button[data-split="both"]');
    await frameDone();
    expect((await T(() => window.tardis.counts())).shown === run.n_train + run.n_test, 'both');
  });

  // A sample with no neighbour closer than 5 px, so that hovering 1 px off its
  // position (and the pointer's rounding to whole pixels) must find exactly it.
  let target = -1;
  await check('hover shows a tooltip with thumbnail, label and prediction', async () => {
    target = await T(() => {
      const t = window.tardis, S = t.state;
      const sc = t.scatter();
      const pts = [];
      for (let g = 0; g < S.N; g += 7) {
        const [x, y] = t.screenOf(g);
        if (x > 250 && y > 40 && x < sc.W - 40 && y < sc.H - 40) pts.push([g, x, y]);
      }
      for (const [g, x, y] of pts) {
        let alone = true;
        for (let h = 0; h < S.N && alone; h++) {
          if (h === g) continue;
          const [u, v] = t.screenOf(h);
          if (Math.hypot(u - x, v - y) < 5) alone = false;
        }
        if (alone) return g;
      }
      return -1;
    });
    expect(target >= 0, 'no isolated sample found');
    const box = await canvasBox();
    const [sx, sy] = await T((g) => window.tardis.screenOf(g), target);
    await page.mouse.move(box.x + sx + 1, box.y + sy + 1);
    await page.waitForSelector('#tooltip:not([hidden])', { timeout: 60000 });
    expect(await T(() => window.tardis.state.hover) === target, 'hovered sample');
    const split = target >= run.n_train ? 'test' : 'train';
    const idx = target >= run.n_train ? target - run.n_train : target;
    const title = await page.textContent('#tt-title');
    expect(title === `${split} #${idx}`, `tooltip title "${title}"`);
    const s = await apiJson(`/api/samples/${idx}?split=${split}`);
    const text = await page.textContent('#tooltip');
    expect(text.includes(run.classes[s.label]), `tooltip lacks label ${run.classes[s.label]}: ${text}`);
    expect(text.includes(run.classes[s.prediction]), `tooltip lacks prediction: ${text}`);
    await page.waitForFunction(() => document.getElementById('tt-img').naturalWidth > 0, null, { timeout: 60000 });
  });

  await check('click selects the sample and draws its trajectory', async () => {
    const box = await canvasBox();
    const [sx, sy] = await T((g) => window.tardis.screenOf(g), target);
    await page.mouse.click(box.x + sx + 1, box.y + sy + 1);
    await page.waitForFunction(() => window.tardis.state.selInfo !== null, null, { timeout: 60000 });
    const st = await T(() => ({ sel: window.tardis.state.selected, traj: window.tardis.state.selInfo.trajectory }));
    expect(st.sel === target, `selected ${st.sel}`);
    expect(st.traj.length === projected.length, `trajectory of ${st.traj.length} epochs`);
    // The trajectory passes through the sample's position on screen.
    const gap = await T((g) => {
      const t = window.tardis, e = t.displayedEpoch();
      const q = t.state.selInfo.trajectory.find((r) => r[0] === e);
      const [a, b] = t.screenOf(g), [c, d] = t.scatter().toScreen(q[1], q[2]);
      return Math.hypot(a - c, b - d);
    }, target);
    expect(gap < 1, `trajectory is ${gap.toFixed(1)} px off the sample`);
    const dl = await page.textContent('#sel-dl');
    expect(dl.includes('loss') && dl.includes('confidence'), `details: ${dl}`);
    expect(await page.locator('#sel-probs .pr').count() === run.n_classes, 'class probabilities');
    // The trajectory is on the overlay: it must have dark pixels.
    const dark = await T(() => {
      const sc = window.tardis.scatter();
      const d = sc.ov.getContext('2d').getImageData(0, 0, sc.ov.width, sc.ov.height).data;
      let n = 0;
      for (let k = 0; k < d.length; k += 4) if (d[k + 3] > 200 && d[k] < 60) n++;
      return n;
    });
    expect(dark > 20, `overlay has ${dark} dark pixels`);
    await page.mouse.move(box.x + sx + 60, box.y + sy + 40);
    await page.screenshot({ path: path.join(outDir, 'ui-selected.png') });
  });

  await check('filters match /api/filter', async () => {
    const last = projected[projected.length - 1];
    const count = async (q) => {
      const a = await apiJson(`/api/filter?epoch=${last}&${q}`);
      const b = run.n_test ? await apiJson(`/api/filter?split=test&epoch=${last}&${q}`).catch(() => []) : [];
      return a.length + b.length;
    };
    // Counts are rebuilt on the next frame after a filter change.
    const ui = async () => {
      await T(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      const c = await T(() => window.tardis.counts());
      return c.ok + c.bad;
    };
    await page.selectOption('#f-label', '3');
    expect(await ui() === await count('label=3'), 'label=3');
    await page.selectOption('#f-mis', '1');
    expect(await ui() === await count('label=3&misclassified=1'), 'label=3 & misclassified');
    await page.selectOption('#f-label', '');
    await page.selectOption('#f-pred', '2');
    expect(await ui() === await count('pred=2&misclassified=1'), 'pred=2 & misclassified');
    await page.click('#f-clear');
    if (run.files.train_truth) {
      await page.selectOption('#f-noisy', '1');
      const n = (await apiJson(`/api/filter?noisy=1`)).length;
      expect(n > 0 && await ui() === n, `noisy: ui ${await ui()} api ${n}`);
      await page.click('#f-clear');
    }
    await page.fill('#f-idx', '1, 2, 5-9, t:3');
    await page.waitForFunction(() => window.tardis.counts().ok + window.tardis.counts().bad === 8, null, { timeout: 60000 });
    await page.check('#f-hide');
    expect(await ui() === 8 && (await T(() => window.tardis.counts())).dim === 0, 'hide others');
    await page.fill('#f-idx', '1, x');
    await page.waitForSelector('#f-idx.bad', { timeout: 60000 });
    await page.click('#f-clear');
    await ui();
    const c = await T(() => window.tardis.counts());
    expect(c.dim === 0 && c.ok + c.bad === c.shown, 'cleared');
  });

  await check('legend click filters by label', async () => {
    await page.click('#legend .lg[data-c="1"]');
    expect(await page.inputValue('#f-label') === '1', 'label select follows the legend');
    await page.click('#legend .lg[data-c="1"]');
    expect(await page.inputValue('#f-label') === '', 'second click clears');
  });

  await check('training curves and quality panel are drawn', async () => {
    expect(await page.locator('#chart-loss path.lc-line').count() >= 1, 'loss curve');
    expect(await page.locator('#chart-acc path.lc-line').count() >= 1, 'accuracy curve');
    if (epochsResp.epochs.some((e) => e.quality)) {
      const rows = await page.locator('#quality tr').count();
      expect(rows >= 3, `${rows} quality rows`);
      expect((await page.textContent('#quality')).includes('nn@15'), 'nn@15 shown');
    }
  });

  await check('wheel zooms, double-click fits', async () => {
    const box = await canvasBox();
    const s0 = await T(() => window.tardis.scatter().view.scale);
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.wheel(0, -400);
    await page.waitForTimeout(100);
    const s1 = await T(() => window.tardis.scatter().view.scale);
    expect(s1 > s0 * 1.3, `scale ${s0} → ${s1}`);
    await page.mouse.dblclick(box.x + 5, box.y + box.height - 5);
    await T(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const s2 = await T(() => window.tardis.scatter().view.scale);
    expect(Math.abs(s2 - s0) < 1e-6 * s0, `fit restores ${s0}, got ${s2}`);
  });

  await check('live: a new epoch arrives through /api/events and is shown', async () => {
    await page.waitForFunction(() => document.getElementById('live').dataset.state === 'on', null, { timeout: 60000 });
    // Publish a copy of the last epoch as a new one, atomically as the writers do.
    const last = projected[projected.length - 1];
    const next = last + 1;
    const pad = (n) => String(n).padStart(4, '0');
    const method = epochsResp.method;
    const src = path.join(runDir, 'epochs', pad(last));
    const tmp = path.join(runDir, 'epochs', `.tmp-${pad(next)}`);
    fs.cpSync(src, tmp, { recursive: true });
    const ej = JSON.parse(fs.readFileSync(path.join(tmp, 'epoch.json'), 'utf8'));
    ej.epoch = next;
    fs.writeFileSync(path.join(tmp, 'epoch.json'), JSON.stringify(ej));
    fs.renameSync(tmp, path.join(runDir, 'epochs', pad(next)));
    const vsrc = path.join(runDir, 'vis', method, `epoch_${pad(last)}`);
    const vtmp = path.join(runDir, 'vis', method, `.tmp-${pad(next)}-ui`);
    fs.cpSync(vsrc, vtmp, { recursive: true });
    fs.renameSync(vtmp, path.join(runDir, 'vis', method, `epoch_${pad(next)}`));
    await page.waitForFunction((n) => window.tardis.state.epochs.includes(n), next, { timeout: 60000 });
    // The page sat on the last epoch, so it follows to the new one.
    await page.waitForFunction((n) => window.tardis.displayedEpoch() === n && window.tardis.settled(), next, { timeout: 60000 });
    expect((await page.textContent('#epoch-num')).trim() === String(next), 'epoch label shows the new epoch');
  });

  await check('screenshot', async () => {
    await page.locator('#epoch-slider').fill('1');
    await settle();
    const box = await canvasBox();
    const [sx, sy] = await T((g) => window.tardis.screenOf(g), target);
    await page.mouse.move(box.x + sx + 1, box.y + sy + 1);
    await page.waitForSelector('#tooltip:not([hidden])', { timeout: 60000 });
    const file = path.join(outDir, 'ui.png');
    await page.screenshot({ path: file });
    expect(fs.statSync(file).size > 20000, 'screenshot too small');
    console.log(`     screenshots in ${outDir}`);
  });

  await check('no page errors and no failed requests', async () => {
    expect(pageErrors.length === 0, pageErrors.join(' | '));
    expect(badResponses.length === 0, badResponses.join(' | '));
  });

  // Territory of the view and layout facts at three widths.
  await viewsChecks({ browser, url, outDir, check, expect });

  // The point layer's renderers (WebGL 2, Canvas2D fallback, density) and picking.
  await scaleChecks({ browser, url, check, expect });

  // A run of more classes than the page holds is refused in words.
  await classesChecks({ browser, url, check, expect });

  // The suspicious-samples panel, with a server of its own that it restarts.
  await suspectsChecks({ browser, runDir, outDir, check, expect, ARGS_VIEWPORT: { width: 1440, height: 900 } });
  // Tasks and alerts, on a continual-learning run of their own.
  await tasksChecks({ browser, plainUrl: url, outDir, check, expect });
  // A subset run: its rows are named by their training samples.
  await subsetChecks({ browser, check, expect });
  // Diagnosis and repair, on a buggy run and its repair made here.
  await diagnosisChecks({ browser, outDir, check, expect });
  // Live mode, on a run that `tardis train --serve` trains while the page is open.
  await liveChecks({ browser, outDir, check, expect });
} catch (e) {
  failed++;
  console.log(`FAIL unexpected: ${e.stack || e}`);
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
