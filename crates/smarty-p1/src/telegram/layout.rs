//! A meter sends the same lines in the same order every time; only digits change. The
//! [`Layout`] keeps what the lines of the last telegram were, and the next telegram whose body
//! has the same bytes, except digits that became other digits inside value groups, gets the
//! same objects without reading its lines again: one pass over the body compares it (16 bytes
//! at a time where the target has SIMD), then the objects are rebuilt from the offsets.
//!
//! Why the result is the same as [`super::parse_with`]'s: every decision the line reader takes
//! depends on bytes that must be equal here, or only on whether a byte is a digit. Those that
//! may change are digits in the value groups of the lines the common path read (a known code,
//! `(…)` or `(…)(…)`, the line end): the code, the brackets, the line ends, the points, `*`
//! and the units are compared, and the reader's checks of a number (its digits, its point, its
//! unit) look only at whether a byte is a digit. The one check that reads digits' values, a
//! timestamp's, is made again for each telegram. Lines of any other shape (the general path:
//! unknown codes, more groups, DSMR 2.2 gas readings and the line after them) are compared
//! whole. `tests/differential.rs` compares both ways on changed telegrams.

use alloc::vec::Vec;

use super::{DataObject, Telegram};
use crate::obis::Obis;
use crate::registry::{Format, ObisDef};
use crate::value::Timestamp;

/// An object of the last telegram, by offsets into its body.
#[derive(Clone, Copy, Debug)]
struct Slot {
    obis: Obis,
    def: Option<&'static ObisDef>,
    /// Where the line starts in the body, and its length.
    at: u32,
    len: u32,
    code_len: u16,
    groups_at: u16,
    fits: bool,
    count: u8,
    second_at: u32,
    /// A timestamp whose `fits` is checked again for each telegram.
    timestamp: bool,
}

/// The lines of a meter's last telegram (see the module's documentation).
#[derive(Clone, Debug, Default)]
pub(crate) struct Layout {
    /// The last body that was read line by line.
    body: Vec<u8>,
    /// `0xFF` where a digit of `body` may be another digit in the next one, else `0`.
    digits: Vec<u8>,
    slots: Vec<Slot>,
    /// `other_lines`, as (start, length) in the body.
    others: Vec<(u32, u32)>,
    /// Every object fits, the timestamps aside.
    fit_but_timestamps: bool,
    /// Set once a body was recorded.
    ready: bool,
}

impl Layout {
    /// Reads the lines of `body` into `telegram` (which holds no objects yet): from the last
    /// telegram's layout when `body` matches it, else line by line, and then records the layout.
    pub(crate) fn read<'a>(
        &mut self,
        telegram: &mut Telegram<'a>,
        bytes: &'a [u8],
        body: &'a [u8],
    ) {
        let text = super::utf8(body);
        if let Some(text) = text
            && self.ready
            && same_shape(body, &self.body, &self.digits)
        {
            if self.rebuild(telegram, text) {
                return;
            }
            // Not expected (the same bytes have the same boundaries): read it as usual.
            telegram.objects.clear();
            telegram.other_lines.clear();
            telegram.all_fit = true;
        }
        telegram.read_lines(bytes, body, text);
        self.record(telegram, body, text.is_some());
    }

    /// The objects of the recorded layout over `text`; `false` if one does not fit.
    fn rebuild<'a>(&self, telegram: &mut Telegram<'a>, text: &'a str) -> bool {
        let mut all_fit = self.fit_but_timestamps;
        telegram.objects.reserve_exact(self.slots.len());
        for slot in &self.slots {
            let (at, len) = (slot.at as usize, slot.len as usize);
            let Some(line) = text.get(at..at + len) else {
                return false;
            };
            let code_len = usize::from(slot.code_len);
            let mut fits = slot.fits;
            if slot.timestamp {
                fits = line
                    .get(code_len + 1..len.saturating_sub(1))
                    .is_some_and(|t| Timestamp::parse(t).is_ok());
                all_fit &= fits;
            }
            telegram.objects.push(DataObject {
                obis: slot.obis,
                code: line.get(..code_len).unwrap_or_default(),
                def: slot.def,
                line,
                groups_at: slot.groups_at,
                fits,
                count: slot.count,
                second_at: slot.second_at,
            });
        }
        let bytes = text.as_bytes();
        for &(at, len) in &self.others {
            let Some(line) = bytes.get(at as usize..(at + len) as usize) else {
                return false;
            };
            telegram.other_lines.push(line);
        }
        telegram.all_fit = all_fit;
        true
    }

    /// Keeps the layout of `telegram`, whose lines were just read from `body`.
    fn record(&mut self, telegram: &Telegram<'_>, body: &[u8], utf8: bool) {
        self.ready = false;
        self.slots.clear();
        self.others.clear();
        self.body.clear();
        self.digits.clear();
        // Offsets are u32; a body that is no text is never compared.
        if !utf8 || u32::try_from(body.len()).is_err() {
            return;
        }
        let start = body.as_ptr() as usize;
        let offset = |s: &[u8]| (s.as_ptr() as usize).wrapping_sub(start);
        self.body.extend_from_slice(body);
        self.digits.resize(body.len(), 0);
        let mut fit_but_timestamps = true;
        for object in &telegram.objects {
            let at = offset(object.line.as_bytes());
            let len = object.line.len();
            let code_at = offset(object.code.as_bytes());
            // Every line is a slice of the body, its code at its start (a DSMR 2.2 gas line
            // joined with the next is too); anything else is not kept.
            if at + len > body.len() || code_at != at {
                return;
            }
            let format = object.def.map(|def| def.format);
            let timestamp = object.count == 1 && format == Some(Format::Timestamp);
            if object.count != 0 && format != Some(Format::LegacyReading) {
                // Read by the common path: its value's digits may change.
                self.digits[at + usize::from(object.groups_at)..at + len].fill(0xFF);
            }
            if !timestamp {
                fit_but_timestamps &= object.fits;
            }
            self.slots.push(Slot {
                obis: object.obis,
                def: object.def,
                at: at as u32,
                len: len as u32,
                code_len: object.code.len() as u16,
                groups_at: object.groups_at,
                fits: object.fits,
                count: object.count,
                second_at: object.second_at,
                timestamp,
            });
        }
        for line in &telegram.other_lines {
            let at = offset(line);
            if at + line.len() > body.len() {
                return;
            }
            self.others.push((at as u32, line.len() as u32));
        }
        for (flag, byte) in self.digits.iter_mut().zip(&self.body) {
            *flag &= if byte.is_ascii_digit() { 0xFF } else { 0 };
        }
        self.fit_but_timestamps = fit_but_timestamps;
        self.ready = true;
    }
}

/// `true` when `body` equals `last` but for bytes that are digits in both where `digits` is
/// `0xFF`.
fn same_shape(body: &[u8], last: &[u8], digits: &[u8]) -> bool {
    if body.len() != last.len() || digits.len() != last.len() {
        return false;
    }
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    return same_shape_simd(body, last, digits);
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return same_shape_scalar(body, last, digits);
}

/// [`same_shape`] a byte at a time.
#[cfg(any(test, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
fn same_shape_scalar(body: &[u8], last: &[u8], digits: &[u8]) -> bool {
    body.iter()
        .zip(last)
        .zip(digits)
        .all(|((&b, &l), &d)| b == l || (d != 0 && b.is_ascii_digit()))
}

/// [`same_shape`] 16 bytes at a time (SSE2 or NEON through `wide`), inputs of equal length.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn same_shape_simd(body: &[u8], last: &[u8], digits: &[u8]) -> bool {
    use wide::u8x16;
    let block = |b: &[u8]| u8x16::new(b.try_into().unwrap_or([0; 16]));
    let zero = u8x16::splat(b'0');
    let nine = u8x16::splat(9);
    let mut ok = u8x16::splat(0xFF);
    let chunks = body
        .chunks_exact(16)
        .zip(last.chunks_exact(16))
        .zip(digits.chunks_exact(16));
    for ((b, l), d) in chunks {
        let (b, l, d) = (block(b), block(l), block(d));
        let t = b - zero;
        let digit = t.min(nine).simd_eq(t);
        ok &= b.simd_eq(l) | (digit & d);
    }
    let tail = body.len() - body.len() % 16;
    ok.to_bitmask() == 0xFFFF
        && body[tail..]
            .iter()
            .zip(&last[tail..])
            .zip(&digits[tail..])
            .all(|((&b, &l), &d)| b == l || (d != 0 && b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_and_scalar_agree() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut same, mut different) = (0, 0);
        for _ in 0..100_000 {
            let len = (next() % 70) as usize;
            let last: Vec<u8> = (0..len)
                .map(|_| b"0123456789(.*kWh)\r\n"[(next() % 19) as usize])
                .collect();
            let digits: Vec<u8> = (0..len)
                .map(|_| if next() % 4 == 0 { 0 } else { 0xFF })
                .collect();
            let mut body = last.clone();
            for _ in 0..(next() % 3) {
                if len > 0 {
                    let at = (next() % len as u64) as usize;
                    body[at] = b"0123456789.(\xff"[(next() % 13) as usize];
                }
            }
            let scalar = same_shape_scalar(&body, &last, &digits);
            #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
            assert_eq!(
                same_shape_simd(&body, &last, &digits),
                scalar,
                "{body:?} {last:?}"
            );
            if scalar { same += 1 } else { different += 1 }
        }
        assert!(same > 10_000 && different > 10_000, "{same} {different}");
    }
}
