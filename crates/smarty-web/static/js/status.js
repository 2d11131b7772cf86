// The connection indicator and the meter status panel, from /api/meters and `status` events
// (the guard of /api/meters goes to js/guard.js).

import { api } from './api.js';
import { $, setConn, setText } from './dom.js';
import { ago, fmtInt, fmtTime, nowS } from './format.js';
import { applyGuard } from './guard.js';
import { STALE_S, state } from './state.js';

export function updateConn() {
  if (state.needToken) return setConn('offline', 'Access token needed');
  if (!state.meter) return setConn('connecting', 'Connecting…');
  if (state.fleet) return updateFleetConn();
  if (!state.es) return setConn('offline', 'Offline');
  if (!state.sseOpen) return setConn('reconnecting', 'Reconnecting…');
  const m = state.meter;
  if (m.connected === false) return setConn('meter-offline', 'Meter not connected');
  if (m.last_telegram && nowS() - m.last_telegram > STALE_S) return setConn('stale', 'No data for ' + ago(m.last_telegram).replace(' ago', ''));
  if (!m.last_telegram) return setConn('connecting', 'Waiting for data');
  return setConn('live', 'Live');
}

/** A fleet's meter: how recent its stored readings are, and whether its frames are refused. */
function updateFleetConn() {
  const m = state.meter;
  const fleetState = m.fleet && m.fleet.state;
  if (fleetState === 'rejecting') return setConn('meter-offline', 'Frames rejected');
  if (!m.last_telegram) return setConn('stale', 'Nothing stored yet');
  const text = 'Stored ' + ago(m.last_telegram);
  return setConn(fleetState === 'ok' ? 'live' : 'stale', text);
}

export function showLastTelegram() {
  const m = state.meter;
  setText($('st-last'), m.last_telegram ? `${fmtTime(m.last_telegram, 'dateTime')} (${ago(m.last_telegram)})` : 'none yet');
}

export function updateStatus() {
  const m = state.meter;
  if (!m) return;
  const conn = $('st-conn');
  if (state.fleet) {
    conn.className = '';
    setText(conn, `Fleet: readings stored by its workers${m.fleet && m.fleet.system_title ? ' · system title ' + m.fleet.system_title : ''}`);
  } else {
    conn.className = m.connected ? 'ok' : 'bad';
    setText(conn, `${m.connected ? 'Connected' : 'Not connected'}${m.source ? ' · ' + m.source : ''}`);
  }
  showLastTelegram();
  setText($('st-count'), typeof m.telegrams === 'number' && !state.fleet ? fmtInt(m.telegrams) : '–');
  const rej = Object.entries(m.rejections || {}).filter(([, n]) => n > 0);
  const rejEl = $('st-rej');
  rejEl.className = rej.length ? 'warn' : '';
  setText(rejEl, rej.length ? rej.map(([k, n]) => `${k.replace(/_/g, ' ')}: ${fmtInt(n)}`).join(', ') : 'none');
  setText($('st-reconn'), typeof m.reconnects === 'number' && !state.fleet ? fmtInt(m.reconnects) : '–');
  const err = $('st-err');
  err.className = m.last_error ? 'bad' : '';
  setText(err, m.last_error || 'none');
  setText($('st-id'), m.meter_id || '–');
  setText($('st-stored'), m.first_reading
    ? `${fmtTime(m.first_reading, 'dayYear')} – ${fmtTime(m.last_reading || m.last_telegram, 'dateHm')}`
    : 'nothing stored yet');
}

/** Fetches /api/meters again and updates the known meters (status, fields). */
export async function refreshMeters() {
  try {
    // A fleet's dashboard asks for its meter only.
    const body = await api('api/meters', state.fleet && state.meter ? { name: state.meter.name } : undefined);
    for (const fresh of body.meters || []) {
      const m = state.meters.find((x) => x.name === fresh.name);
      if (m) Object.assign(m, fresh);
    }
    if (state.meter && 'guard' in state.meter) applyGuard(state.meter.guard);
    updateStatus();
    updateConn();
  } catch (_) { /* the stream and the indicator tell */ }
}
