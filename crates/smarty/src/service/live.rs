//! The live state ([`LiveState`]: what `/api/meters`, `/metrics` and `/healthz` show) as an
//! output of `smarty run`: fed from the lossy channel, it skips what it falls behind on.

use std::sync::Arc;

use tokio::sync::broadcast;

use smarty_model::event::MeterEvent;
use smarty_model::live::LiveState;

/// Keeps `state` up to date from `events` until the channel closes; events it falls behind
/// on are counted (`smarty_metrics_events_lagged_total`) and skipped.
pub async fn follow(state: Arc<LiveState>, mut events: broadcast::Receiver<MeterEvent>) {
    loop {
        match events.recv().await {
            Ok(event) => state.update(&event),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                state.missed(n);
                tracing::warn!("metrics: fell behind, skipped {n} events");
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use smarty_model::event::MeterStatus;

    fn status(connected: bool) -> MeterEvent {
        MeterEvent::Status(Arc::new(MeterStatus {
            meter: Arc::from("home"),
            source: "test".into(),
            connected,
            last_telegram: Some(SystemTime::now()),
            stats: smarty_p1::Stats::default(),
            reconnects: 0,
            last_error: None,
        }))
    }

    #[tokio::test]
    async fn follow_takes_the_event_stream_and_stops_with_it() {
        let state = LiveState::new(["home"]);
        let (tx, rx) = broadcast::channel(2);
        // More than the channel holds before the follower runs: the oldest are skipped.
        for _ in 0..3 {
            tx.send(status(false)).unwrap();
        }
        let follower = tokio::spawn(follow(Arc::clone(&state), rx));
        tx.send(status(true)).unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while !state.status("home").is_some_and(|s| s.connected) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the event arrives");
        assert_eq!(state.missed_total(), 2);
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), follower)
            .await
            .expect("stops when the channel closes")
            .unwrap();
    }
}
