//! Hex text, both ways: the crate's one hex decoder (keys, AADs and captures as text, octet
//! strings, the CRC after `!`) and an encoder that writes through [`core::fmt`], so it needs
//! no allocation.
//!
//! # Example
//! ```
//! use smarty_p1::hex;
//! let bytes = hex::decode("0x DB:08 53-41").unwrap();
//! assert_eq!(bytes, [0xDB, 0x08, 0x53, 0x41]);
//! assert_eq!(hex::upper(&bytes).to_string(), "DB085341");
//! assert_eq!(hex::digit(b'e'), Some(14));
//! ```

use alloc::vec::Vec;
use core::fmt::{self, Write as _};

use crate::error::HexError;

/// The value (0–15) of the hex digit `byte` (`0-9`, `a-f` or `A-F`); `None` for any other
/// byte.
#[inline]
pub const fn digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The byte that the two hex digits `high` and `low` write; `None` unless both are hex
/// digits.
#[inline]
pub const fn byte(high: u8, low: u8) -> Option<u8> {
    match (digit(high), digit(low)) {
        (Some(high), Some(low)) => Some((high << 4) | low),
        _ => None,
    }
}

/// Decodes hex text as people paste it: surrounding whitespace, a leading `0x`, and spaces,
/// tabs, line breaks, `:` and `-` between the digits are ignored; digits may be upper or lower
/// case.
///
/// # Errors
/// [`HexError::NotHex`] naming the first character that is neither a hex digit nor a
/// separator (with its 1-based position in `text`), or [`HexError::OddLength`].
pub fn decode(text: &str) -> Result<Vec<u8>, HexError> {
    let trimmed = text.trim();
    let (offset, body) = match trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
    {
        Some(rest) => (text.len() - rest.len(), rest),
        None => (text.len() - text.trim_start().len(), trimmed),
    };
    let mut out = Vec::with_capacity(body.len() / 2);
    let mut high: Option<u8> = None;
    let mut digits = 0;
    for (i, c) in body.char_indices() {
        match c {
            ' ' | '\t' | ':' | '-' | '\n' | '\r' => continue,
            _ => {}
        }
        let Some(value) = u8::try_from(c).ok().and_then(digit) else {
            return Err(HexError::NotHex {
                found: c,
                position: text[..offset + i].chars().count() + 1,
            });
        };
        digits += 1;
        match high.take() {
            Some(high) => out.push((high << 4) | value),
            None => high = Some(value),
        }
    }
    if high.is_some() {
        return Err(HexError::OddLength(digits));
    }
    Ok(out)
}

/// Shows `bytes` as uppercase hex digits, two per byte, without separators: `DB08…`. Writes
/// through [`fmt::Display`], so `to_string()`, `format!` and `write!` into a buffer all work
/// and nothing is allocated on the way.
pub const fn upper(bytes: &[u8]) -> Upper<'_> {
    Upper(bytes)
}

/// Bytes shown as uppercase hex digits; see [`upper`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Upper<'a>(&'a [u8]);

impl fmt::Display for Upper<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        for &b in self.0 {
            f.write_char(char::from(DIGITS[usize::from(b >> 4)]))?;
            f.write_char(char::from(DIGITS[usize::from(b & 0x0F)]))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn digits_of_every_case_and_nothing_else() {
        for (i, c) in (b'0'..=b'9').chain(b'A'..=b'F').enumerate() {
            assert_eq!(digit(c), Some(i as u8));
            assert_eq!(digit(c.to_ascii_lowercase()), Some(i as u8));
        }
        for c in [b'g', b'G', b' ', b'/', b':', b'@', b'`', 0x00, 0xFF] {
            assert_eq!(digit(c), None, "{c}");
        }
        assert_eq!(byte(b'd', b'B'), Some(0xDB));
        assert_eq!(byte(b'd', b'x'), None);
    }

    #[test]
    fn decode_skips_separators_and_names_the_bad_character() {
        assert_eq!(decode(" 0xdb08 \n").unwrap(), vec![0xDB, 0x08]);
        assert_eq!(
            decode("DB:08-53 41\t0A\r\n").unwrap(),
            vec![0xDB, 8, 0x53, 0x41, 10]
        );
        assert_eq!(decode("").unwrap(), vec![]);
        assert_eq!(
            decode("  DB0Z"),
            Err(HexError::NotHex {
                found: 'Z',
                position: 6
            })
        );
        assert_eq!(
            decode("0xé1"),
            Err(HexError::NotHex {
                found: 'é',
                position: 3
            })
        );
        assert_eq!(decode("DB 0"), Err(HexError::OddLength(3)));
    }

    #[test]
    fn upper_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = upper(&bytes).to_string();
        assert_eq!(&text[..6], "000102");
        assert_eq!(&text[text.len() - 4..], "FEFF");
        assert_eq!(decode(&text).unwrap(), bytes);
    }
}
