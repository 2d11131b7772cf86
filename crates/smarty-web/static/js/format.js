// Numbers, money and times as people read them: numbers in the browser's language, times in
// the server's time zone (state.timeZone, from /api/meters).

import { state } from './state.js';

const numberFormats = new Map();
export function fmtNum(v, digits, maxDigits = digits) {
  if (v == null || !Number.isFinite(v)) return '–';
  const key = digits + ':' + maxDigits;
  let f = numberFormats.get(key);
  if (!f) {
    f = new Intl.NumberFormat(undefined, { minimumFractionDigits: digits, maximumFractionDigits: maxDigits });
    numberFormats.set(key, f);
  }
  return f.format(v);
}
export const fmtKw = (v) => fmtNum(v, 3);
export const fmtKwh = (v) => fmtNum(v, Math.abs(v) < 10 ? 2 : 1);
export const fmtM3 = (v) => fmtNum(v, 3);
export const fmtInt = (v) => fmtNum(v, 0);

let moneyFormat = null;
export function fmtMoney(v) {
  if (v == null || !Number.isFinite(v)) return '–';
  if (!moneyFormat || moneyFormat.resolvedOptions().currency !== state.currency) {
    try {
      moneyFormat = new Intl.NumberFormat(undefined, { style: 'currency', currency: state.currency, minimumFractionDigits: 2, maximumFractionDigits: 2 });
    } catch (_) {
      moneyFormat = new Intl.NumberFormat(undefined, { style: 'currency', currency: 'EUR' });
    }
  }
  return moneyFormat.format(v);
}

// The zone of every time shown: the server's (undefined, the browser's own, until
// /api/meters has told it).
const zone = () => state.timeZone || undefined;

const dateTimeFormats = {
  dateTime: { day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' },
  dateHm: { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' },
  time: { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' },
  hm: { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' },
  day: { day: 'numeric', month: 'short' },
  dayYear: { day: 'numeric', month: 'short', year: 'numeric' },
  weekday: { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' },
  month: { month: 'short', year: 'numeric' },
};
const dtfCache = new Map();
export function fmtTime(unix, kind) {
  if (unix == null || !Number.isFinite(unix)) return '–';
  const key = kind + '|' + zone();
  let f = dtfCache.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat(undefined, Object.assign({ timeZone: zone() }, dateTimeFormats[kind]));
    dtfCache.set(key, f);
  }
  return f.format(new Date(unix * 1000));
}

// The calendar date and clock time of an instant in the server's zone.
const partsCache = new Map();
function zonedParts(ms) {
  let f = partsCache.get(zone());
  if (!f) {
    f = new Intl.DateTimeFormat('en-GB', {
      timeZone: zone(), year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
    });
    partsCache.set(zone(), f);
  }
  const p = {};
  for (const { type, value } of f.formatToParts(new Date(ms))) p[type] = value;
  return p;
}

/** The local calendar date (YYYY-MM-DD) of Unix seconds `unix`. */
export function localDate(unix) {
  const p = zonedParts(unix * 1000);
  return `${p.year}-${p.month}-${p.day}`;
}

/** The date `n` days after `date` (YYYY-MM-DD). */
export function addDays(date, n) {
  const [y, m, d] = date.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
}

/** Unix seconds of local midnight at the start of `date` (DST-aware). */
export function midnight(date) {
  const [y, m, d] = date.split('-').map(Number);
  const utc = Date.UTC(y, m - 1, d);
  let t = utc;
  for (let i = 0; i < 2; i++) {
    const p = zonedParts(t);
    const asUtc = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second);
    t = utc - (asUtc - t);
  }
  return Math.round(t / 1000);
}

export function ago(unix) {
  const s = Math.max(0, Math.round(Date.now() / 1000 - unix));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 172800) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} days ago`;
}

export const nowS = () => Math.floor(Date.now() / 1000);

/** The time of a chart point, as precise as its resolution. */
export function pointTime(t, res) {
  if (res === 'raw') return fmtTime(t, 'dateTime');
  if (res === '15m') return `${fmtTime(t, 'dateHm')}–${fmtTime(t + 900, 'hm')}`;
  if (res === 'hour') return `${fmtTime(t, 'dateHm')}–${fmtTime(t + 3600, 'hm')}`;
  if (res === 'day') return fmtTime(t, 'weekday');
  if (res === 'month') return fmtTime(t + 86400, 'month');
  return fmtTime(t, 'dateTime');
}
