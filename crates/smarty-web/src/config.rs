//! The `[http]` section: where the web server listens and how it is protected.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use smarty_model::secret::Secret;

/// `[http]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Serve at all (default true, also when the section is absent).
    pub enabled: bool,
    /// Address to listen on, `host:port` (default `127.0.0.1:8080`).
    pub listen: String,
    /// `/healthz` fails when a meter's last telegram is older than this (seconds).
    pub healthy_within_s: u64,
    /// The API's access token (prefer `token_file` or `SMARTY_HTTP_TOKEN`). Required when
    /// `listen` is not a loopback address.
    pub token: Option<Secret>,
    /// A file holding the access token. The application reads it into `token` (unless that
    /// is set) before [`bind`](crate::bind): this crate reads no secret files.
    pub token_file: Option<PathBuf>,
    /// Serve `/metrics` without the token even when one is set (default false): for a
    /// Prometheus that cannot send `Authorization: Bearer` (docs/service.md names the risk).
    pub metrics_public: bool,
    /// Open connections at most (default 256); never more than half the process's limit of
    /// open files, so that meters, the store and MQTT always find descriptors. Further
    /// clients wait in the listen queue until a connection closes.
    pub max_connections: usize,
    /// A client must send a request's headers within this many seconds of connecting or of
    /// its previous answer (default 10); slower or idle connections are closed.
    pub header_read_timeout_s: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: "127.0.0.1:8080".to_owned(),
            healthy_within_s: 60,
            token: None,
            token_file: None,
            metrics_public: false,
            max_connections: 256,
            header_read_timeout_s: 10,
        }
    }
}

/// The shortest token accepted: guessing must be hopeless.
pub const MIN_TOKEN_LEN: usize = 16;

/// The largest `max_connections` accepted.
pub const MAX_CONNECTIONS: usize = 65_536;

/// The longest `header_read_timeout_s` accepted (an hour).
pub const MAX_HEADER_READ_TIMEOUT_S: u64 = 3600;

/// A mistake in the `[http]` settings. Its message names the section and the setting; the
/// value of the token never shows.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpConfigError {
    /// `listen` is not `host:port`.
    #[error("[http]: listen = {listen:?} is not host:port")]
    Listen {
        /// The address as written.
        listen: String,
        /// Why it does not resolve.
        #[source]
        source: std::io::Error,
    },
    /// `listen` resolves to no address.
    #[error("[http]: {listen:?} resolves to no address")]
    NoAddress {
        /// The address as written.
        listen: String,
    },
    /// An address other than loopback without a token.
    #[error(
        "[http]: listen = \"{listen}\" is reachable from other machines: set token_file (or \
         token, SMARTY_HTTP_TOKEN) so that only you can read your data"
    )]
    TokenNeeded {
        /// The address as written.
        listen: String,
    },
    /// A token shorter than [`MIN_TOKEN_LEN`] characters.
    #[error(
        "[http]: the token is too short ({0} characters; use at least {MIN_TOKEN_LEN}, e.g. \
         from `openssl rand -hex 16`)"
    )]
    ShortToken(usize),
    /// `max_connections` out of `1..=`[`MAX_CONNECTIONS`].
    #[error("[http]: max_connections = {0} is out of range: use 1 to {MAX_CONNECTIONS}")]
    MaxConnections(usize),
    /// `header_read_timeout_s` out of `1..=`[`MAX_HEADER_READ_TIMEOUT_S`].
    #[error(
        "[http]: header_read_timeout_s = {0} is out of range: use 1 to \
         {MAX_HEADER_READ_TIMEOUT_S} seconds"
    )]
    HeaderReadTimeout(u64),
}

impl HttpConfigError {
    /// The setting concerned: `listen`, `token`, `max_connections`, `header_read_timeout_s`.
    pub fn field(&self) -> &'static str {
        match self {
            HttpConfigError::Listen { .. }
            | HttpConfigError::NoAddress { .. }
            | HttpConfigError::TokenNeeded { .. } => "listen",
            HttpConfigError::ShortToken(_) => "token",
            HttpConfigError::MaxConnections(_) => "max_connections",
            HttpConfigError::HeaderReadTimeout(_) => "header_read_timeout_s",
        }
    }
}

impl HttpConfig {
    /// The access token: `token` (where `SMARTY_HTTP_TOKEN` lands, and the application puts
    /// the content of `token_file`), trimmed; `None` when there is none.
    ///
    /// # Errors
    /// [`HttpConfigError::ShortToken`]: a token shorter than [`MIN_TOKEN_LEN`] characters.
    pub fn token(&self) -> Result<Option<Secret>, HttpConfigError> {
        let token = self
            .token
            .as_ref()
            .map(|token| token.expose().trim().to_owned());
        if let Some(token) = &token
            && token.chars().count() < MIN_TOKEN_LEN
        {
            return Err(HttpConfigError::ShortToken(token.chars().count()));
        }
        Ok(token.map(Secret::from))
    }

    /// Checks the settings without reading secrets: the address parses, an address other than
    /// loopback comes with a token (or a token file), the limits are in range.
    ///
    /// # Errors
    /// The first mistake.
    pub fn check(&self) -> Result<(), HttpConfigError> {
        let addr = self.address()?;
        if !addr.ip().is_loopback() && self.token.is_none() && self.token_file.is_none() {
            return Err(HttpConfigError::TokenNeeded {
                listen: self.listen.clone(),
            });
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(HttpConfigError::MaxConnections(self.max_connections));
        }
        if !(1..=MAX_HEADER_READ_TIMEOUT_S).contains(&self.header_read_timeout_s) {
            return Err(HttpConfigError::HeaderReadTimeout(
                self.header_read_timeout_s,
            ));
        }
        Ok(())
    }

    /// `listen` as a socket address (`localhost:8080` resolves to loopback).
    ///
    /// # Errors
    /// When it is not `host:port`.
    pub fn address(&self) -> Result<SocketAddr, HttpConfigError> {
        use std::net::ToSocketAddrs as _;
        self.listen
            .to_socket_addrs()
            .map_err(|source| HttpConfigError::Listen {
                listen: self.listen.clone(),
                source,
            })?
            .next()
            .ok_or_else(|| HttpConfigError::NoAddress {
                listen: self.listen.clone(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let config: HttpConfig = toml::from_str("").unwrap();
        assert_eq!(config, HttpConfig::default());
        assert_eq!(config.listen, "127.0.0.1:8080");
        assert_eq!(config.healthy_within_s, 60);
        assert!(toml::from_str::<HttpConfig>("port = 1").is_err());
        config.check().unwrap();
        assert_eq!(config.token().unwrap(), None);
    }

    #[test]
    fn other_addresses_need_a_token() {
        let mut config = HttpConfig {
            listen: "0.0.0.0:8080".into(),
            ..HttpConfig::default()
        };
        let err = config.check().unwrap_err();
        assert_eq!(err.field(), "listen");
        let err = err.to_string();
        assert!(err.contains("token_file"), "{err}");
        config.token = Some(Secret::from("short".to_owned()));
        config.check().unwrap();
        assert!(
            config
                .token()
                .unwrap_err()
                .to_string()
                .contains("too short")
        );
        config.token = Some(Secret::from("0123456789abcdef0123".to_owned()));
        assert_eq!(
            config.token().unwrap().as_ref().map(Secret::expose),
            Some("0123456789abcdef0123")
        );
    }

    #[test]
    fn limits_are_checked() {
        let config: HttpConfig =
            toml::from_str("max_connections = 8\nheader_read_timeout_s = 2\nmetrics_public = true")
                .unwrap();
        assert_eq!(
            (
                config.max_connections,
                config.header_read_timeout_s,
                config.metrics_public
            ),
            (8, 2, true)
        );
        config.check().unwrap();
        for text in ["max_connections = 0", "header_read_timeout_s = 0"] {
            let config: HttpConfig = toml::from_str(text).unwrap();
            let err = config.check().unwrap_err();
            assert_eq!(err.field(), text.split(' ').next().unwrap());
            let err = err.to_string();
            assert!(err.contains("out of range"), "{text}: {err}");
        }
    }

    #[test]
    fn the_token_never_shows() {
        let config: HttpConfig = toml::from_str("token = \"0123456789abcdef0123\"").unwrap();
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
    }
}
