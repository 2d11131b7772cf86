//! Units: the one table of the units meters send and specifications give, with how people
//! write them (the API's labels, Home Assistant's `unit_of_measurement`), how value names
//! write them (`kwh`, `m3`) and how they convert (Wh to kWh, mA to A).

use std::fmt;

/// What a unit measures, by its base unit: units of one base convert into each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Base {
    /// Active energy, Wh.
    WattHour,
    /// Reactive energy, varh.
    VarHour,
    /// Active power, W.
    Watt,
    /// Reactive power, var.
    Var,
    /// Apparent power, VA.
    VoltAmpere,
    /// Voltage, V.
    Volt,
    /// Current, A.
    Ampere,
    /// Frequency, Hz.
    Hertz,
    /// Time, s.
    Second,
    /// Volume, m³.
    CubicMetre,
    /// Energy (heat), J.
    Joule,
}

/// One known unit.
#[derive(Debug, PartialEq)]
pub struct UnitDef {
    /// As value names write it: ASCII letters and digits in lower case (`kwh`, `m3`).
    pub slug: &'static str,
    /// As people write it (`kWh`, `m³`); also Home Assistant's spelling.
    pub symbol: &'static str,
    /// What it measures.
    pub base: Base,
    /// How many base units one of it is (1000 for kWh).
    pub multiple: f64,
    /// The resolution of meters' registers in it, in decimals (3 for kWh: a watt-hour), to
    /// which sums and averages are rounded; `None` for units no meter of the field uses.
    pub decimals: Option<u32>,
}

const fn unit(
    slug: &'static str,
    symbol: &'static str,
    base: Base,
    multiple: f64,
    decimals: Option<u32>,
) -> UnitDef {
    UnitDef {
        slug,
        symbol,
        base,
        multiple,
        decimals,
    }
}

/// Every known unit, by slug (the decimals are the resolution of the meters' registers:
/// kWh, kvarh, kW, kvar, kVA, m³, GJ to 0.001, V to 0.1, A and Hz to 0.01, Wh, varh, W, var,
/// VA and s to 1). Slugs lose the case of a prefix: `mwh`, `mw`, `mvar` are
/// mega (as meters write them: MWh, MW), `mv` and `ma` milli (mV, mA).
pub static UNITS: [UnitDef; 30] = [
    unit("wh", "Wh", Base::WattHour, 1.0, Some(0)),
    unit("kwh", "kWh", Base::WattHour, 1e3, Some(3)),
    unit("mwh", "MWh", Base::WattHour, 1e6, None),
    unit("gwh", "GWh", Base::WattHour, 1e9, None),
    unit("varh", "varh", Base::VarHour, 1.0, Some(0)),
    unit("kvarh", "kvarh", Base::VarHour, 1e3, Some(3)),
    unit("mvarh", "Mvarh", Base::VarHour, 1e6, None),
    unit("w", "W", Base::Watt, 1.0, Some(0)),
    unit("kw", "kW", Base::Watt, 1e3, Some(3)),
    unit("mw", "MW", Base::Watt, 1e6, None),
    unit("gw", "GW", Base::Watt, 1e9, None),
    unit("var", "var", Base::Var, 1.0, Some(0)),
    unit("kvar", "kvar", Base::Var, 1e3, Some(3)),
    unit("mvar", "Mvar", Base::Var, 1e6, None),
    unit("va", "VA", Base::VoltAmpere, 1.0, Some(0)),
    unit("kva", "kVA", Base::VoltAmpere, 1e3, Some(3)),
    unit("mva", "MVA", Base::VoltAmpere, 1e6, None),
    unit("v", "V", Base::Volt, 1.0, Some(1)),
    unit("kv", "kV", Base::Volt, 1e3, None),
    unit("mv", "mV", Base::Volt, 1e-3, None),
    unit("a", "A", Base::Ampere, 1.0, Some(2)),
    unit("ka", "kA", Base::Ampere, 1e3, None),
    unit("ma", "mA", Base::Ampere, 1e-3, None),
    unit("hz", "Hz", Base::Hertz, 1.0, Some(2)),
    unit("s", "s", Base::Second, 1.0, Some(0)),
    unit("m3", "m³", Base::CubicMetre, 1.0, Some(3)),
    unit("gj", "GJ", Base::Joule, 1e9, Some(3)),
    unit("mj", "MJ", Base::Joule, 1e6, None),
    unit("kj", "kJ", Base::Joule, 1e3, None),
    unit("j", "J", Base::Joule, 1.0, None),
];

/// A unit as a meter sends it or a specification gives it: one of [`UNITS`] (whatever the
/// case it was sent in: `KWH` is kWh), or any other text, kept as sent.
#[derive(Clone, PartialEq)]
pub struct Unit(Repr);

#[derive(Clone, PartialEq)]
enum Repr {
    Known(&'static UnitDef),
    Other(Box<str>),
}

/// ASCII letters and digits of `text`, in lower case: how value names write a unit.
fn slug_of(text: &str) -> String {
    text.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl Unit {
    /// The unit written `text` (`kWh`, `KWH`, `m3`, `l/h`).
    pub fn parse(text: &str) -> Unit {
        // The slug on the stack (units are short; a longer text is no known unit).
        let mut slug = [0u8; 16];
        let mut len = 0;
        for b in text.bytes().filter(u8::is_ascii_alphanumeric) {
            if len == slug.len() {
                return Unit(Repr::Other(text.into()));
            }
            slug[len] = b.to_ascii_lowercase();
            len += 1;
        }
        let slug = &slug[..len];
        match UNITS.iter().find(|u| u.slug.as_bytes() == slug) {
            Some(def) => Unit(Repr::Known(def)),
            None => Unit(Repr::Other(text.into())),
        }
    }

    /// The entry of [`UNITS`], when it is a known unit.
    pub fn known(&self) -> Option<&'static UnitDef> {
        match &self.0 {
            Repr::Known(def) => Some(def),
            Repr::Other(_) => None,
        }
    }

    /// As people write it: `kWh`, `m³`, `GJ`; a unit not in [`UNITS`] as sent.
    pub fn symbol(&self) -> &str {
        match &self.0 {
            Repr::Known(def) => def.symbol,
            Repr::Other(text) => text,
        }
    }

    /// As value names write it: `kwh`, `m3`, `lh` (letters and digits, lower case).
    pub fn slug(&self) -> std::borrow::Cow<'static, str> {
        match &self.0 {
            Repr::Known(def) => def.slug.into(),
            Repr::Other(text) => slug_of(text).into(),
        }
    }

    /// The text to build a name with ([`smarty_p1::Name`] writes it as [`Unit::slug`]).
    pub fn as_name_part(&self) -> &str {
        match &self.0 {
            Repr::Known(def) => def.slug,
            Repr::Other(text) => text,
        }
    }

    /// How many of `to` one of this unit is (1000 from kWh to Wh, 0.001 from mA to A); `None`
    /// when they measure different things or either is unknown.
    pub fn factor_to(&self, to: &Unit) -> Option<f64> {
        let (from, to) = (self.known()?, to.known()?);
        (from.base == to.base).then(|| from.multiple / to.multiple)
    }
}

impl fmt::Debug for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unit({})", self.symbol())
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_known_by_their_letters_whatever_the_case() {
        assert_eq!(Unit::parse("kWh").symbol(), "kWh");
        assert_eq!(Unit::parse("KWH").symbol(), "kWh");
        assert_eq!(Unit::parse("m3").symbol(), "m³");
        assert_eq!(Unit::parse("m3").slug(), "m3");
        assert_eq!(Unit::parse("GJ").slug(), "gj");
        // Unknown units are kept as sent, and named by their letters.
        assert_eq!(Unit::parse("l/h").symbol(), "l/h");
        assert_eq!(Unit::parse("l/h").slug(), "lh");
        assert_eq!(Unit::parse("furlong").known(), None);
    }

    #[test]
    fn units_of_one_base_convert() {
        let factor = |from: &str, to: &str| Unit::parse(from).factor_to(&Unit::parse(to));
        assert_eq!(factor("kWh", "Wh"), Some(1000.0));
        assert_eq!(factor("MWh", "kWh"), Some(1000.0));
        assert_eq!(factor("mA", "A"), Some(0.001));
        assert_eq!(factor("kV", "V"), Some(1000.0));
        assert_eq!(factor("m3", "kWh"), None);
        assert_eq!(factor("furlong", "m3"), None);
    }

    #[test]
    fn the_table_has_one_entry_per_slug() {
        for (i, unit) in UNITS.iter().enumerate() {
            assert_eq!(Unit::parse(unit.slug).known(), Some(unit));
            if unit.symbol != "m³" {
                assert_eq!(Unit::parse(unit.symbol).known(), Some(unit));
            }
            assert!(
                UNITS[..i].iter().all(|u| u.slug != unit.slug),
                "{} twice",
                unit.slug
            );
        }
    }
}
