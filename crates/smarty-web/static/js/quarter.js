// The 15-minute view: one local day's quarter-hours of import power against the reference
// power, from /intervals.

import { api, meterPath } from './api.js';
import { $, cssVar, setText, showEmpty } from './dom.js';
import { axes, bars, destroyChart, makeChart, uPlotReady } from './charts.js';
import { addDays, fmtKwh, fmtNum, fmtTime, localDate, midnight, nowS } from './format.js';
import { state } from './state.js';

export async function loadQuarter() {
  const q = state.quarter;
  const m = state.meter;
  if (!m) return;
  const seq = ++q.seq;
  const today = localDate(nowS());
  if (!q.day || q.day > today) q.day = today;
  const input = $('day');
  input.value = q.day;
  input.max = today;
  $('day-next').disabled = q.day >= today;
  $('day-today').disabled = q.day === today;
  q.from = midnight(q.day);
  q.to = midnight(addDays(q.day, 1));
  try {
    const body = await api(meterPath('intervals'), { from: q.day, to: addDays(q.day, 1) });
    if (seq !== q.seq || m !== state.meter) return;
    drawQuarter(body);
  } catch (e) {
    if (seq !== q.seq || m !== state.meter) return;
    destroyQuarter();
    showEmpty($('q-empty'), e.status === 401 ? 'An access token is needed.' : `Could not load the 15-minute view: ${e.message}.`);
    setText($('q-note'), '\u00a0');
  }
}

export function destroyQuarter() {
  const q = state.quarter;
  destroyChart(q.chart);
  q.chart = null;
}

function drawQuarter(body) {
  const q = state.quarter;
  const el = $('q-chart');
  const t = body.t || [];
  const p = body.power_import_kw || [];
  const above = body.energy_above_reference_kwh || [];
  const ref = body.reference_power_kw;
  const hasRef = typeof ref === 'number' && ref > 0;
  el.dataset.day = q.day;
  el.dataset.reference = hasRef ? String(ref) : '';
  el.dataset.intervals = String(t.length);
  const dayText = fmtTime(q.from + 43200, 'weekday');
  if (!t.length) {
    destroyQuarter();
    showEmpty($('q-empty'), `No 15-minute readings for ${dayText}.`);
    setText($('q-note'), hasRef ? `Reference power ${fmtNum(ref, 2)} kW.` : '\u00a0');
    return;
  }
  if (!uPlotReady()) {
    showEmpty($('q-empty'), 'The chart library (vendor/uPlot.iife.min.js) did not load.');
    return;
  }
  showEmpty($('q-empty'), '');
  // Every quarter-hour of the day on the x axis, so the reference line spans the day.
  const byTime = new Map(t.map((x, i) => [x, i]));
  const xs = [];
  for (let x = q.from; x < q.to; x += 900) xs.push(x);
  const within = [];
  const over = [];
  const refLine = [];
  let nOver = 0;
  let peak = -1;
  let peakAt = null;
  let aboveKwh = 0;
  for (const x of xs) {
    const i = byTime.get(x);
    const v = i == null ? null : p[i];
    const isOver = v != null && hasRef && v > ref;
    within.push(v != null && !isOver ? v : null);
    over.push(isOver ? v : null);
    refLine.push(hasRef ? ref : null);
    if (isOver) nOver += 1;
    if (v != null && v > peak) { peak = v; peakAt = x; }
    if (i != null && above[i]) aboveKwh += above[i];
  }
  // Quarter-hours the API sent that are not on the grid (should not happen): counted anyway.
  for (let i = 0; i < t.length; i++) {
    if (t[i] < q.from || t[i] >= q.to || (t[i] - q.from) % 900 !== 0) {
      if (p[i] > peak) { peak = p[i]; peakAt = t[i]; }
    }
  }
  el.dataset.over = String(nOver);
  let note = hasRef
    ? (nOver
      ? `${nOver} of ${t.length} quarter-hours above the reference power of ${fmtNum(ref, 2)} kW (${fmtKwh(aboveKwh)} kWh above it).`
      : `No quarter-hour above the reference power of ${fmtNum(ref, 2)} kW.`)
    : 'No reference power configured.';
  if (peakAt != null) note += ` Peak ${fmtNum(peak, 2)} kW at ${fmtTime(peakAt, 'hm')}.`;
  setText($('q-note'), note);

  const data = [xs, within, over, refLine];
  if (q.chart) {
    q.chart.setData(data);
    return;
  }
  const cWithin = cssVar('within');
  const cOver = cssVar('over');
  const quarterBars = () => bars({ size: [0.9, 30], align: 1 });
  const cRef = cssVar('ref');
  const kw = (i) => (idx, d) => (d[i][idx] == null ? '–' : `${fmtNum(d[i][idx], 2)} kW`);
  q.chart = makeChart(el, {
    series: [
      {},
      { label: 'Within reference', stroke: cWithin, fill: cWithin, width: 0, paths: quarterBars(), points: { show: false } },
      { label: 'Above reference', stroke: cOver, fill: cOver, width: 0, paths: quarterBars(), points: { show: false } },
      { label: 'Reference power', stroke: cRef, width: 2, dash: [8, 5], points: { show: false } },
    ],
    axes: axes('kW', (v) => fmtNum(v, 0, 1)),
    scales: {
      x: { time: true, range: () => [state.quarter.from, state.quarter.to] },
      y: { range: (u, min, max) => [0, Math.max(1, max) * 1.1] },
    },
    cursor: { drag: { x: false, y: false }, points: { show: false } },
  }, data, {
    keys: [
      { label: 'Within', color: cWithin, mark: 'bar', value: kw(1) },
      { label: 'Above', color: cOver, mark: 'bar', value: kw(2) },
      { label: 'Reference', color: cRef, mark: 'dash', value: kw(3) },
    ],
    hint: 'Point at a bar to read it.',
    when: (x) => `${fmtTime(x, 'hm')}–${fmtTime(x + 900, 'hm')}`,
  });
}

function setDay(day) {
  const today = localDate(nowS());
  state.quarter.day = day > today ? today : day;
  loadQuarter();
}

/** Wires the day buttons and the date field. */
export function initQuarter() {
  $('day-prev').addEventListener('click', () => setDay(addDays(state.quarter.day, -1)));
  $('day-next').addEventListener('click', () => setDay(addDays(state.quarter.day, 1)));
  $('day-today').addEventListener('click', () => setDay(localDate(nowS())));
  $('day').addEventListener('change', (e) => {
    if (/^\d{4}-\d{2}-\d{2}$/.test(e.target.value)) setDay(e.target.value);
  });
}
