// The reference-power guard in the "Now" panel: where the quarter hour in progress stands
// against the reference power (the `guard` of /api/meters and /latest, then every `guard`
// event of the stream; docs/api.md). A banner while the quarter hour will exceed it or has
// exceeded it (hidden when all is fine), and a gauge: the projected average of the quarter
// against the reference power, the energy so far, the headroom and the minutes left.

import { $, setText } from './dom.js';
import { fmtKw, fmtNum, fmtTime, nowS } from './format.js';
import { state } from './state.js';

/** A quarter hour whose end is this long past (seconds) is no longer "now". */
const OVER_S = 60;

const fmtKw2 = (v) => fmtNum(v, 2);
// A quarter hour's energy: a few kWh at most, to the Wh.
const fmtKwh3 = (v) => fmtNum(v, 3);
const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** Minutes left in the quarter hour at the guard's telegram (rounded up). */
export function minutesLeft(g) {
  return Math.max(0, Math.ceil((g.quarter_end - g.at) / 60));
}

/** Takes in a guard (`null`: off or not yet known): newer figures replace older ones. */
export function applyGuard(g) {
  if (g && typeof g !== 'object') g = null;
  const old = state.guard;
  // A late answer of /api/meters must not replace what the stream brought since.
  if (g && old && num(old.at) != null && num(g.at) != null && g.at < old.at) return;
  state.guard = g;
  showGuard();
}

/** Draws the banner and the gauge from `state.guard`; also run every second (staleness). */
export function showGuard() {
  const g = state.guard;
  const box = $('guard');
  const bannerEl = $('guard-banner');
  const over = !g || nowS() > g.quarter_end + OVER_S;
  if (!g) {
    box.hidden = true;
    bannerEl.hidden = true;
    delete box.dataset.verdict;
    return;
  }
  box.hidden = false;
  const ref = num(g.reference_power_kw);
  const projected = num(g.projected_average_kw);
  const headroom = num(g.headroom_kw);
  const left = minutesLeft(g);
  const verdict = over ? 'over' : g.verdict;
  box.dataset.verdict = verdict;
  box.dataset.at = String(g.at);
  box.dataset.projected = projected == null ? '' : String(projected);
  box.dataset.reference = ref == null ? '' : String(ref);
  box.dataset.headroom = headroom == null ? '' : String(headroom);
  box.dataset.energy = String(g.energy_import_kwh);
  box.dataset.minutesLeft = String(left);

  // The banner: amber while the quarter hour will exceed, red once it has.
  let text = '';
  let level = '';
  if (!over && g.exceeded) {
    level = 'bad';
    const above = ref == null ? null : g.energy_import_kwh - ref * 0.25;
    text = `This quarter hour has exceeded the reference power of ${fmtKw2(ref)} kW: ` +
      `${fmtKwh3(g.energy_import_kwh)} kWh drawn, ${fmtKwh3(above)} kWh above its allowance ` +
      `(${left} min left).`;
  } else if (!over && g.will_exceed) {
    level = 'warn';
    text = `At the present power this quarter hour will exceed the reference power of ${fmtKw2(ref)} kW — ` +
      `${fmtKw2(headroom)} kW headroom for ${left} min.`;
  }
  setText(bannerEl, text);
  if (bannerEl.dataset.level !== level) bannerEl.dataset.level = level;
  bannerEl.hidden = !text;

  // The gauge: the projected average as a bar, the reference power as a mark; the scale
  // leaves room above whichever is larger.
  const scale = Math.max(ref || 0, projected || 0, g.average_power_kw || 0) * 1.25 || 1;
  const pct = (v) => `${Math.min(100, Math.max(0, (v / scale) * 100)).toFixed(2)}%`;
  $('g-fill').style.width = pct(projected || 0);
  $('g-avg').style.width = pct(num(g.average_power_kw) || 0);
  $('g-ref').style.left = pct(ref || 0);
  const bar = $('g-bar');
  bar.setAttribute('aria-valuenow', String(projected ?? 0));
  bar.setAttribute('aria-valuemax', String(Math.round(scale * 1000) / 1000));
  bar.setAttribute('aria-valuetext', `projected ${fmtKw(projected)} kW of ${fmtKw(ref)} kW`);
  setText($('g-quarter'), `${fmtTime(g.quarter_start, 'hm')}–${fmtTime(g.quarter_end, 'hm')}`);
  setText($('g-left'), over ? 'ended' : `${left} min left`);
  setText($('g-projected'), `${fmtKw(projected)} kW`);
  setText($('g-reference'), `${fmtKw(ref)} kW`);
  setText($('g-energy'), `${fmtKwh3(g.energy_import_kwh)} kWh`);
  setText($('g-headroom'), `${fmtKw(headroom)} kW`);
  const peak = num(g.month_peak_kw);
  setText($('g-peak'), peak == null ? '–' : `${fmtKw(peak)} kW`);
}
