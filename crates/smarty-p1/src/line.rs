//! The common data line's value: `(…)` then the line end, found and checked in one pass
//! over its bytes, noting on the way whether the group holds a plain number (so that the
//! number need not be converted to know that it fits).
//!
//! A plain byte loop: on fields of 2 to 20 bytes it costs fewer instructions than eight-byte
//! SWAR steps (measured with `bench/instructions.sh`), and it is the same on every target.

/// A line `(…)` + line end, as [`one_group`] found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OneGroup {
    /// The length of `(…)`.
    pub len: usize,
    /// The length of `(…)` with its line end (`\r\n` or `\n`).
    pub next: usize,
    /// The group holds a number that `Quantity::parse` always takes: 1 to 18 digits with at
    /// most one point, then nothing or `*` and a unit (a letter, then printable ASCII).
    /// `false` says nothing about the other values.
    pub plain_number: bool,
}

/// For `rest` starting with `(`: the group up to the first `)`, when no `(` or LF comes before
/// it and the line ends right after it. `None` for every other shape (several groups, text
/// after the group, no line end), which the general path takes.
pub(crate) fn one_group(rest: &[u8]) -> Option<OneGroup> {
    // The number: digits and points.
    let mut i = 1;
    let mut digits = 0u32;
    let mut points = 0u32;
    let mut b = loop {
        let b = *rest.get(i)?;
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' => points += 1,
            _ => break b,
        }
        i += 1;
    };
    let mut plain = (1..=18).contains(&digits) && points <= 1;
    if b == b'*' {
        // The unit: a letter, then printable ASCII.
        i += 1;
        b = *rest.get(i)?;
        plain &= b.is_ascii_alphabetic();
        while !matches!(b, b'(' | b')' | b'\n') {
            plain &= b.is_ascii_graphic();
            i += 1;
            b = *rest.get(i)?;
        }
    } else {
        while !matches!(b, b'(' | b')' | b'\n') {
            plain = false;
            i += 1;
            b = *rest.get(i)?;
        }
    }
    if b != b')' {
        return None;
    }
    let next = match rest.get(i + 1..i + 3) {
        Some([b'\r', b'\n']) => i + 3,
        Some([b'\n', _]) => i + 2,
        _ if rest.get(i + 1) == Some(&b'\n') => i + 2,
        _ => return None,
    };
    Some(OneGroup {
        len: i + 1,
        next,
        plain_number: plain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Quantity;

    /// Against a plain reading of the definition: every group of up to 22 bytes drawn from the bytes
    /// that matter, followed by line ends and padding.
    #[test]
    fn agrees_with_the_byte_by_byte_reading() {
        let alphabet = b"0.9*kWh()\n\r A-m3\x80";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..200_000 {
            let len = (next() % 23) as usize;
            let mut line = alloc::vec![b'('];
            for _ in 0..len {
                let pick = next() as usize;
                // Mostly number-like text, so that plain numbers come up often.
                let byte = if round % 2 == 0 && !pick.is_multiple_of(4) {
                    b"0123456789.*kWh"[pick / 4 % 15]
                } else {
                    alphabet[pick / 4 % alphabet.len()]
                };
                line.push(byte);
            }
            if next() % 3 != 0 {
                line.push(b')');
            }
            line.extend_from_slice([&b"\r\n"[..], b"\n", b"\r", b"x"][(next() % 4) as usize]);
            line.extend_from_slice(b"1-0:1.8.0(1)");
            let got = one_group(&line);
            let close = line[1..]
                .iter()
                .position(|&b| matches!(b, b'(' | b')' | b'\n'))
                .map(|i| i + 1);
            let want = close.and_then(|close| {
                if line[close] != b')' {
                    return None;
                }
                let next = match &line[close + 1..] {
                    [b'\r', b'\n', ..] => close + 3,
                    [b'\n', ..] => close + 2,
                    _ => return None,
                };
                let inner = &line[1..close];
                let text = core::str::from_utf8(inner).ok();
                let parses = text.is_some_and(|t| Quantity::parse(t).is_ok());
                Some((close + 1, next, parses, inner))
            });
            match (got, want) {
                (None, None) => {}
                (Some(got), Some((len, next, parses, inner))) => {
                    assert_eq!((got.len, got.next), (len, next), "{line:?}");
                    if got.plain_number {
                        assert!(parses, "plain but not parsed: {:?}", inner);
                    }
                    // Every shape the definition covers is recognised.
                    let star = inner.iter().position(|&b| b == b'*');
                    let (number, unit) = match star {
                        Some(s) => (&inner[..s], Some(&inner[s + 1..])),
                        None => (inner, None),
                    };
                    let digits = number.iter().filter(|b| b.is_ascii_digit()).count();
                    let shaped = number.iter().all(|&b| b.is_ascii_digit() || b == b'.')
                        && number.iter().filter(|&&b| b == b'.').count() <= 1
                        && (1..=18).contains(&digits)
                        && unit.is_none_or(|u| {
                            u.first().is_some_and(u8::is_ascii_alphabetic)
                                && u.iter().all(u8::is_ascii_graphic)
                        });
                    assert_eq!(got.plain_number, shaped, "{:?}", inner);
                }
                (got, want) => panic!("{line:?}: {got:?} / {want:?}"),
            }
        }
    }
}
