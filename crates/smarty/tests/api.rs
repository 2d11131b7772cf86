//! The HTTP API end to end: `smarty run` on a live virtual meter, over a store filled with
//! three days of `smarty simulate` history by `smarty import`; every endpoint, its errors, the
//! live stream and the access token.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

mod support;

use support::{Guard, KEY, free_port, request};

fn smarty() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smarty"));
    cmd.env_remove("SMARTY_KEY")
        .env_remove("SMARTY_HTTP_TOKEN")
        .env("RUST_LOG", "smarty=info");
    cmd
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn get_with(port: u16, path: &str, headers: &str) -> (u16, String) {
    request(port, path, headers).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn get(port: u16, path: &str) -> (u16, String) {
    get_with(port, path, "")
}

/// GET that must answer 200 with JSON.
fn json(port: u16, path: &str) -> Value {
    let (status, body) = get(port, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// GET that must fail with `status` and a JSON error message.
fn error(port: u16, path: &str, status: u16) -> String {
    let (got, body) = get(port, path);
    assert_eq!(got, status, "{path}: {body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    body["error"].as_str().unwrap().to_owned()
}

fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if request(port, "/healthz", "").is_ok_and(|(status, _)| status == 200) {
            return;
        }
        assert!(Instant::now() < deadline, "smarty run never became healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() < 1e-6 * a.abs().max(1.0),
        "{what}: {a} != {b}"
    );
}

/// Three days of history at a telegram a minute, imported into `dir`'s store.
fn history(dir: &Path) {
    let capture = dir.join("history.bin");
    let start = (now() - 3 * 86_400).to_string();
    let status = smarty()
        .args([
            "simulate",
            "--start",
            &start,
            "--count",
            "4320",
            "--interval",
            "60s",
        ])
        .args([
            "--fast", "--gas", "--water", "--seed", "7", "--key", KEY, "-o",
        ])
        .arg(&capture)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let output = smarty()
        .args([
            "import",
            "--key",
            KEY,
            "--meter",
            "home",
            "--quiet",
            "--state-dir",
        ])
        .arg(dir)
        .arg(&capture)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn live(dir: &Path, http: &str, token: Option<&str>) -> (Guard, Guard) {
    let sim_port = free_port();
    let sim = smarty()
        .args(["simulate", "--listen", &format!("127.0.0.1:{sim_port}")])
        .args([
            "--interval",
            "1s",
            "--gas",
            "--water",
            "--seed",
            "7",
            "--key",
            KEY,
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut run = smarty();
    run.args([
        "run",
        &format!("tcp://127.0.0.1:{sim_port}"),
        "--name",
        "home",
    ])
    .args([
        "--key",
        KEY,
        "--interval",
        "1",
        "--http",
        http,
        "--state-dir",
    ])
    .arg(dir)
    .stderr(Stdio::null());
    if let Some(token) = token {
        run.env("SMARTY_HTTP_TOKEN", token);
    }
    (Guard::from(sim), Guard::from(run.spawn().unwrap()))
}

#[test]
fn every_endpoint_over_simulated_history() {
    let dir = tempfile::tempdir().unwrap();
    history(dir.path());
    let port = free_port();
    let (_sim, _run) = live(dir.path(), &format!("127.0.0.1:{port}"), None);
    wait_healthy(port);
    let t = now();

    // Meters: the live status and the stored history.
    let meters = json(port, "/api/meters");
    let home = &meters["meters"][0];
    assert_eq!(meters["meters"].as_array().unwrap().len(), 1, "{meters}");
    assert_eq!(home["name"], "home");
    assert_eq!(home["connected"], true);
    assert!(home["meter_id"].as_str().unwrap().starts_with("SAG"));
    assert!(home["telegrams"].as_u64().unwrap() >= 1);
    assert_eq!(home["rejections"]["wrong_key"], 0);
    let first = home["first_reading"].as_i64().unwrap();
    assert!((first - (t - 3 * 86_400)).abs() < 600, "{home}");
    assert!(home["last_reading"].as_i64().unwrap() >= first);
    let media: Vec<&str> = home["mbus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["medium"].as_str().unwrap())
        .collect();
    assert!(media.contains(&"gas") && media.contains(&"water"), "{home}");

    // Latest telegram.
    let latest = json(port, "/api/meters/home/latest");
    assert!(latest["values"]["power_import_kw"].is_number(), "{latest}");
    assert!(latest["values"]["mbus1_gas_m3"].is_number(), "{latest}");
    assert_eq!(latest["telegram"]["meter_id"], home["meter_id"]);

    // Series: the default (24 h, 15-minute) and raw points of the last hours.
    let series = json(port, "/api/meters/home/series?field=power_import_kw");
    assert_eq!(series["resolution"], "15m");
    assert_eq!(series["meter"], "home");
    assert_eq!(series["unit"], "kW");
    let ts = series["t"].as_array().unwrap();
    assert!((90..=98).contains(&ts.len()), "{} points", ts.len());
    let (value, min, max) = (
        numbers(&series["value"]),
        numbers(&series["min"]),
        numbers(&series["max"]),
    );
    assert_eq!(value.len(), ts.len());
    for i in 0..value.len() {
        assert!(
            min[i] <= value[i] + 1e-9 && value[i] <= max[i] + 1e-9,
            "point {i}"
        );
        assert_eq!(ts[i].as_i64().unwrap() % 900, 0);
    }
    let from = t - 6 * 3600;
    let raw = json(
        port,
        &format!("/api/meters/home/series?field=voltage_l1_v&from={from}&resolution=auto"),
    );
    assert_eq!(raw["resolution"], "raw");
    let n = raw["t"].as_array().unwrap().len();
    assert!(
        n >= 300,
        "6 hours of 60-s history and live telegrams: {n} points"
    );
    assert!(
        numbers(&raw["value"])
            .iter()
            .all(|v| (200.0..260.0).contains(v))
    );

    // Daily energy: the series, the totals and the tariff report agree.
    let from = t - 4 * 86_400;
    let daily = json(
        port,
        &format!("/api/meters/home/series?field=energy_import_kwh&from={from}&resolution=day"),
    );
    assert_eq!(daily["unit"], "kWh");
    let series_sum: f64 = numbers(&daily["value"]).iter().sum();
    assert!(series_sum > 1.0, "{daily}");
    let totals = json(
        port,
        &format!("/api/meters/home/totals?period=day&from={from}"),
    );
    let rows = totals["rows"].as_array().unwrap();
    assert!((3..=5).contains(&rows.len()), "{totals}");
    let totals_sum: f64 = rows
        .iter()
        .map(|r| r["energy_import_kwh"].as_f64().unwrap())
        .sum();
    close(series_sum, totals_sum, "daily series vs totals");
    assert!(rows.iter().all(|r| r["cost_eur"].as_f64().unwrap() > 0.0));
    assert!(
        rows.iter()
            .any(|r| r["mbus"]["mbus1_gas_m3"].as_f64().unwrap_or(0.0) > 0.0),
        "{totals}"
    );
    let tariff = json(
        port,
        &format!("/api/meters/home/tariff?period=day&from={from}"),
    );
    let tariff_rows = tariff["rows"].as_array().unwrap();
    assert_eq!(tariff_rows.len(), rows.len());
    let tariff_sum: f64 = tariff_rows
        .iter()
        .map(|r| r["energy_import_kwh"].as_f64().unwrap())
        .sum();
    close(tariff_sum, totals_sum, "tariff vs totals");
    close(
        tariff["total"]["energy_import_kwh"].as_f64().unwrap(),
        tariff_sum,
        "tariff total",
    );
    assert!(tariff["reference_power_kw"].as_f64().unwrap() > 0.0);

    // The 15-minute view of yesterday: 96 periods (92/100 on DST days), power = energy / 0.25 h.
    let intervals = json(
        port,
        &format!(
            "/api/meters/home/intervals?from={}&to={}",
            from + 86_400,
            from + 2 * 86_400
        ),
    );
    let it = intervals["t"].as_array().unwrap();
    assert!((90..=100).contains(&it.len()), "{} periods", it.len());
    let (power, energy, above) = (
        numbers(&intervals["power_import_kw"]),
        numbers(&intervals["energy_import_kwh"]),
        numbers(&intervals["energy_above_reference_kwh"]),
    );
    let reference = intervals["reference_power_kw"].as_f64().unwrap();
    for i in 0..it.len() {
        assert!((power[i] - energy[i] * 4.0).abs() < 0.002, "period {i}");
        let expected = (energy[i] - reference * 0.25).max(0.0);
        assert!((above[i] - expected).abs() < 0.002, "period {i}");
    }

    // The dashboard's summary: today equals today's totals row.
    let summary = json(port, "/api/meters/home/summary");
    let today = rows.last().unwrap();
    assert!(summary["today"]["energy_import_kwh"].as_f64().unwrap() >= 0.0);
    assert!(
        (summary["today"]["energy_import_kwh"].as_f64().unwrap()
            - today["energy_import_kwh"].as_f64().unwrap())
        .abs()
            < 0.05,
        "{summary} vs {today}"
    );
    assert!(summary["month"]["cost_eur"].is_number());

    // Errors are JSON with the right status.
    assert!(error(port, "/api/meters/nobody/series?field=power_import_kw", 404).contains("nobody"));
    assert!(error(port, "/api/meters/home/series?field=nonsense", 400).contains("nonsense"));
    assert!(error(port, "/api/meters/home/series", 400).contains("field"));
    let far = t - 40 * 86_400;
    error(
        port,
        &format!("/api/meters/home/series?field=power_import_kw&from={far}&resolution=raw"),
        400,
    );
    assert!(error(port, "/api/meters/home/totals?from=yesterday", 400).contains("from"));
    error(port, "/api/meters/home/totals?period=week", 400);
    // A query string that does not even parse gets the same JSON error.
    assert!(error(port, "/api/meters/home/totals?period=day&period=month", 400).contains("period"));
    error(port, "/api/nothing", 404);

    // The live stream delivers the next telegram.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET /api/stream?meter=home HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut lines = BufReader::new(stream).lines();
    assert!(lines.next().unwrap().unwrap().contains("200"));
    let mut event = None;
    while let Some(Ok(line)) = lines.next() {
        if line == "event: telegram" {
            let data = lines.next().unwrap().unwrap();
            event =
                Some(serde_json::from_str::<Value>(data.strip_prefix("data: ").unwrap()).unwrap());
            break;
        }
    }
    let event = event.expect("a telegram event");
    assert_eq!(event["meter"], "home");
    assert!(event["values"]["power_import_kw"].is_number());

    // The description names every endpoint used here.
    let openapi = json(port, "/api/openapi.json");
    assert_eq!(openapi["openapi"], "3.1.0");
    for path in [
        "/api/meters",
        "/api/meters/{meter}/latest",
        "/api/meters/{meter}/series",
        "/api/meters/{meter}/totals",
        "/api/meters/{meter}/tariff",
        "/api/meters/{meter}/intervals",
        "/api/meters/{meter}/summary",
        "/api/stream",
        "/api/openapi.json",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} not in openapi.json"
        );
    }

    // The dashboard, metrics and health on the same server.
    let (status, page) = get(port, "/");
    assert_eq!(status, 200);
    assert!(page.contains("uPlot"), "the page loads uPlot");
    assert_eq!(get(port, "/app.js").0, 200);
    assert_eq!(get(port, "/vendor/uPlot.iife.min.js").0, 200);
    assert_eq!(get(port, "/nothing.js").0, 404);
    let (status, metrics) = get(port, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("smarty_telegrams_total{meter=\"home\"}"));
    // No secret anywhere.
    for body in [meters.to_string(), latest.to_string(), metrics] {
        assert!(!body.contains(KEY) && !body.to_lowercase().contains(&KEY.to_lowercase()));
    }
}

#[test]
fn other_addresses_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Without a token, smarty run refuses to listen beyond loopback.
    let output = smarty()
        .args(["run", "tcp://127.0.0.1:1", "--key", KEY, "--http"])
        .arg(format!("0.0.0.0:{port}"))
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("token_file"), "{stderr}");

    let token = "2f4e6a8c0b1d3f5e7a9c";
    let (_sim, _run) = live(dir.path(), &format!("0.0.0.0:{port}"), Some(token));
    wait_healthy(port);
    assert!(error(port, "/api/meters", 401).contains("token"));
    let (status, _) = get_with(
        port,
        "/api/meters",
        "Authorization: Bearer wrong-token-0000000\r\n",
    );
    assert_eq!(status, 401);
    let (status, body) = get_with(
        port,
        "/api/meters",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"home\""));
    assert_eq!(get(port, &format!("/api/meters?token={token}")).0, 200);
    // Health, metrics and the page itself stay open; the token is never shown.
    assert_eq!(get(port, "/metrics").0, 200);
    let (status, page) = get(port, "/");
    assert_eq!(status, 200);
    assert!(!page.contains(token));
}
