//! AES-128-GCM decryption of encrypted frames (LU113 §3.2.5, reference §3.6).
//!
//! IV = system title ‖ frame counter; 12-byte tag; AAD = security byte ‖ authentication key,
//! with Luxembourg's public key `00112233445566778899AABBCCDDEEFF` as the default. All
//! cryptography is done by the RustCrypto crates `aes-gcm` (tag check and decryption) and
//! `ctr` + `aes` (the keystream alone, used only to diagnose a tag failure and in tolerant
//! mode: GCM encrypts with AES-CTR starting at counter block IV ‖ 00000002).

use aes::Aes128;
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{AesGcm, Nonce, Tag};
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;
use ctr::cipher::{KeyIvInit, StreamCipher};

use crate::error::{AadHint, DecryptError, HexError, KeyError};
use crate::frame::{EncryptedFrame, SECURITY_CONTROL, SYSTEM_TITLE_LEN, TAG_LEN};
use crate::telegram::{CrcStatus, crc_status};

type Gcm = AesGcm<Aes128, U12, U12>;
type Ctr = ctr::Ctr32BE<Aes128>;

/// Luxembourg's authentication key: public, the same for every Smarty (LU113 §3.4.1).
pub const LUXEMBOURG_AUTH_KEY: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
];

/// A 16-byte AES key: the meter's decryption key (or an authentication key).
///
/// Its `Debug` output never shows the key.
///
/// # Example
/// ```
/// use smarty_p1::Key;
/// let key: Key = "D4 91 47 0F 47 12 63 32 B0 7D 19 23 B3 50 41 88".parse().unwrap();
/// assert_eq!(format!("{key:?}"), "Key(<redacted>)");
/// let err = "D491470F".parse::<Key>().unwrap_err();
/// assert_eq!(err.to_string(), "a key is 32 hex digits (16 bytes); this one has 8 hex digits");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 16]);

impl Key {
    /// Wraps raw key bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Key(bytes)
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Its key check value: the first three bytes of AES-128(key, 0¹²⁸), the usual way to
    /// name a key without revealing it (counters and wrapped keys are stored with it).
    ///
    /// # Example
    /// ```
    /// use smarty_p1::Key;
    /// // AES-128 of a zero block under the zero key starts 66 E9 4B.
    /// assert_eq!(Key::from_bytes([0; 16]).check_value(), [0x66, 0xE9, 0x4B]);
    /// ```
    pub fn check_value(&self) -> [u8; 3] {
        use aes::cipher::{BlockCipherEncrypt, KeyInit};
        let cipher = Aes128::new(&self.0.into());
        let mut block = aes::Block::default();
        cipher.encrypt_block(&mut block);
        [block[0], block[1], block[2]]
    }

    /// Parses 32 hex digits. Whitespace, `:` and `-` separators and a leading `0x` are
    /// ignored (as by [`crate::hex::decode`]).
    ///
    /// # Errors
    /// [`KeyError::NotHex`] naming the first bad character, or [`KeyError::Length`] with the
    /// number of hex digits found (odd counts included).
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let bytes = crate::hex::decode(text).map_err(|e| match e {
            HexError::NotHex { found, position } => KeyError::NotHex { found, position },
            HexError::OddLength(digits) => KeyError::Length(digits),
        })?;
        let array: [u8; 16] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Length(bytes.len() * 2))?;
        Ok(Key(array))
    }
}

impl FromStr for Key {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Key::from_hex(s)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// The additional authenticated data (AAD) of the GCM tag.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Aad {
    /// Security control byte ‖ authentication key. `AuthKey(LUXEMBOURG_AUTH_KEY)` is the
    /// default; Austrian T210-D-r meters have a per-meter key.
    AuthKey([u8; 16]),
    /// The whole AAD, given byte for byte (including any security byte).
    Custom(Vec<u8>),
    /// No AAD at all.
    Empty,
}

impl Default for Aad {
    fn default() -> Self {
        Aad::AuthKey(LUXEMBOURG_AUTH_KEY)
    }
}

impl Aad {
    /// The AAD bytes for a frame with security byte `security_control`.
    pub fn to_bytes(&self, security_control: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(17);
        self.write(security_control, &mut out);
        out
    }

    /// Writes the AAD bytes for a frame with security byte `security_control`.
    fn write(&self, security_control: u8, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Aad::AuthKey(key) => {
                out.push(security_control);
                out.extend_from_slice(key);
            }
            Aad::Custom(bytes) => out.extend_from_slice(bytes),
            Aad::Empty => {}
        }
    }
}

/// Whether a decrypted telegram's origin was proven by the GCM tag.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Authenticity {
    /// The GCM tag verified.
    Verified,
    /// Tolerant mode: the tag did not verify (or was not checked); the telegram was accepted
    /// because its CRC is valid.
    Unverified,
}

/// Decrypts frames of one meter (one key).
///
/// # Example
/// ```
/// use smarty_p1::{Aad, Decryptor, EncryptedFrame, Key, encrypt_frame};
/// let key: Key = "000102030405060708090A0B0C0D0E0F".parse().unwrap();
/// let telegram = b"/Lux5\\253663629_D\r\n\r\n1-3:0.2.8(42)\r\n!7C79\r\n";
/// let frame = encrypt_frame(&key, &Aad::default(), *b"SAGgp\x01\xBD\x54", 1, telegram);
/// let frame = EncryptedFrame::parse(&frame).unwrap();
/// let mut plaintext = Vec::new();
/// Decryptor::new(&key, Aad::default(), true).decrypt(&frame, &mut plaintext).unwrap();
/// assert_eq!(plaintext, telegram);
/// ```
pub struct Decryptor {
    gcm: Gcm,
    key: Key,
    aad: Aad,
    verify_tag: bool,
    aad_buf: Vec<u8>,
}

impl fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decryptor")
            .field("key", &self.key)
            .field("aad", &self.aad)
            .field("verify_tag", &self.verify_tag)
            .finish()
    }
}

impl Decryptor {
    /// A decryptor for `key`. With `verify_tag` false (tolerant mode) a frame whose tag does
    /// not verify is still accepted when the decrypted telegram's CRC validates; it is then
    /// marked [`Authenticity::Unverified`].
    pub fn new(key: &Key, aad: Aad, verify_tag: bool) -> Self {
        Decryptor {
            gcm: Gcm::new(&(*key.as_bytes()).into()),
            key: key.clone(),
            aad,
            verify_tag,
            aad_buf: Vec::with_capacity(17),
        }
    }

    /// Decrypts `frame` into `plaintext` (cleared first; its allocation is reused).
    ///
    /// # Errors
    /// - [`DecryptError::WrongKey`]: the plaintext is not readable;
    /// - [`DecryptError::Authentication`]: the tag fails with this AAD but the key is right:
    ///   the plaintext is a telegram with a valid CRC, or the tag verifies with one of the
    ///   usual AADs (the hint names it);
    /// - [`DecryptError::Corrupted`]: tag and CRC fail on a mostly readable plaintext;
    /// - [`DecryptError::Unverifiable`]: tolerant mode, tag fails and the CRC is absent.
    pub fn decrypt(
        &mut self,
        frame: &EncryptedFrame<'_>,
        plaintext: &mut Vec<u8>,
    ) -> Result<Authenticity, DecryptError> {
        let ciphertext = frame.ciphertext();
        plaintext.clear();
        plaintext.resize(ciphertext.len(), 0);
        let nonce = Nonce::<U12>::from(frame.nonce());
        let tag = Tag::<U12>::from(*frame.tag());
        self.aad.write(frame.security_control(), &mut self.aad_buf);
        let buffer = InOutBuf::new(ciphertext, plaintext).expect("equal lengths");
        if self
            .gcm
            .decrypt_inout_detached(&nonce, &self.aad_buf, buffer, &tag)
            .is_ok()
        {
            return Ok(Authenticity::Verified);
        }
        // The tag failed: look at the plaintext to say why.
        self.keystream_decrypt(frame, plaintext);
        let crc = crc_status(plaintext);
        if crc == CrcStatus::Valid && !self.verify_tag {
            return Ok(Authenticity::Unverified);
        }
        if crc != CrcStatus::Valid && !looks_like_text(plaintext) {
            return Err(DecryptError::WrongKey);
        }
        // The key is right or nearly so: is it only the AAD?
        let hint = self.find_working_aad(frame, plaintext);
        match (hint, crc) {
            (AadHint::Unknown, CrcStatus::Absent) if !self.verify_tag => {
                Err(DecryptError::Unverifiable)
            }
            (
                AadHint::Unknown,
                CrcStatus::Mismatch { .. } | CrcStatus::Malformed | CrcStatus::Absent,
            ) => Err(DecryptError::Corrupted),
            (hint, _) => Err(DecryptError::Authentication { hint }),
        }
    }

    /// Decrypts without checking the tag: GCM's CTR keystream from counter block IV ‖ 2.
    fn keystream_decrypt(&self, frame: &EncryptedFrame<'_>, out: &mut Vec<u8>) {
        let mut counter_block = [0u8; 16];
        counter_block[..12].copy_from_slice(&frame.nonce());
        counter_block[15] = 2;
        out.clear();
        out.extend_from_slice(frame.ciphertext());
        let mut ctr = Ctr::new(&(*self.key.as_bytes()).into(), &counter_block.into());
        ctr.apply_keystream(out);
    }

    /// Tries the usual AADs other than the configured one; `scratch` is overwritten.
    fn find_working_aad(&self, frame: &EncryptedFrame<'_>, scratch: &mut Vec<u8>) -> AadHint {
        let sc = frame.security_control();
        let nonce = Nonce::<U12>::from(frame.nonce());
        let tag = Tag::<U12>::from(*frame.tag());
        let mut aad = Vec::with_capacity(17);
        let configured = self.aad.to_bytes(sc);
        for hint in [
            AadHint::LuxembourgDefault,
            AadHint::Empty,
            AadHint::SecurityByteOnly,
        ] {
            let Some(candidate) = hint.aad() else {
                continue;
            };
            if candidate.to_bytes(sc) == configured {
                continue;
            }
            candidate.write(sc, &mut aad);
            scratch.clear();
            scratch.resize(frame.ciphertext().len(), 0);
            let buffer = InOutBuf::new(frame.ciphertext(), scratch).expect("equal lengths");
            if self
                .gcm
                .decrypt_inout_detached(&nonce, &aad, buffer, &tag)
                .is_ok()
            {
                return hint;
            }
        }
        AadHint::Unknown
    }
}

/// `true` when at least 90 % of the bytes are printable ASCII or line breaks: a telegram,
/// perhaps with some damage, rather than the noise a wrong key gives.
fn looks_like_text(bytes: &[u8]) -> bool {
    let printable = bytes
        .iter()
        .filter(|&&b| (0x20..0x7f).contains(&b) || b == b'\r' || b == b'\n')
        .count();
    !bytes.is_empty() && printable * 10 >= bytes.len() * 9
}

/// Encrypts `plaintext` into a complete frame (`0xDB`, system title, `0x82` length, `0x30`,
/// frame counter, ciphertext, 12-byte tag), as a Smarty meter does.
///
/// Used by the virtual meter and by tests.
///
/// # Panics
/// When the plaintext is longer than a frame can hold (65,518 bytes).
pub fn encrypt_frame(
    key: &Key,
    aad: &Aad,
    system_title: [u8; SYSTEM_TITLE_LEN],
    frame_counter: u32,
    plaintext: &[u8],
) -> Vec<u8> {
    let length = 5 + plaintext.len() + TAG_LEN;
    let length16 = u16::try_from(length).expect("plaintext too long for one frame");
    let mut frame = Vec::with_capacity(13 + length);
    frame.push(crate::frame::GLO_CIPHERING_TAG);
    frame.push(SYSTEM_TITLE_LEN as u8);
    frame.extend_from_slice(&system_title);
    frame.push(0x82);
    frame.extend_from_slice(&length16.to_be_bytes());
    frame.push(SECURITY_CONTROL);
    frame.extend_from_slice(&frame_counter.to_be_bytes());
    let start = frame.len();
    frame.resize(start + plaintext.len(), 0);
    let mut iv = [0u8; 12];
    iv[..8].copy_from_slice(&system_title);
    iv[8..].copy_from_slice(&frame_counter.to_be_bytes());
    let mut aad_bytes = Vec::with_capacity(17);
    aad.write(SECURITY_CONTROL, &mut aad_bytes);
    let gcm = Gcm::new(&(*key.as_bytes()).into());
    let buffer = InOutBuf::new(plaintext, &mut frame[start..]).expect("equal lengths");
    let tag = gcm
        .encrypt_inout_detached(&Nonce::<U12>::from(iv), &aad_bytes, buffer)
        .expect("plaintext within GCM limits");
    frame.extend_from_slice(&tag);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parsing_names_the_problem() {
        assert!(Key::from_hex("0x000102030405060708090a0b0c0d0e0f").is_ok());
        assert!(Key::from_hex("00:01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f").is_ok());
        assert_eq!(
            Key::from_hex("000102030405060708090a0b0c0d0e0g"),
            Err(KeyError::NotHex {
                found: 'g',
                position: 32
            })
        );
        assert_eq!(Key::from_hex("0001020304050607"), Err(KeyError::Length(16)));
        assert_eq!(
            Key::from_hex("000102030405060708090a0b0c0d0e0f00"),
            Err(KeyError::Length(34))
        );
        assert_eq!(Key::from_hex("abc"), Err(KeyError::Length(3)));
    }
}
