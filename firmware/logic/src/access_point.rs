//! The set-up access point's name and its per-device WPA2 password.
//!
//! The name is `smarty-XXXXXX`, the last three bytes of the dongle's (station) MAC address in
//! lower-case hex, as its host name. The password is made once, at the first start, from the
//! chip's hardware random number generator and kept in flash next to the settings (a factory
//! reset keeps it, so a label printed with it stays right). It has [`PASSWORD_LEN`] characters
//! from [`ALPHABET`]: lower-case letters and digits without the ones people confuse (`0 o`,
//! `1 l i`), easy to type on a phone; 12 of 31 symbols are 59 bits.
//!
//! # Example
//! ```
//! use smarty_dongle::access_point::{PASSWORD_LEN, is_password, password_from, ssid};
//! assert_eq!(ssid([0x24, 0x0a, 0xc4, 0x12, 0xab, 0x0f]), "smarty-12ab0f");
//! let password = password_from([7u8, 200, 31, 255, 4, 99, 13, 0, 140, 77, 250, 61, 18, 42].into_iter()).unwrap();
//! assert_eq!(password.len(), PASSWORD_LEN);
//! assert!(is_password(&password));
//! ```

use alloc::string::String;
use core::fmt::Write;

/// The characters of a password: no `0`, `1`, `i`, `l`, `o`.
pub const ALPHABET: &[u8; 31] = b"23456789abcdefghjkmnpqrstuvwxyz";

/// Characters in a password.
pub const PASSWORD_LEN: usize = 12;

/// Random bytes at or above this are skipped, so that each character is equally likely
/// (248 = 8 × 31).
const ACCEPT_BELOW: u8 = (256 / ALPHABET.len() * ALPHABET.len()) as u8;

/// The access point's name of a dongle with the MAC address `mac`: `smarty-XXXXXX`.
pub fn ssid(mac: [u8; 6]) -> String {
    let mut name = String::with_capacity(13);
    let _ = write!(name, "smarty-{}", mac_suffix(mac));
    name
}

/// The last three bytes of `mac` in lower-case hex (`12ab0f`): the dongle's short name.
pub fn mac_suffix(mac: [u8; 6]) -> String {
    let mut suffix = String::with_capacity(6);
    for byte in &mac[3..] {
        let _ = write!(suffix, "{byte:02x}");
    }
    suffix
}

/// A password made of the random bytes `random` (the hardware generator's), rejection-sampled
/// onto [`ALPHABET`]; `None` if `random` ends before [`PASSWORD_LEN`] characters are made.
pub fn password_from(random: impl Iterator<Item = u8>) -> Option<String> {
    let password: String = random
        .filter(|&b| b < ACCEPT_BELOW)
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .take(PASSWORD_LEN)
        .collect();
    (password.len() == PASSWORD_LEN).then_some(password)
}

/// Whether `text` is a password as [`password_from`] makes them (what is read back from flash
/// is checked with it; anything else is made anew).
pub fn is_password(text: &str) -> bool {
    text.len() == PASSWORD_LEN && text.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alphabet_has_no_confusable_characters_and_no_repeats() {
        for c in b"01ilo" {
            assert!(!ALPHABET.contains(c));
        }
        let mut sorted = ALPHABET.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ALPHABET.len());
        assert_eq!(ACCEPT_BELOW, 248);
    }

    #[test]
    fn passwords_use_every_character_equally_and_skip_the_biased_bytes() {
        // Every byte value once: the 8 above 247 are skipped, the others give each of the 31
        // characters 8 times.
        let all: String = (0..=255u8)
            .collect::<alloc::vec::Vec<_>>()
            .chunks(PASSWORD_LEN)
            .filter_map(|chunk| password_from(chunk.iter().copied().chain(core::iter::repeat(0))))
            .collect();
        assert!(all.len() >= 248);
        let first_248: String = (0..=255u8)
            .filter(|&b| b < ACCEPT_BELOW)
            .map(|b| char::from(ALPHABET[usize::from(b) % 31]))
            .collect();
        for c in ALPHABET {
            assert_eq!(first_248.bytes().filter(|b| b == c).count(), 8);
        }
        assert_eq!(
            password_from([255u8, 250, 248].into_iter().chain(0..12)),
            Some(String::from("23456789abcd"))
        );
    }

    #[test]
    fn too_few_random_bytes_give_no_password() {
        assert_eq!(password_from([1u8; 11].into_iter()), None);
        assert_eq!(password_from([255u8; 64].into_iter()), None);
    }

    #[test]
    fn only_made_passwords_are_accepted_from_flash() {
        assert!(is_password("23456789abcd"));
        assert!(!is_password("23456789abc"));
        assert!(!is_password("23456789abc0"));
        assert!(!is_password("23456789ABCD"));
        assert!(!is_password("\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}"));
    }

    #[test]
    fn names_come_from_the_last_three_mac_bytes() {
        assert_eq!(ssid([0, 1, 2, 0xde, 0xad, 0x01]), "smarty-dead01");
        assert_eq!(mac_suffix([0xff; 6]), "ffffff");
    }
}
