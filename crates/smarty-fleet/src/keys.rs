//! The meters' keys, wrapped under a master key (docs/fleet.md, "Keys").
//!
//! Every meter of a fleet has its own decryption key (and, rarely, its own authentication
//! key). They are kept in PostgreSQL only wrapped: AES-GCM under the fleet's master key, a
//! random 96-bit nonce per wrapping, the meter's system title as associated data (a wrapped
//! key copied to another meter's row does not unwrap). The master key lives outside the
//! database (`--master-key-file`, `SMARTY_MASTER_KEY`): 32 hex digits (AES-128) or 64
//! (AES-256). A key check value — the first three bytes of the master key's AES encryption of
//! a zero block — is stored beside each wrapped key, so that a wrong master key says "wrong
//! master key" rather than failing every tag.
//!
//! Wrapped layout: nonce (12 bytes) ‖ ciphertext (16) ‖ tag (16).

use std::fmt;
use std::str::FromStr;

use std::collections::HashMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use rand::RngCore;
use smarty_p1::Key;
use smarty_store::Store;
use smarty_store::fleet::WrappedKey;

use crate::keys_csv::MeterKeys;

/// Bytes of a wrapped key.
pub const WRAPPED_LEN: usize = 12 + 16 + 16;

/// What can go wrong with keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The master key is not 32 or 64 hex digits.
    #[error("a master key is 32 or 64 hex digits (AES-128 or AES-256), not {0} characters")]
    MasterKeyLength(usize),
    /// The master key is not hex.
    #[error("the master key is not hex")]
    MasterKeyHex,
    /// A wrapped key was wrapped under another master key.
    #[error(
        "wrong master key: the keys were wrapped under the master key {stored}, this one is {given}"
    )]
    WrongMasterKey {
        /// The key check value stored with the wrapped key.
        stored: String,
        /// The key check value of the master key given.
        given: String,
    },
    /// A wrapped key that does not unwrap (damaged, or moved to another meter).
    #[error("the wrapped key of meter {0} does not unwrap: damaged or not this meter's")]
    Damaged(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] smarty_store::StoreError),
}

/// Wraps `meters`' keys under `master` and stores them (adding meters, replacing the keys of
/// those already there). Returns how many.
///
/// # Errors
/// [`KeyError::WrongMasterKey`] when the store's keys are wrapped under another master key
/// (rotate it first), store errors.
pub fn import(store: &Store, master: &MasterKey, meters: &[MeterKeys]) -> Result<usize, KeyError> {
    if let Some(stored) = store.fleet_keys()?.first() {
        master.matches(&stored.master_check)?;
    }
    Ok(store.put_fleet_keys(&wrap_all(master, meters))?)
}

/// `meters`' keys wrapped under `master`, as stored.
fn wrap_all(master: &MasterKey, meters: &[MeterKeys]) -> Vec<WrappedKey> {
    meters
        .iter()
        .map(|m| {
            WrappedKey::new(
                m.system_title,
                m.name(),
                master.wrap(&m.system_title, &m.key),
                m.auth_key.as_ref().map(|k| master.wrap(&m.system_title, k)),
                master.check(),
            )
        })
        .collect()
}

/// Every meter of the fleet with its keys unwrapped, by system title (what a worker holds).
///
/// # Errors
/// [`KeyError::WrongMasterKey`], [`KeyError::Damaged`], store errors.
pub fn load(store: &Store, master: &MasterKey) -> Result<HashMap<[u8; 8], MeterKeys>, KeyError> {
    let mut out = HashMap::new();
    for stored in store.fleet_keys()? {
        out.insert(stored.system_title, unwrap_stored(master, &stored)?);
    }
    Ok(out)
}

/// One stored meter's keys, unwrapped.
///
/// # Errors
/// [`KeyError::WrongMasterKey`], [`KeyError::Damaged`].
pub fn unwrap_stored(master: &MasterKey, stored: &WrappedKey) -> Result<MeterKeys, KeyError> {
    master.matches(&stored.master_check)?;
    let title = &stored.system_title;
    Ok(MeterKeys {
        name: Some(stored.name.clone()),
        system_title: *title,
        key: master.unwrap_key(title, &stored.key)?,
        auth_key: match &stored.auth_key {
            Some(wrapped) => Some(master.unwrap_key(title, wrapped)?),
            None => None,
        },
    })
}

/// Wraps every stored key again under `new` (in one transaction): the master key is
/// rotated. Returns how many meters.
///
/// # Errors
/// [`KeyError::WrongMasterKey`] when `old` is not the keys' master key, store errors.
pub fn rotate_master(store: &Store, old: &MasterKey, new: &MasterKey) -> Result<usize, KeyError> {
    let meters: Vec<MeterKeys> = load(store, old)?.into_values().collect();
    Ok(store.put_fleet_keys(&wrap_all(new, &meters))?)
}

/// The fleet's master key. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct MasterKey(Cipher);

#[derive(Clone)]
enum Cipher {
    Aes128(Box<Aes128Gcm>, [u8; 16]),
    Aes256(Box<Aes256Gcm>, [u8; 32]),
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(<redacted>, check {})", self.check())
    }
}

impl FromStr for MasterKey {
    type Err = KeyError;

    /// 32 or 64 hex digits; spaces, colons and dashes between them are ignored.
    fn from_str(text: &str) -> Result<MasterKey, KeyError> {
        let digits: String = text
            .chars()
            .filter(|c| !matches!(c, ' ' | ':' | '-' | '\n' | '\r' | '\t'))
            .collect();
        let bytes = smarty_p1::hex::decode(&digits).map_err(|_| KeyError::MasterKeyHex)?;
        match bytes.len() {
            16 => {
                let key: [u8; 16] = bytes.try_into().expect("16 bytes");
                Ok(MasterKey(Cipher::Aes128(
                    Box::new(Aes128Gcm::new(&key.into())),
                    key,
                )))
            }
            32 => {
                let key: [u8; 32] = bytes.try_into().expect("32 bytes");
                Ok(MasterKey(Cipher::Aes256(
                    Box::new(Aes256Gcm::new(&key.into())),
                    key,
                )))
            }
            _ => Err(KeyError::MasterKeyLength(digits.len())),
        }
    }
}

impl MasterKey {
    /// Its key check value: the first three bytes of AES(master key, 0¹²⁸), in hex — names
    /// the key without revealing it.
    pub fn check(&self) -> String {
        use aes_gcm::aes::cipher::BlockCipherEncrypt;
        let mut block = aes_gcm::aes::Block::default();
        match &self.0 {
            Cipher::Aes128(_, key) => {
                aes_gcm::aes::Aes128::new(&(*key).into()).encrypt_block(&mut block)
            }
            Cipher::Aes256(_, key) => {
                aes_gcm::aes::Aes256::new(&(*key).into()).encrypt_block(&mut block)
            }
        }
        smarty_p1::hex::upper(&block[..3]).to_string()
    }

    /// Wraps `key` of the meter with `system_title`.
    ///
    /// # Example
    /// ```
    /// use smarty_fleet::keys::MasterKey;
    /// let master: MasterKey = "000102030405060708090A0B0C0D0E0F".parse().unwrap();
    /// let title = *b"SAG\x10\x30\x70\x01\x00";
    /// let key: smarty_p1::Key = "D491470F47126332B07D1923B3504188".parse().unwrap();
    /// let wrapped = master.wrap(&title, &key);
    /// assert_eq!(master.unwrap_key(&title, &wrapped).unwrap().as_bytes(), key.as_bytes());
    /// ```
    pub fn wrap(&self, system_title: &[u8; 8], key: &Key) -> Vec<u8> {
        let mut nonce_bytes = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce_bytes);
        let nonce = Nonce::from(nonce_bytes);
        let payload = Payload {
            msg: key.as_bytes(),
            aad: system_title,
        };
        let sealed = match &self.0 {
            Cipher::Aes128(cipher, _) => cipher.encrypt(&nonce, payload),
            Cipher::Aes256(cipher, _) => cipher.encrypt(&nonce, payload),
        }
        .expect("AES-GCM seals 16 bytes");
        let mut out = nonce_bytes.to_vec();
        out.extend(sealed);
        out
    }

    /// Unwraps a key wrapped with [`MasterKey::wrap`] for the meter with `system_title`.
    ///
    /// # Errors
    /// [`KeyError::Damaged`] when it does not unwrap (another meter's, damaged, or wrapped
    /// under another master key — [`MasterKey::check`] tells that case apart).
    pub fn unwrap_key(&self, system_title: &[u8; 8], wrapped: &[u8]) -> Result<Key, KeyError> {
        let damaged = || KeyError::Damaged(smarty_p1::hex::upper(system_title).to_string());
        if wrapped.len() != WRAPPED_LEN {
            return Err(damaged());
        }
        let (nonce, sealed) = wrapped.split_at(12);
        let nonce = Nonce::try_from(nonce).map_err(|_| damaged())?;
        let payload = Payload {
            msg: sealed,
            aad: system_title,
        };
        let opened = match &self.0 {
            Cipher::Aes128(cipher, _) => cipher.decrypt(&nonce, payload),
            Cipher::Aes256(cipher, _) => cipher.decrypt(&nonce, payload),
        }
        .map_err(|_| damaged())?;
        let bytes: [u8; 16] = opened.try_into().map_err(|_| damaged())?;
        Ok(Key::from_bytes(bytes))
    }

    /// Checks that wrapped keys stored with key check value `stored` were wrapped under this
    /// master key.
    ///
    /// # Errors
    /// [`KeyError::WrongMasterKey`].
    pub fn matches(&self, stored: &str) -> Result<(), KeyError> {
        let given = self.check();
        if given == stored {
            Ok(())
        } else {
            Err(KeyError::WrongMasterKey {
                stored: stored.to_owned(),
                given,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smarty_store::test_postgres::TestDatabase;

    const TITLE: [u8; 8] = *b"SAG\x10\x30\x70\x01\x00";

    fn key() -> Key {
        "D491470F47126332B07D1923B3504188".parse().unwrap()
    }

    #[test]
    fn keys_unwrap_under_their_master_key_and_meter_only() {
        for master in [
            "000102030405060708090A0B0C0D0E0F",
            "00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F 10 11 12 13 14 15 16 17 18 19 1A 1B 1C 1D 1E 1F",
        ] {
            let master: MasterKey = master.parse().unwrap();
            let wrapped = master.wrap(&TITLE, &key());
            assert_eq!(wrapped.len(), WRAPPED_LEN);
            assert_ne!(
                master.wrap(&TITLE, &key()),
                wrapped,
                "a fresh nonce each time"
            );
            assert_eq!(
                master.unwrap_key(&TITLE, &wrapped).unwrap().as_bytes(),
                key().as_bytes()
            );
            let other_meter = *b"SAG\x10\x30\x70\x01\x01";
            assert!(matches!(
                master.unwrap_key(&other_meter, &wrapped),
                Err(KeyError::Damaged(_))
            ));
            let mut flipped = wrapped.clone();
            flipped[20] ^= 1;
            assert!(master.unwrap_key(&TITLE, &flipped).is_err());
            let other: MasterKey = "0F0E0D0C0B0A09080706050403020100".parse().unwrap();
            assert!(other.unwrap_key(&TITLE, &wrapped).is_err());
            assert!(matches!(
                other.matches(&master.check()),
                Err(KeyError::WrongMasterKey { .. })
            ));
            master.matches(&master.check()).unwrap();
        }
    }

    #[test]
    fn a_master_key_never_shows_itself() {
        let master: MasterKey = "000102030405060708090A0B0C0D0E0F".parse().unwrap();
        let text = format!("{master:?}");
        assert!(!text.contains("0001020304"), "{text}");
        // AES-128 under the key 00…0F of a zero block starts C6 A1 3B (a known-answer value).
        assert_eq!(master.check(), "C6A13B");
        assert!(matches!(
            "0102".parse::<MasterKey>().unwrap_err(),
            KeyError::MasterKeyLength(4)
        ));
        assert!(matches!(
            "zz".repeat(16).parse::<MasterKey>().unwrap_err(),
            KeyError::MasterKeyHex
        ));
    }

    #[test]
    fn keys_are_stored_wrapped_and_the_master_key_rotates() {
        let db = TestDatabase::create();
        let store = Store::open(&db.store_config()).unwrap();
        let master: MasterKey = "000102030405060708090A0B0C0D0E0F".parse().unwrap();
        let meters: Vec<MeterKeys> = (0u8..20)
            .map(|i| {
                let mut title = TITLE;
                title[7] = i;
                let name = (i % 2 == 0).then(|| format!("flat-{i:02}"));
                let auth = (i == 3).then(|| Key::from_bytes([i; 16]));
                MeterKeys {
                    name,
                    system_title: title,
                    key: Key::from_bytes([i.wrapping_add(100); 16]),
                    auth_key: auth,
                }
            })
            .collect();
        assert_eq!(import(&store, &master, &meters).unwrap(), 20);
        // Nothing of a key is stored in the clear.
        let dump: String = db
            .query("SELECT encode(wrapped_key, 'hex') FROM fleet_key")
            .into_iter()
            .flatten()
            .collect();
        assert!(!dump.contains("64646464"), "{dump}");
        let loaded = load(&store, &master).unwrap();
        assert_eq!(loaded.len(), 20);
        let unnamed = &loaded[&meters[1].system_title];
        assert_eq!(unnamed.name(), "5341471030700101");
        assert_eq!(unnamed.key.as_bytes(), &[101; 16]);
        assert_eq!(
            loaded[&meters[3].system_title]
                .auth_key
                .as_ref()
                .unwrap()
                .as_bytes(),
            &[3; 16]
        );
        // Another master key: "wrong master key", for loading and importing alike.
        let other: MasterKey = "F".repeat(64).parse().unwrap();
        assert!(matches!(
            load(&store, &other),
            Err(KeyError::WrongMasterKey { .. })
        ));
        assert!(matches!(
            import(&store, &other, &meters),
            Err(KeyError::WrongMasterKey { .. })
        ));
        // Rotated: the new master key opens every key, the old one none.
        assert_eq!(rotate_master(&store, &master, &other).unwrap(), 20);
        assert_eq!(load(&store, &other).unwrap().len(), 20);
        assert!(matches!(
            load(&store, &master),
            Err(KeyError::WrongMasterKey { .. })
        ));
    }
}
