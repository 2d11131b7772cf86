// The fleet page's meter list: a page of /api/fleet/meters at a time (search, state filter,
// previous and next), each meter linked to its dashboard (index.html#meter=NAME); and the
// counts of /api/fleet.

import { api } from './api.js';
import { $, setText } from './dom.js';
import { ago, fmtInt, fmtKwh, fmtTime } from './format.js';
import { state } from './state.js';

const COLUMNS = 7;

/** The counts of meters per state (/api/fleet); the answer, for the caller's other uses. */
export async function loadCounts() {
  const b = await api('api/fleet');
  const minutes = Math.round(b.stale_after_s / 60);
  setText($('m-counts'), `${fmtInt(b.meters)} meters: ${fmtInt(b.ok)} ok, ${fmtInt(b.stale)} stale `
    + `(nothing stored for ${minutes} min), ${fmtInt(b.rejecting)} rejecting`);
  // Frames of senders that are no meter of the fleet (no key imported, a wrong subject).
  const unknown = b.unknown_senders || { total: 0, recent: [] };
  const el = $('m-unknown');
  el.hidden = !unknown.total;
  if (unknown.total) {
    const shown = unknown.recent.slice(0, 5)
      .map((s) => `${s.sender} (${s.reason.replace(/_/g, ' ')}, ${fmtInt(s.count)}, last ${ago(s.last_at)})`)
      .join(', ');
    const senders = unknown.total === 1 ? 'sender' : 'senders';
    setText(el, `Frames set aside from ${fmtInt(unknown.total)} ${senders} outside the fleet: ${shown}`
      + (unknown.total > 5 ? ', …' : '') + '.');
  }
  return b;
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function row(m) {
  const tr = document.createElement('tr');
  tr.dataset.name = m.name;
  tr.dataset.state = m.state;
  const th = document.createElement('th');
  th.scope = 'row';
  if (m.last_seen != null) {
    // Its dashboard: the history of what the workers stored.
    const a = document.createElement('a');
    a.href = 'index.html#meter=' + encodeURIComponent(m.name);
    a.textContent = m.name;
    th.append(a);
  } else {
    th.textContent = m.name;
  }
  const rejections = (m.rejections || [])
    .map((r) => `${r.reason.replace(/_/g, ' ')} ${fmtInt(r.count)}`)
    .join(', ');
  const badge = document.createElement('span');
  badge.className = 'state ' + m.state;
  badge.textContent = m.state;
  const stateCell = document.createElement('td');
  stateCell.append(badge);
  tr.append(
    th,
    cell(m.system_title || '–', 'mono'),
    cell(m.last_seen != null ? `${fmtTime(m.last_seen, 'dateHm')} (${ago(m.last_seen)})` : 'never'),
    cell(fmtKwh(m.today_import_kwh)),
    cell(fmtKwh(m.today_export_kwh)),
    cell(rejections || 'none', rejections ? 'warn' : ''),
    stateCell,
  );
  return tr;
}

function message(text) {
  const tr = document.createElement('tr');
  const td = document.createElement('td');
  td.colSpan = COLUMNS;
  td.className = 'empty-text';
  td.textContent = text;
  tr.append(td);
  $('m-rows').replaceChildren(tr);
}

function render(body) {
  const l = state.fleetList;
  const meters = Array.isArray(body.meters) ? body.meters : [];
  l.total = body.total || 0;
  if (meters.length) $('m-rows').replaceChildren(...meters.map(row));
  else message(l.search || l.state ? 'No meter matches.' : 'No meter yet: import the keys (smarty fleet keys import).');
  const first = meters.length ? l.offset + 1 : 0;
  setText($('m-page'), `${fmtInt(first)}–${fmtInt(l.offset + meters.length)} of ${fmtInt(l.total)}`);
  $('m-prev').disabled = l.offset === 0;
  $('m-next').disabled = l.offset + meters.length >= l.total;
}

/** Loads the list's current page. */
export async function loadMeters() {
  const l = state.fleetList;
  const seq = ++l.seq;
  try {
    const body = await api('api/fleet/meters', { search: l.search, state: l.state, limit: l.limit, offset: l.offset });
    if (seq !== l.seq) return;
    render(body);
  } catch (e) {
    if (seq !== l.seq) return;
    message(e.status === 401 ? 'An access token is needed.' : `Could not load the meters: ${e.message}.`);
  }
}

function from(offset) {
  state.fleetList.offset = Math.max(0, offset);
  loadMeters();
}

/** Wires the search field, the state filter and the pager. */
export function initMeters() {
  const l = state.fleetList;
  let timer = 0;
  const search = () => {
    clearTimeout(timer);
    l.search = $('m-search').value.trim();
    from(0);
  };
  $('m-search').addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(search, 250);
  });
  $('m-form').addEventListener('submit', (e) => {
    e.preventDefault();
    search();
  });
  $('m-state').addEventListener('change', (e) => {
    l.state = e.target.value;
    from(0);
  });
  $('m-prev').addEventListener('click', () => from(l.offset - l.limit));
  $('m-next').addEventListener('click', () => from(l.offset + l.limit));
}
