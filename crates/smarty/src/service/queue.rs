//! The MQTT output's outgoing queue: every message waits here until the broker acknowledged
//! it (QoS 1/2) or it was written to the connection (QoS 0), so nothing is lost while the broker
//! is down. In memory a [`VecDeque`]; with a directory, also an append-only file that survives a
//! restart of `smarty`.
//!
//! # File format (`<queue_dir>/mqtt-queue.bin`)
//!
//! An 8-byte header `SMARTYQ1`, then records, integers big-endian:
//!
//! | record | layout | meaning |
//! |---|---|---|
//! | message | `b'M'`, flags `u8` (bits 0–1 QoS, bit 2 retain), topic length `u16`, payload length `u32`, topic (UTF-8), payload | a message was queued (at the back) |
//! | remove | `b'R'`, count `u32` | the `count` oldest messages left the queue (delivered, or dropped when full) |
//!
//! Replaying the records in order gives the queue. A record cut short by a crash is ignored
//! (and cut off the file). On open, and when the file holds much more than the queue, the file
//! is rewritten with only the queued messages (to a temporary file, then renamed); when the
//! queue becomes empty the file is truncated to its header. Writes go through a buffer that is
//! flushed to the operating system after each batch, without `fsync`: a crash of `smarty`
//! loses nothing, a power cut may lose the last seconds.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// One MQTT message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// QoS 0, 1 or 2.
    pub qos: u8,
    /// The retain flag.
    pub retain: bool,
}

const MAGIC: &[u8; 8] = b"SMARTYQ1";
const FILE_NAME: &str = "mqtt-queue.bin";
/// Rewrite the file when it holds this many bytes of removed messages (and more than live).
const COMPACT_DEAD_BYTES: u64 = 4 << 20;

#[derive(Debug)]
struct Entry {
    message: Message,
    /// Delivered, but not at the front yet (acknowledgements out of order).
    done: bool,
}

/// A bounded FIFO of [`Message`]s with sequence numbers, optionally on disk.
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
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes of records of messages still queued.
    live_bytes: u64,
    /// Bytes of everything else (removed messages, remove records).
    dead_bytes: u64,
    /// Removals not yet written.
    removed: u32,
    /// A write failed: the queue carries on in memory only.
    failed: bool,
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
    pub fn open(dir: &Path, max: usize) -> io::Result<Queue> {
        fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let mut queue = Queue::in_memory(max);
        if let Some(messages) = load(&path)? {
            for message in messages {
                queue.push_memory(message);
            }
        }
        let out = rewrite(&path, queue.entries.iter().map(|e| &e.message))?;
        let live_bytes = queue.entries.iter().map(|e| record_len(&e.message)).sum();
        queue.file = Some(QueueFile {
            path,
            out,
            live_bytes,
            dead_bytes: 0,
            removed: 0,
            failed: false,
        });
        Ok(queue)
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

    /// The sequence number of the oldest message (or of the next one, when empty).
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// The sequence number the next pushed message gets.
    pub fn end_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64
    }

    /// The message `seq`, unless it left the queue, with whether it was delivered already.
    pub fn get(&self, seq: u64) -> Option<(&Message, bool)> {
        let index = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        self.entries.get(index).map(|e| (&e.message, e.done))
    }

    /// Queues `message` at the back, dropping the oldest message when full; returns its
    /// sequence number.
    pub fn push(&mut self, message: Message) -> u64 {
        if let Some(file) = self.file.as_mut() {
            let len = record_len(&message);
            file.write(|out| write_message(out, &message));
            file.live_bytes += len;
        }
        self.push_memory(message)
    }

    fn push_memory(&mut self, message: Message) -> u64 {
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
        if let Some(entry) = self.entries.pop_front() {
            self.first_seq += 1;
            if let Some(file) = self.file.as_mut() {
                let len = record_len(&entry.message);
                file.live_bytes -= len;
                file.dead_bytes += len;
                file.removed += 1;
            }
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

    /// Writes what changed to the file (a no-op in memory). Errors are logged once; the queue
    /// then carries on in memory.
    pub fn flush(&mut self) {
        let empty = self.entries.is_empty();
        let Some(file) = self.file.as_mut() else {
            return;
        };
        if file.failed {
            return;
        }
        if empty && file.dead_bytes > 0 {
            // Nothing queued: start the file over.
            let result = file.out.flush().and_then(|()| {
                let f = file.out.get_mut();
                f.set_len(MAGIC.len() as u64)?;
                f.seek(SeekFrom::End(0)).map(drop)
            });
            file.removed = 0;
            file.dead_bytes = 0;
            file.live_bytes = 0;
            if let Err(e) = result {
                file.fail(&e);
            }
            return;
        }
        if file.removed > 0 {
            let count = file.removed;
            file.removed = 0;
            file.write(|out| {
                out.write_all(b"R")?;
                out.write_all(&count.to_be_bytes())
            });
            file.dead_bytes += 5;
        }
        if file.dead_bytes > COMPACT_DEAD_BYTES && file.dead_bytes > file.live_bytes {
            match file
                .out
                .flush()
                .and_then(|()| rewrite(&file.path, self.entries.iter().map(|e| &e.message)))
            {
                Ok(out) => {
                    file.out = out;
                    file.dead_bytes = 0;
                }
                Err(e) => file.fail(&e),
            }
            return;
        }
        if let Err(e) = file.out.flush() {
            file.fail(&e);
        }
    }
}

impl QueueFile {
    fn write(&mut self, f: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>) {
        if self.failed {
            return;
        }
        if let Err(e) = f(&mut self.out) {
            self.fail(&e);
        }
    }

    fn fail(&mut self, e: &io::Error) {
        self.failed = true;
        tracing::error!(
            path = %self.path.display(),
            "cannot write the MQTT queue file ({e}); queueing in memory only from now on"
        );
    }
}

fn record_len(message: &Message) -> u64 {
    8 + message.topic.len() as u64 + message.payload.len() as u64
}

fn write_message(out: &mut impl Write, message: &Message) -> io::Result<()> {
    let topic_len = u16::try_from(message.topic.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "topic too long"))?;
    let payload_len = u32::try_from(message.payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "payload too long"))?;
    let flags = (message.qos & 3) | (u8::from(message.retain) << 2);
    out.write_all(&[b'M', flags])?;
    out.write_all(&topic_len.to_be_bytes())?;
    out.write_all(&payload_len.to_be_bytes())?;
    out.write_all(message.topic.as_bytes())?;
    out.write_all(&message.payload)
}

/// Replays the file at `path`; `None` when there is none.
fn load(path: &Path) -> io::Result<Option<VecDeque<Message>>> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a smarty MQTT queue file", path.display()),
        ));
    }
    let mut messages = VecDeque::new();
    let mut rest = &bytes[MAGIC.len()..];
    while !rest.is_empty() {
        match parse_record(rest) {
            Some((Record::Message(m), used)) => {
                messages.push_back(m);
                rest = &rest[used..];
            }
            Some((Record::Remove(n), used)) => {
                let n = (n as usize).min(messages.len());
                messages.drain(..n);
                rest = &rest[used..];
            }
            None => {
                tracing::warn!(
                    path = %path.display(),
                    bytes = rest.len(),
                    "ignoring an incomplete record at the end of the MQTT queue file"
                );
                break;
            }
        }
    }
    Ok(Some(messages))
}

enum Record {
    Message(Message),
    Remove(u32),
}

fn parse_record(bytes: &[u8]) -> Option<(Record, usize)> {
    match *bytes.first()? {
        b'M' => {
            let flags = *bytes.get(1)?;
            let topic_len = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize;
            let payload_len = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?) as usize;
            let topic = bytes.get(8..8 + topic_len)?;
            let payload = bytes.get(8 + topic_len..8 + topic_len + payload_len)?;
            let message = Message {
                topic: String::from_utf8(topic.to_vec()).ok()?,
                payload: payload.to_vec(),
                qos: (flags & 3).min(2),
                retain: flags & 4 != 0,
            };
            Some((Record::Message(message), 8 + topic_len + payload_len))
        }
        b'R' => {
            let count = u32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?);
            Some((Record::Remove(count), 5))
        }
        _ => None,
    }
}

/// Writes a fresh file with `messages` (via a temporary file and a rename); returns it open
/// for appending.
fn rewrite<'a>(
    path: &Path,
    messages: impl Iterator<Item = &'a Message>,
) -> io::Result<BufWriter<File>> {
    let tmp = path.with_extension("tmp");
    {
        let mut out = BufWriter::new(File::create(&tmp)?);
        out.write_all(MAGIC)?;
        for message in messages {
            write_message(&mut out, message)?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    let mut file = OpenOptions::new().append(true).open(path)?;
    file.seek(SeekFrom::End(0))?;
    Ok(BufWriter::new(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(i: usize) -> Message {
        Message {
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

    #[test]
    fn full_queue_drops_the_oldest_and_counts() {
        let mut q = Queue::in_memory(3);
        for i in 0..5 {
            q.push(message(i));
        }
        assert_eq!(payloads(&q), ["2", "3", "4"]);
        assert_eq!(q.dropped(), 2);
        assert_eq!(q.first_seq(), 2);
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
    fn the_file_survives_a_restart_and_a_torn_record() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut q = Queue::open(dir.path(), 100).unwrap();
            for i in 0..10 {
                q.push(message(i));
            }
            q.ack(0);
            q.ack(1);
            q.ack(3); // out of order: 3 stays until 2 is delivered
            q.flush();
        }
        // A crash in the middle of a record.
        let path = dir.path().join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"M\x01\x00\x10\x00").unwrap();
        drop(f);
        let mut q = Queue::open(dir.path(), 100).unwrap();
        assert_eq!(payloads(&q), ["2", "3", "4", "5", "6", "7", "8", "9"]);
        assert_eq!(q.get(q.first_seq()).unwrap().0, &message(2));
        // Delivering everything empties the file down to its header.
        for s in q.first_seq()..q.end_seq() {
            q.ack(s);
        }
        q.flush();
        assert_eq!(fs::metadata(&path).unwrap().len(), MAGIC.len() as u64);
        q.push(message(42));
        q.flush();
        let q = Queue::open(dir.path(), 100).unwrap();
        assert_eq!(payloads(&q), ["42"]);
    }

    #[test]
    fn reopening_with_a_smaller_bound_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path(), 100).unwrap();
        for i in 0..10 {
            q.push(message(i));
        }
        q.flush();
        let q = Queue::open(dir.path(), 4).unwrap();
        assert_eq!(payloads(&q), ["6", "7", "8", "9"]);
        assert_eq!(q.dropped(), 6);
    }

    #[test]
    fn a_big_file_is_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path(), 1000).unwrap();
        let big = |i: u8| Message {
            topic: "smarty/x".into(),
            payload: vec![i; 64 * 1024],
            qos: 1,
            retain: false,
        };
        q.push(big(0));
        for i in 1..100u8 {
            q.push(big(i));
            q.ack(q.first_seq());
            q.flush();
        }
        let len = fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        assert!(len < 2 * COMPACT_DEAD_BYTES, "{len}");
        let q = Queue::open(dir.path(), 1000).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q.get(0).unwrap().0.payload[0], 99);
    }
}
