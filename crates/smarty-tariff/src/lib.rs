//! `smarty-tariff`: Luxembourg's low-voltage grid tariff (since 1 January 2025) applied to the
//! stored 15-minute intervals: energy within and above the reference power, and what it costs.
//!
//! # The rules (docs/tariff.md has them in full, with every source)
//!
//! Since 1 January 2025 the network part of a Luxembourg electricity bill has a fixed monthly
//! fee that depends on the household's *reference power* (3, 7, 12, 17, 27, 43, 70 or 100 kW),
//! a price per kWh for all energy drawn, and a higher price per kWh for the energy drawn above
//! the reference power (Creos, "New tariff structure",
//! <https://www.creos-net.lu/en/individuals/practical-info/new-tariff-structure>; Sudstroum's
//! 2025 price sheet, <https://www.sudstroum.lu/de/produkte/strom-fur-geschaftskunden>). The ILR sets one network
//! tariff for every operator at the same voltage level (myilr.lu FAQ). The operators assign the
//! reference power from the consumption history and check it every month
//! (<https://www.myilr.lu/questions/comment-connaitre-ma-categorie-mon-niveau-de-puissance-de-reference/>).
//!
//! smarty measures the overrun on the 15-minute periods of the store
//! ([`INTERVAL_S`](smarty_model::period::INTERVAL_S)): the energy of a period above
//! `P_ref × 0.25 h` ([`above_reference_kwh`]). Energy drawn above the
//! reference power is billed at the above-reference price *instead of* the network price:
//! 0.1139 against 0.0759 €/kWh in 2025, "50 % more per kilowatt-hour" (Paperjam,
//! <https://en.paperjam.lu/article/electricity-consumption-overru>). Sudstroum's sheet calls
//! the higher price a "Zuschlag" (surcharge); docs/tariff.md says how to configure the other
//! reading.
//!
//! # Prices change: validity periods
//!
//! Prices hold from a date on ([`BUILTIN`]: 2025, and Sudstroum's provisional 2026 network
//! prices, <https://www.sudstroum.lu/de/produkte/strom-fur-privatkunden>). Each day of a report
//! is priced with the prices in force that day ([`TariffConfig::schedule`]); the
//! configuration may override any price for the whole history (`[tariff]`) or from a date on
//! (`[[tariff.periods]]`).
//!
//! # What is computed
//!
//! - Energies are register differences per 15 minutes (exact watt-hours), shown in kWh with
//!   three decimals (exact); powers in kW with three decimals; money in the configured currency
//!   rounded to cents, each component separately, the totals as the sum of the rounded parts.
//! - Costs include VAT, except the export remuneration.
//! - The fixed monthly fee accrues per local day that has at least one interval: a day gets
//!   `monthly / days in its month`; a month row the sum of its days (the full fee when every
//!   day has data, a prorated fee for the current or a partial month).
//! - Days and months are local (Europe/Luxembourg): a DST day has 92 or 100 intervals.

//!
//! # Where
//!
//! | module | what |
//! |---|---|
//! | [`prices`] | the published prices, each period with its sources ([`BUILTIN`]) |
//! | [`config`] | the `[tariff]` section, its check and the prices in force over time |
//! | [`report`](mod@report) | the report per day or month, and the dashboard's summaries |
//!
//! It depends on `smarty-model` (intervals, periods, the meters' zone), serde and jiff: it
//! reads nothing and keeps nothing, the store hands it the intervals.

pub mod config;
pub mod prices;
pub mod report;

pub use config::{PricePeriod, Prices, TariffConfig, TariffError, TariffPeriod};
pub use prices::{BUILTIN, Builtin};
pub use report::{
    Cost, PeriodSummary, TariffFigures, TariffReport, TariffRow, above_reference_kwh, report,
    summarize,
};

#[cfg(test)]
mod tests;
