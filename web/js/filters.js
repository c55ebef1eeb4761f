// The index-list filter: "12, 40-45, t:7" → a mask over all samples
// (train ids first, then test ids offset by n_train).

export function parseIndexList(text, { nTrain, nTest, N, split }) {
  const src = text.trim();
  if (!src) return { mask: null };
  const mask = new Uint8Array(N);
  // Bare numbers mean the split on screen; in "train + test" they mean train.
  const bareTest = split === 'test';
  for (const tok of src.split(/[\s,;]+/).filter(Boolean)) {
    const m = /^(t:?|test:|train:)?(\d+)(?:-(\d+))?$/i.exec(tok);
    if (!m) return { mask: null, error: `not an index or range: "${tok}"` };
    const pre = (m[1] || '').toLowerCase();
    const test = pre.startsWith('t') && pre !== 'train:' ? true : pre === 'train:' ? false : bareTest;
    const a = +m[2], b = m[3] === undefined ? a : +m[3];
    const n = test ? nTest : nTrain;
    if (b < a) return { mask: null, error: `empty range "${tok}"` };
    if (a >= n) return { mask: null, error: `${tok}: the ${test ? 'test' : 'train'} split has ${n} samples` };
    const off = test ? nTrain : 0;
    for (let i = a; i <= Math.min(b, n - 1); i++) mask[off + i] = 1;
  }
  return { mask };
}
