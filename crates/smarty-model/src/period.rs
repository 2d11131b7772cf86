//! Periods of stored history: the 15-minute interval of the grid tariff, reporting periods
//! (local days, months) and the resolutions of series and exports.

use serde::{Deserialize, Serialize};

/// The length of a grid-tariff measuring period: 15 minutes, in seconds.
pub const INTERVAL_S: i64 = 900;

/// The start of the 15-minute interval holding Unix second `ts` (a multiple of
/// [`INTERVAL_S`]).
pub fn interval_start(ts: i64) -> i64 {
    ts.div_euclid(INTERVAL_S) * INTERVAL_S
}

/// One 15-minute period of one meter, as the store aggregates it.
///
/// Energies are the meter's register increase attributed to the period (docs/storage.md), in
/// watt-hours; a period without readings has no `Interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Interval {
    /// Start of the period, Unix seconds (a multiple of [`INTERVAL_S`]).
    pub start: i64,
    /// Active energy imported (delivered to the household, `1-0:1.8.x`) in the period, Wh.
    pub energy_import_wh: i64,
    /// Active energy exported (received from the household, `1-0:2.8.x`) in the period, Wh.
    pub energy_export_wh: i64,
}

impl Interval {
    /// The average import power of the period in kW: its energy divided by 0.25 h.
    pub fn power_import_kw(&self) -> f64 {
        self.energy_import_wh as f64 / 1000.0 / 0.25
    }
}

/// A reporting period: local days or months (Europe/Luxembourg).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// Local calendar days (`2026-11-22`).
    Day,
    /// Local calendar months (`2026-11`).
    Month,
}

/// A time resolution of stored history; written `raw`, `15m`, `hour`, `day`, `month` (in
/// answers, exports and on the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    /// Every stored telegram.
    Raw,
    /// 15-minute periods (the grid tariff's measuring period).
    #[serde(rename = "15m")]
    Min15,
    /// Hours.
    Hour,
    /// Local days (Europe/Luxembourg).
    Day,
    /// Local months.
    Month,
}

impl Resolution {
    /// Every resolution, finest first.
    pub const ALL: [Resolution; 5] = [
        Resolution::Raw,
        Resolution::Min15,
        Resolution::Hour,
        Resolution::Day,
        Resolution::Month,
    ];

    /// Its name: `raw`, `15m`, `hour`, `day`, `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Raw => "raw",
            Resolution::Min15 => "15m",
            Resolution::Hour => "hour",
            Resolution::Day => "day",
            Resolution::Month => "month",
        }
    }

    /// The resolution named `name` ([`Resolution::as_str`]).
    pub fn from_name(name: &str) -> Option<Resolution> {
        Resolution::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The next coarser resolution, if any.
    pub fn coarser(self) -> Option<Resolution> {
        match self {
            Resolution::Raw => Some(Resolution::Min15),
            Resolution::Min15 => Some(Resolution::Hour),
            Resolution::Hour => Some(Resolution::Day),
            Resolution::Day => Some(Resolution::Month),
            Resolution::Month => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolutions_have_one_name_each() {
        for r in Resolution::ALL {
            assert_eq!(Resolution::from_name(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::json!(r.as_str())
            );
        }
        assert_eq!(Resolution::from_name("minute"), None);
        assert_eq!(interval_start(1_799), 900);
        assert_eq!(interval_start(-1), -900);
    }
}
