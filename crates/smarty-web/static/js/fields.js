// What a value is, as the API says (`fields` of /api/meters: label, unit, kind, direction,
// M-Bus medium…), and how the dashboard shows it: digits, colour, line or bars. Nothing here
// reads meaning out of a value's name.

import { state } from './state.js';
import { fmtKw, fmtM3, fmtNum } from './format.js';

/** The API's metadata of the selected meter's value `name`, or null. */
export function fieldMeta(name) {
  const fields = (state.meter && Array.isArray(state.meter.fields)) ? state.meter.fields : [];
  return fields.find((f) => f.name === name) || null;
}

// Digits by what the value measures.
const FORMATS = {
  power: fmtKw,
  reactive_power: fmtKw,
  apparent_power: fmtKw,
  energy: (v) => fmtNum(v, 3),
  reactive_energy: (v) => fmtNum(v, 3),
  voltage: (v) => fmtNum(v, 1),
  current: (v) => fmtNum(v, 0, 1),
  mbus_reading: fmtM3,
};
const fmtOther = (v) => fmtNum(v, 0, 3);

// The stylesheet's colour (`--name`) of a value: its direction, or its medium.
function colorOf(meta) {
  if (meta.mbus) return meta.mbus.medium === 'water' ? 'water' : meta.mbus.medium === 'gas' ? 'gas' : 'import';
  if (meta.direction === 'import' || meta.direction === 'export') return meta.direction;
  return 'accent';
}

/**
 * How to show the value `name`: {label, unit, fmt, bars, autoScale, color}. `bars` for a
 * register that only grows (its series are increases per period), `autoScale` for voltages
 * (a y axis from zero would flatten them). A value the API does not describe is shown under
 * its name, without a unit.
 */
export function fieldInfo(name) {
  const meta = fieldMeta(name);
  if (!meta) return { label: name, unit: '', fmt: fmtOther, bars: false, autoScale: false, color: 'accent' };
  return {
    label: meta.label,
    unit: meta.unit || '',
    fmt: FORMATS[meta.kind] || fmtOther,
    bars: !!meta.cumulative,
    autoScale: meta.kind === 'voltage',
    color: colorOf(meta),
  };
}

/** The gas, water, heat… meters of meter `m` with a stored history (its M-Bus readings). */
export function mbusFields(m) {
  return (Array.isArray(m.fields) ? m.fields : []).filter((f) => f.kind === 'mbus_reading' && f.mbus && f.series);
}
