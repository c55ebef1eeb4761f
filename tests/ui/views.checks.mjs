// Checks of the canvas's reading aids (docs/ui.md): the territory of the view
// covers the whole canvas at any zoom, and layout facts at three widths — the
// legend never covers the data, the panels stay inside the viewport.

// Pixel [r, g, b, a] of the territory layer at CSS position (x, y).
const bgPixel = (page, x, y) => page.evaluate(([x, y]) => {
  const c = document.querySelector('#canvas-wrap canvas');
  const d = window.devicePixelRatio || 1;
  return Array.from(c.getContext('2d').getImageData(Math.round(x * d), Math.round(y * d), 1, 1).data);
}, [x, y]);

const overlap = (a, b) => a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;

export async function viewsChecks({ browser, url, outDir, check, expect }) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const T = (f, a) => page.evaluate(f, a);
  await page.goto(url);
  await page.waitForFunction(() => window.tardis && window.tardis.ready() && window.tardis.allLoaded(), null, { timeout: 30000 });

  await check('views: zoomed out, the decoded view territory covers every corner of the canvas', async () => {
    await page.waitForFunction(() => window.tardis.viewTerritory(), null, { timeout: 10000 });
    const n0 = (await T(() => window.tardis.viewTerritory())).loads;
    const box = await page.locator('#canvas-wrap').boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.wheel(0, 900);
    await page.waitForFunction((n) => window.tardis.viewTerritory().loads > n, n0, { timeout: 10000 });
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
      await page.screenshot({ path: `${outDir}/ui-${w}.png` });
    });
  }
  await check('views: the quality panel explains each figure and shows test ppr', async () => {
    const rows = await page.locator('#quality tr').count();
    const helps = await page.locator('#quality tr .qh').count();
    expect(rows >= 3 && helps === rows, `${rows} rows, ${helps} explanations`);
    const text = await page.textContent('#quality');
    expect(text.includes('test ppr') && text.includes('on own class'), 'test ppr / on own class rows');
  });
  await page.close();
}
