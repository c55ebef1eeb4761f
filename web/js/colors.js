// tab10, indexed by class — the same palette as the PNG renderer (DESIGN §3.6).
export const TAB10 = [
  '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd',
  '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf',
];

export function classColor(c) {
  return TAB10[((c % TAB10.length) + TAB10.length) % TAB10.length];
}

export function hexToRgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

// Colour of filtered-out points: drawn faintly so the context stays visible.
export const DIM_RGB = [120, 128, 140];
