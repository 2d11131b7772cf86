//! The writer's lock: one process writes a store at a time.
//!
//! An OS advisory lock (`flock` on Unix, `LockFileEx` on Windows, through std's
//! [`File::try_lock`]) on a file beside the store, `smarty.db.lock`, held for as long as the
//! process may write. The holder writes its process id and command into the file so that a
//! second writer can say who holds it. The lock goes with the process: a crash or `kill -9`
//! releases it, so there is never a stale lock to remove. Readers (`smarty export`, the API of
//! another process) take no lock: SQLite's WAL lets them read while one process writes.
//!
//! Within one process the lock is shared: every [`super::Store`] opened for writing on the
//! same file holds the same [`WriterLock`] (an OS lock held twice by one process on two open
//! files would refuse the second).

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use super::StoreError;

/// The locks this process holds, by lock file.
static HELD: LazyLock<Mutex<HashMap<PathBuf, Weak<WriterLock>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// A held writer lock; released when the last clone is dropped (or the process ends).
#[derive(Debug)]
pub struct WriterLock {
    file: File,
}

/// The lock file of a store file: `smarty.db` → `smarty.db.lock`.
pub fn lock_path(store: &Path) -> PathBuf {
    let mut name = store.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    store.with_file_name(name)
}

impl WriterLock {
    /// Takes the writer lock of the store file `store` without waiting (its directory must
    /// exist), or shares the one this process already holds.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another process holds it (naming that process when it
    /// wrote its id), [`StoreError::Io`] when the lock file cannot be opened or locked.
    pub fn acquire(store: &Path) -> Result<Arc<WriterLock>, StoreError> {
        let path = lock_path(store);
        // The same file under another name (a relative path, a symlinked directory) is the
        // same lock.
        let key = match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => std::fs::canonicalize(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
            .map(|dir| dir.join(name))
            .unwrap_or_else(|_| path.clone()),
            _ => path.clone(),
        };
        let mut held = HELD
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(lock) = held.get(&key).and_then(Weak::upgrade) {
            return Ok(lock);
        }
        let io = |source: std::io::Error| StoreError::Io {
            path: path.clone(),
            source,
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // The holder writes its id right after locking: an empty file is a holder
                // that has not written it yet.
                let _ = file.read_to_string(&mut holder);
                return Err(StoreError::Locked {
                    path: store.to_owned(),
                    holder: Holder::parse(&holder),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let me = Holder::this_process();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{} {}", me.pid, me.command))
            .and_then(|()| file.flush())
            .map_err(io)?;
        let lock = Arc::new(WriterLock { file });
        held.retain(|_, weak| weak.strong_count() > 0);
        held.insert(key, Arc::downgrade(&lock));
        Ok(lock)
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // Clear the holder before the lock goes with the file; the file itself stays (removing
        // a lock file races with the next process that opens it).
        let _ = self.file.set_len(0);
    }
}

/// Who holds a lock, as written in the lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// Its command: `smarty run`, `smarty demo`, `smarty import`.
    pub command: String,
}

impl Holder {
    fn this_process() -> Holder {
        let mut args = std::env::args();
        let program = args
            .next()
            .as_deref()
            .map(Path::new)
            .and_then(Path::file_name)
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "smarty".into());
        let command = match args.next() {
            Some(sub) if !sub.starts_with('-') => format!("{program} {sub}"),
            _ => program,
        };
        Holder {
            pid: std::process::id(),
            command,
        }
    }

    /// `"1234 smarty run"` → the holder; `None` for anything else.
    fn parse(text: &str) -> Option<Holder> {
        let (pid, command) = text.trim().split_once(' ')?;
        let command: String = command
            .chars()
            .filter(|c| !c.is_control())
            .take(80)
            .collect();
        Some(Holder {
            pid: pid.parse().ok()?,
            command,
        })
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {})", self.command, self.pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_shares_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("smarty.db");
        let first = WriterLock::acquire(&db).unwrap();
        let second = WriterLock::acquire(&db).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        let path = lock_path(&db);
        assert_eq!(path, dir.path().join("smarty.db.lock"));
        let written = std::fs::read_to_string(&path).unwrap();
        let holder = Holder::parse(&written).unwrap();
        assert_eq!(holder.pid, std::process::id());
        // Another open file description is another holder, as in another process.
        let other = File::options().write(true).open(&path).unwrap();
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
        drop((first, second));
        other.try_lock().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("smarty.db.lock")).unwrap(),
            ""
        );
    }

    #[test]
    fn holders_are_read_back() {
        assert_eq!(
            Holder::parse("4242 smarty demo\n"),
            Some(Holder {
                pid: 4242,
                command: "smarty demo".into()
            })
        );
        assert_eq!(Holder::parse(""), None);
        assert_eq!(Holder::parse("x smarty"), None);
        assert_eq!(
            Holder::parse("7 smarty run").unwrap().to_string(),
            "smarty run (pid 7)"
        );
    }
}
