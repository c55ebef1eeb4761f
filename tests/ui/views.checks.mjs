// Checks of the canvas's reading aids (docs/ui.md): the territory of the view
// covers the whole canvas at any zoom, and layout facts at three widths — the
// legend never covers the data, the panels stay inside the viewport.

// Pixel [r, g, b, a] of the territory layer at CSS position (x, y).
const bgPixel = (page, x, y) => page.evaluate(([x, y]) => {
  const c = document.querySelector('#canvas-wrap canvas');
  const d = window.devicePixelRatio || 1;
  return Array.from(c.getContext('2d').getImageData(Math.round(x * d), Math.round(y * d), 1, 1).data);
}, [x, y]);

// In the page: the decoded view territory on hand covers the whole canvas
// (and came from a load after the first `after` ones).
const territoryCovers = (after = -1) => {
  const v = window.tardis.viewTerritory(), s = window.tardis.scatter();
  if (!v || v.loads <= after) return false;
  const [a, b] = [s.toData(0, 0), s.toData(s.W, s.H)];
  return v.extent[0] <= Math.min(a[0], b[0]) + 1e-3 && v.extent[2] >= Math.max(a[0], b[0]) - 1e-3 &&
    v.extent[1] <= Math.min(a[1], b[1]) + 1e-3 && v.extent[3] >= Math.max(a[1], b[1]) - 1e-3;
};

const overlap = (a, b) => a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;

export async function viewsChecks({ browser, url, outDir, check, expect }) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const T = (f, a) => page.evaluate(f, a);
  await page.goto(url);
  await page.waitForFunction(() => window.tardis && window.tardis.ready() && window.tardis.allLoaded(), null, { timeout: 60000 });

  await check('views: zoomed out, the decoded view territory covers every corner of the canvas', async () => {
    await page.waitForFunction(() => window.tardis.viewTerritory(), null, { timeout: 60000 });
    const n0 = (await T(() => window.tardis.viewTerritory())).loads;
    const box = await page.locator('#canvas-wrap').boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.wheel(0, 900);
    // A load that was under way before the wheel may land first: wait for
    // one made after it, that covers the zoomed-out view.
    await page.waitForFunction(territoryCovers, n0, { timeout: 60000 }).catch(() => {});
    await T(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const vt = await T(() => window.tardis.viewTerritory());
    const sc = await T(() => { const s = window.tardis.scatter(); return [s.toData(0, 0), s.toData(s.W, s.H)]; });
    expect(vt.extent[0] <= sc[0][0] + 1e-3 && vt.extent[2] >= sc[1][0] - 1e-3, `view territory x ${vt.extent} vs screen ${sc}`);
    for (const [x, y] of [[3, 3], [box.width - 3, 3], [3, box.height - 3], [box.width - 3, box.height - 3]]) {
      const p = await bgPixel(page, x, y);
      expect(!(p[0] === 255 && p[1] === 255 && p[2] === 255), `blank white at (${x}, ${y})`);
    }
    await page.mouse.dblclick(box.x + box.width - 5, box.y + box.height - 5);
  });

  for (const [w, h] of [[1024, 768], [1400, 900], [1920, 1080]]) {
    await check(`views: layout at ${w}×${h} — legend clear of the data, panels inside the viewport`, async () => {
      await page.setViewportSize({ width: w, height: h });
      await page.waitForTimeout(150);
      await page.keyboard.press('f');
      await T(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      // The data's box on screen: every shown sample's position.
      const data = await T(() => {
        const t = window.tardis, st = t.state, wrap = document.getElementById('canvas-wrap').getBoundingClientRect();
        let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
        for (let g = 0; g < st.N; g += 1) {
          const [sx, sy] = t.screenOf(g);
          if (!Number.isFinite(sx)) continue;
          x0 = Math.min(x0, sx); x1 = Math.max(x1, sx); y0 = Math.min(y0, sy); y1 = Math.max(y1, sy);
        }
        return { x: wrap.x + x0, y: wrap.y + y0, width: x1 - x0, height: y1 - y0 };
      });
      const legend = await page.locator('#legend').boundingBox();
      expect(!overlap(legend, data), `legend ${JSON.stringify(legend)} covers the data ${JSON.stringify(data)}`);
      const wrap = await page.locator('#canvas-wrap').boundingBox();
      expect(data.x >= wrap.x - 1 && data.x + data.width <= wrap.x + wrap.width + 1, 'data inside the canvas');
      for (const sel of ['#canvas-wrap', '#legend']) {
        const b = await page.locator(sel).boundingBox();
        expect(b.x >= 0 && b.y >= 0 && b.x + b.width <= w + 0.5 && b.y + b.height <= h + 0.5, `${sel} outside the ${w}×${h} viewport`);
      }
      // The screenshot for a person to look at: after the territory decoded
      // for this view has arrived (the facts above do not depend on it).
      await page.waitForFunction(territoryCovers, undefined, { timeout: 60000 }).catch(() => console.log(`     ui-${w}.png: taken before the view's territory arrived`));
      await page.screenshot({ path: `${outDir}/ui-${w}.png` });
    });
  }
  await check('views: at 1400×900 the quality panel starts above the fold', async () => {
    await page.setViewportSize({ width: 1400, height: 900 });
    const q = await page.locator('#quality-panel').boundingBox();
    expect(q && q.y + 150 < 900, `quality panel at y = ${q && q.y}`);
  });

  await check('views: the tooltip of a clicked sample stays off its trajectory', async () => {
    await page.keyboard.press('f');
    await T(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    // The tooltip's size, from a first hover.
    const box = await page.locator('#canvas-wrap').boundingBox();
    const [hx, hy] = await T(() => window.tardis.screenOf(0));
    await page.mouse.move(box.x + hx, box.y + hy);
    await page.waitForSelector('#tooltip:not([hidden])', { timeout: 60000 });
    const size = await page.locator('#tooltip').boundingBox();
    // The sample whose trajectory (vertices and points along its segments)
    // runs most through where the tooltip used to go: right of the cursor
    // (left near the right edge), vertically centred.
    const g = await T(([tw, th]) => {
      const t = window.tardis, s = t.scatter(), st = t.state;
      let best = -1, bn = 0;
      for (let g = 0; g < Math.min(st.nTrain, 3000); g++) {
        const [sx, sy] = t.screenOf(g);
        if (!(sx > 260 && sx < s.W - 20 && sy > 20 && sy < s.H - 20)) continue;
        const x0 = sx + 14 + tw > s.W ? sx - 14 - tw : sx + 14;
        const y0 = Math.max(4, Math.min(s.H - th - 4, sy - th / 2));
        const tr = st.epochs.map((e) => { const d = st.data.get(e); return s.toScreen(d.pos[2 * g], d.pos[2 * g + 1]); });
        let n = 0;
        for (let k = 0; k + 1 < tr.length; k++)
          for (let j = 0; j <= 8; j++) {
            const x = tr[k][0] + (tr[k + 1][0] - tr[k][0]) * j / 8, y = tr[k][1] + (tr[k + 1][1] - tr[k][1]) * j / 8;
            if (x > x0 && x < x0 + tw && y > y0 && y < y0 + th) n++;
          }
        if (n > bn) { bn = n; best = g; }
      }
      return best;
    }, [size.width, size.height]);
    expect(g >= 0, 'no sample with a trajectory to its right');
    const [sx, sy] = await T((g) => window.tardis.screenOf(g), g);
    await page.mouse.move(box.x + sx, box.y + sy);
    await page.waitForSelector('#tooltip:not([hidden])', { timeout: 60000 });
    await page.mouse.click(box.x + sx, box.y + sy);
    await page.waitForFunction(() => window.tardis.state.selected >= 0, null, { timeout: 60000 });
    const tt = await page.locator('#tooltip').boundingBox();
    const pts = await T(() => window.tardis.trajectoryScreen());
    const inside = pts.filter(([x, y]) => x > tt.x - box.x && x < tt.x - box.x + tt.width && y > tt.y - box.y && y < tt.y - box.y + tt.height);
    expect(pts.length > 1 && inside.length === 0, `${inside.length} of ${pts.length} trajectory points under the tooltip`);
    await page.keyboard.press('Escape');
  });

  await check('views: the quality panel explains each figure and shows test ppr', async () => {
    const rows = await page.locator('#quality tr').count();
    const helps = await page.locator('#quality tr .qh').count();
    expect(rows >= 3 && helps === rows, `${rows} rows, ${helps} explanations`);
    const text = await page.textContent('#quality');
    expect(text.includes('test ppr') && text.includes('on own class'), 'test ppr / on own class rows');
  });
  // Pixels of the point layer in exactly the colour rgb.
  const countColour = (rgb) => T((rgb) => {
    const d = window.tardis.scatter().pointPixels();
    let n = 0;
    for (let k = 0; k < d.length; k += 4) if (d[k] === rgb[0] && d[k + 1] === rgb[1] && d[k + 2] === rgb[2] && d[k + 3] === 255) n++;
    return n;
  }, rgb);
  const frames = () => T(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

  await check('views: colour by correctness, confidence and back to class', async () => {
    const green = [42, 157, 75];
    expect(await countColour(green) === 0, 'green points before colour-by');
    await page.selectOption('#color-by', 'correct');
    await frames();
    expect(await countColour(green) > 100, 'no green (correct) points');
    expect(!(await page.locator('#lg-colorby').isHidden()), 'colour-by legend hidden');
    await page.selectOption('#color-by', 'confidence');
    await page.waitForFunction(() => window.tardis.colorBy(), null, { timeout: 60000 });
    const span = await T(() => { const v = window.tardis.colorBy().idx; let a = 255, b = 0; for (const x of v) if (x < 250) { a = Math.min(a, x); b = Math.max(b, x); } return b - a; });
    expect(span > 50, `confidence colours span ${span} of 250 steps`);
    // "changed": red exactly where the prediction differs from the epoch before.
    // On the epoch whose predictions changed most from the one before (the
    // run may end with a copy of its last epoch).
    const best = await T(() => {
      const st = window.tardis.state;
      let be = st.epochs[1], bn = -1;
      for (let k = 1; k < st.epochs.length; k++) {
        const a = st.data.get(st.epochs[k - 1]).pred, b = st.data.get(st.epochs[k]).pred;
        let n = 0;
        for (let i = 0; i < st.N; i++) n += a[i] !== b[i];
        if (n > bn) { bn = n; be = st.epochs[k]; }
      }
      return be;
    });
    await T((e) => window.tardis.goto(e), best);
    await page.waitForFunction((e) => window.tardis.displayedEpoch() === e && window.tardis.settled(), best, { timeout: 60000 });
    await page.selectOption('#color-by', 'changed');
    await frames();
    const ch = await T(() => {
      const t = window.tardis, st = t.state, e = t.displayedEpoch(), k = st.epochs.indexOf(e);
      const a = st.data.get(st.epochs[k - 1]).pred, b = st.data.get(e).pred, idx = t.colorBy().idx;
      let bad = 0, n = 0;
      for (let i = 0; i < st.N; i++) { const want = a[i] !== 255 && b[i] !== 255 && a[i] !== b[i]; n += want; bad += (idx[i] === 251) !== want; }
      return { bad, n };
    });
    expect(ch.n > 0 && ch.bad === 0, `changed: ${ch.bad} wrong of ${ch.n} changed`);
    await page.selectOption('#color-by', 'class');
    await frames();
    expect(await T(() => window.tardis.colorBy()) === null && await countColour(green) === 0, 'class colours back');
  });

  await check('views: the URL holds epoch, selection, filters and colour-by, and a link restores them', async () => {
    const eps = await T(() => window.tardis.state.epochs);
    await T((e) => window.tardis.goto(e), eps[0]);
    await page.waitForFunction(() => window.tardis.settled(), null, { timeout: 60000 });
    await page.selectOption('#f-label', '3');
    await page.selectOption('#color-by', 'correct');
    await T(() => { const el = document.getElementById('f-idx'); el.value = '1-400'; el.dispatchEvent(new Event('input', { bubbles: true })); el.dispatchEvent(new Event('change', { bubbles: true })); });
    await page.waitForTimeout(300);
    const link = page.url();
    const q = new URL(link).searchParams;
    expect(q.get('epoch') === String(eps[0]) && q.get('label') === '3' && q.get('color') === 'correct' && q.get('idx') === '1-400', `URL ${link}`);
    const p2 = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await p2.goto(link);
    await p2.waitForFunction(() => window.tardis && window.tardis.ready(), null, { timeout: 60000 });
    const st = await p2.evaluate(() => ({ e: window.tardis.displayedEpoch(), l: document.getElementById('f-label').value,
      c: document.getElementById('color-by').value, i: document.getElementById('f-idx').value }));
    await p2.close();
    expect(st.e === eps[0] && st.l === '3' && st.c === 'correct' && st.i === '1-400', `restored ${JSON.stringify(st)}`);
    await page.click('#f-clear');
    await page.selectOption('#color-by', 'class');
  });

  await check('views: a selected sample lists its high-D and 2-D neighbours, as the API does', async () => {
    const box = await page.locator('#canvas-wrap').boundingBox();
    const g = 7;
    const [sx, sy] = await T((g) => window.tardis.screenOf(g), g);
    await page.mouse.click(box.x + sx, box.y + sy);
    await page.waitForFunction(() => window.tardis.state.selected >= 0 && window.tardis.neighbors(), null, { timeout: 60000 });
    const sel = await T(() => window.tardis.state.selected);
    const nn = await T(() => window.tardis.neighbors());
    const r = await fetch(new URL(`/api/samples/${sel < (await T(() => window.tardis.state.nTrain)) ? sel : 0}/neighbors?k=8&epoch=${nn.epoch}`, url));
    const want = await r.json();
    if (sel < await T(() => window.tardis.state.nTrain)) {
      expect(JSON.stringify(nn.high) === JSON.stringify(want.high.map((x) => x.index)), `high ${nn.high} vs ${want.high.map((x) => x.index)}`);
      expect(JSON.stringify(nn.low) === JSON.stringify(want.low.map((x) => x.index)), 'low');
    }
    expect(await page.locator('#nn-high button').count() === 8 && await page.locator('#nn-low button').count() === 8, 'eight thumbnails per row');
    const first = nn.high[0];
    await page.click('#nn-high button:first-child');
    await page.waitForFunction((f) => window.tardis.state.selected === f, first, { timeout: 60000 });
    await page.keyboard.press('Escape');
  });

  await check('views: the confidence range query keeps exactly the samples in range', async () => {
    const e = await T(() => window.tardis.displayedEpoch());
    const get = async (split) => {
      const r = await fetch(new URL(`/api/epochs/${e}/confidence?split=${split}`, url));
      return new Float32Array(await r.arrayBuffer());
    };
    const [ctr, cte] = [await get('train'), await get('test')];
    // A band around the median, whatever the epoch's confidences are.
    const all = [...ctr, ...cte].sort((a, b) => a - b);
    const lo = all[Math.floor(all.length * 0.3)].toFixed(2), hi = all[Math.floor(all.length * 0.7)].toFixed(2);
    const want = all.filter((c) => c >= +lo && c <= +hi).length;
    await page.fill('#f-cmin', lo);
    await page.fill('#f-cmax', hi);
    await page.waitForFunction((w) => { const c = window.tardis.counts(); return c && c.ok + c.bad === w; }, want, { timeout: 60000 })
      .catch(() => {});
    const c = await T(() => window.tardis.counts());
    expect(want > 0 && c.ok + c.bad === want, `${c.ok + c.bad} shown, ${want} in [${lo}, ${hi}]`);
    expect(new URL(page.url()).searchParams.get('cmin') === String(+lo), 'cmin in the URL');
    await page.click('#f-clear');
  });

  await check('views: PNG export downloads the view', async () => {
    const [d] = await Promise.all([page.waitForEvent('download', { timeout: 60000 }), page.click('#export-png')]);
    const fs = await import('node:fs');
    const b = fs.readFileSync(await d.path());
    expect(d.suggestedFilename().endsWith('.png') && b.length > 10000 && b.slice(1, 4).toString() === 'PNG', `${d.suggestedFilename()} ${b.length} bytes`);
  });
  await check('views: SVG export holds every sample on screen, where the canvas draws it', async () => {
    await page.keyboard.press('f');
    await frames();
    const [d] = await Promise.all([page.waitForEvent('download', { timeout: 60000 }), page.click('#export-svg')]);
    const fs = await import('node:fs');
    const text = fs.readFileSync(await d.path(), 'utf8');
    expect(d.suggestedFilename().endsWith('.svg'), d.suggestedFilename());
    // Parsed by the browser's XML parser; every sample element against the page's state.
    const r = await T((text) => {
      const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
      if (doc.querySelector('parsererror')) return { error: doc.querySelector('parsererror').textContent };
      const t = window.tardis, s = t.scatter(), st = t.state, c = t.counts();
      const els = [...doc.querySelectorAll('[data-i]')];
      const seen = new Set(els.map((e) => +e.getAttribute('data-i')));
      let want = 0, missing = 0, far = 0;
      for (let g = 0; g < st.N; g++) {
        const [x, y] = t.screenOf(g);
        if (!(x >= 0 && y >= 0 && x <= s.W && y <= s.H)) continue;
        want++;
        if (!seen.has(g)) missing++;
      }
      for (const e of els) {
        const g = +e.getAttribute('data-i'), [x, y] = t.screenOf(g);
        const cx = e.tagName === 'rect' ? +e.getAttribute('x') + +e.getAttribute('width') / 2 : +e.getAttribute('cx');
        const cy = e.tagName === 'rect' ? +e.getAttribute('y') + +e.getAttribute('height') / 2 : +e.getAttribute('cy');
        if (Math.hypot(cx - x, cy - y) > 0.02) far++;
        if ((e.tagName === 'rect') !== (g >= st.nTrain)) far++;
      }
      const img = doc.querySelector('image#territory');
      return { n: els.length, unique: seen.size, want, missing, far, shown: c.ok + c.bad + c.dim,
        img: !!img && img.getAttribute('href').startsWith('data:image/png;base64,'),
        w: +doc.documentElement.getAttribute('width'), W: s.W, noisy: !!doc.getElementById('noisy-labels') };
    }, text);
    expect(!r.error, `SVG does not parse: ${r.error}`);
    expect(r.n === r.unique && r.want > 1000 && r.missing === 0 && r.n <= r.shown, `${r.n} elements (${r.unique} unique), ${r.missing} of ${r.want} on-screen samples missing`);
    expect(r.far === 0, `${r.far} samples placed or shaped differently from the canvas`);
    expect(r.img && r.w === r.W && r.noisy, `territory image ${r.img}, width ${r.w} vs ${r.W}, noisy marks ${r.noisy}`);
  });

  await check('views: colour by loss matches the cross-entropy of /api/epochs/{e}/loss', async () => {
    const e = await T(() => window.tardis.displayedEpoch());
    const buf = await (await fetch(new URL(`/api/epochs/${e}/loss?split=train`, url))).arrayBuffer();
    const loss = new Float32Array(buf);
    // Against the logits: the route's value is log-sum-exp minus the label's logit.
    const s0 = await (await fetch(new URL(`/api/samples/0?epoch=${e}`, url))).json();
    const z = s0.logits, m = Math.max(...z);
    const ce = Math.log(z.reduce((a, v) => a + Math.exp(v - m), 0)) + m - z[s0.label];
    expect(Math.abs(ce - loss[0]) < 1e-4, `loss[0] ${loss[0]} vs ${ce} from the logits`);
    await page.selectOption('#color-by', 'loss');
    await page.waitForFunction(() => window.tardis.colorBy(), null, { timeout: 60000 });
    const r = await T((loss) => {
      const idx = window.tardis.colorBy().idx, C = window.tardis.state.classes.length, top = 3 * Math.log(Math.max(2, C));
      let bad = 0, lo = 255, hi = 0;
      for (let i = 0; i < loss.length; i++) {
        const want = Math.max(0, Math.min(249, Math.round(Math.log1p(loss[i]) / Math.log1p(top) * 249)));
        if (idx[i] !== want) bad++;
        lo = Math.min(lo, idx[i]); hi = Math.max(hi, idx[i]);
      }
      return { bad, lo, hi };
    }, [...loss]);
    expect(r.bad === 0 && r.hi > r.lo, `${r.bad} samples off the loss ramp, span ${r.lo}–${r.hi}`);
    expect((await page.textContent('#lg-colorby')).includes('loss'), 'legend names the loss');
    await page.selectOption('#color-by', 'recorded_loss');
    await page.waitForFunction(() => window.tardis.colorBy(), null, { timeout: 60000 });
    const rec = new Float32Array(await (await fetch(new URL(`/api/epochs/${e}/recorded_loss`, url))).arrayBuffer());
    const nOnRamp = await T(() => { const v = window.tardis.colorBy().idx, n = window.tardis.state.nTrain; let k = 0; for (let i = 0; i < n; i++) k += v[i] < 250; return k; });
    expect(rec.length > 0 && nOnRamp === rec.filter((v) => v >= 0).length, `recorded loss: ${nOnRamp} coloured of ${rec.length}`);
    await page.selectOption('#color-by', 'label');
    await frames();
    const lab = await T(() => { const t = window.tardis, v = t.colorBy(); let bad = 0; for (let i = 0; i < t.state.N; i++) bad += v.idx[i] !== t.state.label[i]; return bad; });
    expect(lab === 0, `${lab} samples not in their label's colour`);
    await page.selectOption('#color-by', 'class');
  });

  await check('views: compare two epochs side by side — layout, linked hover, diff count, URL', async () => {
    await page.setViewportSize({ width: 1400, height: 900 });
    const eps = await T(() => window.tardis.state.epochs);
    const last = eps[eps.length - 1];
    await T((e) => window.tardis.goto(e), last);
    await page.waitForFunction((e) => window.tardis.displayedEpoch() === e && window.tardis.settled(), last, { timeout: 120000 });
    await page.click('#compare');
    await page.waitForFunction(() => window.tardis.compare() && window.tardis.compare().ready, null, { timeout: 120000 });
    const c = await T(() => window.tardis.compare());
    expect(c.epoch === eps[0], `compare opens on the first epoch, got ${c.epoch}`);
    const a = await page.locator('#canvas-wrap').boundingBox(), b = await page.locator('#cmp-wrap').boundingBox();
    expect(Math.abs(a.width - b.width) <= 2 && Math.abs(a.y - b.y) < 1 && Math.abs(a.height - b.height) < 1 && a.x + a.width <= b.x,
      `panes ${JSON.stringify(a)} / ${JSON.stringify(b)} not side by side and equal`);
    expect(b.x + b.width <= 1400 && a.width > 300, 'panes inside the viewport');
    // The legend (compact across the top) stays clear of pane A's data.
    await frames();
    const dataA = await T(() => {
      const t = window.tardis, st = t.state, w = document.getElementById('canvas-wrap').getBoundingClientRect();
      let y0 = Infinity;
      for (let g = 0; g < st.N; g++) { const [, sy] = t.screenOf(g); if (Number.isFinite(sy)) y0 = Math.min(y0, sy); }
      return w.y + y0;
    });
    const lg = await page.locator('#legend').boundingBox();
    expect(lg.y + lg.height <= dataA + 0.5 && lg.x + lg.width <= a.x + a.width, `legend ${JSON.stringify(lg)} over the data (top ${dataA})`);
    // Pane B draws epoch B's embedding: positions from /api/epochs/{B}/embedding.
    const emb = new Float32Array(await (await fetch(new URL(`/api/epochs/${c.epoch}/embedding?split=train`, url))).arrayBuffer());
    const off = await T(([x, y]) => { const [sx, sy] = window.tardis.compareScreenOf(3); const s = window.tardis.state; const d = s.data.get(window.tardis.compare().epoch); return Math.hypot(d.pos[6] - x, d.pos[7] - y) + (Number.isFinite(sx) && Number.isFinite(sy) ? 0 : 1); }, [emb[6], emb[7]]);
    expect(off < 1e-6, `pane B's sample 3 is not at its epoch-${c.epoch} position (${off})`);
    // Pane B marks the known-noisy labels as pane A does: one × per noisy
    // training sample (/api/filter?noisy=1) at its epoch-B place on screen
    // (those within the mark's 2.4 px of the edge may or may not count).
    const noisy = await (await fetch(new URL('/api/filter?split=train&noisy=1', url))).json();
    await frames();
    const on = await T((ids) => {
      const t = window.tardis, w = document.getElementById('cmp-wrap').getBoundingClientRect();
      let inside = 0, edge = 0;
      for (const g of ids) {
        const [sx, sy] = t.compareScreenOf(g);
        if (sx >= 0 && sy >= 0 && sx <= w.width && sy <= w.height) inside++;
        else if (sx >= -2.4 && sy >= -2.4 && sx <= w.width + 2.4 && sy <= w.height + 2.4) edge++;
      }
      return { inside, edge, marks: t.compare().marks };
    }, noisy);
    expect(noisy.length > 0 && on.marks && on.marks.noisy >= on.inside && on.marks.noisy <= on.inside + on.edge && on.inside > 0,
      `pane B noisy marks ${JSON.stringify(on)}, ${noisy.length} noisy labels`);
    await T(() => { const el = document.getElementById('f-marknoisy'); el.checked = !el.checked; el.dispatchEvent(new Event('change')); });
    await frames();
    const off2 = await T(() => window.tardis.compare().marks);
    await T(() => { const el = document.getElementById('f-marknoisy'); el.checked = !el.checked; el.dispatchEvent(new Event('change')); });
    expect(off2 && off2.noisy === 0, `pane B still marks noise with the marks off: ${JSON.stringify(off2)}`);
    // Hovering a sample in pane B rings the same sample in pane A. The sample
    // is one alone on pane B's screen (no other within 6 px, or failing any,
    // 4 then 3 px; clear of the edges and of the pane's tag) and the nearest
    // to the pixel the pointer goes to, so that the pointer's pixel rounding
    // cannot pick a neighbour: the layout differs in its last bits between
    // CPUs, and a fixed sample may have a neighbour within a pixel.
    const pick = await T(([bx, by]) => {
      const t = window.tardis, S = t.state, w = document.getElementById('cmp-wrap').getBoundingClientRect();
      const pts = [], why = { inside: 0, covered: 0, crowded: 0, nearest: 0 };
      for (let g = 0; g < S.N; g += 1) {
        const [x, y] = t.compareScreenOf(g);
        if (Number.isFinite(x) && x > -6 && y > -6 && x < w.width + 6 && y < w.height + 6) pts.push([g, x, y]);
      }
      for (const r of [6, 4, 3]) {
        for (const [g, x, y] of pts) {
          if (x < 30 || y < 60 || x > w.width - 30 || y > w.height - 30) continue;
          why.inside++;
          const px = Math.round(bx + x), py = Math.round(by + y);
          const el = document.elementFromPoint(px, py);
          if (!el || !el.closest('#cmp-wrap') || el.closest('.pane-tag') || el.closest('#tooltip')) { why.covered++; continue; }
          if (!pts.every(([h, u, v]) => h === g || Math.hypot(u - x, v - y) > r)) { why.crowded++; continue; }
          if (t.compareNearest(px - bx, py - by) !== g) { why.nearest++; continue; }
          return { g, px, py, r };
        }
      }
      return { g: null, n: pts.length, why };
    }, [b.x, b.y]);
    expect(pick.g !== null, `no sample alone on pane B: ${JSON.stringify(pick)}`);
    await page.mouse.move(pick.px, pick.py);
    await page.waitForFunction((g) => window.tardis.state.hover === g, pick.g, { timeout: 60000 }).catch(async () => {
      const seen = await T(([x, y]) => [window.tardis.state.hover, (document.elementFromPoint(x, y) || {}).id], [pick.px, pick.py]);
      throw new Error(`hover on pane B's sample ${pick.g} at (${pick.px}, ${pick.py}): hover ${seen[0]}, element under it "${seen[1]}"`);
    });
    expect(await page.locator('#cmp-wrap #tooltip:not([hidden])').count() === 1, 'tooltip in pane B');
    // The diff: "N predictions differ", N from the two epochs' /predictions.
    const pred = async (e, split) => new Uint8Array(await (await fetch(new URL(`/api/epochs/${e}/predictions?split=${split}`, url))).arrayBuffer());
    let want = 0;
    for (const split of ['train', 'test']) {
      const [p, q] = [await pred(last, split), await pred(c.epoch, split)];
      for (let i = 0; i < p.length; i++) want += p[i] !== q[i];
    }
    await page.waitForFunction(() => window.tardis.compare().diff > 0, null, { timeout: 60000 }).catch(() => {});
    const diff = (await T(() => window.tardis.compare())).diff;
    expect(diff === want && (await page.textContent('#cmp-diff')).includes(want.toLocaleString('en-US')), `diff ${diff}, want ${want}`);
    await page.click('#cmp-show-diff');
    await frames();
    const red = await T(() => { const v = window.tardis.colorBy().idx; let n = 0; for (const x of v) n += x === 251; return n; });
    expect(red === want, `${red} red points, ${want} changed predictions`);
    await page.screenshot({ path: `${outDir}/ui-compare.png` });
    // The URL holds the compare epoch; a link opens the same two panes.
    const link = page.url();
    expect(new URL(link).searchParams.get('cmp') === String(eps[0]), `URL ${link}`);
    const p2 = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await p2.goto(link);
    await p2.waitForFunction(() => window.tardis && window.tardis.ready() && window.tardis.compare() && window.tardis.compare().ready, null, { timeout: 60000 });
    const st = await p2.evaluate(() => ({ a: window.tardis.displayedEpoch(), b: window.tardis.compare().epoch,
      vis: !document.getElementById('cmp-wrap').hidden, sel: document.getElementById('cmp-epoch').value }));
    await p2.close();
    expect(st.a === last && st.b === eps[0] && st.vis && st.sel === String(eps[0]), `restored ${JSON.stringify(st)}`);
    // Another epoch from the pane's picker, then close: one full-width pane, no cmp in the URL.
    await page.selectOption('#cmp-epoch', String(eps[1]));
    await page.waitForFunction((e) => window.tardis.compare().epoch === e && window.tardis.compare().ready, eps[1], { timeout: 120000 });
    await page.click('#cmp-close');
    await frames();
    const a2 = await page.locator('#canvas-wrap').boundingBox();
    expect(!(await T(() => window.tardis.compare())) && a2.width > 1.8 * a.width && !new URL(page.url()).searchParams.has('cmp'),
      `after close: width ${a2.width}, URL ${page.url()}`);
    await page.selectOption('#color-by', 'class');
  });
  await page.close();
}
