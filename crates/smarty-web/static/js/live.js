// The "Now" panel and the meter readings of the gas and water cards: the last telegram's
// values, from /latest at first and then from every `telegram` event of the stream.

import { api, meterPath } from './api.js';
import { $, setText } from './dom.js';
import { fieldInfo } from './fields.js';
import { applyGuard } from './guard.js';
import { fmtKw, fmtTime } from './format.js';
import { state } from './state.js';
import { updateConn, updateStatus } from './status.js';

export function showLive(values, received) {
  const v = values || {};
  setText($('live-import'), fmtKw(v.power_import_kw));
  setText($('live-export'), fmtKw(v.power_export_kw));
  for (const td of document.querySelectorAll('#phases [data-v]')) {
    setText(td, fieldInfo(td.dataset.v).fmt(v[td.dataset.v]));
  }
  let at;
  if (state.fleet) at = values ? `Last stored reading, ${fmtTime(received, 'dateTime')}.` : 'Loading the last stored reading…';
  else at = values ? `Telegram received at ${fmtTime(received, 'time')}.` : 'Waiting for the first telegram…';
  setText($('live-at'), at);
  if (values) showReadings(values);
}

/** The meter readings (`[data-reading=NAME]`) with their units. */
export function showReadings(values) {
  for (const el of document.querySelectorAll('[data-reading]')) {
    const x = values[el.dataset.reading];
    if (x == null) continue;
    const info = fieldInfo(el.dataset.reading);
    setText(el, `${info.fmt(x)} ${info.unit}`.trim());
  }
}

export async function loadLatest() {
  const m = state.meter;
  try {
    const body = await api(meterPath('latest'));
    if (m !== state.meter || state.latest) return; // the stream was faster
    state.latest = body.values || {};
    showLive(state.latest, body.received);
    if ('guard' in body) applyGuard(body.guard);
    if (body.received && !(m.last_telegram >= body.received)) m.last_telegram = body.received;
    updateStatus();
  } catch (e) {
    if (m !== state.meter) return;
    if (e.status === 404) setText($('live-at'), state.fleet ? 'No reading stored yet.' : 'No telegram received yet.');
    else if (e.status !== 401) setText($('live-at'), `Could not load the last telegram: ${e.message}.`);
  }
}

/** A `telegram` event of the stream (docs/api.md). */
export function applyTelegram(d) {
  const m = state.meter;
  state.latest = d.values || {};
  showLive(state.latest, d.received);
  if (d.received) m.last_telegram = d.received;
  if (typeof m.telegrams === 'number') m.telegrams += 1;
  m.connected = true;
  updateStatus();
  updateConn();
}
