//! Connecting to NATS: one client per process, which reconnects on its own (for ever, the
//! publishes and requests of the meantime waiting in its buffer), its connection changes
//! logged.
//!
//! Server addresses are `nats://[user:password@]host[:port]` (or `tls://…`), several separated
//! by commas for a cluster. A password never appears in logs or errors: see [`redacted`].

use std::time::Duration;

/// How long one attempt to connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The first connection failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to NATS at {url}: {reason}")]
pub struct ConnectError {
    /// The servers, without passwords.
    pub url: String,
    /// Why, without the address.
    pub reason: String,
}

/// Connects to the NATS servers `url` as client `name` (shown by the server's monitoring):
/// the first connection must work; later losses are reconnected for ever.
///
/// # Errors
/// No server of `url` can be reached, or it refuses the client.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, ConnectError> {
    let shown = redacted(url);
    let events_url = shown.clone();
    // The client takes one address per string: a cluster's comma-separated list is split
    // here (each address shown back only without its password).
    let servers = servers(url).map_err(|reason| ConnectError {
        url: shown.clone(),
        reason,
    })?;
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(CONNECT_TIMEOUT)
        .max_reconnects(None)
        .event_callback(move |event| {
            let url = events_url.clone();
            async move {
                match event {
                    async_nats::Event::Connected => tracing::info!(%url, "NATS: connected"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!(%url, "NATS: disconnected; reconnecting");
                    }
                    other => tracing::info!(%url, "NATS: {other}"),
                }
            }
        })
        .connect(servers)
        .await
        .map_err(|e| {
            use async_nats::ConnectErrorKind as Kind;
            // An address that does not parse may be shown back whole in the source: only the
            // kind then.
            let reason = match e.kind() {
                Kind::ServerParse => {
                    "the address is not nats://[user:password@]host[:port]".to_owned()
                }
                _ => e.to_string(),
            };
            ConnectError { url: shown, reason }
        })
}

/// The servers of `url`, split at commas.
///
/// # Errors
/// An address that does not parse (not shown: it may hold a password).
fn servers(url: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    url.split(',')
        .map(str::trim)
        .filter(|server| !server.is_empty())
        .map(|server| {
            server
                .parse::<async_nats::ServerAddr>()
                .map_err(|_| "the address is not nats://[user:password@]host[:port]".to_owned())
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|servers| {
            if servers.is_empty() {
                Err("no server address".to_owned())
            } else {
                Ok(servers)
            }
        })
}

/// `url` without the passwords (or tokens) of its servers: the user part of each
/// comma-separated address is replaced by `***`.
///
/// # Example
/// ```
/// use smarty_fleet::nats::redacted;
/// assert_eq!(redacted("nats://a:secret@n1:4222,nats://n2"), "nats://***@n1:4222,nats://n2");
/// assert_eq!(redacted("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
/// ```
pub fn redacted(url: &str) -> String {
    url.split(',')
        .map(|server| {
            let (scheme, rest) = match server.split_once("://") {
                Some((scheme, rest)) => (Some(scheme), rest),
                None => (None, server),
            };
            let rest = match rest.rsplit_once('@') {
                Some((_, host)) => format!("***@{host}"),
                None => rest.to_owned(),
            };
            match scheme {
                Some(scheme) => format!("{scheme}://{rest}"),
                None => rest,
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_address_is_split_at_commas() {
        let three = servers("nats://a:4222, nats://u:p@b:4223,tls://c").unwrap();
        assert_eq!(three.len(), 3);
        assert_eq!(three[1].port(), 4223);
        assert!(servers("nats://a:4222,http://[").is_err());
        assert!(servers(" , ").is_err());
    }
}
