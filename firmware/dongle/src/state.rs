//! What the tasks share: the settings read at boot, the set-up access point's name and
//! password, the P1 reader (with its counters and diagnosis), the latest telegram, the
//! connection state for the status, and the channels between the tasks and the control loop.
//!
//! Each new telegram bumps a sequence number in a [`Watch`], which wakes the outputs; they copy
//! what they need out of [`LATEST`] under a short critical section. (No `Arc`: the ESP32-C3 has
//! no compare-and-swap atomics.)

use alloc::string::String;
use core::cell::RefCell;

use embassy_sync::{
    blocking_mutex::{Mutex as BlockingMutex, raw::CriticalSectionRawMutex},
    channel::Channel,
    mutex::Mutex,
    once_lock::OnceLock,
    signal::Signal,
    watch::Watch,
};
use embassy_time::Instant;
use smarty_dongle::{
    api::BrokerState, diagnosis::Diagnosis, p1::Reader, p1::Snapshot, provisioning,
    settings::Settings,
};
use smarty_p1::Stats;

/// How many outputs wait for new telegrams: MQTT and two telegram-stream clients.
pub const WAITERS: usize = 3;

/// The settings read from flash at boot (`None`: not set up). Saving new ones restarts the
/// dongle, so they do not change while it runs.
pub static SETTINGS: OnceLock<Option<Settings>> = OnceLock::new();

/// The set-up access point: its name and password.
pub struct AccessPoint {
    /// `smarty-XXXXXX`.
    pub ssid: String,
    /// The per-device WPA2 password (kept in flash).
    pub password: String,
}

/// The set-up access point's name and password, known from boot.
pub static ACCESS_POINT: OnceLock<AccessPoint> = OnceLock::new();

/// The dongle's short name: the last three bytes of its station MAC address in hex.
pub static MAC_SUFFIX: OnceLock<String> = OnceLock::new();

/// The P1 reader: the UART task feeds it; the status asks it for counters and the diagnosis.
pub static READER: Mutex<CriticalSectionRawMutex, Option<Reader>> = Mutex::new(None);

/// The latest accepted telegram.
static LATEST: BlockingMutex<CriticalSectionRawMutex, RefCell<Option<Snapshot>>> =
    BlockingMutex::new(RefCell::new(None));

/// The sequence number of the latest telegram: outputs wait on it.
pub static SEQUENCE: Watch<CriticalSectionRawMutex, u32, WAITERS> = Watch::new();

/// Stores `snapshot` as the latest telegram and wakes the outputs.
pub fn publish(snapshot: Snapshot) {
    LATEST.lock(|latest| *latest.borrow_mut() = Some(snapshot));
    let sequence = SEQUENCE.try_get().unwrap_or(0).wrapping_add(1);
    SEQUENCE.sender().send(sequence);
}

/// A copy of the latest telegram, if one came.
pub fn latest() -> Option<Snapshot> {
    LATEST.lock(|latest| latest.borrow().clone())
}

/// `f` of the latest telegram, if one came, without copying all of it (`f` runs in a
/// critical section: keep it short).
pub fn with_latest<R>(f: impl FnOnce(&Snapshot) -> R) -> Option<R> {
    LATEST.lock(|latest| latest.borrow().as_ref().map(f))
}

/// Milliseconds since boot.
pub fn now_ms() -> u64 {
    Instant::now().as_millis()
}

/// The reader's counters, bytes received and diagnosis as of now.
pub async fn p1_status() -> (Stats, u64, Diagnosis) {
    let mut reader = READER.lock().await;
    match reader.as_mut() {
        Some(reader) => (
            *reader.stats(),
            reader.bytes_received(),
            reader.diagnose(now_ms()),
        ),
        None => {
            let mut idle = Reader::new(smarty_p1::DecoderConfig::default());
            (Stats::default(), 0, idle.diagnose(now_ms()))
        }
    }
}

/// The connection as the status shows it.
#[derive(Clone)]
pub struct Connection {
    /// The control loop's state.
    pub state: provisioning::State,
    /// The broker connection.
    pub broker: BrokerState,
    /// Why the last broker connection failed, if it did.
    pub broker_error: Option<String>,
    /// The station's address, when it has one.
    pub address: Option<embassy_net::Ipv4Cidr>,
    /// The signal strength of the joined network (dBm).
    pub rssi_dbm: Option<i8>,
    /// Publications queued while the broker is away.
    pub queued: usize,
    /// Publications dropped from the queue since boot.
    pub dropped: u64,
}

static CONNECTION: BlockingMutex<CriticalSectionRawMutex, RefCell<Connection>> =
    BlockingMutex::new(RefCell::new(Connection {
        state: provisioning::State::Start,
        broker: BrokerState::Disconnected,
        broker_error: None,
        address: None,
        rssi_dbm: None,
        queued: 0,
        dropped: 0,
    }));

/// A copy of the connection status.
pub fn connection() -> Connection {
    CONNECTION.lock(|c| c.borrow().clone())
}

/// Changes the connection status.
pub fn update(f: impl FnOnce(&mut Connection)) {
    CONNECTION.lock(|c| f(&mut c.borrow_mut()));
}

/// What happened, for the control loop ([`provisioning::next`]): from the Wi-Fi, MQTT and
/// button tasks.
pub static EVENTS: Channel<CriticalSectionRawMutex, provisioning::Event, 8> = Channel::new();

/// What the Wi-Fi task is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WifiCommand {
    /// Open the set-up access point.
    StartAccessPoint,
    /// Close it.
    StopAccessPoint,
    /// Join the network of the settings.
    Join,
    /// Leave it.
    Leave,
}

/// Commands for the Wi-Fi task, in order.
pub static WIFI: Channel<CriticalSectionRawMutex, WifiCommand, 8> = Channel::new();

/// What the MQTT task is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerCommand {
    /// Connect to the broker of the settings.
    Connect,
    /// Disconnect (publishing `offline` first).
    Disconnect,
}

/// The latest command for the MQTT task.
pub static BROKER: Signal<CriticalSectionRawMutex, BrokerCommand> = Signal::new();
