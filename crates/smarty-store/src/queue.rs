//! The MQTT output's outgoing queue: every message waits here until the broker acknowledged
//! it (QoS 1/2) or it was written to the connection (QoS 0), so nothing is lost while the broker
//! is down. In memory a [`VecDeque`]; with a directory, also a table in an SQLite file that
//! survives a restart of `smarty`. It lives in the store's crate, the one that uses SQLite;
//! `smarty-mqtt` drives it.
//!
//! # The file (`<queue_dir>/mqtt-queue.db`)
//!
//! One table, `message(seq INTEGER PRIMARY KEY, topic TEXT, payload BLOB, qos INTEGER,
//! retain INTEGER)`, in queue order. [`Queue::flush`] writes what changed since the last flush
//! in one transaction: the new messages, and the removal of those that left the queue. SQLite's
//! write-ahead log keeps the file whole through a crash or a power cut (`synchronous = NORMAL`:
//! a power cut may lose the last second of changes, never the file).
//!
//! # When the file cannot be written
//!
//! A failed write (a full disk, an I/O error, a read-only file system) is logged once, shown by
//! [`Queue::write_error`] (the service's `/healthz`), and retried every second; meanwhile the
//! queue carries on in memory. Once a write succeeds, everything queued meanwhile is written.
//! [`Queue::persisted_len`] says how many of the queued messages the file holds, so a stop
//! reports truthfully what the next run will find.
//!
//! # When the file is damaged
//!
//! Opening reads every message it can. A file SQLite cannot read whole (not a database,
//! malformed pages, a foreign table) is renamed beside itself to
//! `mqtt-queue.db.damaged-<UTC time>` (never deleted), a fresh file takes the messages that
//! could be read, and a warning says how many were recovered. The queue file of earlier
//! versions (`mqtt-queue.bin`, format `SMARTYQ1`) is read the same way and removed once its
//! messages are in the new file (set aside if damaged).

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

/// One MQTT message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// QoS 0, 1 or 2.
    pub qos: u8,
    /// The retain flag.
    pub retain: bool,
}

/// The queue's file in its directory.
pub const FILE_NAME: &str = "mqtt-queue.db";
/// The file of earlier versions, read once and removed.
const LEGACY_FILE_NAME: &str = "mqtt-queue.bin";
const LEGACY_MAGIC: &[u8; 8] = b"SMARTYQ1";
/// How often a failed write (or open) is tried again.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Entry {
    message: Publication,
    /// Delivered, but not at the front yet (acknowledgements out of order).
    done: bool,
}

/// A bounded FIFO of [`Publication`]s with sequence numbers, optionally on disk.
#[derive(Debug)]
pub struct Queue {
    entries: VecDeque<Entry>,
    /// The sequence number of `entries[0]`.
    first_seq: u64,
    max: usize,
    dropped: u64,
    file: Option<QueueFile>,
}

#[derive(Debug)]
struct QueueFile {
    dir: PathBuf,
    /// `None` until the file could be opened.
    conn: Option<Connection>,
    /// Messages with a smaller sequence number are in the file (or left the queue).
    written_end: u64,
    /// Messages with a smaller sequence number were removed from the file.
    removed_end: u64,
    /// Why the last write failed; `None` after a success.
    error: Option<String>,
    /// When to try again after a failure.
    retry_at: Option<Instant>,
}

impl Queue {
    /// An in-memory queue of at most `max` messages.
    pub fn in_memory(max: usize) -> Queue {
        Queue {
            entries: VecDeque::new(),
            first_seq: 0,
            max: max.max(1),
            dropped: 0,
            file: None,
        }
    }

    /// A queue kept in `dir` (created if missing), with the messages a previous run left.
    ///
    /// Never fails: a damaged file is set aside after its readable messages were taken (with
    /// a warning), and a directory or file that cannot be written leaves the queue in memory
    /// with [`Queue::write_error`] set, trying again every second.
    pub fn open(dir: &Path, max: usize) -> Queue {
        let mut queue = Queue::in_memory(max);
        queue.file = Some(QueueFile {
            dir: dir.to_path_buf(),
            conn: None,
            written_end: 0,
            removed_end: 0,
            error: None,
            retry_at: None,
        });
        queue.try_open();
        queue
    }

    /// Opens the file (after a failure: again), taking its messages and the legacy file's.
    fn try_open(&mut self) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let (mut conn, rows) = match open_file(&file.dir) {
            Ok(opened) => opened,
            Err(e) => {
                file.fail(&format!("cannot open the MQTT queue file: {e}"));
                return;
            }
        };
        let contiguous = rows.windows(2).all(|w| w[1].0 == w[0].0 + 1);
        if self.entries.is_empty() && self.first_seq == 0 && contiguous {
            // The usual start: the file's sequence numbers become the queue's.
            if let Some((first, _)) = rows.first() {
                self.first_seq = *first;
            }
            let removed_end = self.first_seq;
            for (_, message) in rows {
                self.push_memory(message);
            }
            let end_seq = self.end_seq();
            let file = self.file.as_mut().expect("checked above");
            file.removed_end = removed_end;
            file.written_end = end_seq;
        } else {
            // Opened late (this run queued in memory meanwhile), or numbered with gaps: the
            // file's messages go behind the queue's and the file is written anew, at once.
            if !self.entries.is_empty() && !rows.is_empty() {
                tracing::warn!(
                    "MQTT: the {} messages of the previous run are queued after the {} of \
                     this run that waited for the file",
                    rows.len(),
                    self.entries.len()
                );
            }
            let all: Vec<Publication> = self
                .entries
                .iter()
                .map(|e| e.message.clone())
                .chain(rows.iter().map(|(_, m)| m.clone()))
                .collect();
            if let Err(e) = replace_all(&mut conn, self.first_seq, &all) {
                file.fail(&format!("cannot write the MQTT queue file: {e}"));
                return;
            }
            for (_, message) in rows {
                self.push_memory(message);
            }
            let (first_seq, end_seq) = (self.first_seq, self.end_seq());
            let file = self.file.as_mut().expect("checked above");
            file.removed_end = first_seq;
            file.written_end = end_seq;
        }
        let file = self.file.as_mut().expect("checked above");
        file.conn = Some(conn);
        file.retry_at = None;
        if file.error.take().is_some() {
            tracing::info!(
                path = %file.dir.join(FILE_NAME).display(),
                "the MQTT queue file can be written again: every queued message is in it"
            );
        }
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Messages dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Why the queue's file cannot be written (or opened), while it cannot: the messages queued
    /// since are in memory only. `None` when all is well, or without a file.
    pub fn write_error(&self) -> Option<&str> {
        self.file.as_ref().and_then(|f| f.error.as_deref())
    }

    /// How many of the queued messages the file holds, that is, would find a next run: all of
    /// them after a successful [`Queue::flush`]; 0 without a file.
    pub fn persisted_len(&self) -> usize {
        self.file.as_ref().map_or(0, |f| {
            let written = f.written_end.saturating_sub(self.first_seq);
            usize::try_from(written)
                .unwrap_or(usize::MAX)
                .min(self.len())
        })
    }

    /// The sequence number of the oldest message (or of the next one, when empty).
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// The sequence number the next pushed message gets.
    pub fn end_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64
    }

    /// The message `seq`, unless it left the queue, with whether it was delivered already.
    pub fn get(&self, seq: u64) -> Option<(&Publication, bool)> {
        let index = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        self.entries.get(index).map(|e| (&e.message, e.done))
    }

    /// Queues `message` at the back, dropping the oldest message when full; returns its
    /// sequence number. It reaches the file at the next [`Queue::flush`].
    pub fn push(&mut self, message: Publication) -> u64 {
        self.push_memory(message)
    }

    fn push_memory(&mut self, message: Publication) -> u64 {
        if self.entries.len() >= self.max {
            self.pop_front();
            self.dropped += 1;
        }
        self.entries.push_back(Entry {
            message,
            done: false,
        });
        self.end_seq() - 1
    }

    fn pop_front(&mut self) {
        if self.entries.pop_front().is_some() {
            self.first_seq += 1;
        }
    }

    /// Marks message `seq` delivered; delivered messages at the front leave the queue.
    pub fn ack(&mut self, seq: u64) {
        let Some(index) = seq
            .checked_sub(self.first_seq)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return;
        };
        if let Some(entry) = self.entries.get_mut(index) {
            entry.done = true;
        }
        while self.entries.front().is_some_and(|e| e.done) {
            self.pop_front();
        }
    }

    /// Writes what changed to the file, in one transaction (a no-op in memory). A failure is
    /// logged once, kept in [`Queue::write_error`], and retried at the next flush a second
    /// later; the queue carries on in memory meanwhile.
    pub fn flush(&mut self) {
        let Some(file) = self.file.as_ref() else {
            return;
        };
        if file.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        if file.conn.is_none() {
            self.try_open();
        }
        let first_seq = self.first_seq;
        let end_seq = self.end_seq();
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let Some(conn) = file.conn.as_mut() else {
            return;
        };
        let remove = file.removed_end < first_seq;
        let from = file.written_end.max(first_seq);
        if !remove && from >= end_seq {
            return;
        }
        let entries = self
            .entries
            .range(usize::try_from(from - first_seq).unwrap_or(0)..);
        let result = write(conn, remove.then_some(first_seq), from, entries);
        match result {
            Ok(()) => {
                file.written_end = end_seq;
                file.removed_end = first_seq;
                file.retry_at = None;
                if file.error.take().is_some() {
                    tracing::info!(
                        path = %file.dir.join(FILE_NAME).display(),
                        messages = end_seq - first_seq,
                        "the MQTT queue file can be written again: every queued message is in it"
                    );
                }
            }
            Err(e) => file.fail(&format!("cannot write the MQTT queue file: {e}")),
        }
    }
}

impl QueueFile {
    fn fail(&mut self, error: &str) {
        self.retry_at = Some(Instant::now() + RETRY);
        if self.error.as_deref() == Some(error) {
            tracing::debug!(path = %self.dir.display(), "{error} (again)");
            return;
        }
        tracing::error!(
            path = %self.dir.join(FILE_NAME).display(),
            "{error}; queueing in memory only until it can be written again (retrying every \
             second)"
        );
        self.error = Some(error.to_owned());
    }
}

/// Writes messages `from..` and removes those before `remove_before`, in one transaction.
fn write<'a>(
    conn: &mut Connection,
    remove_before: Option<u64>,
    from: u64,
    entries: impl Iterator<Item = &'a Entry>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    if let Some(before) = remove_before {
        tx.execute("DELETE FROM message WHERE seq < ?1", [sql_seq(before)])?;
    }
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO message (seq, topic, payload, qos, retain) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (seq, entry) in (from..).zip(entries) {
            let m = &entry.message;
            insert.execute(params![sql_seq(seq), m.topic, m.payload, m.qos, m.retain])?;
        }
    }
    tx.commit()
}

/// A sequence number as SQLite stores it (a queue never gets near `i64::MAX`).
fn sql_seq(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS message (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL
) STRICT";

/// A message in the file, with its sequence number.
type Row = (u64, Publication);

/// Opens (creating it if needed) the queue file in `dir` and reads its messages; a damaged
/// file is set aside and replaced by a fresh one holding what could be read. The messages of
/// a legacy `mqtt-queue.bin` join them.
fn open_file(dir: &Path) -> io::Result<(Connection, Vec<Row>)> {
    fs::create_dir_all(dir)?;
    let path = dir.join(FILE_NAME);
    let (mut conn, mut rows) = match read_file(&path) {
        Ok(opened) => opened,
        Err((recovered, error)) => {
            let aside = set_aside(&path)?;
            tracing::warn!(
                path = %path.display(),
                damaged = %aside.display(),
                recovered = recovered.len(),
                "the MQTT queue file is damaged ({error}): {} messages recovered; the file is \
                 kept as {}",
                recovered.len(),
                aside.display()
            );
            let (mut conn, _) = read_file(&path).map_err(|(_, e)| io::Error::other(e))?;
            let messages: Vec<Publication> = recovered.into_iter().map(|(_, m)| m).collect();
            replace_all(&mut conn, 0, &messages).map_err(io::Error::other)?;
            (conn, (0..).zip(messages).collect())
        }
    };
    let legacy = dir.join(LEGACY_FILE_NAME);
    if legacy.exists() {
        let (old, damage) = read_legacy(&legacy)?;
        let count = old.len();
        let start = rows.last().map_or(0, |(seq, _)| seq + 1);
        rows.extend((start..).zip(old));
        let messages: Vec<Publication> = rows.iter().map(|(_, m)| m.clone()).collect();
        let first = rows.first().map_or(0, |(seq, _)| *seq);
        replace_all(&mut conn, first, &messages).map_err(io::Error::other)?;
        rows = (first..).zip(messages).collect();
        match damage {
            None => fs::remove_file(&legacy)?,
            Some(why) => {
                let aside = set_aside(&legacy)?;
                tracing::warn!(
                    path = %legacy.display(),
                    damaged = %aside.display(),
                    "the MQTT queue file of an earlier version is damaged ({why}); the file is \
                     kept as {}",
                    aside.display()
                );
            }
        }
        tracing::info!(
            messages = count,
            "MQTT: the queue file of an earlier version was moved into {}",
            path.display()
        );
    }
    Ok((conn, rows))
}

/// Replaces the table's content by `messages`, numbered from `first`, in one transaction.
fn replace_all(
    conn: &mut Connection,
    first: u64,
    messages: &[Publication],
) -> rusqlite::Result<()> {
    let entries: Vec<Entry> = messages
        .iter()
        .map(|m| Entry {
            message: m.clone(),
            done: false,
        })
        .collect();
    write(conn, Some(u64::MAX), first, entries.iter())
}

/// Opens `path` as the queue database and reads its messages, in order. On damage: the
/// messages read before it, and what went wrong.
fn read_file(path: &Path) -> Result<(Connection, Vec<Row>), (Vec<Row>, String)> {
    // Created 0600 before SQLite sees it: its journal files take the same mode.
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    if let Err(e) = options.open(path) {
        return Err((Vec::new(), e.to_string()));
    }
    let conn = Connection::open(path).map_err(|e| (Vec::new(), e.to_string()))?;
    let mut rows = Vec::new();
    let result = (|| -> rusqlite::Result<()> {
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute(SCHEMA, [])?;
        let mut select =
            conn.prepare("SELECT seq, topic, payload, qos, retain FROM message ORDER BY seq")?;
        let mut query = select.query([])?;
        while let Some(row) = query.next()? {
            let seq: i64 = row.get(0)?;
            let qos: u8 = row.get(3)?;
            rows.push((
                u64::try_from(seq).unwrap_or(0),
                Publication {
                    topic: row.get(1)?,
                    payload: row.get(2)?,
                    qos: qos.min(2),
                    retain: row.get(4)?,
                },
            ));
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok((conn, rows)),
        Err(e) => Err((rows, e.to_string())),
    }
}

/// Renames a damaged `path` (and SQLite's journal files beside it) to
/// `<name>.damaged-<UTC time>`; returns the new name.
fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let mut aside = PathBuf::from(format!("{}.damaged-{stamp}", path.display()));
    let mut n = 1;
    while aside.exists() {
        n += 1;
        aside = PathBuf::from(format!("{}.damaged-{stamp}-{n}", path.display()));
    }
    fs::rename(path, &aside)?;
    for suffix in ["-wal", "-shm"] {
        let journal = PathBuf::from(format!("{}{suffix}", path.display()));
        if journal.exists() {
            fs::rename(&journal, format!("{}{suffix}", aside.display()))?;
        }
    }
    Ok(aside)
}

/// Replays a legacy `SMARTYQ1` file: an 8-byte header, then records (integers big-endian):
/// `b'M'`, flags `u8` (bits 0–1 QoS, bit 2 retain), topic length `u16`, payload length `u32`,
/// topic, payload (a message queued); `b'R'`, count `u32` (the `count` oldest left). Returns
/// the queue and, if the file was damaged, how (a record cut short at the end is a crash, not
/// damage).
fn read_legacy(path: &Path) -> io::Result<(VecDeque<Publication>, Option<String>)> {
    let bytes = fs::read(path)?;
    let mut messages = VecDeque::new();
    if bytes.is_empty() {
        return Ok((messages, None));
    }
    if bytes.len() < LEGACY_MAGIC.len() || &bytes[..LEGACY_MAGIC.len()] != LEGACY_MAGIC {
        return Ok((messages, Some("no SMARTYQ1 header".into())));
    }
    let mut rest = &bytes[LEGACY_MAGIC.len()..];
    let be16 = |b: &[u8]| usize::from(u16::from_be_bytes([b[0], b[1]]));
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    while let Some(&tag) = rest.first() {
        match tag {
            b'M' if rest.len() >= 8 => {
                let (topic_len, payload_len) = (be16(&rest[2..4]), be32(&rest[4..8]));
                let Some(body) = rest.get(8..8 + topic_len + payload_len) else {
                    break; // cut short by a crash
                };
                let Ok(topic) = String::from_utf8(body[..topic_len].to_vec()) else {
                    return Ok((messages, Some("a topic is not UTF-8".into())));
                };
                messages.push_back(Publication {
                    topic,
                    payload: body[topic_len..].to_vec(),
                    qos: (rest[1] & 3).min(2),
                    retain: rest[1] & 4 != 0,
                });
                rest = &rest[8 + topic_len + payload_len..];
            }
            b'R' if rest.len() >= 5 => {
                let n = be32(&rest[1..5]).min(messages.len());
                messages.drain(..n);
                rest = &rest[5..];
            }
            b'M' | b'R' => break, // cut short by a crash
            other => {
                let offset = bytes.len() - rest.len();
                return Ok((
                    messages,
                    Some(format!("unknown record {other:#04x} at byte {offset}")),
                ));
            }
        }
    }
    Ok((messages, None))
}

/// A small disk for tests of full and read-only file systems (shared with the MQTT output's
/// tests, which include the same file).
#[cfg(test)]
#[path = "../tests/support/small_disk.rs"]
mod small_disk;

#[cfg(test)]
mod tests {
    use super::small_disk::SmallDisk;
    use super::*;

    fn message(i: usize) -> Publication {
        Publication {
            topic: format!("smarty/t{}", i % 3),
            payload: i.to_string().into_bytes(),
            qos: 1,
            retain: i.is_multiple_of(2),
        }
    }

    fn payloads(q: &Queue) -> Vec<String> {
        (q.first_seq()..q.end_seq())
            .map(|s| String::from_utf8(q.get(s).unwrap().0.payload.clone()).unwrap())
            .collect()
    }

    fn strings(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| i.to_string()).collect()
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts() {
        let mut q = Queue::in_memory(3);
        for i in 0..5 {
            q.push(message(i));
        }
        assert_eq!(payloads(&q), ["2", "3", "4"]);
        assert_eq!(q.dropped(), 2);
        assert_eq!(q.first_seq(), 2);
        assert_eq!(q.persisted_len(), 0);
    }

    #[test]
    fn acks_out_of_order_leave_in_order() {
        let mut q = Queue::in_memory(10);
        for i in 0..4 {
            q.push(message(i));
        }
        q.ack(1);
        assert_eq!(q.len(), 4);
        assert!(q.get(1).unwrap().1);
        q.ack(0);
        assert_eq!(payloads(&q), ["2", "3"]);
        q.ack(0); // already gone
        q.ack(99); // never existed
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn the_file_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut q = Queue::open(dir.path(), 100);
            assert_eq!(q.write_error(), None);
            for i in 0..10 {
                q.push(message(i));
            }
            q.ack(0);
            q.ack(1);
            q.ack(3); // out of order: 3 stays until 2 is delivered
            q.flush();
            assert_eq!(q.persisted_len(), 8);
        }
        let mut q = Queue::open(dir.path(), 100);
        assert_eq!(payloads(&q), strings(2..10));
        assert_eq!(q.get(q.first_seq()).unwrap().0, &message(2));
        assert_eq!(q.persisted_len(), 8);
        // Delivering everything empties the file.
        for s in q.first_seq()..q.end_seq() {
            q.ack(s);
        }
        q.flush();
        assert!(Queue::open(dir.path(), 100).is_empty());
        q.push(message(42));
        q.flush();
        let q = Queue::open(dir.path(), 100);
        assert_eq!(payloads(&q), ["42"]);
        let mode = fs::metadata(dir.path().join(FILE_NAME)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn reopening_with_a_smaller_bound_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path(), 100);
        for i in 0..10 {
            q.push(message(i));
        }
        q.flush();
        let mut q = Queue::open(dir.path(), 4);
        assert_eq!(payloads(&q), ["6", "7", "8", "9"]);
        assert_eq!(q.dropped(), 6);
        q.flush();
        assert_eq!(
            payloads(&Queue::open(dir.path(), 100)),
            ["6", "7", "8", "9"]
        );
    }

    fn big(i: usize) -> Publication {
        Publication {
            topic: "smarty/home/state".into(),
            payload: format!("{i:0200}").into_bytes(),
            qos: 1,
            retain: false,
        }
    }

    /// Waits until the queue's retry is due (it comes [`RETRY`] after a failed write), then
    /// flushes.
    fn flush_after_retry(q: &mut Queue) {
        let deadline = Instant::now() + RETRY * 10;
        while q
            .file
            .as_ref()
            .and_then(|f| f.retry_at)
            .is_some_and(|at| Instant::now() < at)
        {
            assert!(Instant::now() < deadline, "the retry never came due");
            std::thread::sleep(Duration::from_millis(10));
        }
        q.flush();
    }

    /// The disk fills up: the queue says so and keeps everything in memory; when space comes
    /// back, one flush writes everything, and a restart finds every message.
    #[test]
    fn a_full_disk_is_reported_retried_and_loses_nothing() {
        let disk = SmallDisk::mount("256k");
        let mut q = Queue::open(disk.path(), 100_000);
        assert_eq!(q.write_error(), None);
        let mut full_at = None;
        for i in 0..1000 {
            q.push(big(i));
            q.flush();
            if full_at.is_none() && q.write_error().is_some() {
                full_at = Some(i);
            }
        }
        let full_at = full_at.expect("a 256 KiB disk fills up with 1000 messages of 200 bytes");
        let error = q.write_error().unwrap().to_owned();
        assert!(error.contains("full"), "{error}");
        assert_eq!(q.len(), 1000, "everything still queued in memory");
        assert!(
            q.persisted_len() <= full_at,
            "{} > {full_at}",
            q.persisted_len()
        );
        // Still full: retrying fails, and says so.
        flush_after_retry(&mut q);
        assert!(q.write_error().is_some());

        disk.remount("size=8m");
        flush_after_retry(&mut q);
        assert_eq!(q.write_error(), None);
        assert_eq!(q.persisted_len(), 1000);
        // Delivering some while all is well again.
        for s in q.first_seq()..q.first_seq() + 10 {
            q.ack(s);
        }
        q.flush();
        drop(q);
        let q = Queue::open(disk.path(), 100_000);
        assert_eq!(q.len(), 990);
        assert_eq!(q.get(q.first_seq()).unwrap().0, &big(10));
        assert_eq!(q.get(q.end_seq() - 1).unwrap().0, &big(999));
    }

    /// When the disk stays full, what a stop reports as kept is exactly what the next run finds.
    #[test]
    fn what_is_said_to_be_kept_is_kept() {
        let disk = SmallDisk::mount("256k");
        let mut q = Queue::open(disk.path(), 100_000);
        for i in 0..1000 {
            q.push(big(i));
            q.flush();
        }
        // Some delivered at the front, while the disk is full.
        for s in q.first_seq()..q.first_seq() + 5 {
            q.ack(s);
        }
        flush_after_retry(&mut q);
        assert!(q.write_error().is_some());
        let kept = q.persisted_len();
        assert!(kept > 0 && kept < q.len(), "{kept} of {}", q.len());
        drop(q);
        disk.remount("size=8m");
        let q = Queue::open(disk.path(), 100_000);
        // The 5 delivered ones could not be removed from the full disk: sent again (QoS 1
        // allows a duplicate), on top of what was reported kept.
        assert_eq!(q.len(), kept + 5);
        assert_eq!(q.get(q.first_seq()).unwrap().0, &big(0));
    }

    /// A directory that cannot be written at all: the queue works in memory and says why.
    #[test]
    fn an_unwritable_directory_leaves_the_queue_in_memory_and_says_so() {
        let disk = SmallDisk::mount("64k");
        disk.remount("ro");
        let mut q = Queue::open(&disk.path().join("queue"), 100);
        let error = q.write_error().expect("an error").to_owned();
        assert!(error.contains("Read-only"), "{error}");
        q.push(message(1));
        q.flush();
        assert_eq!(payloads(&q), ["1"]);
        assert_eq!(q.persisted_len(), 0);
        // Writable again: the file is created and takes the queue.
        disk.remount("rw");
        q.push(message(2));
        flush_after_retry(&mut q);
        assert_eq!(q.write_error(), None);
        assert_eq!(q.persisted_len(), 2);
        assert_eq!(
            payloads(&Queue::open(&disk.path().join("queue"), 100)),
            ["1", "2"]
        );
    }

    fn damaged_files(dir: &Path) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".damaged-"))
            .collect();
        found.sort();
        found
    }

    #[test]
    fn an_empty_file_is_an_empty_queue() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), b"").unwrap();
        let mut q = Queue::open(dir.path(), 100);
        assert_eq!(q.write_error(), None);
        assert!(q.is_empty());
        q.push(message(1));
        q.flush();
        assert_eq!(payloads(&Queue::open(dir.path(), 100)), ["1"]);
        assert!(damaged_files(dir.path()).is_empty());
    }

    #[test]
    fn a_file_that_is_not_a_queue_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = b"this is not an SQLite file, but it is someone's data".repeat(200);
        fs::write(dir.path().join(FILE_NAME), &garbage).unwrap();
        let mut q = Queue::open(dir.path(), 100);
        assert_eq!(q.write_error(), None);
        assert!(q.is_empty());
        let aside = damaged_files(dir.path());
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(fs::read(&aside[0]).unwrap(), garbage, "kept as it was");
        q.push(message(1));
        q.flush();
        assert_eq!(payloads(&Queue::open(dir.path(), 100)), ["1"]);
    }

    /// A file cut short (a disk that lost its tail): the messages that can be read are
    /// recovered, the file is kept aside.
    #[test]
    fn a_truncated_file_gives_what_it_can_and_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        {
            let mut q = Queue::open(dir.path(), 100_000);
            for i in 0..2000 {
                q.push(big(i));
            }
            q.flush();
            // Everything into the main file, then no journal left.
            let conn = q.file.as_mut().unwrap().conn.take().unwrap();
            conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
        }
        let len = fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len / 2).unwrap();
        drop(file);
        let q = Queue::open(dir.path(), 100_000);
        assert_eq!(q.write_error(), None);
        assert_eq!(damaged_files(dir.path()).len(), 1);
        // What was read is a prefix of what was written, in order.
        assert!(q.len() < 2000);
        for (i, seq) in (q.first_seq()..q.end_seq()).enumerate() {
            assert_eq!(q.get(seq).unwrap().0, &big(i));
        }
        // And it is in the new file.
        assert_eq!(Queue::open(dir.path(), 100_000).len(), q.len());
    }

    fn legacy_record(out: &mut Vec<u8>, m: &Publication) {
        out.push(b'M');
        out.push(m.qos | (u8::from(m.retain) << 2));
        out.extend_from_slice(&u16::try_from(m.topic.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&u32::try_from(m.payload.len()).unwrap().to_be_bytes());
        out.extend_from_slice(m.topic.as_bytes());
        out.extend_from_slice(&m.payload);
    }

    #[test]
    fn the_queue_file_of_an_earlier_version_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = LEGACY_MAGIC.to_vec();
        for i in 0..5 {
            legacy_record(&mut bytes, &message(i));
        }
        bytes.extend_from_slice(b"R\x00\x00\x00\x02");
        bytes.extend_from_slice(b"M\x01\x00\x10\x00"); // cut short by a crash
        let legacy = dir.path().join(LEGACY_FILE_NAME);
        fs::write(&legacy, &bytes).unwrap();
        let q = Queue::open(dir.path(), 100);
        assert_eq!(payloads(&q), ["2", "3", "4"]);
        assert_eq!(q.get(q.first_seq()).unwrap().0, &message(2));
        assert!(
            !legacy.exists(),
            "removed once its messages are in the new file"
        );
        assert_eq!(payloads(&Queue::open(dir.path(), 100)), ["2", "3", "4"]);

        // A damaged one: what comes before the damage is taken, the file set aside.
        let mut bytes = LEGACY_MAGIC.to_vec();
        legacy_record(&mut bytes, &message(7));
        bytes.extend_from_slice(b"Xgarbage");
        legacy_record(&mut bytes, &message(8));
        fs::write(&legacy, &bytes).unwrap();
        let q = Queue::open(dir.path(), 100);
        assert_eq!(payloads(&q), ["2", "3", "4", "7"]);
        assert!(!legacy.exists());
        let aside = damaged_files(dir.path());
        assert_eq!(aside.len(), 1);
        assert_eq!(fs::read(&aside[0]).unwrap(), bytes);
    }
}
