//! The router in process (`tower::ServiceExt::oneshot`) over a real store in a temporary
//! directory: every endpoint's answers, errors and bounds, the access token, the live stream.
//! A store is filled in milliseconds, with hand-made readings ([`fixture`]) or with days of a
//! household's telegrams stored as `smarty import` stores them ([`history`]).

/// Runs each named async test (a function of a [`Backend`]) on SQLite and on PostgreSQL:
/// `name::sqlite` and `name::postgres`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name(super::Backend::Sqlite).await;
                }
                #[tokio::test]
                async fn postgres() {
                    super::$name(super::Backend::Postgres).await;
                }
            }
        )*
    };
}

mod auth;
mod fleet;
mod guard;
mod history;
mod household;
mod meters;
mod numbers;
mod reports;
mod series;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_stream::StreamExt as _;
use tower::ServiceExt as _;

use super::state::{App, WebState};
use super::{RouterOptions, router};
use smarty_model::event::{MeterEvent, TelegramEvent};
use smarty_model::live::LiveState;
use smarty_model::secret::Secret;
use smarty_store::test_postgres::TestDatabase;
use smarty_store::{MbusRecord, Reading, Store, StoreConfig};
use smarty_tariff::TariffConfig;

/// A token with the characters base64 adds: `+`, `/` and `=`.
const TOKEN: &str = "q+8/ZmFrZS10b2tlbg==";

/// Which store a test runs on: each test runs on both, with the same expectations
/// ([`on_both`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The handlers' state over a store in a temporary directory or a PostgreSQL database of
/// its own, and the event channel of the live stream.
struct Fixture {
    app: App,
    events: broadcast::Sender<MeterEvent>,
    _dir: tempfile::TempDir,
    _db: Option<TestDatabase>,
}

impl Fixture {
    /// A store on `backend` made by `fill`, meter `home` known to the live state, the token
    /// `token`.
    fn new(backend: Backend, token: Option<&str>, fill: impl FnOnce(&Store)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (config, db) = match backend {
            Backend::Sqlite => (StoreConfig::at(dir.path().join("smarty.db")), None),
            Backend::Postgres => {
                let db = TestDatabase::create();
                (db.store_config(), Some(db))
            }
        };
        let store = Store::open(&config).unwrap();
        fill(&store);
        let (events, _) = broadcast::channel(16);
        let web = WebState {
            live: LiveState::new(["home"]),
            store: Some(store),
            tariff: Arc::new(TariffConfig::default()),
            events: events.downgrade(),
            token: token.map(|t| Arc::new(Secret::from(t.to_owned()))),
        };
        Fixture {
            app: App::new(web),
            events,
            _dir: dir,
            _db: db,
        }
    }
}

/// A store holding `count` readings of meter `home`, one every 10 s, ending now.
fn fixture(backend: Backend, count: i64, token: Option<&str>) -> Fixture {
    Fixture::new(backend, token, |store| {
        let mut writer = store.writer().unwrap();
        let now = super::range::now();
        let meter: Arc<str> = Arc::from("home");
        for i in 0..count {
            let mut reading = Reading::empty(Arc::clone(&meter), now - (count - i) * 10);
            reading.energy_import_wh = Some(1_000_000 + i * 3);
            reading.power_import_w = Some(1000 + i % 7);
            reading.voltage_l1_dv = Some(2301 + i % 5);
            writer.push(reading);
        }
        writer.push_mbus(MbusRecord {
            meter: Arc::clone(&meter),
            channel: 1,
            medium: smarty_p1::registry::Medium::Gas,
            unit: Some(smarty_model::unit::Unit::parse("m3")),
            ts: now - 3600,
            value: 14239.771,
        });
        writer.flush().unwrap();
    })
}

/// Three days of meter `home`'s telegrams, one a minute, ending now, with gas and water on
/// M-Bus (what the end-to-end tests made with `smarty simulate` and `smarty import`); the
/// last one live, as `smarty run` reading the meter would have it. Returns the fixture and
/// the last telegram.
fn history(backend: Backend, token: Option<&str>) -> (Fixture, Vec<u8>) {
    const DAYS: i64 = 3;
    let now = super::range::now();
    let start = now - DAYS * 86_400 + 60;
    let mut last = Vec::new();
    let f = Fixture::new(backend, token, |store| {
        last = household::fill(store, "home", start, DAYS * 1440, 60);
    });
    household::make_live(&f.app.web.live, "home", &last);
    (f, last)
}

fn options(metrics_public: bool) -> RouterOptions {
    RouterOptions {
        healthy_within: Duration::from_secs(60),
        metrics_public,
        fleet: None,
    }
}

fn request(uri: &str, token: Option<&str>) -> Request<Body> {
    let mut request = Request::builder().uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Body::empty()).unwrap()
}

/// `GET uri` (with the token in the `Authorization` header, if any): the status and body.
async fn get(
    app: &App,
    metrics_public: bool,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let response = router(app.clone(), options(metrics_public))
        .oneshot(request(uri, token))
        .await
        .unwrap();
    let status = response.status();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// `GET uri` that must answer 200 with JSON.
async fn json(app: &App, uri: &str) -> Value {
    let (status, body) = get(app, false, uri, None).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri}: {e}: {body}"))
}

/// `GET uri` that must fail with `status` and a JSON error message; the message.
async fn error(app: &App, uri: &str, status: StatusCode) -> String {
    let (got, body) = get(app, false, uri, None).await;
    assert_eq!(got, status, "{uri}: {body}");
    let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri}: {e}: {body}"));
    body["error"].as_str().unwrap().to_owned()
}

/// Opens the live stream at `uri` (with the token in the header, if any), sends `event` on
/// the fixture's event channel and returns the data of the first `telegram` event the stream
/// gives (waiting up to 10 s).
async fn first_telegram_event(
    f: &Fixture,
    uri: &str,
    token: Option<&str>,
    event: Arc<TelegramEvent>,
) -> Value {
    first_event(f, uri, token, vec![MeterEvent::Telegram(event)], "telegram").await
}

/// Opens the live stream at `uri` (with the token in the header, if any), sends `events` in
/// order on the fixture's event channel and returns the data of the first event of `kind`
/// (`telegram`, `status`, `guard`) the stream gives (waiting up to 10 s).
async fn first_event(
    f: &Fixture,
    uri: &str,
    token: Option<&str>,
    events: Vec<MeterEvent>,
    kind: &str,
) -> Value {
    let response = router(f.app.clone(), options(false))
        .oneshot(request(uri, token))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{uri}");
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream",
        "{uri}"
    );
    // The stream subscribed to the channel before it answered.
    for event in events {
        f.events.send(event).unwrap();
    }
    let mut body = response.into_body().into_data_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let marker = format!("event: {kind}\ndata: ");
    loop {
        if let Some((_, rest)) = text.split_once(&marker)
            && let Some((data, _)) = rest.split_once('\n')
        {
            return serde_json::from_str(data).unwrap_or_else(|e| panic!("{uri}: {e}: {data}"));
        }
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap_or_else(|_| panic!("{uri}: no {kind} event in 10 s: {text:?}"))
            .unwrap_or_else(|| panic!("{uri}: the stream ended: {text:?}"))
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

fn encoded(token: &str) -> String {
    form_urlencoded::byte_serialize(token.as_bytes()).collect()
}
