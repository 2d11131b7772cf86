//! [`Secret`]: a password, token or key text that never shows itself.
//!
//! Its `Debug` and `Display` print `<redacted>`, and reading one from a configuration file or
//! the environment never puts the value into an error message (serde's own messages quote
//! the value they refused: ``invalid type: integer `123456` ``). Report TOML errors with
//! `toml::de::Error::message()` and a line number, never with its `Display`, which quotes the
//! offending line of the file.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A secret string: MQTT and database passwords, the API token, key text.
///
/// `format!("{password} {password:?}")` gives `<redacted> Secret(<redacted>)`;
/// [`Secret::expose`] gives the value to the one place that uses it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself, for the one place that needs it (a connection, a comparison).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Takes a string; a number (`password = 123456` without quotes) is taken as its digits.
/// Anything else is refused with a message that does not contain the value.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;

        const REFUSED: &str = "a secret must be a string (the value is not shown)";

        impl<'v> Visitor<'v> for SecretVisitor {
            type Value = Secret;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom(REFUSED))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom(REFUSED))
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Secret, E> {
                Err(E::custom(REFUSED))
            }
            fn visit_seq<A: de::SeqAccess<'v>>(self, _: A) -> Result<Secret, A::Error> {
                Err(de::Error::custom(REFUSED))
            }
            fn visit_map<A: de::MapAccess<'v>>(self, _: A) -> Result<Secret, A::Error> {
                Err(de::Error::custom(REFUSED))
            }
        }

        deserializer.deserialize_any(SecretVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Section {
        password: Secret,
    }

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::from("hunter2".to_owned());
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert!(!format!("{:?}", Some(&s)).contains("hunter2"));
    }

    #[test]
    fn numbers_are_taken_as_text_and_refusals_do_not_echo() {
        let ok: Section = toml::from_str("password = 123456").unwrap();
        assert_eq!(ok.password.expose(), "123456");
        let ok: Section = toml::from_str("password = \"true\"").unwrap();
        assert_eq!(ok.password.expose(), "true");
        for (text, value) in [
            ("password = 98.765", "98.765"),
            ("password = true", "true"),
            ("password = [4242]", "4242"),
        ] {
            let err = toml::from_str::<Section>(text).unwrap_err();
            let message = err.message();
            assert!(message.contains("the value is not shown"), "{message}");
            assert!(!message.contains(value), "{message}");
        }
    }
}
