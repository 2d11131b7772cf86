//! The live state of the service: the latest telegram and status of every meter, the health of
//! the outputs and the MQTT queue's report. The web server shows it (`/api/meters`,
//! `/metrics`, `/healthz`); the outputs report into it. No HTTP here: the exposition and the
//! health answer are the web server's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use super::event::{GuardEvent, MeterEvent, MeterStatus, TelegramEvent};

/// Locks `mutex`, whatever a panicking holder left: every value here stays consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The latest known state of every meter and output; shared by the outputs and the web
/// server (`Arc<LiveState>`).
#[derive(Debug, Default)]
pub struct LiveState {
    meters: Mutex<BTreeMap<Arc<str>, MeterEntry>>,
    mqtt_queue: Arc<QueueReport>,
    outputs: Mutex<BTreeMap<&'static str, OutputHealth>>,
    lagged: AtomicU64,
}

/// The latest of one meter.
#[derive(Debug, Default, Clone)]
pub struct MeterEntry {
    /// Its last telegram since the start.
    pub telegram: Option<Arc<TelegramEvent>>,
    /// Its last status.
    pub status: Option<Arc<MeterStatus>>,
    /// Its live guard after the last telegram, when the guard is on.
    pub guard: Option<Arc<GuardEvent>>,
}

impl MeterEntry {
    /// When its last telegram was accepted, as the telegram or the status says (the later).
    pub fn last_telegram(&self) -> Option<SystemTime> {
        let from_telegram = self.telegram.as_ref().map(|t| t.received);
        let from_status = self.status.as_ref().and_then(|s| s.last_telegram);
        from_telegram.max(from_status)
    }
}

/// The state of one output as `/healthz` shows it: working, or failing with a reason. The
/// output keeps it up to date; clones share it.
#[derive(Debug, Clone, Default)]
pub struct OutputHealth(Arc<Mutex<Option<String>>>);

impl OutputHealth {
    /// The output works (again).
    pub fn ok(&self) {
        *lock(&self.0) = None;
    }

    /// The output fails, for `reason` (it keeps retrying).
    pub fn failing(&self, reason: impl Into<String>) {
        *lock(&self.0) = Some(reason.into());
    }

    /// Why the output fails, while it does.
    pub fn problem(&self) -> Option<String> {
        lock(&self.0).clone()
    }
}

/// The state of the MQTT output's queue, for `/metrics` and `/healthz`.
#[derive(Debug, Default)]
pub struct QueueReport {
    /// Messages waiting (`smarty_mqtt_queue_depth`).
    depth: AtomicI64,
    /// Why the queue's file cannot be written (`None` while it can, or without one).
    not_persisting: Mutex<Option<String>>,
}

impl QueueReport {
    /// Messages waiting.
    pub fn depth(&self) -> i64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Why the queue's file cannot be written, while it cannot: the messages queued since are
    /// in memory only (writing is retried). `None` when all is well, or without a file.
    pub fn not_persisting(&self) -> Option<String> {
        lock(&self.not_persisting).clone()
    }

    /// Stores the queue's state: `depth` messages waiting, and why its file cannot be
    /// written (`None` while it can, or without one).
    pub fn set(&self, depth: usize, not_persisting: Option<&str>) {
        self.depth
            .store(i64::try_from(depth).unwrap_or(i64::MAX), Ordering::Relaxed);
        let mut current = lock(&self.not_persisting);
        if current.as_deref() != not_persisting {
            *current = not_persisting.map(str::to_owned);
        }
    }
}

impl LiveState {
    /// A state expecting the given meters (so that `/healthz` reports those that never
    /// deliver).
    pub fn new<S: AsRef<str>>(meters: impl IntoIterator<Item = S>) -> Arc<Self> {
        let state = LiveState::default();
        {
            let mut map = lock(&state.meters);
            for meter in meters {
                map.insert(Arc::from(meter.as_ref()), MeterEntry::default());
            }
        }
        Arc::new(state)
    }

    /// The health of the output `name` (`store`, `mqtt`) for `/healthz`, working until it
    /// says otherwise.
    pub fn output(&self, name: &'static str) -> OutputHealth {
        lock(&self.outputs).entry(name).or_default().clone()
    }

    /// Every output that reports its health, by name, with its problem if it has one.
    pub fn outputs(&self) -> Vec<(&'static str, Option<String>)> {
        lock(&self.outputs)
            .iter()
            .map(|(name, health)| (*name, health.problem()))
            .collect()
    }

    /// Where the MQTT output reports its queue: the depth, and whether its file can be
    /// written (`/healthz`).
    pub fn mqtt_queue(&self) -> Arc<QueueReport> {
        Arc::clone(&self.mqtt_queue)
    }

    /// Takes in one event.
    pub fn update(&self, event: &MeterEvent) {
        let mut meters = lock(&self.meters);
        match event {
            MeterEvent::Telegram(t) => {
                meters.entry(Arc::clone(&t.meter)).or_default().telegram = Some(Arc::clone(t));
            }
            MeterEvent::Status(s) => {
                meters.entry(Arc::clone(&s.meter)).or_default().status = Some(Arc::clone(s));
            }
            MeterEvent::Guard(g) => {
                meters.entry(Arc::clone(&g.meter)).or_default().guard = Some(Arc::clone(g));
            }
            MeterEvent::RawFrame { .. } => {}
        }
    }

    /// Counts `n` events the state missed (its feed fell behind).
    pub fn missed(&self, n: u64) {
        self.lagged.fetch_add(n, Ordering::Relaxed);
    }

    /// Events the state missed since the start (`smarty_metrics_events_lagged_total`).
    pub fn missed_total(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }

    /// The names of the meters known so far (configured or seen), sorted.
    pub fn meter_names(&self) -> Vec<Arc<str>> {
        lock(&self.meters).keys().cloned().collect()
    }

    /// The last telegram of `meter`, if one arrived since the start.
    pub fn latest(&self, meter: &str) -> Option<Arc<TelegramEvent>> {
        lock(&self.meters)
            .get(meter)
            .and_then(|m| m.telegram.clone())
    }

    /// The last status of `meter`, if one was reported.
    pub fn status(&self, meter: &str) -> Option<Arc<MeterStatus>> {
        lock(&self.meters).get(meter).and_then(|m| m.status.clone())
    }

    /// The live guard of `meter` after its last telegram, when the guard is on.
    pub fn guard(&self, meter: &str) -> Option<Arc<GuardEvent>> {
        lock(&self.meters).get(meter).and_then(|m| m.guard.clone())
    }

    /// Every meter's latest, by name: a copy, taken at once.
    pub fn snapshot(&self) -> BTreeMap<Arc<str>, MeterEntry> {
        lock(&self.meters).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(meter: &str, last: Option<SystemTime>) -> MeterEvent {
        MeterEvent::Status(Arc::new(MeterStatus {
            meter: Arc::from(meter),
            source: "test".into(),
            connected: true,
            last_telegram: last,
            stats: smarty_p1::Stats::default(),
            reconnects: 0,
            last_error: None,
        }))
    }

    #[test]
    fn the_state_keeps_the_latest_of_every_meter_and_output() {
        let live = LiveState::new(["home"]);
        assert_eq!(live.meter_names(), [Arc::from("home")]);
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(5);
        live.update(&status("garage", Some(t)));
        assert_eq!(live.meter_names().len(), 2);
        assert_eq!(live.snapshot()["garage"].last_telegram(), Some(t));
        assert!(live.latest("garage").is_none());
        assert!(live.status("garage").is_some_and(|s| s.connected));

        let store = live.output("store");
        assert_eq!(live.outputs(), [("store", None)]);
        store.failing("disk full");
        assert_eq!(live.outputs(), [("store", Some("disk full".to_owned()))]);
        store.ok();
        assert_eq!(live.output("store").problem(), None);

        live.mqtt_queue().set(7, Some("read-only"));
        assert_eq!(live.mqtt_queue().depth(), 7);
        assert_eq!(
            live.mqtt_queue().not_persisting().as_deref(),
            Some("read-only")
        );
        live.missed(3);
        assert_eq!(live.missed_total(), 3);
    }
}
