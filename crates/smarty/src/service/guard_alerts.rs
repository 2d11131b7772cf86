//! Delivers the guard's alerts beyond MQTT (`[guard] notify_url`, `[guard] command`): an
//! output of the service fed with the meters' [`MeterEvent::Guard`] events.
//!
//! Each alert is delivered on its own task, so that a slow receiver never holds the meters
//! back: a POST is tried three times (10 s each, 2 and 5 s apart), a command gets 30 s. An
//! alert is worth nothing once its quarter hour is over: retries stop then. A failure is
//! logged and shown on `/healthz` (output `alerts`) until a delivery succeeds.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value as Json;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::guard::GuardSection;
use smarty_model::event::{GuardEvent, MeterEvent};
use smarty_model::guard::Alert;
use smarty_model::live::OutputHealth;
use smarty_model::secret::Secret;
use smarty_model::time::unix;
use smarty_mqtt::topics::{guard_alert_json, guard_json};

/// How long one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// The pauses between the attempts of a POST.
const POST_RETRIES: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(5)];
/// How long a command may run before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Where alerts go.
#[derive(Debug, Clone)]
pub struct Targets {
    /// POSTed here (ntfy-compatible), with this bearer token.
    url: Option<(reqwest::Client, String, Option<Secret>)>,
    /// Run with the alert in its environment and on its standard input.
    command: Option<Vec<String>>,
}

impl Targets {
    /// The targets of `settings`, the token read already (`notify_token`, or the file's).
    ///
    /// # Errors
    /// An HTTP client that cannot be built.
    pub fn new(settings: &GuardSection, token: Option<Secret>) -> Result<Targets> {
        let url = match &settings.notify_url {
            Some(url) => Some((http_client()?, url.clone(), token)),
            None => None,
        };
        Ok(Targets {
            url,
            command: settings.command.clone(),
        })
    }
}

/// An HTTP client with rustls (ring) trusting the system's authorities; without any, plain
/// `http://` still works and `https://` fails with the handshake's error.
fn http_client() -> Result<reqwest::Client> {
    let tls = match smarty_mqtt::tls::client_config(None) {
        Ok(config) => (*config).clone(),
        Err(e) => {
            tracing::warn!("guard alerts: {e}; https:// notify URLs will fail");
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(POST_TIMEOUT)
        .user_agent(concat!("smarty/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("guard alerts: cannot build the HTTP client")
}

/// Delivers the alerts of the guard events on `events` to `targets` until the channel
/// closes, then waits for the deliveries under way (each bounded by its timeout).
pub async fn run(
    targets: Targets,
    mut events: mpsc::Receiver<MeterEvent>,
    health: OutputHealth,
) -> Result<()> {
    let mut deliveries = JoinSet::new();
    while let Some(event) = events.recv().await {
        while deliveries.try_join_next().is_some() {}
        let MeterEvent::Guard(guard) = event else {
            continue;
        };
        for alert in &guard.alerts {
            let payload = alert_json(&guard, alert);
            tracing::info!(meter = %guard.meter, "guard alert: {}", alert.message());
            if let Some((client, url, token)) = &targets.url {
                let (client, url, token) = (client.clone(), url.clone(), token.clone());
                let (guard, alert, health) = (Arc::clone(&guard), *alert, health.clone());
                deliveries.spawn(async move {
                    match post(&client, &url, token.as_ref(), &guard, &alert).await {
                        Ok(()) => health.ok(),
                        Err(e) => {
                            tracing::warn!(meter = %guard.meter, "guard alert: {e:#}");
                            health.failing(format!("{e:#}"));
                        }
                    }
                });
            }
            if let Some(command) = &targets.command {
                let (command, health) = (command.clone(), health.clone());
                let (meter, payload) = (Arc::clone(&guard.meter), payload.clone());
                deliveries.spawn(async move {
                    match run_command(&command, &payload).await {
                        Ok(()) => health.ok(),
                        Err(e) => {
                            tracing::warn!(meter = %meter, "guard alert: {e:#}");
                            health.failing(format!("{e:#}"));
                        }
                    }
                });
            }
        }
    }
    while deliveries.join_next().await.is_some() {}
    Ok(())
}

/// The alert as JSON: what the command reads on its standard input. The MQTT output's alert
/// message ([`smarty_mqtt::topics::guard_alert_json`]) with the quarter's end and the guard's
/// figures ([`smarty_mqtt::topics::guard_json`]) as `state`.
pub fn alert_json(event: &GuardEvent, alert: &Alert) -> Json {
    let state = &event.state;
    let mut out = guard_alert_json(&event.meter, state, alert);
    if let Some(object) = out.as_object_mut() {
        let figures = guard_json(state);
        object.insert("quarter_end".into(), figures["quarter_end"].clone());
        object.insert("state".into(), figures);
    }
    out
}

/// POSTs `alert` to `url` the way ntfy takes a message: the text as the body, `Title`,
/// `Tags` and `Priority` as headers; retried while its quarter hour lasts.
async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&Secret>,
    event: &GuardEvent,
    alert: &Alert,
) -> Result<()> {
    let (tags, priority) = match alert {
        Alert::WillExceed { .. } => ("warning,zap", "high"),
        Alert::HeadroomLow { .. } => ("warning", "default"),
        _ => ("chart_with_upwards_trend", "default"),
    };
    let mut attempt = 0;
    loop {
        let mut request = client
            .post(url)
            .header("Title", alert.title(&event.meter))
            .header("Tags", tags)
            .header("Priority", priority)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(alert.message());
        if let Some(token) = token {
            request = request.bearer_auth(token.expose());
        }
        // The URL may hold a password or a topic that is a secret: never in a message.
        let result = match request.send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => anyhow::anyhow!("notify_url answered {}", response.status()),
            Err(e) => anyhow::anyhow!(
                "notify_url: {}",
                if e.is_timeout() {
                    "no answer in time".to_owned()
                } else if e.is_connect() {
                    "cannot connect".to_owned()
                } else {
                    "the request failed".to_owned()
                }
            ),
        };
        let Some(pause) = POST_RETRIES.get(attempt) else {
            return Err(result);
        };
        if unix(std::time::SystemTime::now()) + pause.as_secs() as i64 >= event.state.quarter_end {
            return Err(result.context("the quarter hour is over: not retried"));
        }
        attempt += 1;
        tokio::time::sleep(*pause).await;
    }
}

/// Runs `command` with the alert `payload` in its environment and on its standard input.
async fn run_command(command: &[String], payload: &Json) -> Result<()> {
    let (program, args) = command.split_first().context("no program to run")?;
    let text = |key: &str| match &payload[key] {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    };
    let state = &payload["state"];
    let figure = |key: &str| {
        state[key]
            .as_f64()
            .map(|v| format!("{v:.3}"))
            .unwrap_or_default()
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("SMARTY_METER", text("meter"))
        .env("SMARTY_ALERT_KIND", text("kind"))
        .env("SMARTY_ALERT_TITLE", text("title"))
        .env("SMARTY_ALERT_MESSAGE", text("message"))
        .env("SMARTY_QUARTER_START", text("quarter_start"))
        .env("SMARTY_QUARTER_END", text("quarter_end"))
        .env("SMARTY_HEADROOM_KW", figure("headroom_kw"))
        .env(
            "SMARTY_PROJECTED_AVERAGE_KW",
            figure("projected_average_kw"),
        )
        .env("SMARTY_REFERENCE_POWER_KW", figure("reference_power_kw"))
        .env(
            "SMARTY_VERDICT",
            state["verdict"].as_str().unwrap_or_default(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("command {program}: cannot start"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A program that does not read its input closes the pipe: not an error.
        let _ = stdin.write_all(format!("{payload}\n").as_bytes()).await;
    }
    let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| anyhow::anyhow!("command {program}: still running after 30 s, killed"))?
        .with_context(|| format!("command {program}"))?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    let said = said.lines().next().unwrap_or_default().trim();
    anyhow::bail!(
        "command {program}: {}{}",
        output.status,
        if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        }
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::http::HeaderMap;
    use smarty_model::guard::{Guard, GuardConfig, Reading};

    use super::*;

    /// A guard event of meter `home` with the alerts of a household crossing 3 kW early.
    fn event() -> GuardEvent {
        let mut guard = Guard::new(
            GuardConfig::new(3.0).with_headroom_alert_kw(Some(1.0)),
            jiff::tz::TimeZone::UTC,
        );
        // The quarter ends in the future, so that retries are worth it.
        let now = unix(std::time::SystemTime::now());
        let start = smarty_model::period::interval_start(now + 60);
        guard.update(&Reading::new(start, 1_000_000, Some(0.5)));
        let update = guard.update(&Reading::new(start + 1, 1_000_010, Some(9.0)));
        assert_eq!(update.alerts.len(), 1, "{:?}", update.alerts);
        GuardEvent::new(&Arc::from("home"), update)
    }

    type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

    /// A receiver of POSTs on a free loopback port, answering `status` to the first
    /// `failures` requests and 200 afterwards.
    async fn receiver(failures: usize) -> (String, Received) {
        let received: Received = Arc::default();
        let seen = Arc::clone(&received);
        let app = axum::Router::new().route(
            "/alerts",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let seen = Arc::clone(&seen);
                async move {
                    let mut seen = seen.lock().unwrap();
                    seen.push((headers, body));
                    if seen.len() <= failures {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::OK
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/alerts"), received)
    }

    /// Runs the output on `event` with `settings` until it delivered; its health after.
    async fn deliver(settings: &GuardSection, token: Option<Secret>) -> OutputHealth {
        let targets = Targets::new(settings, token).unwrap();
        let (tx, rx) = mpsc::channel(4);
        let health = OutputHealth::default();
        let output = tokio::spawn(run(targets, rx, health.clone()));
        tx.send(MeterEvent::Guard(Arc::new(event()))).await.unwrap();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(60), output)
            .await
            .expect("delivered in time")
            .unwrap()
            .unwrap();
        health
    }

    #[tokio::test]
    async fn an_alert_is_posted_like_ntfy_takes_it_with_the_token_and_retried() {
        let (url, received) = receiver(1).await;
        let settings = GuardSection {
            notify_url: Some(url),
            ..GuardSection::default()
        };
        let health = deliver(&settings, Some(Secret::from("tk_secret".to_owned()))).await;
        assert_eq!(health.problem(), None);
        let received = received.lock().unwrap();
        // Refused once (503), delivered on the second attempt.
        assert_eq!(received.len(), 2);
        let (headers, body) = &received[1];
        assert_eq!(
            headers["title"],
            "Smarty home: reference power will be exceeded"
        );
        assert_eq!(headers["priority"], "high");
        assert_eq!(headers["tags"], "warning,zap");
        assert_eq!(headers["authorization"], "Bearer tk_secret");
        assert!(
            body.starts_with("At the present power this quarter hour averages"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_receiver_that_is_away_is_reported_without_its_url() {
        // A port nobody listens on.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let settings = GuardSection {
            notify_url: Some(format!("http://127.0.0.1:{port}/secret-topic")),
            ..GuardSection::default()
        };
        let health = deliver(&settings, None).await;
        let problem = health.problem().expect("reported");
        assert!(problem.contains("cannot connect"), "{problem}");
        assert!(!problem.contains("secret-topic"), "{problem}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_command_gets_the_alert_in_its_environment_and_on_its_input() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("alert");
        let script = "cat > \"$1\"; printf '%s %s %s\\n' \"$SMARTY_METER\" \"$SMARTY_ALERT_KIND\" \
                      \"$SMARTY_REFERENCE_POWER_KW\" >> \"$1\"";
        let settings = GuardSection {
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                script.into(),
                "sh".into(),
                out.display().to_string(),
            ]),
            ..GuardSection::default()
        };
        let health = deliver(&settings, None).await;
        assert_eq!(health.problem(), None);
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        let json: Json = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(json["meter"], "home");
        assert_eq!(json["kind"], "will_exceed");
        assert_eq!(json["reference_power_kw"], 3.0);
        assert_eq!(json["state"]["verdict"], "will_exceed");
        assert!(json["quarter_start"].as_str().unwrap().ends_with('Z'));
        assert_eq!(lines.next(), Some("home will_exceed 3.000"));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_failing_command_is_reported_with_what_it_said() {
        let settings = GuardSection {
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                "echo 'charger unreachable' >&2; exit 3".into(),
            ]),
            ..GuardSection::default()
        };
        let health = deliver(&settings, None).await;
        let problem = health.problem().expect("reported");
        assert!(problem.contains("charger unreachable"), "{problem}");
        assert!(problem.contains('3'), "{problem}");
    }
}
