// Checks of the suspicious-samples panel, run by ui.test.mjs. They start their own
// `tardis serve` on the same run (TD_BIN, TD_WEB from run.sh), so that they can
// stop it and start it again on the same port: closing the browser and
// restarting the server must leave the session, its verdicts and the
// unsubmitted marks where the user left them.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { serve } from './tardis_proc.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const K = 8;

function stopServer(s) {
  return new Promise((resolve) => {
    if (!s || s.proc.exitCode !== null) { resolve(); return; }
    s.proc.removeAllListeners('exit');
    s.proc.on('exit', () => resolve());
    s.proc.kill('SIGTERM');
  });
}

export async function suspectsChecks({ browser, runDir, outDir, check, expect, ARGS_VIEWPORT }) {
  const bin = process.env.TD_BIN;
  const web = process.env.TD_WEB || path.resolve(HERE, '../../web');
  const errors = [];
  let server = null, ctx = null, page = null, base = '';
  const T = (expr, arg) => page.evaluate(expr, arg);
  // "computing" (503 + Retry-After, docs/api.md) is not an error: ask again.
  const computing = (status, retryAfter) => status === 503 && retryAfter != null;
  const api = async (p, init) => {
    let r = await fetch(new URL(p, base), init);
    for (let i = 0; i < 600 && computing(r.status, r.headers.get('retry-after')); i++) {
      await new Promise((done) => setTimeout(done, 100));
      r = await fetch(new URL(p, base), init);
    }
    if (!r.ok) throw new Error(`${p}: HTTP ${r.status} ${await r.text()}`);
    return (r.headers.get('content-type') || '').includes('json') ? r.json() : r.text();
  };
  const openPage = async (storageState) => {
    ctx = await browser.newContext({ viewport: ARGS_VIEWPORT, acceptDownloads: true, storageState });
    page = await ctx.newPage();
    page.on('pageerror', (e) => errors.push(e.message));
    // Chromium logs every 503 as a failed load; the response handler below
    // checks that each one is a "computing" answer.
    const computingLog = /^Failed to load resource: .* status of 503 /;
    page.on('console', (m) => {
      if (m.type() === 'error' && !computingLog.test(m.text())) errors.push(`console: ${m.text()}`);
    });
    page.on('response', (r) => {
      if (r.status() >= 400 && !computing(r.status(), r.headers()['retry-after'])) errors.push(`${r.status()} ${r.url()}`);
    });
    const origin = new URL(base).origin;
    await page.route('**/*', (route) => {
      const u = route.request().url();
      if (u.startsWith(origin) || u.startsWith('data:')) route.continue();
      else { errors.push(`blocked request to ${u}`); route.abort(); }
    });
    await page.goto(base);
    await page.waitForFunction(() => window.tardis && window.tardis.ready() && window.tardis.allLoaded(), null, { timeout: 60000 });
  };
  const idle = () => page.waitForFunction(() => { const s = window.tardis.suspects(); return s && !s.busy; }, null, { timeout: 60000 });
  const cardIds = () => page.$$eval('#sus-list .sc', (cs) => cs.map((c) => +c.dataset.i));
  const nextFrame = () => T(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  // Overlay pixels in the suspects' magenta (#d81b60, also half-transparent).
  const susPixels = (box) => T((b) => {
    const sc = window.tardis.scatter(), d = sc.dpr;
    const x0 = b ? Math.max(0, Math.floor((b[0] - 12) * d)) : 0, y0 = b ? Math.max(0, Math.floor((b[1] - 12) * d)) : 0;
    const w = b ? Math.ceil(24 * d) : sc.ov.width, h = b ? Math.ceil(24 * d) : sc.ov.height;
    const px = sc.ov.getContext('2d').getImageData(x0, y0, w, h).data;
    let n = 0;
    for (let k = 0; k < px.length; k += 4) if (px[k + 3] > 60 && px[k] > 150 && px[k + 1] < 90 && px[k + 2] > 50 && px[k + 2] < 150) n++;
    return n;
  }, box || null);

  let sid = 0, first = [], accepted = [], rejected = [], round2 = [], port = 0;
  try {
    await check('suspects: own server for the restart test', async () => {
      expect(bin && fs.existsSync(bin), `TD_BIN not set or missing (${bin})`);
      server = await serve(bin, runDir, web, 10000);
      base = server.url;
      port = +new URL(base).port;
      await openPage(undefined);
    });

    await check('suspects: start a session, K cards with thumbnail, label, prediction, reason', async () => {
      await page.fill('#sus-k', String(K));
      await page.dispatchEvent('#sus-k', 'change');
      const before = (await api('/api/suspects/sessions')).sessions.length;
      await page.click('#sus-rec');
      await page.waitForSelector('#sus-list .sc', { timeout: 60000 });
      await idle();
      sid = await T(() => window.tardis.suspects().session.id);
      const ss = (await api('/api/suspects/sessions')).sessions;
      expect(ss.length === before + 1 && ss.some((s) => s.id === sid), `session ${sid} not created`);
      first = await cardIds();
      const want = await api(`/api/suspects/sessions/${sid}/recommend?k=${K}`);
      expect(JSON.stringify(first) === JSON.stringify(want.suspects.map((s) => s.index)),
        `cards ${first} vs /recommend ${want.suspects.map((s) => s.index)}`);
      const run = await api('/api/run');
      const c0 = page.locator('#sus-list .sc').first();
      await page.waitForFunction(() => document.querySelector('#sus-list .sc img').naturalWidth > 0, null, { timeout: 60000 });
      const text = await c0.textContent();
      const s0 = want.suspects[0];
      const pred = (await api(`/api/samples/${s0.index}`)).prediction; // last epoch = the one on screen
      expect(text.includes(`#${s0.index}`) && text.includes(run.classes[s0.label]), `card text "${text}"`);
      expect(text.includes(run.classes[pred]), `card lacks the prediction ${run.classes[pred]}: "${text}"`);
      if (s0.why.length) expect(/top [\d.]+ %/.test(text), `card lacks the reason: "${text}"`);
      expect((await page.textContent('#sus-counts')).replace(/\s+/g, ' ').includes('0 accepted 0 rejected round 1'), 'counters');
    });

    await check('suspects: recommended samples are marked on the canvas', async () => {
      await nextFrame();
      for (const i of first.slice(0, 3)) {
        const at = await T((g) => window.tardis.screenOf(g), i);
        expect(await susPixels(at) > 10, `no marker at sample ${i}`);
      }
      // The points under the markers are still drawn (the marks live on the overlay).
      const shown = await T(() => window.tardis.counts().shown);
      expect(shown > 0, 'points');
    });

    await check('suspects: hovering a card rings its point and draws its trajectory, points untouched', async () => {
      await T(() => {
        const sc = window.tardis.scatter();
        sc._draws = 0;
        const f = sc.drawPoints;
        sc.drawPoints = function (...a) { sc._draws++; return f.apply(this, a); };
      });
      const base0 = await susPixels();
      await page.hover('#sus-list .sc:nth-child(2)');
      await nextFrame();
      expect(await T(() => window.tardis.suspects().hover) === first[1], 'hovered card');
      const withHover = await susPixels();
      expect(withHover > base0 + 30, `hover added ${withHover - base0} magenta pixels`);
      for (const k of [3, 4, 5, 1]) { await page.hover(`#sus-list .sc:nth-child(${k})`); await nextFrame(); }
      expect(await T(() => window.tardis.scatter()._draws) === 0, 'hover redrew the point layer');
    });

    await check('suspects: accept / reject with clicks and keys a, r; submit; next round excludes them', async () => {
      await page.click('#sus-list .sc:nth-child(1) .v-acc');
      await page.focus('#sus-list .sc:nth-child(2)');
      await page.keyboard.press('a');
      await page.keyboard.press('r'); // focus moved on to card 3
      expect(await T(() => +document.activeElement.dataset.i) === first[3], 'focus moves to the next card');
      await page.click('#sus-list .sc:nth-child(4) .v-rej');
      accepted = [first[0], first[1]];
      rejected = [first[2], first[3]];
      const v = await T(() => Object.fromEntries(window.tardis.suspects().verdicts));
      const want = Object.fromEntries([...accepted.map((i) => [i, 'accept']), ...rejected.map((i) => [i, 'reject'])]);
      expect(JSON.stringify(Object.keys(v).sort()) === JSON.stringify(Object.keys(want).sort()) &&
        Object.keys(want).every((k) => v[k] === want[k]), `verdicts ${JSON.stringify(v)}`);
      expect(await page.locator('#sus-list .sc.acc').count() === 2 && await page.locator('#sus-list .sc.rej').count() === 2, 'card states');
      expect((await page.textContent('#sus-submit')).includes('4'), 'submit shows 4 marked');
      // Scrolled down in round 1: round 2 must open at its top.
      await T(() => { const l = document.getElementById('sus-list'); l.scrollTop = l.scrollHeight; });
      const scrolled = await T(() => document.getElementById('sus-list').scrollTop);
      await page.click('#sus-submit');
      await page.waitForFunction(() => window.tardis.suspects().session.rounds === 1, null, { timeout: 60000 });
      await idle();
      round2 = await cardIds();
      expect(round2.length === K, `${round2.length} cards in round 2`);
      expect(await T(() => document.getElementById('sus-list').scrollTop) === 0, `round 2 opens scrolled (was ${scrolled})`);
      const judged = [...accepted, ...rejected];
      expect(!round2.some((i) => judged.includes(i)), `round 2 ${round2} repeats a judged sample`);
      // The cards of round 1 left unjudged do not come back while others are left.
      expect(!round2.some((i) => first.includes(i)), `round 2 ${round2} repeats round 1 ${first}`);
      const s = await api(`/api/suspects/sessions/${sid}`);
      expect(s.accepted === 2 && s.rejected === 2 && s.rounds === 1, `session ${JSON.stringify(s)}`);
      const skipped = first.filter((i) => !judged.includes(i));
      const want2 = await api(`/api/suspects/sessions/${sid}/recommend?k=${K + skipped.length}`);
      const fresh2 = want2.suspects.map((x) => x.index).filter((i) => !skipped.includes(i)).slice(0, K);
      expect(JSON.stringify(round2) === JSON.stringify(fresh2), 'round 2 = /recommend without round 1\'s skipped samples');
      expect((await page.textContent('#sus-counts')).replace(/\s+/g, ' ').includes('2 accepted 2 rejected round 2'), 'counters after submit');
      expect(await page.locator('#sus-list .sc.acc, #sus-list .sc.rej').count() === 0, 'new round starts unmarked');
    });

    await check('suspects: export accepted as JSON and CSV downloads', async () => {
      const grab = async (sel) => {
        const [d] = await Promise.all([page.waitForEvent('download', { timeout: 60000 }), page.click(sel)]);
        return { name: d.suggestedFilename(), text: fs.readFileSync(await d.path(), 'utf8') };
      };
      const sorted = [...accepted].sort((a, b) => a - b);
      const j = await grab('#sus-json');
      const jv = JSON.parse(j.text);
      expect(j.name.endsWith('.json') && JSON.stringify(jv.indices) === JSON.stringify(sorted) && jv.verdict === 'accept',
        `JSON ${j.name}: ${j.text}`);
      const c = await grab('#sus-csv');
      expect(c.name.endsWith('.csv') && c.text === `index\n${sorted.join('\n')}\n`, `CSV ${c.name}: ${JSON.stringify(c.text)}`);
    });

    await check('suspects: accepted trails grow while replaying the epochs', async () => {
      // Trail pixels = magenta with trails on minus with trails off (the round's
      // markers are magenta too). At the first epoch a trail is just its head; at
      // the last it runs through every epoch.
      const trailPixels = async () => {
        const on = await susPixels();
        await page.uncheck('#sus-trails'); await nextFrame();
        const off = await susPixels();
        await page.check('#sus-trails'); await nextFrame();
        return on - off;
      };
      const eps = await T(() => window.tardis.state.epochs);
      await T((e) => window.tardis.goto(e), eps[0]);
      await page.waitForFunction(() => window.tardis.settled(), null, { timeout: 60000 });
      const early = await trailPixels();
      await page.click('#sus-play');
      expect(await T(() => window.tardis.state.playing), 'replay plays');
      await page.waitForTimeout(300);
      const mid = await T(() => window.tardis.state.tpos);
      expect(mid > 0 && mid < eps.length - 1, `replay at ${mid}`);
      await page.waitForFunction(() => !window.tardis.state.playing, null, { timeout: 60000 });
      await nextFrame();
      expect(await T(() => window.tardis.displayedEpoch()) === eps[eps.length - 1], 'replay ends at the last epoch');
      const late = await trailPixels();
      expect(late > early + 40, `trail pixels ${early} at the first epoch, ${late} at the last`);
      await page.check('#sus-trails');
      await page.mouse.move(5, 5);
      await page.hover('#sus-list .sc:nth-child(1)');
      await nextFrame();
      await page.screenshot({ path: path.join(outDir, 'ui-suspects.png') });
    });

    await check('suspects: browser closed, server restarted: the session continues with its verdicts', async () => {
      // An unsubmitted mark must survive too (kept in the browser).
      await page.click('#sus-list .sc:nth-child(1) .v-acc');
      const draft = round2[0];
      const state = await ctx.storageState();
      await ctx.close();
      await stopServer(server);
      server = await serve(bin, runDir, web, 10000, port);
      expect(server.url === base, `restarted at ${server.url}, not ${base}`);
      await openPage(state);
      await page.waitForSelector('#sus-list .sc', { timeout: 60000 });
      await idle();
      const sus = await T(() => {
        const s = window.tardis.suspects();
        return { id: s.session.id, acc: [...s.accepted].sort((a, b) => a - b), rej: [...s.rejected].sort((a, b) => a - b), v: Object.fromEntries(s.verdicts) };
      });
      expect(sus.id === sid, `continued session ${sus.id}, not ${sid}`);
      expect(JSON.stringify(sus.acc) === JSON.stringify([...accepted].sort((a, b) => a - b)), `accepted ${sus.acc}`);
      expect(JSON.stringify(sus.rej) === JSON.stringify([...rejected].sort((a, b) => a - b)), `rejected ${sus.rej}`);
      expect(JSON.stringify(sus.v) === JSON.stringify({ [draft]: 'accept' }), `draft ${JSON.stringify(sus.v)}`);
      expect(JSON.stringify(await cardIds()) === JSON.stringify(round2), 'same round on screen');
      expect(await page.locator(`#sus-list .sc.acc[data-i="${draft}"]`).count() === 1, 'draft card marked');
      expect((await page.textContent('#sus-counts')).replace(/\s+/g, ' ').includes('2 accepted 2 rejected round 2'), 'counters');
      // Carry on: submit, and the export has all three.
      await page.click('#sus-submit');
      await page.waitForFunction(() => window.tardis.suspects().session.rounds === 2, null, { timeout: 60000 });
      await idle();
      const ex = await api(`/api/suspects/sessions/${sid}/export`);
      const all = [...accepted, draft].sort((a, b) => a - b);
      expect(JSON.stringify(ex.indices) === JSON.stringify(all), `export ${ex.indices} vs ${all}`);
      expect(!(await cardIds()).some((i) => all.includes(i) || rejected.includes(i)), 'round 3 repeats a judged sample');
      await page.mouse.move(5, 5);
      await nextFrame();
      await page.screenshot({ path: path.join(outDir, 'ui-suspects-restart.png') });
    });

    await check('suspects: a fresh browser continues the most recent session', async () => {
      await ctx.close();
      await openPage(undefined);
      await page.waitForSelector('#sus-list .sc', { timeout: 60000 });
      await idle();
      expect(await T(() => window.tardis.suspects().session.id) === sid, 'most recent session');
      expect(await T(() => window.tardis.suspects().accepted.size) === 3, 'three accepted');
      // A new session starts empty; the picker switches back.
      await page.click('#sus-new');
      await idle();
      const sid2 = await T(() => window.tardis.suspects().session.id);
      expect(sid2 !== sid && await T(() => window.tardis.suspects().accepted.size) === 0, 'new session is empty');
      await page.selectOption('#sus-session', String(sid));
      await page.waitForFunction((id) => window.tardis.suspects().session.id === id, sid, { timeout: 60000 });
      await idle();
      expect(await T(() => window.tardis.suspects().accepted.size) === 3, 'switched back');
    });

    await check('suspects: no page errors and no failed requests', async () => {
      expect(errors.length === 0, errors.join(' | '));
    });
  } finally {
    if (ctx) await ctx.close().catch(() => {});
    await stopServer(server);
  }
}
