//! The frame counters of meters with `reject_replay`, kept so that a restart does not open the
//! door to frames recorded earlier: in the history store when there is one (SQLite or
//! PostgreSQL, table `frame_counter`), else in the state directory.
//!
//! In the state directory, one file per meter, `replay-<meter>.json`:
//! `{"key_check": "1A2B3C", "frame_counters": {"<system title in hex>": 1234}}`. The key check
//! value (the first three bytes of AES-128 of a zero block, the usual way to name a key without
//! revealing it) ties the counters to the key: a meter's counter restarts at 0 when the grid
//! operator changes the key (LU113 §3.2.5), so counters saved under another key are dropped.
//!
//! The counters are saved (the file replaced: written beside, then renamed) at most once a
//! second while they move, and when the meter stops; a crash loses at most the last second's
//! counters. A store that has no counters of a meter yet takes over those of its file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use smarty_p1::{Key, ReplayGuard};
use smarty_store::Store;

/// Counters are written at most this often.
const SAVE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize, Deserialize)]
struct File {
    key_check: String,
    frame_counters: BTreeMap<String, u32>,
}

/// Where counters are saved.
#[derive(Debug)]
enum Keep {
    /// `replay-<meter>.json` in the state directory.
    File(PathBuf),
    /// The history store.
    Store {
        /// The store.
        store: Store,
        /// The meter's name.
        meter: String,
    },
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keep::File(path) => write!(f, "{}", path.display()),
            Keep::Store { store, .. } => write!(f, "the store {}", store.location()),
        }
    }
}

/// The saved counters of one meter.
#[derive(Debug)]
pub struct ReplayCounters {
    keep: Keep,
    key_check: String,
    counters: BTreeMap<[u8; 8], u32>,
    changed: bool,
    saved: Option<Instant>,
    failing: bool,
}

/// The key check value of `key`: the first three bytes of AES-128(key, 0¹²⁸), in hex.
fn key_check(key: &Key) -> String {
    smarty_p1::hex::upper(&key.check_value()).to_string()
}

fn parse_title(hex: &str) -> Option<[u8; 8]> {
    let bytes = smarty_p1::hex::decode(hex).ok()?;
    bytes.try_into().ok()
}

impl ReplayCounters {
    /// The counters of meter `meter` in `state_dir`, for `key`. A missing file is an empty
    /// start; an unreadable or damaged one, or one saved under another key, is logged and
    /// replaced at the next save.
    pub fn open(state_dir: &Path, meter: &str, key: &Key) -> Self {
        let path = state_dir.join(format!("replay-{meter}.json"));
        let key_check = key_check(key);
        let mut counters = BTreeMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<File>(&bytes) {
                Ok(file) if file.key_check == key_check => {
                    for (title, counter) in &file.frame_counters {
                        match parse_title(title) {
                            Some(title) => {
                                counters.insert(title, *counter);
                            }
                            None => tracing::warn!(
                                "{}: {title:?} is not a system title; ignored",
                                path.display()
                            ),
                        }
                    }
                    tracing::info!(
                        "replay checks continue from the frame counters in {}",
                        path.display()
                    );
                }
                Ok(_) => tracing::info!(
                    "{}: saved under another key; the frame counters start over",
                    path.display()
                ),
                Err(e) => tracing::warn!(
                    "{}: not readable ({e}); the frame counters start over",
                    path.display()
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                "cannot read {}: {e}; the frame counters start over",
                path.display()
            ),
        }
        ReplayCounters {
            keep: Keep::File(path),
            key_check,
            counters,
            changed: false,
            saved: None,
            failing: false,
        }
    }

    /// The counters of meter `meter` in `store`, for `key`; when the store has none, those
    /// of the meter's file in `state_dir` (saved into the store at the next save). A store
    /// that cannot be read is logged, and the counters start from the file.
    pub fn in_store(store: Store, state_dir: Option<&Path>, meter: &str, key: &Key) -> Self {
        let key_check = key_check(key);
        let from_store = store.frame_counters(meter, &key_check);
        let file = state_dir.map(|dir| Self::open(dir, meter, key));
        let mut counters = BTreeMap::new();
        match from_store {
            Ok(rows) if !rows.is_empty() => {
                for (title, counter) in rows {
                    if let Some(title) = parse_title(&title) {
                        counters.insert(title, counter);
                    }
                }
                tracing::info!(
                    "replay checks continue from the frame counters in the store {}",
                    store.location()
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(
                "cannot read the frame counters from the store: {e}; starting from {}",
                state_dir.map_or_else(|| "nothing".to_owned(), |d| d.display().to_string())
            ),
        }
        let taken_over =
            counters.is_empty() && file.as_ref().is_some_and(|f| !f.counters.is_empty());
        if taken_over && let Some(file) = &file {
            counters.clone_from(&file.counters);
            tracing::info!(
                "replay checks continue from the frame counters in {}; the store keeps them from now on",
                file.keep
            );
        }
        ReplayCounters {
            keep: Keep::Store {
                store,
                meter: meter.to_owned(),
            },
            key_check,
            counters,
            changed: taken_over,
            saved: None,
            failing: false,
        }
    }

    /// Sets `guard` to the saved counters.
    pub fn restore(&self, guard: &mut ReplayGuard) {
        for (title, counter) in &self.counters {
            guard.set_last(*title, *counter);
        }
    }

    /// A frame of `system_title` with `counter` was accepted.
    pub fn accepted(&mut self, system_title: [u8; 8], counter: u32) {
        match self.counters.get(&system_title) {
            Some(&last) if last >= counter => {}
            _ => {
                self.counters.insert(system_title, counter);
                self.changed = true;
            }
        }
    }

    /// Saves when counters changed and the last save is a second old.
    pub fn save_if_due(&mut self) {
        if self.changed && self.saved.is_none_or(|t| t.elapsed() >= SAVE_EVERY) {
            self.save();
        }
    }

    /// Saves now if counters changed; a failure is logged once (and retried at the next save).
    pub fn save(&mut self) {
        if !self.changed {
            return;
        }
        self.saved = Some(Instant::now());
        match self.write() {
            Ok(()) => {
                self.changed = false;
                if std::mem::take(&mut self.failing) {
                    tracing::info!("replay counters saved again in {}", self.keep);
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::error!("{e:#}; retrying");
                }
            }
        }
    }

    fn write(&self) -> Result<()> {
        let path = match &self.keep {
            Keep::File(path) => path,
            Keep::Store { store, meter } => {
                let counters: Vec<(String, u32)> = self
                    .counters
                    .iter()
                    .map(|(title, counter)| (smarty_p1::hex::upper(title).to_string(), *counter))
                    .collect();
                return store
                    .save_frame_counters(meter, &self.key_check, &counters)
                    .with_context(|| format!("cannot save the replay counters in {}", self.keep));
            }
        };
        let file = File {
            key_check: self.key_check.clone(),
            frame_counters: self
                .counters
                .iter()
                .map(|(title, counter)| (smarty_p1::hex::upper(title).to_string(), *counter))
                .collect(),
        };
        let text = serde_json::to_vec_pretty(&file).expect("JSON serialises");
        let tmp = path.with_extension("json.new");
        if let Some(dir) = path.parent() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(dir)
                .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        }
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .with_context(|| format!("cannot save the replay counters {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_survive_a_reopen_with_the_same_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::from_bytes([7; 16]);
        let title = *b"SAG\x10\x30\x70\x01\x00";
        let mut saved = ReplayCounters::open(dir.path(), "home", &key);
        saved.accepted(title, 41);
        saved.accepted(title, 42);
        saved.save();
        let mut guard = ReplayGuard::new();
        ReplayCounters::open(dir.path(), "home", &key).restore(&mut guard);
        assert_eq!(guard.last(&title), Some(42));
        assert!(
            guard.check(title, 42).is_err(),
            "a replay after the restart"
        );

        let mut other = ReplayGuard::new();
        ReplayCounters::open(dir.path(), "home", &Key::from_bytes([8; 16])).restore(&mut other);
        assert_eq!(other.last(&title), None, "another key starts over");

        let text = std::fs::read_to_string(dir.path().join("replay-home.json")).unwrap();
        assert!(
            !text.contains("0707070707"),
            "the key is never written: {text}"
        );
    }

    /// Counters kept in a store (SQLite, and PostgreSQL: the same test on both) survive a
    /// restart with the same key only, and a store without counters takes over the file's.
    fn counters_in_a_store(config: smarty_store::StoreConfig) {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::from_bytes([7; 16]);
        let title = *b"SAG\x10\x30\x70\x01\x00";
        // The file of a service that ran without a store.
        let mut file = ReplayCounters::open(dir.path(), "home", &key);
        file.accepted(title, 41);
        file.save();
        let store = Store::open(&config).unwrap();
        let mut counters = ReplayCounters::in_store(store.clone(), Some(dir.path()), "home", &key);
        let mut guard = ReplayGuard::new();
        counters.restore(&mut guard);
        assert_eq!(guard.last(&title), Some(41), "taken over from the file");
        counters.accepted(title, 42);
        counters.save();
        drop(counters);
        // Restarted, without the file: the store has them.
        std::fs::remove_file(dir.path().join("replay-home.json")).unwrap();
        let mut guard = ReplayGuard::new();
        ReplayCounters::in_store(store.clone(), None, "home", &key).restore(&mut guard);
        assert_eq!(guard.last(&title), Some(42));
        assert!(
            guard.check(title, 42).is_err(),
            "a replay after the restart"
        );
        let mut other = ReplayGuard::new();
        ReplayCounters::in_store(store.clone(), None, "home", &Key::from_bytes([8; 16]))
            .restore(&mut other);
        assert_eq!(other.last(&title), None, "another key starts over");
        assert_eq!(
            store.frame_counters("home", &key_check(&key)).unwrap(),
            vec![("5341471030700100".to_owned(), 42)]
        );
    }

    #[test]
    fn counters_survive_a_restart_in_an_sqlite_store() {
        let dir = tempfile::tempdir().unwrap();
        counters_in_a_store(smarty_store::StoreConfig::at(dir.path().join("smarty.db")));
    }

    #[test]
    fn counters_survive_a_restart_in_a_postgres_store() {
        let db = smarty_store::test_postgres::TestDatabase::create();
        counters_in_a_store(db.store_config());
    }

    #[test]
    fn the_key_check_value_is_the_standard_one() {
        // AES-128 of a zero block under the zero key starts 66 E9 4B (FIPS-197 test vectors).
        assert_eq!(key_check(&Key::from_bytes([0; 16])), "66E94B");
    }
}
