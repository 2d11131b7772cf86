#!/usr/bin/env node
// Drives the dashboard in headless Chromium (Debian's /usr/bin/chromium) with playwright-core
// and checks what a person would see. Run by crates/smarty/tests/dashboard.rs against a real
// `smarty run`; also runs alone against any smarty whose meter has gas and water, at least
// three days of history and a telegram every few seconds (`smarty demo --interval 2s`):
//
//   node crates/smarty/tests/browser/dashboard.mjs http://127.0.0.1:8080/ /tmp/shots [REF_KW]
//
// With REF_KW, the service guards that reference power and its meter's load is above it
// (crates/smarty/tests/e2e/dashboard.rs: no solar panels, a reference power far below the
// household's base load): the reference-power guard's banner and gauge must show.
//
// Prints one JSON line on stdout ({"fcp_ms": …, …}); progress and failures go to stderr.
// Exits 1 with the failed check's name on the first failure. CHROMIUM overrides the browser;
// PLAYWRIGHT_CORE the module (default: crates/smarty-web/static/node_modules/playwright-core).

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { CheckFailed, assert, check, loadChromium, log, progress, until } from './harness.mjs';

const [url, shotDir, guardRef] = process.argv.slice(2);
if (!url || !shotDir) {
  console.error('usage: node dashboard.mjs DASHBOARD_URL SCREENSHOT_DIR [REF_KW]');
  process.exit(2);
}
const guardRefKw = guardRef === undefined ? null : Number(guardRef);

const chromium = loadChromium('dashboard');

const RES_RANK = { raw: 0, '15m': 1, hour: 2, day: 3, month: 4 };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 60000,
});

const problems = [];
// The history's /series requests of the desktop page, in order: {field, from, to} (Unix
// seconds). Requests, not answers: a request is reported before its answer can reach the
// page, so every one the page has drawn is here (an answer's body may come later).
const historyRequests = [];
function watch(page, label) {
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`${label} console error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`${label} page error: ${err.message}`));
}
function watchHistory(page) {
  page.on('request', (req) => {
    const u = new URL(req.url());
    const field = u.searchParams.get('field') || '';
    if (!u.pathname.endsWith('/series') || !/^(power|energy|voltage|current|reactive)_/.test(field)) return;
    historyRequests.push({ field, from: Number(u.searchParams.get('from')), to: Number(u.searchParams.get('to')) });
  });
}
const noProblems = () => assert(!problems.length, problems.join('\n'));

let result = {};
let exitCode = 0;
try {
  mkdirSync(shotDir, { recursive: true });
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-GB', timezoneId: 'Europe/Luxembourg' });
  const page = await desktop.newPage();
  watch(page, 'desktop');
  watchHistory(page);

  await check('page loads', async () => {
    const res = await page.goto(url, { waitUntil: 'load', timeout: 20000 });
    assert(res && res.ok(), `GET ${url} answered ${res && res.status()}`);
    assert((await page.title()) === 'smarty', 'title is not "smarty"');
  });

  let fcp = null;
  await check('first contentful paint measured', async () => {
    fcp = await until(page, 'a first-contentful-paint entry', () => {
      const e = performance.getEntriesByType('paint').find((p) => p.name === 'first-contentful-paint');
      return e ? e.startTime : null;
    });
    const nav = await page.evaluate(() => {
      const n = performance.getEntriesByType('navigation')[0];
      const ms = (x) => Math.round(x * 10) / 10;
      return n ? { dom_content_loaded_ms: ms(n.domContentLoadedEventEnd), load_ms: ms(n.loadEventEnd) } : {};
    });
    result = { fcp_ms: Math.round(fcp * 10) / 10, ...nav };
  });

  let firstImport = '';
  await check('live import power appears', async () => {
    firstImport = await until(page, 'a live import power figure', () => {
      const t = document.getElementById('live-import').textContent;
      return /\d/.test(t) ? t : null;
    });
    await until(page, 'the connection indicator to say live', () => document.getElementById('conn').dataset.state === 'live');
  });

  await check('live values change with the telegrams', async () => {
    const at = await page.textContent('#live-at');
    await until(page, 'a newer telegram', (old) => document.getElementById('live-at').textContent !== old, at, 15000);
    const phases = await page.$$eval('#phases [data-v]', (tds) => tds.map((td) => td.textContent));
    assert(phases.every((t) => /\d/.test(t)), `per-phase values missing: ${phases.join(' ')}`);
    await until(page, 'the import power to change', (old) => {
      const el = document.getElementById('live-import');
      return el.textContent !== old && /\d/.test(el.textContent);
    }, firstImport, 25000);
  });

  await check('reference-power guard: banner and gauge of the live quarter hour', async () => {
    // The page's figures and the API's guard of the same telegram: the stream brings one a
    // second, so they are asked again after each new one on the page until both agree.
    await until(page, 'the guard gauge', () => !document.getElementById('guard').hidden, undefined, 20000);
    if (guardRefKw != null) {
      // The load is above the reference power, yet the first quarter hour may end fine when the
      // service started late in it: the next one will exceed from its first telegram on.
      await until(page, 'a quarter hour that will exceed the reference power', () =>
        ['will_exceed', 'exceeded'].includes(document.getElementById('guard').dataset.verdict), undefined, 120000);
    }
    const deadline = Date.now() + 20000;
    let seen;
    for (;;) {
      seen = await page.evaluate(async () => {
        const box = document.getElementById('guard');
        const banner = document.getElementById('guard-banner');
        const text = (id) => document.getElementById(id).textContent;
        const body = await (await fetch('api/meters')).json();
        const g = body.meters[0].guard;
        const shown = {
          hidden: box.hidden, at: Number(box.dataset.at), verdict: box.dataset.verdict,
          minutes: Number(box.dataset.minutesLeft),
          banner: banner.hidden ? null : banner.textContent, level: banner.dataset.level || '',
          projected: text('g-projected'), reference: text('g-reference'), energy: text('g-energy'),
          headroom: text('g-headroom'), left: text('g-left'),
          fill: parseFloat(document.getElementById('g-fill').style.width),
          mark: parseFloat(document.getElementById('g-ref').style.left),
        };
        // Formatted here as the page formats them (the browser's language, en-GB).
        const f = (v, d) => new Intl.NumberFormat(undefined, { minimumFractionDigits: d, maximumFractionDigits: d }).format(v);
        const want = g && {
          projected: `${f(g.projected_average_kw, 3)} kW`, reference: `${f(g.reference_power_kw, 3)} kW`,
          energy: `${f(g.energy_import_kwh, 3)} kWh`, headroom: `${f(g.headroom_kw, 3)} kW`,
          ref2: f(g.reference_power_kw, 2), headroom2: f(g.headroom_kw, 2),
        };
        return { shown, g, want, now: Date.now() / 1000 };
      });
      if (seen.g && seen.shown.at === seen.g.at) break;
      assert(Date.now() < deadline, `the page's guard never matched /api/meters' in 20 s: ${JSON.stringify(seen)}`);
      await until(page, 'the next guard figures', (at) => document.getElementById('guard').dataset.at !== at, String(seen.shown.at));
    }
    const { shown, g, now, want } = seen;
    const about = JSON.stringify(seen);
    // The quarter hour in progress by the wall clock (Luxembourg's are UTC's: whole hours).
    assert(g.quarter_end - g.quarter_start === 900 && g.quarter_start % 900 === 0, `not a quarter hour: ${about}`);
    assert(Math.abs(now - g.at) < 30, `the guard is not of now: ${about}`);
    const minutes = Math.ceil((g.quarter_end - g.at) / 60);
    assert(shown.minutes === minutes && shown.left === `${minutes} min left`, `minutes left: ${about}`);
    assert(Math.abs(minutes - (Math.ceil(now / 900) * 900 - now) / 60) <= 1.5, `minutes left ${minutes} by the wall clock: ${about}`);
    for (const k of ['projected', 'reference', 'energy', 'headroom']) {
      assert(shown[k] === want[k], `gauge ${k}: ${shown[k]}, the API says ${want[k]}`);
    }
    assert(shown.verdict === g.verdict, `verdict ${shown.verdict}, the API says ${g.verdict}`);
    // The bar against the mark: the projected average against the reference power.
    assert(shown.fill > 0 && shown.mark > 0 && (shown.fill > shown.mark) === (g.projected_average_kw > g.reference_power_kw),
      `gauge bar ${shown.fill}% against the reference mark ${shown.mark}%: ${about}`);
    if (guardRefKw != null) {
      assert(g.reference_power_kw === guardRefKw, `reference power ${g.reference_power_kw}, configured ${guardRefKw}`);
      assert(g.will_exceed && g.projected_average_kw > guardRefKw, `the load is above the reference power, yet: ${about}`);
    }
    if (g.verdict === 'will_exceed') {
      const expected = `At the present power this quarter hour will exceed the reference power of ${want.ref2} kW — ${want.headroom2} kW headroom for ${minutes} min.`;
      assert(shown.banner === expected && shown.level === 'warn', `amber banner: ${shown.banner} (${shown.level}), expected ${expected}`);
    } else if (g.verdict === 'exceeded') {
      assert(shown.level === 'bad' && shown.banner && shown.banner.startsWith(`This quarter hour has exceeded the reference power of ${want.ref2} kW: ${want.energy} drawn`),
        `red banner: ${shown.banner} (${shown.level})`);
    } else {
      assert(shown.banner === null, `a banner while the quarter hour is fine: ${shown.banner}`);
    }
    const colour = await page.evaluate(() => getComputedStyle(document.getElementById('guard-banner')).borderLeftColor);
    result.guard = { verdict: g.verdict, reference_power_kw: g.reference_power_kw, projected_average_kw: g.projected_average_kw, banner_colour: colour };
  });

  await check('reference-power guard: amber, red and fine, from /api/meters and stream events', async () => {
    // Answers made here: the guard of the quarter hour in progress by the wall clock, 3 kW.
    const p = await desktop.newPage();
    watch(p, 'guard');
    const qs = Math.floor(Date.now() / 900000) * 900;
    const base = { quarter_start: qs, quarter_end: qs + 900, reference_power_kw: 3.0, month_peak_kw: 5.1,
      month_peak_start: qs - 86400, meter_demand_kw: null, meter_month_max_demand_kw: null };
    const amber = { ...base, at: qs + 420, energy_import_kwh: 0.25, average_power_kw: 2.143, projected_average_kw: 3.4,
      headroom_kw: 3.75, verdict: 'will_exceed', will_exceed: true, exceeded: false };
    const red = { ...base, at: qs + 600, energy_import_kwh: 0.8, average_power_kw: 4.8, projected_average_kw: 5.1,
      headroom_kw: 0, verdict: 'exceeded', will_exceed: true, exceeded: true };
    const fine = { ...base, quarter_start: qs + 900, quarter_end: qs + 1800, at: qs + 960, energy_import_kwh: 0.02,
      average_power_kw: 1.2, projected_average_kw: 1.2, headroom_kw: 3.2, verdict: 'fine', will_exceed: false, exceeded: false };
    const guardEvent = (meter, g) => `event: guard\ndata: ${JSON.stringify({ meter, ...g })}\n\n`;
    let stream = 'retry: 300\n: nothing yet\n\n';
    await p.route('**/api/meters', async (route) => {
      const res = await route.fetch();
      const body = await res.json();
      for (const m of body.meters) m.guard = amber;
      await route.fulfill({ response: res, json: body });
    });
    await p.route('**/api/meters/*/latest', async (route) => {
      const res = await route.fetch();
      await route.fulfill({ response: res, json: { ...(await res.json()), guard: amber } });
    });
    // The stream: what `stream` holds at each (re)connection, then its end.
    await p.route('**/api/stream?**', (route) => route.fulfill({ status: 200, contentType: 'text/event-stream', body: stream }));
    await p.goto(url, { waitUntil: 'load', timeout: 20000 });
    // The guard as shown, once its verdict is `verdict`.
    const shown = (verdict) => {
      const box = document.getElementById('guard');
      const banner = document.getElementById('guard-banner');
      if (box.hidden || box.dataset.verdict !== verdict) return null;
      return { verdict, banner: banner.hidden ? null : banner.textContent, level: banner.dataset.level,
        left: document.getElementById('g-left').textContent,
        headroom: document.getElementById('g-headroom').textContent, peak: document.getElementById('g-peak').textContent };
    };
    const a = await until(p, 'the amber banner', shown, 'will_exceed');
    assert(a.banner === 'At the present power this quarter hour will exceed the reference power of 3.00 kW — 3.75 kW headroom for 8 min.',
      `amber banner: ${a.banner}`);
    assert(a.level === 'warn' && a.left === '8 min left' && a.headroom === '3.750 kW' && a.peak === '5.100 kW', `amber gauge: ${JSON.stringify(a)}`);
    const amberColour = await p.evaluate(() => getComputedStyle(document.getElementById('guard-banner')).borderLeftColor);
    await p.locator('#live').screenshot({ path: join(shotDir, 'guard-amber.png') });

    // The next stream connection brings another meter's guard (ignored) and this one's, exceeded.
    stream = `retry: 300\n\n${guardEvent('elsewhere', fine)}${guardEvent('home', red)}`;
    const r = await until(p, 'the red banner', shown, 'exceeded');
    assert(r.level === 'bad' && r.banner === 'This quarter hour has exceeded the reference power of 3.00 kW: 0.800 kWh drawn, 0.050 kWh above its allowance (5 min left).',
      `red banner: ${JSON.stringify(r)}`);
    const redColour = await p.evaluate(() => getComputedStyle(document.getElementById('guard-banner')).borderLeftColor);
    assert(redColour !== amberColour, `amber and red banners have the same colour ${redColour}`);
    await p.locator('#live').screenshot({ path: join(shotDir, 'guard-red.png') });

    // A new quarter hour, fine: no banner, the gauge stays.
    stream = `retry: 300\n\n${guardEvent('home', fine)}`;
    const f = await until(p, 'the fine quarter hour', shown, 'fine');
    assert(f.banner === null && f.headroom === '3.200 kW', `fine: ${JSON.stringify(f)}`);
    await p.close();
  });

  await check('summary shows kWh and euro', async () => {
    const today = await until(page, 'today\'s figures', () => {
      const row = document.querySelector('#summary tr[data-p="today"]');
      const cells = [...row.querySelectorAll('td')].map((td) => td.textContent);
      return /\d.*kWh/.test(cells[0]) && /€/.test(cells[2]) && /\d/.test(cells[2]) ? cells : null;
    });
    const month = await page.$$eval('#summary tr[data-p="month"] td', (tds) => tds.map((td) => td.textContent));
    assert(/\d.*kWh/.test(month[0]) && /€\s?\d|\d\s?€/.test(month[2]), `this month: ${month.join(' | ')}`);
    const last = await page.$$eval('#summary tr[data-p="last_month"] td', (tds) => tds.map((td) => td.textContent));
    const zero = (t) => /^0[.,]00 kWh$/.test(t);
    assert(!(zero(month[0]) && zero(last[0])), `this and last month's import are zero (${month[0]}, ${last[0]}) though three days are stored`);
    result.summary_today = today.join(' | ');
    // The cost's fixed part is labelled as such: today's share of the monthly fees.
    const fixed = await page.$$eval('#summary td[data-k="cost_eur"] .fixed', (els) => els.map((el) => el.textContent));
    assert(/fixed fees \(today's share\)/.test(fixed[0]) && /\d/.test(fixed[0]), `today's fixed fees are not labelled: ${fixed[0]}`);
    assert(/fixed fees/.test(fixed[1]) && /\d/.test(fixed[1]), `this month's fixed fees are not labelled: ${fixed[1]}`);
    const amount = (t) => Number((t.match(/\d+(?:[.,]\d+)?/) || ['NaN'])[0].replace(',', '.'));
    const todayCost = await page.textContent('#summary tr[data-p="today"] .cost');
    assert(amount(fixed[0]) <= amount(todayCost), `the fixed share ${fixed[0]} exceeds the cost ${todayCost}`);
  });

  await check('history chart has data', async () => {
    await page.locator('#history').scrollIntoViewIfNeeded();
    await until(page, 'history points', () => {
      const el = document.getElementById('hist-chart');
      return el.querySelector('canvas') && Number(el.dataset.points) > 0;
    });
    await page.click('#ranges button[data-range="604800"]');
    const res = await until(page, 'the week to load', () => {
      const el = document.getElementById('hist-chart');
      return document.querySelector('#ranges button[data-range="604800"]').getAttribute('aria-pressed') === 'true' &&
        !el.hasAttribute('aria-busy') && Number(el.dataset.points) > 0 ? el.dataset.resolution : null;
    });
    assert(res === '15m', `a week should come as 15-minute points, got ${res}`);
    result.history_week_points = Number(await page.getAttribute('#hist-chart', 'data-points'));
    assert(result.history_week_points >= 3 * 96 * 2 * 0.9, `a week with three days stored has only ${result.history_week_points} points`);
  });

  await check('zoom by dragging refetches a finer resolution', async () => {
    const loads = Number(await page.getAttribute('#hist-chart', 'data-loads'));
    const before = historyRequests.length;
    const box = await page.locator('#hist-chart .u-over').boundingBox();
    assert(box && box.width > 100, 'no plotting area');
    // The last tenth of a week (about 17 h, the last of it stored) becomes the whole chart.
    const y = box.y + box.height / 2;
    await page.mouse.move(box.x + box.width * 0.93, y);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.96, y, { steps: 5 });
    await page.mouse.move(box.x + box.width * 0.995, y, { steps: 5 });
    await page.mouse.up();
    const res = await until(page, 'the zoomed range to load', (n) => {
      const el = document.getElementById('hist-chart');
      return Number(el.dataset.loads) > n && !el.hasAttribute('aria-busy') ? el.dataset.resolution : null;
    }, loads);
    const fetched = historyRequests.slice(before);
    assert(fetched.length > 0, 'no /series request after the zoom');
    assert(RES_RANK[res] < RES_RANK['15m'], `after zooming to ${Math.round((fetched[0].to - fetched[0].from) / 3600)} h the resolution is ${res}, not finer than 15m`);
    assert(Number(await page.getAttribute('#hist-chart', 'data-points')) > 0, 'the zoomed chart is empty');
    result.zoom_resolution = res;
  });

  await check('zoom with the keyboard', async () => {
    await page.click('#ranges button[data-range="86400"]');
    await until(page, 'the day to load', () => {
      const el = document.getElementById('hist-chart');
      return !el.hasAttribute('aria-busy') && el.dataset.resolution === '15m';
    });
    const loads = Number(await page.getAttribute('#hist-chart', 'data-loads'));
    await page.focus('#hist-chart');
    await page.keyboard.press('+');
    const res = await until(page, 'the zoomed range to load', (n) => {
      const el = document.getElementById('hist-chart');
      return Number(el.dataset.loads) > n && !el.hasAttribute('aria-busy') ? el.dataset.resolution : null;
    }, loads);
    assert(res === 'raw', `12 hours after "+" should be raw telegrams, got ${res}`);
    const last = historyRequests[historyRequests.length - 1];
    assert(last.to - last.from <= 12 * 3600 + 60, `"+" asked for ${last.to - last.from} s`);
  });

  await check('15-minute view with the reference power', async () => {
    await page.locator('#quarter').scrollIntoViewIfNeeded();
    const info = await until(page, 'the 15-minute chart', () => {
      const el = document.getElementById('q-chart');
      const legend = el.querySelector('.legend');
      return el.querySelector('canvas') && Number(el.dataset.intervals) > 0 && legend
        ? { ref: el.dataset.reference, intervals: el.dataset.intervals, legend: legend.textContent }
        : null;
    });
    assert(Number(info.ref) > 0, `no reference power (${info.ref})`);
    assert(/Reference/.test(info.legend) && /Above/.test(info.legend), `legend: ${info.legend}`);
    const note = await page.textContent('#q-note');
    assert(/reference power/i.test(note) && /Peak/.test(note), `note: ${note}`);
    const today = await page.getAttribute('#q-chart', 'data-day');
    await page.click('#day-prev');
    const yesterday = await until(page, 'yesterday\'s quarter-hours', (day) => {
      const el = document.getElementById('q-chart');
      return el.dataset.day && el.dataset.day !== day && Number(el.dataset.intervals) > 0
        ? Number(el.dataset.intervals) : null;
    }, today);
    assert(yesterday >= 92, `yesterday has only ${yesterday} quarter-hours`);
    result.quarter_hours_yesterday = yesterday;
    await page.click('#day-today');
  });

  await check('gas and water', async () => {
    await page.locator('#mbus').scrollIntoViewIfNeeded();
    const cards = await until(page, 'gas and water figures and charts', () => {
      const cards = [...document.querySelectorAll('#mbus .medium')];
      const ok = cards.length >= 2 && cards.every((c) =>
        /\d.*m³/.test(c.querySelector('[data-reading]').textContent) &&
        /\d/.test(c.querySelector('[data-today]').textContent) &&
        c.querySelector('canvas') && Number(c.querySelector('.mchart').dataset.points) > 0);
      return ok ? cards.map((c) => c.querySelector('h3').textContent) : null;
    });
    assert(cards.some((t) => /Gas/.test(t)) && cards.some((t) => /Water/.test(t)), `panels: ${cards.join(', ')}`);
  });

  await check('labels and units are the API\'s (fields of /api/meters)', async () => {
    // The real metadata: the gas card shows its label and unit.
    const meters = await page.evaluate(async () => (await fetch('api/meters')).json());
    const fields = meters.meters[0].fields;
    const gas = fields.find((f) => f.mbus && f.mbus.medium === 'gas' && f.series);
    assert(gas && gas.label === 'Gas' && gas.unit === 'm³', `gas field: ${JSON.stringify(gas)}`);
    const heading = await page.textContent(`#mbus .medium[data-field="${gas.name}"] h3`);
    assert(heading === `${gas.label} (M-Bus ${gas.mbus.channel})`, `gas heading: ${heading}`);
    assert(meters.time_zone === 'Europe/Luxembourg', `time zone: ${meters.time_zone}`);
    assert((await page.textContent('#time-zone')) === meters.time_zone, 'the footer does not name the time zone');

    // Other metadata and another zone from the server: the page shows those, guessing nothing.
    const p = await desktop.newPage();
    watch(p, 'metadata');
    await p.route('**/api/meters', async (route) => {
      const res = await route.fetch();
      const body = await res.json();
      body.time_zone = 'Asia/Tokyo';
      for (const m of body.meters) {
        for (const f of m.fields || []) {
          if (f.name === gas.name) Object.assign(f, { label: 'Town gas', unit: 'Nm³' });
          if (f.name === 'power_import_kw') f.label = 'Drawn from the grid';
        }
      }
      await route.fulfill({ response: res, json: body });
    });
    await p.goto(url, { waitUntil: 'load', timeout: 20000 });
    const card = await until(p, 'the renamed gas card', (name) => {
      const c = document.querySelector(`#mbus .medium[data-field="${name}"]`);
      const reading = c && c.querySelector('[data-reading]').textContent;
      // The month's total arrives after the reading: it always shows a figure once there
      // (0 for a month without readings), `–` is its placeholder until then.
      const month = c && c.querySelector('[data-month]').textContent;
      return c && /\d/.test(reading) && /\d/.test(month) ? { heading: c.querySelector('h3').textContent, reading, today: c.querySelector('[data-today]').textContent, month: c.querySelector('[data-month]').textContent } : null;
    }, gas.name);
    assert(card.heading === `Town gas (M-Bus ${gas.mbus.channel})`, `heading: ${card.heading}`);
    // Every figure carries the API's unit. Today and this month are Tokyo's: from 15:00 UTC
    // Tokyo's day is one the store holds nothing of yet, shown as `–` (no figure, no unit).
    const figure = (v) => /\d Nm³$/.test(v);
    assert(figure(card.reading) && [card.today, card.month].every((v) => v === '–' || figure(v)) && (figure(card.today) || figure(card.month)),
      `units: ${card.reading}, ${card.today}, ${card.month}`);
    const option = await p.$eval(`#hist-field option[value="${gas.name}"]`, (o) => o.textContent);
    assert(option === 'Town gas (Nm³ per period)', `history choice: ${option}`);
    const legend = await until(p, 'the history legend', () => {
      const el = document.getElementById('hist-chart');
      return el.querySelector('canvas') && el.dataset.labels ? el.dataset.labels : null;
    });
    assert(legend.split(',')[0] === 'Drawn from the grid', `history legend: ${legend}`);
    assert((await p.textContent('#time-zone')) === 'Asia/Tokyo', 'the footer does not follow the API\'s zone');
    // Times follow the zone: the last telegram's clock time is Tokyo's, eight or seven hours
    // ahead of Luxembourg's.
    const shown = await until(p, 'the last telegram\'s time', () => {
      const t = document.getElementById('st-last').textContent;
      return /\d{2}:\d{2}:\d{2}/.test(t) ? t : null;
    });
    const hour = Number(shown.match(/(\d{2}):\d{2}:\d{2}/)[1]);
    const tokyo = Number(new Intl.DateTimeFormat('en-GB', { timeZone: 'Asia/Tokyo', hour: '2-digit', hourCycle: 'h23' }).format(new Date()));
    assert(hour === tokyo || hour === (tokyo + 23) % 24, `last telegram at ${shown}, Tokyo's hour is ${tokyo}`);
    await p.close();
  });

  await check('status panel', async () => {
    const last = await page.textContent('#st-last');
    assert(/\d{2}:\d{2}:\d{2}/.test(last) && /ago/.test(last), `last telegram: ${last}`);
    const conn = await page.textContent('#st-conn');
    assert(/^Connected/.test(conn), `connection: ${conn}`);
    assert(/\d/.test(await page.textContent('#st-count')), 'no telegram count');
  });

  await check('keyboard: Tab reaches the range buttons, Enter presses one', async () => {
    await page.evaluate(() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); });
    let reached = null;
    for (let i = 0; i < 40 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => {
        const a = document.activeElement;
        return a && a.matches('#ranges button') ? a.dataset.range : null;
      });
    }
    assert(reached, 'Tab never reached a range button');
    const ring = await page.evaluate(() => {
      const s = getComputedStyle(document.activeElement);
      return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;
    });
    assert(ring, 'the focused range button shows no focus ring');
    const loads = Number(await page.getAttribute('#hist-chart', 'data-loads'));
    await page.keyboard.press('Enter');
    await until(page, 'the range to be pressed and loaded', ([range, n]) => {
      const b = document.querySelector(`#ranges button[data-range="${range}"]`);
      const el = document.getElementById('hist-chart');
      return b.getAttribute('aria-pressed') === 'true' && Number(el.dataset.loads) > n && !el.hasAttribute('aria-busy');
    }, [reached, loads]);
    await page.keyboard.press('?');
    assert(await page.evaluate(() => document.getElementById('help').open), '"?" did not open the shortcuts');
    await page.keyboard.press('Escape');
    assert(await page.evaluate(() => !document.getElementById('help').open), 'Escape did not close the shortcuts');
  });

  await check('no console or page errors (desktop)', noProblems);

  await check('desktop screenshots', async () => {
    await page.click('#ranges button[data-range="86400"]');
    await until(page, 'the day to load', () => !document.getElementById('hist-chart').hasAttribute('aria-busy') &&
      document.getElementById('hist-chart').dataset.resolution === '15m');
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.mouse.move(0, 0);
    await page.waitForTimeout(300);
    await page.screenshot({ path: join(shotDir, 'desktop.png') });
    await page.screenshot({ path: join(shotDir, 'desktop-full.png'), fullPage: true });
  });

  await check('phone layout', async () => {
    const phone = await browser.newContext({
      viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
      locale: 'en-GB', timezoneId: 'Europe/Luxembourg',
    });
    const p = await phone.newPage();
    watch(p, 'phone');
    await p.goto(url, { waitUntil: 'load', timeout: 20000 });
    await until(p, 'live figures and charts', () =>
      /\d/.test(document.getElementById('live-import').textContent) &&
      document.querySelector('#hist-chart canvas') && document.querySelector('#q-chart canvas') &&
      document.querySelectorAll('#mbus canvas').length >= 2 &&
      /\d.*kWh/.test(document.querySelector('#summary td').textContent));
    const layout = await p.evaluate(() => {
      const cards = [...document.querySelectorAll('main > .card')].map((c) => c.getBoundingClientRect());
      return { scrollWidth: document.documentElement.scrollWidth, lefts: [...new Set(cards.map((r) => Math.round(r.left)))] };
    });
    assert(layout.scrollWidth <= 390, `the page is ${layout.scrollWidth} px wide on a 390 px phone`);
    assert(layout.lefts.length === 1, `more than one column on a phone (card lefts ${layout.lefts.join(', ')})`);
    await p.waitForTimeout(300);
    await p.screenshot({ path: join(shotDir, 'phone.png') });
    await p.screenshot({ path: join(shotDir, 'phone-full.png'), fullPage: true });
    await phone.close();
  });

  await check('no console or page errors (phone)', noProblems);
  result.checks_passed = progress.passed;
  result.screenshots = shotDir;
} catch (e) {
  exitCode = 1;
  console.error(`dashboard test FAILED: ${e instanceof CheckFailed ? e.message : `${progress.current}: ${e.stack || e}`}`);
  if (problems.length) console.error(problems.join('\n'));
} finally {
  await browser.close().catch(() => {});
}
if (exitCode === 0) {
  console.log(JSON.stringify(result));
  log(`all ${progress.passed} checks passed`);
}
process.exit(exitCode);
