// The fleet page's community view (/api/fleet/community): per quarter hour of a local day the
// members' import and export summed, and the shared energy — what members exported in a
// quarter hour and other members used in the same quarter hour, min(Σ import, Σ export) —
// with the day's totals and the top importers and exporters.

import { api } from './api.js';
import { $, cssVar, setText, showEmpty } from './dom.js';
import { axes, bars, destroyChart, makeChart, uPlotReady } from './charts.js';
import { addDays, fmtKwh, fmtNum, fmtTime, localDate, midnight, nowS } from './format.js';
import { state } from './state.js';

export function destroyCommunity() {
  destroyChart(state.community.chart);
  state.community.chart = null;
}

function topList(el, list) {
  const items = (list || []).map((m) => {
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.href = 'index.html#meter=' + encodeURIComponent(m.name);
    a.textContent = m.name;
    li.append(a, ` ${fmtKwh(m.energy_kwh)} kWh`);
    return li;
  });
  if (!items.length) {
    const li = document.createElement('li');
    li.className = 'empty-text';
    li.textContent = 'none';
    items.push(li);
  }
  el.replaceChildren(...items);
}

function showTotals(totals) {
  for (const td of document.querySelectorAll('#c-totals [data-k]')) {
    const v = totals ? totals[td.dataset.k] : null;
    if (td.dataset.k.endsWith('_rate')) setText(td, v == null ? '–' : `${fmtNum(v * 100, 1)} %`);
    else setText(td, v == null ? '–' : `${fmtKwh(v)} kWh`);
  }
}

function draw(body) {
  const c = state.community;
  const el = $('c-chart');
  const t = body.t || [];
  el.dataset.day = c.day;
  el.dataset.quarters = String(t.length);
  showTotals(t.length ? body.totals : null);
  topList($('c-top-import'), body.top_import);
  topList($('c-top-export'), body.top_export);
  const dayText = fmtTime(c.from + 43200, 'weekday');
  setText($('c-note'), `${fmtNum(body.reporting, 0)} of ${fmtNum(body.members, 0)} members stored readings on ${dayText}.`);
  if (!t.length) {
    destroyCommunity();
    showEmpty($('c-empty'), `No readings for ${dayText}.`);
    return;
  }
  if (!uPlotReady()) {
    showEmpty($('c-empty'), 'The chart library (vendor/uPlot.iife.min.js) did not load.');
    return;
  }
  showEmpty($('c-empty'), '');
  const data = [t, body.shared_kwh, body.import_kwh, body.export_kwh];
  if (c.chart) {
    c.chart.setData(data);
    return;
  }
  const cShared = cssVar('within');
  const cImport = cssVar('import');
  const cExport = cssVar('export');
  const kwh = (i) => (idx, d) => (d[i][idx] == null ? '–' : `${fmtKwh(d[i][idx])} kWh`);
  c.chart = makeChart(el, {
    series: [
      {},
      { label: 'Shared', stroke: cShared, fill: cShared, width: 0, paths: bars({ size: [0.9, 30], align: 1 }), points: { show: false } },
      { label: 'Import', stroke: cImport, width: 2, points: { show: false } },
      { label: 'Export', stroke: cExport, width: 2, points: { show: false } },
    ],
    axes: axes('kWh per ¼ h', (v) => fmtNum(v, 0, 2)),
    scales: {
      x: { time: true, range: () => [state.community.from, state.community.to] },
      y: { range: (u, min, max) => [0, Math.max(0.001, max) * 1.1] },
    },
    cursor: { drag: { x: false, y: false }, points: { show: false } },
  }, data, {
    keys: [
      { label: 'Shared', color: cShared, mark: 'bar', value: kwh(1) },
      { label: 'Import', color: cImport, mark: 'line', value: kwh(2) },
      { label: 'Export', color: cExport, mark: 'line', value: kwh(3) },
    ],
    hint: 'Point at a quarter hour to read it.',
    when: (x) => `${fmtTime(x, 'hm')}–${fmtTime(x + 900, 'hm')}`,
  });
}

/** Loads the community view of the chosen day and members. */
export async function loadCommunity() {
  const c = state.community;
  const seq = ++c.seq;
  const today = localDate(nowS());
  if (!c.day || c.day > today) c.day = today;
  $('c-day').value = c.day;
  $('c-day').max = today;
  $('c-next').disabled = c.day >= today;
  $('c-today').disabled = c.day === today;
  c.from = midnight(c.day);
  c.to = midnight(addDays(c.day, 1));
  try {
    const body = await api('api/fleet/community', { day: c.day, members: c.members });
    if (seq !== c.seq) return;
    draw(body);
  } catch (e) {
    if (seq !== c.seq) return;
    destroyCommunity();
    showTotals(null);
    showEmpty($('c-empty'), e.status === 401 ? 'An access token is needed.' : `Could not load the community view: ${e.message}.`);
    setText($('c-note'), '\u00a0');
  }
}

function setDay(day) {
  const today = localDate(nowS());
  state.community.day = day > today ? today : day;
  loadCommunity();
}

/** Wires the day buttons, the date field and the members field. */
export function initCommunity() {
  const c = state.community;
  $('c-prev').addEventListener('click', () => setDay(addDays(c.day, -1)));
  $('c-next').addEventListener('click', () => setDay(addDays(c.day, 1)));
  $('c-today').addEventListener('click', () => setDay(localDate(nowS())));
  $('c-day').addEventListener('change', (e) => {
    if (/^\d{4}-\d{2}-\d{2}$/.test(e.target.value)) setDay(e.target.value);
  });
  $('c-members-form').addEventListener('submit', (e) => {
    e.preventDefault();
    c.members = $('c-members').value.split(',').map((s) => s.trim()).filter(Boolean).join(',');
    loadCommunity();
  });
}
