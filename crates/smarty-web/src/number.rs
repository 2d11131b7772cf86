//! The numbers of API answers, rounded to the resolution of their quantity (docs/api.md,
//! "Numbers"): sums and averages computed in binary floating point carry noise
//! (`18.759999999999998`) and negative zeros that no meter ever measured.
//!
//! The resolution comes from the unit, and the unit from the name, as everywhere in smarty
//! (`energy_import_kwh`, `cost_eur`, `mbus1_gas_m3`), or from a `unit` beside the numbers
//! (`{"unit": "kW", "value": [...]}`). Numbers without a known unit keep their value; no
//! number is ever `-0.0`.

use serde_json::Value;

use smarty_model::unit::Unit;

/// Decimals of a price or a rate (`energy_price_eur_per_kwh`, `vat_rate`): a
/// ten-thousandth of a cent, finer than any published tariff.
pub const PRICE_DECIMALS: u32 = 6;

/// Decimals kept for a unit (case-insensitive): the resolution of the meters' registers
/// ([`UnitDef::decimals`](smarty_model::unit::UnitDef) of the unit table: kWh, kW, m3, GJ
/// … to 0.001, V to 0.1, A and Hz to 0.01, Wh, W, s … to 1), and cents for EUR (any
/// currency of `[tariff] currency`).
pub fn decimals_of_unit(unit: &str) -> Option<u32> {
    if unit.eq_ignore_ascii_case("eur") {
        return Some(2);
    }
    Unit::parse(unit).known()?.decimals
}

/// Decimals of the number named `key`, from the unit at the end of its name:
/// `energy_import_kwh` → kWh, `cost_eur` → EUR, `fixed_eur_per_month` and `vat_rate` →
/// [`PRICE_DECIMALS`].
pub fn decimals_of_name(key: &str) -> Option<u32> {
    if key.contains("_per_") || key.ends_with("_rate") {
        return Some(PRICE_DECIMALS);
    }
    let (_, unit) = key.rsplit_once('_')?;
    decimals_of_unit(unit)
}

/// `x` rounded to `decimals` decimals, without float noise (the nearest double of the
/// decimal, which prints as that decimal) and without a negative zero. Not finite numbers
/// stay as they are (JSON writes them as `null`).
pub fn round(x: f64, decimals: u32) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(decimals as i32);
    let steps = (x * scale).round();
    // Far beyond the precision of a double there is nothing to round.
    if steps.abs() >= 2f64.powi(53) {
        return x;
    }
    let rounded = steps / scale;
    if rounded == 0.0 { 0.0 } else { rounded }
}

/// Rounds every number in `value` to the resolution of its quantity (module docs); the
/// subtree under `telegram` (the decoder's object of a telegram, the meter's own decimals)
/// only loses negative zeros.
pub fn round_answer(value: &mut Value) {
    walk(value, None, false);
}

/// Rounds the numbers of `value` to `decimals`, or by their names and units; `exact` keeps
/// every value (the telegram's own decimals).
fn walk(value: &mut Value, decimals: Option<u32>, exact: bool) {
    match value {
        Value::Number(n) => {
            if n.is_f64()
                && let Some(x) = n.as_f64()
            {
                let y = match decimals {
                    Some(d) if !exact => round(x, d),
                    _ => x,
                };
                let y = if y == 0.0 { 0.0 } else { y };
                if let Some(rounded) = serde_json::Number::from_f64(y) {
                    *n = rounded;
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, decimals, exact);
            }
        }
        Value::Object(map) => {
            let unit = map
                .get("unit")
                .and_then(Value::as_str)
                .and_then(decimals_of_unit);
            for (key, item) in map.iter_mut() {
                let exact = exact || key == "telegram";
                let inner = if let Some(d) = decimals_of_name(key) {
                    Some(d)
                } else if matches!(key.as_str(), "value" | "min" | "max") {
                    unit.or(decimals)
                } else if item.is_number() {
                    // A number without a unit in its name: nothing to round it to.
                    None
                } else {
                    decimals
                };
                walk(item, inner, exact);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rounding_leaves_no_noise() {
        assert_eq!(round(18.759999999999998, 3).to_string(), "18.76");
        assert_eq!(round(0.1 + 0.2, 2).to_string(), "0.3");
        assert_eq!(round(-0.0001, 3).to_string(), "0");
        assert!(round(-0.0001, 3).is_sign_positive());
        assert_eq!(round(231.25, 1), 231.3);
        assert_eq!(round(-1.2345, 2), -1.23);
        assert_eq!(round(1e300, 3), 1e300);
        assert!(round(f64::NAN, 3).is_nan());
    }

    #[test]
    fn units_come_from_names_and_unit_fields() {
        assert_eq!(decimals_of_name("energy_import_kwh"), Some(3));
        assert_eq!(decimals_of_name("peak_15min_kw"), Some(3));
        assert_eq!(decimals_of_name("cost_eur"), Some(2));
        assert_eq!(decimals_of_name("voltage_l1_v"), Some(1));
        assert_eq!(decimals_of_name("current_l1_a"), Some(2));
        assert_eq!(decimals_of_name("mbus1_gas_m3"), Some(3));
        assert_eq!(decimals_of_name("energy_price_eur_per_kwh"), Some(6));
        assert_eq!(decimals_of_name("vat_rate"), Some(6));
        assert_eq!(decimals_of_name("telegrams"), None);
        assert_eq!(decimals_of_name("power_factor_l1"), None);
    }

    #[test]
    fn answers_are_rounded_by_unit() {
        let mut answer = json!({
            "unit": "kW",
            "t": [1, 2],
            "value": [0.46129999, -0.0],
            "min": [0.1 + 0.2],
            "rows": [{"cost_eur": 18.759999999999998, "export_remuneration_eur": -0.0,
                      "mbus": {"mbus1_gas_m3": 1.0000000002}, "intervals": 96}],
            "values": {"voltage_l1_v": 230.04999, "power_factor": -0.0, "ratio": 0.30000000000000004},
            "telegram": {"objects": {"1-0:32.7.0": {"value": 230.04, "unit": "V"},
                                     "1-0:1.7.0": {"value": -0.0, "unit": "kW"}}},
        });
        round_answer(&mut answer);
        assert_eq!(
            answer.to_string(),
            json!({
                "unit": "kW",
                "t": [1, 2],
                "value": [0.461, 0.0],
                "min": [0.3],
                "rows": [{"cost_eur": 18.76, "export_remuneration_eur": 0.0,
                          "mbus": {"mbus1_gas_m3": 1.0}, "intervals": 96}],
                "values": {"voltage_l1_v": 230.0, "power_factor": 0.0, "ratio": 0.30000000000000004},
                "telegram": {"objects": {"1-0:32.7.0": {"value": 230.04, "unit": "V"},
                                         "1-0:1.7.0": {"value": 0.0, "unit": "kW"}}},
            })
            .to_string()
        );
    }
}
