//! The encrypted P1 frame: a DLMS general-glo-ciphering APDU (LU113 §3.2.5).
//!
//! ```text
//! DB | 08 | system title (8) | 82 HH LL | 30 | frame counter (4, BE) | ciphertext (N) | tag (12)
//!                               \_ L = 1 + 4 + N + 12, big-endian, unsigned _/
//! ```
//! The length is BER-encoded: Smarty always sends `0x82 HH LL`; `0x81 LL` and the short form
//! (one byte below `0x80`) are accepted too, as other meters use them (reference §3.2).

use crate::error::DecryptError;

/// Tag of the general-glo-ciphering APDU.
pub const GLO_CIPHERING_TAG: u8 = 0xDB;
/// Length of the system title.
pub const SYSTEM_TITLE_LEN: usize = 8;
/// Security control byte of an authenticated and encrypted frame (suite 0).
pub const SECURITY_CONTROL: u8 = 0x30;
/// Length of the (truncated) GCM tag.
pub const TAG_LEN: usize = 12;
/// Smallest possible length field: security byte, frame counter, one byte of ciphertext, tag.
pub const MIN_LENGTH_FIELD: usize = 1 + 4 + 1 + TAG_LEN;

/// The fixed part of an encrypted frame, up to and including the frame counter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct FrameHeader {
    /// Sender's system title: the FLAG id (`SAG` on Smarty) and 5 meter-specific bytes.
    pub system_title: [u8; SYSTEM_TITLE_LEN],
    /// Bytes before the security control byte: 11, 12 or 13 depending on the length form.
    pub prefix_len: usize,
    /// The length field `L`: bytes after the length field (security byte to tag).
    pub length: usize,
    /// Security control byte (`0x30`).
    pub security_control: u8,
    /// DLMS invocation counter, big-endian on the wire.
    pub frame_counter: u32,
}

/// Outcome of looking at the bytes that may start a frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum HeaderCheck {
    /// A plausible header.
    Valid(FrameHeader),
    /// Too few bytes to decide.
    NeedMore,
    /// Not a frame header.
    Invalid,
}

impl FrameHeader {
    /// Length of the whole frame: prefix plus `L`.
    pub const fn frame_len(&self) -> usize {
        self.prefix_len + self.length
    }

    /// Length of the ciphertext `N = L - 17`.
    pub const fn ciphertext_len(&self) -> usize {
        self.length - 5 - TAG_LEN
    }

    /// Checks the header at the start of `bytes` (which must start with `0xDB`).
    ///
    /// `max_frame_len` bounds the frame length a header may announce.
    pub fn check(bytes: &[u8], max_frame_len: usize) -> HeaderCheck {
        let Some(&first) = bytes.first() else {
            return HeaderCheck::NeedMore;
        };
        if first != GLO_CIPHERING_TAG {
            return HeaderCheck::Invalid;
        }
        match bytes.get(1) {
            None => return HeaderCheck::NeedMore,
            Some(&len) if len as usize != SYSTEM_TITLE_LEN => return HeaderCheck::Invalid,
            Some(_) => {}
        }
        let Some(&form) = bytes.get(10) else {
            return HeaderCheck::NeedMore;
        };
        let (length, prefix_len) = match form {
            0x82 => match (bytes.get(11), bytes.get(12)) {
                (Some(&hi), Some(&lo)) => ((usize::from(hi) << 8) | usize::from(lo), 13),
                _ => return HeaderCheck::NeedMore,
            },
            0x81 => match bytes.get(11) {
                Some(&l) => (usize::from(l), 12),
                None => return HeaderCheck::NeedMore,
            },
            short if short < 0x80 => (usize::from(short), 11),
            _ => return HeaderCheck::Invalid,
        };
        if length < MIN_LENGTH_FIELD || prefix_len + length > max_frame_len {
            return HeaderCheck::Invalid;
        }
        let Some(&security_control) = bytes.get(prefix_len) else {
            return HeaderCheck::NeedMore;
        };
        if security_control != SECURITY_CONTROL {
            return HeaderCheck::Invalid;
        }
        let Some(counter) = bytes.get(prefix_len + 1..prefix_len + 5) else {
            return HeaderCheck::NeedMore;
        };
        let mut system_title = [0u8; SYSTEM_TITLE_LEN];
        system_title.copy_from_slice(&bytes[2..10]);
        HeaderCheck::Valid(FrameHeader {
            system_title,
            prefix_len,
            length,
            security_control,
            frame_counter: u32::from_be_bytes([counter[0], counter[1], counter[2], counter[3]]),
        })
    }
}

/// One complete encrypted frame, borrowed from the input.
///
/// # Example
/// ```
/// use smarty_p1::EncryptedFrame;
/// let mut frame = vec![0xDB, 0x08, b'S', b'A', b'G', 0x67, 0x70, 0x01, 0xBD, 0x54, 0x82, 0x00, 0x13, 0x30, 0, 0, 0, 7];
/// frame.extend_from_slice(&[0xAA, 0xBB]); // ciphertext
/// frame.extend_from_slice(&[0u8; 12]);    // tag
/// let frame = EncryptedFrame::parse(&frame).unwrap();
/// assert_eq!(frame.frame_counter(), 7);
/// assert_eq!(frame.ciphertext(), &[0xAA, 0xBB]);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct EncryptedFrame<'a> {
    raw: &'a [u8],
    header: FrameHeader,
}

/// The bytes given to [`EncryptedFrame::parse`] are not exactly one frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("not an encrypted P1 frame (bad header or length)")]
#[non_exhaustive]
pub struct NotAFrame;

impl<'a> EncryptedFrame<'a> {
    /// Interprets `raw` as exactly one frame.
    ///
    /// # Errors
    /// [`NotAFrame`] when the header is invalid or the length field disagrees with `raw.len()`.
    pub fn parse(raw: &'a [u8]) -> Result<Self, NotAFrame> {
        match FrameHeader::check(raw, usize::MAX) {
            HeaderCheck::Valid(header) if header.frame_len() == raw.len() => {
                Ok(EncryptedFrame { raw, header })
            }
            _ => Err(NotAFrame),
        }
    }

    pub(crate) fn from_parts(raw: &'a [u8], header: FrameHeader) -> Self {
        debug_assert_eq!(raw.len(), header.frame_len());
        EncryptedFrame { raw, header }
    }

    /// All bytes of the frame, from `0xDB` to the end of the tag.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The parsed header.
    pub fn header(&self) -> &FrameHeader {
        &self.header
    }

    /// The system title (8 bytes).
    pub fn system_title(&self) -> [u8; SYSTEM_TITLE_LEN] {
        self.header.system_title
    }

    /// The frame counter (DLMS invocation counter).
    pub fn frame_counter(&self) -> u32 {
        self.header.frame_counter
    }

    /// The security control byte.
    pub fn security_control(&self) -> u8 {
        self.header.security_control
    }

    /// The ciphertext (`L - 17` bytes).
    pub fn ciphertext(&self) -> &'a [u8] {
        let start = self.header.prefix_len + 5;
        &self.raw[start..self.raw.len() - TAG_LEN]
    }

    /// The 12-byte GCM tag.
    pub fn tag(&self) -> &'a [u8; TAG_LEN] {
        self.raw[self.raw.len() - TAG_LEN..]
            .try_into()
            .expect("frame length checked")
    }

    /// The GCM nonce: system title ‖ frame counter.
    pub fn nonce(&self) -> [u8; 12] {
        let mut iv = [0u8; 12];
        iv[..8].copy_from_slice(&self.header.system_title);
        iv[8..].copy_from_slice(&self.header.frame_counter.to_be_bytes());
        iv
    }
}

/// Rejects frames whose counter does not grow, per system title (reference §8).
///
/// Keep one guard per key: the counter restarts at 0 when the grid operator changes the key
/// (LU113 §3.2.5), so a new key needs a new guard.
#[derive(Clone, Debug, Default)]
pub struct ReplayGuard {
    last: alloc::collections::BTreeMap<[u8; SYSTEM_TITLE_LEN], u32>,
}

impl ReplayGuard {
    /// An empty guard.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `counter` for `system_title` if it is above the last accepted one, and
    /// remembers it.
    ///
    /// # Errors
    /// [`DecryptError::Replay`] when the counter is not larger.
    pub fn check(
        &mut self,
        system_title: [u8; SYSTEM_TITLE_LEN],
        counter: u32,
    ) -> Result<(), DecryptError> {
        match self.last.get_mut(&system_title) {
            Some(last) if counter <= *last => Err(DecryptError::Replay {
                counter,
                last: *last,
            }),
            Some(last) => {
                *last = counter;
                Ok(())
            }
            None => {
                self.last.insert(system_title, counter);
                Ok(())
            }
        }
    }

    /// The last accepted counter for a system title.
    pub fn last(&self, system_title: &[u8; SYSTEM_TITLE_LEN]) -> Option<u32> {
        self.last.get(system_title).copied()
    }

    /// Sets the last accepted counter (to restore it after a restart).
    pub fn set_last(&mut self, system_title: [u8; SYSTEM_TITLE_LEN], counter: u32) {
        self.last.insert(system_title, counter);
    }
}
