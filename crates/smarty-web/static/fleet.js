// smarty fleet page (`smarty fleet serve`, served at /): the community view and the meter
// list of a fleet, from /api/fleet/… (docs/api.md, docs/fleet.md). ES modules, no build step,
// sharing the dashboard's modules; each meter links to its dashboard (index.html#meter=NAME).
//
// js/fleet-community.js  the community view     js/fleet-meters.js  the meter list and counts

import { fitChart } from './js/charts.js';
import { $, banner, setConn, setText } from './js/dom.js';
import { destroyCommunity, initCommunity, loadCommunity } from './js/fleet-community.js';
import { initMeters, loadCounts, loadMeters } from './js/fleet-meters.js';
import { localDate, nowS } from './js/format.js';
import { state } from './js/state.js';
import { tokenForm } from './js/token.js';

tokenForm({
  needed: 'This fleet needs an access token (SMARTY_HTTP_TOKEN or [http] token_file on the server).',
  onToken: () => start(),
});

async function start() {
  clearTimeout(state.retryTimer);
  try {
    const body = await loadCounts();
    if (typeof body.time_zone === 'string' && body.time_zone) state.timeZone = body.time_zone;
  } catch (e) {
    if (e.status === 401) return;
    if (e.status === 404) {
      banner('This server is not a fleet (smarty fleet serve): its dashboard is at index.html.');
      setConn('offline', 'Not a fleet');
      return;
    }
    banner(`Cannot reach the fleet: ${e.message}. Trying again in 10 s.`);
    setConn('offline', 'Offline');
    state.retryTimer = setTimeout(start, 10000);
    return;
  }
  banner('');
  setConn('live', 'Connected');
  setText($('time-zone'), state.timeZone || 'the browser\'s time zone');
  loadCommunity();
  loadMeters();
}

initCommunity();
initMeters();

// Every minute: the counts, the page of meters and today's community view.
setInterval(() => {
  if (state.needToken || document.hidden) return;
  loadCounts().then(() => setConn('live', 'Connected'), (e) => {
    if (e.status !== 401) setConn('offline', 'Offline');
  });
  loadMeters();
  if (state.community.day === localDate(nowS())) loadCommunity();
}, 60000);

new ResizeObserver(() => fitChart($('c-chart'), state.community.chart)).observe($('c-chart'));

window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
  // Colours are read from CSS when a chart is made: make it again.
  destroyCommunity();
  loadCommunity();
});

start();
