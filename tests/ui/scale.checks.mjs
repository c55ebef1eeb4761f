// Checks of the point layer's renderers (docs/ui-scale.md): WebGL 2 is the
// one used wherever the browser has it, Canvas2D (?gl=0, or no WebGL) draws
// the same colours, the density image takes over when the points crowd the
// canvas, and hover picks the sample under the pointer in each of them.

// Pixel [r, g, b, a] of the point layer at CSS position (x, y) (the WebGL
// canvas keeps its drawing buffer, so it can be read through a 2-D copy).
const ptsPixel = (page, x, y) => page.evaluate(([x, y]) => {
  const sc = window.tardis.scatter(), src = sc.pts, d = sc.dpr;
  const c = document.createElement('canvas');
  c.width = src.width; c.height = src.height;
  const ctx = c.getContext('2d');
  ctx.drawImage(src, 0, 0);
  return Array.from(ctx.getImageData(Math.floor(x * d), Math.floor(y * d), 1, 1).data);
}, [x, y]);

// Training samples correctly predicted, on screen, with no other shown sample
// within 6 CSS px: the pixel at their centre is theirs alone.
const isolated = (page, k) => page.evaluate((k) => {
  const t = window.tardis, S = t.state, d = S.data.get(t.displayedEpoch()), sc = t.scatter();
  const pts = [];
  for (let g = 0; g < S.N; g++) {
    const [x, y] = t.screenOf(g);
    if (Number.isFinite(x) && x > 10 && y > 10 && x < sc.W - 10 && y < sc.H - 10) pts.push([g, x, y]);
  }
  const out = [];
  for (const [g, x, y] of pts) {
    if (g >= S.nTrain || S.label[g] !== d.pred[g]) continue;
    if (pts.every(([h, u, v]) => h === g || Math.hypot(u - x, v - y) > 6)) out.push(g);
    if (out.length >= k) break;
  }
  return out;
}, k);

const hexRgb = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));

async function pageAt(browser, url, query) {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const u = new URL(url);
  for (const [k, v] of Object.entries(query)) u.searchParams.set(k, v);
  await page.goto(u.toString());
  await page.waitForFunction(() => window.tardis && window.tardis.ready() && window.tardis.allLoaded() && window.tardis.settled(),
    null, { timeout: 180000 });
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  return { page, errors };
}

// Hovering the centre of each sample shows its tooltip (picking maps back to it).
async function checkHover(page, gs, expect) {
  const box = await page.locator('#canvas-wrap').boundingBox();
  for (const g of gs) {
    const [sx, sy, li, split, picked] = await page.evaluate((g) => {
      const t = window.tardis, [x, y] = t.screenOf(g), S = t.state;
      return [x, y, g >= S.nTrain ? g - S.nTrain : g, g >= S.nTrain ? 'test' : 'train', t.pickAt(x, y)];
    }, g);
    expect(picked === g, `pickAt on sample ${g} answered ${picked}`);
    await page.mouse.move(box.x + sx, box.y + sy);
    await page.waitForFunction((txt) => !document.getElementById('tooltip').hidden &&
      document.getElementById('tt-title').textContent === txt, `${split} #${li}`, { timeout: 60000 })
      .catch(async () => {
        const seen = await page.evaluate(() => [window.tardis.state.hover, document.getElementById('tt-title').textContent]);
        throw new Error(`hover on sample ${g} at (${sx.toFixed(1)}, ${sy.toFixed(1)}): hover ${seen[0]}, tooltip "${seen[1]}"`);
      });
  }
  await page.mouse.move(box.x + box.width + 20, box.y + 10);
}

// Each isolated sample's centre pixel is its label's colour, opaque.
async function checkColours(page, gs, expect, what) {
  for (const g of gs) {
    const [sx, sy, hex] = await page.evaluate((g) => {
      const t = window.tardis, [x, y] = t.screenOf(g);
      const c = t.state.label[g];
      return [x, y, getComputedStyle(document.querySelector(`.lg[data-c="${c}"] i`)).backgroundColor];
    }, g);
    const want = hex.startsWith('#') ? hexRgb(hex) : hex.match(/\d+/g).slice(0, 3).map(Number);
    const p = await ptsPixel(page, sx, sy);
    const off = Math.max(...want.map((v, i) => Math.abs(v - p[i])));
    expect(p[3] > 200 && off <= 12, `${what}: sample ${g} at (${sx.toFixed(1)}, ${sy.toFixed(1)}) is rgba ${p} on the point layer, want its label's ${want}`);
  }
}

export async function scaleChecks({ browser, url, check, expect }) {
  const { page, errors } = await pageAt(browser, url, {});
  const T = (f, a) => page.evaluate(f, a);
  let gs = [];

  await check('scale: the point layer is WebGL 2 wherever the browser has it, and draws every sample as a point', async () => {
    const has = await T(() => !!document.createElement('canvas').getContext('webgl2'));
    const r = await T(() => window.tardis.renderer());
    expect(r === (has ? 'webgl2' : 'canvas2d'), `renderer ${r}, browser WebGL 2: ${has}`);
    console.log(`     renderer: ${r}`);
    expect((await T(() => window.tardis.pointMode())) === 'points', 'a 2,000-sample run is drawn as points, not density');
    gs = await isolated(page, 4);
    expect(gs.length >= 2, `only ${gs.length} isolated samples on screen`);
    await checkColours(page, gs, expect, r);
  });

  await check('scale: hover and click pick the sample under the pointer', async () => {
    await checkHover(page, gs, expect);
    const box = await page.locator('#canvas-wrap').boundingBox();
    const [sx, sy] = await T((g) => window.tardis.screenOf(g), gs[0]);
    await page.mouse.click(box.x + sx, box.y + sy);
    await page.waitForFunction((g) => window.tardis.state.selected === g, gs[0], { timeout: 60000 });
    await page.keyboard.press('Escape');
  });

  await check('scale: a crowded canvas is drawn as a density image, and picking still finds the sample', async () => {
    await T(() => { window.tardis.scatter().densityAt = 0; window.tardis.redraw(); });
    await page.waitForFunction(() => window.tardis.pointMode() === 'density', null, { timeout: 60000 });
    await T(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    for (const g of gs) {
      const [sx, sy] = await T((g) => window.tardis.screenOf(g), g);
      const p = await ptsPixel(page, sx, sy);
      expect(p[3] > 100, `density image empty at sample ${g}: rgba ${p}`);
    }
    await checkHover(page, gs.slice(0, 2), expect);
    await T(() => { window.tardis.scatter().densityAt = 2; window.tardis.redraw(); });
    await page.waitForFunction(() => window.tardis.pointMode() === 'points', null, { timeout: 60000 });
  });

  await check('scale: playing interpolates on the GPU; the frame between two epochs is where the CPU puts it', async () => {
    const r = await T(() => window.tardis.renderer());
    await page.locator('#epoch-slider').fill('0');
    await page.waitForFunction(() => window.tardis.settled(), null, { timeout: 120000 });
    // Freeze a frame half-way by hand: positions a + (b - a) / 2.
    const mid = await T(async () => {
      const t = window.tardis, S = t.state;
      S.target = 0.5; t.redraw();
      await new Promise((res) => { const f = () => (S.tpos === S.target ? res() : requestAnimationFrame(f)); f(); });
      await new Promise((res) => requestAnimationFrame(() => requestAnimationFrame(res)));
      return t.state.tpos;
    });
    expect(mid === 0.5, `tpos ${mid}`);
    const g2 = await isolated(page, 2);
    if (r === 'webgl2') await checkColours(page, g2, expect, 'mid-motion');
    await checkHover(page, g2, expect);
    await T(() => { window.tardis.state.target = Math.round(window.tardis.state.tpos); window.tardis.redraw(); });
    await page.waitForFunction(() => window.tardis.settled(), null, { timeout: 120000 });
  });

  await check('scale: no page errors in the WebGL page', async () => {
    expect(errors.length === 0, errors.join(' | '));
  });
  await page.close();

  await check('scale: with ?gl=0 the Canvas2D fallback draws the same samples in the same colours and picks them', async () => {
    const { page: p2, errors: e2 } = await pageAt(browser, url, { gl: '0' });
    try {
      expect((await p2.evaluate(() => window.tardis.renderer())) === 'canvas2d', 'renderer is not canvas2d with ?gl=0');
      const g2 = await isolated(p2, 4);
      expect(g2.length >= 2, `only ${g2.length} isolated samples on screen`);
      await checkColours(p2, g2, expect, 'canvas2d');
      await checkHover(p2, g2, expect);
      expect(e2.length === 0, e2.join(' | '));
    } finally { await p2.close(); }
  });
}
