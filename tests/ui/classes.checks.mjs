// A run of more classes than the page can hold (300; the page keeps one byte
// per sample, 255 meaning unknown), run by ui.test.mjs: the page must say so
// instead of drawing wrapped classes. The server's /api/run answer is given
// 300 classes on the way to a fresh page; nothing else is fetched.

export async function classesChecks({ browser, url, check, expect }) {
  await check('a run of 300 classes is refused in words', async () => {
    const page = await browser.newPage();
    const fetched = [];
    try {
      await page.route('**/api/**', async (route) => {
        const u = new URL(route.request().url());
        fetched.push(u.pathname);
        if (u.pathname !== '/api/run') return route.continue();
        const r = await route.fetch();
        const run = await r.json();
        run.classes = Array.from({ length: 300 }, (_, k) => `c${k}`);
        return route.fulfill({ response: r, json: run });
      });
      await page.goto(url);
      await page.waitForFunction(() => /300 classes/.test(document.getElementById('message')?.textContent || ''),
        null, { timeout: 60000 });
      const msg = await page.evaluate(() => document.getElementById('message').textContent);
      expect(/at most 255/.test(msg), `message: ${msg}`);
      expect(!fetched.includes('/api/labels'), `labels fetched: ${fetched.join(' ')}`);
    } finally {
      await page.close();
    }
  });
}
