//! The latest decoded telegram, shared by the P1 reader (writer) and the network outputs
//! (readers). Each new telegram bumps a sequence number in a [`Watch`], which wakes the
//! outputs; they copy what they need out of [`LATEST`] under a short critical section.
//!
//! (No `Arc`: the ESP32-C3 has no compare-and-swap atomics.)

use alloc::{string::String, vec::Vec};
use core::cell::RefCell;

use embassy_sync::{
    blocking_mutex::{Mutex, raw::CriticalSectionRawMutex},
    watch::Watch,
};

/// How many outputs wait for new telegrams: MQTT and two telegram-stream clients.
pub const WAITERS: usize = 3;

/// One decoded telegram as the outputs need it.
#[derive(Default, Clone)]
pub struct Snapshot {
    /// The meter's id (`0-0:42.0.0` / `0-0:96.1.1`), empty when the telegram has none.
    pub meter_id: String,
    /// The readings as a JSON object (the API's `/api/v1/latest` and MQTT's state topic).
    pub json: String,
    /// The plaintext telegram, `/` to the CRC line, as DSMR tools read it.
    pub telegram: Vec<u8>,
}

/// Counters for the diagnosis endpoint.
#[derive(Default, Clone, Copy)]
pub struct Counters {
    /// Telegrams decoded.
    pub telegrams: u32,
    /// Frames or telegrams rejected (framing, decryption, CRC).
    pub rejected: u32,
    /// UART receive errors (framing, parity, FIFO overflow).
    pub uart_errors: u32,
    /// The uptime in milliseconds of the last decoded telegram.
    pub last_ms: u64,
}

/// The latest telegram.
pub static LATEST: Mutex<CriticalSectionRawMutex, RefCell<Option<Snapshot>>> =
    Mutex::new(RefCell::new(None));

/// The P1 reader's counters.
pub static COUNTERS: Mutex<CriticalSectionRawMutex, RefCell<Counters>> =
    Mutex::new(RefCell::new(Counters {
        telegrams: 0,
        rejected: 0,
        uart_errors: 0,
        last_ms: 0,
    }));

/// The sequence number of the latest telegram: outputs wait on it.
pub static SEQUENCE: Watch<CriticalSectionRawMutex, u32, WAITERS> = Watch::new();

/// Stores `snapshot` as the latest telegram and wakes the outputs.
pub fn publish(snapshot: Snapshot, now_ms: u64) {
    LATEST.lock(|latest| *latest.borrow_mut() = Some(snapshot));
    let sequence = COUNTERS.lock(|counters| {
        let mut counters = counters.borrow_mut();
        counters.telegrams = counters.telegrams.wrapping_add(1);
        counters.last_ms = now_ms;
        counters.telegrams
    });
    SEQUENCE.sender().send(sequence);
}

/// Counts a rejected frame or a UART error.
pub fn count(uart_error: bool) {
    COUNTERS.lock(|counters| {
        let mut counters = counters.borrow_mut();
        if uart_error {
            counters.uart_errors = counters.uart_errors.wrapping_add(1);
        } else {
            counters.rejected = counters.rejected.wrapping_add(1);
        }
    });
}

/// A copy of the latest telegram, if one came.
pub fn latest() -> Option<Snapshot> {
    LATEST.lock(|latest| latest.borrow().clone())
}

/// A copy of the counters.
pub fn counters() -> Counters {
    COUNTERS.lock(|counters| *counters.borrow())
}
