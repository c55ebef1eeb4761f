// The frame-rate measurement of the UI benchmarks (bench_scale.mjs, fps.mjs):
// the page plays through its epochs and requestAnimationFrame times each frame.

// Plays the page's run for ms milliseconds at a speed that keeps it moving the
// whole time (it goes on playing afterwards); frames per second, the median
// and 95th percentile frame interval in ms, and the number of intervals.
export async function playFrames(page, ms) {
  const times = await page.evaluate(async (ms) => {
    const t = window.tardis;
    t.state.speed = Math.max(0.25, (t.state.epochs.length - 1) / (ms / 1000));
    t.state.tpos = t.state.target = 0;
    t.play(true);
    const times = [];
    await new Promise((done) => {
      const t0 = performance.now();
      const tick = (now) => { times.push(now); if (now - t0 < ms) requestAnimationFrame(tick); else done(); };
      requestAnimationFrame(tick);
    });
    return times;
  }, ms);
  const gaps = times.slice(1).map((v, k) => v - times[k]).sort((a, b) => a - b);
  return {
    fps: (times.length - 1) / ((times[times.length - 1] - times[0]) / 1000),
    p50: gaps[Math.floor(gaps.length / 2)], p95: gaps[Math.floor(gaps.length * 0.95)], frames: gaps.length,
  };
}
