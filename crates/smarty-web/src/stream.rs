//! `GET /api/stream`: telegrams, status changes and the live guard as Server-Sent Events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;

use super::extract::ApiQuery;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use serde::Deserialize;
use tokio_stream::Stream;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::BroadcastStream;

use super::live::{guard_event_json, status_json, telegram_json};
use super::number::round_answer;
use super::state::App;
use smarty_model::event::MeterEvent;

/// `stream` query parameters.
#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    /// Only this meter's events.
    meter: Option<String>,
}

/// How often an idle stream sends a comment, so proxies and browsers keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `event: telegram` per accepted telegram, `event: status` per status change and
/// `event: guard` per guard update (after each telegram, when the guard is on), for every
/// meter or the one in `?meter=`. A client that falls behind skips events (it never holds up
/// the meters).
pub async fn stream(
    State(app): State<App>,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let meter = q.meter;
    let live = app.web.live.clone();
    // After the service stopped there is nothing to follow: the stream ends at once.
    let receiver = match app.web.events.upgrade() {
        Some(sender) => sender.subscribe(),
        None => tokio::sync::broadcast::channel(1).1,
    };
    let events = BroadcastStream::new(receiver).filter_map(move |event| {
        let event = event.ok()?;
        let (name, kind, mut data) = match &event {
            MeterEvent::Telegram(t) => (t.meter.clone(), "telegram", telegram_json(t, false)),
            MeterEvent::Status(s) => {
                let latest = live.latest(&s.meter);
                (
                    s.meter.clone(),
                    "status",
                    status_json(&s.meter, Some(s), latest.as_deref()),
                )
            }
            MeterEvent::Guard(g) => (g.meter.clone(), "guard", guard_event_json(g)),
            MeterEvent::RawFrame { .. } => return None,
        };
        if meter.as_deref().is_some_and(|m| m != &*name) {
            return None;
        }
        round_answer(&mut data);
        Some(Ok(SseEvent::default().event(kind).data(data.to_string())))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
}
