// The live event stream (GET /api/stream?meter=…, Server-Sent Events): `telegram`, `status`
// and `guard` events of the selected meter; reconnects after a drop.

import { api } from './api.js';
import { setConn } from './dom.js';
import { applyGuard } from './guard.js';
import { applyTelegram } from './live.js';
import { state } from './state.js';
import { refreshMeters, updateConn, updateStatus } from './status.js';
import { loadSummary } from './summary.js';

function parse(text) {
  try { return JSON.parse(text); } catch (_) { return null; }
}

export function closeStream() {
  clearTimeout(state.streamTimer);
  if (state.es) state.es.close();
  state.es = null;
  state.sseOpen = false;
}

export function openStream() {
  closeStream();
  // A fleet's server has no live telegrams (state.fleet): nothing to follow.
  if (state.needToken || !state.meter || state.fleet) return;
  const url = new URL('api/stream', document.baseURI);
  url.searchParams.set('meter', state.meter.name);
  if (state.token) url.searchParams.set('token', state.token);
  const es = new EventSource(url);
  state.es = es;
  updateConn();
  let opened = false;
  es.onopen = () => {
    if (state.es !== es) return;
    state.sseOpen = true;
    state.retries = 0;
    updateConn();
    // Back after a drop: catch up with what was missed.
    if (opened) {
      refreshMeters();
      loadSummary();
    }
    opened = true;
  };
  es.addEventListener('telegram', (ev) => {
    if (state.es !== es) return;
    const d = parse(ev.data);
    if (d && (!d.meter || d.meter === state.meter.name)) applyTelegram(d);
  });
  es.addEventListener('guard', (ev) => {
    if (state.es !== es) return;
    const d = parse(ev.data);
    if (d && d.meter === state.meter.name) applyGuard(d);
  });
  es.addEventListener('status', (ev) => {
    if (state.es !== es) return;
    const d = parse(ev.data);
    if (!d || !d.name) return;
    const m = state.meters.find((x) => x.name === d.name);
    if (m) Object.assign(m, d);
    if (m === state.meter) updateStatus();
    updateConn();
  });
  es.onerror = () => {
    if (state.es !== es) return;
    state.sseOpen = false;
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up (an HTTP error): try again, slower each time, and find out
      // whether a token is what is missing.
      es.close();
      state.es = null;
      const delay = Math.min(30, 2 ** state.retries++) * 1000;
      setConn('reconnecting', 'Reconnecting…');
      state.streamTimer = setTimeout(() => {
        api('api/meters').then(() => openStream(), () => { if (!state.needToken) openStream(); });
      }, delay);
    } else {
      updateConn();
    }
  };
}
