//! Where the history store is: the `[store]` section resolved against the state directory
//! ([`from_config`], for `smarty run`), and the `--db` / `--state-dir` / `--config` options of
//! `export` and `import` ([`from_args`]).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use smarty_store::config::{FILE_NAME, Location, StoreConfig};
use smarty_store::postgres::PostgresConfig;

use super::{Config, default_state_dir};
use crate::cli::StoreArgs;

/// From the `[store]` section ([`StoreSection`](smarty_store::config::StoreSection); its
/// defaults when absent) and the state directory ([`Config::state_dir`]).
///
/// `Ok(None)` when `enabled = false`, or when neither `path` nor a state directory is
/// known.
///
/// # Errors
/// A commit interval out of
/// [`COMMIT_INTERVAL_S`](smarty_store::config::COMMIT_INTERVAL_S) (a [`Config`] made by
/// [`Config::load`] was checked already).
pub fn from_config(config: &Config) -> Result<Option<StoreConfig>> {
    let section = config.store.clone().unwrap_or_default();
    if !section.enabled {
        return Ok(None);
    }
    if let Some((_, message)) = section.problems().into_iter().next() {
        bail!("[store]: {message}");
    }
    let commit_interval = Duration::try_from_secs_f64(section.commit_interval_s)
        .context("[store]: commit_interval_s")?;
    let state_dir = config.state_dir();
    // `url`, else `path`, else DATABASE_URL, else the state directory's file.
    let url = section
        .url
        .clone()
        .or_else(|| section.path.is_none().then(database_url).flatten());
    let location = match (url, section.path, state_dir) {
        (Some(url), _, _) => {
            let mut server = PostgresConfig::parse(&url).context("[store] url / DATABASE_URL")?;
            server.password_file = section.password_file.clone();
            Location::Postgres(server)
        }
        (None, Some(path), Some(dir)) if path.is_relative() => Location::Sqlite(dir.join(path)),
        (None, Some(path), _) => Location::Sqlite(path),
        (None, None, Some(dir)) => Location::Sqlite(dir.join(FILE_NAME)),
        (None, None, None) => return Ok(None),
    };
    let mut store = StoreConfig::in_location(location);
    store.raw_retention_days = section.raw_retention_days;
    store.commit_interval = commit_interval;
    Ok(Some(store))
}

/// `DATABASE_URL`, when set and not empty.
fn database_url() -> Option<String> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// For `export` and `import`: `--database FILE|URL`, else `--state-dir DIR`
/// (`DIR/smarty.db`), else the store of `--config FILE`, else `DATABASE_URL`, else `smarty.db`
/// in the default state directory ([`default_state_dir`]). Retention and commit interval come from the configuration when
/// one is given.
///
/// # Errors
/// An unreadable or invalid configuration, a configuration whose store is off, or no
/// state directory at all (no `HOME`).
pub fn from_args(args: &StoreArgs) -> Result<StoreConfig> {
    let config = match &args.config {
        Some(path) => Some(Config::load_for_store(path)?),
        None => None,
    };
    let configured = match (&config, &args.config) {
        (Some(config), Some(path)) => Some(
            from_config(config)
                .with_context(|| path.display().to_string())?
                .with_context(|| {
                    format!(
                        "{}: the store is off ([store] enabled = false) or has no state \
                         directory: give --database FILE|URL",
                        path.display()
                    )
                })?,
        ),
        _ => None,
    };
    let location = if let Some(database) = &args.database {
        Location::parse(database)?
    } else if let Some(dir) = &args.state_dir {
        Location::Sqlite(dir.join(FILE_NAME))
    } else if let Some(configured) = &configured {
        configured.location.clone()
    } else if let Some(url) = database_url() {
        Location::parse(&url).context("DATABASE_URL")?
    } else {
        Location::Sqlite(
            default_state_dir()
                .context("no state directory: give --database FILE|URL or --state-dir DIR")?
                .join(FILE_NAME),
        )
    };
    Ok(match configured {
        Some(mut configured) => {
            configured.location = location;
            configured
        }
        None => StoreConfig::in_location(location),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use smarty_store::config::StoreSection;

    use super::*;

    fn parse(store: &str) -> Result<Config> {
        let text = format!(
            "state_dir = \"/var/lib/smarty\"\n[[meter]]\nname = \"home\"\nsource = \"-\"\n{store}"
        );
        Config::parse(&text, "smarty.toml", &[])
    }

    fn config(store: &str) -> Config {
        parse(store).unwrap()
    }

    fn sqlite(path: &str) -> Location {
        Location::Sqlite(PathBuf::from(path))
    }

    #[test]
    fn store_section_defaults_and_overrides() {
        let default = from_config(&config("")).unwrap().unwrap();
        assert_eq!(
            default.location,
            Location::Sqlite(PathBuf::from("/var/lib/smarty/smarty.db"))
        );
        assert_eq!(default.raw_retention_days, 90);
        assert_eq!(default.commit_interval, Duration::from_secs(5));
        let custom = from_config(&config(
            "[store]\npath = \"history.db\"\nraw_retention_days = 0\ncommit_interval_s = 0.5\n",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            custom.location,
            Location::Sqlite(PathBuf::from("/var/lib/smarty/history.db"))
        );
        assert_eq!(custom.retention_s(), None);
        assert_eq!(custom.commit_interval, Duration::from_millis(500));
        assert!(
            from_config(&config("[store]\nenabled = false\n"))
                .unwrap()
                .is_none()
        );
        // Mistakes are found when the configuration is read, naming their line and field.
        let err = parse("[store]\nretention = 3\n").unwrap_err().to_string();
        assert!(
            err.starts_with("smarty.toml:6:1: unknown field `retention`"),
            "{err}"
        );
        for value in ["0", "-1", "nan", "inf", "2e19", "1e300", "3601"] {
            let err = parse(&format!("[store]\ncommit_interval_s = {value}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("smarty.toml:6:21: [store]: commit_interval_s must be"),
                "{value}: {err}"
            );
        }
        // A configuration made by the program is checked too, never panicking.
        let mut made = config("");
        let mut section = StoreSection::default();
        section.commit_interval_s = 2e19;
        made.store = Some(section);
        let err = from_config(&made).unwrap_err().to_string();
        assert!(err.contains("commit_interval_s"), "{err}");
    }

    #[test]
    fn export_and_import_read_only_the_store_from_a_service_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smarty.toml");
        // Valid for the service only with its environment's token: still says where the
        // store is.
        std::fs::write(
            &path,
            "state_dir = \"/srv/s\"\n[[meter]]\nname = \"home\"\nsource = \"-\"\n\
             [http]\nlisten = \"0.0.0.0:8080\"\n[store]\ncommit_interval_s = 1\n",
        )
        .unwrap();
        assert!(Config::load(&path).is_err());
        let args = StoreArgs {
            config: Some(path.clone()),
            state_dir: None,
            database: None,
        };
        let store = from_args(&args).unwrap();
        assert_eq!(store.location, sqlite("/srv/s/smarty.db"));
        assert_eq!(store.commit_interval, Duration::from_secs(1));
        // Mistakes of the store itself, or of any value's type, still stop it.
        std::fs::write(
            &path,
            "[store]\ncommit_interval_s = 2e19\n[mqtt]\nqos = \"x\"\n",
        )
        .unwrap();
        let err = format!("{:#}", from_args(&args).unwrap_err());
        assert!(err.contains("smarty.toml:2:21: [store]"), "{err}");
        assert!(err.contains("smarty.toml:4:7: mqtt.qos"), "{err}");
    }

    #[test]
    fn command_line_precedence() {
        let args = |db: Option<&str>, dir: Option<&str>| StoreArgs {
            config: None,
            state_dir: dir.map(PathBuf::from),
            database: db.map(str::to_owned),
        };
        let both = from_args(&args(Some("/tmp/x.db"), Some("/srv"))).unwrap();
        assert_eq!(both.location, sqlite("/tmp/x.db"));
        let prefixed = from_args(&args(Some("sqlite:/tmp/y.db"), None)).unwrap();
        assert_eq!(prefixed.location, sqlite("/tmp/y.db"));
        let dir = from_args(&args(None, Some("/srv"))).unwrap();
        assert_eq!(dir.location, sqlite("/srv/smarty.db"));
        assert_eq!(dir.raw_retention_days, 90);
        let server =
            from_args(&args(Some("postgres://smarty:pw@db/history"), Some("/srv"))).unwrap();
        assert_eq!(server.location.to_string(), "postgres://smarty@db/history");
        assert!(from_args(&args(Some("postgres://db/h?sslmode=sometimes"), None)).is_err());
    }

    #[test]
    fn a_store_url_names_a_postgres_database() {
        let store = from_config(&config(
            "[store]\nurl = \"postgres://smarty@db/history\"\npassword_file = \"/etc/smarty/pg\"\n",
        ))
        .unwrap()
        .unwrap();
        match store.location {
            Location::Postgres(server) => {
                assert_eq!(server.to_string(), "postgres://smarty@db/history");
                assert_eq!(server.password_file, Some(PathBuf::from("/etc/smarty/pg")));
            }
            other => panic!("{other:?}"),
        }
        let err = parse("[store]\nurl = \"postgres://db/h\"\npath = \"x.db\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not both"), "{err}");
    }
}
