//! Value types of P1 data lines: exact decimals, meter timestamps, octet strings.
//!
//! Formats follow DSMR 5.0.2 Table 5-1 and LU113 Table 3.1: `Fn(x,y)` fixed-point decimals,
//! `In` integers, `Sn` octet strings written as hex, and `TST` timestamps `YYMMDDhhmmssX`.

use core::fmt;

use crate::error::ValueError;

/// An exact decimal number as the meter sent it: `mantissa × 10^-scale`.
///
/// The scale is the number of digits the meter wrote after the decimal point, so `00.000`
/// is zero with scale 3, and printing gives `0.000` back. Integers have scale 0.
///
/// # Example
/// ```
/// use smarty_p1::Decimal;
/// let d = Decimal::parse("000006.695").unwrap();
/// assert_eq!((d.mantissa(), d.scale()), (6695, 3));
/// assert_eq!(d.to_string(), "6.695");
/// assert_eq!(d.to_f64(), 6.695);
/// assert_eq!(Decimal::parse("-040").unwrap().to_string(), "-40");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Decimal {
    mantissa: i64,
    scale: u8,
}

/// Powers of ten that fit an `i64`.
const POW10: [i64; 19] = {
    let mut table = [1i64; 19];
    let mut i = 1;
    while i < 19 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

impl Decimal {
    /// The largest scale supported (digits after the point).
    pub const MAX_SCALE: u8 = 18;

    /// Builds `mantissa × 10^-scale`.
    ///
    /// # Panics
    /// When `scale` is over [`Decimal::MAX_SCALE`].
    pub const fn new(mantissa: i64, scale: u8) -> Self {
        assert!(scale <= Self::MAX_SCALE);
        Decimal { mantissa, scale }
    }

    /// Parses `[-+]digits[.digits]`, keeping every digit after the point.
    ///
    /// # Errors
    /// [`ValueError::Number`] when the text is not a decimal number or has more than 18
    /// significant digits.
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        match Self::parse_prefix(text.as_bytes()) {
            Ok((value, used)) if used == text.len() => Ok(value),
            _ => Err(ValueError::Number),
        }
    }

    /// Parses the decimal at the start of `bytes`; returns it and the bytes it took.
    fn parse_prefix(bytes: &[u8]) -> Result<(Self, usize), ValueError> {
        let (negative, mut i) = match bytes.first() {
            Some(b'-') => (true, 1),
            Some(b'+') => (false, 1),
            _ => (false, 0),
        };
        let mut mantissa: i64 = 0;
        let mut digits = 0u32;
        let mut scale: u8 = 0;
        let mut point = false;
        while let Some(&b) = bytes.get(i) {
            let d = b.wrapping_sub(b'0');
            if d <= 9 {
                digits += 1;
                mantissa = if digits <= 18 {
                    mantissa * 10 + i64::from(d)
                } else {
                    mantissa
                        .checked_mul(10)
                        .and_then(|m| m.checked_add(i64::from(d)))
                        .ok_or(ValueError::Number)?
                };
                scale += u8::from(point);
            } else if b == b'.' && !point {
                point = true;
            } else {
                break;
            }
            i += 1;
        }
        if digits == 0 || scale > Self::MAX_SCALE {
            return Err(ValueError::Number);
        }
        let mantissa = if negative { -mantissa } else { mantissa };
        Ok((Decimal { mantissa, scale }, i))
    }

    /// The integer mantissa (the digits without the point).
    pub const fn mantissa(self) -> i64 {
        self.mantissa
    }

    /// Digits after the decimal point.
    pub const fn scale(self) -> u8 {
        self.scale
    }

    /// `true` when the meter sent no decimal point.
    pub const fn is_integer(self) -> bool {
        self.scale == 0
    }

    /// The nearest `f64`. For up to 15 significant digits printing the `f64` with the
    /// shortest round-trip representation gives the same digits back (without trailing zeros).
    pub fn to_f64(self) -> f64 {
        self.mantissa as f64 / POW10[self.scale as usize] as f64
    }

    /// Multiplies by `10^-shift` exactly (for unit conversion, e.g. Wh → kWh is `shift = 3`).
    /// Returns `None` when the result does not fit.
    pub fn shift(self, shift: i8) -> Option<Self> {
        if shift >= 0 {
            let scale = self.scale.checked_add(shift as u8)?;
            (scale <= Self::MAX_SCALE).then_some(Decimal {
                mantissa: self.mantissa,
                scale,
            })
        } else {
            let up = (-shift) as u8;
            if up <= self.scale {
                Some(Decimal {
                    mantissa: self.mantissa,
                    scale: self.scale - up,
                })
            } else {
                let factor = *POW10.get((up - self.scale) as usize)?;
                Some(Decimal {
                    mantissa: self.mantissa.checked_mul(factor)?,
                    scale: 0,
                })
            }
        }
    }

    /// Exact sum, with the larger of both scales. `None` on overflow.
    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let scale = self.scale.max(other.scale);
        let a = self
            .mantissa
            .checked_mul(POW10[(scale - self.scale) as usize])?;
        let b = other
            .mantissa
            .checked_mul(POW10[(scale - other.scale) as usize])?;
        Some(Decimal {
            mantissa: a.checked_add(b)?,
            scale,
        })
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let magnitude = self.mantissa.unsigned_abs();
        if self.mantissa < 0 {
            f.write_str("-")?;
        }
        if self.scale == 0 {
            return write!(f, "{magnitude}");
        }
        let divisor = POW10[self.scale as usize] as u64;
        write!(
            f,
            "{}.{:0width$}",
            magnitude / divisor,
            magnitude % divisor,
            width = self.scale as usize
        )
    }
}

/// A quantity: an exact decimal and the unit the meter sent with it, if any.
///
/// Units are kept exactly as sent (`kWh`, `kwh`, `kvarh`, `m3`, …); early Smarty firmware sends
/// some values without a unit (reference §7.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[allow(
    clippy::exhaustive_structs,
    reason = "a quantity is exactly what the telegram writes, `number*unit`"
)]
pub struct Quantity<'a> {
    /// The number.
    pub value: Decimal,
    /// The unit as sent, `None` when the meter sent none.
    pub unit: Option<&'a str>,
}

impl<'a> Quantity<'a> {
    /// Parses `number[*unit]`. A unit written without the `*` (`001247.747kWh`, sent by some
    /// Belgian meters) is accepted only when it is one of [`Quantity::KNOWN_UNITS`] (in any
    /// letter case): `1EA43311` is a firmware checksum, not 1 of a unit `EA43311`.
    ///
    /// # Errors
    /// [`ValueError::Number`] when the number part is not a decimal, [`ValueError::Unit`] when
    /// the unit is empty or not printable ASCII, or written without `*` and not known.
    ///
    /// # Example
    /// ```
    /// use smarty_p1::Quantity;
    /// let q = Quantity::parse("-040*A").unwrap();
    /// assert_eq!((q.value.to_string(), q.unit), ("-40".into(), Some("A")));
    /// assert_eq!(Quantity::parse("00.007").unwrap().unit, None);
    /// assert_eq!(Quantity::parse("001247.747kWh").unwrap().unit, Some("kWh"));
    /// assert!(Quantity::parse("1EA43311").is_err());
    /// ```
    pub fn parse(text: &'a str) -> Result<Self, ValueError> {
        let (value, end) = Decimal::parse_prefix(text.as_bytes())?;
        let unit = match &text[end..] {
            "" => None,
            rest => {
                let (unit, starred) = match rest.strip_prefix('*') {
                    Some(unit) => (unit, true),
                    None => (rest, false),
                };
                if unit.is_empty()
                    || !unit.as_bytes()[0].is_ascii_alphabetic()
                    || !unit.bytes().all(|b| b.is_ascii_graphic())
                    || (!starred
                        && !Self::KNOWN_UNITS
                            .iter()
                            .any(|known| known.eq_ignore_ascii_case(unit)))
                {
                    return Err(ValueError::Unit);
                }
                Some(unit)
            }
        };
        Ok(Quantity { value, unit })
    }

    /// [`Quantity::parse`] of a text known to be a plain number: 1 to 18 digits with at most
    /// one point, then nothing or `*` and a unit (what the parser's line reader checked), in
    /// one short loop.
    pub(crate) fn parse_plain(text: &'a str) -> Self {
        let bytes = text.as_bytes();
        let mut mantissa: i64 = 0;
        let mut scale: u8 = 0;
        let mut point = false;
        let mut unit = None;
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'0'..=b'9' => {
                    mantissa = mantissa * 10 + i64::from(b - b'0');
                    scale += u8::from(point);
                }
                b'.' => point = true,
                _ => {
                    unit = Some(&text[i + 1..]);
                    break;
                }
            }
        }
        let quantity = Quantity {
            value: Decimal { mantissa, scale },
            unit,
        };
        debug_assert_eq!(Quantity::parse(text), Ok(quantity), "{text:?}");
        quantity
    }

    /// The units a value may carry without the `*` separator: those of energy, power,
    /// voltage, current, frequency, volume, heat and time in P1 telegrams.
    pub const KNOWN_UNITS: [&'static str; 23] = [
        "Wh", "kWh", "MWh", "W", "kW", "MW", "varh", "kvarh", "Mvarh", "var", "kvar", "Mvar",
        "VAh", "kVAh", "VA", "kVA", "V", "A", "Hz", "m3", "GJ", "MJ", "s",
    ];
}

impl fmt::Display for Quantity<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.unit {
            Some(unit) => write!(f, "{} {}", self.value, unit),
            None => write!(f, "{}", self.value),
        }
    }
}

/// A meter timestamp `YYMMDDhhmmssX` (DSMR 5.0.2 Table 5-1 "TST").
///
/// The time is the meter's local time (CET/CEST in Luxembourg, Belgium and the Netherlands);
/// `X` is `S` in summer time (UTC+02:00) and `W` in winter time (UTC+01:00). DSMR 2.2 sends
/// some timestamps without the flag: then [`Timestamp::dst`] is `None` and the offset must be
/// taken from the zone rules by the caller.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[allow(
    clippy::exhaustive_structs,
    reason = "the fields are those of the TST format, `YYMMDDhhmmssX`, fixed by DSMR"
)]
pub struct Timestamp {
    /// Full year (2000–2099).
    pub year: u16,
    /// 1–12.
    pub month: u8,
    /// 1–31.
    pub day: u8,
    /// 0–23.
    pub hour: u8,
    /// 0–59.
    pub minute: u8,
    /// 0–59.
    pub second: u8,
    /// `Some(true)` for `S` (summer time), `Some(false)` for `W`, `None` when not sent.
    pub dst: Option<bool>,
}

impl Timestamp {
    /// Parses `YYMMDDhhmmss` with an optional `S`/`W` flag.
    ///
    /// Placeholder values that meters send for "no time" — impossible dates such as
    /// `632525252525S` (the DLMS "not specified" date printed in decimal), all zeros, or the
    /// factory clock `000101000001W` / `700101010000W` — give `Ok(None)`.
    ///
    /// # Errors
    /// [`ValueError::Timestamp`] when the text is not 12 digits plus an optional `S`/`W`.
    ///
    /// # Example
    /// ```
    /// use smarty_p1::Timestamp;
    /// let t = Timestamp::parse("180130102122W").unwrap().unwrap();
    /// assert_eq!(t.to_string(), "2018-01-30T10:21:22+01:00");
    /// assert_eq!(Timestamp::parse("632525252525S").unwrap(), None);
    /// ```
    pub fn parse(text: &str) -> Result<Option<Self>, ValueError> {
        let bytes = text.as_bytes();
        let dst = match bytes.len() {
            12 => None,
            13 => match bytes[12] {
                b'S' | b's' => Some(true),
                b'W' | b'w' => Some(false),
                _ => return Err(ValueError::Timestamp),
            },
            _ => return Err(ValueError::Timestamp),
        };
        let mut fields = [0u8; 6];
        for (i, field) in fields.iter_mut().enumerate() {
            let (hi, lo) = (bytes[2 * i], bytes[2 * i + 1]);
            if !hi.is_ascii_digit() || !lo.is_ascii_digit() {
                return Err(ValueError::Timestamp);
            }
            *field = (hi - b'0') * 10 + (lo - b'0');
        }
        let [yy, month, day, hour, minute, second] = fields;
        // Factory-default clocks seen on real meters: 2000-01-01 and 1970-01-01 (as "70").
        if (yy == 0 || yy == 70) && month == 1 && day == 1 {
            return Ok(None);
        }
        let year = 2000 + u16::from(yy);
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Ok(None);
        }
        Ok(Some(Timestamp {
            year,
            month,
            day,
            hour,
            minute,
            second,
            dst,
        }))
    }

    /// The UTC offset in minutes that the DST flag gives: 120 for `S`, 60 for `W`.
    pub fn utc_offset_minutes(&self) -> Option<i16> {
        self.dst.map(|summer| if summer { 120 } else { 60 })
    }

    /// Seconds since the Unix epoch, when the offset is known.
    pub fn unix_seconds(&self) -> Option<i64> {
        let offset = i64::from(self.utc_offset_minutes()?) * 60;
        let days = days_from_civil(i64::from(self.year), self.month, self.day);
        Some(
            days * 86_400
                + i64::from(self.hour) * 3600
                + i64::from(self.minute) * 60
                + i64::from(self.second)
                - offset,
        )
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 with the offset when known (`2018-01-30T10:21:22+01:00`), else without one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )?;
        match self.dst {
            Some(true) => f.write_str("+02:00"),
            Some(false) => f.write_str("+01:00"),
            None => Ok(()),
        }
    }
}

const fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

const fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An octet string as sent: hex digits, two per byte (DSMR 5.0.2 §6.5, format `Sn`).
///
/// Used for the meter id `0-0:42.0.0` / `0-0:96.1.1`, M-Bus ids `0-n:96.1.0` and the text
/// messages `0-0:96.13.x`. [`OctetString::text`] decodes it for display.
///
/// # Example
/// ```
/// use smarty_p1::OctetString;
/// let id = OctetString::new("53414731303330373030313134303034").unwrap();
/// assert_eq!(id.text().unwrap(), "SAG1030700114004");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OctetString<'a>(&'a str);

impl<'a> OctetString<'a> {
    /// Wraps hex text.
    ///
    /// # Errors
    /// [`ValueError::Hex`] when the text has an odd length or a non-hex digit.
    pub fn new(hex: &'a str) -> Result<Self, ValueError> {
        if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ValueError::Hex);
        }
        Ok(OctetString(hex))
    }

    /// The hex digits as sent.
    pub fn hex(&self) -> &'a str {
        self.0
    }

    /// `true` for `()`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The decoded bytes.
    pub fn bytes(&self) -> impl Iterator<Item = u8> + 'a {
        self.0
            .as_bytes()
            .chunks_exact(2)
            // Checked in `new`: every pair is two hex digits.
            .map(|pair| crate::hex::byte(pair[0], pair[1]).unwrap_or(0))
    }

    /// The decoded bytes as text when every byte is printable ASCII (spaces allowed;
    /// trailing NULs, which some meters pad with, are dropped). `None` otherwise.
    pub fn text(&self) -> Option<alloc::string::String> {
        let mut out = alloc::string::String::with_capacity(self.0.len() / 2);
        let mut nul_seen = false;
        for byte in self.bytes() {
            match byte {
                0 => nul_seen = true,
                0x20..=0x7e if !nul_seen => out.push(byte as char),
                _ => return None,
            }
        }
        Some(out)
    }

    /// How an identifier is shown: its text ([`OctetString::text`]) when that is printable and
    /// not empty, else the hex digits as sent.
    ///
    /// # Example
    /// ```
    /// use smarty_p1::OctetString;
    /// assert_eq!(OctetString::new("4B414946").unwrap().text_or_hex(), "KAIF");
    /// assert_eq!(OctetString::new("ADC31000").unwrap().text_or_hex(), "ADC31000");
    /// assert_eq!(OctetString::new("0000").unwrap().text_or_hex(), "0000");
    /// ```
    pub fn text_or_hex(&self) -> alloc::string::String {
        match self.text() {
            Some(text) if !text.is_empty() => text,
            _ => alloc::string::String::from(self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn decimals_keep_their_scale() {
        for (text, shown) in [
            ("000006.695", "6.695"),
            ("00.000", "0.000"),
            ("233.0", "233.0"),
            ("-040", "-40"),
            ("00052185.7825309", "52185.7825309"),
            ("0", "0"),
            ("-0.5", "-0.5"),
        ] {
            assert_eq!(Decimal::parse(text).unwrap().to_string(), shown, "{text}");
        }
        for bad in ["", "-", ".", "1.2.3", "1e5", "12a", "9999999999999999999"] {
            assert!(Decimal::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decimal_arithmetic_is_exact() {
        let wh = Decimal::parse("123456").unwrap();
        assert_eq!(wh.shift(3).unwrap().to_string(), "123.456");
        assert_eq!(
            Decimal::parse("1.5")
                .unwrap()
                .shift(-3)
                .unwrap()
                .to_string(),
            "1500"
        );
        let sum = Decimal::parse("3808.351")
            .unwrap()
            .checked_add(Decimal::parse("2948.8").unwrap())
            .unwrap();
        assert_eq!(sum.to_string(), "6757.151");
    }

    #[test]
    fn quantities() {
        let q = Quantity::parse("001247.747kWh").unwrap();
        assert_eq!(q.unit, Some("kWh"));
        assert_eq!(Quantity::parse("0000002451*s").unwrap().unit, Some("s"));
        assert!(Quantity::parse("12*").is_err());
        assert!(Quantity::parse("*kWh").is_err());
        assert!(Quantity::parse("12*3").is_err());
        // Without `*` only a known unit: firmware checksums and ids stay no number.
        assert_eq!(Quantity::parse("000.19A").unwrap().unit, Some("A"));
        assert_eq!(Quantity::parse("12kvarh").unwrap().unit, Some("kvarh"));
        for text in ["1EA43311", "0E9", "1ESY1313002565", "02AB", "7F42"] {
            assert_eq!(Quantity::parse(text), Err(ValueError::Unit), "{text}");
        }
        assert_eq!(Quantity::parse("1*EA").unwrap().unit, Some("EA"));
    }

    #[test]
    fn timestamps() {
        let t = Timestamp::parse("260403175431S").unwrap().unwrap();
        assert_eq!(t.to_string(), "2026-04-03T17:54:31+02:00");
        assert_eq!(t.unix_seconds(), Some(1_775_231_671));
        assert_eq!(Timestamp::parse("000101000001W").unwrap(), None);
        assert_eq!(Timestamp::parse("000000000000W").unwrap(), None);
        assert_eq!(Timestamp::parse("700101010000W").unwrap(), None);
        assert_eq!(Timestamp::parse("230229000000W").unwrap(), None);
        assert!(Timestamp::parse("2304012300").is_err());
        assert!(Timestamp::parse("230401230000X").is_err());
        let naive = Timestamp::parse("161107190000").unwrap().unwrap();
        assert_eq!(naive.dst, None);
        assert_eq!(naive.to_string(), "2016-11-07T19:00:00");
    }

    #[test]
    fn octet_strings() {
        assert!(OctetString::new("4").is_err());
        assert!(OctetString::new("zz").is_err());
        assert_eq!(OctetString::new("").unwrap().text().unwrap(), "");
        assert_eq!(OctetString::new("FF41").unwrap().text(), None);
        assert_eq!(OctetString::new("414200").unwrap().text().unwrap(), "AB");
    }
}
