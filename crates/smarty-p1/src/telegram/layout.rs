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
//! unit) look only at whether a byte is a digit. A timestamp's check is made again for each
//! telegram (today it too looks only at digits and length: an impossible date is a valid
//! placeholder, but that is the value parser's business). Lines of any other shape (the general path:
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
    /// One bit per byte of `body` (bit `i % 16` of word `i / 16`), set where a digit may be
    /// another digit in the next telegram.
    digits: Vec<u16>,
    slots: Vec<Slot>,
    /// `other_lines`, as (start, length) in the body.
    others: Vec<(u32, u32)>,
    /// Every object fits, the timestamps aside.
    fit_but_timestamps: bool,
    /// Set once a body was recorded.
    ready: bool,
    /// Telegrams read from the layout so far.
    pub(crate) reused: u64,
    /// Telegrams in a row that the layout did not serve.
    missed: u32,
    /// `false`: every telegram is read line by line, nothing recorded.
    off: bool,
}

/// After the first two telegrams in a row of another shape than the layout's, only every this
/// many is recorded: recording costs about a quarter of a line-by-line read, which a stream
/// whose shape changes every time (none is known) would pay for nothing. A meter's shape
/// changes seldom (a text message comes or goes), and the next telegram has the new one.
const RECORD_EVERY: u32 = 8;

impl Layout {
    /// A layout that records telegrams and serves those of the same shape (`reuse`), or one
    /// that reads every telegram line by line.
    pub(crate) fn new(reuse: bool) -> Layout {
        Layout {
            off: !reuse,
            ..Layout::default()
        }
    }

    /// Reads the lines of `body` into `telegram` (which holds no objects yet): from the last
    /// telegram's layout when `body` matches it, else line by line, and then records the layout.
    pub(crate) fn read<'a>(
        &mut self,
        telegram: &mut Telegram<'a>,
        bytes: &'a [u8],
        body: &'a [u8],
    ) {
        let text = super::utf8(body);
        if self.off {
            telegram.read_lines(bytes, body, text);
            return;
        }
        if let Some(text) = text
            && self.ready
            && same_shape(body, &self.body, &self.digits)
        {
            if self.rebuild(telegram, text) {
                self.reused += 1;
                self.missed = 0;
                return;
            }
            // Not expected (the same bytes have the same boundaries): read it as usual.
            telegram.objects.clear();
            telegram.other_lines.clear();
            telegram.all_fit = true;
        }
        telegram.read_lines(bytes, body, text);
        self.missed += 1;
        if !self.ready || self.missed <= 2 || self.missed.is_multiple_of(RECORD_EVERY) {
            self.record(telegram, body, text.is_some());
        }
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
        self.digits.resize(body.len().div_ceil(16), 0);
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
                set_bits(
                    &mut self.digits,
                    at + usize::from(object.groups_at),
                    at + len,
                );
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
        for (bits, chunk) in self.digits.iter_mut().zip(self.body.chunks(16)) {
            *bits &= digit_bits(chunk);
        }
        self.fit_but_timestamps = fit_but_timestamps;
        self.ready = true;
    }
}

/// Sets bits `from..to` of `bits` (one per byte, 16 per word).
fn set_bits(bits: &mut [u16], from: usize, to: usize) {
    let mut at = from;
    while at < to {
        let (word, low) = (at / 16, at % 16);
        let high = (low + (to - at)).min(16);
        if let Some(bits) = bits.get_mut(word) {
            *bits |= ((1u32 << high) - (1u32 << low)) as u16;
        }
        at += high - low;
    }
}

/// The ASCII digits among (at most 16) `bytes`, one bit each.
fn digit_bits(bytes: &[u8]) -> u16 {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if let Ok(block) = <[u8; 16]>::try_from(bytes) {
        return simd::digits(wide::u8x16::new(block));
    }
    bytes.iter().enumerate().fold(0, |bits, (i, b)| {
        bits | (u16::from(b.is_ascii_digit()) << i)
    })
}

/// `true` when `body` equals `last` but for bytes that are digits in both where `digits` has
/// their bit set.
fn same_shape(body: &[u8], last: &[u8], digits: &[u16]) -> bool {
    if body.len() != last.len() || digits.len() != last.len().div_ceil(16) {
        return false;
    }
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    return same_shape_simd(body, last, digits);
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return same_shape_scalar(body, last, digits);
}

/// [`same_shape`] without SIMD: eight bytes compared at once, a byte at a time only where
/// they differ (most bytes are equal).
#[cfg(any(test, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
fn same_shape_scalar(body: &[u8], last: &[u8], digits: &[u16]) -> bool {
    body.chunks(8)
        .zip(last.chunks(8))
        .enumerate()
        .all(|(c, (b, l))| {
            b == l
                || b.iter().zip(l).enumerate().all(|(j, (&b, &l))| {
                    let i = c * 8 + j;
                    let may_change = digits.get(i / 16).is_some_and(|w| w >> (i % 16) & 1 == 1);
                    b == l || (may_change && b.is_ascii_digit())
                })
        })
}

/// 16 bytes at a time (SSE2 or NEON through `wide`'s safe API).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod simd {
    use wide::u8x16;

    /// The lanes that hold an ASCII digit, one bit each.
    #[inline(always)]
    pub(super) fn digits(block: u8x16) -> u16 {
        let t = block - u8x16::splat(b'0');
        t.min(u8x16::splat(9)).simd_eq(t).to_bitmask() as u16
    }

    /// The lanes of `a` and `b` that are equal, one bit each.
    #[inline(always)]
    pub(super) fn equal(a: u8x16, b: u8x16) -> u16 {
        a.simd_eq(b).to_bitmask() as u16
    }
}

/// [`same_shape`] 16 bytes at a time, inputs of equal length.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn same_shape_simd(body: &[u8], last: &[u8], digits: &[u16]) -> bool {
    use wide::u8x16;
    let block = |b: &[u8]| u8x16::new(b.try_into().unwrap_or([0; 16]));
    let mut differ = 0u16;
    let chunks = body.chunks_exact(16).zip(last.chunks_exact(16)).zip(digits);
    for ((b, l), &may_change) in chunks {
        let b = block(b);
        differ |= !(simd::equal(b, block(l)) | (simd::digits(b) & may_change));
    }
    let tail = body.len() - body.len() % 16;
    differ == 0
        && body[tail..]
            .iter()
            .zip(&last[tail..])
            .enumerate()
            .all(|(i, (&b, &l))| {
                let may_change = digits
                    .get(tail / 16)
                    .is_some_and(|w| w >> (i % 16) & 1 == 1);
                b == l || (may_change && b.is_ascii_digit())
            })
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::telegram::{parse, parse_with_layout};
    use alloc::format;
    use alloc::string::String;
    use std::path::PathBuf;

    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n.max(1) as u64) as usize
        }
    }

    /// Everything a parse gives, values, unknown lines and media included.
    fn everything(bytes: &[u8], telegram: Result<Telegram<'_>, crate::TelegramError>) -> String {
        let Ok(telegram) = telegram else {
            return format!("{telegram:?}");
        };
        let values: Vec<_> = telegram.objects().iter().map(|o| o.value()).collect();
        let media: Vec<_> = (0..10).map(|c| telegram.medium(c)).collect();
        format!(
            "{telegram:?}\n{values:?}\n{:?} {}\n{media:?}\n{:?}",
            telegram.unknown_lines(),
            telegram.has_unknown_lines(),
            // Slices of these bytes, not of an earlier telegram's.
            telegram
                .objects()
                .iter()
                .all(|o| bytes.as_ptr_range().contains(&o.line().as_ptr())),
        )
    }

    /// Rewrites the CRC after `!` (four hex digits) to match.
    fn fix_crc(bytes: &mut [u8]) {
        let (Some(start), Some(bang)) = (
            bytes.iter().position(|&b| b == b'/'),
            bytes.iter().rposition(|&b| b == b'!'),
        ) else {
            return;
        };
        if start < bang
            && bytes.len() >= bang + 5
            && bytes[bang + 1..bang + 5].iter().all(u8::is_ascii_hexdigit)
        {
            let crc = crate::crc16_arc(&bytes[start..=bang]);
            bytes[bang + 1..bang + 5].copy_from_slice(format!("{crc:04X}").as_bytes());
        }
    }

    /// Every telegram of the test data, then telegrams made from it: digits changed (in
    /// values, which keep the layout, and in codes, which do not), bytes that matter to the
    /// parser changed, lines removed; read with the layout of the one before, against
    /// [`parse`].
    #[test]
    fn reading_from_the_layout_gives_what_parse_gives() {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/telegrams"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        files.sort();
        assert!(files.len() >= 60, "{}", files.len());
        let mut rng = Rng(0x5EED_1234_5678_9ABC);
        let (mut telegrams, mut reused, mut errors) = (0u64, 0u64, 0u64);
        for file in &files {
            let base = std::fs::read(file).unwrap();
            let mut layout = Layout::default();
            // The meter's present shape; most telegrams change only its digits.
            let mut shape = base.clone();
            // A place in the body (between the header line and the end line) of `shape`.
            let in_body = |shape: &[u8], rng: &mut Rng| {
                let from = shape.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
                let to = shape
                    .windows(2)
                    .rposition(|w| w == b"\n!")
                    .unwrap_or(shape.len());
                from + rng.below(to.saturating_sub(from))
            };
            for _ in 0..200 {
                let mut bytes = match rng.below(8) {
                    0 => {
                        shape = base.clone();
                        shape.clone()
                    }
                    1 => {
                        // A byte that matters to the parser: a new shape.
                        let at = in_body(&shape, &mut rng);
                        shape[at] = b"()*.:-/\r\n 09AkW\xff"[rng.below(16)];
                        shape.clone()
                    }
                    2 => {
                        // A line (or its end) removed: a new shape.
                        let at = in_body(&shape, &mut rng);
                        let end = shape[at..]
                            .iter()
                            .position(|&b| b == b'\n')
                            .map_or(shape.len(), |p| at + p + 1);
                        shape.drain(at..end);
                        shape.clone()
                    }
                    _ => {
                        // Digits changed: in values (after a line's first `(`), and now
                        // and then in a code.
                        let mut bytes = shape.clone();
                        for _ in 0..=rng.below(4) {
                            let at = in_body(&bytes, &mut rng);
                            let line = bytes[..at]
                                .iter()
                                .rposition(|&b| b == b'\n')
                                .map_or(0, |p| p + 1);
                            let in_value = bytes[line..at].contains(&b'(');
                            if bytes[at].is_ascii_digit() && (in_value || rng.below(16) == 0) {
                                bytes[at] = b'0' + rng.below(10) as u8;
                            }
                        }
                        bytes
                    }
                };
                if rng.below(10) != 0 {
                    fix_crc(&mut bytes);
                }
                let expected = everything(&bytes, parse(&bytes));
                errors += u64::from(parse(&bytes).is_err());
                let before = layout.reused;
                let got = everything(&bytes, parse_with_layout(&bytes, &mut layout));
                assert_eq!(
                    got,
                    expected,
                    "{} (from the layout: {})\n{}",
                    file.display(),
                    layout.reused > before,
                    String::from_utf8_lossy(&bytes)
                );
                telegrams += 1;
                reused += layout.reused - before;
            }
        }
        // Most telegrams changed only digits of values: the layout must have served many.
        assert!(
            reused * 4 > telegrams,
            "{reused} of {telegrams} from the layout ({errors} not telegrams)"
        );
    }

    #[test]
    fn bits_of_digits_and_spans() {
        for byte in 0..=255u8 {
            for at in 0..16 {
                let mut block = [b'x'; 16];
                block[at] = byte;
                let expected = u16::from(byte.is_ascii_digit()) << at;
                assert_eq!(digit_bits(&block), expected, "{block:?}");
                assert_eq!(digit_bits(&block[..=at]), expected, "{block:?}");
            }
        }
        let mut bits = [0u16; 4];
        set_bits(&mut bits, 3, 40);
        set_bits(&mut bits, 50, 52);
        for i in 0..64 {
            let set = bits[i / 16] >> (i % 16) & 1 == 1;
            assert_eq!(
                set,
                (3..40).contains(&i) || (50..52).contains(&i),
                "bit {i}"
            );
        }
    }

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
            let digits: Vec<u16> = (0..len.div_ceil(16))
                .map(|_| next() as u16 | next() as u16)
                .collect();
            let mut body = last.clone();
            for _ in 0..(next() % 3) {
                if len > 0 {
                    let at = (next() % len as u64) as usize;
                    body[at] = b"0123456789.(\xff"[(next() % 13) as usize];
                }
            }
            let scalar = same_shape_scalar(&body, &last, &digits);
            // The definition, a byte at a time.
            let reference = body.iter().zip(&last).enumerate().all(|(i, (&b, &l))| {
                b == l || (digits[i / 16] >> (i % 16) & 1 == 1 && b.is_ascii_digit())
            });
            assert_eq!(scalar, reference, "{body:?} {last:?}");
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
