//! Plain data shared by the store and the analytics: 15-minute intervals and reporting periods.

use serde::{Deserialize, Serialize};

/// The length of a grid-tariff measuring period: 15 minutes, in seconds.
pub const INTERVAL_S: i64 = 900;

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
