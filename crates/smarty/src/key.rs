//! Loading the decryption key and AAD settings from flags, files and the environment.
//!
//! The key is never logged or printed: errors say what is wrong with it, not what it is.

use std::path::Path;

use anyhow::{Result, bail};
use smarty_p1::{Aad, Key, KeyError, parse_hex};

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
    let text = strip_comments(&text);
    match Key::from_hex(&text) {
        Ok(key) => Ok(Some((key, origin))),
        Err(KeyError::OddLength(n)) => {
            bail!("invalid key from {origin}: {}", KeyError::Length(n))
        }
        Err(e) => bail!("invalid key from {origin}: {e}"),
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

/// The AAD from `--auth-key` / `--aad` (default: Luxembourg's).
///
/// # Errors
/// When the hex is malformed or the authentication key is not 16 bytes.
pub fn load_aad(auth_key: Option<&str>, aad: Option<&str>) -> Result<Aad> {
    if let Some(text) = aad {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("none") {
            return Ok(Aad::Empty);
        }
        let bytes = parse_hex(trimmed).map_err(|e| anyhow::anyhow!("invalid --aad: {e}"))?;
        return Ok(Aad::Custom(bytes));
    }
    if let Some(text) = auth_key {
        let key = Key::from_hex(text).map_err(|e| match e {
            KeyError::OddLength(n) => anyhow::anyhow!(
                "invalid --auth-key: {}",
                KeyError::Length(n)
                    .to_string()
                    .replace("a key", "an authentication key")
            ),
            e => anyhow::anyhow!(
                "invalid --auth-key: {}",
                e.to_string().replace("a key", "an authentication key")
            ),
        })?;
        return Ok(Aad::AuthKey(*key.as_bytes()));
    }
    Ok(Aad::default())
}

/// Builds the decoder settings of `read` from the key flags.
///
/// # Errors
/// As [`load_key`] and [`load_aad`].
pub fn decoder_config(args: &KeyArgs) -> Result<(smarty_p1::DecoderConfig, Option<KeyOrigin>)> {
    let key = load_key(args.key.as_deref(), args.key_file.as_deref())?;
    let aad = load_aad(args.auth_key.as_deref(), args.aad.as_deref())?;
    let origin = key.as_ref().map(|(_, o)| o.clone());
    Ok((
        smarty_p1::DecoderConfig {
            key: key.map(|(k, _)| k),
            aad,
            verify_tag: !args.no_verify_tag,
            reject_replay: args.reject_replay,
            ..Default::default()
        },
        origin,
    ))
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
    fn aad_forms() {
        assert_eq!(load_aad(None, Some("none")).unwrap(), Aad::Empty);
        assert_eq!(load_aad(None, None).unwrap(), Aad::default());
        assert_eq!(
            load_aad(None, Some("30FF")).unwrap(),
            Aad::Custom(vec![0x30, 0xFF])
        );
        assert!(matches!(
            load_aad(Some("BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"), None).unwrap(),
            Aad::AuthKey([0xBB, ..])
        ));
        assert!(load_aad(Some("BBBB"), None).is_err());
    }
}
