// Checks of the continual-learning and alert views, run by ui.test.mjs. They
// train a small run with two tasks (TD_BIN from run.sh), project it, write an
// alerts.jsonl by hand and serve it with a `tardis serve` of their own; the
// run of the other checks (no tasks, no alerts) must show none of it.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { serve } from './tardis_proc.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

const alertLine = (o) => `${JSON.stringify(o)}\n`;
const ALERTS = [
  { epoch: 1, metric: 'knn_agreement', value: 0.41, expected: 0.83, severity: 'critical',
    message: 'kNN label agreement of classes 0 and 6 fell', classes: [0, 6] },
  { epoch: 3, metric: 'centre_distance', value: 0.9, expected: 2.1, severity: 'warning',
    message: 'class centres of task 0 collapsed', classes: [0, 1, 2, 3, 4] },
  { epoch: 3, metric: 'churn', value: 0.6, expected: 0.2, severity: 'critical', message: 'neighbourhoods churned' },
];

export async function tasksChecks({ browser, plainUrl, outDir, check, expect }) {
  const bin = process.env.TD_BIN;
  const web = process.env.TD_WEB || path.resolve(HERE, '../../web');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tardis-ui-tasks.'));
  const runDir = path.join(tmp, 'run');
  const errors = [];
  let server = null, page = null, base = '';
  const T = (expr, arg) => page.evaluate(expr, arg);
  const settle = () => page.waitForFunction(() => window.tardis.settled(), null, { timeout: 60000 });
  const apiJson = async (p) => (await fetch(new URL(p, base))).json();
  const shownCount = () => T(() => { const c = window.tardis.counts(); return c.ok + c.bad; });
  // Samples (train + test) whose label satisfies keep, as the page numbers them.
  const countLabels = (keep) => T((src) => {
    const S = window.tardis.state, f = eval(src); let n = 0;
    for (let i = 0; i < S.N; i++) if (S.label[i] !== 255 && f(S.label[i])) n++;
    return n;
  }, keep.toString());

  try {
    await check('a run without tasks or alerts shows neither', async () => {
      const p = await browser.newPage({ viewport: { width: 1440, height: 900 } });
      await p.goto(plainUrl);
      await p.waitForFunction(() => window.tardis && window.tardis.ready(), null, { timeout: 60000 });
      const s = await p.evaluate(() => ({
        alerts: document.getElementById('alerts-panel').hidden,
        alertsShown: document.getElementById('alerts-panel').getBoundingClientRect().height,
        row: document.getElementById('f-task-row').getBoundingClientRect().height,
        chart: document.getElementById('chart-task').getBoundingClientRect().height,
        marks: document.querySelectorAll('.tl-alert, .tl-task').length,
      }));
      await p.close();
      expect(s.alerts && s.alertsShown === 0, 'alerts panel shown');
      expect(s.row === 0 && s.chart === 0, `task filter or chart shown (${s.row}, ${s.chart})`);
      expect(s.marks === 0, 'timeline marks drawn');
    });

    await check('a run with tasks and alerts.jsonl is served', async () => {
      for (const args of [
        ['train', '--out', runDir, '--tasks', '0-4,5-9', '--epochs-per-task', '2', '--limit', '2000',
          '--seed', '1', '--quiet', '--force'],
        ['project', runDir]]) {
        const r = spawnSync(bin, args, { encoding: 'utf8' });
        expect(r.status === 0, `tardis ${args[0]}: ${r.stdout}${r.stderr}`);
      }
      fs.writeFileSync(path.join(runDir, 'alerts.jsonl'), ALERTS.map(alertLine).join(''));
      server = await serve(bin, runDir, web, 10000);
      base = server.url;
      page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('response', (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`); });
      await page.goto(base);
      await page.waitForFunction(() => window.tardis && window.tardis.ready() && window.tardis.allLoaded(), null, { timeout: 60000 });
      expect((await T(() => window.tardis.state.epochs)).join() === '1,2,3,4', 'four projected epochs');
    });

    await check('alert markers on the timeline, coloured by severity', async () => {
      await page.waitForSelector('#alerts-panel:not([hidden]) .al', { timeout: 60000 });
      const m = await T(() => [...document.querySelectorAll('#tl-alerts .tl-alert')].map((b) => ({
        epoch: +b.dataset.epoch, cls: b.className, left: parseFloat(b.style.left),
        color: getComputedStyle(b).backgroundColor,
      })));
      expect(m.length === 2, `${m.length} markers (one per epoch with alerts)`);
      expect(m[0].epoch === 1 && Math.abs(m[0].left) < 1e-6, 'epoch 1 marker at the start');
      expect(m[1].epoch === 3 && Math.abs(m[1].left - 200 / 3) < 1e-3, `epoch 3 marker at ${m[1].left}%`);
      expect(m.every((x) => x.cls.includes('sev-crit')), 'worst severity of each epoch');
      expect(m[0].color === 'rgb(214, 39, 40)', `critical colour ${m[0].color}`);
      const items = await T(() => [...document.querySelectorAll('#alerts-list .al')].map((d) => d.className));
      expect(items.length === 3, `${items.length} alerts listed`);
      expect(items[1].includes('sev-warn'), 'the warning is listed as one');
      expect((await page.textContent('#alerts-count')).includes('2 critical'), 'count of critical alerts');
    });

    await check('clicking an alert goes to its epoch and highlights its classes', async () => {
      expect(await T(() => window.tardis.displayedEpoch()) === 4, 'opens on the last epoch');
      await page.click('#alerts-list .al[data-k="0"]');
      await page.waitForFunction(() => window.tardis.displayedEpoch() === 1, null, { timeout: 60000 });
      await settle();
      await page.waitForTimeout(50);
      const want = await countLabels((l) => l === 0 || l === 6);
      const got = await shownCount();
      const dim = await T(() => window.tardis.counts().dim);
      expect(got === want && dim > 0, `${got} highlighted, ${want} of classes 0 and 6, ${dim} dimmed`);
      expect(await T(() => document.querySelector('#alerts-list .al[data-k="0"]').classList.contains('picked')), 'alert marked');
      // The marker of epoch 3 picks its worst alert: the critical one, which names no classes.
      await page.click('#tl-alerts .tl-alert[data-epoch="3"]');
      await page.waitForFunction(() => window.tardis.displayedEpoch() === 3, null, { timeout: 60000 });
      await page.waitForTimeout(50);
      expect(await T(() => window.tardis.counts().dim) === 0, 'an alert without classes dims nothing');
      await page.click('#alerts-list .al[data-k="1"]');
      await page.waitForTimeout(50);
      const want5 = await countLabels((l) => l < 5);
      expect(await shownCount() === want5, 'classes of the warning highlighted');
      await page.click('#alerts-clear');
      await page.waitForTimeout(50);
      expect(await T(() => window.tardis.counts().dim) === 0, 'clear removes the highlight');
    });

    await check('task boundary and per-task accuracy are drawn', async () => {
      const b = await T(() => [...document.querySelectorAll('#tl-tasks .tl-task')].map((d) => ({ left: parseFloat(d.style.left), task: d.dataset.task, text: d.textContent })));
      expect(b.length === 1 && b[0].task === '1' && b[0].text === 'T1', JSON.stringify(b));
      expect(Math.abs(b[0].left - 50) < 1e-6, `boundary between epochs 2 and 3 at ${b[0].left}%`);
      const lines = await T(() => document.querySelectorAll('#chart-task path.lc-line').length);
      expect(lines === 2, `${lines} task lines`);
      const rows = await T(() => [...document.querySelectorAll('#task-table tbody tr')].map((r) => r.className));
      expect(rows.length === 2 && rows[1] === 'now' && rows[0] === '', `table rows ${rows}`);
      const e3 = (await apiJson('api/epochs')).epochs.find((x) => x.epoch === 3).metrics;
      const cell = await T(() => document.querySelectorAll('#task-table tbody tr')[0].children[3].textContent);
      expect(cell === `${(100 * e3.task_acc.test[0]).toFixed(1)}%`, `test accuracy of task 0: ${cell}`);
    });

    await check('the task filter shows one task, and the samples trained this epoch', async () => {
      await page.selectOption('#f-task', '1');
      await page.waitForTimeout(50);
      const want = await countLabels((l) => l >= 5);
      expect(await shownCount() === want, 'task 1 samples');
      expect((await page.textContent('#f-count')).includes(`${want.toLocaleString('en-US')} of`), 'count shown');
      await page.selectOption('#f-task', '');
      await page.check('#f-trained');
      const trained = new Int32Array(await (await fetch(new URL('api/epochs/3/trained', base))).arrayBuffer());
      await page.waitForFunction((k) => { const c = window.tardis.counts(); return c.ok + c.bad === k; }, trained.length, { timeout: 60000 });
      const s = await T(() => { const S = window.tardis.state, c = window.tardis.counts(); return { dim: c.dim, shown: c.shown }; });
      expect(s.dim === s.shown - trained.length, 'the others dimmed');
      await page.keyboard.press('ArrowLeft'); // epoch 2: task 0's samples
      await settle();
      const t2 = new Int32Array(await (await fetch(new URL('api/epochs/2/trained', base))).arrayBuffer());
      await page.waitForFunction((k) => { const c = window.tardis.counts(); return c.ok + c.bad === k; }, t2.length, { timeout: 60000 });
      await page.click('#f-clear');
      await page.waitForTimeout(50);
      expect(await T(() => window.tardis.counts().dim) === 0 && !(await page.isChecked('#f-trained')), 'clear resets the task filters');
    });

    await check('a new alert arrives through /api/events', async () => {
      fs.appendFileSync(path.join(runDir, 'alerts.jsonl'), alertLine({ epoch: 4, metric: 'spread', value: 3, expected: 1, severity: 'warning', message: 'spread grew' }));
      await page.waitForFunction(() => document.querySelectorAll('#alerts-list .al').length === 4, null, { timeout: 60000 });
      expect(await T(() => document.querySelectorAll('#tl-alerts .tl-alert').length) === 3, 'marker added');
    });

    await check('screenshot of tasks and alerts', async () => {
      await page.click('#alerts-list .al[data-k="0"]');
      await settle();
      await page.selectOption('#f-task', '0');
      await page.waitForTimeout(200);
      const file = path.join(outDir, 'ui-tasks.png');
      await page.screenshot({ path: file });
      expect(fs.statSync(file).size > 20000, 'screenshot too small');
    });

    await check('a malformed alerts.jsonl is reported in the panel', async () => {
      fs.appendFileSync(path.join(runDir, 'alerts.jsonl'), '{"epoch": 2, "metric": 5}\n');
      await page.waitForSelector('#alerts-list .al-err', { timeout: 60000 });
      const msg = await page.textContent('#alerts-list .al-err');
      expect(msg.includes('alerts.jsonl: line 5'), msg);
      const i = errors.findIndex((e) => e.startsWith('500 ') && e.endsWith('/api/alerts'));
      if (i >= 0) errors.splice(i, 1); // the refusal is the point of this check
    });

    await check('tasks: no page errors and no failed requests', async () => {
      expect(errors.length === 0, errors.join(' | '));
    });
  } finally {
    if (page) await page.close();
    if (server) { server.proc.removeAllListeners('exit'); server.proc.kill('SIGTERM'); }
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
