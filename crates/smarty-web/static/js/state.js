// The dashboard's state: one object, every field declared here. Modules read and change it;
// nothing else is global.

// The browser's localStorage, when it may be used (private mode: nothing is kept).
export const saved = {
  get(key) {
    try { return localStorage.getItem(key) || ''; } catch (_) { return ''; }
  },
  set(key, value) {
    try {
      if (value) localStorage.setItem(key, value); else localStorage.removeItem(key);
    } catch (_) { /* private mode: keep it in memory only */ }
  },
};

/** No telegram for this long (seconds): the connection indicator says so. */
export const STALE_S = 60;
/** The history does not zoom in further than this (seconds). */
export const MIN_SPAN_S = 300;

export const state = {
  /** The API's access token ('' without one), kept in localStorage. */
  token: saved.get('smarty.token'),
  /** An API call answered 401: the token form is shown. */
  needToken: false,
  /** The entries of /api/meters (docs/api.md), refreshed every minute. */
  meters: [],
  /** The selected entry of `meters`, with its `fields` (what each value is). */
  meter: null,
  /** The time zone of the server's local dates (`time_zone` of /api/meters). */
  timeZone: null,
  /** The values of the last telegram ({name: number}). */
  latest: null,
  /** The selected meter's reference-power guard (`guard` of /api/meters and the stream's
   * `guard` events), null while it is off or unknown. */
  guard: null,
  /** The live event stream (EventSource) and whether it is open. */
  es: null,
  sseOpen: false,
  /** Failed stream connections in a row (the next try waits 2^retries s, at most 30 s). */
  retries: 0,
  /** The timer of the next stream connection, and of the next /api/meters try. */
  streamTimer: 0,
  retryTimer: 0,
  /** The currency of the cost figures (`currency` of the summary). */
  currency: 'EUR',
  /** The history chart: the field shown ('power' is import and export together), the range
   * (Unix seconds; `live` follows now), the request counter, the uPlot chart and its shape,
   * the number of loads and the resolution shown. */
  hist: { field: 'power', span: 86400, live: true, from: 0, to: 0, seq: 0, chart: null, shape: '', loads: 0, res: '' },
  /** The 15-minute view: its local day (YYYY-MM-DD), request counter, chart and range. */
  quarter: { day: '', seq: 0, chart: null, from: 0, to: 0 },
  /** The gas and water charts (one per M-Bus field) and their request counter. */
  mbusCharts: [],
  mbusSeq: 0,
  /** Served by `smarty fleet serve` (`fleet` of /api/meters): no live stream; "Now" is the
   * meter's last stored reading, its rejections those the fleet's workers counted. */
  fleet: false,
  /** The fleet page's meter list: search text, state filter ('' for all), page offset and
   * size, request counter and the number of meters that match. */
  fleetList: { search: '', state: '', offset: 0, limit: 50, seq: 0, total: 0 },
  /** The fleet page's community view: its local day (YYYY-MM-DD), members (names separated
   * by commas, '' for all), request counter, chart and range (Unix seconds). */
  community: { day: '', members: '', seq: 0, chart: null, from: 0, to: 0 },
};
