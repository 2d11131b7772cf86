//! Loading the decryption key and AAD settings from flags, files and the environment.
//!
//! The key is never logged or printed: errors say what is wrong with it, not what it is.

use std::path::Path;

use anyhow::Result;
use smarty_p1::{Aad, DecoderConfig, Key, KeyError};
use smarty_p1::{AadHint, DecryptError, HexError, Rejection};

use crate::cli::KeyArgs;

/// Environment variable holding the key.
pub const KEY_ENV: &str = "SMARTY_KEY";

/// Where the key came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// `--key`.
    Flag,
    /// `--key-file PATH`.
    File(String),
    /// `SMARTY_KEY`.
    Env,
}

impl std::fmt::Display for KeyOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyOrigin::Flag => f.write_str("--key"),
            KeyOrigin::File(path) => write!(f, "--key-file {path}"),
            KeyOrigin::Env => write!(f, "the environment variable {KEY_ENV}"),
        }
    }
}

/// Loads the key: `--key`, else `--key-file`, else `SMARTY_KEY`; `None` when none is given.
///
/// # Errors
/// When the file cannot be read or the key is malformed (the message names the origin and
/// the problem, never the key).
pub fn load_key(flag: Option<&str>, file: Option<&Path>) -> Result<Option<(Key, KeyOrigin)>> {
    let (text, origin) = if let Some(text) = flag {
        (text.to_owned(), KeyOrigin::Flag)
    } else if let Some(path) = file {
        let text = crate::config::read_secret(path)?;
        (
            text.expose().to_owned(),
            KeyOrigin::File(path.display().to_string()),
        )
    } else {
        match std::env::var(KEY_ENV) {
            Ok(text) if !text.trim().is_empty() => (text, KeyOrigin::Env),
            _ => return Ok(None),
        }
    };
    let key = parse_key(&text, &origin)?;
    Ok(Some((key, origin)))
}

/// Parses a key given as text (hex digits, perhaps with separators, `#` comment lines and a
/// byte-order mark, as key files have them); `origin` names where it came from in the error.
///
/// # Errors
/// When the text is not 32 hex digits: the message names the origin and the problem, never
/// the key.
pub fn parse_key(text: &str, origin: &dyn std::fmt::Display) -> Result<Key> {
    Key::from_hex(&strip_comments(text))
        .map_err(|e| anyhow::anyhow!("invalid key from {origin}: {}", key_problem(&e, "a key")))
}

/// What is wrong with a key given as text, `what` naming the key ("a key", "an authentication
/// key"); never the key itself.
fn key_problem(e: &KeyError, what: &str) -> String {
    match e {
        KeyError::Length(digits) => {
            format!("{what} is 32 hex digits (16 bytes); this one has {digits} hex digits")
        }
        KeyError::NotHex { found, position } => {
            format!(
                "{what} holds hex digits 0-9 and A-F only; found {found:?} at position {position}"
            )
        }
        other => other.to_string(),
    }
}

/// Drops a byte-order mark (Windows editors write one) and `#` comment lines (key files may
/// carry a note on where the key came from).
fn strip_comments(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The AAD from `--auth-key` / `--aad` (default: Luxembourg's), or the meter settings
/// `auth_key` / `aad`: `settings` says which, for the messages.
///
/// # Errors
/// When the hex is malformed or the authentication key is not 16 bytes.
pub fn load_aad(auth_key: Option<&str>, aad: Option<&str>, settings: Settings) -> Result<Aad> {
    let (aad_name, auth_key_name) = match settings {
        Settings::Flags => ("--aad", "--auth-key"),
        Settings::Meter => ("aad", "auth_key"),
    };
    if let Some(text) = aad {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("none") {
            return Ok(Aad::Empty);
        }
        let bytes = smarty_p1::hex::decode(trimmed).map_err(|e| match e {
            HexError::NotHex { found, position } => anyhow::anyhow!(
                "invalid {aad_name}: the AAD holds hex digits 0-9 and A-F only (or is `none`); found {found:?} at position {position}"
            ),
            e => anyhow::anyhow!("invalid {aad_name}: {e}"),
        })?;
        return Ok(Aad::Custom(bytes));
    }
    if let Some(text) = auth_key {
        let key = Key::from_hex(text).map_err(|e| {
            anyhow::anyhow!(
                "invalid {auth_key_name}: {}",
                key_problem(&e, "an authentication key")
            )
        })?;
        return Ok(Aad::AuthKey(*key.as_bytes()));
    }
    Ok(Aad::default())
}

/// Builds the decoder settings of `read` from the key flags.
///
/// # Errors
/// As [`load_key`] and [`load_aad`].
pub fn decoder_config(args: &KeyArgs) -> Result<(DecoderConfig, Option<KeyOrigin>)> {
    let key = load_key(args.key.as_deref(), args.key_file.as_deref())?;
    let aad = load_aad(
        args.auth_key.as_deref(),
        args.aad.as_deref(),
        Settings::Flags,
    )?;
    let origin = key.as_ref().map(|(_, o)| o.clone());
    let config = DecoderConfig::default()
        .with_key(key.map(|(k, _)| k))
        .with_aad(aad)
        .with_verify_tag(!args.no_verify_tag)
        .with_reject_replay(args.reject_replay);
    Ok((config, origin))
}

/// Where the user gives a meter's key settings, so that messages name the options to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settings {
    /// Command-line flags (`read`, `import`): `--key`, `--key-file`, `SMARTY_KEY`,
    /// `--auth-key`, `--aad`, `--no-verify-tag`.
    Flags,
    /// A `[[meter]]` of the configuration (`run`): `key_file`, `key`,
    /// `SMARTY_METER_<NAME>_KEY`, `auth_key`, `aad`, `verify_tag`, each also set by the flag
    /// of the same name for a meter given on the command line.
    Meter,
}

/// A rejection in words: the core's message (what is wrong with the frame or telegram), and
/// where the user can change something, which setting to change, named as in `settings`.
///
/// The core's messages name no option; the advice is the application's.
pub fn explain(rejection: &Rejection, settings: Settings) -> String {
    let advice = match rejection {
        Rejection::Decrypt(DecryptError::NoKey) => match settings {
            Settings::Flags => " (use --key, --key-file or SMARTY_KEY)".to_owned(),
            Settings::Meter => {
                " (set the meter's key_file or key, or SMARTY_METER_<NAME>_KEY; --key-file, --key)"
                    .to_owned()
            }
        },
        Rejection::Decrypt(DecryptError::Authentication { hint }) => {
            format!(": {}", aad_advice(*hint, settings))
        }
        _ => String::new(),
    };
    format!("{rejection}{advice}")
}

/// What to change when the tag does not verify with the configured AAD but `hint` says what
/// does.
fn aad_advice(hint: AadHint, settings: Settings) -> String {
    let Some(aad) = hint.aad() else {
        return match settings {
            Settings::Flags => "give it with --auth-key HEX (or the whole AAD with --aad HEX), \
                                or accept CRC-checked telegrams without the tag with --no-verify-tag"
                .to_owned(),
            Settings::Meter => "set the meter's auth_key (or the whole AAD in aad), or accept \
                                CRC-checked telegrams without the tag with verify_tag = false \
                                (--auth-key, --aad, --no-verify-tag)"
                .to_owned(),
        };
    };
    // The AAD as `--aad` takes it.
    let value = match &aad {
        a if *a == Aad::default() => None,
        Aad::Empty => Some("none".to_owned()),
        Aad::Custom(bytes) => Some(smarty_p1::hex::upper(bytes).to_string()),
        // Another authentication key: never printed (it may be the meter's own).
        _ => {
            return match settings {
                Settings::Flags => "change --auth-key".to_owned(),
                Settings::Meter => "change the meter's auth_key (--auth-key)".to_owned(),
            };
        }
    };
    match (value, settings) {
        (None, Settings::Flags) => "drop --auth-key/--aad".to_owned(),
        (None, Settings::Meter) => {
            "remove the meter's auth_key and aad (--auth-key/--aad)".to_owned()
        }
        (Some(value), Settings::Flags) => format!("use --aad {value}"),
        (Some(value), Settings::Meter) => {
            format!("set the meter's aad = \"{value}\" (--aad {value})")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_errors_never_show_the_key() {
        let err = load_key(Some("D491470F47126332B07D1923B35041"), None).unwrap_err();
        let text = err.to_string();
        assert_eq!(
            text,
            "invalid key from --key: a key is 32 hex digits (16 bytes); this one has 30 hex digits"
        );
        let err = load_key(Some("D491470F47126332B07D1923B350418Z"), None).unwrap_err();
        assert!(!err.to_string().contains("D491470F"), "{err}");
        assert!(err.to_string().contains("'Z' at position 32"), "{err}");
    }

    #[test]
    fn key_file_with_comment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(
            &path,
            "# from Creos, 2026-11\nD491 470F 4712 6332 B07D 1923 B350 4188\n",
        )
        .unwrap();
        let (key, origin) = load_key(None, Some(&path)).unwrap().unwrap();
        assert_eq!(key.as_bytes()[0], 0xD4);
        assert!(matches!(origin, KeyOrigin::File(_)));
    }

    #[test]
    fn key_file_with_a_byte_order_mark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "\u{feff}D491470F47126332B07D1923B3504188\r\n").unwrap();
        let (key, _) = load_key(None, Some(&path)).unwrap().unwrap();
        assert_eq!(key.as_bytes()[0], 0xD4);
        let secret = crate::config::read_secret(&path).unwrap();
        assert_eq!(secret.expose(), "D491470F47126332B07D1923B3504188");
    }

    #[test]
    fn auth_key_and_aad_errors_name_their_own_setting() {
        let err = load_aad(Some("BBBB"), None, Settings::Flags).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --auth-key: an authentication key is 32 hex digits (16 bytes); this one has 4 hex digits"
        );
        let err = load_aad(Some("BBB"), None, Settings::Meter).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid auth_key: an authentication key is 32 hex digits (16 bytes); this one has 3 hex digits"
        );
        let err = load_aad(None, Some("30zz"), Settings::Flags).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --aad: the AAD holds hex digits 0-9 and A-F only (or is `none`); found 'z' at position 3"
        );
        let err = load_aad(None, Some("303"), Settings::Meter).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid aad: hex text must have an even number of digits; this has 3"
        );
    }

    #[test]
    fn rejections_are_explained_with_the_settings_to_change() {
        let auth = |hint| Rejection::Decrypt(DecryptError::Authentication { hint });
        let cases = [
            (
                Rejection::Decrypt(DecryptError::NoKey),
                "encrypted frame but no decryption key given (use --key, --key-file or SMARTY_KEY)",
                "encrypted frame but no decryption key given (set the meter's key_file or key, or SMARTY_METER_<NAME>_KEY; --key-file, --key)",
            ),
            (
                auth(AadHint::LuxembourgDefault),
                "the tag verifies with Luxembourg's default authentication key: drop --auth-key/--aad",
                "the tag verifies with Luxembourg's default authentication key: remove the meter's auth_key and aad (--auth-key/--aad)",
            ),
            (
                auth(AadHint::Empty),
                "the tag verifies with an empty AAD: use --aad none",
                "the tag verifies with an empty AAD: set the meter's aad = \"none\" (--aad none)",
            ),
            (
                auth(AadHint::SecurityByteOnly),
                "the tag verifies with the security byte alone as AAD: use --aad 30",
                "the tag verifies with the security byte alone as AAD: set the meter's aad = \"30\" (--aad 30)",
            ),
            (
                auth(AadHint::Unknown),
                "an authentication key of its own: give it with --auth-key HEX (or the whole AAD with --aad HEX), or accept CRC-checked telegrams without the tag with --no-verify-tag",
                "an authentication key of its own: set the meter's auth_key (or the whole AAD in aad), or accept CRC-checked telegrams without the tag with verify_tag = false (--auth-key, --aad, --no-verify-tag)",
            ),
        ];
        for (rejection, flags, meter) in cases {
            let core = rejection.to_string();
            for (settings, advice) in [(Settings::Flags, flags), (Settings::Meter, meter)] {
                let text = explain(&rejection, settings);
                assert!(text.starts_with(&core), "{text}");
                assert!(text.ends_with(advice), "{settings:?}: {text}");
            }
        }
        // Nothing to change in the settings: the core's message alone.
        let wrong = Rejection::Decrypt(DecryptError::WrongKey);
        assert_eq!(explain(&wrong, Settings::Flags), wrong.to_string());
    }

    #[test]
    fn aad_forms() {
        assert_eq!(
            load_aad(None, Some("none"), Settings::Flags).unwrap(),
            Aad::Empty
        );
        assert_eq!(
            load_aad(None, None, Settings::Flags).unwrap(),
            Aad::default()
        );
        assert_eq!(
            load_aad(None, Some("30FF"), Settings::Flags).unwrap(),
            Aad::Custom(vec![0x30, 0xFF])
        );
        assert!(matches!(
            load_aad(
                Some("BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"),
                None,
                Settings::Flags
            )
            .unwrap(),
            Aad::AuthKey([0xBB, ..])
        ));
        assert!(load_aad(Some("BBBB"), None, Settings::Flags).is_err());
    }
}
