// Checks of the diagnosis and repair views, run by ui.test.mjs. They train a
// small buggy run (TD_BIN from run.sh: label 0 starved, half of the training
// set held back as the pool), diagnose it, repair it into a child run,
// project both and open each in a page of its own served by a `tardis serve`
// of its own. Every wait polls with a deadline of minutes: the CI machine is
// slow and shared.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { serve, tardis } from './tardis_proc.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const WAIT = 180000; // ms: the deadline of every wait of these checks

export async function diagnosisChecks({ browser, outDir, check, expect }) {
  const bin = process.env.TD_BIN;
  const web = process.env.TD_WEB || path.resolve(HERE, '../../web');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tardis-ui-repair.'));
  const runDir = path.join(tmp, 'buggy'), fixDir = path.join(tmp, 'fixed');
  const servers = [], pages = [];
  const errors = [];
  let buggy = null, fixed = null; // {page, url}

  // A page on a server of its own, opened once its epochs are loaded and
  // the diagnosis module has asked the server what the run holds.
  async function open(dir, name) {
    const s = await serve(bin, dir, web, WAIT);
    servers.push(s);
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    pages.push(page);
    page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`${name}: console: ${m.text()}`); });
    page.on('response', (r) => { if (r.status() >= 400) errors.push(`${name}: ${r.status()} ${r.url()}`); });
    await page.goto(s.url);
    await page.waitForFunction(() => window.tardis && window.tardis.ready() && window.tardis.allLoaded(), null, { timeout: WAIT });
    await page.waitForFunction(() => window.tardis.diagnosis().ready() && !document.getElementById('diag-empty').textContent.includes('loading'),
      null, { timeout: WAIT });
    return { page, url: s.url };
  }
  const api = async (base, p) => {
    const r = await fetch(new URL(p, base));
    if (!r.ok) throw new Error(`${p}: HTTP ${r.status} ${await r.text()}`);
    return r.json();
  };

  try {
    await check('a buggy run, its diagnosis and its repair are made', async () => {
      tardis(bin, ['train', '--out', runDir, '--pool', '0.5', '--class-fraction', '0:0.05', '--limit', '3000',
        '--epochs', '3', '--seed', '1', '--quiet', '--force'], 10 * 60000);
      tardis(bin, ['diagnose', runDir], 10 * 60000);
      tardis(bin, ['repair', runDir, '--out', fixDir, '--budget', '300', '--rounds', '2', '--epochs-per-round', '1', '--seed', '1',
        '--max-label-loss', '0.05'], 10 * 60000);
      tardis(bin, ['project', runDir], 10 * 60000);
      tardis(bin, ['project', fixDir], 10 * 60000);
      buggy = await open(runDir, 'buggy');
      fixed = await open(fixDir, 'fixed');
    });
    if (!buggy || !fixed) return;
    const T = (p, expr, arg) => p.page.evaluate(expr, arg);

    await check('the diagnosis table: one row per label, the starved label underfitting', async () => {
      const list = await api(buggy.url, 'api/diagnosis');
      expect(list.epochs.length === 1 && !list.repaired, `diagnoses ${JSON.stringify(list)}`);
      const d = await api(buggy.url, `api/diagnosis/${list.epochs[0]}`);
      await buggy.page.waitForSelector('#diag-body:not([hidden]) #diag-table tbody tr', { timeout: WAIT });
      const rows = await T(buggy, () => [...document.querySelectorAll('#diag-table tbody tr')].map((r) => ({
        label: +r.dataset.label, verdict: r.dataset.verdict, cells: [...r.children].map((c) => c.textContent),
        color: getComputedStyle(r.querySelector('.verdict')).backgroundColor,
      })));
      expect(rows.length === d.labels.length, `${rows.length} rows for ${d.labels.length} labels`);
      expect(rows[0].verdict === 'underfitting', `label 0 (starved): ${rows[0].verdict}`);
      expect(rows[0].color === 'rgb(217, 130, 43)', `underfitting colour ${rows[0].color}`);
      d.labels.forEach((L, k) => {
        expect(rows[k].label === L.label && rows[k].verdict === L.verdict, `row ${k}: ${JSON.stringify(rows[k])} vs ${L.verdict}`);
        const want = typeof L.train_acc === 'number' ? (100 * L.train_acc).toFixed(0) : '—';
        expect(rows[k].cells[2] === want, `row ${k} train accuracy ${rows[k].cells[2]}, want ${want}`);
      });
      const sum = await buggy.page.textContent('#diag-sum');
      expect(sum.includes(`${(100 * d.test_acc).toFixed(1)}%`), `summary ${sum}`);
    });

    await check('the confusion grid and the layer probes', async () => {
      const d = await api(buggy.url, 'api/diagnosis/3');
      const C = d.labels.length;
      const cells = await T(buggy, () => [...document.querySelectorAll('#diag-conf .cf')].map((c) => c.title));
      expect(cells.length === C * C, `${cells.length} cells`);
      // Row 0, column k: the count of label 0 predicted as k.
      const n0 = d.confusion[0].reduce((s, v) => s + v, 0);
      d.confusion[0].forEach((v, k) => expect(cells[k].includes(`: ${v} of ${n0}`), `cell 0,${k}: ${cells[k]}`));
      const probes = await T(buggy, () => [...document.querySelectorAll('#diag-probes .pb-row')].map((r) => ({ layer: +r.dataset.layer, sat: r.classList.contains('sat') })));
      expect(probes.length === d.probes.length && probes.length > 0, `${probes.length} probe rows`);
      const sat = probes.filter((p) => p.sat);
      expect(sat.length === 1 && sat[0].layer === d.heatmaps.layer, `saturation layer ${JSON.stringify(sat)} vs ${d.heatmaps.layer}`);
    });

    await check('the heat maps of a label load, and follow the label picked', async () => {
      const d = await api(buggy.url, 'api/diagnosis/3');
      const nMaps = Object.keys(d.maps).length;
      expect(nMaps === 7, `${nMaps} maps listed`);
      await buggy.page.click('#diag-table tbody tr[data-label="0"]');
      await buggy.page.waitForFunction((n) => {
        const im = [...document.querySelectorAll('#diag-maps img')];
        return im.length === n && im.every((i) => i.complete && i.naturalWidth > 0);
      }, nMaps, { timeout: WAIT });
      const used = await T(buggy, () => document.querySelector('#diag-maps .hm-row.used')?.dataset.map);
      expect(used === 'dhm_under', `the map repair uses for an underfitting label: ${used}`);
      // A map that is zero for the label (an empty set) is said to be; the probe's weights never are.
      await buggy.page.waitForFunction(() => [...document.querySelectorAll('#diag-maps .hm-strip')].every((x) => x.hasAttribute('data-zero')),
        null, { timeout: WAIT });
      const zero = await T(buggy, () => Object.fromEntries([...document.querySelectorAll('#diag-maps .hm-row')].map((r) => [r.dataset.map, r.querySelector('.hm-strip').classList.contains('zero')])));
      const L0 = d.labels[0];
      expect(!zero.probe_w, `probe W of label 0 drawn as zero: ${JSON.stringify(zero)}`);
      if (L0.train_acc === 0) expect(zero.hm_correct, `label 0 has no correct trained-on input, yet hm_correct is not zero: ${JSON.stringify(zero)}`);
      if (L0.train_acc === 1) expect(zero.hm_missed, `label 0 has no missed trained-on input, yet hm_missed is not zero: ${JSON.stringify(zero)}`);
      if (L0.train_acc > 0 && L0.train_acc < 1) expect(!zero.hm_correct && !zero.hm_missed, `label 0 has correct and missed inputs: ${JSON.stringify(zero)}`);
      await buggy.page.click('#diag-table tbody tr[data-label="2"]');
      const tops = await T(buggy, () => [...document.querySelectorAll('#diag-maps img')].map((i) => i.style.top));
      expect(tops.every((t) => t === '-32px'), `strips of label 2 at ${tops}`);
      const on = await T(buggy, () => [...document.querySelectorAll('#diag-table tr.on')].map((r) => r.dataset.label));
      expect(on.join() === '2', `picked row ${on}`);
      await buggy.page.click('#diag-table tbody tr[data-label="0"]');
    });

    await check('a run that is not repaired shows no repair', async () => {
      const s = await T(buggy, () => ({
        panel: document.getElementById('repair-panel').hidden,
        rounds: document.querySelectorAll('#tl-repair .tl-round').length,
        marks: window.tardis.diagnosis().lastMarks,
        goto: document.getElementById('goto-diag').hidden,
      }));
      expect(s.panel && s.rounds === 0 && s.marks.trained + s.marks.chosen === 0, JSON.stringify(s));
      expect(!s.goto, 'the diagnosis button is shown');
    });

    await check('the repaired run: its rounds on the timeline', async () => {
      const R = await api(fixed.url, 'api/repair');
      await fixed.page.waitForSelector('#repair-panel:not([hidden]) #repair-rounds tbody tr', { timeout: WAIT });
      const m = await T(fixed, () => [...document.querySelectorAll('#tl-repair .tl-round')].map((b) => ({ round: +b.dataset.round, text: b.textContent, title: b.title })));
      expect(m.length === R.rounds.length && m.length === 2, `${m.length} round markers for ${R.rounds.length} rounds`);
      R.rounds.forEach((r, k) => {
        const acc = `${(100 * r.test_after).toFixed(1)}%`;
        expect(m[k].round === k + 1 && m[k].text.includes(acc), `marker ${k}: ${JSON.stringify(m[k])}, want ${acc}`);
      });
      const rows = await T(fixed, () => document.querySelectorAll('#repair-rounds tbody tr').length);
      expect(rows === R.rounds.length, `${rows} rows in the rounds table`);
      const empty = await fixed.page.textContent('#diag-empty');
      expect(empty.includes('tardis diagnose'), `no diagnosis: ${empty}`);
    });

    await check("the guard: its bound in the summary, each round's held-out losses before and after", async () => {
      const R = await api(fixed.url, 'api/repair');
      expect(R.max_label_loss === 0.05 && R.n_heldout > 0 && R.rounds.every((r) => r.guard), `repair.json: ${JSON.stringify({ d: R.max_label_loss, n: R.n_heldout })}`);
      const sum = await fixed.page.textContent('#repair-sum');
      expect(sum.includes('guard: no label more than 5.0 points') && sum.includes(`${R.n_heldout} held-out`), `summary ${sum}`);
      const cells = await T(fixed, () => [...document.querySelectorAll('#repair-rounds tbody td.guard')].map((c) => ({
        before: +c.dataset.before, after: +c.dataset.after, bad: c.classList.contains('bad'), text: c.textContent })));
      expect(cells.length === R.rounds.length, `${cells.length} guard cells for ${R.rounds.length} rounds`);
      R.rounds.forEach((r, k) => {
        const g = r.guard;
        const worst = (acc) => Math.min(...g.acc_parent.map((p, l) => 100 * (acc[l] - p)));
        const b = worst(g.acc_before), a = worst(g.acc_after);
        expect(Math.abs(cells[k].before - b) < 1e-6 && Math.abs(cells[k].after - a) < 1e-6, `round ${k + 1}: ${JSON.stringify(cells[k])}, want ${b} -> ${a}`);
        expect(cells[k].bad === !g.met, `round ${k + 1} met ${g.met}, cell ${JSON.stringify(cells[k])}`);
        expect(!g.met || a >= -5 - 1e-9, `round ${k + 1} met, yet its worst held-out loss is ${a}`);
      });
    });

    await check('the samples each round chose are marked up to the epoch on screen', async () => {
      const R = await api(fixed.url, 'api/repair');
      const expectAt = async (e) => {
        const want = { trained: 0, chosen: 0 };
        for (const r of R.rounds) {
          if (r.epoch_before < e) want.trained += r.selected.length;
          else if (r.epoch_before === e) want.chosen += r.selected.length;
        }
        await T(fixed, (ep) => window.tardis.goto(ep), e);
        try {
          await fixed.page.waitForFunction((w) => {
            const m = window.tardis.diagnosis().lastMarks;
            return window.tardis.settled() && m.trained === w.trained && m.chosen === w.chosen;
          }, want, { timeout: WAIT });
        } catch (err) {
          const got = await T(fixed, () => window.tardis.diagnosis().lastMarks);
          throw new Error(`epoch ${e}: marks ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
        }
        return want;
      };
      const last = R.rounds[R.rounds.length - 1].epoch_after;
      const w0 = await expectAt(R.rounds[0].epoch_before);
      expect(w0.chosen > 0 && w0.trained === 0, `first epoch ${JSON.stringify(w0)}`);
      const wl = await expectAt(last);
      expect(wl.trained === R.n_selected && wl.chosen === 0, `last epoch ${JSON.stringify(wl)}`);
      // A round's marker goes to the epoch after it.
      await fixed.page.click('#tl-repair .tl-round[data-round="1"]');
      await fixed.page.waitForFunction((e) => window.tardis.displayedEpoch() === e, R.rounds[0].epoch_after, { timeout: WAIT });
      await expectAt(R.rounds[0].epoch_after);
      // Off: nothing marked.
      await fixed.page.uncheck('#repair-marks');
      await fixed.page.waitForFunction(() => { const m = window.tardis.diagnosis().lastMarks; return m.trained + m.chosen === 0; }, null, { timeout: WAIT });
      await fixed.page.check('#repair-marks');
    });

    await check('screenshots of the diagnosis and the repair', async () => {
      await buggy.page.locator('#diag-panel').scrollIntoViewIfNeeded();
      const f1 = path.join(outDir, 'ui-diagnosis.png');
      await buggy.page.screenshot({ path: f1 });
      await buggy.page.locator('#diag-panel').screenshot({ path: path.join(outDir, 'ui-diagnosis-panel.png') });
      await fixed.page.waitForFunction(() => window.tardis.settled(), null, { timeout: WAIT });
      await fixed.page.locator('#repair-panel').scrollIntoViewIfNeeded();
      const f2 = path.join(outDir, 'ui-repair.png');
      await fixed.page.screenshot({ path: f2 });
      expect(fs.statSync(f1).size > 20000 && fs.statSync(f2).size > 20000, 'screenshots too small');
    });

    await check('diagnosis: no page errors and no failed requests', async () => {
      expect(errors.length === 0, errors.join(' | '));
    });
  } finally {
    for (const p of pages) await p.close();
    for (const s of servers) { s.proc.removeAllListeners('exit'); s.proc.kill('SIGTERM'); }
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
