// smarty dashboard: plain ES2020, no build step. Talks to the JSON API of docs/api.md and
// draws the charts with uPlot (vendor/uPlot.iife.min.js, loaded before this file).
(() => {
  'use strict';

  const TZ = 'Europe/Luxembourg';
  const STALE_S = 60; // no telegram for this long: the indicator says so
  const MIN_SPAN_S = 300; // the history does not zoom in further than 5 minutes
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- storage

  const store = {
    get(key) {
      try { return localStorage.getItem(key) || ''; } catch (_) { return ''; }
    },
    set(key, value) {
      try {
        if (value) localStorage.setItem(key, value); else localStorage.removeItem(key);
      } catch (_) { /* private mode: keep it in memory only */ }
    },
  };

  const state = {
    token: store.get('smarty.token'),
    needToken: false,
    meters: [],
    meter: null, // the selected entry of /api/meters
    latest: null, // values of the last telegram
    es: null,
    sseOpen: false,
    retries: 0,
    retryTimer: 0,
    currency: 'EUR',
    hist: { field: 'power', span: 86400, live: true, from: 0, to: 0, seq: 0, chart: null, shape: '', loads: 0 },
    quarter: { day: '', seq: 0, chart: null, from: 0, to: 0 },
    mbusCharts: [],
    mbusSeq: 0,
  };

  // ---------------------------------------------------------------- formatting

  const numberFormats = new Map();
  function fmtNum(v, digits, maxDigits = digits) {
    if (v == null || !Number.isFinite(v)) return '–';
    const key = digits + ':' + maxDigits;
    let f = numberFormats.get(key);
    if (!f) {
      f = new Intl.NumberFormat(undefined, { minimumFractionDigits: digits, maximumFractionDigits: maxDigits });
      numberFormats.set(key, f);
    }
    return f.format(v);
  }
  const fmtKw = (v) => fmtNum(v, 3);
  const fmtKwh = (v) => fmtNum(v, Math.abs(v) < 10 ? 2 : 1);
  const fmtM3 = (v) => fmtNum(v, 3);
  const fmtInt = (v) => fmtNum(v, 0);
  let moneyFormat = null;
  function fmtMoney(v) {
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
  const dtfCache = {};
  function fmtTime(unix, kind) {
    if (unix == null || !Number.isFinite(unix)) return '–';
    if (!dtfCache[kind]) dtfCache[kind] = new Intl.DateTimeFormat(undefined, Object.assign({ timeZone: TZ }, dateTimeFormats[kind]));
    return dtfCache[kind].format(new Date(unix * 1000));
  }

  // Local calendar date (YYYY-MM-DD) in Europe/Luxembourg.
  const partsFormat = new Intl.DateTimeFormat('en-GB', {
    timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
  });
  function zonedParts(ms) {
    const p = {};
    for (const { type, value } of partsFormat.formatToParts(new Date(ms))) p[type] = value;
    return p;
  }
  function localDate(unix) {
    const p = zonedParts(unix * 1000);
    return `${p.year}-${p.month}-${p.day}`;
  }
  function addDays(date, n) {
    const [y, m, d] = date.split('-').map(Number);
    return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
  }
  // Unix seconds of local midnight at the start of `date` (DST-aware).
  function midnight(date) {
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
  function ago(unix) {
    const s = Math.max(0, Math.round(Date.now() / 1000 - unix));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 172800) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} days ago`;
  }
  const nowS = () => Math.floor(Date.now() / 1000);

  // What a value is: label, unit, digits, drawn as line or bars.
  function describe(field) {
    const phase = /_l([123])_/.exec(field);
    const ph = phase ? ` L${phase[1]}` : '';
    if (/^power_(import|export)/.test(field)) {
      return { label: (field.includes('import') ? 'Import' : 'Export') + ph, unit: 'kW', fmt: fmtKw, kind: 'power', color: field.includes('import') ? 'import' : 'export' };
    }
    if (/^reactive_power_/.test(field)) {
      return { label: 'Reactive ' + (field.includes('import') ? 'import' : 'export'), unit: 'kvar', fmt: fmtKw, kind: 'power', color: field.includes('import') ? 'import' : 'export' };
    }
    if (/^energy_/.test(field)) {
      return { label: field.includes('import') ? 'Energy import' : 'Energy export', unit: 'kWh', fmt: (v) => fmtNum(v, 3), kind: 'energy', color: field.includes('import') ? 'import' : 'export' };
    }
    if (/^voltage_/.test(field)) return { label: 'Voltage' + ph, unit: 'V', fmt: (v) => fmtNum(v, 1), kind: 'voltage', color: 'accent' };
    if (/^current_/.test(field)) return { label: 'Current' + ph, unit: 'A', fmt: (v) => fmtNum(v, 0, 1), kind: 'power', color: 'accent' };
    const mbus = /^mbus(\d+)_([a-z_]+?)_([a-z0-9]+)$/.exec(field);
    if (mbus) {
      const medium = mbus[2];
      const color = medium === 'water' ? 'water' : medium === 'gas' ? 'gas' : 'import';
      return { label: medium[0].toUpperCase() + medium.slice(1).replace(/_/g, ' '), unit: unitText(mbus[3]), fmt: fmtM3, kind: 'energy', color };
    }
    return { label: field, unit: '', fmt: (v) => fmtNum(v, 0, 3), kind: 'power', color: 'accent' };
  }
  const UNITS = { m3: 'm³', gj: 'GJ', kwh: 'kWh', mwh: 'MWh' };
  const unitText = (u) => UNITS[u] || u;

  const RESOLUTION_TEXT = {
    raw: 'every telegram',
    '15m': '15-minute averages',
    hour: 'hourly averages',
    day: 'daily averages',
    month: 'monthly averages',
  };
  const ENERGY_RESOLUTION_TEXT = {
    raw: 'per telegram',
    '15m': 'per 15 minutes',
    hour: 'per hour',
    day: 'per day',
    month: 'per month',
  };

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, params) {
    const url = new URL(path, document.baseURI);
    if (params) for (const [k, v] of Object.entries(params)) if (v != null && v !== '') url.searchParams.set(k, v);
    const headers = { Accept: 'application/json' };
    if (state.token) headers.Authorization = 'Bearer ' + state.token;
    let res;
    try {
      res = await fetch(url, { headers, cache: 'no-store' });
    } catch (_) {
      throw new ApiError(0, 'the smarty server cannot be reached');
    }
    if (res.status === 401) {
      askToken();
      throw new ApiError(401, 'an access token is needed');
    }
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON */ }
    if (!res.ok) throw new ApiError(res.status, (body && body.error) || `HTTP ${res.status}`);
    if (body == null) throw new ApiError(res.status, 'the server sent no JSON');
    return body;
  }
  const meterPath = (what) => `api/meters/${encodeURIComponent(state.meter.name)}/${what}`;

  // ---------------------------------------------------------------- token

  function askToken() {
    if (state.needToken) return;
    state.needToken = true;
    closeStream();
    const form = $('token-form');
    $('token-why').textContent = state.token
      ? 'The access token was refused. Enter the current one.'
      : 'This smarty needs an access token (the server\'s [http] token_file).';
    form.hidden = false;
    setConn('offline', 'Access token needed');
    for (const id of ['hist-empty', 'q-empty']) showEmpty($(id), 'Waiting for the access token.');
    setText($('summary-note'), 'Waiting for the access token.');
    $('token').focus();
  }

  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const value = $('token').value.trim();
    if (!value) return;
    state.token = value;
    store.set('smarty.token', value);
    state.needToken = false;
    $('token').value = '';
    $('token-form').hidden = true;
    start();
  });

  // ---------------------------------------------------------------- banner and connection

  function banner(text) {
    const el = $('banner');
    el.textContent = text || '';
    el.hidden = !text;
  }

  function setConn(kind, text) {
    const el = $('conn');
    if (el.dataset.state !== kind) el.dataset.state = kind;
    if ($('conn-text').textContent !== text) $('conn-text').textContent = text;
  }

  function updateConn() {
    if (state.needToken) return setConn('offline', 'Access token needed');
    if (!state.meter) return setConn('connecting', 'Connecting…');
    if (!state.es) return setConn('offline', 'Offline');
    if (!state.sseOpen) return setConn('reconnecting', 'Reconnecting…');
    const m = state.meter;
    if (m.connected === false) return setConn('meter-offline', 'Meter not connected');
    if (m.last_telegram && nowS() - m.last_telegram > STALE_S) return setConn('stale', 'No data for ' + ago(m.last_telegram).replace(' ago', ''));
    if (!m.last_telegram) return setConn('connecting', 'Waiting for data');
    return setConn('live', 'Live');
  }

  // ---------------------------------------------------------------- start and meter choice

  let startSeq = 0;
  async function start() {
    const seq = ++startSeq;
    clearTimeout(state.retryTimer);
    let body;
    try {
      body = await api('api/meters');
    } catch (e) {
      if (seq !== startSeq) return;
      if (e.status !== 401) {
        banner(`Cannot load the meter list: ${e.message}. Trying again in 10 s.`);
        setConn('offline', 'Offline');
        state.retryTimer = setTimeout(start, 10000);
      }
      return;
    }
    if (seq !== startSeq) return;
    banner('');
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
    const wanted = new URLSearchParams(location.hash.slice(1)).get('meter') || store.get('smarty.meter');
    const chosen = state.meters.find((m) => m.name === wanted) || state.meters[0];
    selectMeter(chosen.name);
  }

  function selectMeter(name) {
    const m = state.meters.find((x) => x.name === name);
    if (!m) return;
    state.meter = m;
    store.set('smarty.meter', state.meters.length > 1 ? name : '');
    $('meter').value = name;
    // The history can also show the M-Bus meters.
    const fieldSelect = $('hist-field');
    for (const o of fieldSelect.querySelectorAll('option[data-mbus]')) o.remove();
    for (const c of mbusChannels(m)) {
      const info = describe(mbusField(c));
      const o = new Option(`${info.label} (${info.unit} per period)`, mbusField(c));
      o.dataset.mbus = '';
      fieldSelect.append(o);
    }
    if (![...fieldSelect.options].some((o) => o.value === state.hist.field)) state.hist.field = 'power';
    fieldSelect.value = state.hist.field;
    state.latest = null;
    showLive(null);
    updateStatus();
    if (!state.quarter.day) state.quarter.day = localDate(nowS());
    loadLatest();
    loadSummary();
    loadHistory();
    loadQuarter();
    loadMbus();
    openStream();
  }

  $('meter').addEventListener('change', (e) => selectMeter(e.target.value));

  // ---------------------------------------------------------------- live values

  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }

  function showLive(values, received) {
    const v = values || {};
    setText($('live-import'), fmtKw(v.power_import_kw));
    setText($('live-export'), fmtKw(v.power_export_kw));
    for (const td of document.querySelectorAll('#phases [data-v]')) {
      const f = td.dataset.v;
      const x = v[f];
      setText(td, f.startsWith('voltage') ? fmtNum(x, 1) : f.startsWith('current') ? fmtNum(x, 0, 1) : fmtKw(x));
    }
    setText($('live-at'), values ? `Telegram received at ${fmtTime(received, 'time')}.` : 'Waiting for the first telegram…');
    if (values) showReadings(values);
  }

  function showReadings(values) {
    for (const el of document.querySelectorAll('[data-reading]')) {
      const x = values[el.dataset.reading];
      if (x != null) setText(el, `${fmtM3(x)} ${el.dataset.unit}`);
    }
  }

  async function loadLatest() {
    const m = state.meter;
    try {
      const body = await api(meterPath('latest'));
      if (m !== state.meter || state.latest) return; // the stream was faster
      state.latest = body.values || {};
      showLive(state.latest, body.received);
      if (body.received && !(m.last_telegram >= body.received)) m.last_telegram = body.received;
      updateStatus();
    } catch (e) {
      if (m !== state.meter) return;
      if (e.status === 404) setText($('live-at'), 'No telegram received yet.');
      else if (e.status !== 401) setText($('live-at'), `Could not load the last telegram: ${e.message}.`);
    }
  }

  function applyTelegram(d) {
    const m = state.meter;
    state.latest = d.values || {};
    showLive(state.latest, d.received);
    if (d.received) m.last_telegram = d.received;
    if (typeof m.telegrams === 'number') m.telegrams += 1;
    m.connected = true;
    updateStatus();
    updateConn();
  }

  // ---------------------------------------------------------------- the stream

  function closeStream() {
    clearTimeout(state.streamTimer);
    if (state.es) state.es.close();
    state.es = null;
    state.sseOpen = false;
  }

  function openStream() {
    closeStream();
    if (state.needToken || !state.meter) return;
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

  function parse(text) {
    try { return JSON.parse(text); } catch (_) { return null; }
  }

  // ---------------------------------------------------------------- summary

  async function loadSummary() {
    const m = state.meter;
    try {
      const s = await api(meterPath('summary'));
      if (m !== state.meter) return;
      if (s.currency) state.currency = s.currency;
      for (const row of document.querySelectorAll('#summary tbody tr')) {
        const p = s[row.dataset.p] || {};
        for (const td of row.querySelectorAll('[data-k]')) {
          const k = td.dataset.k;
          const v = p[k];
          if (k === 'cost_eur') {
            // The cost includes each day's share of the fixed monthly fees, paid whatever the
            // consumption: say how much of it that is (on a quiet day, most of it).
            setText(td.querySelector('.cost'), v == null ? '–' : fmtMoney(v));
            const fixed = p.fixed_eur;
            const share = row.dataset.p === 'today' ? 'fixed fees (today\'s share)' : 'fixed fees';
            setText(td.querySelector('.fixed'), v == null || fixed == null ? '' : `incl. ${fmtMoney(fixed)} ${share}`);
          } else {
            setText(td, v == null ? '–' : `${fmtKwh(v)} kWh`);
          }
        }
      }
      const ref = s.reference_power_kw;
      const none = !m.first_reading && !(s.today && s.today.energy_import_kwh);
      setText($('summary-note'), (none ? 'Nothing stored yet: the figures grow as telegrams arrive. ' : '') +
        'Costs include VAT and, for each day with data, its share of the fixed monthly fees (network, meter, supplier). ' +
        (ref != null ? `Reference power ${fmtNum(ref, 2)} kW. ` : '') + `Updated ${fmtTime(nowS(), 'hm')}.`);
    } catch (e) {
      if (m !== state.meter || e.status === 401) return;
      setText($('summary-note'), e.status === 404 ? 'Nothing stored yet for this meter.' : `Could not load the totals: ${e.message}.`);
    }
  }

  // ---------------------------------------------------------------- charts (uPlot)

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue('--' + name).trim() || '#888';
  }

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

  function axes(unit, fmtTick) {
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

  const tzDate = (t) => uPlot.tzDate(new Date(t * 1000), TZ);

  // The legend is ours, not uPlot's: a fixed grid below the chart, so that hovering never
  // changes its height and the chart never jumps.
  function chartSize(el, u) {
    const legend = u && u.smartyLegend;
    const lh = legend ? legend.offsetHeight + 6 : 0;
    return { width: Math.max(200, el.clientWidth), height: Math.max(100, el.clientHeight - lh) };
  }

  function fitChart(el, u) {
    if (!u) return;
    const size = chartSize(el, u);
    if (size.width !== u.width || size.height !== u.height) u.setSize(size);
  }

  // keys: [{label, color, mark: 'line'|'bar'|'dash'|'band', value: (idx, data) => text}];
  // when: (x) => text for the hovered point; hint: text while nothing is hovered.
  function makeChart(el, opts, data, legend) {
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
    const u = new uPlot(Object.assign({ tzDate }, opts, { hooks, legend: { show: false } }, chartSize(el, null)), data, el);
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

  function destroyChart(u) {
    if (!u) return;
    if (u.smartyLegend) u.smartyLegend.remove();
    u.destroy();
  }

  function showEmpty(emptyEl, text) {
    emptyEl.textContent = text;
    emptyEl.hidden = !text;
  }

  const uPlotReady = () => typeof window.uPlot === 'function';

  // ---------------------------------------------------------------- history

  function historyFields() {
    return state.hist.field === 'power' ? ['power_import_kw', 'power_export_kw'] : [state.hist.field];
  }

  function setPressed(span) {
    for (const b of document.querySelectorAll('#ranges button')) {
      b.setAttribute('aria-pressed', String(span != null && Number(b.dataset.range) === span));
    }
  }

  async function loadHistory() {
    const h = state.hist;
    const m = state.meter;
    if (!m) return;
    const seq = ++h.seq;
    const el = $('hist-chart');
    if (h.live || !h.to) {
      h.to = nowS();
      h.from = h.to - h.span;
    }
    const fields = historyFields();
    setText($('hist-note'), 'Loading…');
    el.setAttribute('aria-busy', 'true');
    try {
      const rs = await Promise.all(fields.map((field) =>
        api(meterPath('series'), { field, from: h.from, to: h.to, resolution: 'auto' })));
      if (seq !== h.seq || m !== state.meter) return;
      drawHistory(rs);
    } catch (e) {
      if (seq !== h.seq || m !== state.meter) return;
      destroyHistory();
      showEmpty($('hist-empty'), e.status === 401 ? 'An access token is needed.' : `Could not load the history: ${e.message}.`);
      setText($('hist-note'), '\u00a0');
    } finally {
      if (seq === h.seq) el.removeAttribute('aria-busy');
    }
  }

  function destroyHistory() {
    const h = state.hist;
    destroyChart(h.chart);
    h.chart = null;
    h.shape = '';
  }

  function drawHistory(rs) {
    const h = state.hist;
    const el = $('hist-chart');
    const res = rs[0].resolution || '';
    const points = rs.reduce((n, r) => n + ((r.t && r.t.length) || 0), 0);
    h.loads += 1;
    h.res = res;
    el.dataset.resolution = res;
    el.dataset.points = String(points);
    el.dataset.loads = String(h.loads);
    const rangeFmt = h.to - h.from > 40 * 86400 ? 'dayYear' : 'dateHm';
    const range = `${fmtTime(h.from, rangeFmt)} – ${fmtTime(h.to, rangeFmt)}`;
    if (!points) {
      destroyHistory();
      const never = !state.meter.first_reading;
      showEmpty($('hist-empty'), never
        ? 'No history yet: readings are stored as telegrams arrive, and appear here.'
        : `No readings between ${range}. Choose another range.`);
      setText($('hist-note'), '\u00a0');
      return;
    }
    if (!uPlotReady()) {
      showEmpty($('hist-empty'), 'The chart library (vendor/uPlot.iife.min.js) did not load.');
      return;
    }
    showEmpty($('hist-empty'), '');

    const infos = rs.map((r) => describe(r.field));
    const unit = infos[0].unit;
    const kind = infos[0].kind;
    const band = rs.length === 1 && Array.isArray(rs[0].min) && Array.isArray(rs[0].max) && kind !== 'energy';
    let data;
    if (rs.length === 1) {
      data = [rs[0].t, rs[0].value];
      if (band) data.push(rs[0].min, rs[0].max);
    } else {
      data = uPlot.join(rs.map((r) => [r.t, r.value]));
    }
    const shape = [rs.map((r) => r.field).join(','), band, kind].join('|');
    const what = kind === 'energy' ? (ENERGY_RESOLUTION_TEXT[res] || res) : (RESOLUTION_TEXT[res] || res);
    setText($('hist-note'), `${range} · ${what} · ${fmtInt(points)} points`);

    if (h.chart && h.shape === shape) {
      h.chart.setData(data);
      return;
    }
    destroyHistory();
    h.shape = shape;
    const series = [{}];
    const keys = [];
    infos.forEach((info, i) => {
      const color = cssVar(info.color);
      const s = { label: info.label, stroke: color, width: 1.5, points: { show: false } };
      if (kind === 'energy') {
        s.paths = uPlot.paths.bars({ size: [0.8, 60], align: 1 });
        s.fill = color + 'aa';
        s.width = 0;
      }
      series.push(s);
      keys.push({
        label: info.label, color, mark: kind === 'energy' ? 'bar' : 'line',
        value: (idx, d) => (d[i + 1][idx] == null ? '–' : `${info.fmt(d[i + 1][idx])} ${info.unit}`),
      });
    });
    const bands = [];
    if (band) {
      const bandColor = cssVar(infos[0].color) + '38';
      series.push(
        { label: 'min', stroke: bandColor, width: 1, points: { show: false } },
        { label: 'max', stroke: bandColor, width: 1, points: { show: false } },
      );
      bands.push({ series: [3, 2], fill: bandColor });
      const f = infos[0].fmt;
      keys.push({
        label: 'min–max', color: bandColor, mark: 'band',
        value: (idx, d) => (d[2][idx] == null ? '–' : `${f(d[2][idx])}–${f(d[3][idx])}`),
      });
    }
    const tickFmt = (v) => fmtNum(v, 0, Math.abs(v) < 10 ? 2 : 1);
    h.chart = makeChart(el, {
      series,
      bands,
      axes: axes(unit, tickFmt),
      scales: {
        x: { time: true, range: () => [state.hist.from, state.hist.to] },
        y: kind === 'voltage' ? { auto: true } : { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.08 : 1] },
      },
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: { setSelect: [onSelect] },
    }, data, {
      keys,
      hint: 'Point to read values, drag to zoom.',
      when: (t) => pointTime(t, state.hist.res),
    });
  }

  // The time of a chart point, as precise as its resolution.
  function pointTime(t, res) {
    if (res === 'raw') return fmtTime(t, 'dateTime');
    if (res === '15m') return `${fmtTime(t, 'dateHm')}–${fmtTime(t + 900, 'hm')}`;
    if (res === 'hour') return `${fmtTime(t, 'dateHm')}–${fmtTime(t + 3600, 'hm')}`;
    if (res === 'day') return fmtTime(t, 'weekday');
    if (res === 'month') return fmtTime(t + 86400, 'month');
    return fmtTime(t, 'dateTime');
  }

  function onSelect(u) {
    if (u.select.width < 5) return;
    const from = u.posToVal(u.select.left, 'x');
    const to = u.posToVal(u.select.left + u.select.width, 'x');
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    zoomTo(from, to);
  }

  function zoomTo(from, to) {
    const h = state.hist;
    const now = nowS();
    let span = Math.max(MIN_SPAN_S, to - from);
    const center = (from + to) / 2;
    from = center - span / 2;
    to = center + span / 2;
    if (to > now) {
      to = now;
      from = now - span;
    }
    const first = state.meter && state.meter.first_reading;
    if (first && to < first) {
      from = first;
      to = first + span;
    }
    h.from = Math.floor(from);
    h.to = Math.ceil(to);
    h.span = h.to - h.from;
    h.live = h.to >= now - 5;
    setPressed(null);
    loadHistory();
  }

  function zoom(factor) {
    const h = state.hist;
    const span = (h.to - h.from) * factor;
    const center = (h.from + h.to) / 2;
    zoomTo(center - span / 2, center + span / 2);
  }

  function pan(direction) {
    const h = state.hist;
    const shift = ((h.to - h.from) / 2) * direction;
    zoomTo(h.from + shift, h.to + shift);
  }

  function setRange(span) {
    const h = state.hist;
    h.span = span;
    h.live = true;
    setPressed(span);
    loadHistory();
  }

  for (const b of document.querySelectorAll('#ranges button')) {
    b.addEventListener('click', () => setRange(Number(b.dataset.range)));
  }
  $('zoom-in').addEventListener('click', () => zoom(0.5));
  $('zoom-out').addEventListener('click', () => zoom(2));
  $('pan-back').addEventListener('click', () => pan(-1));
  $('pan-fwd').addEventListener('click', () => pan(1));
  $('hist-field').addEventListener('change', (e) => {
    state.hist.field = e.target.value;
    loadHistory();
  });

  // ---------------------------------------------------------------- 15-minute view

  async function loadQuarter() {
    const q = state.quarter;
    const m = state.meter;
    if (!m) return;
    const seq = ++q.seq;
    const today = localDate(nowS());
    if (!q.day || q.day > today) q.day = today;
    const input = $('day');
    input.value = q.day;
    input.max = today;
    $('day-next').disabled = q.day >= today;
    $('day-today').disabled = q.day === today;
    q.from = midnight(q.day);
    q.to = midnight(addDays(q.day, 1));
    try {
      const body = await api(meterPath('intervals'), { from: q.day, to: addDays(q.day, 1) });
      if (seq !== q.seq || m !== state.meter) return;
      drawQuarter(body);
    } catch (e) {
      if (seq !== q.seq || m !== state.meter) return;
      destroyQuarter();
      showEmpty($('q-empty'), e.status === 401 ? 'An access token is needed.' : `Could not load the 15-minute view: ${e.message}.`);
      setText($('q-note'), '\u00a0');
    }
  }

  function destroyQuarter() {
    const q = state.quarter;
    destroyChart(q.chart);
    q.chart = null;
  }

  function drawQuarter(body) {
    const q = state.quarter;
    const el = $('q-chart');
    const t = body.t || [];
    const p = body.power_import_kw || [];
    const above = body.energy_above_reference_kwh || [];
    const ref = body.reference_power_kw;
    const hasRef = typeof ref === 'number' && ref > 0;
    el.dataset.day = q.day;
    el.dataset.reference = hasRef ? String(ref) : '';
    el.dataset.intervals = String(t.length);
    const dayText = fmtTime(q.from + 43200, 'weekday');
    if (!t.length) {
      destroyQuarter();
      showEmpty($('q-empty'), `No 15-minute readings for ${dayText}.`);
      setText($('q-note'), hasRef ? `Reference power ${fmtNum(ref, 2)} kW.` : '\u00a0');
      return;
    }
    if (!uPlotReady()) {
      showEmpty($('q-empty'), 'The chart library (vendor/uPlot.iife.min.js) did not load.');
      return;
    }
    showEmpty($('q-empty'), '');
    // Every quarter-hour of the day on the x axis, so the reference line spans the day.
    const byTime = new Map(t.map((x, i) => [x, i]));
    const xs = [];
    for (let x = q.from; x < q.to; x += 900) xs.push(x);
    const within = [];
    const over = [];
    const refLine = [];
    let nOver = 0;
    let peak = -1;
    let peakAt = null;
    let aboveKwh = 0;
    for (const x of xs) {
      const i = byTime.get(x);
      const v = i == null ? null : p[i];
      const isOver = v != null && hasRef && v > ref;
      within.push(v != null && !isOver ? v : null);
      over.push(isOver ? v : null);
      refLine.push(hasRef ? ref : null);
      if (isOver) nOver += 1;
      if (v != null && v > peak) { peak = v; peakAt = x; }
      if (i != null && above[i]) aboveKwh += above[i];
    }
    // Quarter-hours the API sent that are not on the grid (should not happen): counted anyway.
    for (let i = 0; i < t.length; i++) {
      if (t[i] < q.from || t[i] >= q.to || (t[i] - q.from) % 900 !== 0) {
        if (p[i] > peak) { peak = p[i]; peakAt = t[i]; }
      }
    }
    el.dataset.over = String(nOver);
    let note = hasRef
      ? (nOver
        ? `${nOver} of ${t.length} quarter-hours above the reference power of ${fmtNum(ref, 2)} kW (${fmtKwh(aboveKwh)} kWh above it).`
        : `No quarter-hour above the reference power of ${fmtNum(ref, 2)} kW.`)
      : 'No reference power configured.';
    if (peakAt != null) note += ` Peak ${fmtNum(peak, 2)} kW at ${fmtTime(peakAt, 'hm')}.`;
    setText($('q-note'), note);

    const data = [xs, within, over, refLine];
    if (q.chart) {
      q.chart.setData(data);
      return;
    }
    const cWithin = cssVar('within');
    const cOver = cssVar('over');
    const bars = () => uPlot.paths.bars({ size: [0.9, 30], align: 1 });
    const cRef = cssVar('ref');
    const kw = (i) => (idx, d) => (d[i][idx] == null ? '–' : `${fmtNum(d[i][idx], 2)} kW`);
    q.chart = makeChart(el, {
      series: [
        {},
        { label: 'Within reference', stroke: cWithin, fill: cWithin, width: 0, paths: bars(), points: { show: false } },
        { label: 'Above reference', stroke: cOver, fill: cOver, width: 0, paths: bars(), points: { show: false } },
        { label: 'Reference power', stroke: cRef, width: 2, dash: [8, 5], points: { show: false } },
      ],
      axes: axes('kW', (v) => fmtNum(v, 0, 1)),
      scales: {
        x: { time: true, range: () => [state.quarter.from, state.quarter.to] },
        y: { range: (u, min, max) => [0, Math.max(1, max) * 1.1] },
      },
      cursor: { drag: { x: false, y: false }, points: { show: false } },
    }, data, {
      keys: [
        { label: 'Within', color: cWithin, mark: 'bar', value: kw(1) },
        { label: 'Above', color: cOver, mark: 'bar', value: kw(2) },
        { label: 'Reference', color: cRef, mark: 'dash', value: kw(3) },
      ],
      hint: 'Point at a bar to read it.',
      when: (x) => `${fmtTime(x, 'hm')}–${fmtTime(x + 900, 'hm')}`,
    });
  }

  function setDay(day) {
    const today = localDate(nowS());
    state.quarter.day = day > today ? today : day;
    loadQuarter();
  }
  $('day-prev').addEventListener('click', () => setDay(addDays(state.quarter.day, -1)));
  $('day-next').addEventListener('click', () => setDay(addDays(state.quarter.day, 1)));
  $('day-today').addEventListener('click', () => setDay(localDate(nowS())));
  $('day').addEventListener('change', (e) => {
    if (/^\d{4}-\d{2}-\d{2}$/.test(e.target.value)) setDay(e.target.value);
  });

  // ---------------------------------------------------------------- gas and water

  function mbusField(c) {
    return `mbus${c.channel}_${c.medium}_${c.unit}`;
  }

  // The meter's M-Bus channels (gas, water, heat…), as named in the telegram values.
  function mbusChannels(m) {
    return (Array.isArray(m.mbus) ? m.mbus : []).filter((c) => /^mbus\d+_[a-z0-9_]+$/.test(mbusField(c)));
  }

  async function loadMbus() {
    const m = state.meter;
    if (!m) return;
    const seq = ++state.mbusSeq;
    const body = $('mbus-body');
    const channels = mbusChannels(m);
    if (!channels.length) {
      destroyMbus();
      body.innerHTML = '<p class="empty-text" id="mbus-none">This meter reports no gas or water meter (no M-Bus channel).</p>';
      return;
    }
    const today = localDate(nowS());
    const first = addDays(today, -29);
    // Build the cards once per meter; later refreshes only fill in figures.
    if (body.dataset.meter !== m.name || body.dataset.fields !== channels.map(mbusField).join(',')) {
      destroyMbus();
      body.dataset.meter = m.name;
      body.dataset.fields = channels.map(mbusField).join(',');
      const wrap = document.createElement('div');
      wrap.className = 'meters';
      for (const c of channels) {
        const f = mbusField(c);
        const info = describe(f);
        const card = document.createElement('article');
        card.className = 'medium';
        card.dataset.field = f;
        card.dataset.unit = info.unit;
        card.style.setProperty('--c', cssVar(info.color));
        card.innerHTML = `<h3></h3><dl>
          <dt>Meter reading</dt><dd data-reading="${f}" data-unit="${info.unit}">–</dd>
          <dt>Today</dt><dd data-today>–</dd>
          <dt>This month</dt><dd data-month>–</dd></dl>
          <div class="mchart" role="group"><p class="empty">Loading…</p></div>`;
        card.querySelector('h3').textContent = `${info.label} (M-Bus ${c.channel})`;
        card.querySelector('.mchart').setAttribute('aria-label', `${info.label}: daily consumption, last 30 days`);
        wrap.append(card);
      }
      body.replaceChildren(wrap);
    }
    if (state.latest) showReadings(state.latest);

    const [days, months] = await Promise.all([
      api(meterPath('totals'), { period: 'day', from: today, to: addDays(today, 1) }).catch((e) => e),
      api(meterPath('totals'), { period: 'month' }).catch((e) => e),
    ]);
    if (seq !== state.mbusSeq || m !== state.meter) return;
    const rowFor = (res, period) => (res instanceof Error ? undefined : (res.rows || []).find((r) => r.period === period));
    const dayRow = rowFor(days, today);
    const monthRow = rowFor(months, today.slice(0, 7));
    for (const card of body.querySelectorAll('.medium')) {
      const f = card.dataset.field;
      const fromRow = (res, row) => {
        if (res instanceof Error) return 'unavailable';
        const v = row && row.mbus ? row.mbus[f] : null;
        const unit = card.dataset.unit;
        return v == null ? (row ? '–' : `${fmtM3(0)} ${unit}`) : `${fmtM3(v)} ${unit}`;
      };
      setText(card.querySelector('[data-today]'), fromRow(days, dayRow));
      setText(card.querySelector('[data-month]'), fromRow(months, monthRow));
    }

    await Promise.all(channels.map(async (c, i) => {
      const f = mbusField(c);
      const card = body.querySelector(`.medium[data-field="${f}"]`);
      if (!card) return;
      const el = card.querySelector('.mchart');
      const empty = el.querySelector('.empty');
      let r;
      try {
        r = await api(meterPath('series'), { field: f, from: first, to: addDays(today, 1), resolution: 'day' });
      } catch (e) {
        if (seq !== state.mbusSeq) return;
        showEmpty(empty, `Could not load the history: ${e.message}.`);
        return;
      }
      if (seq !== state.mbusSeq) return;
      el.dataset.points = String((r.t || []).length);
      if (!r.t || !r.t.length) {
        destroyChart(state.mbusCharts[i]);
        state.mbusCharts[i] = null;
        showEmpty(empty, 'No consumption stored yet.');
        return;
      }
      if (!uPlotReady()) return showEmpty(empty, 'The chart library did not load.');
      showEmpty(empty, '');
      const data = [r.t, r.value];
      if (state.mbusCharts[i]) {
        state.mbusCharts[i].setData(data);
        return;
      }
      const info = describe(f);
      const color = cssVar(info.color);
      // From the first stored day (at least a week, at most 30 days) to the end of today.
      const xRange = (u) => {
        const end = midnight(addDays(localDate(nowS()), 1));
        const t0 = u.data[0].length ? u.data[0][0] : end - 7 * 86400;
        return [Math.min(t0, end - 7 * 86400), end];
      };
      state.mbusCharts[i] = makeChart(el, {
        series: [
          {},
          { label: info.label, stroke: color, fill: color, width: 0, paths: uPlot.paths.bars({ size: [0.8, 24], align: 1 }), points: { show: false } },
        ],
        axes: axes(info.unit, (v) => fmtNum(v, 0, 3)),
        scales: { x: { time: true, range: xRange }, y: { range: (u, min, max) => [0, Math.max(max, 0.001) * 1.1] } },
        cursor: { drag: { x: false, y: false }, points: { show: false } },
      }, data, {
        keys: [{ label: 'Used', color, mark: 'bar', value: (idx, d) => (d[1][idx] == null ? '–' : `${fmtM3(d[1][idx])} ${info.unit}`) }],
        hint: 'Per day, last 30 days',
        when: (t) => fmtTime(t, 'day'),
      });
    }));
  }

  function destroyMbus() {
    for (const u of state.mbusCharts) destroyChart(u);
    state.mbusCharts = [];
    const body = $('mbus-body');
    delete body.dataset.meter;
    delete body.dataset.fields;
  }

  // ---------------------------------------------------------------- status

  function updateStatus() {
    const m = state.meter;
    if (!m) return;
    const conn = $('st-conn');
    conn.className = m.connected ? 'ok' : 'bad';
    setText(conn, `${m.connected ? 'Connected' : 'Not connected'}${m.source ? ' · ' + m.source : ''}`);
    setText($('st-last'), m.last_telegram ? `${fmtTime(m.last_telegram, 'dateTime')} (${ago(m.last_telegram)})` : 'none yet');
    setText($('st-count'), typeof m.telegrams === 'number' ? fmtInt(m.telegrams) : '–');
    const rej = Object.entries(m.rejections || {}).filter(([, n]) => n > 0);
    const rejEl = $('st-rej');
    rejEl.className = rej.length ? 'warn' : '';
    setText(rejEl, rej.length ? rej.map(([k, n]) => `${k.replace(/_/g, ' ')}: ${fmtInt(n)}`).join(', ') : 'none');
    setText($('st-reconn'), typeof m.reconnects === 'number' ? fmtInt(m.reconnects) : '–');
    const err = $('st-err');
    err.className = m.last_error ? 'bad' : '';
    setText(err, m.last_error || 'none');
    setText($('st-id'), m.meter_id || '–');
    setText($('st-stored'), m.first_reading
      ? `${fmtTime(m.first_reading, 'dayYear')} – ${fmtTime(m.last_reading || m.last_telegram, 'dateHm')}`
      : 'nothing stored yet');
  }

  async function refreshMeters() {
    try {
      const body = await api('api/meters');
      for (const fresh of body.meters || []) {
        const m = state.meters.find((x) => x.name === fresh.name);
        if (m) Object.assign(m, fresh);
      }
      updateStatus();
      updateConn();
    } catch (_) { /* the stream and the indicator tell */ }
  }

  // ---------------------------------------------------------------- timers

  setInterval(() => {
    if (!state.meter) return;
    if (state.meter.last_telegram) setText($('st-last'), `${fmtTime(state.meter.last_telegram, 'dateTime')} (${ago(state.meter.last_telegram)})`);
    updateConn();
  }, 1000);

  setInterval(() => {
    if (!state.meter || state.needToken || document.hidden) return;
    refreshMeters();
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
})();
