//! Signed updates over the air: the upload's framing and the check of its ed25519 signature.
//!
//! An upload (TCP port [`PORT`]) is the 64-byte ed25519 signature of the image, the image's
//! length (4 bytes, big-endian) and the image: the application image `espflash save-image`
//! writes, which goes into the slot that is not running. The dongle writes it while a
//! [`Verifier`] hashes it, and activates the slot only when [`Verifier::finish`] accepts the
//! signature with the public key built into the running firmware. The key pair is the
//! builder's: `cargo ota keygen` makes one, the firmware is built with the public half
//! (`SMARTY_DONGLE_OTA_PUBLIC_KEY`), `cargo ota upload` signs and sends an image.
//!
//! ```
//! use smarty_dongle::ota::{Header, Verifier, HEADER_LEN};
//! # let keys = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([7; 32]));
//! # let public_key = *keys.pk;
//! let image = b"an application image".to_vec();
//! # let signature = *keys.sk.sign(&image, None);
//! let header = Header::new(signature, image.len() as u32).to_bytes();
//! // On the dongle: the header first, then the image in chunks as it arrives.
//! let header = Header::parse(&header, 1 << 20).unwrap();
//! let mut verifier = Verifier::new(&public_key, &header).unwrap();
//! for chunk in image.chunks(7) {
//!     verifier.update(chunk);
//! }
//! assert!(verifier.finish().is_ok());
//! ```

use core::fmt;

use ed25519_compact::{PublicKey, Signature, VerifyingState};

/// The TCP port that takes uploads.
pub const PORT: u16 = 3232;
/// Bytes of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Bytes of an upload's header: the signature and the image's length.
pub const HEADER_LEN: usize = SIGNATURE_LEN + 4;

/// Why an update is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtaError {
    /// The image is empty or larger than the slot (its length, the slot's size), bytes.
    Length {
        /// The length the upload announced.
        length: u32,
        /// The slot's size.
        max: u32,
    },
    /// The public key is not 64 hex digits, or not a valid ed25519 key.
    PublicKey,
    /// This build has no public key: updates over the air are off.
    NoPublicKey,
    /// The signature does not verify: the image was not signed with the builder's key, or
    /// changed on the way.
    Signature,
    /// The image ended before its announced length, or went past it.
    Truncated,
}

impl fmt::Display for OtaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OtaError::Length { length, max } => {
                write!(
                    f,
                    "an image of {length} bytes does not fit the slot ({max} bytes)"
                )
            }
            OtaError::PublicKey => f.write_str("the public key is not a valid ed25519 key"),
            OtaError::NoPublicKey => f.write_str(
                "this firmware was built without an update key: updates over the air are off",
            ),
            OtaError::Signature => {
                f.write_str("the signature does not verify: not signed with this dongle's key")
            }
            OtaError::Truncated => f.write_str("the image does not have its announced length"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for OtaError {}

/// An upload's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header {
    /// The ed25519 signature of the image.
    pub signature: [u8; SIGNATURE_LEN],
    /// The image's length, bytes.
    pub length: u32,
}

impl Header {
    /// The header of an image of `length` bytes signed `signature`.
    pub fn new(signature: [u8; SIGNATURE_LEN], length: u32) -> Header {
        Header { signature, length }
    }

    /// The header's bytes: the signature, then the length big-endian.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        out[..SIGNATURE_LEN].copy_from_slice(&self.signature);
        out[SIGNATURE_LEN..].copy_from_slice(&self.length.to_be_bytes());
        out
    }

    /// The header of `bytes`, for a slot of `max` bytes.
    ///
    /// # Errors
    /// [`OtaError::Length`] for an empty image or one larger than the slot.
    pub fn parse(bytes: &[u8; HEADER_LEN], max: u32) -> Result<Header, OtaError> {
        let mut signature = [0; SIGNATURE_LEN];
        signature.copy_from_slice(&bytes[..SIGNATURE_LEN]);
        let mut length = [0; 4];
        length.copy_from_slice(&bytes[SIGNATURE_LEN..]);
        let length = u32::from_be_bytes(length);
        if length == 0 || length > max {
            return Err(OtaError::Length { length, max });
        }
        Ok(Header { signature, length })
    }
}

/// The public key of 64 hex digits (what `cargo ota keygen` prints and the build takes).
///
/// # Errors
/// [`OtaError::PublicKey`] when it is not 32 bytes in hex or not a point of the curve.
pub fn public_key_from_hex(hex: &str) -> Result<[u8; 32], OtaError> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(OtaError::PublicKey);
    }
    let mut key = [0; 32];
    for (byte, pair) in key.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let text = core::str::from_utf8(pair).map_err(|_| OtaError::PublicKey)?;
        *byte = u8::from_str_radix(text, 16).map_err(|_| OtaError::PublicKey)?;
    }
    PublicKey::from_slice(&key).map_err(|_| OtaError::PublicKey)?;
    Ok(key)
}

/// Checks an image's signature while it streams past.
pub struct Verifier {
    state: VerifyingState,
    left: u32,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("left", &self.left)
            .finish()
    }
}

impl Verifier {
    /// A verifier of the image `header` announces, against `public_key`.
    ///
    /// # Errors
    /// [`OtaError::PublicKey`] for a key that is not a valid point, [`OtaError::Signature`] for
    /// a malformed signature.
    pub fn new(public_key: &[u8; 32], header: &Header) -> Result<Verifier, OtaError> {
        let key = PublicKey::from_slice(public_key).map_err(|_| OtaError::PublicKey)?;
        let state = key
            .verify_incremental(&Signature::new(header.signature))
            .map_err(|_| OtaError::Signature)?;
        Ok(Verifier {
            state,
            left: header.length,
        })
    }

    /// The image bytes still expected.
    pub fn left(&self) -> u32 {
        self.left
    }

    /// Takes the next bytes of the image.
    pub fn update(&mut self, chunk: &[u8]) {
        let n = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        self.left = self.left.saturating_sub(n);
        self.state.absorb(chunk);
    }

    /// Whether the whole image, as announced, carries a valid signature.
    ///
    /// # Errors
    /// [`OtaError::Truncated`] before the image's end, [`OtaError::Signature`] when the
    /// signature does not verify.
    pub fn finish(self) -> Result<(), OtaError> {
        if self.left != 0 {
            return Err(OtaError::Truncated);
        }
        self.state.verify().map_err(|_| OtaError::Signature)
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use ed25519_compact::{KeyPair, Seed};

    use super::*;

    fn pair(seed: u8) -> KeyPair {
        KeyPair::from_seed(Seed::new([seed; 32]))
    }

    fn image() -> Vec<u8> {
        (0..100_000_u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn verify(
        public_key: &[u8; 32],
        header: &[u8; HEADER_LEN],
        image: &[u8],
    ) -> Result<(), OtaError> {
        let header = Header::parse(header, 1_966_080)?;
        let mut verifier = Verifier::new(public_key, &header)?;
        for chunk in image.chunks(4096) {
            verifier.update(chunk);
        }
        verifier.finish()
    }

    #[test]
    fn a_signed_image_verifies_and_anything_else_is_refused() {
        let keys = pair(1);
        let image = image();
        let header = Header::new(*keys.sk.sign(&image, None), image.len() as u32).to_bytes();
        assert_eq!(verify(&keys.pk, &header, &image), Ok(()));
        // One byte changed on the way.
        let mut changed = image.clone();
        changed[50_000] ^= 1;
        assert_eq!(
            verify(&keys.pk, &header, &changed),
            Err(OtaError::Signature)
        );
        // Another builder's key.
        assert_eq!(
            verify(&pair(2).pk, &header, &image),
            Err(OtaError::Signature)
        );
        // Cut short.
        assert_eq!(
            verify(&keys.pk, &header, &image[..image.len() - 1]),
            Err(OtaError::Truncated)
        );
        // A signature that is not one.
        let mut bad = header;
        bad[..SIGNATURE_LEN].fill(0xFF);
        assert!(verify(&keys.pk, &bad, &image).is_err());
    }

    #[test]
    fn headers_refuse_empty_and_oversized_images() {
        let signature = [0; SIGNATURE_LEN];
        let bytes = Header::new(signature, 0).to_bytes();
        assert_eq!(
            Header::parse(&bytes, 10),
            Err(OtaError::Length { length: 0, max: 10 })
        );
        let bytes = Header::new(signature, 11).to_bytes();
        assert!(Header::parse(&bytes, 10).is_err());
        let bytes = Header::new(signature, 10).to_bytes();
        assert_eq!(Header::parse(&bytes, 10).unwrap().length, 10);
        assert_eq!(&bytes[SIGNATURE_LEN..], &[0, 0, 0, 10]);
    }

    #[test]
    fn public_keys_come_in_hex() {
        let keys = pair(3);
        let hex: alloc::string::String =
            keys.pk.iter().map(|b| alloc::format!("{b:02x}")).collect();
        assert_eq!(public_key_from_hex(&hex), Ok(*keys.pk));
        assert_eq!(public_key_from_hex(&hex.to_uppercase()), Ok(*keys.pk));
        assert_eq!(public_key_from_hex("00"), Err(OtaError::PublicKey));
        assert_eq!(
            public_key_from_hex(&"zz".repeat(32)),
            Err(OtaError::PublicKey)
        );
    }
}
