//! The HTTP API end to end: `smarty run` on a live virtual meter, over a store filled with
//! three days of `smarty simulate` history by `smarty import`; every endpoint, its errors, the
//! live stream and the access token.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

mod support;

use support::{Guard, KEY, free_port, peak_memory, request, smarty, wait_for_port};

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

    // A base64 token: `+`, `/` and `=` must be percent-encoded in a query string, as the
    // dashboard's URLSearchParams does.
    let token = "q+8/ZmFrZS10b2tlbg==";
    let in_query = "q%2B8%2FZmFrZS10b2tlbg%3D%3D";
    let (_sim, _run) = live(dir.path(), &format!("0.0.0.0:{port}"), Some(token));
    wait_healthy(port);
    assert!(error(port, "/api/meters", 401).contains("token"));
    let (status, _) = get_with(
        port,
        "/api/meters",
        "Authorization: Bearer wrong-token-0000000\r\n",
    );
    assert_eq!(status, 401);
    let bearer = format!("Authorization: Bearer {token}\r\n");
    let (status, body) = get_with(port, "/api/meters", &bearer);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"home\""));
    assert_eq!(get(port, &format!("/api/meters?token={in_query}")).0, 200);
    // The live stream the dashboard opens with the token in its query.
    let event = first_telegram_event(port, &format!("/api/stream?meter=home&token={in_query}"));
    assert_eq!(event["meter"], "home");

    // Metrics carry live consumption and the meter id: the token guards them too.
    let (status, metrics) = get(port, "/metrics");
    assert_eq!(status, 401, "{metrics}");
    assert!(!metrics.contains("smarty_"), "{metrics}");
    let (status, metrics) = get_with(port, "/metrics", &bearer);
    assert_eq!(status, 200);
    assert!(metrics.contains("smarty_telegrams_total{meter=\"home\"}"));
    // Health and the page itself stay open; the token is never shown.
    assert_eq!(get(port, "/healthz").0, 200);
    let (status, page) = get(port, "/");
    assert_eq!(status, 200);
    assert!(!page.contains(token));
}

/// Opens the live stream at `path` and returns the data of its first `telegram` event.
fn first_telegram_event(port: u16, path: &str) -> Value {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut lines = BufReader::new(stream).lines();
    let status = lines.next().unwrap().unwrap();
    assert!(status.contains(" 200 "), "{path}: {status}");
    while let Some(Ok(line)) = lines.next() {
        if line == "event: telegram" {
            let data = lines.next().unwrap().unwrap();
            return serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
        }
    }
    panic!("{path}: the stream ended without a telegram");
}

/// Decimals of a unit, as docs/api.md ("Numbers") gives them.
fn unit_decimals(unit: &str) -> Option<u32> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "kwh" | "kvarh" | "kw" | "kvar" | "kva" | "m3" | "gj" => 3,
        "v" => 1,
        "a" | "hz" => 2,
        "eur" => 2,
        "wh" | "varh" | "w" | "var" | "va" | "s" => 0,
        _ => return None,
    })
}

/// Decimals of a number named `key`, as docs/api.md gives them: from the unit at the end of
/// the name; prices and rates 6.
fn name_decimals(key: &str) -> Option<u32> {
    if key.contains("_per_") || key.ends_with("_rate") {
        return Some(6);
    }
    unit_decimals(key.rsplit_once('_')?.1)
}

/// Decimals in the JSON text of a number (`1.25` 2, `1e-7` 7, `12` 0).
fn decimals_of(text: &str) -> u32 {
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().unwrap()),
        None => (text, 0),
    };
    let fraction = mantissa.split_once('.').map_or(0, |(_, f)| {
        // `2.0` has no decimal that matters.
        f.trim_end_matches('0').len() as i64
    });
    (fraction - exponent).max(0) as u32
}

/// Checks every number in `value` (at `path`): never `-0.0`, and no more decimals than the
/// resolution of its unit (from its name, or from a `unit` beside `value`/`min`/`max`);
/// numbers without a unit are integers or carry no float noise (at most 6 decimals).
/// Returns how many numbers with a unit were checked.
fn check_numbers(path: &str, value: &Value, decimals: Option<u32>, exact: bool) -> usize {
    match value {
        Value::Number(n) => {
            let text = n.to_string();
            assert!(
                !text.starts_with("-0") || n.as_f64() != Some(0.0),
                "{path}: {text}"
            );
            assert!(
                !(n.as_f64() == Some(0.0) && n.as_f64().unwrap().is_sign_negative()),
                "{path}: -0.0"
            );
            if exact {
                return 0;
            }
            match decimals {
                Some(d) => {
                    assert!(
                        decimals_of(&text) <= d,
                        "{path}: {text} has more than {d} decimals"
                    );
                    1
                }
                None => {
                    assert!(
                        decimals_of(&text) <= 6,
                        "{path}: {text} carries float noise"
                    );
                    0
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| check_numbers(&format!("{path}[{i}]"), item, decimals, exact))
            .sum(),
        Value::Object(map) => {
            let unit = map
                .get("unit")
                .and_then(Value::as_str)
                .and_then(unit_decimals);
            map.iter()
                .map(|(key, item)| {
                    let exact = exact || key == "telegram";
                    let inner = name_decimals(key).or(match key.as_str() {
                        "value" | "min" | "max" => unit.or(decimals),
                        _ if item.is_number() => None,
                        _ => decimals,
                    });
                    check_numbers(&format!("{path}.{key}"), item, inner, exact)
                })
                .sum()
        }
        _ => 0,
    }
}

#[test]
fn every_number_has_the_resolution_of_its_unit() {
    let dir = tempfile::tempdir().unwrap();
    history(dir.path());
    let port = free_port();
    let (_sim, _run) = live(dir.path(), &format!("127.0.0.1:{port}"), None);
    wait_healthy(port);
    let t = now();
    let mut paths = vec![
        "/api/meters".to_owned(),
        "/api/meters/home/latest".to_owned(),
        "/api/meters/home/summary".to_owned(),
        format!("/api/meters/home/intervals?from={}", t - 2 * 86_400),
    ];
    for period in ["day", "month"] {
        for endpoint in ["totals", "tariff"] {
            paths.push(format!(
                "/api/meters/home/{endpoint}?period={period}&from={}",
                t - 4 * 86_400
            ));
        }
    }
    let latest = json(port, "/api/meters/home/latest");
    let fields: Vec<String> = latest["values"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|name| {
            // The fields a series knows: the store's columns and the M-Bus channels.
            name.starts_with("mbus")
                || ["power_", "reactive_", "voltage_l", "current_l", "energy_"]
                    .iter()
                    .any(|p| name.starts_with(p))
        })
        .cloned()
        .collect();
    assert!(fields.len() >= 20, "{fields:?}");
    for field in &fields {
        for (resolution, from) in [
            ("raw", t - 3 * 3600),
            ("15m", t - 86_400),
            ("hour", t - 3 * 86_400),
            ("day", t - 4 * 86_400),
            ("month", t - 4 * 86_400),
        ] {
            paths.push(format!(
                "/api/meters/home/series?field={field}&resolution={resolution}&from={from}"
            ));
        }
    }
    let mut checked = 0;
    for path in &paths {
        let (status, body) = get(port, path);
        if status == 400 && path.contains("series") {
            // A value the simulator sends that the store does not keep as a series.
            assert!(body.contains("unknown field"), "{path}: {body}");
            continue;
        }
        assert_eq!(status, 200, "{path}: {body}");
        let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}"));
        checked += check_numbers(path, &answer, None, false);
    }
    // The live stream's events too.
    let event = first_telegram_event(port, "/api/stream?meter=home");
    checked += check_numbers("stream", &event, None, false);
    assert!(
        checked > 10_000,
        "only {checked} numbers with a unit were checked"
    );
}

/// `days` of plain (unencrypted, quick to make) history at a telegram a minute, imported into
/// `dir`'s store for meter `home`.
fn plain_history(dir: &Path, days: i64) {
    let capture = dir.join("history.bin");
    let status = smarty()
        .args([
            "simulate",
            "--plain",
            "--fast",
            "--seed",
            "7",
            "--interval",
            "60s",
        ])
        .args(["--start", &(now() - days * 86_400).to_string()])
        .args(["--count", &(days * 1440).to_string(), "-o"])
        .arg(&capture)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let output = smarty()
        .args(["import", "--meter", "home", "--quiet", "--state-dir"])
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

/// A plain virtual meter serving a telegram every `interval` on `port`.
fn plain_simulator(port: u16, interval: &str) -> Guard {
    let sim = smarty()
        .args(["simulate", "--plain", "--seed", "7", "--interval", interval])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port);
    Guard::from(sim)
}

/// A configuration for one plain meter on `sim_port` with the web server on `http_port`.
fn plain_config(dir: &Path, sim_port: u16, http_port: u16, http_extra: &str) -> std::path::PathBuf {
    let config = dir.join("smarty.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {dir:?}\n\n[[meter]]\nname = \"home\"\nsource = \"tcp://127.0.0.1:{sim_port}\"\n\
             interval_s = 1\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n{http_extra}\n",
            dir = dir.display().to_string(),
        ),
    )
    .unwrap();
    config
}

/// How one request of the load went.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// A whole 200 answer.
    Whole,
    /// 503: the store was busy for too long (the bound doing its work).
    Busy,
    /// Given up because the load ended.
    Abandoned,
}

/// GET `path`, reading the answer until it is complete or `stop` is set; anything but a 200,
/// a 503 or giving up is an error.
fn load_request(port: u16, path: &str, stop: &AtomicBool) -> Result<Outcome, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    return Ok(Outcome::Abandoned);
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let head = String::from_utf8_lossy(&response[..response.len().min(12)]).into_owned();
    match head.get(9..12) {
        // JSON to its end, chunked or not.
        Some("200") if response.ends_with(b"}\r\n0\r\n\r\n") || response.ends_with(b"}") => {
            Ok(Outcome::Whole)
        }
        Some("503") => Ok(Outcome::Busy),
        _ => Err(format!("{head:?}, {} bytes", response.len())),
    }
}

#[test]
fn heavy_queries_leave_memory_bounded_and_telegrams_flowing() {
    const CLIENTS: usize = 150;
    /// Whole answers the load must have given before it ends.
    const ANSWERS: u64 = 20;
    /// The service's memory must stay below this under the load (it needs about 20 MB idle;
    /// unbounded, 150 month-long raw queries took it past 400 MB).
    const MEMORY_BOUND: u64 = 150 << 20;
    let dir = tempfile::tempdir().unwrap();
    plain_history(dir.path(), 30);
    let (sim_port, port) = (free_port(), free_port());
    let _sim = plain_simulator(sim_port, "1s");
    let config = plain_config(dir.path(), sim_port, port, "");
    let run = Guard::from(
        smarty()
            .args(["run", "--config"])
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_healthy(port);

    // The live stream, opened before the load.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /api/stream?meter=home HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut events = BufReader::new(stream).lines();
    assert!(events.next().unwrap().unwrap().contains(" 200 "));

    // Month-long raw series from many clients at once, again and again, until the end.
    let from = now() - 30 * 86_400 + 3600;
    let path = format!("/api/meters/home/series?field=power_import_kw&resolution=raw&from={from}");
    let stop = Arc::new(AtomicBool::new(false));
    let (started, answered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, started, answered, path) = (
                Arc::clone(&stop),
                Arc::clone(&started),
                Arc::clone(&answered),
                path.clone(),
            );
            std::thread::spawn(move || -> Result<(), String> {
                while !stop.load(Ordering::Relaxed) {
                    started.fetch_add(1, Ordering::Relaxed);
                    if load_request(port, &path, &stop)? == Outcome::Whole {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(())
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while started.load(Ordering::Relaxed) < CLIENTS as u64 {
        assert!(Instant::now() < deadline, "the clients did not start");
        std::thread::sleep(Duration::from_millis(10));
    }

    // Telegrams keep arriving while the load goes on.
    let mut telegrams = 0;
    let mut last_received = 0;
    while telegrams < 5 {
        assert!(
            Instant::now() < deadline,
            "{telegrams} telegrams during the load"
        );
        let mut next = || {
            events
                .next()
                .expect("the live stream ended")
                .expect("a telegram within 30 s")
        };
        if next() == "event: telegram" {
            telegrams += 1;
            let data: Value = serde_json::from_str(next().strip_prefix("data: ").unwrap()).unwrap();
            last_received = data["received"].as_i64().unwrap();
        }
    }
    // And the load is real: answers come out of it (with unbounded work, the first ones come
    // when every request holds its month of readings at once).
    while answered.load(Ordering::Relaxed) < ANSWERS {
        assert!(
            Instant::now() < deadline,
            "only {} answers under the load",
            answered.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let under_load = started.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        if let Err(e) = client.join().unwrap() {
            panic!("a request of the load failed: {e}");
        }
    }
    let answered = answered.load(Ordering::Relaxed);
    let peak = peak_memory(run.child.id());
    eprintln!(
        "{under_load} requests, {answered} answered; smarty's peak memory {} MB",
        peak >> 20
    );
    assert!(
        peak < MEMORY_BOUND,
        "smarty grew to {} MB under {under_load} requests ({answered} answered)",
        peak >> 20
    );
    // What arrived during the load reached the store too (it commits every few seconds).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let meters = json(port, "/api/meters");
        let stored = meters["meters"][0]["last_reading"].as_i64().unwrap_or(0);
        if stored >= last_received - 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store ends at {stored}, the load saw a telegram at {last_received}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The answers were whole: a month of raw readings, one a minute.
    let (status, body) = get(port, &path);
    assert_eq!(status, 200);
    let series: Value = serde_json::from_str(&body).unwrap();
    assert!(series["t"].as_array().unwrap().len() > 40_000);
}

#[test]
fn slow_clients_are_dropped_and_leave_descriptors_for_the_meters() {
    const SLOW_CLIENTS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let (sim_port, port) = (free_port(), free_port());
    let sim = plain_simulator(sim_port, "300ms");
    let config = plain_config(dir.path(), sim_port, port, "header_read_timeout_s = 2");
    // 64 open files, as in a tight container or under a low `ulimit -n`.
    let _run = Guard::from(
        Command::new("prlimit")
            .arg("--nofile=64:64")
            .arg(env!("CARGO_BIN_EXE_smarty"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "smarty=info")
            .stderr(Stdio::null())
            .spawn()
            .expect("prlimit (util-linux) runs smarty with 64 open files"),
    );
    wait_healthy(port);

    // Clients that connect and never finish their headers, or send nothing at all.
    let slow: Vec<TcpStream> = (0..SLOW_CLIENTS)
        .map(|i| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            if i % 2 == 0 {
                stream
                    .write_all(b"GET /api/meters HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                    .unwrap();
            }
            stream
        })
        .collect();

    // The meter's source goes away and comes back: smarty must open a new connection.
    drop(sim);
    let restarted = now();
    let _sim = plain_simulator(sim_port, "300ms");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        assert!(
            Instant::now() < deadline,
            "the API never answered with a telegram from the reopened source"
        );
        if let Ok((200, body)) = request(port, "/api/meters", "") {
            let meters: Value = serde_json::from_str(&body).unwrap();
            let home = &meters["meters"][0];
            if home["connected"] == true
                && home["last_telegram"]
                    .as_i64()
                    .is_some_and(|t| t > restarted)
            {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // Every slow client was disconnected by the server.
    for (i, mut stream) in slow.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("slow client {i} is still connected: {e}"),
        }
    }
}
