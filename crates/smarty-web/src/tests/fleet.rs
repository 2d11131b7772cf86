//! `smarty fleet serve`'s routes over a real PostgreSQL database holding several meters'
//! readings (written by the store's writer, as the workers write them), keys (wrapped, as
//! `fleet keys import` stores them) and rejection counts: the meter list pages and searches
//! correctly, with states and rejections; the community sums equal sums over the stored
//! readings; the meters' dashboards work without live telegrams; `/healthz` asks the
//! database; no key ever shows.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::to_bytes;
use axum::http::StatusCode;
use serde_json::Value;
use tokio::sync::broadcast;
use tower::ServiceExt as _;

use super::{TOKEN, options, request};
use crate::state::{App, WebState};
use crate::{FleetOptions, router};
use smarty_model::live::LiveState;
use smarty_model::period::interval_start;
use smarty_model::secret::Secret;
use smarty_model::time::{day_start_after, meter_zone};
use smarty_store::fleet::WrappedKey;
use smarty_store::test_postgres::TestDatabase;
use smarty_store::{Reading, Store};
use smarty_tariff::TariffConfig;

/// Meters with readings: `m-00` … `m-11`.
const METERS: usize = 12;
/// Readings of a meter that is up to date: two hours, one a minute, ending a minute ago.
const READINGS: i64 = 120;
/// A stale meter's readings: its first 40 minutes only.
const STALE_READINGS: i64 = 40;
/// The wrapped keys' bytes: they must never show.
const WRAPPED: [u8; 8] = [0xAB, 0xCD, 0xEF, 0x01, 0x23, 0x45, 0x67, 0x89];

fn name(i: usize) -> String {
    format!("m-{i:02}")
}

/// Stale meters: m-03 and m-07. Rejecting: m-05 (stale too, but rejections after its last
/// reading). Exporting: every third, every other half hour.
fn stale(i: usize) -> bool {
    matches!(i, 3 | 5 | 7)
}

/// What meter `i` stored: (time, import register Wh, export register Wh).
fn readings(i: usize, now: i64) -> Vec<(i64, i64, i64)> {
    let start = now - READINGS * 60;
    let count = if stale(i) { STALE_READINGS } else { READINGS };
    let (mut import, mut export) = (1_000_000 + i as i64 * 1000, 500_000);
    (0..count)
        .map(|k| {
            import += (i as i64 + 1) * 5 + (k % 4) * 3;
            // Solar in alternate half-hours: some quarters export more than they import.
            if i.is_multiple_of(3) && (k / 30) % 2 == 0 {
                export += 300 + i as i64 * 10 + k % 5;
            }
            (start + k * 60, import, export)
        })
        .collect()
}

/// Per 15-minute period of `readings`: the register increase since the last reading before
/// it (the first reading of all: since itself), import and export.
fn per_quarter(readings: &[(i64, i64, i64)]) -> BTreeMap<i64, (i64, i64)> {
    let mut out: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut previous = readings.first().map(|&(_, i, e)| (i, e));
    for &(t, i, e) in readings {
        let (pi, pe) = previous.unwrap_or((i, e));
        let entry = out.entry(interval_start(t)).or_default();
        entry.0 += i - pi;
        entry.1 += e - pe;
        previous = Some((i, e));
    }
    out
}

struct Fleet {
    app: App,
    db: TestDatabase,
    now: i64,
    _events: broadcast::Sender<smarty_model::event::MeterEvent>,
}

fn fleet(token: Option<&str>) -> Fleet {
    let db = TestDatabase::create();
    let store = Store::open(&db.store_config()).unwrap();
    let now = crate::range::now();
    let mut writer = store.writer().unwrap();
    for i in 0..METERS {
        let meter: Arc<str> = Arc::from(name(i).as_str());
        for (t, import, export) in readings(i, now) {
            let mut r = Reading::empty(Arc::clone(&meter), t);
            r.energy_import_wh = Some(import);
            r.energy_export_wh = Some(export);
            r.power_import_w = Some(100 * (i as i64 + 1));
            r.voltage_l1_dv = Some(2300 + i as i64);
            writer.push(r);
        }
    }
    writer.flush().unwrap();
    // Keys of m-00 … m-03 and of a meter that never sent anything.
    let keys: Vec<WrappedKey> = (0..4)
        .map(name)
        .chain(["never-seen".to_owned()])
        .enumerate()
        .map(|(n, meter)| {
            let title = [0x53, 0x41, 0x47, 0x10, 0, 0, 0, n as u8];
            WrappedKey::new(
                title,
                meter,
                WRAPPED.to_vec(),
                Some(WRAPPED.to_vec()),
                "DBDF18".into(),
            )
        })
        .collect();
    store.put_fleet_keys(&keys).unwrap();
    // The workers' rejection counts: m-05's frames refused now, m-01's once long ago, and
    // frames of a system title that is not in the fleet.
    store
        .add_fleet_rejections(&[
            ("m-05".into(), "tag".into(), 7),
            ("m-05".into(), "crc".into(), 2),
            ("m-01".into(), "crc".into(), 1),
            ("5341470000FFFFFF".into(), "unknown_meter".into(), 4),
        ])
        .unwrap();
    db.query(
        "UPDATE fleet_rejection SET last_at = now() - interval '90 minutes'
         WHERE meter = 'm-01' OR (meter = 'm-05' AND reason = 'crc')",
    );
    let (events, _) = broadcast::channel(1);
    let web = WebState {
        live: LiveState::new(Vec::<String>::new()),
        store: Some(store),
        tariff: Arc::new(TariffConfig::default()),
        events: events.downgrade(),
        token: token.map(|t| Arc::new(Secret::from(t.to_owned()))),
    };
    Fleet {
        app: App::new(web),
        db,
        now,
        _events: events,
    }
}

async fn get(f: &Fleet, uri: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut options = options(false);
    options.fleet = Some(FleetOptions::default());
    let response = router(f.app.clone(), options)
        .oneshot(request(uri, token))
        .await
        .unwrap();
    let status = response.status();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    // No key, wrapped or not, in any answer.
    assert!(
        !body.to_ascii_lowercase().contains("abcdef0123456789"),
        "{uri}: a wrapped key shows: {body}"
    );
    assert!(!body.contains("wrapped"), "{uri}: {body}");
    (status, body)
}

async fn json(f: &Fleet, uri: &str) -> Value {
    let (status, body) = get(f, uri, None).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri}: {e}: {body}"))
}

fn names(page: &Value) -> Vec<&str> {
    page["meters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_meter_list_pages_searches_and_judges() {
    let f = fleet(None);
    // Every meter, by name: the stored ones and the one with a key only.
    let page = json(&f, "/api/fleet/meters?limit=5").await;
    assert_eq!(page["total"], METERS + 1, "{page}");
    assert_eq!(names(&page), ["m-00", "m-01", "m-02", "m-03", "m-04"]);
    let next = json(&f, "/api/fleet/meters?limit=5&offset=10").await;
    assert_eq!(names(&next), ["m-10", "m-11", "never-seen"]);
    let beyond = json(&f, "/api/fleet/meters?limit=5&offset=50").await;
    assert_eq!(beyond["total"], METERS + 1);
    assert_eq!(names(&beyond), Vec::<&str>::new());

    // A meter's figures.
    let first = &page["meters"][0];
    assert_eq!(first["system_title"], "5341471000000000");
    assert_eq!(first["state"], "ok");
    assert_eq!(first["last_seen"], f.now - 60);
    let today = day_start_after(f.now, 0, &meter_zone());
    let expected: i64 = per_quarter(&readings(0, f.now))
        .iter()
        .filter(|(start, _)| **start >= today)
        .map(|(_, (import, _))| import)
        .sum();
    assert_eq!(
        first["today_import_kwh"].as_f64().unwrap(),
        expected as f64 / 1000.0,
        "{first}"
    );
    assert_eq!(page["meters"][4]["system_title"], Value::Null);

    // Rejections, and the states: m-01's old rejection does not make it rejecting.
    let m01 = &page["meters"][1];
    assert_eq!(m01["state"], "ok");
    assert_eq!(m01["rejected"], 1);
    assert_eq!(m01["rejections"][0]["reason"], "crc");
    let rejecting = json(&f, "/api/fleet/meters?state=rejecting").await;
    assert_eq!(names(&rejecting), ["m-05"]);
    assert_eq!(rejecting["total"], 1);
    let m05 = &rejecting["meters"][0];
    assert_eq!(m05["rejected"], 9, "{m05}");
    let reasons: Vec<&str> = m05["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["crc", "tag"]);
    let stale = json(&f, "/api/fleet/meters?state=stale").await;
    assert_eq!(names(&stale), ["m-03", "m-07", "never-seen"]);
    assert_eq!(stale["meters"][2]["last_seen"], Value::Null);
    let stale_page = json(&f, "/api/fleet/meters?state=stale&limit=1&offset=1").await;
    assert_eq!(names(&stale_page), ["m-07"]);
    assert_eq!(stale_page["total"], 3);
    let ok = json(&f, "/api/fleet/meters?state=ok&limit=1000").await;
    assert_eq!(ok["total"], METERS - 3);

    // The summary counts the same.
    let summary = json(&f, "/api/fleet").await;
    assert_eq!(summary["meters"], METERS + 1);
    assert_eq!(summary["ok"], METERS - 3);
    assert_eq!(summary["stale"], 3);
    assert_eq!(summary["rejecting"], 1);
    assert_eq!(summary["unknown_senders"]["total"], 1);
    let sender = &summary["unknown_senders"]["recent"][0];
    assert_eq!(sender["sender"], "5341470000FFFFFF");
    assert_eq!(sender["reason"], "unknown_meter");
    assert_eq!(sender["count"], 4);

    // Search by name or system title, in any case; % and _ are plain characters.
    assert_eq!(
        names(&json(&f, "/api/fleet/meters?search=M-1").await),
        ["m-10", "m-11"]
    );
    assert_eq!(
        names(&json(&f, "/api/fleet/meters?search=471000000004").await),
        ["never-seen"]
    );
    assert_eq!(
        names(&json(&f, "/api/fleet/meters?search=53414710").await).len(),
        5
    );
    assert_eq!(json(&f, "/api/fleet/meters?search=m_0").await["total"], 0);
    assert_eq!(json(&f, "/api/fleet/meters?search=%25").await["total"], 0);

    // Bad parameters.
    for uri in [
        "/api/fleet/meters?limit=0",
        "/api/fleet/meters?limit=1001",
        "/api/fleet/meters?state=fine",
        "/api/fleet/meters?offset=-1",
    ] {
        let (status, body) = get(&f, uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
    }
}

#[tokio::test]
async fn the_community_sums_equal_the_sums_over_the_readings() {
    let f = fleet(None);
    let from = interval_start(f.now - READINGS * 60);
    let to = f.now + 900;
    // Expected, from the readings written.
    let mut expected: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
    let mut per_meter: Vec<(String, i64, i64)> = Vec::new();
    for i in 0..METERS {
        let quarters = per_quarter(&readings(i, f.now));
        for (start, (import, export)) in &quarters {
            let e = expected.entry(*start).or_default();
            e.0 += import;
            e.1 += export;
            e.2 += 1;
        }
        per_meter.push((
            name(i),
            quarters.values().map(|q| q.0).sum(),
            quarters.values().map(|q| q.1).sum(),
        ));
    }
    let c = json(
        &f,
        &format!("/api/fleet/community?from={from}&to={to}&top=3"),
    )
    .await;
    assert_eq!(c["members"], METERS);
    assert_eq!(c["reporting"], METERS);
    assert_eq!(c["interval_s"], 900);
    let t: Vec<i64> = c["t"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(t, expected.keys().copied().collect::<Vec<_>>());
    let kwh = |key: &str, n: usize| c[key][n].as_f64().unwrap();
    let (mut import, mut export, mut shared) = (0, 0, 0);
    for (n, (_, &(i, e, meters))) in expected.iter().enumerate() {
        assert_eq!(kwh("import_kwh", n), i as f64 / 1000.0, "quarter {n}");
        assert_eq!(kwh("export_kwh", n), e as f64 / 1000.0, "quarter {n}");
        assert_eq!(
            kwh("shared_kwh", n),
            i.min(e) as f64 / 1000.0,
            "quarter {n}"
        );
        assert_eq!(c["meters"][n], meters, "quarter {n}");
        import += i;
        export += e;
        shared += i.min(e);
    }
    assert!(shared > 0 && shared < export && shared < import, "{c}");
    let totals = &c["totals"];
    assert_eq!(
        totals["import_kwh"].as_f64().unwrap(),
        import as f64 / 1000.0
    );
    assert_eq!(
        totals["export_kwh"].as_f64().unwrap(),
        export as f64 / 1000.0
    );
    assert_eq!(
        totals["shared_kwh"].as_f64().unwrap(),
        shared as f64 / 1000.0
    );
    assert_eq!(
        totals["grid_import_kwh"].as_f64().unwrap(),
        (import - shared) as f64 / 1000.0
    );
    let rate = totals["self_consumption_rate"].as_f64().unwrap();
    assert!(
        (rate - shared as f64 / export as f64).abs() < 1e-6,
        "{rate}"
    );

    // The top meters by import and by export, most first.
    per_meter.sort_by_key(|(n, i, _)| (-i, n.clone()));
    let top_import: Vec<(&str, f64)> = c["top_import"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["energy_kwh"].as_f64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(&str, f64)> = per_meter[..3]
        .iter()
        .map(|(n, i, _)| (n.as_str(), *i as f64 / 1000.0))
        .collect();
    assert_eq!(top_import, want);
    per_meter.sort_by_key(|(n, _, e)| (-e, n.clone()));
    let top_export: Vec<&str> = c["top_export"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = per_meter[..3].iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(top_export, want, "{c}");

    // A chosen set of members.
    let some = json(
        &f,
        &format!("/api/fleet/community?from={from}&to={to}&members=m-00,m-02"),
    )
    .await;
    assert_eq!(some["members"], 2);
    let sum_of = |key: &str| -> f64 {
        some[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum()
    };
    let want: i64 = per_meter
        .iter()
        .filter(|(n, _, _)| n == "m-00" || n == "m-02")
        .map(|(_, i, _)| i)
        .sum();
    assert!((sum_of("import_kwh") - want as f64 / 1000.0).abs() < 1e-6);
    assert_eq!(some["top_export"].as_array().unwrap().len(), 1);

    // Mistakes.
    let (status, body) = get(&f, "/api/fleet/community?members=m-00,nobody", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("nobody"), "{body}");
    for uri in [
        "/api/fleet/community?day=yesterday",
        "/api/fleet/community?day=2026-11-01&from=2026-11-01",
        "/api/fleet/community?from=2026-01-01&to=2026-03-01",
        "/api/fleet/community?top=101",
        "/api/fleet/community?members=,",
    ] {
        let (status, body) = get(&f, uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
    }
    // A day without readings: nothing, and no rates.
    let empty = json(&f, "/api/fleet/community?day=2020-01-01").await;
    assert_eq!(empty["t"].as_array().unwrap().len(), 0);
    assert_eq!(empty["reporting"], 0);
    assert_eq!(empty["totals"]["self_consumption_rate"], Value::Null);
}

#[tokio::test]
async fn a_fleet_meters_dashboard_works_from_the_store() {
    let f = fleet(None);
    // The dashboard asks for its meter only, and learns that it is a fleet's.
    let meters = json(&f, "/api/meters?name=m-05").await;
    assert_eq!(meters["fleet"], true);
    assert_eq!(names(&meters), ["m-05"]);
    let m = &meters["meters"][0];
    assert_eq!(m["source"], "fleet");
    assert_eq!(m["rejections"]["tag"], 7, "{m}");
    assert_eq!(m["fleet"]["state"], "rejecting");
    assert!(m["last_telegram"].as_i64().is_some(), "{m}");
    let (status, _) = get(&f, "/api/meters?name=nobody", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Without a name, no list of every meter: that is /api/fleet/meters, a page at a time.
    let all = json(&f, "/api/meters").await;
    assert_eq!(all["fleet"], true);
    assert_eq!(all["meters"], serde_json::json!([]));
    // "Now": the last stored reading.
    let latest = json(&f, "/api/meters/m-02/latest").await;
    assert_eq!(latest["received"], f.now - 60);
    assert_eq!(latest["stored"], true);
    assert_eq!(latest["values"]["power_import_kw"], 0.3);
    assert_eq!(latest["values"]["voltage_l1_v"], 230.2);
    let (status, _) = get(&f, "/api/meters/never-seen/latest", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The history as for one household.
    let summary = json(&f, "/api/meters/m-02/summary").await;
    assert!(
        summary["today"]["energy_import_kwh"].as_f64().is_some(),
        "{summary}"
    );
    // The page at / is the fleet's.
    let (status, body) = get(&f, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("fleet.js"), "{body}");
}

#[tokio::test]
async fn health_is_the_databases_and_the_token_guards_the_fleet() {
    let f = fleet(Some(TOKEN));
    let (status, body) = get(&f, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"]["healthy"], true);
    for uri in ["/api/fleet", "/api/fleet/meters", "/api/fleet/community"] {
        let (status, _) = get(&f, uri, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        let (status, body) = get(&f, uri, Some(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    }
    // Without the fleet's options, none of its routes.
    let (status, _) = super::get(&f.app, false, "/api/fleet/meters", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The database gone: unhealthy, with the reason.
    let Fleet {
        app,
        db,
        now,
        _events,
    } = f;
    drop(db);
    let f = Fleet {
        app,
        db: TestDatabase::create(),
        now,
        _events,
    };
    let (status, body) = get(&f, "/healthz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "unhealthy");
    assert_eq!(health["database"]["healthy"], false);
    assert!(health["database"]["reason"].as_str().is_some(), "{body}");
}

/// Every key of `answer` is a property of `schema` (resolving one `$ref`).
fn described(openapi: &Value, schema: &Value, answer: &Value, what: &str) {
    let schema = match schema["$ref"].as_str() {
        Some(r) => &openapi["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    };
    for key in answer.as_object().unwrap().keys() {
        assert!(
            schema["properties"][key].is_object(),
            "{what}: {key} is not in openapi.json"
        );
    }
}

#[tokio::test]
async fn openapi_describes_the_fleets_answers() {
    let f = fleet(None);
    let openapi: Value = serde_json::from_str(crate::OPENAPI).unwrap();
    let ok = |path: &str| {
        openapi["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            .clone()
    };
    let summary = json(&f, "/api/fleet").await;
    described(&openapi, &ok("/api/fleet"), &summary, "/api/fleet");
    let page = json(&f, "/api/fleet/meters?search=m-05").await;
    described(
        &openapi,
        &ok("/api/fleet/meters"),
        &page,
        "/api/fleet/meters",
    );
    let meter = &openapi["components"]["schemas"]["FleetMeter"];
    described(&openapi, meter, &page["meters"][0], "FleetMeter");
    let community = json(&f, "/api/fleet/community").await;
    described(
        &openapi,
        &ok("/api/fleet/community"),
        &community,
        "Community",
    );
    described(
        &openapi,
        &openapi["components"]["schemas"]["Community"]["properties"]["totals"],
        &community["totals"],
        "Community totals",
    );
    let meters = json(&f, "/api/meters?name=m-05").await;
    described(&openapi, &ok("/api/meters"), &meters, "/api/meters");
    described(
        &openapi,
        &openapi["components"]["schemas"]["Meter"],
        &meters["meters"][0],
        "Meter",
    );
    let latest = json(&f, "/api/meters/m-02/latest").await;
    described(
        &openapi,
        &openapi["components"]["schemas"]["Telegram"],
        &latest,
        "Telegram",
    );
}
