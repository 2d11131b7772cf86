//! Where the store is and how it keeps data: the `[store]` section as written
//! ([`StoreSection`]) and the settings a store is opened with ([`StoreConfig`]). The
//! application resolves the one into the other (the state directory, the command line).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The store's file name inside the state directory.
pub const FILE_NAME: &str = "smarty.db";

/// Default days raw readings are kept.
pub const DEFAULT_RAW_RETENTION_DAYS: u32 = 90;

/// Default time between commits of the service's writer.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// How the store is opened and kept.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StoreConfig {
    /// The SQLite file (its `-wal` and `-shm` files live beside it).
    pub path: PathBuf,
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
            raw_retention_days: DEFAULT_RAW_RETENTION_DAYS,
            commit_interval_s: DEFAULT_COMMIT_INTERVAL.as_secs_f64(),
        }
    }
}

impl StoreSection {
    /// Every invalid setting: `(field, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
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
        StoreConfig {
            path,
            raw_retention_days: DEFAULT_RAW_RETENTION_DAYS,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
        }
    }

    /// The raw retention as seconds, `None` for forever.
    pub fn retention_s(&self) -> Option<i64> {
        (self.raw_retention_days > 0).then(|| i64::from(self.raw_retention_days) * 86_400)
    }
}
