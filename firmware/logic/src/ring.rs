//! A bounded queue of publications for while the broker is away: at most `max_items`
//! publications and `max_bytes` bytes (topic + payload); when full, the oldest go first and
//! are counted as dropped.

use alloc::collections::VecDeque;

use crate::p1::Publication;

/// The queue.
///
/// # Example
/// ```
/// use smarty_dongle::p1::{Publication, QoS};
/// use smarty_dongle::ring::Ring;
/// let mut ring = Ring::new(2, 1024);
/// for n in 0..3u8 {
///     ring.push(Publication::new("t".into(), vec![n], false, QoS::AtMostOnce));
/// }
/// assert_eq!((ring.len(), ring.dropped()), (2, 1));
/// assert_eq!(ring.pop().unwrap().payload, [1]);
/// ```
#[derive(Clone, Debug)]
pub struct Ring {
    items: VecDeque<Publication>,
    max_items: usize,
    max_bytes: usize,
    bytes: usize,
    dropped: u64,
}

impl Ring {
    /// An empty queue of at most `max_items` publications and `max_bytes` bytes.
    pub fn new(max_items: usize, max_bytes: usize) -> Self {
        Ring {
            items: VecDeque::new(),
            max_items,
            max_bytes,
            bytes: 0,
            dropped: 0,
        }
    }

    /// Appends `p`, dropping the oldest publications until it fits. A publication larger
    /// than the whole byte budget is dropped itself. Returns how many were dropped.
    pub fn push(&mut self, p: Publication) -> usize {
        let size = p.size();
        if size > self.max_bytes || self.max_items == 0 {
            self.dropped += 1;
            return 1;
        }
        let mut dropped = 0;
        while self.items.len() >= self.max_items || self.bytes + size > self.max_bytes {
            match self.items.pop_front() {
                Some(old) => {
                    self.bytes -= old.size();
                    dropped += 1;
                }
                None => break,
            }
        }
        self.dropped += dropped as u64;
        self.bytes += size;
        self.items.push_back(p);
        dropped
    }

    /// Takes the oldest publication.
    pub fn pop(&mut self) -> Option<Publication> {
        let p = self.items.pop_front()?;
        self.bytes -= p.size();
        Some(p)
    }

    /// The oldest publication, left in the queue (to remove it with [`Ring::pop`] once sent).
    pub fn front(&self) -> Option<&Publication> {
        self.items.front()
    }

    /// Puts a publication that could not be sent back at the front (it may drop the newest
    /// when over budget, which is counted).
    pub fn push_front(&mut self, p: Publication) {
        let size = p.size();
        if size > self.max_bytes || self.max_items == 0 {
            self.dropped += 1;
            return;
        }
        while self.items.len() >= self.max_items || self.bytes + size > self.max_bytes {
            match self.items.pop_back() {
                Some(old) => {
                    self.bytes -= old.size();
                    self.dropped += 1;
                }
                None => break,
            }
        }
        self.bytes += size;
        self.items.push_front(p);
    }

    /// Publications queued.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// `true` when none is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes queued (topics + payloads).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Publications dropped since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Empties the queue (not counted as dropped).
    pub fn clear(&mut self) {
        self.items.clear();
        self.bytes = 0;
    }
}
