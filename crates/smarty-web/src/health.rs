//! `/healthz`: 200 with a JSON summary when every meter delivered a telegram within
//! `healthy_within_s` and no output reports a failure, else 503 with the reason per meter
//! (no telegram yet, or too old; the source's last error), per output (the store cannot
//! commit, the broker cannot be reached, …) and for the MQTT queue's file.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use smarty_model::live::LiveState;

/// Whether every meter delivered within `within` at `now`, and the `/healthz` body.
pub fn health(live: &LiveState, now: SystemTime, within: Duration) -> (bool, serde_json::Value) {
    let meters = live.snapshot();
    let mut healthy = !meters.is_empty();
    let mut report = serde_json::Map::new();
    for (name, entry) in &meters {
        let connected = entry.status.as_ref().map(|s| s.connected);
        let age = entry
            .last_telegram()
            .map(|t| now.duration_since(t).unwrap_or_default());
        let problem = match age {
            None => Some("no telegram yet".to_owned()),
            Some(age) if age > within => Some(format!(
                "last telegram {} s ago (limit {} s)",
                age.as_secs(),
                within.as_secs()
            )),
            Some(_) => None,
        };
        let mut meter = serde_json::Map::new();
        meter.insert("healthy".into(), problem.is_none().into());
        if let Some(connected) = connected {
            meter.insert("connected".into(), connected.into());
        }
        if let Some(age) = age {
            meter.insert("last_telegram_age_s".into(), age.as_secs().into());
        }
        if let Some(problem) = problem {
            healthy = false;
            let error = entry.status.as_ref().and_then(|s| s.last_error.as_deref());
            let reason = match (connected, error) {
                (Some(false), Some(e)) => format!("{problem}; disconnected: {e}"),
                (Some(false), None) => format!("{problem}; disconnected"),
                _ => problem,
            };
            meter.insert("reason".into(), reason.into());
        }
        report.insert(name.to_string(), meter.into());
    }
    // A queue whose file cannot be written loses its messages on a restart.
    let queue_error = live.mqtt_queue().not_persisting();
    healthy &= queue_error.is_none();
    let mut outputs = serde_json::Map::new();
    for (name, problem) in live.outputs() {
        let mut entry = serde_json::Map::new();
        entry.insert("healthy".into(), problem.is_none().into());
        if let Some(problem) = problem {
            healthy = false;
            entry.insert("reason".into(), problem.into());
        }
        outputs.insert(name.to_owned(), entry.into());
    }
    let mut body = json!({ "status": if healthy { "ok" } else { "unhealthy" } });
    if meters.is_empty() {
        body["reason"] = "no meters".into();
    }
    body["meters"] = report.into();
    if let Some(error) = queue_error {
        body["mqtt_queue"] = json!({ "persisting": false, "reason": error });
    }
    if !outputs.is_empty() {
        body["outputs"] = outputs.into();
    }
    (healthy, body)
}

#[derive(Clone)]
struct Health {
    live: Arc<LiveState>,
    healthy_within: Duration,
}

/// The `/healthz` route: a meter is healthy when its last telegram is at most
/// `healthy_within` old.
pub fn router(live: Arc<LiveState>, healthy_within: Duration) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(Health {
            live,
            healthy_within,
        })
}

async fn healthz(State(app): State<Health>) -> Response {
    let (healthy, body) = health(&app.live, SystemTime::now(), app.healthy_within);
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &body)
}

/// A health answer: `body` as JSON on one line, with its status (`/healthz` of `smarty run`
/// and of `fleet serve`).
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut body = body.to_string();
    body.push('\n');
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::{get, status, telegram};

    #[tokio::test]
    async fn healthz_reports_fresh_old_and_missing_telegrams() {
        let state = LiveState::new(["home", "garage"]);
        let app = router(Arc::clone(&state), Duration::from_secs(60));
        let now = SystemTime::now();

        // Nothing yet.
        let (code, head, body) = get(app.clone(), "/healthz", None).await;
        assert_eq!(code, 503);
        assert!(head.contains("application/json"));
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["status"], "unhealthy");
        assert_eq!(body["meters"]["home"]["reason"], "no telegram yet");

        // One fresh, one old and disconnected.
        state.update(&telegram("home", now));
        let old = now - Duration::from_secs(300);
        state.update(&telegram("garage", old));
        state.update(&status("garage", false, Some(old)));
        let (code, _, body) = get(app.clone(), "/healthz", None).await;
        assert_eq!(code, 503);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["meters"]["home"]["healthy"], true);
        assert_eq!(body["meters"]["garage"]["healthy"], false);
        let reason = body["meters"]["garage"]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("last telegram 300 s ago (limit 60 s)"),
            "{reason}"
        );
        assert!(reason.contains("connection refused"), "{reason}");

        // Both fresh.
        state.update(&telegram("garage", now));
        state.update(&status("garage", true, Some(now)));
        let (code, _, body) = get(app.clone(), "/healthz", None).await;
        assert_eq!(code, 200, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["meters"]["garage"]["connected"], true);

        // An output that fails (the store cannot commit) shows, with its reason, until it
        // works again.
        let store = state.output("store");
        store.failing("cannot commit (database or disk is full)");
        let (code, _, body) = get(app.clone(), "/healthz", None).await;
        assert_eq!(code, 503, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["outputs"]["store"]["healthy"], false);
        assert!(
            body["outputs"]["store"]["reason"]
                .as_str()
                .unwrap()
                .contains("disk is full")
        );
        store.ok();
        assert_eq!(get(app.clone(), "/healthz", None).await.0, 200);

        // Unknown paths.
        assert_eq!(get(app.clone(), "/nope", None).await.0, 404);
    }

    #[test]
    fn no_meters_is_unhealthy() {
        let (healthy, body) = health(
            &LiveState::new(Vec::<String>::new()),
            SystemTime::now(),
            Duration::from_secs(60),
        );
        assert!(!healthy);
        assert_eq!(body["reason"], "no meters");
    }
}
