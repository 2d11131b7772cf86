// The "Energy and cost" panel: today, this month and last month, from /summary.

import { api, meterPath } from './api.js';
import { $, setText } from './dom.js';
import { fmtKwh, fmtMoney, fmtNum, fmtTime, nowS } from './format.js';
import { state } from './state.js';

export async function loadSummary() {
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
