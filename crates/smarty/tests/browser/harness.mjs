// What the browser tests share (dashboard.mjs, fleet.mjs): playwright-core from the
// dashboard's node_modules, a log with the seconds since start, named checks that stop at the
// first failure, and waiting on a condition in the page with a deadline.

import { createRequire } from 'node:module';

// playwright-core's `chromium`, or exits 1 saying how to install it (`test`: the test's name).
export function loadChromium(test) {
  const requireFromWeb = createRequire(new URL('../../../smarty-web/static/package.json', import.meta.url));
  try {
    return requireFromWeb(process.env.PLAYWRIGHT_CORE || 'playwright-core').chromium;
  } catch (e) {
    console.error(`${test} test: playwright-core is not installed (cd crates/smarty-web/static && npm ci): ${e.message}`);
    process.exit(1);
  }
}

const started = Date.now();
export const log = (msg) => console.error(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${msg}`);

export class CheckFailed extends Error {}

// The check running (for a failure outside a check's own message) and the checks passed.
export const progress = { current: 'start', passed: 0 };

export async function check(name, fn) {
  progress.current = name;
  try {
    await fn();
  } catch (e) {
    throw new CheckFailed(`${name}: ${e instanceof CheckFailed ? e.message : e.message || e}`);
  }
  progress.passed += 1;
  log(`ok   ${name}`);
}

export function assert(cond, message) {
  if (!cond) throw new CheckFailed(message);
}

// Waits for fn() (run in the page) to return a truthy value; returns it.
export async function until(page, what, fn, arg, timeout = 15000) {
  try {
    const handle = await page.waitForFunction(fn, arg, { timeout, polling: 100 });
    return await handle.jsonValue();
  } catch {
    throw new CheckFailed(`timed out after ${timeout / 1000} s waiting for ${what}`);
  }
}
