// smarty dashboard: ES modules, no build step (index.html loads this one with
// <script type="module">; js/ holds the rest). It talks to the JSON API of docs/api.md, which
// also says what each value is (label, unit, medium) and in which time zone; uPlot
// (vendor/uPlot.iife.min.js, a classic script run before the modules) draws the charts.
//
// js/state.js   the one state object        js/api.js      GET with the token
// js/format.js  numbers and times           js/fields.js   the API's metadata of values
// js/dom.js     element helpers             js/status.js   connection and status panel
// js/live.js    the "Now" panel             js/summary.js  energy and cost
// js/stream.js  the event stream            js/charts.js   uPlot and its legend
// js/history.js the history chart           js/quarter.js  the 15-minute view
// js/mbus.js    gas and water             js/token.js    the access-token form
// js/guard.js   the reference-power guard of the "Now" panel

import { api } from './js/api.js';
import { fitChart } from './js/charts.js';
import { $, banner, setConn, setText, showEmpty } from './js/dom.js';
import { mbusFields } from './js/fields.js';
import { localDate, nowS } from './js/format.js';
import { applyGuard, showGuard } from './js/guard.js';
import { destroyHistory, historyChoices, initHistory, loadHistory, pan, zoom } from './js/history.js';
import { loadLatest, showLive } from './js/live.js';
import { destroyMbus, loadMbus } from './js/mbus.js';
import { destroyQuarter, initQuarter, loadQuarter } from './js/quarter.js';
import { saved, state } from './js/state.js';
import { refreshMeters, showLastTelegram, updateConn, updateStatus } from './js/status.js';
import { closeStream, openStream } from './js/stream.js';
import { loadSummary } from './js/summary.js';
import { tokenForm } from './js/token.js';

// ---------------------------------------------------------------- token

tokenForm({
  needed: 'This smarty needs an access token (the server\'s [http] token_file).',
  onAsk: () => {
    closeStream();
    for (const id of ['hist-empty', 'q-empty']) showEmpty($(id), 'Waiting for the access token.');
    setText($('summary-note'), 'Waiting for the access token.');
  },
  onToken: () => start(),
});

// ---------------------------------------------------------------- start and meter choice

let startSeq = 0;
async function start() {
  const seq = ++startSeq;
  clearTimeout(state.retryTimer);
  let body;
  // A meter named in the address (a fleet's list links them): only that one is asked for,
  // so that a fleet of many meters never sends them all.
  const named = new URLSearchParams(location.hash.slice(1)).get('meter');
  try {
    body = await api('api/meters', named ? { name: named } : undefined);
  } catch (e) {
    if (seq !== startSeq) return;
    if (e.status === 404 && named) {
      banner(`No meter named ${named}.`);
      setConn('offline', 'No such meter');
      return;
    }
    if (e.status !== 401) {
      banner(`Cannot load the meter list: ${e.message}. Trying again in 10 s.`);
      setConn('offline', 'Offline');
      state.retryTimer = setTimeout(start, 10000);
    }
    return;
  }
  if (seq !== startSeq) return;
  banner('');
  if (typeof body.time_zone === 'string' && body.time_zone) state.timeZone = body.time_zone;
  setText($('time-zone'), state.timeZone || 'the browser\'s time zone');
  // Served by `smarty fleet serve`: no live stream, a way back to the fleet's list.
  state.fleet = body.fleet === true;
  if (state.fleet && !named) {
    // A fleet's meters are listed on its own page, which links each one here.
    location.replace('./');
    return;
  }
  $('fleet-link').hidden = !state.fleet;
  state.meters = Array.isArray(body.meters) ? body.meters : [];
  if (!state.meters.length) {
    banner('This smarty has no meter configured: nothing to show.');
    setConn('offline', 'No meter');
    for (const id of ['hist-empty', 'q-empty']) $(id).textContent = 'No meter configured.';
    $('mbus-body').innerHTML = '<p class="empty-text">No meter configured.</p>';
    return;
  }
  const select = $('meter');
  select.replaceChildren(...state.meters.map((m) => new Option(m.name, m.name)));
  $('meter-pick').hidden = state.meters.length < 2;
  const wanted = named || saved.get('smarty.meter');
  const chosen = state.meters.find((m) => m.name === wanted) || state.meters[0];
  selectMeter(chosen.name);
}

function selectMeter(name) {
  const m = state.meters.find((x) => x.name === name);
  if (!m) return;
  state.meter = m;
  saved.set('smarty.meter', state.meters.length > 1 ? name : '');
  $('meter').value = name;
  // The history can also show the M-Bus meters.
  historyChoices(mbusFields(m));
  state.latest = null;
  showLive(null);
  state.guard = null;
  applyGuard(m.guard || null);
  updateStatus();
  if (!state.quarter.day) state.quarter.day = localDate(nowS());
  loadLatest();
  loadSummary();
  loadHistory();
  loadQuarter();
  loadMbus();
  openStream();
  updateConn();
}

$('meter').addEventListener('change', (e) => selectMeter(e.target.value));
initHistory();
initQuarter();

// ---------------------------------------------------------------- timers

setInterval(() => {
  if (!state.meter) return;
  if (state.meter.last_telegram) showLastTelegram();
  if (state.guard) showGuard();
  updateConn();
}, 1000);

setInterval(() => {
  if (!state.meter || state.needToken || document.hidden) return;
  refreshMeters();
  if (state.fleet) {
    // No stream: "Now" is the last stored reading, read again.
    state.latest = null;
    loadLatest();
  }
  loadSummary();
  if (state.quarter.day === localDate(nowS())) loadQuarter();
  if (state.hist.live) loadHistory();
  loadMbus();
}, 60000);

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && state.meter && !state.needToken && !state.es) openStream();
});

// ---------------------------------------------------------------- resize and colour scheme

const resizer = new ResizeObserver(() => {
  fitChart($('hist-chart'), state.hist.chart);
  fitChart($('q-chart'), state.quarter.chart);
  for (const u of state.mbusCharts) if (u) fitChart(u.root.parentElement, u);
});
resizer.observe($('hist-chart'));
resizer.observe($('q-chart'));
resizer.observe($('mbus-body'));

window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
  // Colours are read from CSS when a chart is made: make them again.
  destroyHistory();
  destroyQuarter();
  destroyMbus();
  if (state.meter) {
    loadHistory();
    loadQuarter();
    loadMbus();
  }
});

// ---------------------------------------------------------------- keyboard

const help = $('help');
function toggleHelp() {
  if (help.open) help.close();
  else if (typeof help.showModal === 'function') help.showModal();
}
$('help-open').addEventListener('click', toggleHelp);
$('help-open-2').addEventListener('click', toggleHelp);

document.addEventListener('keydown', (e) => {
  if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  if (t instanceof Element && t.closest('input, select, textarea, [contenteditable="true"]')) return;
  if (e.key === '?') {
    e.preventDefault();
    toggleHelp();
    return;
  }
  if (help.open || !state.meter) return;
  const ranges = document.querySelectorAll('#ranges button');
  let handled = true;
  switch (e.key) {
    case '1': case '2': case '3': case '4': case '5':
      ranges[Number(e.key) - 1].click();
      break;
    case '+': case '=': zoom(0.5); break;
    case '-': case '_': zoom(2); break;
    case 'ArrowLeft': pan(-1); break;
    case 'ArrowRight': pan(1); break;
    case 'p': $('day-prev').click(); break;
    case 'n': if (!$('day-next').disabled) $('day-next').click(); break;
    case 't': $('day-today').click(); break;
    case 'm':
      if (state.meters.length > 1) {
        const i = state.meters.indexOf(state.meter);
        selectMeter(state.meters[(i + 1) % state.meters.length].name);
      }
      break;
    default: handled = false;
  }
  if (handled) e.preventDefault();
});

start();
