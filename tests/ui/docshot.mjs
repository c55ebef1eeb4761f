// The README screenshot (docs/ui.png), not a test:
//   node docshot.mjs URL OUT.png [width height]
// Runs a round of the suspicious-samples panel (creates a feedback session in the
// run's tardis.db: use a copy of the run), selects a noisy, misclassified sample,
// hovers a suspect card, and writes the page as an 8-bit palette PNG (a third of
// the size of chromium's RGBA one).
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import zlib from 'node:zlib';
const [url, out, W='1280', H='800'] = process.argv.slice(2);
const b = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
const p = await b.newPage({viewport:{width:+W,height:+H}});
p.on('pageerror', e => console.log('pageerror:', e.message));
await p.goto(url);
await p.waitForFunction(() => window.tardis && window.tardis.ready() && window.tardis.allLoaded(), null, {timeout: 60000});
await p.waitForTimeout(300);
// pick a noisy, misclassified train sample somewhat inside the canvas
const g = await p.evaluate(() => { const t=window.tardis,S=t.state, d=S.data.get(t.displayedEpoch()); const sc=t.scatter();
  for (let i=0;i<S.nTrain;i++){ if (S.truth && S.truth[i]!==S.label[i] && d.pred[i]!==S.label[i]) { const [x,y]=t.screenOf(i); if (x>sc.W*0.45&&x<sc.W*0.7&&y>sc.H*0.35&&y<sc.H*0.65) return i; } } return 0; });
const box = await p.locator('#canvas-wrap').boundingBox();
const [sx, sy] = await p.evaluate((g) => window.tardis.screenOf(g), g);
await p.mouse.click(box.x + sx, box.y + sy);
await p.waitForFunction(() => window.tardis.state.selInfo !== null);
await p.waitForTimeout(300);
const h = await p.evaluate(() => { const t=window.tardis,S=t.state; const sc=t.scatter(); for (let i=S.nTrain-1;i>0;i-=13){ const [x,y]=t.screenOf(i); if (x>sc.W*0.25&&x<sc.W*0.4&&y>sc.H*0.45&&y<sc.H*0.6) return i;} return 1; });
const [hx, hy] = await p.evaluate((g) => window.tardis.screenOf(g), h);
await p.mouse.move(box.x + hx, box.y + hy);
await p.waitForTimeout(400);
// One round judged and submitted (trails of the accepted), the next half-judged.
const idle = () => p.waitForFunction(() => { const s = window.tardis.suspects(); return s && !s.busy; }, null, {timeout: 60000});
await idle();
if (!(await p.evaluate(() => window.tardis.suspects().session))) { await p.fill('#sus-k', '12'); await p.dispatchEvent('#sus-k', 'change'); }
await p.click('#sus-rec');
await p.waitForSelector('#sus-list .sc', {timeout: 60000});
await idle();
await p.focus('#sus-list .sc:nth-child(1)');
for (const k of 'aaaaaa') await p.keyboard.press(k);
await p.click('#sus-submit');
await p.waitForFunction(() => window.tardis.suspects().session.rounds >= 1, null, {timeout: 60000});
await idle();
await p.focus('#sus-list .sc:nth-child(1)');
for (const k of 'aar') await p.keyboard.press(k);
await p.hover('#sus-list .sc:nth-child(4)');
await p.waitForTimeout(400);
fs.writeFileSync(out, toPalettePng(await p.screenshot()));
await b.close();


// Decodes an 8-bit RGB(A) non-interlaced PNG and re-encodes it with a palette of its
// 256 most frequent colours (5 bits per channel), each pixel mapped to the nearest.
function toPalettePng(buf) {
  let off = 8, W, H, ct, idat = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off), type = buf.toString('ascii', off + 4, off + 8), data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') { W = data.readUInt32BE(0); H = data.readUInt32BE(4); ct = data[9]; if (data[8] !== 8 || data[12]) throw new Error('unsupported'); }
    if (type === 'IDAT') idat.push(data);
    off += 12 + len;
  }
  const bpp = ct === 6 ? 4 : ct === 2 ? 3 : (() => { throw new Error('colour type ' + ct); })();
  const raw = zlib.inflateSync(Buffer.concat(idat)); const stride = W * bpp; const px = Buffer.alloc(H * stride);
  for (let y = 0; y < H; y++) {
    const f = raw[y * (stride + 1)], src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? px[y * stride + x - bpp] : 0, b = y ? px[(y - 1) * stride + x] : 0, c = x >= bpp && y ? px[(y - 1) * stride + x - bpp] : 0;
      let v = src[x];
      if (f === 1) v += a; else if (f === 2) v += b; else if (f === 3) v += (a + b) >> 1;
      else if (f === 4) { const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c); v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c; }
      px[y * stride + x] = v & 255;
    }
  }
  // Palette: the 256 most frequent colours at 5 bits per channel; pixels map to the nearest.
  const key = (r, g, b) => ((r >> 3) << 10) | ((g >> 3) << 5) | (b >> 3);
  const count = new Map(); const sum = new Map();
  for (let i = 0; i < W * H; i++) { const r = px[i * bpp], g = px[i * bpp + 1], b = px[i * bpp + 2], k = key(r, g, b);
    count.set(k, (count.get(k) || 0) + 1); const s = sum.get(k) || [0, 0, 0]; s[0] += r; s[1] += g; s[2] += b; sum.set(k, s); }
  const top = [...count.entries()].sort((a, b) => b[1] - a[1]).slice(0, 256).map(([k, n]) => sum.get(k).map((v) => Math.round(v / n)));
  const map = new Map();
  const idx = Buffer.alloc(H * (W + 1));
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const i = y * W + x, r = px[i * bpp], g = px[i * bpp + 1], b = px[i * bpp + 2], k = (r << 16) | (g << 8) | b;
    let best = map.get(k);
    if (best === undefined) { let bd = Infinity; top.forEach((c, j) => { const d = (c[0] - r) ** 2 * 2 + (c[1] - g) ** 2 * 3 + (c[2] - b) ** 2; if (d < bd) { bd = d; best = j; } }); map.set(k, best); }
    idx[y * (W + 1) + 1 + x] = best;
  }
  const crcT = Array.from({ length: 256 }, (_, n) => { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; return c >>> 0; });
  const crc = (b) => { let c = 0xffffffff; for (const v of b) c = crcT[(c ^ v) & 255] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; };
  const chunk = (t, d) => { const l = Buffer.alloc(4); l.writeUInt32BE(d.length); const td = Buffer.concat([Buffer.from(t, 'ascii'), d]); const c = Buffer.alloc(4); c.writeUInt32BE(crc(td)); return Buffer.concat([l, td, c]); };
  const ihdr = Buffer.alloc(13); ihdr.writeUInt32BE(W, 0); ihdr.writeUInt32BE(H, 4); ihdr[8] = 8; ihdr[9] = 3;
  return Buffer.concat([buf.subarray(0, 8), chunk('IHDR', ihdr), chunk('PLTE', Buffer.from(top.flat())), chunk('IDAT', zlib.deflateSync(idx, { level: 9 })), chunk('IEND', Buffer.alloc(0))]);
}
