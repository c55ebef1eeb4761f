// Alerts of the run (GET /api/alerts, RUN/alerts.jsonl): markers on the epoch
// timeline coloured by severity, and a side-panel list (hidden when there are
// none) where a click goes to the alert's epoch and highlights its classes
// (the other classes' points are dimmed, as a filter dims them).

import { timelinePos } from './tasks.js';

const SEVERITY_ORDER = { critical: 0, error: 0, warning: 1 };
const rank = (s) => SEVERITY_ORDER[s] ?? 2;
const sevClass = (s) => (rank(s) === 0 ? 'sev-crit' : rank(s) === 1 ? 'sev-warn' : 'sev-info');
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const fmtNum = (v) => (typeof v !== 'number' ? '—' : Math.abs(v) >= 100 || Number.isInteger(v) ? String(v) : v.toPrecision(3));

export class AlertsView {
  // ctx: {S, api, className, swatch, onFilterChange, gotoEpoch}
  constructor(ctx) {
    this.ctx = ctx;
    this.alerts = [];
    this.picked = -1;      // index of the alert whose classes are highlighted
    this.classes = null;   // Set of highlighted classes, or null
    this.error = '';
    this.el = {
      panel: document.getElementById('alerts-panel'),
      list: document.getElementById('alerts-list'),
      count: document.getElementById('alerts-count'),
      clear: document.getElementById('alerts-clear'),
      marks: document.getElementById('tl-alerts'),
    };
    this.el.clear.addEventListener('click', () => this.pick(-1));
  }

  async refresh() {
    try {
      this.alerts = await this.ctx.api.json('/api/alerts');
      this.error = '';
    } catch (e) {
      // A malformed alerts.jsonl: say so in the panel, keep the page working.
      this.alerts = [];
      this.error = e.message;
    }
    if (this.picked >= this.alerts.length) this.pick(-1);
    this.renderList();
    this.renderTimeline();
  }

  // ---- the filter (main.js): only the classes of the picked alert
  active() { return !!this.classes; }
  clear() { this.picked = -1; this.classes = null; this.renderList(); }
  match(i) {
    const l = this.ctx.S.label[i];
    return this.classes.has(l);
  }

  // Selects alert k (-1: none): its epoch on screen, its classes highlighted;
  // picking the same alert again clears the highlight.
  pick(k) {
    if (k >= 0 && k === this.picked) k = -1;
    this.picked = k;
    const a = this.alerts[k];
    const cl = a && Array.isArray(a.classes) && a.classes.length ? new Set(a.classes) : null;
    this.classes = cl;
    if (a) this.ctx.gotoEpoch(a.epoch);
    this.renderList();
    this.renderTimeline();
    this.ctx.onFilterChange();
  }

  renderList() {
    const { panel, list, count, clear } = this.el;
    const n = this.alerts.length;
    panel.hidden = n === 0 && !this.error;
    clear.hidden = this.picked < 0;
    const nCrit = this.alerts.filter((a) => rank(a.severity) === 0).length;
    count.textContent = n ? `${n}${nCrit ? ` · ${nCrit} critical` : ''}` : '';
    if (this.error) {
      list.innerHTML = `<div class="al-err">${esc(this.error)}</div>`;
      return;
    }
    const shown = this.ctx.S.epochs.length ? this.ctx.displayedEpoch() : null;
    list.innerHTML = this.alerts.map((a, k) => {
      const cls = Array.isArray(a.classes) && a.classes.length
        ? `<div class="al-cls">${a.classes.map((c) => `${this.ctx.swatch(c)}${esc(this.ctx.className(c))}`).join(' ')}</div>` : '';
      return `<div class="al ${sevClass(a.severity)}${k === this.picked ? ' picked' : ''}${a.epoch === shown ? ' here' : ''}"` +
        ` data-k="${k}" role="button" tabindex="0" title="${esc(a.message)}">` +
        `<div class="al-h"><span class="al-sev">${esc(a.severity)}</span><b>epoch ${a.epoch}</b><span class="al-m">${esc(a.metric)}</span></div>` +
        `<div class="al-msg">${esc(a.message)}</div>` +
        `<div class="al-v muted">value ${fmtNum(a.value)} · expected ${fmtNum(a.expected)}</div>${cls}</div>`;
    }).join('');
    for (const d of list.querySelectorAll('.al')) {
      d.addEventListener('click', () => this.pick(+d.dataset.k));
      d.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') { ev.preventDefault(); this.pick(+d.dataset.k); } });
    }
  }

  // The epoch on screen changed: mark its alerts in the list.
  epochShown(e) {
    for (const d of this.el.list.querySelectorAll('.al')) {
      const a = this.alerts[+d.dataset.k];
      d.classList.toggle('here', !!a && a.epoch === e);
    }
  }

  // One marker per epoch with alerts, in the colour of its worst one.
  renderTimeline() {
    const box = this.el.marks;
    box.textContent = '';
    const byEpoch = new Map();
    this.alerts.forEach((a, k) => {
      if (!byEpoch.has(a.epoch)) byEpoch.set(a.epoch, []);
      byEpoch.get(a.epoch).push(k);
    });
    for (const [e, ks] of byEpoch) {
      const p = timelinePos(this.ctx.S.epochs, e);
      if (p === null) continue;
      const worst = ks.reduce((w, k) => (rank(this.alerts[k].severity) < rank(this.alerts[w].severity) ? k : w), ks[0]);
      const b = document.createElement('button');
      b.className = `tl-alert ${sevClass(this.alerts[worst].severity)}${ks.includes(this.picked) ? ' picked' : ''}`;
      b.style.left = `${100 * p}%`;
      b.dataset.epoch = e;
      b.title = ks.map((k) => `epoch ${e} · ${this.alerts[k].severity}: ${this.alerts[k].message}`).join('\n');
      b.setAttribute('aria-label', `alerts at epoch ${e}`);
      b.addEventListener('click', () => this.pick(worst));
      box.appendChild(b);
    }
  }
}
