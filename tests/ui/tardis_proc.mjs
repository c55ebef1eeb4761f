// What the UI checks and benchmarks start, shared: the headless chromium they
// drive, a `tardis` that serves (awaited until it prints its URL) and a
// `tardis` command run to its end.

import { spawn, spawnSync } from 'node:child_process';
import { chromium } from 'playwright-core';

// Chromium's flags for every page: headless, and nothing that reaches out.
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// Headless Debian chromium ($CHROMIUM, else /usr/bin/chromium).
export function launchChromium() {
  return chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS });
}

// Starts `bin args`; resolves with { proc, url, log } once its output matches
// `ready` (group 1: the URL), rejects with its output when it exits first or
// stays silent for timeoutMs (then it is killed).
export function startServing(bin, args, ready, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`${what} did not start: ${out}`)); }, timeoutMs);
    const onData = (b) => {
      out += b;
      const m = ready.exec(out);
      if (m) { clearTimeout(timer); resolve({ proc: p, url: `${m[1]}/`, log: () => out }); }
    };
    p.stdout.on('data', onData);
    p.stderr.on('data', onData);
    p.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${what} exited (${code}): ${out}`)); });
  });
}

// `tardis serve runDir` on 127.0.0.1:port (0: an ephemeral port) with the
// page of the web/ directory `web`.
export function serve(bin, runDir, web, timeoutMs, port = 0) {
  return startServing(bin, ['serve', runDir, '--port', String(port), '--host', '127.0.0.1', '--web', web],
    /serving .* at (http:\/\/127\.0\.0\.1:\d+)/, timeoutMs, 'tardis serve');
}

// Runs `bin args` for at most timeoutMs; throws with its output unless it exits 0.
export function tardis(bin, args, timeoutMs) {
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`tardis ${args.join(' ')}: status ${r.status}${r.signal ? ` (${r.signal})` : ''}\n${r.stdout}${r.stderr}`);
}
