//! Broker addresses: `mqtt://[user[:password]@]host[:port]` (TCP, port 1883 by default) and
//! `mqtts://…` (TLS, port 8883 by default), parsed by the `url` crate. The output's `mqtt.url`
//! and the raw MQTT source (`mqtt://…/TOPIC`) use this one parser; the source splits its
//! topic off first (an MQTT topic is taken literally: its `#` wildcard would be a URL's
//! fragment).

use std::fmt;

use percent_encoding::percent_decode_str;
use url::{Host, Url};

use smarty_model::secret::Secret;

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// TLS (`mqtts://`).
    pub tls: bool,
    /// Host name or address (IPv6 in brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Why a broker address was refused. The texts name no setting: the caller says which
/// (`mqtt.url`, a meter's source).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not a URL at all (`broker:1883`, a bad port number, a malformed IPv6 address).
    #[error("{0}")]
    Syntax(url::ParseError),
    /// A scheme other than `mqtt`, `mqtts` and their synonyms.
    #[error("unknown scheme {0:?}")]
    Scheme(String),
    /// No host.
    #[error("no host")]
    NoHost,
    /// Port 0.
    #[error("port 0 is not a port to connect to")]
    PortZero,
    /// A path, query or fragment after the host (the output's address has none).
    #[error("a path or query is not supported")]
    Path,
    /// A user or password where none may be (the output's address).
    #[error("a user or password is not allowed here")]
    Userinfo,
    /// A password without a user name (`mqtt://:secret@host`).
    #[error("a password without a user name")]
    PasswordWithoutUser,
    /// A user or password with a `%` not followed by two hex digits, or not UTF-8 once decoded.
    #[error("bad percent escape in the user or password")]
    PercentEscape,
}

/// A broker address with the user and password it names (percent-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Where the broker is.
    pub endpoint: Endpoint,
    /// The user, if the URL names one.
    pub username: Option<String>,
    /// The password, if the URL holds one.
    pub password: Option<Secret>,
}

impl BrokerUrl {
    /// Parses `scheme://[user[:password]@]host[:port][/]`: the scheme `mqtt` (or `tcp`) or
    /// `mqtts` (or `ssl`, `tls`), in any case; a host name, an IPv4 address or an IPv6
    /// address in brackets; a port other than 0 (default 1883, or 8883 with TLS). The user
    /// and password may be percent-encoded (`%40` for `@`, `%3A` for `:`).
    ///
    /// # Errors
    /// A [`UrlError`] saying what is wrong.
    pub fn parse(text: &str) -> Result<BrokerUrl, UrlError> {
        let url = Url::parse(text).map_err(UrlError::Syntax)?;
        let tls = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" | "tls" => true,
            other => return Err(UrlError::Scheme(other.to_owned())),
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(UrlError::Path);
        }
        let host = match url.host() {
            Some(Host::Domain("")) | None => return Err(UrlError::NoHost),
            Some(Host::Ipv6(address)) => format!("[{address}]"),
            Some(host) => host.to_string(),
        };
        let port = match url.port() {
            Some(0) => return Err(UrlError::PortZero),
            Some(port) => port,
            None if tls => 8883,
            None => 1883,
        };
        let username = match url.username() {
            "" => None,
            user => Some(decode(user)?),
        };
        let password = url.password().map(decode).transpose()?;
        if username.is_none() && password.is_some() {
            return Err(UrlError::PasswordWithoutUser);
        }
        Ok(BrokerUrl {
            endpoint: Endpoint { tls, host, port },
            username,
            password: password.map(Secret::from),
        })
    }
}

/// Percent-decodes a user or password; a `%` must start an escape.
fn decode(text: &str) -> Result<String, UrlError> {
    let escapes_ok = text.split('%').skip(1).all(|after| {
        after
            .as_bytes()
            .get(..2)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_ok {
        return Err(UrlError::PercentEscape);
    }
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| UrlError::PercentEscape)
}

impl Endpoint {
    /// Parses a broker address without user, password or path (the output's `mqtt.url`); see
    /// [`BrokerUrl::parse`].
    ///
    /// # Errors
    /// As [`BrokerUrl::parse`], and [`UrlError::Userinfo`] for a user or password.
    pub fn parse(text: &str) -> Result<Endpoint, UrlError> {
        let url = BrokerUrl::parse(text)?;
        if url.username.is_some() || url.password.is_some() {
            return Err(UrlError::Userinfo);
        }
        Ok(url.endpoint)
    }

    /// The host without the brackets of an IPv6 address, as a socket address takes it.
    pub fn host_name(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl fmt::Display for Endpoint {
    /// `mqtt://host:port` or `mqtts://host:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(text: &str) -> (bool, String, u16) {
        let ep = Endpoint::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        (ep.tls, ep.host, ep.port)
    }

    #[test]
    fn addresses_are_parsed() {
        assert_eq!(
            endpoint("mqtt://broker.lan"),
            (false, "broker.lan".into(), 1883)
        );
        assert_eq!(
            endpoint("mqtts://broker.lan:9000/"),
            (true, "broker.lan".into(), 9000)
        );
        assert_eq!(endpoint("MQTTS://[::1]"), (true, "[::1]".into(), 8883));
        assert_eq!(
            endpoint("tcp://10.0.0.2:1884"),
            (false, "10.0.0.2".into(), 1884)
        );
        assert_eq!(endpoint("ssl://h"), (true, "h".into(), 8883));
        assert_eq!(endpoint("tls://h:1"), (true, "h".into(), 1));
        let ep = Endpoint::parse("mqtt://[fe80::1]:1883").unwrap();
        assert_eq!(ep.host_name(), "fe80::1");
        assert_eq!(ep.to_string(), "mqtt://[fe80::1]:1883");
    }

    #[test]
    fn bad_addresses_are_refused_with_the_reason() {
        for (bad, why) in [
            ("broker:1883", UrlError::Scheme("broker".into())),
            ("http://x", UrlError::Scheme("http".into())),
            ("mqtt://u:p@x", UrlError::Userinfo),
            ("mqtt://u@x", UrlError::Userinfo),
            ("mqtt://x:0", UrlError::PortZero),
            (
                "mqtt://x:99999",
                UrlError::Syntax(url::ParseError::InvalidPort),
            ),
            ("mqtt://", UrlError::NoHost),
            ("mqtt://x/topic", UrlError::Path),
            ("mqtt://x?a=b", UrlError::Path),
            ("mqtt://x#", UrlError::Path),
            (
                "mqtt://[::1",
                UrlError::Syntax(url::ParseError::InvalidIpv6Address),
            ),
            (
                "broker.lan",
                UrlError::Syntax(url::ParseError::RelativeUrlWithoutBase),
            ),
        ] {
            assert_eq!(Endpoint::parse(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn users_and_passwords_are_percent_decoded() {
        let url = BrokerUrl::parse("mqtts://u%40x:s%3Acret@[::1]:9000").unwrap();
        assert_eq!(url.username.as_deref(), Some("u@x"));
        assert_eq!(url.password.as_ref().map(Secret::expose), Some("s:cret"));
        assert_eq!(url.endpoint.port, 9000);
        // The last @ ends the user and password.
        let url = BrokerUrl::parse("mqtt://u:p@ss@h").unwrap();
        assert_eq!(url.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!(url.endpoint.host, "h");
        let url = BrokerUrl::parse("mqtt://me@h").unwrap();
        assert_eq!((url.username.as_deref(), url.password), (Some("me"), None));
        assert_eq!(
            BrokerUrl::parse("mqtt://:p@h"),
            Err(UrlError::PasswordWithoutUser)
        );
        assert_eq!(
            BrokerUrl::parse("mqtt://u%zz@h"),
            Err(UrlError::PercentEscape)
        );
        assert_eq!(
            BrokerUrl::parse("mqtt://u:%ff@h"),
            Err(UrlError::PercentEscape)
        );
    }
}
