//! Where the store is and how it keeps data: the `[store]` section as written
//! ([`StoreSection`]) and the settings a store is opened with ([`StoreConfig`]). The
//! application resolves the one into the other (the state directory, the command line).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::StoreError;
use crate::postgres::PostgresConfig;

/// The store's file name inside the state directory.
pub const FILE_NAME: &str = "smarty.db";

/// Default days raw readings are kept.
pub const DEFAULT_RAW_RETENTION_DAYS: u32 = 90;

/// Default time between commits of the service's writer.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// Where a store is: an SQLite file or a PostgreSQL database.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Location {
    /// An SQLite file (its `-wal` and `-shm` files live beside it).
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(PostgresConfig),
}

impl Location {
    /// Reads where a store is: `postgres://…` (or `postgresql://…`) is a PostgreSQL
    /// database, `sqlite:PATH` or a plain path an SQLite file.
    ///
    /// # Example
    /// ```
    /// use smarty_store::config::Location;
    ///
    /// assert!(matches!(Location::parse("postgres://db/smarty"), Ok(Location::Postgres(_))));
    /// assert!(matches!(Location::parse("sqlite:/var/lib/smarty/smarty.db"), Ok(Location::Sqlite(_))));
    /// assert!(matches!(Location::parse("history.db"), Ok(Location::Sqlite(_))));
    /// ```
    ///
    /// # Errors
    /// [`StoreError::Config`] for a PostgreSQL URL that is not one.
    pub fn parse(text: &str) -> Result<Location, StoreError> {
        if PostgresConfig::is_url(text) {
            return PostgresConfig::parse(text).map(Location::Postgres);
        }
        let path = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"));
        Ok(Location::Sqlite(PathBuf::from(path.unwrap_or(text))))
    }

    /// The SQLite file, if it is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Location::Sqlite(path) => Some(path),
            Location::Postgres(_) => None,
        }
    }
}

impl fmt::Display for Location {
    /// The file's path, or the URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(config) => write!(f, "{config}"),
        }
    }
}

/// How the store is opened and kept.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StoreConfig {
    /// Where it is.
    pub location: Location,
    /// Days raw readings are kept (aggregates and M-Bus readings are kept forever); 0 keeps
    /// raw readings forever.
    pub raw_retention_days: u32,
    /// The service's writer commits what it buffered this often: a crash loses at most the
    /// readings of one interval.
    pub commit_interval: Duration,
}

/// The commit intervals accepted, in seconds: from 10 ms to an hour.
pub const COMMIT_INTERVAL_S: std::ops::RangeInclusive<f64> = 0.01..=3600.0;

/// The `[store]` section as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct StoreSection {
    /// Keep a history at all (default true).
    pub enabled: bool,
    /// The SQLite file (default `<state_dir>/smarty.db`; a relative path is taken inside the
    /// state directory).
    pub path: Option<PathBuf>,
    /// A PostgreSQL database instead (`postgres://user@host/database?sslmode=…`); the
    /// `DATABASE_URL` environment variable gives it too.
    pub url: Option<String>,
    /// A file holding the PostgreSQL password, when neither the URL nor `PGPASSWORD` give one
    /// (`~/.pgpass` is read last).
    pub password_file: Option<PathBuf>,
    /// Days raw readings are kept (default 90; 0 keeps them forever).
    pub raw_retention_days: u32,
    /// Seconds between commits of the service's writer (default 5), within
    /// [`COMMIT_INTERVAL_S`].
    pub commit_interval_s: f64,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            enabled: true,
            path: None,
            url: None,
            password_file: None,
            raw_retention_days: DEFAULT_RAW_RETENTION_DAYS,
            commit_interval_s: DEFAULT_COMMIT_INTERVAL.as_secs_f64(),
        }
    }
}

impl StoreSection {
    /// Every invalid setting: `(field, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.url.is_some() && self.path.is_some() {
            out.push((
                "url",
                "give either path (an SQLite file) or url (a PostgreSQL database), not both".into(),
            ));
        }
        if let Some(url) = &self.url
            && let Err(e) = PostgresConfig::parse(url)
        {
            out.push(("url", e.to_string()));
        }
        if !COMMIT_INTERVAL_S.contains(&self.commit_interval_s) {
            out.push((
                "commit_interval_s",
                format!(
                    "commit_interval_s must be from {} to {} seconds",
                    COMMIT_INTERVAL_S.start(),
                    COMMIT_INTERVAL_S.end()
                ),
            ));
        }
        out
    }
}

impl StoreConfig {
    /// The defaults for a store file at `path`.
    pub fn at(path: PathBuf) -> StoreConfig {
        StoreConfig::in_location(Location::Sqlite(path))
    }

    /// The defaults for a store in `location`.
    pub fn in_location(location: Location) -> StoreConfig {
        StoreConfig {
            location,
            raw_retention_days: DEFAULT_RAW_RETENTION_DAYS,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
        }
    }

    /// The raw retention as seconds, `None` for forever.
    pub fn retention_s(&self) -> Option<i64> {
        (self.raw_retention_days > 0).then(|| i64::from(self.raw_retention_days) * 86_400)
    }
}
