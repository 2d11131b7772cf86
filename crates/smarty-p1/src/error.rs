//! Error types of the core crate.
//!
//! Their messages describe the data (the frame, the telegram, the text given); they never name
//! an option of a program that uses the crate. Each enum is `#[non_exhaustive]`: a new kind of
//! failure is not a breaking change.

use thiserror::Error;

use crate::crypto::Aad;
use crate::frame::SECURITY_CONTROL;

/// A value group that does not have the expected format.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
#[non_exhaustive]
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
#[non_exhaustive]
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
///
/// The messages say what is wrong with the frame, not how to change the settings: the
/// application phrases that advice in terms of its own options ([`AadHint::aad`] gives the AAD
/// that verified the tag).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
#[non_exhaustive]
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
        /// Which of the usual AADs verifies the tag, if any.
        hint: AadHint,
    },
    /// The tag fails and the plaintext looks like a telegram but its CRC fails too: the frame
    /// was damaged on the line.
    #[error("corrupted frame: the GCM tag and the telegram CRC both fail (noise on the line?)")]
    Corrupted,
    /// Tag check off ([`crate::DecoderConfig::verify_tag`] `false`): the tag does not verify
    /// and the telegram has no CRC, so nothing vouches for its content.
    #[error(
        "unverifiable: the GCM tag does not verify (tag check off) and the telegram has no CRC, so nothing vouches for it"
    )]
    Unverifiable,
    /// The frame counter is not larger than the last accepted one for this system title.
    #[error("replayed frame: frame counter {counter} is not above the last accepted {last}")]
    Replay {
        /// The frame counter of the rejected frame.
        counter: u32,
        /// The last accepted frame counter for the same system title.
        last: u32,
    },
    /// An encrypted frame arrived but no decryption key is configured.
    #[error("encrypted frame but no decryption key given")]
    NoKey,
}

/// Which of the usual authentication settings makes the GCM tag verify, found by trying them
/// after a failure. Carried by [`DecryptError::Authentication`]; [`AadHint::aad`] gives the
/// AAD itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum AadHint {
    /// The tag verifies with Luxembourg's public authentication key (the default AAD,
    /// [`Aad::AuthKey`] with [`crate::LUXEMBOURG_AUTH_KEY`]).
    LuxembourgDefault,
    /// The tag verifies with an empty AAD ([`Aad::Empty`]).
    Empty,
    /// The tag verifies with the security byte alone as AAD (`30`).
    SecurityByteOnly,
    /// None of the usual settings verifies: the meter has an authentication key of its own.
    Unknown,
}

impl AadHint {
    /// The AAD that verified the tag; `None` for [`AadHint::Unknown`].
    ///
    /// # Example
    /// ```
    /// use smarty_p1::{Aad, AadHint};
    /// assert_eq!(AadHint::Empty.aad(), Some(Aad::Empty));
    /// assert_eq!(AadHint::SecurityByteOnly.aad(), Some(Aad::Custom(vec![0x30])));
    /// assert_eq!(AadHint::Unknown.aad(), None);
    /// ```
    pub fn aad(&self) -> Option<Aad> {
        match self {
            AadHint::LuxembourgDefault => Some(Aad::default()),
            AadHint::Empty => Some(Aad::Empty),
            AadHint::SecurityByteOnly => Some(Aad::Custom(alloc::vec![SECURITY_CONTROL])),
            AadHint::Unknown => None,
        }
    }
}

impl core::fmt::Display for AadHint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AadHint::LuxembourgDefault => {
                "the tag verifies with Luxembourg's default authentication key"
            }
            AadHint::Empty => "the tag verifies with an empty AAD",
            AadHint::SecurityByteOnly => "the tag verifies with the security byte alone as AAD",
            AadHint::Unknown => {
                "none of the usual AADs verifies the tag either, so the meter has an authentication key of its own"
            }
        })
    }
}

/// A key given as text that is not 32 hex digits.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Wrong number of hex digits.
    #[error("a key is 32 hex digits (16 bytes); this one has {0} hex digits")]
    Length(usize),
    /// A character that is neither a hex digit nor a separator.
    #[error("a key holds hex digits 0-9 and A-F only; found {found:?} at position {position}")]
    NotHex {
        /// The offending character.
        found: char,
        /// Its position (1-based, in characters) in the text as given.
        position: usize,
    },
}

/// Hex text ([`crate::hex::decode`]) that does not decode to bytes.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
#[non_exhaustive]
pub enum HexError {
    /// A character that is neither a hex digit nor a separator.
    #[error("{found:?} at position {position} is not a hex digit")]
    NotHex {
        /// The offending character.
        found: char,
        /// Its position (1-based, in characters) in the text as given.
        position: usize,
    },
    /// An odd number of hex digits: the last byte is cut.
    #[error("hex text must have an even number of digits; this has {0}")]
    OddLength(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    /// The messages describe the data; no option of a program (`--aad`, `SMARTY_KEY`,
    /// `verify_tag = false`) appears in them.
    #[test]
    fn messages_name_no_option_of_a_program() {
        let hints = [
            AadHint::LuxembourgDefault,
            AadHint::Empty,
            AadHint::SecurityByteOnly,
            AadHint::Unknown,
        ];
        let mut messages: Vec<alloc::string::String> = hints
            .iter()
            .map(|&hint| DecryptError::Authentication { hint }.to_string())
            .collect();
        for e in [
            DecryptError::WrongKey,
            DecryptError::Corrupted,
            DecryptError::Unverifiable,
            DecryptError::Replay {
                counter: 1,
                last: 2,
            },
            DecryptError::NoKey,
        ] {
            messages.push(e.to_string());
        }
        messages.push(KeyError::Length(3).to_string());
        messages.push(
            HexError::NotHex {
                found: 'g',
                position: 1,
            }
            .to_string(),
        );
        for m in &messages {
            for option in [
                "--",
                "SMARTY_",
                "key_file",
                "verify_tag",
                "auth_key",
                "use ",
            ] {
                assert!(!m.contains(option), "{m:?} names {option:?}");
            }
        }
    }

    #[test]
    fn each_hint_but_unknown_gives_the_aad_that_verified() {
        assert_eq!(AadHint::LuxembourgDefault.aad(), Some(Aad::default()));
        assert_eq!(AadHint::Empty.aad(), Some(Aad::Empty));
        assert_eq!(
            AadHint::SecurityByteOnly.aad(),
            Some(Aad::Custom(alloc::vec![SECURITY_CONTROL]))
        );
        assert_eq!(AadHint::Unknown.aad(), None);
    }
}
