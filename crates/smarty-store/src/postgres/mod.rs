//! The PostgreSQL backend (15 or newer): where the server is ([`PostgresConfig`]), how
//! `smarty` connects (password, TLS), the schema and its migrations ([`schema`]), the daily
//! partitions of the readings (`Partitions`) and the statements of `Db`
//! (`PgDb`). docs/postgres.md describes the tables for people who query them.
//!
//! The password comes, in this order, from the URL, `PGPASSWORD`, the configured
//! `password_file`, or `~/.pgpass` (`PGPASSFILE`), as libpq finds it; it is never logged nor
//! shown: [`PostgresConfig`]'s `Display` and `Debug` leave it out.
//!
//! `sslmode` in the URL works as in libpq: `disable`; `prefer` (the default: TLS when the
//! server offers it) and `require` encrypt without checking the server's certificate;
//! `verify-ca` checks it against the system's authorities (and `sslrootcert`, a PEM file),
//! `verify-full` also checks the host name.

mod client;
mod db;
mod partitions;
pub mod schema;
mod tls;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use client::PgClient;
pub(crate) use db::PgDb;
pub(crate) use partitions::Partitions;

use crate::StoreError;

/// How long connecting may take before it is an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The parameters of a connection URL that `smarty` reads itself (the client library does
/// not know all of them).
const OWN_PARAMETERS: [&str; 3] = ["sslmode", "sslrootcert", "passfile"];

/// A PostgreSQL server and database: a connection URL
/// (`postgres://user@host:port/database?sslmode=…`) and where a password may come from.
///
/// # Example
/// ```
/// use smarty_store::postgres::PostgresConfig;
///
/// let config = PostgresConfig::parse("postgres://smarty:secret@db.example/history").unwrap();
/// // The password is never shown.
/// assert_eq!(config.to_string(), "postgres://smarty@db.example/history");
/// assert!(!format!("{config:?}").contains("secret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresConfig {
    url: url::Url,
    /// A file holding the password (its first line), used when the URL and `PGPASSWORD` give
    /// none.
    pub password_file: Option<PathBuf>,
}

/// How TLS is used (`sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl PostgresConfig {
    /// Reads a connection URL (`postgres://` or `postgresql://`).
    ///
    /// # Errors
    /// [`StoreError::Config`] for a URL that is not one, with a reason that never repeats
    /// the password.
    pub fn parse(url: &str) -> Result<PostgresConfig, StoreError> {
        let parsed = url::Url::parse(url).map_err(|e| {
            StoreError::Config(format!(
                "not a PostgreSQL URL (postgres://user@host/database): {e}"
            ))
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(StoreError::Config(format!(
                "a PostgreSQL URL starts with postgres://, not {}://",
                parsed.scheme()
            )));
        }
        let config = PostgresConfig {
            url: parsed,
            password_file: None,
        };
        config.ssl_mode()?;
        config.client_config()?;
        Ok(config)
    }

    /// Whether `text` names a PostgreSQL database rather than an SQLite file.
    pub fn is_url(text: &str) -> bool {
        text.starts_with("postgres://") || text.starts_with("postgresql://")
    }

    /// The `sslmode` asked for.
    pub(crate) fn ssl_mode(&self) -> Result<SslMode, StoreError> {
        Ok(match self.parameter("sslmode").as_deref() {
            None | Some("prefer") => SslMode::Prefer,
            Some("disable") => SslMode::Disable,
            Some("require") => SslMode::Require,
            Some("verify-ca") => SslMode::VerifyCa,
            Some("verify-full") => SslMode::VerifyFull,
            Some(other) => {
                return Err(StoreError::Config(format!(
                    "sslmode={other}: use disable, prefer, require, verify-ca or verify-full"
                )));
            }
        })
    }

    /// A query parameter of the URL.
    pub(crate) fn parameter(&self, name: &str) -> Option<String> {
        self.url
            .query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The client library's configuration: the URL without the parameters read here, the
    /// password found ([`PostgresConfig`]), a connect timeout and the application name.
    fn client_config(&self) -> Result<postgres::Config, StoreError> {
        let mut url = self.url.clone();
        let kept: Vec<(String, String)> = self
            .url
            .query_pairs()
            .filter(|(key, _)| !OWN_PARAMETERS.contains(&key.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
        let mut config: postgres::Config = url
            .as_str()
            .parse()
            .map_err(|e| StoreError::Config(format!("{self}: {e}")))?;
        if config.get_user().is_none() {
            config.user(&std::env::var("PGUSER").unwrap_or_else(|_| "postgres".to_owned()));
        }
        if config.get_dbname().is_none()
            && let Ok(name) = std::env::var("PGDATABASE")
        {
            config.dbname(&name);
        }
        config.ssl_mode(match self.ssl_mode()? {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("smarty");
        }
        if config.get_password().is_none()
            && let Some(password) = self.find_password(&config)?
        {
            config.password(password);
        }
        Ok(config)
    }

    /// The password from `PGPASSWORD`, the password file, or the pgpass file.
    fn find_password(&self, config: &postgres::Config) -> Result<Option<String>, StoreError> {
        if let Ok(password) = std::env::var("PGPASSWORD") {
            return Ok(Some(password));
        }
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path).map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
            return Ok(Some(text.lines().next().unwrap_or_default().to_owned()));
        }
        let pgpass = self
            .parameter("passfile")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("PGPASSFILE").map(PathBuf::from))
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass")));
        Ok(pgpass.and_then(|path| {
            let text = std::fs::read_to_string(path).ok()?;
            pgpass_lookup(&text, config)
        }))
    }

    /// Connects.
    ///
    /// # Errors
    /// [`StoreError::Postgres`] when the server cannot be reached, refuses the login, or
    /// the TLS set-up fails; [`StoreError::Tls`] when the server's certificate is refused
    /// (what to do in its message); [`StoreError::Config`] for a bad `sslrootcert`.
    pub(crate) fn connect(&self) -> Result<PgClient, StoreError> {
        let config = self.client_config()?;
        let mode = self.ssl_mode()?;
        let tls = match mode {
            SslMode::Disable => None,
            mode => Some(tls::connector(mode, self.parameter("sslrootcert"))?),
        };
        PgClient::connect(move || match tls {
            None => config.connect(postgres::NoTls),
            Some(tls) => config.connect(tls),
        })
        .map_err(|source| {
            let server = self.to_string();
            match tls::explain(&source, self.parameter("sslrootcert").as_deref()) {
                Some(reason) => StoreError::Tls {
                    server,
                    reason,
                    source,
                },
                None => StoreError::Postgres { server, source },
            }
        })
    }
}

impl fmt::Display for PostgresConfig {
    /// The URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.url.clone();
        let _ = url.set_password(None);
        f.write_str(url.as_str())
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &self.to_string())
            .field("password_file", &self.password_file)
            .finish()
    }
}

/// The password of the first line of a pgpass file (`host:port:database:user:password`, `*`
/// matching anything, `\:` and `\\` escaped) that matches the connection.
fn pgpass_lookup(text: &str, config: &postgres::Config) -> Option<String> {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "localhost".to_owned(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default();
    let database = config.get_dbname().unwrap_or(user);
    let wanted = [host.as_str(), port.as_str(), database, user];
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .find_map(|line| {
            let fields = pgpass_fields(line);
            if fields.len() != 5 {
                return None;
            }
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, value)| field == "*" || field == value);
            matches.then(|| fields[4].clone())
        })
}

/// The fields of a pgpass line, unescaped.
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_never_shown() {
        let config =
            PostgresConfig::parse("postgresql://u:hunter2@h:5433/d?sslmode=require").unwrap();
        assert_eq!(
            config.to_string(),
            "postgresql://u@h:5433/d?sslmode=require"
        );
        assert!(!format!("{config:?}").contains("hunter2"));
        let error = PostgresConfig::parse("postgres://u:hunter2@h/d?sslmode=maybe").unwrap_err();
        assert!(error.to_string().contains("sslmode=maybe"), "{error}");
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn only_postgres_urls_are_taken() {
        assert!(PostgresConfig::parse("mysql://h/d").is_err());
        assert!(PostgresConfig::parse("/var/lib/smarty/smarty.db").is_err());
        assert!(PostgresConfig::is_url("postgres://h/d"));
        assert!(!PostgresConfig::is_url("sqlite:/tmp/x.db"));
    }

    #[test]
    fn pgpass_lines_match_host_port_database_and_user() {
        let config: postgres::Config = "postgres://smarty@db:5433/history".parse().unwrap();
        let text = "# comment\n\
                    other:5433:history:smarty:wrong\n\
                    db:5433:*:smarty:pa\\:ss\n\
                    *:*:*:*:fallback\n";
        assert_eq!(pgpass_lookup(text, &config).as_deref(), Some("pa:ss"));
        let config: postgres::Config = "postgres://someone@elsewhere/x".parse().unwrap();
        assert_eq!(pgpass_lookup(text, &config).as_deref(), Some("fallback"));
        assert_eq!(pgpass_lookup("db:1:2:3\n", &config), None);
    }
}
