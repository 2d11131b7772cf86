//! The P1 telegram: model and one-pass parser (DSMR 5.0.2 §6, LU113 §3.2.2).
//!
//! ```text
//! /Lux5\253663629_D          identification (header)
//!                            empty line
//! 1-3:0.2.8(42)              data lines  OBIS(value)(value)…
//! 0-0:1.0.0(180130102122W)
//! …
//! !CFDE                      end: '!' and CRC16/ARC over '/' … '!'
//! ```
//! Every data line is parsed generically; the [registry](crate::registry) gives known codes
//! their name, unit and value format. The parser borrows from the input: it allocates one
//! vector of objects per telegram and nothing per line.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::crc::crc16_arc;
use crate::error::{TelegramError, ValueError};
use crate::line;
use crate::obis::Obis;
use crate::registry::{self, Format, Kind, Medium, ObisDef};
use crate::value::{Decimal, OctetString, Quantity, Timestamp};

mod layout;
pub(crate) use layout::Layout;

/// The state of a telegram's CRC.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum CrcStatus {
    /// The CRC after `!` matches.
    Valid,
    /// No CRC was sent (DSMR 2.2/3 end with a bare `!`), or no `!` line at all.
    Absent,
    /// The CRC does not match (only seen with [`ParseOptions::check_crc`] off).
    Mismatch {
        /// Written after `!`.
        expected: u16,
        /// Computed over `/` … `!`.
        computed: u16,
    },
    /// The end line is damaged: after `!` comes neither a line end nor 3 or 4 hex digits, so
    /// nothing vouches for the telegram (only seen with [`ParseOptions::check_crc`] off).
    Malformed,
}

impl CrcStatus {
    /// `"ok"`, `"absent"`, `"mismatch"` or `"malformed"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CrcStatus::Valid => "ok",
            CrcStatus::Absent => "absent",
            CrcStatus::Mismatch { .. } => "mismatch",
            CrcStatus::Malformed => "malformed",
        }
    }
}

/// The most bytes after `!` taken into a telegram as its end line.
pub(crate) const END_LINE_MAX: usize = 32;

/// What the end line holds after `!`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CrcField {
    /// A bare `!`: the line ends right after it (DSMR 2.2/3, EasyMeter).
    Absent,
    /// Three or four hex digits (Warmtelink prints three), not followed by another one.
    Digits(u16),
    /// Anything else: the line was damaged, and the CRC with it.
    Malformed,
}

/// Reads the end line from `after`, the bytes after `!`. Returns how many of them belong to
/// the telegram and what the line holds, or `None` when more bytes are needed to tell (never
/// when `at_end`: the bytes given are all there is).
///
/// Only a bare `!` (followed by a line end or the end of the input) means "no CRC"; three or
/// four hex digits are the CRC; anything else (`!q626`, `! 626`, `!62`, `!62626`) is a
/// damaged CRC line, never "no CRC". The telegram takes its
/// end line through the LF (or up to a `/` or `0xDB` that may start the next telegram or
/// frame, or at most [`END_LINE_MAX`] bytes), so that any damage on it reaches the parser;
/// what a gateway sends on the lines after a bare `!` (EasyMeter) is not part of it.
pub(crate) fn end_line(after: &[u8], at_end: bool) -> Option<(usize, CrcField)> {
    // The usual line: four hex digits and CR LF.
    if let Some([a, b, c, d, b'\r', b'\n']) = after.first_chunk::<6>()
        && let (Some(a), Some(b), Some(c), Some(d)) = (
            crate::hex::digit(*a),
            crate::hex::digit(*b),
            crate::hex::digit(*c),
            crate::hex::digit(*d),
        )
    {
        let crc = u16::from(a) << 12 | u16::from(b) << 8 | u16::from(c) << 4 | u16::from(d);
        return Some((6, CrcField::Digits(crc)));
    }
    let digits = after
        .iter()
        .take(5)
        .take_while(|b| b.is_ascii_hexdigit())
        .count();
    let field = match (digits, after.get(digits)) {
        // Not enough bytes yet to see what follows the digits.
        (_, None) if !at_end && digits < 5 => return None,
        (0, None | Some(b'\n')) => CrcField::Absent,
        // A bare CR ends the line too when the next telegram or frame follows at once.
        (0, Some(b'\r')) => match after.get(1) {
            None if !at_end => return None,
            None | Some(b'\n' | b'/' | 0xDB) => CrcField::Absent,
            Some(_) => CrcField::Malformed,
        },
        (3 | 4, _) => CrcField::Digits(after[..digits].iter().fold(0u16, |acc, &d| {
            (acc << 4) | u16::from(crate::hex::digit(d).unwrap_or(0))
        })),
        _ => CrcField::Malformed,
    };
    if field == CrcField::Absent {
        let len = match after {
            [b'\r', b'\n', ..] => 2,
            [b'\r' | b'\n', ..] => 1,
            _ => 0,
        };
        return Some((len, field));
    }
    // The CRC (or the damaged line) through its LF, or up to a `/` or `0xDB` that may start
    // the next telegram or frame, or at most END_LINE_MAX bytes. The damaged line always
    // keeps its first byte, which shows the damage (`!/626` is no bare `!`).
    let from = digits.max(1);
    let line = after
        .iter()
        .enumerate()
        .take(END_LINE_MAX)
        .skip(digits)
        .find(|&(i, &b)| b == b'\n' || (i >= from && (b == b'/' || b == 0xDB)));
    let len = match line {
        Some((i, b'\n')) => i + 1,
        Some((i, _)) => i,
        None if after.len() >= END_LINE_MAX => END_LINE_MAX,
        None if at_end => after.len(),
        None => return None,
    };
    Some((len, field))
}

/// Where the end line `!CRC` is: (offset of `!`, what follows it, offset after the end line).
struct End {
    bang: usize,
    field: CrcField,
    end: usize,
}

/// Finds the first `!` at the start of a line after `from`.
fn find_end(bytes: &[u8], from: usize) -> Option<End> {
    let mut search = from;
    while let Some(found) = memchr::memchr(b'!', &bytes[search..]) {
        let bang = search + found;
        if bang > 0 && bytes[bang - 1] == b'\n' {
            let (len, field) = end_line(&bytes[bang + 1..], true)?;
            return Some(End {
                bang,
                field,
                end: bang + 1 + len,
            });
        }
        search = bang + 1;
    }
    None
}

fn crc_of(bytes: &[u8], start: usize, end: &End) -> CrcStatus {
    match end.field {
        CrcField::Absent => CrcStatus::Absent,
        CrcField::Malformed => CrcStatus::Malformed,
        CrcField::Digits(expected) => {
            let computed = crc16_arc(&bytes[start..=end.bang]);
            if expected == computed {
                CrcStatus::Valid
            } else {
                CrcStatus::Mismatch { expected, computed }
            }
        }
    }
}

/// Checks only the CRC of a telegram (from its first `/` to the `!` line).
///
/// Returns [`CrcStatus::Absent`] when there is no `/`, no `!` line, or a bare `!`, and
/// [`CrcStatus::Malformed`] when the `!` line holds neither a line end nor 3 or 4 hex digits.
///
/// # Example
/// ```
/// use smarty_p1::{crc_status, CrcStatus};
/// assert_eq!(crc_status(b"/X\r\n\r\n1-3:0.2.8(42)\r\n!"), CrcStatus::Absent);
/// ```
pub fn crc_status(bytes: &[u8]) -> CrcStatus {
    let Some(start) = memchr::memchr(b'/', bytes) else {
        return CrcStatus::Absent;
    };
    match find_end(bytes, start) {
        Some(end) => crc_of(bytes, start, &end),
        None => CrcStatus::Absent,
    }
}

/// Options of [`parse_with`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ParseOptions {
    /// Reject a telegram whose CRC does not match (default `true`). With `false` the telegram
    /// is parsed anyway and [`Telegram::crc`] says [`CrcStatus::Mismatch`].
    pub check_crc: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions { check_crc: true }
    }
}

impl ParseOptions {
    /// With the CRC checked (`true`, the default) or not.
    ///
    /// # Example
    /// ```
    /// use smarty_p1::{CrcStatus, ParseOptions, parse_with};
    /// let bad_crc = b"/ISK5\\2M550T-1012\r\n\r\n1-3:0.2.8(50)\r\n!0000\r\n";
    /// let options = ParseOptions::default().with_check_crc(false);
    /// let telegram = parse_with(bad_crc, options).unwrap();
    /// assert!(matches!(telegram.crc(), CrcStatus::Mismatch { .. }));
    /// ```
    #[must_use]
    pub const fn with_check_crc(mut self, check_crc: bool) -> Self {
        self.check_crc = check_crc;
        self
    }
}

/// The value groups of a line, `(…)(…)…`; iterating gives the text inside each pair of
/// parentheses. (For a DSMR 2.2 gas reading the groups span two lines.)
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Groups<'a>(&'a str);

impl<'a> Groups<'a> {
    /// The groups as sent, parentheses included.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// Checks `(…)(…)…` with nothing but line breaks or spaces between groups, in one pass,
    /// noting the first two groups for the common one- and two-group values.
    fn scan(text: &'a str) -> Option<Scan<'a>> {
        let bytes = text.as_bytes();
        // Most lines hold one group and nothing after it: `(000006.695*kWh)`.
        if let [b'(', inner @ .., b')'] = bytes
            && !inner.iter().any(|&c| c == b'(' || c == b')')
        {
            return Some(Scan {
                groups: Groups(text),
                count: 1,
                first: &text[1..text.len() - 1],
                second: "",
            });
        }
        let mut i = 0;
        let mut scan = Scan {
            groups: Groups(text),
            count: 0,
            first: "",
            second: "",
        };
        while i < bytes.len() {
            match bytes[i] {
                b'(' => {
                    let start = i + 1;
                    let j = start
                        + bytes[start..]
                            .iter()
                            .position(|&c| c == b')' || c == b'(')?;
                    if bytes[j] == b'(' {
                        return None;
                    }
                    match scan.count {
                        0 => scan.first = &text[start..j],
                        1 => scan.second = &text[start..j],
                        _ => {}
                    }
                    scan.count += 1;
                    i = j + 1;
                }
                b'\r' | b'\n' | b' ' | b'\t' => i += 1,
                _ => return None,
            }
        }
        (scan.count > 0).then_some(scan)
    }
}

/// The value groups of a line, checked, with the first two at hand.
#[derive(Clone, Copy)]
struct Scan<'a> {
    groups: Groups<'a>,
    count: u32,
    first: &'a str,
    second: &'a str,
}

impl<'a> Iterator for Groups<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let open = self.0.find('(')?;
        let close = open + self.0[open..].find(')')?;
        let inner = &self.0[open + 1..close];
        self.0 = &self.0[close + 1..];
        Some(inner)
    }
}

/// The typed value of a data line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Value<'a> {
    /// `()`: no value.
    Empty,
    /// A number with an optional unit.
    Number(Quantity<'a>),
    /// A string kept as sent (version, tariff indicator, ids that are not hex).
    Text(&'a str),
    /// A hex octet string (ids, text messages).
    OctetString(OctetString<'a>),
    /// A timestamp; `None` for placeholders.
    Timestamp(Option<Timestamp>),
    /// A capture time and a number (M-Bus readings, Belgian monthly peak).
    TimedNumber {
        /// Capture time; `None` for placeholders.
        time: Option<Timestamp>,
        /// The reading.
        quantity: Quantity<'a>,
    },
    /// Several numbers; see [`Value::numbers`].
    Numbers(Groups<'a>),
    /// Power-failure log; see [`Value::failure_events`].
    FailureLog(Groups<'a>),
    /// Monthly history; see [`Value::history`].
    History(Groups<'a>),
    /// A line whose value groups could not be interpreted; kept as sent.
    Raw(Groups<'a>),
}

/// One entry of the power-failure log `1-0:99.97.0` (DSMR 5.0.2 §6.11).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct FailureEvent<'a> {
    /// When the failure ended; `None` for placeholders.
    pub end: Option<Timestamp>,
    /// How long it lasted (unit `s`).
    pub duration: Quantity<'a>,
}

/// One entry of a monthly history `0-0:98.1.0`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct HistoryEntry<'a> {
    /// The period (month start) the entry belongs to.
    pub period: Option<Timestamp>,
    /// When the value was reached (Belgian peaks); `None` in billing records.
    pub time: Option<Timestamp>,
    /// The value.
    pub quantity: Quantity<'a>,
}

impl<'a> Value<'a> {
    /// The single quantity of `Number` and `TimedNumber` values.
    pub fn quantity(&self) -> Option<Quantity<'a>> {
        match *self {
            Value::Number(q) | Value::TimedNumber { quantity: q, .. } => Some(q),
            _ => None,
        }
    }

    /// The numbers of a `Numbers` value (also of `Number`).
    pub fn numbers(&self) -> impl Iterator<Item = Quantity<'a>> + 'a {
        let (groups, single) = match *self {
            Value::Numbers(g) => (Some(g), None),
            Value::Number(q) => (None, Some(q)),
            _ => (None, None),
        };
        groups
            .into_iter()
            .flatten()
            .filter_map(|g| Quantity::parse(g).ok())
            .chain(single)
    }

    /// The events of a `FailureLog` value, newest first as the meter sends them.
    pub fn failure_events(&self) -> impl Iterator<Item = FailureEvent<'a>> + 'a {
        let groups = match *self {
            Value::FailureLog(g) => Some(g.skip(2)),
            _ => None,
        };
        let mut groups = groups.into_iter().flatten();
        core::iter::from_fn(move || {
            let end = groups.next()?;
            let duration = Quantity::parse(groups.next()?).ok()?;
            Some(FailureEvent {
                end: Timestamp::parse(end).ok().flatten(),
                duration,
            })
        })
    }

    /// The entries of a `History` value.
    pub fn history(&self) -> impl Iterator<Item = HistoryEntry<'a>> + 'a {
        let groups = match *self {
            Value::History(g) => Some(g),
            _ => None,
        };
        let mut groups = groups.into_iter().flatten().peekable();
        // Belgian form starts with a count; the Hungarian billing record with a timestamp.
        let belgian = groups
            .peek()
            .is_some_and(|first| first.bytes().all(|b| b.is_ascii_digit()) && first.len() < 12);
        let mut period = None;
        if belgian {
            groups.next(); // count
            groups.next(); // 1-0:1.6.0
            groups.next(); // 1-0:1.6.0
        } else {
            period = groups
                .next()
                .and_then(|t| Timestamp::parse(t).ok().flatten());
        }
        core::iter::from_fn(move || {
            if belgian {
                let period = Timestamp::parse(groups.next()?).ok().flatten();
                let time = Timestamp::parse(groups.next()?).ok().flatten();
                let quantity = Quantity::parse(groups.next()?).ok()?;
                Some(HistoryEntry {
                    period,
                    time,
                    quantity,
                })
            } else {
                let quantity = Quantity::parse(groups.next()?).ok()?;
                Some(HistoryEntry {
                    period,
                    time: None,
                    quantity,
                })
            }
        })
    }
}

fn is_timestamp(text: &str) -> bool {
    (text.len() == 13 || text.len() == 12) && Timestamp::parse(text).is_ok()
}

/// Interprets the groups according to the registry format.
fn typed<'a>(format: Format, scan: &Scan<'a>) -> Result<Value<'a>, ValueError> {
    let text = scan.groups.as_str();
    let first = scan.first;
    let single = || {
        if scan.count == 1 {
            Ok(())
        } else {
            Err(ValueError::Shape)
        }
    };
    match format {
        Format::Number => {
            single()?;
            if first.is_empty() {
                Ok(Value::Empty)
            } else {
                Quantity::parse(first).map(Value::Number)
            }
        }
        Format::Text => {
            single()?;
            Ok(Value::Text(first))
        }
        Format::OctetString => {
            single()?;
            Ok(match OctetString::new(first) {
                Ok(s) => Value::OctetString(s),
                Err(_) => Value::Text(first),
            })
        }
        Format::Timestamp => {
            single()?;
            Timestamp::parse(first).map(Value::Timestamp)
        }
        Format::TimedNumber => {
            if scan.count != 2 {
                return Err(ValueError::Shape);
            }
            Ok(Value::TimedNumber {
                // A malformed capture time is a placeholder: the reading still counts.
                time: Timestamp::parse(first).ok().flatten(),
                quantity: Quantity::parse(scan.second)?,
            })
        }
        Format::Numbers => {
            for g in Groups(text) {
                Quantity::parse(g)?;
            }
            Ok(Value::Numbers(Groups(text)))
        }
        Format::FailureLog => {
            let log = Value::FailureLog(Groups(text));
            if first.is_empty() && scan.count == 1 {
                return Ok(log);
            }
            let count: usize = first.parse().map_err(|_| ValueError::Number)?;
            let mut rest = Groups(text);
            rest.next();
            if count == 0 && scan.count == 1 {
                return Ok(log);
            }
            rest.next().ok_or(ValueError::Shape)?; // 0-0:96.7.19
            let mut pairs = 0;
            while let Some(end) = rest.next() {
                Timestamp::parse(end)?;
                Quantity::parse(rest.next().ok_or(ValueError::Shape)?)?;
                pairs += 1;
            }
            if pairs != count {
                return Err(ValueError::Shape);
            }
            Ok(log)
        }
        Format::History => {
            let value = Value::History(Groups(text));
            let expected = Groups(text).count();
            let belgian = first.bytes().all(|b| b.is_ascii_digit()) && first.len() < 12;
            let parsed = value.history().count();
            let needed = if belgian {
                3 + 3 * parsed + 1
            } else {
                1 + parsed + 1
            };
            if needed != expected + 1 {
                return Err(ValueError::Shape);
            }
            Ok(value)
        }
        Format::LegacyReading => {
            // (ts)(00)(60)(1)(0-n:24.2.1)(unit) then (value) on the next line.
            let all: [Option<&str>; 8] = {
                let mut it = Groups(text);
                core::array::from_fn(|_| it.next())
            };
            match all {
                [
                    Some(ts),
                    Some(_),
                    Some(_),
                    Some(_),
                    Some(_),
                    Some(unit),
                    Some(value),
                    None,
                ] => {
                    let value = Decimal::parse(value)?;
                    Ok(Value::TimedNumber {
                        time: Timestamp::parse(ts).ok().flatten(),
                        quantity: Quantity {
                            value,
                            unit: (!unit.is_empty()).then_some(unit),
                        },
                    })
                }
                _ => Err(ValueError::Shape),
            }
        }
    }
}

/// Interprets the groups of a line whose OBIS code the registry does not know.
fn generic<'a>(obis: Obis, scan: &Scan<'a>) -> Value<'a> {
    let text = scan.groups.as_str();
    let first = scan.first;
    match scan.count {
        1 => {
            if first.is_empty() {
                Value::Empty
            } else if registry::is_text_code(obis) {
                // Versions, firmware checksums, ids, status words: text that may start with
                // digits (`02.21`, `1EA43311`) is never a number. Identifiers in hex are
                // octet strings, as the registry's identifiers.
                match OctetString::new(first) {
                    Ok(s) if (obis.c, obis.d) == (96, 1) => Value::OctetString(s),
                    _ => Value::Text(first),
                }
            } else if first.len() == 13 && is_timestamp(first) {
                // Before the number: `180130102122W` is a time, not 180130102122 watts.
                Value::Timestamp(Timestamp::parse(first).ok().flatten())
            } else if let Ok(q) = Quantity::parse(first) {
                Value::Number(q)
            } else if let Ok(s) = OctetString::new(first) {
                Value::OctetString(s)
            } else {
                Value::Text(first)
            }
        }
        2 if is_timestamp(first) => match Quantity::parse(scan.second) {
            Ok(quantity) => Value::TimedNumber {
                time: Timestamp::parse(first).ok().flatten(),
                quantity,
            },
            Err(_) => Value::Raw(Groups(text)),
        },
        _ => {
            if Groups(text).all(|g| Quantity::parse(g).is_ok()) {
                Value::Numbers(Groups(text))
            } else {
                Value::Raw(Groups(text))
            }
        }
    }
}

/// One data line `A-B:C.D.E(…)(…)`.
///
/// Parsing finds the code and checks the shape of the value groups; the typed value is
/// computed when asked ([`DataObject::value`]), so that a telegram whose values are not all
/// read costs only its framing.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct DataObject<'a> {
    /// The OBIS code.
    pub obis: Obis,
    /// The code as sent, without a `*255` suffix.
    pub code: &'a str,
    /// The registry entry, `None` for codes the registry does not know.
    pub def: Option<&'static ObisDef>,
    /// The whole line (see [`DataObject::line`]); private, as the bounds below are its.
    line: &'a str,
    /// Where the value groups start in `line`.
    groups_at: u16,
    /// The parser saw that the value fits the registry format (`false` says nothing).
    fits: bool,
    /// How many groups the parser saw: 1 or 2, their bounds known; 0: scan them again.
    count: u8,
    /// Where the second group starts in `line` (with `count` 2).
    second_at: u32,
}

impl<'a> DataObject<'a> {
    /// The whole line as sent (two lines for a DSMR 2.2 gas reading), without line end.
    pub fn line(&self) -> &'a str {
        self.line
    }

    /// The value groups as sent, `(…)(…)`.
    pub fn groups(&self) -> Groups<'a> {
        Groups(&self.line[usize::from(self.groups_at)..])
    }

    /// The typed value, interpreted by the registry format of the code (or, for codes the
    /// registry does not know, by its look); [`Value::Raw`] when the groups do not fit the
    /// format. Computed on each call, from the line.
    ///
    /// # Example
    /// ```
    /// use smarty_p1::Value;
    /// let t = smarty_p1::parse(b"/X\r\n\r\n1-0:1.8.0(000006.695*kWh)\r\n!").unwrap();
    /// let Value::Number(q) = t.objects()[0].value() else { panic!() };
    /// assert_eq!((q.value.to_string().as_str(), q.unit), ("6.695", Some("kWh")));
    /// ```
    #[inline]
    pub fn value(&self) -> Value<'a> {
        let text = &self.line[usize::from(self.groups_at)..];
        // Most values: one plain number, as the parser saw.
        if self.fits
            && self.count == 1
            && let Some(def) = self.def
            && def.format == Format::Number
        {
            let first = &text[1..text.len() - 1];
            return if first.is_empty() {
                Value::Empty
            } else {
                Value::Number(Quantity::parse_plain(first))
            };
        }
        let scan = match self.count {
            1 => Scan {
                groups: Groups(text),
                count: 1,
                first: &text[1..text.len() - 1],
                second: "",
            },
            2 => Scan {
                groups: Groups(text),
                count: 2,
                first: &text[1..self.second_at as usize - 1],
                second: &text[self.second_at as usize + 1..text.len() - 1],
            },
            // The parser made an object only of a line whose groups scan.
            _ => match Groups::scan(text) {
                Some(scan) => scan,
                None => return Value::Raw(Groups(text)),
            },
        };
        match self.def {
            Some(def) => typed(def.format, &scan).unwrap_or(Value::Raw(scan.groups)),
            None => generic(self.obis, &scan),
        }
    }

    /// `true` when the registry knows the code and the value fit its format.
    pub fn is_understood(&self) -> bool {
        let Some(def) = self.def else {
            return false;
        };
        if self.fits {
            return true;
        }
        // Most values are one plain number, text or timestamp, which fit without being
        // converted.
        let at = usize::from(self.groups_at);
        let groups = &self.line.as_bytes()[at..];
        if let [b'(', inner @ .., b')'] = groups {
            let fits = match def.format {
                Format::Number => {
                    inner.is_empty()
                        || line::group(groups, 0)
                            .is_some_and(|(close, plain)| plain && close == groups.len() - 1)
                }
                Format::Text | Format::OctetString => {
                    !inner.iter().any(|&b| b == b'(' || b == b')')
                }
                Format::Timestamp => {
                    Timestamp::parse(&self.line[at + 1..self.line.len() - 1]).is_ok()
                }
                _ => false,
            };
            if fits {
                return true;
            }
        }
        !matches!(self.value(), Value::Raw(_))
    }

    /// A DSMR 2.2 gas reading still waiting for its value line.
    fn is_waiting_for_value(&self) -> bool {
        self.def.is_some_and(|d| d.format == Format::LegacyReading)
            && matches!(self.value(), Value::Raw(_))
    }
}

/// A parsed telegram, borrowing from the bytes it was parsed from.
///
/// # Example
/// ```
/// let bytes = b"/Lux5\\253663629_D\r\n\r\n1-3:0.2.8(42)\r\n0-0:1.0.0(180130102122W)\r\n\
/// 0-0:42.0.0(53414731303330373030313134303034)\r\n1-0:1.8.0(000006.695*kWh)\r\n\
/// 1-0:3.7.0(00.000)\r\n!";
/// let telegram = smarty_p1::parse(bytes).unwrap();
/// assert_eq!(telegram.header_str(), "Lux5\\253663629_D");
/// assert_eq!(telegram.meter_id().as_deref(), Some("SAG1030700114004"));
/// let energy = telegram.get("1-0:1.8.0").unwrap();
/// assert_eq!(telegram.name_of(energy).unwrap().to_string(), "energy_import_kwh");
/// assert_eq!(energy.value().quantity().unwrap().value.to_string(), "6.695");
/// // 1-0:3.7.0 without unit (2018 firmware) is still named with the registry unit.
/// let q = telegram.get("1-0:3.7.0").unwrap();
/// assert_eq!(telegram.name_of(q).unwrap().to_string(), "reactive_power_import_kvar");
/// ```
#[derive(Clone, Debug)]
pub struct Telegram<'a> {
    raw: &'a [u8],
    header: &'a [u8],
    crc: CrcStatus,
    terminated: bool,
    objects: Vec<DataObject<'a>>,
    /// Lines that are no data object, in the order sent.
    other_lines: Vec<&'a [u8]>,
    /// Every object's value was seen to fit its registry format as it was parsed.
    all_fit: bool,
}

/// Parses one telegram, checking its CRC.
///
/// # Errors
/// See [`TelegramError`]: no `/` header, a CRC mismatch, or a damaged CRC line (only a bare
/// `!` means "no CRC"). Lines that cannot be understood never fail the telegram; they are
/// listed in [`Telegram::unknown_lines`].
pub fn parse(bytes: &[u8]) -> Result<Telegram<'_>, TelegramError> {
    parse_with(bytes, ParseOptions::default())
}

/// Parses one telegram with options.
///
/// # Errors
/// As [`parse`]; with `check_crc` off a CRC mismatch or a damaged CRC line is reported in
/// [`Telegram::crc`] instead.
pub fn parse_with(bytes: &[u8], options: ParseOptions) -> Result<Telegram<'_>, TelegramError> {
    let (mut telegram, body) = frame_telegram(bytes, options)?;
    // Telegrams are ASCII: validate the body once, then every line is a slice of it.
    let text = utf8(body);
    telegram.read_lines(bytes, body, text);
    Ok(telegram)
}

/// As [`parse`], reading the lines from `layout` (the last telegram's) when they have the
/// same shape, and keeping this telegram's layout in it otherwise.
pub(crate) fn parse_with_layout<'a>(
    bytes: &'a [u8],
    layout: &mut Layout,
) -> Result<Telegram<'a>, TelegramError> {
    let (mut telegram, body) = frame_telegram(bytes, ParseOptions::default())?;
    layout.read(&mut telegram, bytes, body);
    Ok(telegram)
}

/// The telegram's frame: the header, the end line and the CRC checked, no lines read yet
/// (`objects` empty); and the body, the bytes between the header and the `!` line.
pub(crate) fn frame_telegram(
    bytes: &[u8],
    options: ParseOptions,
) -> Result<(Telegram<'_>, &[u8]), TelegramError> {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
        .ok_or(TelegramError::NoHeader)?;
    if bytes[start] != b'/' {
        return Err(TelegramError::NoHeader);
    }
    let header_nl = memchr::memchr(b'\n', &bytes[start..]).ok_or(TelegramError::BadHeader)? + start;
    let header = trim_cr(&bytes[start + 1..header_nl]);
    let end = find_end(bytes, header_nl);
    let (body_end, raw_end, crc, terminated) = match &end {
        Some(end) => {
            let crc = crc_of(bytes, start, end);
            match (options.check_crc, crc) {
                (true, CrcStatus::Mismatch { expected, computed }) => {
                    return Err(TelegramError::CrcMismatch { expected, computed });
                }
                (true, CrcStatus::Malformed) => return Err(TelegramError::BadCrc),
                _ => {}
            }
            (end.bang, end.end, crc, true)
        }
        None => (bytes.len(), bytes.len(), CrcStatus::Absent, false),
    };

    let body = &bytes[header_nl + 1..body_end];
    let telegram = Telegram {
        raw: &bytes[start..raw_end],
        header,
        crc,
        terminated,
        // About one object per 20 bytes; one reallocation at most on unusual telegrams.
        objects: Vec::with_capacity(body.len() / 20 + 4),
        other_lines: Vec::new(),
        all_fit: true,
    };
    Ok((telegram, body))
}

impl<'a> Telegram<'a> {
    /// Reads the lines of `body` (a part of `bytes`; `text` is `body` when it is UTF-8).
    pub(crate) fn read_lines(&mut self, bytes: &'a [u8], body: &'a [u8], text: Option<&'a str>) {
        let telegram = self;
        let mut at = 0;
        while at < body.len() {
            let rest = &body[at..];
            // Most lines: a known code, one or two groups, the line end.
            if let Some(text) = text
                && let Some((obis, def, code_len)) = registry::known_prefix(rest)
                && let Some(groups) = line::groups(&rest[code_len..])
            {
                let line = &text[at..at + code_len + groups.len];
                let fits = match (def.format, groups.count) {
                    (Format::Number, 1) => groups.plain_number || groups.len == 2,
                    (Format::Text | Format::OctetString, 1) => true,
                    (Format::Timestamp, 1) => {
                        Timestamp::parse(&line[code_len + 1..line.len() - 1]).is_ok()
                    }
                    // A malformed capture time is a placeholder: the number decides.
                    (Format::TimedNumber, 2) => groups.plain_number,
                    _ => false,
                };
                telegram.all_fit &= fits;
                telegram.objects.push(DataObject {
                    obis,
                    code: &line[..code_len],
                    def: Some(def),
                    line,
                    // Known codes are at most 15 bytes long.
                    groups_at: code_len as u16,
                    fits,
                    count: groups.count,
                    second_at: groups.second_at,
                });
                at += code_len + groups.next;
                continue;
            }
            let line_end = memchr::memchr(b'\n', rest).map_or(body.len(), |i| at + i);
            let end = if line_end > at && body[line_end - 1] == b'\r' {
                line_end - 1
            } else {
                line_end
            };
            let line = &body[at..end];
            let line_text = match text {
                Some(text) => Some(&text[at..end]),
                None => core::str::from_utf8(line).ok(),
            };
            at = line_end + 1;
            if line.is_empty() || (line[0].is_ascii_whitespace() && line.trim_ascii().is_empty()) {
                continue;
            }
            telegram.add_line(bytes, line, line_text);
        }
    }
}

/// `bytes` as text when they are UTF-8.
#[inline]
pub(crate) fn utf8(bytes: &[u8]) -> Option<&str> {
    #[cfg(all(
        any(target_arch = "x86_64", target_arch = "aarch64"),
        not(target_os = "none")
    ))]
    return simdutf8::basic::from_utf8(bytes).ok();
    #[cfg(not(all(
        any(target_arch = "x86_64", target_arch = "aarch64"),
        not(target_os = "none")
    )))]
    return core::str::from_utf8(bytes).ok();
}

fn trim_cr(line: &[u8]) -> &[u8] {
    match line.last() {
        Some(b'\r') => &line[..line.len() - 1],
        _ => line,
    }
}

impl<'a> Telegram<'a> {
    fn add_line(&mut self, all: &'a [u8], line: &'a [u8], text: Option<&'a str>) {
        let Some(text) = text else {
            self.other_lines.push(line);
            return;
        };
        if text.starts_with('(') {
            // Continuation: the DSMR 2.2/3 gas value on the line after 0-n:24.3.0.
            if let Some(last) = self.objects.last_mut()
                && last.is_waiting_for_value()
            {
                let from = last.line.as_ptr() as usize - all.as_ptr() as usize;
                let to = line.as_ptr() as usize - all.as_ptr() as usize + line.len();
                if let Ok(joined) = core::str::from_utf8(&all[from..to])
                    && let Some(scan) = Groups::scan(&joined[usize::from(last.groups_at)..])
                    && typed(Format::LegacyReading, &scan).is_ok()
                {
                    last.line = joined;
                    return;
                }
            }
            self.other_lines.push(line);
            return;
        }
        // Known codes by their text (most lines); any other spelling parsed.
        let (obis, code_len, prefix_len, def) = match registry::known_prefix(line) {
            Some((obis, def, len)) => (obis, len, len, Some(def)),
            None => {
                let Some((obis, code_len, prefix_len)) = Obis::parse_prefix_full(line) else {
                    self.other_lines.push(line);
                    return;
                };
                (obis, code_len, prefix_len, registry::lookup(obis))
            }
        };
        let (Some(_), Ok(groups_at)) =
            (Groups::scan(&text[prefix_len..]), u16::try_from(prefix_len))
        else {
            self.other_lines.push(line);
            return;
        };
        self.objects.push(DataObject {
            obis,
            code: &text[..code_len],
            def,
            line: text,
            groups_at,
            fits: false,
            count: 0,
            second_at: 0,
        });
        self.all_fit = false;
    }

    /// The telegram bytes from `/` through the CRC line (line end included when sent).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The identification line without `/` and line end, e.g. `Lux5\253663629_D`.
    pub fn header(&self) -> &'a [u8] {
        self.header
    }

    /// The identification line as text: printable ASCII as sent (a backslash too, as in
    /// `Lux5\253663629_D`), every other byte escaped as `\xHH` (a header that a meter or a
    /// gateway sent with bytes above ASCII or control bytes, e.g. `ISk5\x02MIE5T-200`).
    /// Borrows when nothing needs escaping.
    pub fn header_str(&self) -> Cow<'a, str> {
        let printable = |b: &u8| (0x20..0x7f).contains(b);
        if let Some(text) = self
            .header
            .iter()
            .all(printable)
            .then(|| core::str::from_utf8(self.header).ok())
            .flatten()
        {
            return Cow::Borrowed(text);
        }
        let mut text = String::with_capacity(self.header.len() + 8);
        for b in self.header {
            if printable(b) {
                text.push(char::from(*b));
            } else {
                let _ = fmt::Write::write_fmt(&mut text, format_args!("\\x{b:02X}"));
            }
        }
        Cow::Owned(text)
    }

    /// The CRC state.
    pub fn crc(&self) -> CrcStatus {
        self.crc
    }

    /// `false` when the telegram had no `!` end line.
    pub fn is_terminated(&self) -> bool {
        self.terminated
    }

    /// Every data line with an OBIS code, in the order sent.
    pub fn objects(&self) -> &[DataObject<'a>] {
        &self.objects
    }

    /// Lines that were not fully understood, in the order sent: not a data line, an OBIS code
    /// the registry does not know, or a value that does not fit its code's format (the
    /// objects among them are still in [`Telegram::objects`]); last, DSMR 2.2 gas readings
    /// whose value line never came. Types every value to tell.
    pub fn unknown_lines(&self) -> Vec<&'a [u8]> {
        let mut lines = Vec::new();
        let mut waiting = Vec::new();
        let mut others = self.other_lines.iter().copied().peekable();
        for object in &self.objects {
            if object.is_waiting_for_value() {
                waiting.push(object.line.as_bytes());
            } else if !object.is_understood() {
                let at = object.line.as_ptr();
                while let Some(other) = others.next_if(|o| o.as_ptr() < at) {
                    lines.push(other);
                }
                lines.push(object.line.as_bytes());
            }
        }
        lines.extend(others);
        lines.extend(waiting);
        lines
    }

    /// `true` when [`Telegram::unknown_lines`] would list any line.
    pub fn has_unknown_lines(&self) -> bool {
        !self.other_lines.is_empty()
            || (!self.all_fit && self.objects.iter().any(|o| !o.is_understood()))
    }

    /// The object for a code written as text (`"1-0:1.8.0"`).
    pub fn get(&self, code: &str) -> Option<&DataObject<'a>> {
        let (obis, _) = Obis::parse_prefix(code.as_bytes())?;
        self.get_obis(obis)
    }

    /// The object for a code.
    pub fn get_obis(&self, obis: Obis) -> Option<&DataObject<'a>> {
        self.objects.iter().find(|o| o.obis == obis)
    }

    /// The P1 version (`1-3:0.2.8`): `42` on Smarty, `50` on DSMR 5.
    pub fn version(&self) -> Option<&'a str> {
        match self.get_obis(Obis::new(1, 3, 0, 2, 8))?.value() {
            Value::Text(v) => Some(v),
            _ => None,
        }
    }

    /// The telegram's time (`0-0:1.0.0`); `None` when absent or a placeholder.
    pub fn timestamp(&self) -> Option<Timestamp> {
        match self.get_obis(Obis::new(0, 0, 1, 0, 0))?.value() {
            Value::Timestamp(t) => t,
            _ => None,
        }
    }

    /// The meter id: `0-0:42.0.0` (Smarty) or `0-0:96.1.1` (DSMR) decoded to text, or its hex
    /// digits as sent when they are not printable text (some meters send binary ids);
    /// `None` when neither is sent or both are empty.
    pub fn meter_id(&self) -> Option<String> {
        [Obis::new(0, 0, 42, 0, 0), Obis::new(0, 0, 96, 1, 1)]
            .into_iter()
            .filter_map(|code| self.get_obis(code))
            .find_map(|o| match o.value() {
                Value::OctetString(s) if !s.is_empty() => Some(s.text_or_hex()),
                Value::Text(t) if !t.is_empty() => Some(String::from(t)),
                _ => None,
            })
    }

    /// The medium of M-Bus channel `n` (1–9) from its device type line `0-n:24.1.0` (the last
    /// one that holds a device type, when a telegram sends several).
    pub fn medium(&self, channel: u8) -> Option<Medium> {
        if !(1..=9).contains(&channel) {
            return None;
        }
        self.objects
            .iter()
            .rev()
            .filter(|o| {
                o.obis.b == channel && o.def.is_some_and(|d| d.kind == Kind::MbusDeviceType)
            })
            .find_map(|o| match o.value() {
                Value::Number(q) if q.value.is_integer() => u8::try_from(q.value.mantissa())
                    .ok()
                    .map(Medium::from_device_type),
                _ => None,
            })
    }

    /// The standard name of an object with its unit (`energy_import_kwh`, `voltage_l1_v`,
    /// `mbus1_gas_m3`); `None` for codes the registry does not know.
    pub fn name_of(&self, object: &DataObject<'a>) -> Option<Name<'a>> {
        self.name_of_value(object, &object.value())
    }

    /// [`Telegram::name_of`] for an object whose value is at hand (`value` is
    /// `object.value()`), so that it is not converted again.
    pub fn name_of_value(&self, object: &DataObject<'a>, value: &Value<'a>) -> Option<Name<'a>> {
        let def = object.def?;
        let sent_unit = value
            .quantity()
            .and_then(|q| q.unit)
            .or_else(|| value.numbers().next().and_then(|q| q.unit));
        let (medium, unit) = if def.kind == Kind::MbusReading && def.a == 0 {
            let medium = self.medium(object.obis.b);
            let unit = sent_unit.or_else(|| medium.and_then(|m| m.default_unit()));
            (Some(medium.unwrap_or(Medium::Other(0))), unit)
        } else {
            (None, sent_unit.or(def.unit))
        };
        Some(Name {
            template: def.name,
            channel: object.obis.b,
            medium,
            unit,
        })
    }
}

/// A value name: the registry name with its M-Bus channel, medium and unit filled in.
/// Displays as snake_case, e.g. `mbus1_gas_m3`.
#[derive(Clone, Copy, Debug)]
pub struct Name<'a> {
    template: &'static str,
    channel: u8,
    medium: Option<Medium>,
    unit: Option<&'a str>,
}

impl<'a> Name<'a> {
    /// A name from its parts: a registry name ([`ObisDef::name`](crate::registry::ObisDef),
    /// `{n}` standing for the M-Bus channel), the channel, the medium of an M-Bus reading and
    /// the unit (written in lower case letters and digits).
    ///
    /// # Example
    /// ```
    /// use smarty_p1::{Name, registry::Medium};
    /// let gas = Name::new("mbus{n}", 1, Some(Medium::Gas), Some("m3"));
    /// assert_eq!(gas.to_string(), "mbus1_gas_m3");
    /// assert_eq!(Name::new("voltage_l1", 0, None, Some("V")).to_string(), "voltage_l1_v");
    /// ```
    pub fn new(
        template: &'static str,
        channel: u8,
        medium: Option<Medium>,
        unit: Option<&'a str>,
    ) -> Name<'a> {
        Name {
            template,
            channel,
            medium,
            unit,
        }
    }

    /// The registry name, `{n}` standing for the M-Bus channel.
    pub fn template(&self) -> &'static str {
        self.template
    }

    /// The channel (OBIS group B) that `{n}` stands for.
    pub fn channel(&self) -> u8 {
        self.channel
    }

    /// The medium the name carries: that of an M-Bus reading's channel
    /// ([`Medium::Other`] when the telegram does not say), `None` for every other value.
    pub fn medium(&self) -> Option<Medium> {
        self.medium
    }

    /// The unit the name ends with, as sent (`kWh`, `m3`), else the one the medium or the
    /// specification gives; `None` when there is none.
    pub fn unit(&self) -> Option<&'a str> {
        self.unit
    }
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.template.split_once("{n}") {
            Some((before, after)) => write!(f, "{before}{}{after}", self.channel)?,
            None => f.write_str(self.template)?,
        }
        if let Some(medium) = self.medium {
            write!(f, "_{}", medium.as_str())?;
        }
        if let Some(unit) = self.unit {
            f.write_str("_")?;
            for c in unit.chars().filter(char::is_ascii_alphanumeric) {
                write!(f, "{}", c.to_ascii_lowercase())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;
    use alloc::vec;

    /// `/HEADER`, an empty line, `lines`, then `!` and the CRC (`crc_digits` of them, 0 for
    /// none) and `after`.
    fn telegram(header: &[u8], lines: &[&str], crc_digits: usize, after: &[u8]) -> Vec<u8> {
        let mut t = vec![b'/'];
        t.extend_from_slice(header);
        t.extend_from_slice(b"\r\n\r\n");
        for line in lines {
            t.extend_from_slice(line.as_bytes());
            t.extend_from_slice(b"\r\n");
        }
        t.push(b'!');
        let crc = crc16_arc(&t);
        let hex = format!("{crc:04X}");
        t.extend_from_slice(&hex.as_bytes()[4 - crc_digits..]);
        t.extend_from_slice(after);
        t
    }

    const LINES: &[&str] = &[
        "1-3:0.2.8(42)",
        "0-0:1.0.0(180130102122W)",
        "1-0:1.8.0(000006.695*kWh)",
    ];

    /// The CRC digits of a valid telegram, each replaced by every byte that is neither a line
    /// end nor the same digit: never accepted, never "CRC absent".
    #[test]
    fn a_garbled_crc_is_never_absent_nor_accepted() {
        let good = telegram(b"XYZ5TEST", LINES, 4, b"\r\n");
        assert_eq!(parse(&good).unwrap().crc(), CrcStatus::Valid);
        let bang = good.iter().rposition(|&b| b == b'!').unwrap();
        for at in bang + 1..bang + 5 {
            for byte in 0..=255u8 {
                // The same digit in the other case is the same CRC.
                if byte.eq_ignore_ascii_case(&good[at]) || byte == b'\r' || byte == b'\n' {
                    continue;
                }
                let mut bad = good.clone();
                bad[at] = byte;
                let shown = String::from_utf8_lossy(&bad[bang..]).into_owned();
                let err = parse(&bad).expect_err(&shown);
                assert!(
                    matches!(
                        err,
                        TelegramError::BadCrc | TelegramError::CrcMismatch { .. }
                    ),
                    "{shown:?}: {err:?}"
                );
                let lenient = parse_with(&bad, ParseOptions { check_crc: false }).unwrap();
                assert!(
                    !matches!(lenient.crc(), CrcStatus::Valid | CrcStatus::Absent),
                    "{shown:?}: {:?}",
                    lenient.crc()
                );
                assert_ne!(crc_status(&bad), CrcStatus::Absent, "{shown:?}");
            }
        }
    }

    #[test]
    fn what_follows_the_bang() {
        let absent = |after: &[u8]| telegram(b"XYZ5TEST", LINES, 0, after);
        // A bare '!': no CRC, however the line ends (or does not).
        for after in [&b"\r\n"[..], b"\n", b""] {
            let t = absent(after);
            assert_eq!(parse(&t).unwrap().crc(), CrcStatus::Absent, "{after:?}");
        }
        // EasyMeter behind a COM-1 gateway: a bare '!' and lines appended after it.
        let easymeter = absent(b"\r\n  25803103\r\n\xFF\xFF\xFF\xFF\r\n");
        let parsed = parse(&easymeter).unwrap();
        assert_eq!(parsed.crc(), CrcStatus::Absent);
        assert!(parsed.raw().ends_with(b"!\r\n"));
        // Three or four digits: checked, with or without the line end.
        for digits in [3, 4] {
            for after in [&b"\r\n"[..], b"\n", b""] {
                let t = telegram(b"XYZ5TEST", LINES, digits, after);
                let crc = crc16_arc(&t[..=t.iter().rposition(|&b| b == b'!').unwrap()]);
                if digits == 3 && crc > 0xFFF {
                    assert!(
                        matches!(parse(&t), Err(TelegramError::CrcMismatch { .. })),
                        "{digits} digits of {crc:04X}"
                    );
                } else {
                    assert_eq!(parse(&t).unwrap().crc(), CrcStatus::Valid);
                }
            }
        }
        // What follows the CRC on its line belongs to the end line; the CRC still decides.
        let t = telegram(b"XYZ5TEST", LINES, 4, b" 25803103\r\n/next");
        let parsed = parse(&t).unwrap();
        assert_eq!(parsed.crc(), CrcStatus::Valid);
        assert_eq!(parsed.raw().len(), t.len() - 5);
        // Anything else after '!' is a damaged CRC line.
        for after in [
            &b"q626\r\n"[..],
            b" 626\r\n",
            b"\t\r\n",
            b" \r\n",
            b"6\r\n",
            b"62\r\n",
            b"62626\r\n",
            b"\xFF\r\n",
            b"\x00",
            b"\r626\r\n",
            b"/626\r\n",
            b"\r\x00",
        ] {
            let t = absent(after);
            assert_eq!(
                parse(&t).unwrap_err(),
                TelegramError::BadCrc,
                "{:?}",
                String::from_utf8_lossy(after)
            );
            let lenient = parse_with(&t, ParseOptions { check_crc: false }).unwrap();
            assert_eq!(lenient.crc(), CrcStatus::Malformed);
            assert_eq!(lenient.crc().as_str(), "malformed");
        }
    }

    fn value_of<'a>(t: &'a Telegram<'a>, code: &str) -> Value<'a> {
        t.get(code).unwrap_or_else(|| panic!("no {code}")).value()
    }

    /// Firmware versions and checksums (Lithuanian meters send them on every telegram), ids,
    /// status words, date and time: text that starts with digits stays text, exactly.
    #[test]
    fn text_that_starts_with_digits_is_text() {
        let lines = [
            "1-0:0.2.0(02.21)",
            "1-0:0.2.8(1EA43311)",
            "1-1:0.2.0(02.13)",
            "1-1:0.2.8(047C71F1)",
            "1-2:0.2.0(1.0.3)",
            "1-0:0.2.1(0012AB)",
            "0-0:0.2.0(10kW)",
            "1-0:0.9.1(083012)",
            "1-0:0.9.2(250101)",
            "0-0:97.97.0(00000000)",
            "0-0:96.5.0(001C)",
            "0-0:96.1.4(50217)",
            "0-0:96.14.0(0002)",
            "1-0:96.1.0(1234567A)",
            "0-0:96.1.255(1ESY1313002565)",
        ];
        let t = telegram(b"XYZ5TEST", &lines, 4, b"\r\n");
        let t = parse(&t).unwrap();
        for line in lines {
            let code = &line[..line.find('(').unwrap()];
            let sent = &line[code.len() + 1..line.len() - 1];
            match value_of(&t, code) {
                Value::Text(text) => assert_eq!(text, sent, "{line}"),
                Value::OctetString(s) => assert_eq!(s.hex(), sent, "{line}"),
                other => panic!("{line}: {other:?}"),
            }
        }
        // Named and understood where the registry knows them.
        let firmware = t.get("1-0:0.2.8").unwrap();
        assert_eq!(
            t.name_of(firmware).unwrap().to_string(),
            "firmware_core_signature"
        );
        for known in ["1-0:0.2.0", "1-0:0.2.8", "1-1:0.2.0", "1-1:0.2.8"] {
            assert!(t.get(known).unwrap().is_understood(), "{known}");
        }
    }

    /// A unit written without `*` counts only when it is a known unit: otherwise the value is
    /// not a number with a made-up unit.
    #[test]
    fn a_unit_without_star_must_be_a_known_unit() {
        let lines = [
            "1-0:1.8.0(001247.747kWh)",
            "1-0:31.7.0(005A)",
            "1-0:32.7.0(234.5V)",
            "1-0:1.8.1(1EA43311)",
            "1-0:99.99.9(1EA43311)",
            "1-0:99.99.8(0E9)",
            "0-0:96.99.0(180130102122W)",
        ];
        let t = telegram(b"XYZ5TEST", &lines, 4, b"\r\n");
        let t = parse(&t).unwrap();
        let q = |code| {
            value_of(&t, code)
                .quantity()
                .map(|q| (q.value.to_string(), q.unit))
        };
        assert_eq!(q("1-0:1.8.0"), Some(("1247.747".into(), Some("kWh"))));
        assert_eq!(q("1-0:31.7.0"), Some(("5".into(), Some("A"))));
        assert_eq!(q("1-0:32.7.0"), Some(("234.5".into(), Some("V"))));
        // A known energy register with a value that is no number: not understood, no value.
        assert!(matches!(value_of(&t, "1-0:1.8.1"), Value::Raw(_)));
        assert!(
            t.unknown_lines()
                .iter()
                .any(|l| l.starts_with(b"1-0:1.8.1"))
        );
        // Unknown codes: kept as sent (hex digits, even count: an octet string).
        assert!(matches!(value_of(&t, "1-0:99.99.9"), Value::OctetString(_)));
        assert!(matches!(value_of(&t, "1-0:99.99.8"), Value::Text("0E9")));
        // Twelve digits and S/W is a time, not a number in watts.
        assert!(matches!(
            value_of(&t, "0-0:96.99.0"),
            Value::Timestamp(Some(_))
        ));
    }

    #[test]
    fn a_header_with_bytes_above_ascii_is_kept_and_shown_escaped() {
        let t = telegram(b"Lux5\xAB3663629_D", LINES, 4, b"\r\n");
        let parsed = parse(&t).unwrap();
        assert_eq!(parsed.header(), b"Lux5\xAB3663629_D");
        assert_eq!(parsed.header_str(), "Lux5\\xAB3663629_D");
        let t = telegram(b"ISk5\x02MIE5T-200", LINES, 4, b"\r\n");
        assert_eq!(parse(&t).unwrap().header_str(), "ISk5\\x02MIE5T-200");
        let t = telegram(b"Lux5\\253663629_D", LINES, 4, b"\r\n");
        assert!(matches!(parse(&t).unwrap().header_str(), Cow::Borrowed(_)));
    }

    #[test]
    fn meter_id_falls_back_to_the_hex_of_an_id_that_is_not_text() {
        let id = |line: &str| {
            let t = telegram(b"XYZ5TEST", &[line], 4, b"\r\n");
            let t = parse(&t).unwrap();
            t.meter_id()
        };
        assert_eq!(
            id("0-0:96.1.1(4530303331303033303031363939353135)").as_deref(),
            Some("E0031003001699515")
        );
        assert_eq!(
            id("0-0:96.1.1(1234567890123456789012345678)").as_deref(),
            Some("1234567890123456789012345678")
        );
        assert_eq!(
            id("0-0:42.0.0(ADC3100000158491)").as_deref(),
            Some("ADC3100000158491")
        );
        assert_eq!(
            id("0-0:96.1.1(00000000000000)").as_deref(),
            Some("00000000000000")
        );
        assert_eq!(
            id("0-0:96.1.1(serienummer)").as_deref(),
            Some("serienummer")
        );
        assert_eq!(id("0-0:96.1.1()"), None);
    }

    #[test]
    fn an_empty_line_before_the_bang() {
        let t = telegram(
            b"ELS5\\@V10.04",
            &["1-0:1.8.0(000123.456*kWh)", ""],
            4,
            b"\r\n",
        );
        let parsed = parse(&t).unwrap();
        assert_eq!(parsed.crc(), CrcStatus::Valid);
        assert_eq!(parsed.objects().len(), 1);
        assert!(parsed.unknown_lines().is_empty());
    }
}
