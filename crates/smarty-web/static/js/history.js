// The history chart: one value (or import and export power together) over a range, fetched
// again with resolution=auto on every zoom and pan.

import { api, meterPath } from './api.js';
import { $, cssVar, setText, showEmpty } from './dom.js';
import { axes, bars, destroyChart, makeChart, uPlotReady } from './charts.js';
import { fieldInfo } from './fields.js';
import { fmtInt, fmtNum, fmtTime, nowS, pointTime } from './format.js';
import { MIN_SPAN_S, state } from './state.js';

const RESOLUTION_TEXT = {
  raw: 'every telegram',
  '15m': '15-minute averages',
  hour: 'hourly averages',
  day: 'daily averages',
  month: 'monthly averages',
};
const INCREASE_RESOLUTION_TEXT = {
  raw: 'per telegram',
  '15m': 'per 15 minutes',
  hour: 'per hour',
  day: 'per day',
  month: 'per month',
};

function historyFields() {
  return state.hist.field === 'power' ? ['power_import_kw', 'power_export_kw'] : [state.hist.field];
}

function setPressed(span) {
  for (const b of document.querySelectorAll('#ranges button')) {
    b.setAttribute('aria-pressed', String(span != null && Number(b.dataset.range) === span));
  }
}

export async function loadHistory() {
  const h = state.hist;
  const m = state.meter;
  if (!m) return;
  const seq = ++h.seq;
  const el = $('hist-chart');
  if (h.live || !h.to) {
    h.to = nowS();
    h.from = h.to - h.span;
  }
  const fields = historyFields();
  setText($('hist-note'), 'Loading…');
  el.setAttribute('aria-busy', 'true');
  try {
    const rs = await Promise.all(fields.map((field) =>
      api(meterPath('series'), { field, from: h.from, to: h.to, resolution: 'auto' })));
    if (seq !== h.seq || m !== state.meter) return;
    drawHistory(rs);
  } catch (e) {
    if (seq !== h.seq || m !== state.meter) return;
    destroyHistory();
    showEmpty($('hist-empty'), e.status === 401 ? 'An access token is needed.' : `Could not load the history: ${e.message}.`);
    setText($('hist-note'), '\u00a0');
  } finally {
    if (seq === h.seq) el.removeAttribute('aria-busy');
  }
}

export function destroyHistory() {
  const h = state.hist;
  destroyChart(h.chart);
  h.chart = null;
  h.shape = '';
}

function drawHistory(rs) {
  const h = state.hist;
  const el = $('hist-chart');
  const res = rs[0].resolution || '';
  const points = rs.reduce((n, r) => n + ((r.t && r.t.length) || 0), 0);
  h.loads += 1;
  h.res = res;
  el.dataset.resolution = res;
  el.dataset.points = String(points);
  el.dataset.loads = String(h.loads);
  const rangeFmt = h.to - h.from > 40 * 86400 ? 'dayYear' : 'dateHm';
  const range = `${fmtTime(h.from, rangeFmt)} – ${fmtTime(h.to, rangeFmt)}`;
  if (!points) {
    destroyHistory();
    const never = !state.meter.first_reading;
    showEmpty($('hist-empty'), never
      ? 'No history yet: readings are stored as telegrams arrive, and appear here.'
      : `No readings between ${range}. Choose another range.`);
    setText($('hist-note'), '\u00a0');
    return;
  }
  if (!uPlotReady()) {
    showEmpty($('hist-empty'), 'The chart library (vendor/uPlot.iife.min.js) did not load.');
    return;
  }
  showEmpty($('hist-empty'), '');

  const infos = rs.map((r) => fieldInfo(r.field));
  const { unit, bars: increases, autoScale } = infos[0];
  const band = rs.length === 1 && Array.isArray(rs[0].min) && Array.isArray(rs[0].max) && !increases;
  let data;
  if (rs.length === 1) {
    data = [rs[0].t, rs[0].value];
    if (band) data.push(rs[0].min, rs[0].max);
  } else {
    data = window.uPlot.join(rs.map((r) => [r.t, r.value]));
  }
  const shape = [rs.map((r) => r.field).join(','), band, increases, autoScale].join('|');
  const what = increases ? (INCREASE_RESOLUTION_TEXT[res] || res) : (RESOLUTION_TEXT[res] || res);
  setText($('hist-note'), `${range} · ${what} · ${fmtInt(points)} points`);
  el.dataset.unit = unit;
  el.dataset.labels = infos.map((info) => info.label).join(',');

  if (h.chart && h.shape === shape) {
    h.chart.setData(data);
    return;
  }
  destroyHistory();
  h.shape = shape;
  const series = [{}];
  const keys = [];
  infos.forEach((info, i) => {
    const color = cssVar(info.color);
    const s = { label: info.label, stroke: color, width: 1.5, points: { show: false } };
    if (increases) {
      s.paths = bars({ size: [0.8, 60], align: 1 });
      s.fill = color + 'aa';
      s.width = 0;
    }
    series.push(s);
    keys.push({
      label: info.label, color, mark: increases ? 'bar' : 'line',
      value: (idx, d) => (d[i + 1][idx] == null ? '–' : `${info.fmt(d[i + 1][idx])} ${info.unit}`.trim()),
    });
  });
  const bands = [];
  if (band) {
    const bandColor = cssVar(infos[0].color) + '38';
    series.push(
      { label: 'min', stroke: bandColor, width: 1, points: { show: false } },
      { label: 'max', stroke: bandColor, width: 1, points: { show: false } },
    );
    bands.push({ series: [3, 2], fill: bandColor });
    const f = infos[0].fmt;
    keys.push({
      label: 'min–max', color: bandColor, mark: 'band',
      value: (idx, d) => (d[2][idx] == null ? '–' : `${f(d[2][idx])}–${f(d[3][idx])}`),
    });
  }
  const tickFmt = (v) => fmtNum(v, 0, Math.abs(v) < 10 ? 2 : 1);
  h.chart = makeChart(el, {
    series,
    bands,
    axes: axes(unit, tickFmt),
    scales: {
      x: { time: true, range: () => [state.hist.from, state.hist.to] },
      y: autoScale ? { auto: true } : { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.08 : 1] },
    },
    cursor: { drag: { x: true, y: false, setScale: false } },
    hooks: { setSelect: [onSelect] },
  }, data, {
    keys,
    hint: 'Point to read values, drag to zoom.',
    when: (t) => pointTime(t, state.hist.res),
  });
}

function onSelect(u) {
  if (u.select.width < 5) return;
  const from = u.posToVal(u.select.left, 'x');
  const to = u.posToVal(u.select.left + u.select.width, 'x');
  u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
  zoomTo(from, to);
}

function zoomTo(from, to) {
  const h = state.hist;
  const now = nowS();
  const span = Math.max(MIN_SPAN_S, to - from);
  const center = (from + to) / 2;
  from = center - span / 2;
  to = center + span / 2;
  if (to > now) {
    to = now;
    from = now - span;
  }
  const first = state.meter && state.meter.first_reading;
  if (first && to < first) {
    from = first;
    to = first + span;
  }
  h.from = Math.floor(from);
  h.to = Math.ceil(to);
  h.span = h.to - h.from;
  h.live = h.to >= now - 5;
  setPressed(null);
  loadHistory();
}

/** Zooms the history by `factor` around its middle (0.5: in, 2: out). */
export function zoom(factor) {
  const h = state.hist;
  const span = (h.to - h.from) * factor;
  const center = (h.from + h.to) / 2;
  zoomTo(center - span / 2, center + span / 2);
}

/** Moves the history by half its span: -1 earlier, 1 later. */
export function pan(direction) {
  const h = state.hist;
  const shift = ((h.to - h.from) / 2) * direction;
  zoomTo(h.from + shift, h.to + shift);
}

function setRange(span) {
  const h = state.hist;
  h.span = span;
  h.live = true;
  setPressed(span);
  loadHistory();
}

/** The history's value choice: the page's fixed ones, then the M-Bus fields `mbus` (from
 * the API's metadata, labelled by it). */
export function historyChoices(mbus) {
  const fieldSelect = $('hist-field');
  for (const o of fieldSelect.querySelectorAll('option[data-mbus]')) o.remove();
  for (const f of mbus) {
    const o = new Option(`${f.label} (${f.unit ? f.unit + ' ' : ''}per period)`, f.name);
    o.dataset.mbus = '';
    fieldSelect.append(o);
  }
  if (![...fieldSelect.options].some((o) => o.value === state.hist.field)) state.hist.field = 'power';
  fieldSelect.value = state.hist.field;
}

/** Wires the range, zoom and pan buttons and the value choice. */
export function initHistory() {
  for (const b of document.querySelectorAll('#ranges button')) {
    b.addEventListener('click', () => setRange(Number(b.dataset.range)));
  }
  $('zoom-in').addEventListener('click', () => zoom(0.5));
  $('zoom-out').addEventListener('click', () => zoom(2));
  $('pan-back').addEventListener('click', () => pan(-1));
  $('pan-fwd').addEventListener('click', () => pan(1));
  $('hist-field').addEventListener('change', (e) => {
    state.hist.field = e.target.value;
    loadHistory();
  });
}
