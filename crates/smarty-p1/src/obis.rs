//! OBIS codes as they appear on P1 data lines.
//!
//! An OBIS code (IEC 62056-61) names a COSEM object with six value groups `A-B:C.D.E.F`.
//! P1 telegrams write the first five as `A-B:C.D.E` (DSMR 5.0.2 §6.9); group F is always 255
//! and left out, although some meters append it as `*255` (EasyMeter, Itron ACE4000).

use core::fmt;

/// An OBIS code `A-B:C.D.E` (group F is implied to be 255 on P1 and not stored).
///
/// Group A is the medium (0 abstract, 1 electricity, 7 gas, …), B the channel (for P1: the
/// M-Bus channel 1–4 of a sub-meter, or 0), C the quantity, D the processing, E the tariff or
/// classification.
///
/// # Example
/// ```
/// use smarty_p1::Obis;
/// let (code, len) = Obis::parse_prefix(b"1-0:1.8.0(000006.695*kWh)").unwrap();
/// assert_eq!(code, Obis::new(1, 0, 1, 8, 0));
/// assert_eq!(len, 9);
/// assert_eq!(code.to_string(), "1-0:1.8.0");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[allow(
    clippy::exhaustive_structs,
    reason = "an OBIS code in a telegram is exactly these five groups, A-B:C.D.E (group F is never sent)"
)]
pub struct Obis {
    /// Group A: medium.
    pub a: u8,
    /// Group B: channel.
    pub b: u8,
    /// Group C: quantity.
    pub c: u8,
    /// Group D: processing.
    pub d: u8,
    /// Group E: tariff or classification.
    pub e: u8,
}

impl Obis {
    /// Builds a code from its five groups.
    pub const fn new(a: u8, b: u8, c: u8, d: u8, e: u8) -> Self {
        Obis { a, b, c, d, e }
    }

    /// Packs the code into one integer (A in the highest byte); used for ordering and lookup.
    pub const fn key(self) -> u64 {
        ((self.a as u64) << 32)
            | ((self.b as u64) << 24)
            | ((self.c as u64) << 16)
            | ((self.d as u64) << 8)
            | self.e as u64
    }

    /// Parses `A-B:C.D.E` at the start of `line`, with an optional `*255` or `.255` group F.
    ///
    /// Returns the code and the number of bytes it took (the length of the code as sent,
    /// without any group F suffix is `text_len`; see [`Obis::parse_prefix_full`]).
    /// Returns `None` when the line does not start with an OBIS code.
    pub fn parse_prefix(line: &[u8]) -> Option<(Obis, usize)> {
        Self::parse_prefix_full(line).map(|(obis, text_len, _)| (obis, text_len))
    }

    /// Like [`Obis::parse_prefix`], returning `(code, length of A-B:C.D.E, total length
    /// including a `*F` suffix)`.
    pub fn parse_prefix_full(line: &[u8]) -> Option<(Obis, usize, usize)> {
        // Groups A and B are single digits on every P1 line: `1-0:`, `0-1:`.
        let (a, b, mut pos) = match line {
            [a @ b'0'..=b'9', b'-', b @ b'0'..=b'9', b':', ..] => (a - b'0', b - b'0', 4),
            _ => {
                let mut pos = 0;
                let a = group(line, &mut pos, b'-')?;
                let b = group(line, &mut pos, b':')?;
                (a, b, pos)
            }
        };
        let c = group(line, &mut pos, b'.')?;
        let d = group(line, &mut pos, b'.')?;
        let e = last_group(line, &mut pos)?;
        let text_len = pos;
        // Optional group F, written `*255` (or `.255`, rarely).
        if let Some(&sep) = line.get(pos)
            && (sep == b'*' || sep == b'.')
            && let Some((_, used)) = parse_group(&line[pos + 1..])
        {
            pos += 1 + used;
        }
        Some((Obis { a, b, c, d, e }, text_len, pos))
    }
}

/// A digit at `pos`, if there is one.
#[inline(always)]
fn digit_at(line: &[u8], pos: usize) -> Option<u8> {
    let d = line.get(pos)?.wrapping_sub(b'0');
    (d < 10).then_some(d)
}

/// One to three digits (0..=255) at `*pos`, without the separator; advances `pos`.
#[inline(always)]
fn last_group(line: &[u8], pos: &mut usize) -> Option<u8> {
    let mut value = u16::from(digit_at(line, *pos)?);
    *pos += 1;
    if let Some(d) = digit_at(line, *pos) {
        value = value * 10 + u16::from(d);
        *pos += 1;
        if let Some(d) = digit_at(line, *pos) {
            value = value * 10 + u16::from(d);
            *pos += 1;
            if digit_at(line, *pos).is_some() {
                return None;
            }
        }
    }
    u8::try_from(value).ok()
}

/// [`last_group`] followed by the separator `sep`.
#[inline(always)]
fn group(line: &[u8], pos: &mut usize, sep: u8) -> Option<u8> {
    let value = last_group(line, pos)?;
    if line.get(*pos) != Some(&sep) {
        return None;
    }
    *pos += 1;
    Some(value)
}

/// Parses one decimal group value 0..=255 (1 to 3 digits).
fn parse_group(s: &[u8]) -> Option<(u8, usize)> {
    let mut value: u16 = 0;
    let mut used = 0;
    while used < 3 {
        match s.get(used) {
            Some(&d) if d.is_ascii_digit() => {
                value = value * 10 + u16::from(d - b'0');
                used += 1;
            }
            _ => break,
        }
    }
    if used == 0 || value > 255 || s.get(used).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    Some((value as u8, used))
}

impl fmt::Display for Obis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}:{}.{}.{}", self.a, self.b, self.c, self.d, self.e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn parses_codes_and_suffixes() {
        assert_eq!(
            Obis::parse_prefix_full(b"1-0:1.8.0*255(1)"),
            Some((Obis::new(1, 0, 1, 8, 0), 9, 13))
        );
        assert_eq!(
            Obis::parse_prefix(b"0-0:96.1.255*255(x)"),
            Some((Obis::new(0, 0, 96, 1, 255), 12))
        );
        assert_eq!(
            Obis::parse_prefix(b"1-1:31.4.0(040*A)"),
            Some((Obis::new(1, 1, 31, 4, 0), 10))
        );
        assert_eq!(Obis::parse_prefix(b"(13032.850)"), None);
        assert_eq!(Obis::parse_prefix(b"1-0:1.8"), None);
        assert_eq!(Obis::parse_prefix(b"1-0:1.8.256()"), None);
        assert_eq!(Obis::parse_prefix(b"1-0:1.8.1234()"), None);
        assert_eq!(Obis::new(0, 1, 24, 2, 1).to_string(), "0-1:24.2.1");
    }
}
