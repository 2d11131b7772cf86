//! Streaming framing: bytes in, complete frames and telegrams out.
//!
//! [`FrameDecoder`] takes bytes in chunks of any size and yields
//! - encrypted frames (`0xDB` general-glo-ciphering APDUs, [`crate::EncryptedFrame`]), delimited by
//!   their length field, and
//! - plaintext telegrams from `/` through `!CRC` and its line end, for meters that send in
//!   the clear.
//!
//! It resynchronises after garbage, truncated frames, fake headers and `0xDB` bytes inside
//! ciphertext (reference §3.5):
//! - a `0xDB` starts a frame only if the whole header is plausible (title length 8, a BER
//!   length that fits the frame size cap, security byte `0x30`);
//! - a complete frame that contains the start of another frame of the same system title was
//!   cut short (cable unplugged mid-frame): it is dropped and decoding resumes at the inner
//!   frame;
//! - a caller whose decryption fails calls [`FrameDecoder::reject`], and the decoder rescans
//!   the rejected frame's bytes from its second byte, so a valid frame hidden behind a fake
//!   header is still found;
//! - with timestamps ([`FrameDecoder::push_at`]), a partial frame or telegram that stalls longer than the
//!   configured gap is dropped (again rescanning from its second byte);
//! - a plaintext telegram ends with its `!` line: a bare `!` (no CRC) or `!` and the CRC, up to
//!   the line end; a damaged `!` line (`!q626`) still ends the telegram, whose parse then
//!   fails (see [`crate::parse`]).
//!
//! Every byte is reported once: in an [`Item`] (a frame or telegram), or in one
//! [`Event::Discarded`]. Bytes of a dropped or rejected item that are searched again and hold
//! nothing else are reported as
//! [`DiscardReason::Rejected`], not as noise.
//!
//! Memory is bounded: nothing longer than [`FramingConfig::max_frame_len`] is buffered.

use alloc::vec::Vec;

use crate::frame::{EncryptedFrame, FrameHeader, GLO_CIPHERING_TAG, HeaderCheck, SYSTEM_TITLE_LEN};
use crate::telegram::end_line;

/// Settings of a [`FrameDecoder`]: [`FramingConfig::default`], then the `with_…` methods or
/// field assignments (`#[non_exhaustive]`: no literal outside this crate).
///
/// # Example
/// ```
/// use smarty_p1::framing::FramingConfig;
/// let config = FramingConfig::default().with_max_frame_len(4096).with_gap_ms(500);
/// assert_eq!((config.max_frame_len, config.gap_ms), (4096, 500));
/// ```
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct FramingConfig {
    /// Largest frame or telegram accepted, in bytes (default 16 KiB: the largest possible
    /// Smarty frame, with five 1024-byte text messages and four M-Bus channels, is below 12 KiB).
    pub max_frame_len: usize,
    /// For [`FrameDecoder::push_at`]: a partial frame or telegram that receives no byte for
    /// longer than this is dropped (default 2,000 ms; a Smarty frame takes at most 140 ms on
    /// the line and frames are 10 s apart).
    pub gap_ms: u64,
}

impl Default for FramingConfig {
    fn default() -> Self {
        FramingConfig {
            max_frame_len: 16 * 1024,
            gap_ms: 2_000,
        }
    }
}

impl FramingConfig {
    /// With the largest frame or telegram accepted, in bytes.
    #[must_use]
    pub const fn with_max_frame_len(mut self, max_frame_len: usize) -> Self {
        self.max_frame_len = max_frame_len;
        self
    }

    /// With the gap after which a partial frame or telegram is dropped, in milliseconds.
    #[must_use]
    pub const fn with_gap_ms(mut self, gap_ms: u64) -> Self {
        self.gap_ms = gap_ms;
        self
    }
}

/// A complete item found in the stream: an encrypted frame or a plaintext telegram.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Item<'a> {
    /// An encrypted frame.
    Encrypted(EncryptedFrame<'a>),
    /// A plaintext telegram: `/` through the CRC line (and its line end, when sent).
    Plain(&'a [u8]),
}

impl<'a> Item<'a> {
    /// The item's bytes, as received.
    pub fn bytes(&self) -> &'a [u8] {
        match self {
            Item::Encrypted(frame) => frame.raw(),
            Item::Plain(bytes) => bytes,
        }
    }
}

/// Why bytes were dropped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum DiscardReason {
    /// Bytes outside any frame or telegram (line noise, the tail of a frame read from its
    /// middle, fake headers).
    Noise,
    /// A frame or telegram that was cut short: the next one started inside it.
    Truncated,
    /// A frame or telegram larger than [`FramingConfig::max_frame_len`].
    Oversize,
    /// A partial frame or telegram that received nothing for longer than the gap.
    Stalled,
    /// Bytes of a frame or telegram that was already reported (dropped as truncated,
    /// oversize or stalled, or rejected by the caller with [`FrameDecoder::reject`]):
    /// searched again, they held no other frame or telegram. They belong to that item and
    /// are not noise.
    Rejected,
}

impl DiscardReason {
    /// A short snake_case name for counters.
    pub fn as_str(&self) -> &'static str {
        match self {
            DiscardReason::Noise => "noise",
            DiscardReason::Truncated => "truncated",
            DiscardReason::Oversize => "oversize",
            DiscardReason::Stalled => "stalled",
            DiscardReason::Rejected => "rejected",
        }
    }
}

/// What [`FrameDecoder::next`] yields.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A complete frame or telegram.
    Item(Item<'a>),
    /// Bytes that were dropped, with the reason.
    Discarded {
        /// How many bytes were dropped now. Over a whole input, the items and these add up to
        /// every byte pushed, each counted once.
        bytes: usize,
        /// For [`DiscardReason::Truncated`], [`DiscardReason::Oversize`] and
        /// [`DiscardReason::Stalled`]: how many bytes of the abandoned frame or telegram had
        /// been received. Only its first byte is dropped at once (`bytes` is 1): the rest is
        /// searched again, since an item may hide behind a false start, and what holds nothing
        /// else comes later as [`DiscardReason::Rejected`]. Equal to `bytes` otherwise.
        span: usize,
        /// Why.
        reason: DiscardReason,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Looking for `0xDB` or `/`.
    Hunt,
    /// Inside an encrypted frame whose header was read.
    Frame(FrameHeader),
    /// Inside a plaintext telegram; `checked` bytes after `pos` are known to hold no end,
    /// no new start and nothing but ASCII (after the identification line, which ends with
    /// the LF at `header_end` and may hold any byte but control bytes).
    Plain { checked: usize, header_end: usize },
}

/// Streaming decoder of P1 byte streams. See the [module documentation](self).
///
/// # Example
/// ```
/// use smarty_p1::framing::{Event, FrameDecoder, Item};
/// let mut decoder = FrameDecoder::default();
/// let stream = b"garbage/ISK5\\2M550T-1012\r\n\r\n1-3:0.2.8(50)\r\n!\r\n";
/// for chunk in stream.chunks(3) {
///     decoder.push(chunk);
///     while let Some(event) = decoder.next() {
///         if let Event::Item(Item::Plain(telegram)) = event {
///             assert!(telegram.starts_with(b"/ISK5"));
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    config: FramingConfig,
    buf: Vec<u8>,
    /// Start of the bytes not yet consumed.
    pos: usize,
    /// Where hunting continues (≥ `pos`).
    scan: usize,
    state: State,
    /// Start, length and kind (`true`: encrypted) of the last item yielded.
    last_item: Option<(usize, usize, bool)>,
    last_rx_ms: Option<u64>,
    stalled: bool,
    /// Set by [`FrameDecoder::finish`]: no more bytes will come.
    at_end: bool,
    /// Bytes before this index belong to an item already reported (dropped or rejected) and
    /// are being searched again: those that hold nothing are [`DiscardReason::Rejected`].
    covered: usize,
    /// Finds `DB 08 <system title>` of the last frame's meter inside a frame (built once per
    /// meter: a frame's ciphertext holds a few `DB` bytes by chance, each a stop for `memchr`).
    inner_start: Option<([u8; SYSTEM_TITLE_LEN], memchr::memmem::Finder<'static>)>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(FramingConfig::default())
    }
}

impl FrameDecoder {
    /// A decoder with the given settings.
    pub fn new(config: FramingConfig) -> Self {
        FrameDecoder {
            config,
            buf: Vec::with_capacity(4096),
            pos: 0,
            scan: 0,
            state: State::Hunt,
            last_item: None,
            last_rx_ms: None,
            stalled: false,
            at_end: false,
            covered: 0,
            inner_start: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &FramingConfig {
        &self.config
    }

    /// Bytes held for a partial frame or telegram (or not yet scanned).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Appends bytes (no notion of time: for files and tests).
    pub fn push(&mut self, data: &[u8]) {
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos >= 4096) {
            self.buf.drain(..self.pos);
            self.scan -= self.pos;
            self.covered = self.covered.saturating_sub(self.pos);
            self.last_item = None;
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
        self.at_end = false;
    }

    /// Appends bytes received at `now_ms` (any monotonic clock in milliseconds). If a partial
    /// frame or telegram was waiting for longer than the gap, it is dropped first.
    pub fn push_at(&mut self, data: &[u8], now_ms: u64) {
        self.check_gap(now_ms);
        self.last_rx_ms = Some(now_ms);
        self.push(data);
    }

    /// Drops a partial frame or telegram that has waited for longer than the gap at
    /// `now_ms`; call it from a timer to report a stalled frame before new bytes arrive.
    pub fn check_gap(&mut self, now_ms: u64) {
        if let Some(last) = self.last_rx_ms
            && now_ms.saturating_sub(last) > self.config.gap_ms
            && self.buf.len() > self.pos
        {
            self.stalled = true;
        }
    }

    /// The next event, or `None` when more bytes are needed.
    #[allow(clippy::should_implement_trait)] // lending: the event borrows the decoder
    pub fn next(&mut self) -> Option<Event<'_>> {
        self.last_item = None;
        if self.stalled {
            self.stalled = false;
            if self.state != State::Hunt {
                return Some(self.restart_after(DiscardReason::Stalled, self.buf.len()));
            }
            // A partial header that never completed: only what was scanned so far is stale.
            if self.scan > self.pos || self.buf.len() > self.pos {
                let end = self.scan.max(self.pos + 1).min(self.buf.len());
                return Some(self.drop_front(end - self.pos, DiscardReason::Stalled));
            }
        }
        loop {
            match self.state {
                State::Hunt => {
                    let from = self.scan;
                    let Some(found) = memchr::memchr2(GLO_CIPHERING_TAG, b'/', &self.buf[from..])
                    else {
                        // Nothing here starts an item: drop it as noise.
                        self.scan = self.buf.len();
                        return self.take_noise(self.buf.len());
                    };
                    let start = from + found;
                    if start > self.pos {
                        self.scan = start;
                        return self.take_noise(start);
                    }
                    // `start == pos`: a candidate at the front. At the end of the input, one
                    // too short to tell is none.
                    if self.buf[start] == b'/' {
                        match plain_header_len(&self.buf[start..]) {
                            Some(Some(header_end)) => {
                                self.state = State::Plain {
                                    checked: 1,
                                    header_end,
                                }
                            }
                            Some(None) => self.scan = start + 1,
                            None if self.at_end => self.scan = start + 1,
                            None => return None,
                        }
                    } else {
                        match FrameHeader::check(&self.buf[start..], self.config.max_frame_len) {
                            HeaderCheck::Valid(header) => self.state = State::Frame(header),
                            HeaderCheck::Invalid => self.scan = start + 1,
                            HeaderCheck::NeedMore if self.at_end => self.scan = start + 1,
                            HeaderCheck::NeedMore => return None,
                        }
                    }
                }
                State::Frame(header) => {
                    let len = header.frame_len();
                    if self.buf.len() - self.pos < len {
                        return self.end_of_input();
                    }
                    let start = self.pos;
                    // A frame of the same meter starting inside this one: this one was cut.
                    let body = &self.buf[start + header.prefix_len..start + len];
                    let finder = match &self.inner_start {
                        Some((title, finder)) if *title == header.system_title => finder,
                        _ => {
                            let mut needle = [0u8; 2 + SYSTEM_TITLE_LEN];
                            needle[0] = GLO_CIPHERING_TAG;
                            needle[1] = SYSTEM_TITLE_LEN as u8;
                            needle[2..].copy_from_slice(&header.system_title);
                            let finder = memchr::memmem::Finder::new(&needle).into_owned();
                            &self.inner_start.insert((header.system_title, finder)).1
                        }
                    };
                    if let Some(inner) = finder.find(body) {
                        let cut = header.prefix_len + inner;
                        return Some(self.drop_front(cut, DiscardReason::Truncated));
                    }
                    self.pos = start + len;
                    self.scan = self.pos;
                    self.state = State::Hunt;
                    self.last_item = Some((start, len, true));
                    let frame = EncryptedFrame::from_parts(&self.buf[start..start + len], header);
                    return Some(Event::Item(Item::Encrypted(frame)));
                }
                State::Plain {
                    checked,
                    header_end,
                } => match self.scan_plain(checked, header_end) {
                    PlainScan::NeedMore(checked) => {
                        self.state = State::Plain {
                            checked,
                            header_end,
                        };
                        if self.buf.len() - self.pos > self.config.max_frame_len {
                            let end = self.buf.len();
                            return Some(self.restart_after(DiscardReason::Oversize, end));
                        }
                        return self.end_of_input();
                    }
                    PlainScan::Cut(at) => {
                        return Some(self.drop_front(at, DiscardReason::Truncated));
                    }
                    PlainScan::Damaged(at) => {
                        // What was read of it, through the damaged byte; what follows is
                        // searched afresh (and is noise unless it holds an item).
                        let end = self.pos + at + 1;
                        return Some(self.restart_after(DiscardReason::Truncated, end));
                    }
                    PlainScan::Complete(end) => {
                        let start = self.pos;
                        self.pos = start + end;
                        self.scan = self.pos;
                        self.state = State::Hunt;
                        self.last_item = Some((start, end, false));
                        return Some(Event::Item(Item::Plain(&self.buf[start..start + end])));
                    }
                },
            }
        }
    }

    /// Call after [`FrameDecoder::next`] yielded an encrypted frame that failed to decrypt
    /// (and was reported as rejected): the decoder forgets that frame and rescans its bytes
    /// from the second one, so that a real frame hidden behind a fake or truncated header is
    /// found. Its bytes that hold nothing else come back as [`DiscardReason::Rejected`]; its
    /// first byte is the caller's to count. Has no effect otherwise.
    pub fn reject(&mut self) {
        if let Some((start, len, true)) = self.last_item {
            self.covered = self.covered.max(start + len);
        }
        self.rescan();
    }

    /// Like [`FrameDecoder::reject`] for a frame that was no frame at all (a fake header the
    /// caller recognised): its bytes are searched again, and those that hold nothing are
    /// noise.
    pub fn rescan(&mut self) {
        if let Some((start, _, true)) = self.last_item.take() {
            self.pos = start + 1;
            self.scan = self.pos;
            self.state = State::Hunt;
        }
    }

    /// The bytes of the item (frame or telegram) the last call to [`FrameDecoder::next`] or
    /// [`FrameDecoder::finish`] yielded (until the next call or push).
    pub fn last_item(&self) -> Option<&[u8]> {
        self.last_item
            .map(|(start, len, _)| &self.buf[start..start + len])
    }

    /// Call at the end of the input instead of [`FrameDecoder::next`]: also yields a last
    /// plaintext telegram that lacks only its final line end, and reports what remains as
    /// discarded. Call repeatedly until `None`. Pushing bytes afterwards starts a new input.
    pub fn finish(&mut self) -> Option<Event<'_>> {
        self.at_end = true;
        self.next()
    }

    /// Marks the end of the input: [`FrameDecoder::next`] then behaves as
    /// [`FrameDecoder::finish`].
    pub fn set_at_end(&mut self) {
        self.at_end = true;
    }

    /// Inside a frame or telegram that needs more bytes: at the end of the input it is
    /// dropped as truncated (its bytes are searched again); otherwise wait.
    fn end_of_input(&mut self) -> Option<Event<'_>> {
        if !self.at_end || self.buf.len() == self.pos {
            return None;
        }
        let end = self.buf.len();
        Some(self.restart_after(DiscardReason::Truncated, end))
    }

    /// Drops `pos..end` (when non-empty): the part that belongs to an already reported item
    /// as [`DiscardReason::Rejected`] first, the rest as noise on the next call.
    fn take_noise(&mut self, end: usize) -> Option<Event<'_>> {
        let covered = self.covered.min(end);
        let (end, reason) = if covered > self.pos {
            (covered, DiscardReason::Rejected)
        } else {
            (end, DiscardReason::Noise)
        };
        let bytes = end - self.pos;
        self.pos = end;
        (bytes > 0).then_some(Event::Discarded {
            bytes,
            span: bytes,
            reason,
        })
    }

    /// Abandons the current candidate, received up to `end`: drops its first byte and hunts
    /// again from the next; its other bytes that hold nothing are reported as
    /// [`DiscardReason::Rejected`].
    fn restart_after(&mut self, reason: DiscardReason, end: usize) -> Event<'static> {
        let reason = self.unless_rejected(reason);
        let span = end.saturating_sub(self.pos).max(1);
        self.covered = self.covered.max(end);
        self.pos += 1;
        self.scan = self.pos;
        self.state = State::Hunt;
        Event::Discarded {
            bytes: 1,
            span,
            reason,
        }
    }

    /// Drops `n` bytes at the front and hunts from there.
    fn drop_front(&mut self, n: usize, reason: DiscardReason) -> Event<'static> {
        let reason = self.unless_rejected(reason);
        self.pos += n;
        self.scan = self.pos;
        self.state = State::Hunt;
        Event::Discarded {
            bytes: n,
            span: n,
            reason,
        }
    }

    /// `reason` for abandoning the candidate at `pos`, unless that candidate starts inside an
    /// item that was rejected already (a header-like run of bytes in a frame that failed to
    /// decrypt): then it is part of that rejection, [`DiscardReason::Rejected`], not a
    /// truncated or stalled item of its own.
    fn unless_rejected(&self, reason: DiscardReason) -> DiscardReason {
        if self.pos < self.covered {
            DiscardReason::Rejected
        } else {
            reason
        }
    }

    fn scan_plain(&self, checked: usize, header_end: usize) -> PlainScan {
        let telegram = &self.buf[self.pos..];
        let mut i = checked;
        while i < telegram.len() {
            match telegram[i] {
                b'!' if telegram[i - 1] == b'\n' => {
                    // The end line, through its line end (see `telegram::end_line`).
                    return match end_line(&telegram[i + 1..], self.at_end) {
                        Some((len, _)) => PlainScan::Complete(i + 1 + len),
                        None => PlainScan::NeedMore(i),
                    };
                }
                b'/' => {
                    // Telegram bodies hold no '/': one followed by a FLAG id (three letters or
                    // digits) is a new telegram that started before this one ended.
                    let Some(flag) = telegram.get(i + 1..i + 4) else {
                        return PlainScan::NeedMore(i);
                    };
                    if flag.iter().all(u8::is_ascii_alphanumeric) {
                        return PlainScan::Cut(i);
                    }
                }
                0x00 | 0x80..=0xFF if i > header_end => {
                    // Not a text telegram after all (or damaged): look again from its 2nd
                    // byte. (The identification line may hold such bytes.)
                    return PlainScan::Damaged(i);
                }
                _ => {}
            }
            i += 1;
        }
        PlainScan::NeedMore(i)
    }
}

/// Does `bytes` (starting with `/`) start with an identification line: three letters or digits
/// (the FLAG id), then text up to the line end within 128 bytes (any byte but control bytes:
/// some meters and gateways send bytes above ASCII there)? `None`: too short to tell.
fn plain_header_at(bytes: &[u8]) -> Option<bool> {
    plain_header_len(bytes).map(|len| len.is_some())
}

/// As [`plain_header_at`], with the offset of the identification line's LF.
fn plain_header_len(bytes: &[u8]) -> Option<Option<usize>> {
    let rest = bytes.get(1..)?;
    for (i, &b) in rest.iter().enumerate().take(128) {
        match b {
            b'\n' => return Some((i >= 3).then_some(i + 1)),
            b'\r' => {}
            _ if i < 3 && !b.is_ascii_alphanumeric() => return Some(None),
            0x00..=0x01 | 0x03..=0x1F | 0x7F => return Some(None),
            _ => {}
        }
    }
    if rest.len() >= 128 { Some(None) } else { None }
}

/// `true` when `bytes` hold the start of a plaintext telegram: an identification line followed
/// by the empty line or a data line (an OBIS code). An encrypted frame that holds one is a fake
/// header over a plaintext stream: a meter sends either encrypted frames or plaintext, never
/// both (reference §3.8), and random ciphertext practically never looks like this.
pub fn contains_plain_telegram_start(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'/', bytes).any(|at| {
        let candidate = &bytes[at..];
        if plain_header_at(candidate) != Some(true) {
            return false;
        }
        let Some(line_end) = memchr::memchr(b'\n', candidate) else {
            return false;
        };
        let next = &candidate[line_end + 1..];
        next.starts_with(b"\r\n")
            || next.starts_with(b"\n")
            || crate::obis::Obis::parse_prefix(next).is_some()
    })
}

enum PlainScan {
    /// No end yet; scanning resumes at this offset.
    NeedMore(usize),
    /// The telegram is complete: this many bytes.
    Complete(usize),
    /// A new telegram starts at this offset: the one before it was cut short.
    Cut(usize),
    /// A byte that no text telegram holds at this offset.
    Damaged(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Aad, Key, encrypt_frame};
    use alloc::vec;

    fn frame(counter: u32) -> Vec<u8> {
        let key = Key::from_bytes([7; 16]);
        let mut telegram = b"/Lux5\\253663629_D\r\n\r\n1-3:0.2.8(42)\r\n".to_vec();
        for _ in 0..20 {
            telegram.extend_from_slice(b"1-0:1.8.0(000006.695*kWh)\r\n");
        }
        telegram.push(b'!');
        encrypt_frame(
            &key,
            &Aad::default(),
            *b"SAGgp\x01\xBD\x54",
            counter,
            &telegram,
        )
    }

    fn drain(decoder: &mut FrameDecoder) -> (Vec<Vec<u8>>, Vec<DiscardReason>) {
        let mut items = vec![];
        let mut discards = vec![];
        while let Some(event) = decoder.next() {
            match event {
                Event::Item(item) => items.push(item.bytes().to_vec()),
                Event::Discarded { reason, .. } => discards.push(reason),
            }
        }
        (items, discards)
    }

    #[test]
    fn a_stalled_partial_frame_is_dropped_and_the_next_frame_decodes() {
        let mut decoder = FrameDecoder::default();
        let first = frame(1);
        let second = frame(2);
        decoder.push_at(&first[..100], 0);
        assert!(drain(&mut decoder).0.is_empty());
        decoder.push_at(&second, 10_000);
        let (items, discards) = drain(&mut decoder);
        assert_eq!(items, vec![second]);
        assert!(discards.contains(&DiscardReason::Stalled));
    }

    #[test]
    fn a_stalled_partial_header_is_dropped() {
        let mut decoder = FrameDecoder::default();
        decoder.push_at(&[0xDB, 0x08, b'S'], 0);
        assert!(drain(&mut decoder).0.is_empty());
        let next = frame(9);
        decoder.push_at(&next, 10_000);
        let (items, discards) = drain(&mut decoder);
        assert_eq!(items, vec![next]);
        assert_eq!(discards.first(), Some(&DiscardReason::Stalled));
    }

    #[test]
    fn a_cut_frame_followed_by_a_full_one_without_a_gap() {
        // File mode: no clock. The cut frame's length swallows the next frame's start; the
        // inner header of the same system title reveals the cut.
        let mut decoder = FrameDecoder::default();
        let mut stream = frame(1)[..200].to_vec();
        stream.extend(frame(2));
        stream.extend(frame(3));
        decoder.push(&stream);
        let (items, discards) = drain(&mut decoder);
        assert_eq!(items, vec![frame(2), frame(3)]);
        assert_eq!(discards, vec![DiscardReason::Truncated]);
    }

    #[test]
    fn a_header_inside_a_rejected_frame_is_part_of_that_rejection() {
        // A frame rejected by the caller (a wrong key) whose last bytes happen to look like a
        // frame header: searched again, that header runs past the end of the input. Its
        // bytes belong to the rejected frame; they are no truncated frame of their own.
        let mut stream = frame(1);
        let fake = [
            0xDB, 0x08, b'X', b'Y', b'Z', b'1', b'2', b'3', b'4', b'5', 0x82, 0x01, 0xF2, 0x30, 0,
            0, 0, 1,
        ];
        let at = stream.len() - fake.len();
        stream[at..].copy_from_slice(&fake);
        let mut decoder = FrameDecoder::default();
        decoder.push(&stream);
        assert!(matches!(
            decoder.next(),
            Some(Event::Item(Item::Encrypted(_)))
        ));
        decoder.reject();
        let mut discards = vec![];
        while let Some(event) = decoder.finish() {
            if let Event::Discarded { reason, .. } = event {
                discards.push(reason);
            }
        }
        assert!(
            discards.iter().all(|r| *r == DiscardReason::Rejected),
            "{discards:?}"
        );
    }

    #[test]
    fn memory_stays_bounded() {
        let mut decoder = FrameDecoder::default();
        let junk = [b'/', b'A', b'B', b'C', b'\n', b'1'];
        for _ in 0..20_000 {
            decoder.push(&junk);
            while decoder.next().is_some() {}
            assert!(decoder.buffered() <= decoder.config().max_frame_len + junk.len());
        }
    }
}
