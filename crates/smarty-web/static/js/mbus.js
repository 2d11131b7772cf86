// The gas and water panel: per M-Bus meter (as /api/meters describes it) the reading, today's
// and this month's consumption and the last 30 days.

import { api, meterPath } from './api.js';
import { $, cssVar, setText, showEmpty } from './dom.js';
import { axes, bars, destroyChart, makeChart, uPlotReady } from './charts.js';
import { fieldInfo, mbusFields } from './fields.js';
import { addDays, fmtNum, fmtTime, localDate, midnight, nowS } from './format.js';
import { showReadings } from './live.js';
import { state } from './state.js';

export async function loadMbus() {
  const m = state.meter;
  if (!m) return;
  const seq = ++state.mbusSeq;
  const body = $('mbus-body');
  const fields = mbusFields(m);
  if (!fields.length) {
    destroyMbus();
    body.innerHTML = '<p class="empty-text" id="mbus-none">This meter reports no gas or water meter (no M-Bus channel).</p>';
    return;
  }
  const today = localDate(nowS());
  const first = addDays(today, -29);
  const names = fields.map((f) => f.name);
  // Build the cards once per meter; later refreshes only fill in figures.
  if (body.dataset.meter !== m.name || body.dataset.fields !== names.join(',')) {
    destroyMbus();
    body.dataset.meter = m.name;
    body.dataset.fields = names.join(',');
    const wrap = document.createElement('div');
    wrap.className = 'meters';
    for (const f of fields) {
      const info = fieldInfo(f.name);
      const card = document.createElement('article');
      card.className = 'medium';
      card.dataset.field = f.name;
      card.style.setProperty('--c', cssVar(info.color));
      card.innerHTML = `<h3></h3><dl>
        <dt>Meter reading</dt><dd data-reading>–</dd>
        <dt>Today</dt><dd data-today>–</dd>
        <dt>This month</dt><dd data-month>–</dd></dl>
        <div class="mchart" role="group"><p class="empty">Loading…</p></div>`;
      card.querySelector('[data-reading]').dataset.reading = f.name;
      card.querySelector('h3').textContent = `${info.label} (M-Bus ${f.mbus.channel})`;
      card.querySelector('.mchart').setAttribute('aria-label', `${info.label}: daily consumption, last 30 days`);
      wrap.append(card);
    }
    body.replaceChildren(wrap);
  }
  if (state.latest) showReadings(state.latest);

  const [days, months] = await Promise.all([
    api(meterPath('totals'), { period: 'day', from: today, to: addDays(today, 1) }).catch((e) => e),
    api(meterPath('totals'), { period: 'month' }).catch((e) => e),
  ]);
  if (seq !== state.mbusSeq || m !== state.meter) return;
  const rowFor = (res, period) => (res instanceof Error ? undefined : (res.rows || []).find((r) => r.period === period));
  const dayRow = rowFor(days, today);
  const monthRow = rowFor(months, today.slice(0, 7));
  for (const card of body.querySelectorAll('.medium')) {
    const info = fieldInfo(card.dataset.field);
    const withUnit = (v) => `${info.fmt(v)} ${info.unit}`.trim();
    const fromRow = (res, row) => {
      if (res instanceof Error) return 'unavailable';
      const v = row && row.mbus ? row.mbus[card.dataset.field] : null;
      return v == null ? (row ? '–' : withUnit(0)) : withUnit(v);
    };
    setText(card.querySelector('[data-today]'), fromRow(days, dayRow));
    setText(card.querySelector('[data-month]'), fromRow(months, monthRow));
  }

  await Promise.all(fields.map(async (f, i) => {
    const card = [...body.querySelectorAll('.medium')].find((c) => c.dataset.field === f.name);
    if (!card) return;
    const el = card.querySelector('.mchart');
    const empty = el.querySelector('.empty');
    let r;
    try {
      r = await api(meterPath('series'), { field: f.name, from: first, to: addDays(today, 1), resolution: 'day' });
    } catch (e) {
      if (seq !== state.mbusSeq) return;
      showEmpty(empty, `Could not load the history: ${e.message}.`);
      return;
    }
    if (seq !== state.mbusSeq) return;
    el.dataset.points = String((r.t || []).length);
    if (!r.t || !r.t.length) {
      destroyChart(state.mbusCharts[i]);
      state.mbusCharts[i] = null;
      showEmpty(empty, 'No consumption stored yet.');
      return;
    }
    if (!uPlotReady()) return showEmpty(empty, 'The chart library did not load.');
    showEmpty(empty, '');
    const data = [r.t, r.value];
    if (state.mbusCharts[i]) {
      state.mbusCharts[i].setData(data);
      return;
    }
    const info = fieldInfo(f.name);
    const color = cssVar(info.color);
    // From the first stored day (at least a week, at most 30 days) to the end of today.
    const xRange = (u) => {
      const end = midnight(addDays(localDate(nowS()), 1));
      const t0 = u.data[0].length ? u.data[0][0] : end - 7 * 86400;
      return [Math.min(t0, end - 7 * 86400), end];
    };
    state.mbusCharts[i] = makeChart(el, {
      series: [
        {},
        { label: info.label, stroke: color, fill: color, width: 0, paths: bars({ size: [0.8, 24], align: 1 }), points: { show: false } },
      ],
      axes: axes(info.unit, (v) => fmtNum(v, 0, 3)),
      scales: { x: { time: true, range: xRange }, y: { range: (u, min, max) => [0, Math.max(max, 0.001) * 1.1] } },
      cursor: { drag: { x: false, y: false }, points: { show: false } },
    }, data, {
      keys: [{ label: 'Used', color, mark: 'bar', value: (idx, d) => (d[1][idx] == null ? '–' : `${info.fmt(d[1][idx])} ${info.unit}`.trim()) }],
      hint: 'Per day, last 30 days',
      when: (t) => fmtTime(t, 'day'),
    });
  }));
}

export function destroyMbus() {
  for (const u of state.mbusCharts) destroyChart(u);
  state.mbusCharts = [];
  const body = $('mbus-body');
  delete body.dataset.meter;
  delete body.dataset.fields;
}
