//! The router in process (`tower::ServiceExt::oneshot`): access control, bounded answers
//! and the store-query turns, over a real store in a temporary directory.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tokio::sync::broadcast;
use tower::ServiceExt as _;

use super::state::{App, QUERY_PERMITS, WebState};
use super::{RouterOptions, router};
use smarty_model::event::MeterEvent;
use smarty_model::live::LiveState;
use smarty_model::secret::Secret;
use smarty_store::{MbusRecord, Reading, Store, StoreConfig};
use smarty_tariff::TariffConfig;

/// A token with the characters base64 adds: `+`, `/` and `=`.
const TOKEN: &str = "q+8/ZmFrZS10b2tlbg==";

struct Fixture {
    app: App,
    _events: broadcast::Sender<MeterEvent>,
    _dir: tempfile::TempDir,
}

/// A store holding `count` readings of meter `home`, one every 10 s, ending now.
fn fixture(count: i64, token: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::at(dir.path().join("smarty.db"))).unwrap();
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
        _events: events,
        _dir: dir,
    }
}

fn options(metrics_public: bool) -> RouterOptions {
    RouterOptions {
        healthy_within: Duration::from_secs(60),
        metrics_public,
    }
}

async fn get(
    app: &App,
    metrics_public: bool,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let mut request = Request::builder().uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = router(app.clone(), options(metrics_public))
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn encoded(token: &str) -> String {
    form_urlencoded::byte_serialize(token.as_bytes()).collect()
}

#[tokio::test]
async fn a_base64_token_works_in_the_header_and_percent_encoded_in_the_query() {
    let f = fixture(10, Some(TOKEN));
    assert_eq!(
        get(&f.app, false, "/api/meters", Some(TOKEN)).await.0,
        StatusCode::OK
    );
    // As the dashboard's EventSource sends it (URLSearchParams): `+` `/` `=` percent-encoded.
    let query = encoded(TOKEN);
    assert!(query.contains("%2B") && query.contains("%2F") && query.contains("%3D"));
    let (status, body) = get(&f.app, false, &format!("/api/meters?token={query}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        get(
            &f.app,
            false,
            &format!("/api/meters/home/summary?x=1&token={query}"),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    // Wrong or missing tokens are refused, without showing the right one.
    for uri in [
        "/api/meters".to_owned(),
        "/api/meters?token=q%2B8%2FZmFrZS10b2tlbg%3D".to_owned(),
        format!("/api/meters?token={TOKEN}"),
    ] {
        let (status, body) = get(&f.app, false, &uri, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(!body.contains("ZmFrZS10b2tlbg"), "{body}");
    }
}

#[tokio::test]
async fn metrics_need_the_token_unless_made_public() {
    let f = fixture(10, Some(TOKEN));
    let (status, body) = get(&f.app, false, "/metrics", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(!body.contains("smarty_"), "{body}");
    assert_eq!(
        get(&f.app, false, "/metrics", Some("wrong-token-000000"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = get(&f.app, false, "/metrics", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("smarty_metrics_events_lagged_total"),
        "{body}"
    );
    let query = encoded(TOKEN);
    assert_eq!(
        get(&f.app, false, &format!("/metrics?token={query}"), None)
            .await
            .0,
        StatusCode::OK
    );
    // The explicit opt-out for scrapers without a token.
    assert_eq!(get(&f.app, true, "/metrics", None).await.0, StatusCode::OK);
    // The health check stays open: it tells whether meters deliver, not what they measure.
    assert_ne!(
        get(&f.app, false, "/healthz", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Without a token (loopback), everything is open.
    let open = fixture(1, None);
    assert_eq!(
        get(&open.app, false, "/metrics", None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn series_answers_hold_a_bounded_number_of_points() {
    let mut f = fixture(600, None);
    f.app.max_points = 100;
    let from = super::range::now() - 6 * 3600;
    // An explicit resolution above the bound: a clear error, before anything is read.
    let (status, body) = get(
        &f.app,
        false,
        &format!("/api/meters/home/series?field=power_import_kw&resolution=raw&from={from}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    let message = error["error"].as_str().unwrap();
    assert!(
        message.contains("100") && message.contains("coarser"),
        "{message}"
    );
    // `auto` would pick raw for 6 hours: it takes the next resolution that fits instead.
    let (status, body) = get(
        &f.app,
        false,
        &format!("/api/meters/home/series?field=power_import_kw&from={from}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let series: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(series["resolution"], "15m", "{series}");
    let points = series["t"].as_array().unwrap().len();
    assert!((6..=100).contains(&points), "{points} points");
    // Within the bound, raw is served.
    f.app.max_points = 1000;
    let (status, body) = get(
        &f.app,
        false,
        &format!("/api/meters/home/series?field=voltage_l1_v&resolution=raw&from={from}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let series: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(series["t"].as_array().unwrap().len(), 600);
    assert_eq!(series["meter"], "home");
    assert_eq!(series["value"][0], 230.1);
}

#[tokio::test]
async fn a_series_answer_keeps_its_store_turn_until_it_is_sent() {
    let f = fixture(600, None);
    let from = super::range::now() - 6 * 3600;
    let response = router(f.app.clone(), options(false))
        .oneshot(
            Request::builder()
                .uri(format!(
                    "/api/meters/home/series?field=power_import_kw&resolution=raw&from={from}"
                ))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(f.app.queries.available_permits(), QUERY_PERMITS - 1);
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    assert!(body.ends_with(b"]}"));
    assert_eq!(f.app.queries.available_permits(), QUERY_PERMITS);
    // A client that goes away gives the turn back too.
    let response = router(f.app.clone(), options(false))
        .oneshot(
            Request::builder()
                .uri(format!(
                    "/api/meters/home/series?field=power_import_kw&resolution=raw&from={from}"
                ))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(f.app.queries.available_permits(), QUERY_PERMITS - 1);
    drop(response);
    assert_eq!(f.app.queries.available_permits(), QUERY_PERMITS);
}

#[tokio::test]
async fn report_ranges_are_bounded() {
    let f = fixture(10, None);
    let (status, body) = get(
        &f.app,
        false,
        "/api/meters/home/totals?from=1970-01-02",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("at most"), "{body}");
    let (status, _) = get(
        &f.app,
        false,
        "/api/meters/home/tariff?period=month&from=2020-01-01",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// The field of `meter`'s `fields` named `name`.
fn field<'a>(meters: &'a Value, name: &str) -> &'a Value {
    meters["meters"][0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {name} in {meters}"))
}

#[tokio::test]
async fn meters_describe_their_values_for_the_dashboard() {
    let f = fixture(10, None);
    // Before any telegram: the stored series, with what they are.
    let (status, body) = get(&f.app, false, "/api/meters", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let meters: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(meters["time_zone"], "Europe/Luxembourg");
    let gas = field(&meters, "mbus1_gas_m3");
    assert_eq!(gas["label"], "Gas");
    assert_eq!(gas["unit"], "m³");
    assert_eq!(gas["kind"], "mbus_reading");
    assert_eq!(
        gas["mbus"],
        serde_json::json!({"channel": 1, "medium": "gas"})
    );
    assert_eq!(gas["series"], true);
    assert_eq!(gas["cumulative"], true);
    let power = field(&meters, "power_import_l2_kw");
    assert_eq!(power["label"], "Power import L2");
    assert_eq!(power["unit"], "kW");
    assert_eq!(power["phase"], "L2");
    assert_eq!(power["direction"], "import");
    assert_eq!(power["obis"], "1-0:41.7.0");

    // A telegram adds what the meter sends beyond the store, with its codes as sent.
    let telegram = b"/Lux5\\253663629_D\r\n\r\n1-3:0.2.8(42)\r\n0-0:1.0.0(260403175431S)\r\n\
1-0:1.8.0(000006.695*kWh)\r\n1-0:14.7.0(50.01*Hz)\r\n0-2:24.1.0(007)\r\n\
0-2:24.2.1(260403174542S)(00012.345*m3)\r\n!";
    let mut decoder = smarty_p1::Decoder::new(smarty_p1::DecoderConfig::default());
    decoder.push(telegram);
    let decoded = decoder.finish().unwrap().unwrap();
    let event = smarty_model::event::TelegramEvent::new(
        &Arc::from("home"),
        &decoded,
        std::time::SystemTime::now(),
    );
    f.app
        .web
        .live
        .update(&MeterEvent::Telegram(Arc::new(event)));
    let (_, body) = get(&f.app, false, "/api/meters", None).await;
    let meters: Value = serde_json::from_str(&body).unwrap();
    let frequency = field(&meters, "frequency_hz");
    assert_eq!(frequency["unit"], "Hz");
    assert_eq!(frequency["series"], false);
    assert_eq!(frequency["obis"], "1-0:14.7.0");
    let water = field(&meters, "mbus2_water_m3");
    assert_eq!(water["label"], "Water");
    assert_eq!(water["mbus"]["medium"], "water");
    assert_eq!(water["series"], false, "not stored yet");
    assert_eq!(field(&meters, "energy_import_kwh")["series"], true);

    // openapi.json describes every key of the answer, and requires every key of a field.
    let openapi: Value = serde_json::from_str(super::OPENAPI).unwrap();
    let answer = &openapi["paths"]["/api/meters"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"]["properties"];
    let schemas = &openapi["components"]["schemas"];
    for key in meters.as_object().unwrap().keys() {
        assert!(answer[key].is_object(), "{key} is not in openapi.json");
    }
    for key in meters["meters"][0].as_object().unwrap().keys() {
        assert!(
            schemas["Meter"]["properties"][key].is_object(),
            "Meter.{key} is not in openapi.json"
        );
    }
    let mut keys: Vec<&str> = water
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut required: Vec<&str> = schemas["Field"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    keys.sort_unstable();
    required.sort_unstable();
    assert_eq!(keys, required, "Field in openapi.json");
}
