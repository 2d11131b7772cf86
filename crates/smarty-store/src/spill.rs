//! Readings held on disk while the store refuses them (a PostgreSQL server that is down or
//! unreachable): an SQLite store of their own beside the state, filled when the writer's
//! buffer in memory is full, and drained into the store once it takes readings again. The
//! readings go through the store's writer like any others (its aggregates are computed as
//! usual); the spill file is removed only after everything it held was committed.

use std::path::{Path, PathBuf};

use crate::config::StoreConfig;
use crate::{Store, StoreError, Writer};

/// The spill file (module documentation).
pub struct Spill {
    path: PathBuf,
    max: u64,
    open: Option<(Store, Writer)>,
    held: u64,
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spill")
            .field("path", &self.path)
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

impl Spill {
    /// The spill at `path`, holding at most `max` readings (M-Bus readings included). A file
    /// left by an earlier run is opened, and its readings count as held.
    ///
    /// # Errors
    /// A spill file that exists but cannot be opened.
    pub fn at(path: &Path, max: u64) -> Result<Spill, StoreError> {
        let mut spill = Spill {
            path: path.to_owned(),
            max,
            open: None,
            held: 0,
        };
        if path.exists() {
            spill.open()?;
            let (store, _) = spill.open.as_ref().expect("opened");
            let reader = store.reader()?;
            for meter in reader.meters()? {
                let id = reader.meter_id(&meter.name)?;
                spill.held += reader.raw_rows(id, i64::MIN / 2, i64::MAX / 2)?.len() as u64;
                for channel in &meter.mbus {
                    spill.held += reader
                        .mbus_captures(id, channel.channel, i64::MIN / 2, i64::MAX / 2)?
                        .len() as u64;
                }
            }
        }
        Ok(spill)
    }

    fn open(&mut self) -> Result<&mut (Store, Writer), StoreError> {
        if self.open.is_none() {
            let mut config = StoreConfig::at(self.path.clone());
            config.raw_retention_days = 0;
            let store = Store::open(&config)?;
            let writer = store.writer()?;
            self.open = Some((store, writer));
        }
        Ok(self.open.as_mut().expect("opened above"))
    }

    /// Readings and M-Bus readings held.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Holds what `writer` has buffered, up to the spill's limit, and empties the buffer.
    /// Returns how many readings were dropped because the spill is full.
    ///
    /// # Errors
    /// The spill file cannot be written (its readings stay in `writer`'s buffer).
    pub fn hold(&mut self, writer: &mut Writer) -> Result<u64, StoreError> {
        let (readings, mbus) = writer.take_buffered();
        let room = self.max.saturating_sub(self.held);
        let total = (readings.len() + mbus.len()) as u64;
        let (_, spill) = match self.open() {
            Ok(open) => open,
            Err(e) => {
                writer.give_back(readings, mbus);
                return Err(e);
            }
        };
        let mut kept = 0u64;
        for reading in readings.iter().take(room as usize) {
            spill.push(reading.clone());
            kept += 1;
        }
        for record in mbus.iter().take(room.saturating_sub(kept) as usize) {
            spill.push_mbus(record.clone());
            kept += 1;
        }
        if let Err(e) = spill.flush() {
            // Nothing of this batch is on disk: back to memory.
            let _ = spill.take_buffered();
            writer.give_back(readings, mbus);
            return Err(e);
        }
        self.held += kept;
        Ok(total - kept)
    }

    /// Writes everything held into `writer`'s store, a day at a time, then removes the spill
    /// file. Returns the readings it held.
    ///
    /// # Errors
    /// The store refuses a commit (what was committed stays, and is left out as duplicate
    /// when draining again), or the spill cannot be read.
    pub fn drain_into(&mut self, writer: &mut Writer) -> Result<u64, StoreError> {
        if self.held == 0 && !self.path.exists() {
            return Ok(0);
        }
        let (store, _) = self.open()?;
        let reader = store.reader()?;
        for meter in reader.meters()? {
            crate::copy::write_raw_rows(&reader, &meter, writer, &mut |_, _| {})?;
            crate::copy::write_mbus_captures(&reader, &meter, writer)?;
        }
        drop(reader);
        // Everything is committed in the store: the spill goes.
        self.open = None;
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StoreError::Io {
                        path: path.into(),
                        source,
                    });
                }
            }
        }
        Ok(std::mem::take(&mut self.held))
    }
}
