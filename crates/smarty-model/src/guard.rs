//! The live reference-power guard: where the current quarter hour stands against the reference
//! power, updated with each telegram, while there is still time to act.
//!
//! Luxembourg's tariff bills the energy of each 15-minute period above `P_ref × 0.25 h` at a
//! higher price (`smarty_tariff::report::above_reference_kwh` over the stored intervals);
//! Belgium's capacity tariff bills the month's highest 15-minute average. The guard is part of
//! the shared model so that every output (MQTT, the web server) can carry its figures. The guard follows the quarter
//! hour in progress as the store will record it, and says how much power may still be drawn:
//!
//! - **The quarter**: the 15-minute period of the telegram's time
//!   ([`interval_start`]: `:00`, `:15`, `:30`, `:45`
//!   local time, DST days included, as the meters' zones are whole hours from UTC).
//! - **Energy so far**: the import register's increase attributed to the quarter exactly as the
//!   store's 15-minute intervals attribute it (docs/storage.md): from the last reading before
//!   the quarter, however long the gap, to the latest. A register that goes backwards (a
//!   replaced meter) starts afresh: at a quarter's first reading the quarter counts from that
//!   value; inside a quarter the drop counts as nothing, never as negative energy. When the
//!   quarter closes, its energy is the store's interval energy ([`Closed`]).
//! - **Average so far** (energy ÷ time since the quarter began), **projected average** at the
//!   end at the present power (`1-0:1.7.0`), and the **headroom**: the power that may still be
//!   drawn, on average, for the rest of the quarter without its average exceeding the reference
//!   power (0 once exceeded).
//! - **Verdict**: [`Verdict::Exceeded`] when the energy so far is over the quarter's allowance
//!   already, [`Verdict::WillExceed`] when the projection is over the reference power (with
//!   hysteresis: it stays until the projection falls [`GuardConfig::hysteresis_kw`] below),
//!   [`Verdict::Fine`] otherwise.
//! - **The month's peak**: the highest quarter-hour average of the local month so far, for the
//!   capacity tariff; and the meter's own demand registers where it sends them (Belgian
//!   e-MUCS `1-0:1.4.0` current average demand, `1-0:1.6.0` the month's maximum).
//! - **Alerts** ([`Alert`]), each at most once per quarter hour: headroom below a threshold,
//!   the projection over the reference power, a new monthly peak.

use jiff::tz::TimeZone;
use serde::Serialize;

use smarty_p1::Obis;

use crate::period::{INTERVAL_S, interval_start};
use crate::time::month_start_after;
use crate::unit::Unit;
use crate::value::TelegramValue;

/// Watt-hours of a quarter hour at 1 kW (1 kW × 0.25 h).
const WH_PER_KW_QUARTER: f64 = 250.0;

/// The guard's settings (`[guard]`).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct GuardConfig {
    /// The reference power, kW (`[tariff] reference_power_kw` in the service).
    pub reference_power_kw: f64,
    /// Alert when the headroom falls below this, kW; `None`: no such alert.
    pub headroom_alert_kw: Option<f64>,
    /// "Will exceed" switches on above the reference power and off only when the projection
    /// falls this far below it, kW: a power hovering at the line does not flap.
    pub hysteresis_kw: f64,
}

impl GuardConfig {
    /// A guard of `reference_power_kw`, with no headroom alert and a hysteresis of 0.2 kW.
    ///
    /// # Example
    /// ```
    /// let config = smarty_model::guard::GuardConfig::new(7.0).with_headroom_alert_kw(Some(1.0));
    /// assert_eq!(config.headroom_alert_kw, Some(1.0));
    /// ```
    pub fn new(reference_power_kw: f64) -> GuardConfig {
        GuardConfig {
            reference_power_kw,
            headroom_alert_kw: None,
            hysteresis_kw: 0.2,
        }
    }

    /// With an alert when the headroom falls below `kw`.
    #[must_use]
    pub fn with_headroom_alert_kw(mut self, kw: Option<f64>) -> GuardConfig {
        self.headroom_alert_kw = kw;
        self
    }

    /// With a hysteresis of `kw` for "will exceed".
    #[must_use]
    pub fn with_hysteresis_kw(mut self, kw: f64) -> GuardConfig {
        self.hysteresis_kw = kw;
        self
    }

    /// The energy a quarter hour may hold before its average exceeds the reference power, Wh.
    pub fn allowance_wh(&self) -> f64 {
        self.reference_power_kw * WH_PER_KW_QUARTER
    }
}

/// What the guard reads of a telegram.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct Reading {
    /// The telegram's time, Unix seconds.
    pub ts: i64,
    /// The import register (`1-0:1.8.0`, or the sum of the tariff registers), Wh.
    pub energy_import_wh: i64,
    /// The import power now (`1-0:1.7.0`), kW; `None` when not sent.
    pub power_import_kw: Option<f64>,
    /// The meter's current average demand (`1-0:1.4.0`, e-MUCS), kW.
    pub demand_kw: Option<f64>,
    /// The meter's maximum demand of the month (`1-0:1.6.0`, e-MUCS), kW.
    pub month_max_demand_kw: Option<f64>,
}

impl Reading {
    /// A reading at `ts` of the import register `energy_import_wh` and the import power.
    pub fn new(ts: i64, energy_import_wh: i64, power_import_kw: Option<f64>) -> Reading {
        Reading {
            ts,
            energy_import_wh,
            power_import_kw,
            ..Reading::default()
        }
    }

    /// With the meter's demand registers (`1-0:1.4.0`, `1-0:1.6.0`).
    #[must_use]
    pub fn with_demand(mut self, demand_kw: Option<f64>, month_max_kw: Option<f64>) -> Reading {
        self.demand_kw = demand_kw;
        self.month_max_demand_kw = month_max_kw;
        self
    }

    /// With the demand registers found among a telegram's `values` (e-MUCS `1-0:1.4.0` and
    /// `1-0:1.6.0`, converted to kW; absent or in another quantity: `None`).
    ///
    /// # Example
    /// ```
    /// use smarty_model::guard::Reading;
    /// use smarty_model::value::{TelegramValue, ValueData, ValueId};
    /// use smarty_model::unit::Unit;
    /// use smarty_p1::Obis;
    /// let id = ValueId::of_code(Obis::new(1, 0, 1, 4, 0), Unit::parse("kW")).unwrap();
    /// let data = ValueData::Number { value: smarty_p1::Decimal::new(2345, 3), captured: None };
    /// let values = [TelegramValue::new(id, "1-0:1.4.0".into(), data)];
    /// let reading = Reading::new(0, 0, None).with_demand_of(&values);
    /// assert_eq!(reading.demand_kw, Some(2.345));
    /// assert_eq!(reading.month_max_demand_kw, None);
    /// ```
    #[must_use]
    pub fn with_demand_of(self, values: &[TelegramValue]) -> Reading {
        let kw = Unit::parse("kW");
        let find = |obis: Obis| {
            values.iter().find(|v| v.id.obis() == obis).and_then(|v| {
                let factor = match v.id.unit() {
                    Some(unit) => unit.factor_to(&kw)?,
                    None => 1.0,
                };
                Some(v.data.number()? * factor)
            })
        };
        self.with_demand(find(AVERAGE_DEMAND), find(MONTH_MAX_DEMAND))
    }
}

/// The e-MUCS current average demand, `1-0:1.4.0`.
const AVERAGE_DEMAND: Obis = Obis::new(1, 0, 1, 4, 0);
/// The e-MUCS maximum demand of the running month, `1-0:1.6.0`.
const MONTH_MAX_DEMAND: Obis = Obis::new(1, 0, 1, 6, 0);

/// Where the quarter hour stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// The projection stays within the reference power.
    Fine,
    /// At the present power the quarter's average will exceed the reference power.
    WillExceed,
    /// The quarter's energy is over its allowance already.
    Exceeded,
}

impl Verdict {
    /// `"fine"`, `"will_exceed"` or `"exceeded"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Fine => "fine",
            Verdict::WillExceed => "will_exceed",
            Verdict::Exceeded => "exceeded",
        }
    }
}

/// The guard's figures after a reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GuardState {
    /// Start of the quarter hour, Unix seconds.
    pub quarter_start: i64,
    /// Its end, Unix seconds.
    pub quarter_end: i64,
    /// The time of the reading, Unix seconds.
    pub at: i64,
    /// Energy imported in the quarter so far, Wh.
    pub energy_import_wh: i64,
    /// Average import power since the quarter began, kW.
    pub average_power_kw: f64,
    /// The quarter's average at its end if the present power holds, kW.
    pub projected_average_kw: f64,
    /// The average power that may still be drawn until the quarter's end without exceeding
    /// the reference power, kW (0 once exceeded).
    pub headroom_kw: f64,
    /// The reference power, kW.
    pub reference_power_kw: f64,
    /// The verdict.
    pub verdict: Verdict,
    /// The highest quarter-hour average of the local month so far (the quarter in progress
    /// counted with its energy so far), kW; `None` before the month's first quarter.
    pub month_peak_kw: Option<f64>,
    /// Start of that quarter, Unix seconds.
    pub month_peak_start: Option<i64>,
    /// The meter's current average demand (`1-0:1.4.0`), kW, where it sends it.
    pub meter_demand_kw: Option<f64>,
    /// The meter's maximum demand of the month (`1-0:1.6.0`), kW, where it sends it.
    pub meter_month_max_demand_kw: Option<f64>,
}

/// A threshold crossed; each kind at most once per quarter hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Alert {
    /// The headroom fell below [`GuardConfig::headroom_alert_kw`].
    HeadroomLow {
        /// The headroom, kW.
        headroom_kw: f64,
        /// The threshold, kW.
        threshold_kw: f64,
    },
    /// The projection went over the reference power (or the quarter exceeded it).
    WillExceed {
        /// The projected average, kW.
        projected_average_kw: f64,
        /// The reference power, kW.
        reference_power_kw: f64,
    },
    /// The quarter in progress went over the month's highest quarter so far.
    NewMonthlyPeak {
        /// The quarter's average with its energy so far, kW.
        peak_kw: f64,
        /// The month's peak before it, kW.
        previous_kw: f64,
    },
}

impl Alert {
    /// The kind, as in JSON and topics: `headroom_low`, `will_exceed`, `new_monthly_peak`.
    pub fn kind(&self) -> &'static str {
        match self {
            Alert::HeadroomLow { .. } => "headroom_low",
            Alert::WillExceed { .. } => "will_exceed",
            Alert::NewMonthlyPeak { .. } => "new_monthly_peak",
        }
    }

    /// A one-line title for a notification: `Smarty home: headroom 0.8 kW`.
    pub fn title(&self, meter: &str) -> String {
        match self {
            Alert::HeadroomLow { headroom_kw, .. } => {
                format!("Smarty {meter}: headroom {headroom_kw:.1} kW")
            }
            Alert::WillExceed { .. } => format!("Smarty {meter}: reference power will be exceeded"),
            Alert::NewMonthlyPeak { peak_kw, .. } => {
                format!("Smarty {meter}: new monthly peak {peak_kw:.2} kW")
            }
        }
    }

    /// The notification text, with the figures: what happened and what it means.
    ///
    /// # Example
    /// ```
    /// use smarty_model::guard::Alert;
    /// let alert = Alert::HeadroomLow { headroom_kw: 0.84, threshold_kw: 1.0 };
    /// assert_eq!(
    ///     alert.message(),
    ///     "Only 0.84 kW may still be drawn on average until the quarter hour ends \
    ///      (alert below 1.00 kW)."
    /// );
    /// ```
    pub fn message(&self) -> String {
        match self {
            Alert::HeadroomLow {
                headroom_kw,
                threshold_kw,
            } => format!(
                "Only {headroom_kw:.2} kW may still be drawn on average until the quarter hour \
                 ends (alert below {threshold_kw:.2} kW)."
            ),
            Alert::WillExceed {
                projected_average_kw,
                reference_power_kw,
            } => format!(
                "At the present power this quarter hour averages {projected_average_kw:.2} kW, \
                 above the reference power of {reference_power_kw:.2} kW."
            ),
            Alert::NewMonthlyPeak {
                peak_kw,
                previous_kw,
            } => format!(
                "This quarter hour reached {peak_kw:.2} kW, above the month's highest so far \
                 ({previous_kw:.2} kW)."
            ),
        }
    }
}

/// A quarter hour that ended: its energy as the store's 15-minute interval records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Closed {
    /// Start of the quarter, Unix seconds.
    pub start: i64,
    /// Energy imported in it, Wh.
    pub energy_import_wh: i64,
}

/// What a reading gave.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Update {
    /// The figures now.
    pub state: GuardState,
    /// Thresholds crossed by this reading.
    pub alerts: Vec<Alert>,
    /// The quarter that this reading closed, when it is the first of a new one.
    pub closed: Option<Closed>,
}

/// The guard of one meter. Feed it every telegram's [`Reading`] in order.
///
/// # Example
/// ```
/// use smarty_model::guard::{Guard, GuardConfig, Reading, Verdict};
/// let mut guard = Guard::new(GuardConfig::new(3.0), jiff::tz::TimeZone::UTC);
/// let start = 1_767_225_600; // 2026-01-01 00:00 UTC, a quarter's start
/// guard.update(&Reading::new(start - 10, 1_000_000, Some(0.4)));
/// // Five minutes in, 250 Wh drawn (3 kW on average), 5 kW now.
/// let update = guard.update(&Reading::new(start + 300, 1_000_250, Some(5.0)));
/// let s = update.state;
/// assert_eq!(s.energy_import_wh, 250);
/// assert_eq!(s.verdict, Verdict::WillExceed);
/// // 750 Wh allowed in the quarter, 500 Wh left for 10 minutes: 3 kW.
/// assert!((s.headroom_kw - 3.0).abs() < 1e-9);
/// ```
#[derive(Debug, Clone)]
pub struct Guard {
    config: GuardConfig,
    zone: TimeZone,
    /// The last reading's time and import register.
    last: Option<(i64, i64)>,
    quarter_start: i64,
    /// The register the quarter's energy counts from.
    reference: i64,
    /// The quarter's energy so far.
    energy_wh: i64,
    will_exceed: bool,
    /// Alerts given in this quarter: headroom, will exceed, monthly peak.
    alerted: [bool; 3],
    /// Start of the month of the peak, the peak's energy (Wh) and its quarter's start.
    month: Option<(i64, i64, i64)>,
}

impl Guard {
    /// A guard with `config`, months taken in `zone` (the meters' zone,
    /// [`meter_zone`](crate::time::meter_zone)).
    pub fn new(config: GuardConfig, zone: TimeZone) -> Guard {
        Guard {
            config,
            zone,
            last: None,
            quarter_start: i64::MIN,
            reference: 0,
            energy_wh: 0,
            will_exceed: false,
            alerted: [false; 3],
            month: None,
        }
    }

    /// Counts a quarter hour that closed before the guard started (the store's interval of
    /// `start` holding `energy_import_wh`) towards the month's peak: a service that restarts
    /// mid-month keeps the peak it had. Quarters of another month than the latest given are
    /// ignored.
    ///
    /// # Example
    /// ```
    /// use smarty_model::guard::{Guard, GuardConfig, Reading};
    /// let mut guard = Guard::new(GuardConfig::new(7.0), jiff::tz::TimeZone::UTC);
    /// let start = 1_767_225_600; // 2026-01-01 00:00 UTC
    /// guard.note_closed(start, 1_500); // 6 kW on average
    /// let update = guard.update(&Reading::new(start + 3600, 5_000_000, Some(1.0)));
    /// assert_eq!(update.state.month_peak_kw, Some(6.0));
    /// ```
    pub fn note_closed(&mut self, start: i64, energy_import_wh: i64) {
        self.note_peak(start, energy_import_wh);
    }

    /// Resumes where a stopped guard was (a restart): the last reading at `last_ts` read
    /// `register_wh`, and the quarter hour holding it had `quarter_energy_wh` so far (the
    /// store's interval). The next reading then adds its increase since that one, as the
    /// store does. Alerts of that quarter may be given again.
    ///
    /// # Example
    /// ```
    /// use smarty_model::guard::{Guard, GuardConfig, Reading};
    /// let mut guard = Guard::new(GuardConfig::new(7.0), jiff::tz::TimeZone::UTC);
    /// let start = 1_767_225_600; // 2026-01-01 00:00 UTC
    /// guard.resume(start + 300, 2_000_000, 400);
    /// let update = guard.update(&Reading::new(start + 310, 2_000_010, Some(3.6)));
    /// assert_eq!(update.state.energy_import_wh, 410);
    /// ```
    pub fn resume(&mut self, last_ts: i64, register_wh: i64, quarter_energy_wh: i64) {
        self.last = Some((last_ts, register_wh));
        self.quarter_start = interval_start(last_ts);
        self.energy_wh = quarter_energy_wh.max(0);
        self.reference = register_wh - self.energy_wh;
        self.will_exceed = false;
        self.alerted = [false; 3];
    }

    /// Takes the next reading. A reading older than the last one is ignored (its figures are
    /// those of the last).
    pub fn update(&mut self, reading: &Reading) -> Update {
        let mut closed = None;
        let quarter = interval_start(reading.ts);
        if let Some((last_ts, _)) = self.last
            && reading.ts < last_ts
        {
            return Update {
                state: self.state(last_ts, reading),
                alerts: Vec::new(),
                closed: None,
            };
        }
        if quarter != self.quarter_start {
            if self.last.is_some() && self.quarter_start != i64::MIN {
                closed = Some(Closed {
                    start: self.quarter_start,
                    energy_import_wh: self.energy_wh,
                });
                self.note_peak(self.quarter_start, self.energy_wh);
            }
            self.quarter_start = quarter;
            // The quarter counts from the last register before it; from its own first
            // value when there is none, or the register went backwards (a replaced meter).
            self.reference = match self.last {
                Some((_, before)) if reading.energy_import_wh >= before => before,
                _ => reading.energy_import_wh,
            };
            self.will_exceed = false;
            self.alerted = [false; 3];
        }
        // As the store: a drop inside the quarter counts as nothing, never as negative energy.
        self.energy_wh = (reading.energy_import_wh - self.reference).max(0);
        self.last = Some((reading.ts, reading.energy_import_wh));
        let previous_peak = self.peak_of_month(quarter);
        let state = self.state(reading.ts, reading);
        let mut alerts = Vec::new();
        if let Some(threshold_kw) = self.config.headroom_alert_kw
            && state.headroom_kw < threshold_kw
            && !std::mem::replace(&mut self.alerted[0], true)
        {
            alerts.push(Alert::HeadroomLow {
                headroom_kw: state.headroom_kw,
                threshold_kw,
            });
        }
        if state.verdict != Verdict::Fine && !std::mem::replace(&mut self.alerted[1], true) {
            alerts.push(Alert::WillExceed {
                projected_average_kw: state.projected_average_kw,
                reference_power_kw: self.config.reference_power_kw,
            });
        }
        if let Some((previous_wh, _)) = previous_peak
            && self.energy_wh > previous_wh
            && !std::mem::replace(&mut self.alerted[2], true)
        {
            alerts.push(Alert::NewMonthlyPeak {
                peak_kw: self.energy_wh as f64 / WH_PER_KW_QUARTER,
                previous_kw: previous_wh as f64 / WH_PER_KW_QUARTER,
            });
        }
        Update {
            state,
            alerts,
            closed,
        }
    }

    /// The figures at `at` (the last reading's time) with the power of `reading`.
    fn state(&mut self, at: i64, reading: &Reading) -> GuardState {
        let quarter_end = self.quarter_start + INTERVAL_S;
        let elapsed_h = (at - self.quarter_start) as f64 / 3600.0;
        let remaining_h = (quarter_end - at) as f64 / 3600.0;
        let energy_kwh = self.energy_wh as f64 / 1000.0;
        let average_power_kw = if elapsed_h > 0.0 {
            energy_kwh / elapsed_h
        } else {
            reading.power_import_kw.unwrap_or(0.0)
        };
        let power_kw = reading.power_import_kw.unwrap_or(average_power_kw).max(0.0);
        let projected_average_kw = (energy_kwh + power_kw * remaining_h) / 0.25;
        let allowance_wh = self.config.allowance_wh();
        let left_kwh = (allowance_wh - self.energy_wh as f64) / 1000.0;
        let headroom_kw = if left_kwh <= 0.0 {
            0.0
        } else if remaining_h > 0.0 {
            left_kwh / remaining_h
        } else {
            f64::INFINITY
        };
        let reference = self.config.reference_power_kw;
        self.will_exceed = if self.will_exceed {
            projected_average_kw > reference - self.config.hysteresis_kw
        } else {
            projected_average_kw > reference
        };
        let verdict = if self.energy_wh as f64 > allowance_wh {
            Verdict::Exceeded
        } else if self.will_exceed {
            Verdict::WillExceed
        } else {
            Verdict::Fine
        };
        let peak = self.peak_of_month(self.quarter_start);
        let (month_peak_kw, month_peak_start) = match peak {
            Some((wh, start)) if wh >= self.energy_wh => {
                (Some(wh as f64 / WH_PER_KW_QUARTER), Some(start))
            }
            _ => (
                Some(self.energy_wh as f64 / WH_PER_KW_QUARTER),
                Some(self.quarter_start),
            ),
        };
        GuardState {
            quarter_start: self.quarter_start,
            quarter_end,
            at,
            energy_import_wh: self.energy_wh,
            average_power_kw,
            projected_average_kw,
            headroom_kw,
            reference_power_kw: reference,
            verdict,
            month_peak_kw,
            month_peak_start,
            meter_demand_kw: reading.demand_kw,
            meter_month_max_demand_kw: reading.month_max_demand_kw,
        }
    }

    /// The start of the local month holding `ts`.
    fn month_of(&self, ts: i64) -> i64 {
        month_start_after(ts, 0, &self.zone)
    }

    /// The month's peak (energy, quarter start) of closed quarters, for the month of `quarter`.
    fn peak_of_month(&self, quarter: i64) -> Option<(i64, i64)> {
        let month = self.month_of(quarter);
        self.month
            .filter(|&(m, _, _)| m == month)
            .map(|(_, wh, start)| (wh, start))
    }

    fn note_peak(&mut self, quarter: i64, energy_wh: i64) {
        let month = self.month_of(quarter);
        match self.month {
            Some((m, wh, _)) if m > month || (m == month && wh >= energy_wh) => {}
            _ => self.month = Some((month, energy_wh, quarter)),
        }
    }
}

#[cfg(test)]
mod tests;
