//! Error types of the core crate.

use thiserror::Error;

/// A value group that does not have the expected format.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum ValueError {
    /// Not a decimal number `[-]digits[.digits]` (or more than 18 digits).
    #[error("not a decimal number")]
    Number,
    /// A unit that is empty or not printable ASCII.
    #[error("malformed unit")]
    Unit,
    /// Not a timestamp `YYMMDDhhmmss[SW]`.
    #[error("not a timestamp YYMMDDhhmmss[S|W]")]
    Timestamp,
    /// Not an octet string (hex digits, even count).
    #[error("not a hex octet string")]
    Hex,
    /// The line does not have the value groups its OBIS code needs.
    #[error("unexpected value groups for this OBIS code")]
    Shape,
}

/// Why a telegram was rejected by [`crate::parse`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum TelegramError {
    /// The bytes do not start with `/` (after optional leading line breaks).
    #[error("telegram does not start with '/'")]
    NoHeader,
    /// The telegram is not valid text where it must be (the identification line).
    #[error("telegram header is not a text line")]
    BadHeader,
    /// The CRC16/ARC after `!` does not match the bytes from `/` to `!` (DSMR 5.0.2 §6.2).
    #[error("CRC mismatch: telegram says {expected:04X}, bytes give {computed:04X}")]
    CrcMismatch {
        /// The CRC written after `!`.
        expected: u16,
        /// The CRC computed over `/` … `!`.
        computed: u16,
    },
    /// The end line is damaged: after `!` comes neither a line end nor 3 or 4 hex digits
    /// (`!q626`, `! 626`, `!62`), so nothing vouches for the telegram.
    #[error("damaged CRC line: after '!' comes neither a line end nor 3 or 4 hex digits")]
    BadCrc,
}

/// Why an encrypted frame could not be turned into a telegram.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum DecryptError {
    /// Nothing readable comes out: the decryption key is not this meter's key.
    #[error(
        "wrong key: the frame does not decrypt to a telegram with this decryption key (is it the key of this meter?)"
    )]
    WrongKey,
    /// The key is right (the plaintext is a telegram with a valid CRC, or the tag verifies
    /// with another usual AAD) but the GCM tag does not verify with the AAD in use: the meter
    /// uses another authentication key or AAD.
    #[error(
        "authentication failed: the key is right (the telegram decrypts) but the GCM tag does not verify with this authentication key/AAD; {hint}"
    )]
    Authentication {
        /// Which option to try.
        hint: AadHint,
    },
    /// The tag fails and the plaintext looks like a telegram but its CRC fails too: the frame
    /// was damaged on the line.
    #[error("corrupted frame: the GCM tag and the telegram CRC both fail (noise on the line?)")]
    Corrupted,
    /// Tolerant mode: the tag was not checked and the telegram's CRC fails or is absent, so
    /// nothing vouches for the content.
    #[error("unverifiable: tag not checked (tolerant mode) and the telegram CRC is {0}")]
    Unverifiable(&'static str),
    /// The frame counter is not larger than the last accepted one for this system title.
    #[error("replayed frame: frame counter {counter} is not above the last accepted {last}")]
    Replay {
        /// The frame counter of the rejected frame.
        counter: u32,
        /// The last accepted frame counter for the same system title.
        last: u32,
    },
    /// An encrypted frame arrived but no decryption key is configured.
    #[error("encrypted frame but no decryption key given (use --key, --key-file or SMARTY_KEY)")]
    NoKey,
}

/// Which authentication setting made the tag verify, found by trying the usual ones after a
/// failure. Shown in [`DecryptError::Authentication`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AadHint {
    /// The tag verifies with Luxembourg's public authentication key (the default AAD).
    LuxembourgDefault,
    /// The tag verifies with an empty AAD.
    Empty,
    /// The tag verifies with the security byte alone as AAD.
    SecurityByteOnly,
    /// None of the usual settings verifies: a per-meter authentication key is needed.
    Unknown,
}

impl core::fmt::Display for AadHint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AadHint::LuxembourgDefault => {
                "the tag verifies with Luxembourg's default authentication key: drop --auth-key/--aad"
            }
            AadHint::Empty => "the tag verifies with an empty AAD: use --aad none",
            AadHint::SecurityByteOnly => {
                "the tag verifies with the security byte alone as AAD: use --aad 30"
            }
            AadHint::Unknown => {
                "give the meter's authentication key with --auth-key HEX (or the whole AAD with --aad HEX), or accept CRC-checked telegrams without the tag with --no-verify-tag"
            }
        })
    }
}

/// A key or AAD given as text that is not what it must be.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum KeyError {
    /// Wrong number of hex digits.
    #[error("a key is 32 hex digits (16 bytes); this one has {0} hex digits")]
    Length(usize),
    /// A character that is not a hex digit.
    #[error("a key holds hex digits 0-9 and A-F only; found {found:?} at position {position}")]
    NotHex {
        /// The offending character.
        found: char,
        /// Its position (1-based) in the text as given.
        position: usize,
    },
    /// Odd number of hex digits in an AAD.
    #[error("hex text must have an even number of digits; this has {0}")]
    OddLength(usize),
}
