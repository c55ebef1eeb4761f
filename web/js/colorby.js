// Colour-by: the points coloured by a per-sample value instead of their class —
// confidence (largest softmax probability at the epoch on screen), loss
// (cross-entropy under the label, from the epoch's logits), the loss the
// trainer recorded (train_loss.npy), correctness, label noise (recorded label
// ≠ clean label), prediction changed, or the label or the prediction alone.
// Values map to indices into a 256-entry palette that the point layer stamps
// with (scatter.js).

import { hexToRgb, classColor } from './colors.js';

const pack = ([r, g, b]) => (b << 16) | (g << 8) | r;
// 0..249: a perceptual ramp (dark purple → teal → yellow, viridis-like stops);
// 250..: categorical colours.
const STOPS = ['#440154', '#3b528b', '#21918c', '#5ec962', '#fde725'];
const RAMP_N = 250;
export const GOOD = 250, BAD = 251, NEUTRAL = 252;
export const RAMP_CSS = `linear-gradient(90deg, ${STOPS.join(', ')})`;

export const PALETTE = Uint32Array.from({ length: 256 }, (_, k) => {
  if (k === GOOD) return pack(hexToRgb('#2a9d4b'));
  if (k === BAD) return pack(hexToRgb('#d62728'));
  if (k >= RAMP_N) return pack(hexToRgb('#9aa1ab'));
  const t = k / (RAMP_N - 1) * (STOPS.length - 1), j = Math.min(STOPS.length - 2, Math.floor(t));
  const a = hexToRgb(STOPS[j]), b = hexToRgb(STOPS[j + 1]), f = t - j;
  return pack(a.map((v, c) => Math.round(v + (b[c] - v) * f)));
});

// The class palette (label / prediction modes); 255 = unknown, grey.
export const CLASS_PALETTE = Uint32Array.from({ length: 256 }, (_, k) =>
  pack(hexToRgb(k === 255 ? '#9aa1ab' : classColor(k))));

// Losses map to the ramp on a log scale, 0 → LOSS_TOP(C) and above, the same
// for every epoch so that colours compare across epochs: 3 × ln C is the loss
// of a sample given 1/C^3 of probability on its label.
export const lossTop = (C) => 3 * Math.log(Math.max(2, C));
const lossStep = (v, top) => Math.max(0, Math.min(RAMP_N - 1, Math.round(Math.log1p(v) / Math.log1p(top) * (RAMP_N - 1))));

export const MODES = {
  class: { name: 'class', legend: null },
  confidence: { name: 'confidence', legend: ['low', 'high'] },
  loss: { name: 'loss (cross-entropy under the label, from the logits)', legend: null },
  recorded_loss: { name: 'loss recorded while training (train_loss.npy)', legend: null },
  label: { name: 'label', legend: null },
  prediction: { name: 'prediction', legend: null },
  correct: { name: 'correctness', legend: null },
  noise: { name: 'label noise', legend: null },
  changed: { name: 'prediction changed since the previous epoch', legend: null },
};

// Per-sample palette indices for a mode, or null for 'class'.
// d: the epoch's data ({pred}); conf: its Float32Array [N] confidences (mode
// 'confidence'), or its losses (modes 'loss', 'recorded_loss'; NaN unknown);
// label/truth: Uint8Array [N] (255 unknown); nTrain; C: number of classes.
// prevPred: the predictions to compare with (mode 'changed'): the previous
// projected epoch's, or the other epoch of the compare view.
export function colorIndices(mode, { N, nTrain, label, truth, pred, conf, prevPred, C = 10 }) {
  if (mode === 'class' || !MODES[mode]) return null;
  if (mode === 'label') return Uint8Array.from(label);
  if (mode === 'prediction') return Uint8Array.from(pred);
  const idx = new Uint8Array(N).fill(NEUTRAL);
  const top = lossTop(C);
  for (let i = 0; i < N; i++) {
    if (mode === 'confidence') {
      const c = conf ? conf[i] : NaN;
      if (Number.isFinite(c)) idx[i] = Math.max(0, Math.min(RAMP_N - 1, Math.round(c * (RAMP_N - 1))));
    } else if (mode === 'loss' || mode === 'recorded_loss') {
      const v = conf ? conf[i] : NaN;
      if (v >= 0) idx[i] = lossStep(v, top);
    } else if (mode === 'correct') {
      if (label[i] !== 255 && pred[i] !== 255) idx[i] = label[i] === pred[i] ? GOOD : BAD;
    } else if (mode === 'changed') {
      if (prevPred && pred[i] !== 255 && prevPred[i] !== 255) idx[i] = pred[i] !== prevPred[i] ? BAD : NEUTRAL;
    } else if (mode === 'noise') {
      if (i < nTrain && truth && truth[i] !== 255) idx[i] = truth[i] !== label[i] ? BAD : NEUTRAL;
    }
  }
  return idx;
}
