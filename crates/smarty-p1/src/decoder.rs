//! Everything in one: framing, decryption, replay check, CRC check and parsing, with counters.

use alloc::vec::Vec;

use crate::crypto::{Aad, Authenticity, Decryptor, Key};
use crate::error::{DecryptError, TelegramError};
use crate::frame::{ReplayGuard, SYSTEM_TITLE_LEN};
use crate::framing::{
    DiscardReason, Event, FrameDecoder, FramingConfig, Item, contains_plain_telegram_start,
};
use crate::telegram::{Layout, Telegram, parse_with_layout};

/// Settings of a [`Decoder`].
///
/// Built from [`DecoderConfig::default`] (a meter that sends plaintext) or
/// [`DecoderConfig::new`] (a meter that encrypts), then the `with_…` methods; the fields can
/// also be set one by one. (`#[non_exhaustive]`: a new setting is not a breaking change, so
/// the struct cannot be written as a literal outside this crate.)
///
/// # Example
/// ```
/// use smarty_p1::{Aad, DecoderConfig, Key};
/// use smarty_p1::framing::FramingConfig;
/// let key: Key = "D491470F47126332B07D1923B3504188".parse().unwrap();
/// let config = DecoderConfig::new(key)
///     .with_aad(Aad::Empty)
///     .with_reject_replay(true)
///     .with_framing(FramingConfig::default().with_max_frame_len(4096));
/// assert!(config.key.is_some() && config.verify_tag);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DecoderConfig {
    /// The meter's decryption key; `None` for meters that send plaintext.
    pub key: Option<Key>,
    /// The AAD (default: security byte ‖ Luxembourg's public authentication key).
    pub aad: Aad,
    /// Verify the GCM tag (default `true`). With `false` (tolerant mode) a frame whose tag
    /// fails is accepted when its telegram's CRC validates, marked unauthenticated.
    pub verify_tag: bool,
    /// Reject frames whose counter is not above the last accepted one (default `false`).
    pub reject_replay: bool,
    /// Framing settings.
    pub framing: FramingConfig,
    /// Read a telegram that has the shape of the one before (the same bytes but for digits of
    /// values, as a meter's telegrams are) from that one's layout instead of line by line
    /// (default `true`; [`Stats::from_layout`] counts them). The result is the same either
    /// way; `false` costs a meter's stream about half as much again.
    pub reuse_layout: bool,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            key: None,
            aad: Aad::default(),
            verify_tag: true,
            reject_replay: false,
            framing: FramingConfig::default(),
            reuse_layout: true,
        }
    }
}

impl DecoderConfig {
    /// Settings for a meter that encrypts with `key`; the rest as in
    /// [`DecoderConfig::default`] (Luxembourg's AAD, tag verified, no replay check).
    pub fn new(key: Key) -> Self {
        DecoderConfig {
            key: Some(key),
            ..Self::default()
        }
    }

    /// With the decryption key `key` (`None`: the meter sends plaintext).
    #[must_use]
    pub fn with_key(mut self, key: Option<Key>) -> Self {
        self.key = key;
        self
    }

    /// With the AAD `aad`.
    #[must_use]
    pub fn with_aad(mut self, aad: Aad) -> Self {
        self.aad = aad;
        self
    }

    /// With the GCM tag verified (`true`, the default) or not (tolerant mode: see
    /// [`DecoderConfig::verify_tag`]).
    #[must_use]
    pub fn with_verify_tag(mut self, verify_tag: bool) -> Self {
        self.verify_tag = verify_tag;
        self
    }

    /// With replayed frames rejected (`true`) or accepted (`false`, the default).
    #[must_use]
    pub fn with_reject_replay(mut self, reject_replay: bool) -> Self {
        self.reject_replay = reject_replay;
        self
    }

    /// With the framing settings `framing`.
    #[must_use]
    pub fn with_framing(mut self, framing: FramingConfig) -> Self {
        self.framing = framing;
        self
    }

    /// With telegrams read from the last one's layout when they have its shape (`true`, the
    /// default) or always line by line (`false`); see [`DecoderConfig::reuse_layout`].
    #[must_use]
    pub fn with_reuse_layout(mut self, reuse_layout: bool) -> Self {
        self.reuse_layout = reuse_layout;
        self
    }
}

/// Security details of a telegram that came in an encrypted frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct FrameInfo {
    /// The frame's system title.
    pub system_title: [u8; SYSTEM_TITLE_LEN],
    /// The frame counter.
    pub frame_counter: u32,
    /// `true` when the GCM tag verified; `false` in tolerant mode when only the CRC did.
    pub authenticated: bool,
}

/// An accepted telegram.
#[derive(Debug)]
#[non_exhaustive]
pub struct Decoded<'a> {
    /// The parsed telegram (its CRC is valid or absent).
    pub telegram: Telegram<'a>,
    /// Frame details; `None` for a plaintext telegram.
    pub frame: Option<FrameInfo>,
    /// The bytes as received: the encrypted frame, or the plaintext telegram.
    pub raw: &'a [u8],
}

/// Why a frame or telegram was not accepted.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Dropped by the framing (cut short, oversize, stalled).
    #[error("framing error: {} frame or telegram dropped ({bytes} bytes)", reason.as_str())]
    Framing {
        /// Why.
        reason: DiscardReason,
        /// How many bytes of the frame or telegram had been received.
        bytes: usize,
    },
    /// The frame did not decrypt or failed a check.
    #[error("{0}")]
    Decrypt(DecryptError),
    /// The telegram was malformed or its CRC failed.
    #[error("{0}")]
    Telegram(TelegramError),
}

/// Reasons for rejection, as counted in [`Stats`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum RejectReason {
    /// [`DiscardReason::Truncated`].
    Truncated,
    /// [`DiscardReason::Oversize`].
    Oversize,
    /// [`DiscardReason::Stalled`].
    Stalled,
    /// [`DecryptError::NoKey`].
    NoKey,
    /// [`DecryptError::WrongKey`].
    WrongKey,
    /// [`DecryptError::Authentication`].
    Authentication,
    /// [`DecryptError::Corrupted`].
    Corrupted,
    /// [`DecryptError::Unverifiable`].
    Unverifiable,
    /// [`DecryptError::Replay`].
    Replay,
    /// [`TelegramError::CrcMismatch`] and [`TelegramError::BadCrc`] (a damaged CRC line).
    Crc,
    /// Any other [`TelegramError`].
    Malformed,
}

impl RejectReason {
    /// All reasons, in counter order.
    pub const ALL: [RejectReason; 11] = [
        RejectReason::Truncated,
        RejectReason::Oversize,
        RejectReason::Stalled,
        RejectReason::NoKey,
        RejectReason::WrongKey,
        RejectReason::Authentication,
        RejectReason::Corrupted,
        RejectReason::Unverifiable,
        RejectReason::Replay,
        RejectReason::Crc,
        RejectReason::Malformed,
    ];

    /// snake_case name for summaries and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectReason::Truncated => "truncated",
            RejectReason::Oversize => "oversize",
            RejectReason::Stalled => "stalled",
            RejectReason::NoKey => "no_key",
            RejectReason::WrongKey => "wrong_key",
            RejectReason::Authentication => "authentication",
            RejectReason::Corrupted => "corrupted",
            RejectReason::Unverifiable => "unverifiable",
            RejectReason::Replay => "replay",
            RejectReason::Crc => "crc",
            RejectReason::Malformed => "malformed",
        }
    }
}

impl Rejection {
    /// The counter this rejection goes to.
    pub fn reason(&self) -> RejectReason {
        match self {
            Rejection::Framing { reason, .. } => match reason {
                DiscardReason::Oversize => RejectReason::Oversize,
                DiscardReason::Stalled => RejectReason::Stalled,
                _ => RejectReason::Truncated,
            },
            Rejection::Decrypt(e) => match e {
                DecryptError::NoKey => RejectReason::NoKey,
                DecryptError::WrongKey => RejectReason::WrongKey,
                DecryptError::Authentication { .. } => RejectReason::Authentication,
                DecryptError::Corrupted => RejectReason::Corrupted,
                DecryptError::Unverifiable => RejectReason::Unverifiable,
                DecryptError::Replay { .. } => RejectReason::Replay,
            },
            Rejection::Telegram(TelegramError::CrcMismatch { .. } | TelegramError::BadCrc) => {
                RejectReason::Crc
            }
            Rejection::Telegram(_) => RejectReason::Malformed,
        }
    }
}

/// Counters of a [`Decoder`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Encrypted frames found.
    pub frames: u64,
    /// Plaintext telegrams found.
    pub plain_telegrams: u64,
    /// Telegrams accepted.
    pub telegrams: u64,
    /// Of those, accepted in tolerant mode without a verified tag.
    pub unauthenticated: u64,
    /// Telegrams accepted with lines that were not fully understood.
    pub with_unknown_lines: u64,
    /// Bytes outside any frame or telegram.
    pub noise_bytes: u64,
    /// Bytes of accepted frames and telegrams.
    pub accepted_bytes: u64,
    /// Bytes of rejected frames and telegrams, and of partial ones the framing dropped.
    ///
    /// Every byte pushed is counted once: `accepted_bytes + rejected_bytes + noise_bytes` is
    /// the number of bytes pushed, less those still buffered (none after
    /// [`Decoder::finish`] returned `None`).
    pub rejected_bytes: u64,
    /// Telegrams whose lines were not read one by one but taken from the layout of the
    /// telegram before, which had the same shape (the same bytes but for digits of values: a
    /// meter's telegrams after its first); the result is the same either way.
    pub from_layout: u64,
    rejected: [u64; RejectReason::ALL.len()],
}

impl Stats {
    /// Rejections for one reason.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason as usize]
    }

    /// All rejections.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }

    /// Non-zero rejection counters.
    pub fn rejections(&self) -> impl Iterator<Item = (RejectReason, u64)> + '_ {
        RejectReason::ALL
            .into_iter()
            .map(|r| (r, self.rejected(r)))
            .filter(|(_, n)| *n > 0)
    }

    fn reject(&mut self, rejection: &Rejection) {
        self.rejected[rejection.reason() as usize] += 1;
    }
}

/// Bytes in, accepted telegrams and rejections out. Lending: each result borrows the decoder
/// until the next call.
///
/// # Example
/// ```
/// use smarty_p1::{Decoder, DecoderConfig};
/// let mut decoder = Decoder::new(DecoderConfig::default());
/// decoder.push(b"noise/KFM5KAIFA-METER\r\n\r\n1-0:1.8.1(001581.123*kWh)\r\n!\r\n");
/// let telegram = decoder.next().unwrap().unwrap().telegram;
/// assert_eq!(telegram.readings().energy_import_kwh.unwrap().to_string(), "1581.123");
/// assert_eq!(decoder.stats().noise_bytes, 5);
/// ```
#[derive(Debug)]
pub struct Decoder {
    framer: FrameDecoder,
    decryptor: Option<Decryptor>,
    replay: Option<ReplayGuard>,
    plaintext: Vec<u8>,
    stats: Stats,
    /// The last telegram's lines, to read the next one of the same shape faster.
    layout: Layout,
}

enum Step {
    Done,
    /// A fake frame header: search its bytes again, as noise.
    Rescan,
    /// A rejection; `true`: a frame whose bytes are searched again.
    Reject(Rejection, bool),
    Plain,
    Decrypted(FrameInfo),
}

impl Decoder {
    /// A decoder with the given settings.
    pub fn new(config: DecoderConfig) -> Self {
        Decoder {
            framer: FrameDecoder::new(config.framing),
            decryptor: config
                .key
                .as_ref()
                .map(|key| Decryptor::new(key, config.aad.clone(), config.verify_tag)),
            replay: config.reject_replay.then(ReplayGuard::new),
            plaintext: Vec::with_capacity(2048),
            stats: Stats::default(),
            layout: Layout::new(config.reuse_layout),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The replay guard, when replay checks are on (to persist or restore counters).
    pub fn replay_guard(&mut self) -> Option<&mut ReplayGuard> {
        self.replay.as_mut()
    }

    /// The framing settings.
    pub fn framing_config(&self) -> &FramingConfig {
        self.framer.config()
    }

    /// The bytes of the frame or telegram behind the last result (accepted or rejected), until
    /// the next call; `None` after a framing rejection or when a rejected frame is rescanned.
    pub fn last_item(&self) -> Option<&[u8]> {
        self.framer.last_item()
    }

    /// Appends bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.framer.push(data);
    }

    /// Appends bytes received at `now_ms` (monotonic milliseconds), dropping a partial frame
    /// that stalled for longer than the framing gap.
    pub fn push_at(&mut self, data: &[u8], now_ms: u64) {
        self.framer.push_at(data, now_ms);
    }

    /// See [`FrameDecoder::check_gap`].
    pub fn check_gap(&mut self, now_ms: u64) {
        self.framer.check_gap(now_ms);
    }

    /// The next accepted telegram or rejection; `None` when more bytes are needed.
    #[allow(clippy::should_implement_trait)] // lending
    pub fn next(&mut self) -> Option<Result<Decoded<'_>, Rejection>> {
        self.step()
    }

    /// Like [`Decoder::next`] at the end of the input: also yields a last telegram lacking
    /// its final line end and reports a trailing partial frame. Call until `None`.
    pub fn finish(&mut self) -> Option<Result<Decoded<'_>, Rejection>> {
        self.framer.set_at_end();
        self.step()
    }

    fn step(&mut self) -> Option<Result<Decoded<'_>, Rejection>> {
        loop {
            let event = self.framer.next();
            let step = match event {
                None => Step::Done,
                Some(Event::Discarded {
                    bytes,
                    span,
                    reason,
                }) => match reason {
                    DiscardReason::Noise => {
                        self.stats.noise_bytes += bytes as u64;
                        continue;
                    }
                    // The rest of an item that was reported already.
                    DiscardReason::Rejected => {
                        self.stats.rejected_bytes += bytes as u64;
                        continue;
                    }
                    _ => {
                        self.stats.rejected_bytes += bytes as u64;
                        Step::Reject(
                            Rejection::Framing {
                                reason,
                                bytes: span,
                            },
                            false,
                        )
                    }
                },
                Some(Event::Item(Item::Plain(_))) => {
                    self.stats.plain_telegrams += 1;
                    Step::Plain
                }
                Some(Event::Item(Item::Encrypted(frame))) => {
                    let step = match self.decryptor.as_mut() {
                        // Without a key nothing vouches for the frame. A meter sends either
                        // frames or plaintext, never both (reference §3.8): in a plaintext
                        // stream, or holding the start of a plaintext telegram, it is a fake
                        // header and its bytes are searched again.
                        None if self.stats.plain_telegrams > 0
                            || contains_plain_telegram_start(frame.raw()) =>
                        {
                            Step::Rescan
                        }
                        None => Step::Reject(Rejection::Decrypt(DecryptError::NoKey), false),
                        Some(decryptor) => match decryptor.decrypt(&frame, &mut self.plaintext) {
                            Ok(authenticity) => Step::Decrypted(FrameInfo {
                                system_title: frame.system_title(),
                                frame_counter: frame.frame_counter(),
                                authenticated: authenticity == Authenticity::Verified,
                            }),
                            // Perhaps a fake header, or a frame cut in its tag whose span
                            // reaches into the next frame: look again inside.
                            Err(e) => Step::Reject(Rejection::Decrypt(e), true),
                        },
                    };
                    // A fake header over a plaintext stream is not a frame.
                    self.stats.frames += u64::from(!matches!(step, Step::Rescan));
                    step
                }
            };
            // Bytes are counted when they leave the framer: an item's when it is accepted or
            // rejected, or only its first byte when its bytes are searched again.
            let item_len = self.framer.last_item().map_or(0, |u| u.len() as u64);
            match step {
                Step::Done => return None,
                Step::Rescan => {
                    self.stats.noise_bytes += 1;
                    self.framer.rescan();
                    continue;
                }
                Step::Reject(rejection, rescan) => {
                    if rescan {
                        self.stats.rejected_bytes += 1;
                        self.framer.reject();
                    } else if !matches!(rejection, Rejection::Framing { .. }) {
                        self.stats.rejected_bytes += item_len;
                    }
                    self.stats.reject(&rejection);
                    return Some(Err(rejection));
                }
                Step::Plain => {
                    let raw = self.framer.last_item().expect("item just yielded");
                    let parsed = parse_with_layout(raw, &mut self.layout);
                    self.stats.from_layout = self.layout.reused;
                    return Some(match parsed {
                        Ok(telegram) => {
                            self.stats.accepted_bytes += item_len;
                            self.stats.telegrams += 1;
                            if telegram.has_unknown_lines() {
                                self.stats.with_unknown_lines += 1;
                            }
                            Ok(Decoded {
                                telegram,
                                frame: None,
                                raw,
                            })
                        }
                        Err(e) => {
                            let rejection = Rejection::Telegram(e);
                            self.stats.rejected_bytes += item_len;
                            self.stats.reject(&rejection);
                            Err(rejection)
                        }
                    });
                }
                Step::Decrypted(info) => {
                    let parsed = parse_with_layout(&self.plaintext, &mut self.layout);
                    self.stats.from_layout = self.layout.reused;
                    let rejection = match parsed {
                        Err(e) => Rejection::Telegram(e),
                        Ok(telegram) => {
                            let replayed = self.replay.as_mut().and_then(|guard| {
                                guard.check(info.system_title, info.frame_counter).err()
                            });
                            match replayed {
                                Some(e) => Rejection::Decrypt(e),
                                None => {
                                    self.stats.accepted_bytes += item_len;
                                    self.stats.telegrams += 1;
                                    self.stats.unauthenticated += u64::from(!info.authenticated);
                                    self.stats.with_unknown_lines +=
                                        u64::from(telegram.has_unknown_lines());
                                    return Some(Ok(Decoded {
                                        telegram,
                                        frame: Some(info),
                                        raw: self.framer.last_item().expect("item just yielded"),
                                    }));
                                }
                            }
                        }
                    };
                    self.stats.rejected_bytes += item_len;
                    self.stats.reject(&rejection);
                    return Some(Err(rejection));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crc::crc16_arc;
    use crate::crypto::encrypt_frame;
    use alloc::format;
    use alloc::vec;

    const TITLE: [u8; 8] = *b"SAGgp\x01\xBD\x54";

    /// A CRC-valid telegram with this identification line, ending `!CRC\r\n`.
    fn telegram(header: &[u8]) -> Vec<u8> {
        let mut t = vec![b'/'];
        t.extend_from_slice(header);
        t.extend_from_slice(b"\r\n\r\n1-3:0.2.8(42)\r\n0-0:1.0.0(180130102122W)\r\n");
        for i in 0..10 {
            t.extend_from_slice(format!("1-0:1.8.0(00000{i}.695*kWh)\r\n").as_bytes());
        }
        t.push(b'!');
        let crc = crc16_arc(&t);
        t.extend_from_slice(format!("{crc:04X}\r\n").as_bytes());
        t
    }

    /// Everything `bytes` gives, pushed in `chunk`-byte pieces: (accepted raw items,
    /// rejections, stats).
    fn decode(
        config: DecoderConfig,
        bytes: &[u8],
        chunk: usize,
    ) -> (Vec<Vec<u8>>, Vec<Rejection>, Stats) {
        let mut decoder = Decoder::new(config);
        let (mut accepted, mut rejected) = (vec![], vec![]);
        let mut take = |r: Result<Decoded<'_>, Rejection>| match r {
            Ok(d) => accepted.push(d.raw.to_vec()),
            Err(e) => rejected.push(e),
        };
        for piece in bytes.chunks(chunk) {
            decoder.push(piece);
            while let Some(r) = decoder.next() {
                take(r);
            }
        }
        while let Some(r) = decoder.finish() {
            take(r);
        }
        (accepted, rejected, *decoder.stats())
    }

    fn keyed() -> DecoderConfig {
        DecoderConfig::new(Key::from_bytes([7; 16]))
    }

    fn frame(counter: u32, plaintext: &[u8]) -> Vec<u8> {
        encrypt_frame(
            &Key::from_bytes([7; 16]),
            &Aad::default(),
            TITLE,
            counter,
            plaintext,
        )
    }

    /// Every byte pushed is counted once: in an accepted or rejected item, or as noise.
    fn assert_counted_once(stats: &Stats, pushed: usize) {
        assert_eq!(
            stats.accepted_bytes + stats.rejected_bytes + stats.noise_bytes,
            pushed as u64,
            "{stats:?}"
        );
    }

    #[test]
    fn a_telegram_with_a_garbled_crc_is_rejected_for_its_crc() {
        let good = telegram(b"XYZ5TEST");
        let mut bad = good.clone();
        let bang = bad.iter().rposition(|&b| b == b'!').unwrap();
        bad[bang + 1] = b'q';
        let mut stream = bad.clone();
        stream.extend_from_slice(&good);
        for chunk in [1, 7, stream.len()] {
            let (accepted, rejected, stats) = decode(DecoderConfig::default(), &stream, chunk);
            assert_eq!(accepted, vec![good.clone()], "chunk {chunk}");
            assert_eq!(
                rejected,
                vec![Rejection::Telegram(TelegramError::BadCrc)],
                "chunk {chunk}"
            );
            assert_eq!(stats.rejected(RejectReason::Crc), 1);
            assert_eq!(stats.noise_bytes, 0, "chunk {chunk}: {stats:?}");
            assert_counted_once(&stats, stream.len());
        }
        // Inside an authentic frame too.
        let (accepted, rejected, _) = decode(keyed(), &frame(1, &bad), 64);
        assert!(accepted.is_empty());
        assert_eq!(rejected, vec![Rejection::Telegram(TelegramError::BadCrc)]);
    }

    #[test]
    fn a_header_with_bytes_above_ascii_is_decoded() {
        let t = telegram(b"Lux5\xAB3663629_D");
        for chunk in [1, 5, t.len()] {
            let (accepted, rejected, stats) = decode(DecoderConfig::default(), &t, chunk);
            assert_eq!(accepted, vec![t.clone()], "chunk {chunk}: {rejected:?}");
            assert_eq!(stats.noise_bytes, 0);
            assert_counted_once(&stats, t.len());
        }
    }

    #[test]
    fn a_frame_rejected_for_its_tag_is_not_counted_again_as_noise() {
        let t = telegram(b"Lux5\\253663629_D");
        let mut bad_tag = frame(1, &t);
        let last = bad_tag.len() - 1;
        bad_tag[last] ^= 1;
        let good = frame(2, &t);
        let mut stream = bad_tag.clone();
        stream.extend_from_slice(&good);
        for chunk in [1, 64, stream.len()] {
            let (accepted, rejected, stats) = decode(keyed(), &stream, chunk);
            assert_eq!(accepted, vec![good.clone()], "chunk {chunk}");
            assert_eq!(rejected.len(), 1, "chunk {chunk}: {rejected:?}");
            assert_eq!(stats.noise_bytes, 0, "chunk {chunk}: {stats:?}");
            assert_eq!(stats.rejected_bytes, bad_tag.len() as u64);
            assert_eq!(stats.accepted_bytes, good.len() as u64);
            assert_counted_once(&stats, stream.len());
        }
    }

    #[test]
    fn bytes_of_dropped_telegrams_are_not_counted_again_as_noise() {
        // Damaged on the line (a byte above ASCII in a data line: what was read of it is
        // dropped, what follows the damage is searched afresh and is noise), cut at the end
        // of the input, and rejected for its CRC.
        let good = telegram(b"XYZ5TEST");
        let mut damaged = good.clone();
        damaged[40] = 0x9A;
        let cut = &good[..good.len() / 2];
        let mut bad_crc = good.clone();
        bad_crc[30] = b'7';
        for (what, stream, noise) in [
            (
                "damaged",
                [&damaged[..], &good[..]].concat(),
                good.len() - 41,
            ),
            ("cut at the end", [&good[..], cut].concat(), 0),
            ("bad CRC", [&bad_crc[..], &good[..]].concat(), 0),
        ] {
            for chunk in [1, 9, stream.len()] {
                let (accepted, rejected, stats) = decode(DecoderConfig::default(), &stream, chunk);
                assert_eq!(accepted, vec![good.clone()], "{what}, chunk {chunk}");
                assert_eq!(rejected.len(), 1, "{what}: {rejected:?}");
                assert_eq!(
                    stats.noise_bytes, noise as u64,
                    "{what}, chunk {chunk}: {stats:?}"
                );
                assert_counted_once(&stats, stream.len());
            }
        }
        // Noise stays noise.
        let stream = [&b"line noise"[..], &good[..]].concat();
        let (_, _, stats) = decode(DecoderConfig::default(), &stream, 3);
        assert_eq!(stats.noise_bytes, 10);
        assert_counted_once(&stats, stream.len());
    }
}
