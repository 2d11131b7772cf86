// Charts with uPlot (vendor/uPlot.iife.min.js, a classic script that runs before the modules
// and defines window.uPlot), with a legend of our own below each chart.

import { cssVar, setText } from './dom.js';
import { fmtTime, localDate } from './format.js';
import { state } from './state.js';

/** `true` once the chart library has loaded. */
export const uPlotReady = () => typeof window.uPlot === 'function';

function timeValues(u, splits, axisIdx, space, incr) {
  let prevDay = '';
  return splits.map((t) => {
    if (incr >= 28 * 86400) return fmtTime(t, 'month');
    if (incr >= 86400) return fmtTime(t, 'day');
    const day = localDate(t);
    const hm = incr < 60 ? fmtTime(t, 'time') : fmtTime(t, 'hm');
    const label = day !== prevDay ? `${hm}\n${fmtTime(t, 'day')}` : hm;
    prevDay = day;
    return label;
  });
}

/** The x (time) and y axes, the y axis labelled `unit` with ticks by `fmtTick`. */
export function axes(unit, fmtTick) {
  const fg = cssVar('muted');
  const grid = cssVar('grid');
  return [
    { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, values: timeValues, space: 60, size: 46 },
    {
      stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, size: 56,
      label: unit, labelSize: 18, labelFont: '12px system-ui, sans-serif',
      values: (u, splits) => splits.map(fmtTick),
    },
  ];
}

// uPlot's dates in the server's zone.
const tzDate = (t) => window.uPlot.tzDate(new Date(t * 1000), state.timeZone || undefined);

// The legend is ours, not uPlot's: a fixed grid below the chart, so that hovering never
// changes its height and the chart never jumps.
function chartSize(el, u) {
  const legend = u && u.smartyLegend;
  const lh = legend ? legend.offsetHeight + 6 : 0;
  return { width: Math.max(200, el.clientWidth), height: Math.max(100, el.clientHeight - lh) };
}

/** Resizes chart `u` to its element `el`. */
export function fitChart(el, u) {
  if (!u) return;
  const size = chartSize(el, u);
  if (size.width !== u.width || size.height !== u.height) u.setSize(size);
}

/**
 * A uPlot chart in `el`. legend.keys: [{label, color, mark: 'line'|'bar'|'dash'|'band',
 * value: (idx, data) => text}]; legend.when: (x) => text for the hovered point;
 * legend.hint: text while nothing is hovered.
 */
export function makeChart(el, opts, data, legend) {
  let box = null;
  let lastIdx;
  const render = (u) => {
    if (!box) return;
    const idx = u.cursor.idx;
    if (idx === lastIdx) return;
    lastIdx = idx;
    const hovered = idx != null && u.data[0][idx] != null;
    setText(box.when, hovered ? legend.when(u.data[0][idx]) : legend.hint);
    box.when.classList.toggle('hint', !hovered);
    legend.keys.forEach((k, i) => setText(box.vals[i], hovered ? k.value(idx, u.data) : ''));
  };
  const hooks = Object.assign({}, opts.hooks);
  hooks.setCursor = (hooks.setCursor || []).concat(render);
  hooks.setData = (hooks.setData || []).concat((u) => { lastIdx = undefined; render(u); });
  const u = new window.uPlot(Object.assign({ tzDate }, opts, { hooks, legend: { show: false } }, chartSize(el, null)), data, el);
  // uPlot follows the mouse; a finger on a phone moves the cursor too (scrolling still works).
  const touch = (e) => {
    const t = e.touches[0];
    if (!t) return;
    const r = u.over.getBoundingClientRect();
    u.setCursor({ left: t.clientX - r.left, top: t.clientY - r.top });
  };
  u.over.addEventListener('touchstart', touch, { passive: true });
  u.over.addEventListener('touchmove', touch, { passive: true });
  if (legend) {
    const wrap = document.createElement('div');
    wrap.className = 'legend';
    const when = document.createElement('p');
    when.className = 'when hint';
    wrap.append(when);
    const vals = legend.keys.map((k) => {
      const key = document.createElement('p');
      key.className = 'key';
      const mark = document.createElement('i');
      mark.className = 'mark ' + k.mark;
      mark.style.setProperty('--c', k.color);
      const name = document.createElement('span');
      name.textContent = k.label;
      const val = document.createElement('b');
      key.append(mark, name, ' ', val);
      wrap.append(key);
      return val;
    });
    el.append(wrap);
    box = { when, vals };
    u.smartyLegend = wrap;
    render(u);
  }
  fitChart(el, u);
  return u;
}

export function destroyChart(u) {
  if (!u) return;
  if (u.smartyLegend) u.smartyLegend.remove();
  u.destroy();
}

/** uPlot's bar paths. */
export const bars = (opts) => window.uPlot.paths.bars(opts);
