#!/usr/bin/env node
// Drives the fleet's pages (`smarty fleet serve`) in headless Chromium (Debian's
// /usr/bin/chromium) with playwright-core: the community view, the meter list with its search,
// and a meter's dashboard from the store. Run by crates/smarty/tests/e2e/fleet_serve.rs; also
// runs alone against any `smarty fleet serve` whose meters stored readings today:
//
//   node crates/smarty/tests/browser/fleet.mjs http://127.0.0.1:8080/ /tmp/shots 3
//
// The third argument is the number of meters the fleet has; the last one's frames are being
// rejected (reason tag). Prints one JSON line on stdout;
// progress and failures go to stderr; exits 1 with the failed check's name on the first
// failure. CHROMIUM overrides the browser.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { CheckFailed, assert, check, loadChromium, log, progress, until } from './harness.mjs';

const [url, shotDir, meterCount] = process.argv.slice(2);
if (!url || !shotDir || !meterCount) {
  console.error('usage: node fleet.mjs FLEET_URL SCREENSHOT_DIR METERS');
  process.exit(2);
}
const METERS = Number(meterCount);

const chromium = loadChromium('fleet');

mkdirSync(shotDir, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 60000,
});
const problems = [];
function watch(page, label) {
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`${label} console error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`${label} page error: ${err.message}`));
}
const noProblems = async () => assert(!problems.length, problems.join('; '));

let exitCode = 0;
const result = {};
try {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 }, locale: 'en-GB', timezoneId: 'Europe/Luxembourg',
  });
  const page = await context.newPage();
  watch(page, 'desktop');

  await check('the fleet page loads at /', async () => {
    await page.goto(url, { waitUntil: 'load', timeout: 20000 });
    assert((await page.title()) === 'smarty fleet', `title ${await page.title()}`);
  });

  await check('counts per state', async () => {
    const text = await until(page, 'the counts', () => {
      const t = document.getElementById('m-counts').textContent;
      return /meters:/.test(t) && t;
    });
    assert(text.startsWith(`${METERS} meters: ${METERS - 1} ok`) && text.endsWith('1 rejecting'), text);
  });

  await check('the meter list: every meter, with its figures and a link', async () => {
    const rows = await until(page, 'the rows', (n) => {
      const rows = [...document.querySelectorAll('#m-rows tr[data-name]')];
      return rows.length === n && rows.map((r) => ({
        name: r.dataset.name, state: r.dataset.state,
        cells: [...r.children].map((c) => c.textContent), link: r.querySelector('a') && r.querySelector('a').getAttribute('href'),
      }));
    }, METERS);
    // The fleet of the end-to-end test: the last meter's frames are being rejected.
    const rejecting = rows.filter((r) => r.state === 'rejecting');
    assert(rejecting.length === 1 && /tag 12/.test(rejecting[0].cells[5]), `rejecting: ${JSON.stringify(rejecting)}`);
    for (const r of rows) {
      assert(r.state === 'ok' || r.state === 'rejecting', `${r.name}: ${r.state}`);
      assert(/^[0-9A-F]{16}$/.test(r.cells[1]), `${r.name}: system title ${r.cells[1]}`);
      assert(/ago|s ago/.test(r.cells[2]) || /\d/.test(r.cells[2]), `${r.name}: last seen ${r.cells[2]}`);
      assert(r.link === `index.html#meter=${encodeURIComponent(r.name)}`, `${r.name}: link ${r.link}`);
    }
    const pageText = await page.textContent('#m-page');
    assert(pageText.includes(`1–${METERS} of ${METERS}`), pageText);
  });

  await check('search narrows the list', async () => {
    await page.fill('#m-search', 'meter-0002');
    await until(page, 'one row', () => document.querySelectorAll('#m-rows tr[data-name]').length === 1 &&
      document.querySelector('#m-rows tr[data-name]').dataset.name === 'meter-0002');
    await page.fill('#m-search', 'nothing-like-this');
    await until(page, 'no row', () => /No meter matches/.test(document.getElementById('m-rows').textContent));
    await page.fill('#m-search', '');
    await until(page, 'every row again', (n) => document.querySelectorAll('#m-rows tr[data-name]').length === n, METERS);
  });

  await check('the community view: chart, totals, top meters', async () => {
    await until(page, 'the chart', () => document.querySelector('#c-chart canvas') &&
      Number(document.getElementById('c-chart').dataset.quarters) > 0);
    const totals = await page.$$eval('#c-totals td', (tds) => tds.map((td) => td.textContent));
    assert(/\d.*kWh/.test(totals[0]), `import ${totals[0]}`);
    assert(/%|–/.test(totals[5]), `self-consumption ${totals[5]}`);
    const top = await page.$$eval('#c-top-import li a', (as) => as.map((a) => a.textContent));
    assert(top.length >= 1 && top.length <= 10, `top importers ${top}`);
    const note = await page.textContent('#c-note');
    assert(note.includes(`${METERS} of ${METERS} members`), note);
  });

  await check('the community of chosen members', async () => {
    await page.fill('#c-members', 'meter-0001, meter-0002');
    await page.click('#c-members-form button');
    await until(page, '2 members', () => /of 2 members/.test(document.getElementById('c-note').textContent));
    await page.fill('#c-members', '');
    await page.click('#c-members-form button');
    await until(page, 'all members', (n) => document.getElementById('c-note').textContent.includes(`of ${n} members`), METERS);
  });

  await check('no console or page errors (fleet page)', noProblems);
  await check('fleet page screenshot', async () => {
    await page.mouse.move(0, 0);
    await page.waitForTimeout(300);
    await page.screenshot({ path: join(shotDir, 'fleet.png'), fullPage: true });
  });

  await check('a meter\'s dashboard from the store', async () => {
    await Promise.all([page.waitForNavigation({ timeout: 20000 }), page.click('#m-rows tr[data-name="meter-0001"] a')]);
    await until(page, '"Now" from the last stored reading', () =>
      /\d/.test(document.getElementById('live-import').textContent) &&
      /Last stored reading/.test(document.getElementById('live-at').textContent));
    assert(!(await page.isHidden('#fleet-link')), 'no link back to the fleet');
    await until(page, 'the indicator to tell how recent the stored readings are', () =>
      /^Stored \d+ (s|min) ago$/.test(document.getElementById('conn-text').textContent));
    await until(page, 'the history chart', () => document.querySelector('#hist-chart canvas'));
    const status = await page.textContent('#st-conn');
    assert(/Fleet/.test(status), `status ${status}`);
    await page.waitForTimeout(300);
    await page.screenshot({ path: join(shotDir, 'fleet-meter.png') });
  });

  await check('no console or page errors (meter dashboard)', noProblems);
  await check('the dashboard without a meter leads to the fleet page', async () => {
    await page.goto(new URL('index.html', url).href, { waitUntil: 'load', timeout: 20000 });
    await until(page, 'the fleet page', () => document.title === 'smarty fleet' &&
      document.querySelectorAll('#m-rows tr[data-name]').length > 0);
  });
  await check('no console or page errors (redirect)', noProblems);
  result.checks_passed = progress.passed;
  result.screenshots = shotDir;
} catch (e) {
  exitCode = 1;
  console.error(`fleet test FAILED: ${e instanceof CheckFailed ? e.message : `${progress.current}: ${e.stack || e}`}`);
  if (problems.length) console.error(problems.join('\n'));
} finally {
  await browser.close().catch(() => {});
}
if (exitCode === 0) {
  console.log(JSON.stringify(result));
  log(`all ${progress.passed} checks passed`);
}
process.exit(exitCode);
