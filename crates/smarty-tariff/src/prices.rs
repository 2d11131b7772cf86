//! The published prices smarty knows, each period with its sources: the reference powers and
//! their fixed network fees, the network prices within and above the reference power, the
//! meter rental, an example supply offer, the electricity tax, VAT and an example feed-in
//! tariff (docs/tariff.md, "Prices").

use jiff::civil::Date;

/// The prices of one validity period as published: what smarty assumes from `from` on until
/// the next period, where the configuration says nothing else.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Builtin {
    /// The first day (local) the prices hold: `2026-01-01`.
    pub from: &'static str,
    /// Reference powers and their fixed network fee, kW and € per month excluding VAT.
    pub network_fixed_eur_per_month: &'static [(f64, f64)],
    /// Meter rental ("complément à la redevance fixe") for a 40 or 50 A connection, € per
    /// month excluding VAT.
    pub metering_eur_per_month: f64,
    /// Network price per kWh within the reference power, € excluding VAT.
    pub network_price_eur_per_kwh: f64,
    /// Network price per kWh above the reference power, € excluding VAT.
    pub above_reference_price_eur_per_kwh: f64,
    /// An example supply price (Sudstroum TERRA ONLINE), € per kWh excluding VAT.
    pub energy_price_eur_per_kwh: f64,
    /// The same offer's fixed premium (21 € a year), per month.
    pub supplier_fixed_eur_per_month: f64,
    /// Electricity tax for households (category A), € per kWh.
    pub electricity_tax_eur_per_kwh: f64,
    /// Contribution to the compensation mechanism, € per kWh (0: not found in the sources).
    pub compensation_eur_per_kwh: f64,
    /// VAT on electricity.
    pub vat_rate: f64,
    /// An example feed-in tariff, € per kWh.
    pub export_price_eur_per_kwh: f64,
}

/// The reference powers of 2025 and their fixed network fee, € per month excluding VAT
/// (Sudstroum's 2025 price sheet; the same for every operator).
pub const NETWORK_FIXED_2025_EUR_PER_MONTH: [(f64, f64); 8] = [
    (3.0, 11.11),
    (7.0, 19.27),
    (12.0, 29.46),
    (17.0, 39.65),
    (27.0, 60.03),
    (43.0, 92.64),
    (70.0, 147.66),
    (100.0, 208.80),
];

/// The reference powers of 2026 and their fixed network fee, € per month excluding VAT
/// (Sudstroum, "Strom für Privatkunden": the provisional 2026 network tariff).
pub const NETWORK_FIXED_2026_EUR_PER_MONTH: [(f64, f64); 10] = [
    (3.0, 7.42),
    (7.0, 12.84),
    (12.0, 19.61),
    (17.0, 26.39),
    (27.0, 39.94),
    (43.0, 61.62),
    (70.0, 98.20),
    (100.0, 138.85),
    (150.0, 206.60),
    (200.0, 274.35),
];

/// The default reference power, kW: the lowest level, the one SUDenergie's price calculator
/// assumes; with the 2025 prices 7 kW only pays off above roughly 215 kWh a month drawn above
/// 3 kW (docs/tariff.md).
pub const DEFAULT_REFERENCE_POWER_KW: f64 = 3.0;
/// Network price per kWh within the reference power, 2025, € excluding VAT.
pub const NETWORK_PRICE_2025: f64 = 0.0759;
/// Network price per kWh above the reference power, 2025, € excluding VAT.
pub const ABOVE_REFERENCE_PRICE_2025: f64 = 0.1139;
/// Meter rental ("complément à la redevance fixe") for a 40 or 50 A connection, 2025,
/// € per month excluding VAT.
pub const METERING_2025_EUR_PER_MONTH: f64 = 5.90;
/// An example supply price: Sudstroum TERRA ONLINE, 2025, € per kWh.
pub const ENERGY_PRICE_2025: f64 = 0.1329;
/// The same offer's fixed premium, 21 € a year, per month.
pub const SUPPLIER_FIXED_2025_EUR_PER_MONTH: f64 = 1.75;
/// Electricity tax for households (category A), € per kWh, as Sudstroum lists it.
pub const ELECTRICITY_TAX_EUR_PER_KWH: f64 = 0.001;
/// VAT on electricity in Luxembourg.
pub const VAT_RATE: f64 = 0.08;
/// An example feed-in tariff: a PV installation up to 10 kW first injecting in 2022,
/// 150.59 €/MWh for 15 years (RTL, 2 October 2020).
pub const EXPORT_PRICE_EXAMPLE: f64 = 0.15059;

/// The published prices smarty knows, oldest first (docs/tariff.md, "Prices"): 2025 (final,
/// ILR-approved) and 2026 (Sudstroum's provisional network tariff and its 2026 energy price;
/// the electricity tax, the compensation contribution and VAT as in 2025, as no 2026 figure
/// was published).
pub const BUILTIN: [Builtin; 2] = [
    Builtin {
        from: "2025-01-01",
        network_fixed_eur_per_month: &NETWORK_FIXED_2025_EUR_PER_MONTH,
        metering_eur_per_month: METERING_2025_EUR_PER_MONTH,
        network_price_eur_per_kwh: NETWORK_PRICE_2025,
        above_reference_price_eur_per_kwh: ABOVE_REFERENCE_PRICE_2025,
        energy_price_eur_per_kwh: ENERGY_PRICE_2025,
        supplier_fixed_eur_per_month: SUPPLIER_FIXED_2025_EUR_PER_MONTH,
        electricity_tax_eur_per_kwh: ELECTRICITY_TAX_EUR_PER_KWH,
        compensation_eur_per_kwh: 0.0,
        vat_rate: VAT_RATE,
        export_price_eur_per_kwh: EXPORT_PRICE_EXAMPLE,
    },
    Builtin {
        from: "2026-01-01",
        network_fixed_eur_per_month: &NETWORK_FIXED_2026_EUR_PER_MONTH,
        metering_eur_per_month: 5.72,
        network_price_eur_per_kwh: 0.0510,
        above_reference_price_eur_per_kwh: 0.0765,
        energy_price_eur_per_kwh: 0.1229,
        supplier_fixed_eur_per_month: SUPPLIER_FIXED_2025_EUR_PER_MONTH,
        electricity_tax_eur_per_kwh: ELECTRICITY_TAX_EUR_PER_KWH,
        compensation_eur_per_kwh: 0.0,
        vat_rate: VAT_RATE,
        export_price_eur_per_kwh: EXPORT_PRICE_EXAMPLE,
    },
];

impl Builtin {
    /// Its first day.
    pub(crate) fn day(&self) -> Date {
        self.from
            .parse()
            .expect("the built-in periods start on valid dates")
    }

    /// The fixed fees per month for a reference power of its table: network fee, meter
    /// rental and the example supplier's premium; `None` for a power not in the table.
    pub(crate) fn fixed(&self, reference_power_kw: f64) -> Option<f64> {
        self.network_fixed_eur_per_month
            .iter()
            .find(|(kw, _)| *kw == reference_power_kw)
            .map(|(_, fee)| fee + self.metering_eur_per_month + self.supplier_fixed_eur_per_month)
    }

    /// Its value of a price.
    pub(crate) fn price(&self, price: Price, reference_power_kw: f64) -> Option<f64> {
        Some(match price {
            Price::Energy => self.energy_price_eur_per_kwh,
            Price::Network => self.network_price_eur_per_kwh,
            Price::AboveReference => self.above_reference_price_eur_per_kwh,
            Price::ElectricityTax => self.electricity_tax_eur_per_kwh,
            Price::Compensation => self.compensation_eur_per_kwh,
            Price::Fixed => return self.fixed(reference_power_kw),
            Price::Vat => self.vat_rate,
            Price::Export => self.export_price_eur_per_kwh,
        })
    }
}

/// The prices that change over time, in the order of the configuration's price fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Price {
    Energy,
    Network,
    AboveReference,
    ElectricityTax,
    Compensation,
    Fixed,
    Vat,
    Export,
}

/// Every price with the name of its setting, in the order of the configuration's price
/// fields.
pub(crate) const PRICES: [(Price, &str); 8] = [
    (Price::Energy, "energy_price_eur_per_kwh"),
    (Price::Network, "network_price_eur_per_kwh"),
    (Price::AboveReference, "above_reference_price_eur_per_kwh"),
    (Price::ElectricityTax, "electricity_tax_eur_per_kwh"),
    (Price::Compensation, "compensation_eur_per_kwh"),
    (Price::Fixed, "fixed_eur_per_month"),
    (Price::Vat, "vat_rate"),
    (Price::Export, "export_price_eur_per_kwh"),
];
