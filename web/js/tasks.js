// Continual learning in the UI (docs/continual.md): task boundaries on the
// timeline, the task filter ("samples of task t", "trained on this epoch"
// from /api/epochs/{e}/trained) and the accuracy of each task per epoch.
// Everything stays hidden for a run without tasks.

import { lineChart } from './charts.js';

const NONE = 255;
export const TASK_COLORS = ['#3b6fb6', '#d9822b', '#2a9d8f', '#8e44ad', '#c0392b', '#7f8c8d',
  '#b8860b', '#e377c2', '#17becf', '#2c3e50'];
const taskColor = (t) => TASK_COLORS[t % TASK_COLORS.length];

// Where epoch number e sits on the timeline, as a fraction of the slider's
// travel: the slider's positions are the projected epochs; an epoch between
// two of them is placed proportionally. null outside their range.
export function timelinePos(epochs, e) {
  const n = epochs.length;
  if (!n || e < epochs[0] || e > epochs[n - 1]) return null;
  if (n === 1) return 0;
  let k = 0;
  while (k < n - 2 && epochs[k + 1] <= e) k++;
  const a = epochs[k], b = epochs[k + 1];
  return (k + (b > a ? Math.min(1, (e - a) / (b - a)) : 0)) / (n - 1);
}

export class TasksView {
  // ctx: {S, api, className, onFilterChange, gotoEpoch}
  constructor(ctx) {
    this.ctx = ctx;
    const run = ctx.S.run;
    this.tasks = Array.isArray(run.tasks) ? run.tasks : [];
    this.task = '';            // the task filter: '' or a task index as text
    this.trainedOnly = false;  // the "trained on this epoch" filter
    this.trained = new Map();  // epoch → Uint8Array mask over all samples, or null (none recorded)
    this.taskOf = new Int16Array(256).fill(-1); // class → task
    this.tasks.forEach((cl, t) => cl.forEach((c) => { this.taskOf[c] = t; }));
    this.el = {
      row: document.getElementById('f-task-row'),
      sel: document.getElementById('f-task'),
      trained: document.getElementById('f-trained'),
      marks: document.getElementById('tl-tasks'),
      chart: document.getElementById('chart-task'),
      table: document.getElementById('task-table'),
    };
    if (!this.tasks.length) return;
    const { sel, trained, row } = this.el;
    row.hidden = false;
    this.el.chart.hidden = false;
    this.el.table.hidden = false;
    sel.insertAdjacentHTML('beforeend', this.tasks.map((cl, t) =>
      `<option value="${t}">task ${t}: ${cl.map((c) => ctx.className(c)).join(', ')}</option>`).join(''));
    sel.addEventListener('change', () => { this.task = sel.value; ctx.onFilterChange(); });
    trained.addEventListener('change', () => {
      this.trainedOnly = trained.checked;
      if (this.trainedOnly) this.loadTrained();
      ctx.onFilterChange();
    });
  }

  get hasTasks() { return this.tasks.length > 0; }

  // ---- the filter (main.js asks every sample through match)
  active() { return this.task !== '' || this.trainedOnly; }

  clear() {
    this.task = '';
    this.trainedOnly = false;
    if (this.el.sel) this.el.sel.value = '';
    if (this.el.trained) this.el.trained.checked = false;
  }

  match(i, epoch) {
    const S = this.ctx.S;
    if (this.task !== '') {
      const l = S.label[i];
      if (l === NONE || this.taskOf[l] !== +this.task) return false;
    }
    if (this.trainedOnly) {
      const m = this.trained.get(epoch);
      // Not loaded yet: shown as matching until it arrives (then redrawn).
      if (m && !m[i]) return false;
      if (m === null) return false; // the epoch records none: it trained on nothing we know of
    }
    return true;
  }

  // The trained-on masks of every projected epoch, a few requests at a time
  // (K int32 each; the masks cost one byte per sample).
  async loadTrained() {
    const S = this.ctx.S;
    const todo = S.epochs.filter((e) => !this.trained.has(e));
    const one = async (e) => {
      this.trained.set(e, undefined); // requested
      let idx = null;
      try { idx = await this.ctx.api.optional(`/api/epochs/${e}/trained`, {}, Int32Array); }
      catch (err) { console.error(err); }
      let mask = null;
      if (idx) {
        mask = new Uint8Array(S.N);
        for (const i of idx) if (i >= 0 && i < S.nTrain) mask[i] = 1;
      }
      this.trained.set(e, mask);
      if (this.trainedOnly) this.ctx.onFilterChange();
    };
    const workers = Array.from({ length: 3 }, async () => {
      while (todo.length) await one(todo.shift());
    });
    await Promise.all(workers);
  }

  // New epochs arrived (live): fetch their masks when the filter needs them.
  epochsChanged() {
    if (this.trainedOnly) this.loadTrained();
  }

  // ---- the timeline: a separator between the last epoch of task t and the
  // first of t + 1 (from epoch.json's "task"), labelled with the new task.
  renderTimeline() {
    const box = this.el.marks;
    if (!box) return;
    box.textContent = '';
    if (!this.hasTasks) return;
    const S = this.ctx.S;
    const info = S.epochInfo.filter((x) => x.metrics && Number.isInteger(x.metrics.task));
    for (let k = 1; k < info.length; k++) {
      const a = info[k - 1], b = info[k];
      if (a.metrics.task === b.metrics.task) continue;
      const pa = timelinePos(S.epochs, a.epoch), pb = timelinePos(S.epochs, b.epoch);
      if (pa === null || pb === null) continue;
      const d = document.createElement('div');
      d.className = 'tl-task';
      d.style.left = `${(100 * (pa + pb)) / 2}%`;
      d.dataset.task = b.metrics.task;
      d.title = `task ${b.metrics.task} starts at epoch ${b.epoch}`;
      d.innerHTML = `<span style="color:${taskColor(b.metrics.task)}">T${b.metrics.task}</span>`;
      box.appendChild(d);
    }
  }

  // ---- accuracy per task: test (else train) accuracy over the epochs, one
  // line per task, and a table for the epoch on screen.
  renderChart(e, onPick) {
    if (!this.hasTasks) return;
    const S = this.ctx.S;
    const accOf = (m, t) => {
      const ta = m && m.task_acc;
      if (!ta) return NaN;
      const v = (ta.test || ta.train || [])[t];
      return typeof v === 'number' ? v : NaN;
    };
    const useTest = S.epochInfo.some((x) => x.metrics && x.metrics.task_acc && x.metrics.task_acc.test);
    lineChart(this.el.chart, this.tasks.map((_, t) => ({
      name: `T${t}`,
      color: taskColor(t),
      points: S.epochInfo.map((x) => [x.epoch, accOf(x.metrics, t)]),
    })), {
      title: `${useTest ? 'test' : 'train'} accuracy per task`, current: e, onPick, height: 104,
      yMin: 0, yMax: 1, fmt: (v) => `${Math.round(v * 100)}%`,
    });
    this.renderTable(e);
  }

  renderTable(e) {
    const S = this.ctx.S;
    const info = S.epochInfo.find((x) => x.epoch === e);
    const m = info && info.metrics;
    const ta = (m && m.task_acc) || {};
    const pct = (v) => (typeof v === 'number' ? `${(100 * v).toFixed(1)}%` : '—');
    const rows = this.tasks.map((cl, t) => {
      const now = m && m.task === t;
      const names = cl.map((c) => this.ctx.className(c)).join(', ');
      return `<tr class="${now ? 'now' : ''}"><td><i class="sw" style="background:${taskColor(t)}"></i>T${t}</td>` +
        `<td class="tt-cl" title="${names}">${names}</td>` +
        `<td>${pct((ta.train || [])[t])}</td><td>${pct((ta.test || [])[t])}</td>` +
        `<td>${now ? '<span class="tt-now" title="trained at this epoch">●</span>' : ''}</td></tr>`;
    }).join('');
    this.el.table.innerHTML = `<table><thead><tr><th>task</th><th>classes</th><th>train</th><th>test</th><th></th></tr></thead>` +
      `<tbody>${rows}</tbody></table>` +
      `<div class="muted small">epoch ${e ?? '—'}${m && Number.isInteger(m.task) ? ` trains task ${m.task}` : ''}` +
      `${m && Number.isInteger(m.n_trained) ? ` on ${m.n_trained.toLocaleString('en-US')} samples` : ''}</div>`;
  }
}
