//! The channels from the meters to the outputs.
//!
//! Two kinds of output, two kinds of channel:
//! - **Lossless** outputs (the store, MQTT with its disk queue) promise that nothing is lost:
//!   each has a bounded channel of its own ([`Bus::lossless`]), and a meter waits while one of
//!   them is full ([`Publisher::send`]). A burst slows the meter down (the bytes wait in the
//!   socket or the serial driver), it never drops a telegram.
//! - Outputs that may **skip** (the live state behind `/metrics` and `/healthz`, the
//!   plain-telegram proxy, the dashboard's event stream) share a broadcast channel
//!   ([`Bus::lossy`]): one that falls behind skips the oldest events and never slows a meter.
//!
//! Status events are coalesced by the meters (`service::meter`): at most one per meter and
//! second, plus one at each connect, disconnect and first telegram, so rejections never crowd
//! telegrams out.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use smarty_model::event::MeterEvent;

/// Events a lossless output may hold before the meters wait for it.
pub const LOSSLESS_CAPACITY: usize = 256;

/// Events buffered for lossy outputs that fall behind (a slow one skips, it never blocks).
pub const LOSSY_CAPACITY: usize = 1024;

/// Which events a lossless output takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepts {
    /// Status changes of the meters.
    pub statuses: bool,
    /// Frames a meter without a key could not decrypt.
    pub raw_frames: bool,
    /// The meters' live guards ([`MeterEvent::Guard`]).
    pub guards: bool,
}

impl Accepts {
    /// Accepted telegrams only (the store).
    pub const TELEGRAMS: Accepts = Accepts {
        statuses: false,
        raw_frames: false,
        guards: false,
    };
    /// The live guards only (the guard's alerts).
    pub const GUARDS: Accepts = Accepts {
        statuses: false,
        raw_frames: false,
        guards: true,
    };
    /// Everything (MQTT).
    pub const ALL: Accepts = Accepts {
        statuses: true,
        raw_frames: true,
        guards: true,
    };

    fn accepts(self, event: &MeterEvent) -> bool {
        match event {
            MeterEvent::Telegram(_) => true,
            MeterEvent::Status(_) => self.statuses,
            MeterEvent::RawFrame { .. } => self.raw_frames,
            MeterEvent::Guard(_) => self.guards,
        }
    }
}

#[derive(Debug, Clone)]
struct Lossless {
    name: &'static str,
    accepts: Accepts,
    tx: mpsc::Sender<MeterEvent>,
}

/// The outputs' side: where outputs subscribe before the meters start.
#[derive(Debug)]
pub struct Bus {
    lossless: Vec<Lossless>,
    lossy: broadcast::Sender<MeterEvent>,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    /// A bus without outputs.
    pub fn new() -> Self {
        Bus {
            lossless: Vec::new(),
            lossy: broadcast::channel(LOSSY_CAPACITY).0,
        }
    }

    /// A lossless output named `name` (for logs) taking the events `accepts` lets through.
    /// The meters wait while its channel is full; when it ends, its events go nowhere.
    pub fn lossless(&mut self, name: &'static str, accepts: Accepts) -> mpsc::Receiver<MeterEvent> {
        let (tx, rx) = mpsc::channel(LOSSLESS_CAPACITY);
        self.lossless.push(Lossless { name, accepts, tx });
        rx
    }

    /// A lossy output: every event, skipping the oldest when it falls behind.
    pub fn lossy(&self) -> broadcast::Receiver<MeterEvent> {
        self.lossy.subscribe()
    }

    /// The lossy channel for outputs that subscribe later (the dashboard's event streams);
    /// it closes when the bus and every publisher are gone.
    pub fn lossy_weak(&self) -> broadcast::WeakSender<MeterEvent> {
        self.lossy.downgrade()
    }

    /// What a meter sends with. Outputs subscribed later do not receive from it.
    pub fn publisher(&self) -> Publisher {
        Publisher {
            lossless: Arc::from(self.lossless.clone()),
            lossy: self.lossy.clone(),
        }
    }
}

/// The meters' side of the [`Bus`].
#[derive(Debug, Clone)]
pub struct Publisher {
    lossless: Arc<[Lossless]>,
    lossy: broadcast::Sender<MeterEvent>,
}

impl Publisher {
    /// Sends `event` to every output: waits while a lossless output that takes it is full,
    /// then hands it to the lossy ones. An output that ended is skipped (the service notices
    /// its end and stops).
    pub async fn send(&self, event: MeterEvent) {
        for output in self.lossless.iter() {
            if output.accepts.accepts(&event) && output.tx.send(event.clone()).await.is_err() {
                tracing::debug!("{}: stopped, event not delivered", output.name);
            }
        }
        // No lossy receiver (no dashboard, no proxy) is not an error.
        let _ = self.lossy.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smarty_model::event::MeterStatus;

    fn status(connected: bool) -> MeterEvent {
        MeterEvent::Status(Arc::new(MeterStatus {
            meter: Arc::from("home"),
            source: "test".into(),
            connected,
            last_telegram: None,
            stats: smarty_p1::Stats::default(),
            reconnects: 0,
            last_error: None,
        }))
    }

    #[tokio::test]
    async fn a_full_lossless_output_holds_the_meter_back_and_loses_nothing() {
        let mut bus = Bus::new();
        let mut all = bus.lossless("all", Accepts::ALL);
        let mut telegrams = bus.lossless("telegrams", Accepts::TELEGRAMS);
        let publisher = bus.publisher();
        let n = LOSSLESS_CAPACITY * 3;
        let sender = tokio::spawn(async move {
            for i in 0..n {
                publisher.send(status(i % 2 == 0)).await;
            }
        });
        // The sender runs until the channel is full, then waits for the output.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(all.len(), LOSSLESS_CAPACITY);
        assert!(!sender.is_finished(), "the meter waits");
        let mut received = 0;
        while received < n {
            let Some(MeterEvent::Status(s)) = all.recv().await else {
                panic!("a status")
            };
            assert_eq!(s.connected, received % 2 == 0, "in order");
            received += 1;
        }
        sender.await.unwrap();
        assert!(telegrams.try_recv().is_err(), "statuses filtered out");
    }
}
