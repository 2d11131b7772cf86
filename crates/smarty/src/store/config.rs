//! Where the store is and how it keeps data: the `[store]` section and the `--db` /
//! `--state-dir` / `--config` options of `export` and `import`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::cli::StoreArgs;
use crate::config::{Config, default_state_dir};

/// The store's file name inside the state directory.
pub const FILE_NAME: &str = "smarty.db";

/// Default days raw readings are kept.
pub const DEFAULT_RAW_RETENTION_DAYS: u32 = 90;

/// Default time between commits of the service's writer.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// How the store is opened and kept.
#[derive(Debug, Clone, PartialEq)]
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

/// The `[store]` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default = "default_retention")]
    raw_retention_days: u32,
    #[serde(default = "default_commit_s")]
    commit_interval_s: f64,
}

fn yes() -> bool {
    true
}
fn default_retention() -> u32 {
    DEFAULT_RAW_RETENTION_DAYS
}
fn default_commit_s() -> f64 {
    DEFAULT_COMMIT_INTERVAL.as_secs_f64()
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

    /// From the `[store]` section (fields `enabled` = true, `path` (default
    /// `<state_dir>/smarty.db`; a relative path is taken inside the state directory),
    /// `raw_retention_days` = 90 (0 = forever), `commit_interval_s` = 5; unknown fields are
    /// refused) and the state directory ([`Config::state_dir`]).
    ///
    /// `Ok(None)` when `enabled = false`, or when neither `path` nor a state directory is
    /// known.
    ///
    /// # Errors
    /// An unknown field, a wrong type, or a commit interval that is not a positive number of
    /// seconds (each naming `[store]`).
    pub fn from_config(config: &Config) -> Result<Option<StoreConfig>> {
        let section: Section = match &config.store {
            Some(table) => Section::deserialize(toml::Value::Table(table.clone()))
                .map_err(|e| anyhow::anyhow!("[store]: {}", e.message()))?,
            None => Section::deserialize(toml::Value::Table(toml::Table::new()))
                .map_err(|e| anyhow::anyhow!("[store]: {}", e.message()))?,
        };
        if !section.enabled {
            return Ok(None);
        }
        if !(section.commit_interval_s > 0.0 && section.commit_interval_s.is_finite()) {
            bail!("[store]: commit_interval_s must be a positive number of seconds");
        }
        let state_dir = config.state_dir();
        let path = match (section.path, state_dir) {
            (Some(path), Some(dir)) if path.is_relative() => dir.join(path),
            (Some(path), _) => path,
            (None, Some(dir)) => dir.join(FILE_NAME),
            (None, None) => return Ok(None),
        };
        Ok(Some(StoreConfig {
            path,
            raw_retention_days: section.raw_retention_days,
            commit_interval: Duration::from_secs_f64(section.commit_interval_s),
        }))
    }

    /// For `export` and `import`: `--db FILE`, else `--state-dir DIR` (`DIR/smarty.db`), else
    /// the store of `--config FILE`, else `smarty.db` in the default state directory
    /// ([`default_state_dir`]). Retention and commit interval come from the configuration when
    /// one is given.
    ///
    /// # Errors
    /// An unreadable or invalid configuration, a configuration whose store is off, or no
    /// state directory at all (no `HOME`).
    pub fn from_args(args: &StoreArgs) -> Result<StoreConfig> {
        let config = match &args.config {
            Some(path) => Some(Config::load(path)?),
            None => None,
        };
        let configured = match (&config, &args.config) {
            (Some(config), Some(path)) => Some(
                Self::from_config(config)
                    .with_context(|| path.display().to_string())?
                    .with_context(|| {
                        format!(
                            "{}: the store is off ([store] enabled = false) or has no state \
                             directory: give --db FILE",
                            path.display()
                        )
                    })?,
            ),
            _ => None,
        };
        let path = if let Some(db) = &args.db {
            db.clone()
        } else if let Some(dir) = &args.state_dir {
            dir.join(FILE_NAME)
        } else if let Some(configured) = &configured {
            configured.path.clone()
        } else {
            default_state_dir()
                .context("no state directory: give --db FILE or --state-dir DIR")?
                .join(FILE_NAME)
        };
        Ok(match configured {
            Some(configured) => StoreConfig { path, ..configured },
            None => StoreConfig::at(path),
        })
    }

    /// The raw retention as seconds, `None` for forever.
    pub fn retention_s(&self) -> Option<i64> {
        (self.raw_retention_days > 0).then(|| i64::from(self.raw_retention_days) * 86_400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(store: &str) -> Config {
        let text = format!(
            "state_dir = \"/var/lib/smarty\"\n[[meter]]\nname = \"home\"\nsource = \"-\"\n{store}"
        );
        Config::parse(&text, "smarty.toml", &[]).unwrap()
    }

    #[test]
    fn store_section_defaults_and_overrides() {
        let default = StoreConfig::from_config(&config("")).unwrap().unwrap();
        assert_eq!(default.path, PathBuf::from("/var/lib/smarty/smarty.db"));
        assert_eq!(default.raw_retention_days, 90);
        assert_eq!(default.commit_interval, Duration::from_secs(5));
        let custom = StoreConfig::from_config(&config(
            "[store]\npath = \"history.db\"\nraw_retention_days = 0\ncommit_interval_s = 0.5\n",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(custom.path, PathBuf::from("/var/lib/smarty/history.db"));
        assert_eq!(custom.retention_s(), None);
        assert_eq!(custom.commit_interval, Duration::from_millis(500));
        assert!(
            StoreConfig::from_config(&config("[store]\nenabled = false\n"))
                .unwrap()
                .is_none()
        );
        let err = StoreConfig::from_config(&config("[store]\nretention = 3\n")).unwrap_err();
        assert!(err.to_string().contains("[store]: unknown field"), "{err}");
        let err =
            StoreConfig::from_config(&config("[store]\ncommit_interval_s = 0\n")).unwrap_err();
        assert!(err.to_string().contains("positive"), "{err}");
    }

    #[test]
    fn command_line_precedence() {
        let args = |db: Option<&str>, dir: Option<&str>| StoreArgs {
            config: None,
            state_dir: dir.map(PathBuf::from),
            db: db.map(PathBuf::from),
        };
        let both = StoreConfig::from_args(&args(Some("/tmp/x.db"), Some("/srv"))).unwrap();
        assert_eq!(both.path, PathBuf::from("/tmp/x.db"));
        let dir = StoreConfig::from_args(&args(None, Some("/srv"))).unwrap();
        assert_eq!(dir.path, PathBuf::from("/srv/smarty.db"));
        assert_eq!(dir.raw_retention_days, 90);
    }
}
