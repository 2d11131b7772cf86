//! The common data line's value: `(…)` or `(…)(…)` then the line end, found and checked in one
//! pass over its bytes, noting on the way whether the last group holds a plain number (so that
//! the number need not be converted to know that it fits its format).
//!
//! A plain byte loop: on fields of 2 to 20 bytes it costs fewer instructions than eight-byte
//! SWAR steps (measured with `bench/instructions.sh`), and it is the same on every target.

/// A line `(…)` or `(…)(…)` + line end, as [`groups`] found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LineGroups {
    /// The length of the groups.
    pub len: usize,
    /// The length of the groups with their line end (`\r\n` or `\n`).
    pub next: usize,
    /// 1 or 2.
    pub count: u8,
    /// Where the second group's `(` is (0 with one group).
    pub second_at: u32,
    /// The last group holds a number that `Quantity::parse` always takes: 1 to 18 digits with
    /// at most one point, then nothing or `*` and a unit (a letter, then printable ASCII).
    /// `false` says nothing about the other values.
    pub plain_number: bool,
}

/// How many of the 8 bytes of `word` are ASCII digits before the first other byte (SWAR: a byte
/// `b` is no digit when `b + 0x46` reaches `0x80` (`b > b'9'`) or `b - 0x30` borrows
/// (`b < b'0'`); digits carry and borrow nothing, so the lowest flag is always right).
#[inline(always)]
fn digit_run(word: &[u8]) -> usize {
    let Ok(word) = <[u8; 8]>::try_from(word) else {
        return 0;
    };
    let word = u64::from_le_bytes(word);
    let other = (word.wrapping_add(0x4646_4646_4646_4646)
        | word.wrapping_sub(0x3030_3030_3030_3030))
        & 0x8080_8080_8080_8080;
    (other.trailing_zeros() / 8) as usize
}

/// For `rest[open] == b'('`: where the group closes (the index of its `)`, `(` or LF, or
/// `None` at the end of `rest`), and whether it holds a plain number.
#[inline]
pub(crate) fn group(rest: &[u8], open: usize) -> Option<(usize, bool)> {
    // The number: runs of digits, eight bytes at a time, and points.
    let mut i = open + 1;
    let mut digits = 0u32;
    let mut points = 0u32;
    let mut b = loop {
        let run = match rest.get(i..i + 8) {
            Some(word) => digit_run(word),
            None => rest
                .get(i..)?
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count(),
        };
        digits += run as u32;
        i += run;
        if run == 8 {
            continue;
        }
        let b = *rest.get(i)?;
        if b != b'.' {
            break b;
        }
        points += 1;
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
    Some((i, plain))
}

/// For `rest` starting with `(`: one or two groups, each up to the first `)` with no `(` or LF
/// before it, and the line end right after them. `None` for every other shape (more groups,
/// text or spaces after them, no line end), which the general path takes.
#[inline]
pub(crate) fn groups(rest: &[u8]) -> Option<LineGroups> {
    let (mut close, mut plain) = group(rest, 0)?;
    let mut count = 1;
    let mut second_at = 0;
    if rest[close] != b')' {
        return None;
    }
    if rest.get(close + 1) == Some(&b'(') {
        // Longer lines are left to the general path.
        second_at = u32::try_from(close + 1).ok()?;
        (close, plain) = group(rest, close + 1)?;
        count = 2;
        if rest[close] != b')' {
            return None;
        }
    }
    let next = match rest.get(close + 1..close + 3) {
        Some([b'\r', b'\n']) => close + 3,
        Some([b'\n', _]) => close + 2,
        _ if rest.get(close + 1) == Some(&b'\n') => close + 2,
        _ => return None,
    };
    Some(LineGroups {
        len: close + 1,
        next,
        count,
        second_at,
        plain_number: plain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Quantity;

    #[test]
    fn digit_run_finds_the_first_other_byte() {
        for at in 0..8 {
            for byte in 0..=255u8 {
                for fill in [b'0', b'9'] {
                    let mut word = [fill; 8];
                    word[at] = byte;
                    let expected = word.iter().take_while(|b| b.is_ascii_digit()).count();
                    assert_eq!(digit_run(&word), expected, "{word:?}");
                }
            }
        }
        assert_eq!(digit_run(b"1234567"), 0, "seven bytes are not a word");
    }

    /// What [`groups`] should find, read plainly from the definition.
    fn reference(line: &[u8]) -> Option<LineGroups> {
        let mut at = 0;
        let mut count = 0;
        let mut last = &line[..0];
        let mut second_at = 0;
        while line.get(at) == Some(&b'(') {
            if count == 1 {
                second_at = at as u32;
            }
            let close = at
                + 1
                + line[at + 1..]
                    .iter()
                    .position(|&b| matches!(b, b'(' | b')' | b'\n'))?;
            if line[close] != b')' {
                return None;
            }
            last = &line[at + 1..close];
            count += 1;
            at = close + 1;
        }
        if !(1..=2).contains(&count) {
            return None;
        }
        let next = match &line[at..] {
            [b'\r', b'\n', ..] => at + 2,
            [b'\n', ..] => at + 1,
            _ => return None,
        };
        let star = last.iter().position(|&b| b == b'*');
        let (number, unit) = match star {
            Some(s) => (&last[..s], Some(&last[s + 1..])),
            None => (last, None),
        };
        let digits = number.iter().filter(|b| b.is_ascii_digit()).count();
        let plain_number = number.iter().all(|&b| b.is_ascii_digit() || b == b'.')
            && number.iter().filter(|&&b| b == b'.').count() <= 1
            && (1..=18).contains(&digits)
            && unit.is_none_or(|u| {
                u.first().is_some_and(u8::is_ascii_alphabetic) && u.iter().all(u8::is_ascii_graphic)
            });
        if plain_number {
            let text = core::str::from_utf8(last).unwrap();
            assert!(
                Quantity::parse(text).is_ok(),
                "plain but not parsed: {text:?}"
            );
        }
        Some(LineGroups {
            len: at,
            next,
            count,
            second_at,
            plain_number,
        })
    }

    /// Against the reading of the definition: lines of one to three groups of up to 22 bytes
    /// drawn from the bytes that matter, with damage, followed by line ends and more text.
    #[test]
    fn agrees_with_a_plain_reading() {
        let alphabet = b"0.9*kWh()\n\r A-m3\x80";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut found = [0; 3];
        for round in 0..300_000 {
            let mut line = alloc::vec::Vec::new();
            for _ in 0..1 + next() % 3 {
                line.push(b'(');
                for _ in 0..next() % 23 {
                    let pick = next() as usize;
                    // Mostly number-like text, so that plain numbers come up often.
                    let byte = if round % 2 == 0 && !pick.is_multiple_of(4) {
                        b"0123456789.*kWh"[pick / 4 % 15]
                    } else {
                        alphabet[pick / 4 % alphabet.len()]
                    };
                    line.push(byte);
                }
                if next() % 5 != 0 {
                    line.push(b')');
                }
            }
            line.extend_from_slice([&b"\r\n"[..], b"\n", b"\r", b"x"][(next() % 4) as usize]);
            line.extend_from_slice(b"1-0:1.8.0(1)");
            let got = groups(&line);
            assert_eq!(
                got,
                reference(&line),
                "{:?}",
                alloc::string::String::from_utf8_lossy(&line)
            );
            if let Some(got) = got {
                found[usize::from(got.count)] += 1;
                found[0] += usize::from(got.plain_number);
            }
        }
        // Each kind came up often.
        assert!(found.iter().all(|&n| n > 1_000), "{found:?}");
    }
}
