//! End to end: the costs of the API across a change of prices. History over New Year
//! 2025/2026 is imported, `smarty run` serves it, and the tariff report prices each day with
//! the prices in force that day (the 2025 tariff, then the 2026 one); the summary says which
//! part of a cost is the fixed fees' share.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

mod support;

use support::{Guard, KEY, free_port, request, wait_for_port};

fn smarty(log: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smarty"));
    cmd.env_remove("SMARTY_KEY")
        .env_remove("SMARTY_STATE_DIR")
        .env_remove("SMARTY_HTTP_TOKEN")
        .env("RUST_LOG", "smarty=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(log).unwrap());
    cmd
}

fn get(port: u16, path: &str) -> Json {
    let (status, body) = request(port, path, "").expect("the API answers");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

#[test]
fn costs_use_the_prices_of_their_own_days() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = |name: &str| d.join(format!("{name}.log"));
    // 2025-12-30 00:00 +01:00, four days at a telegram a minute.
    let capture = d.join("history.bin");
    let status = smarty(&log("simulate"))
        .args([
            "simulate",
            "--start",
            "2025-12-30",
            "--count",
            "5760",
            "--interval",
            "60s",
        ])
        .args(["--fast", "--seed", "7", "--key", KEY, "-o"])
        .arg(&capture)
        .status()
        .unwrap();
    assert!(status.success());
    let status = smarty(&log("import"))
        .arg("import")
        .arg(&capture)
        .args(["--key", KEY, "--meter", "home", "--quiet", "--db"])
        .arg(d.join("smarty.db"))
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(log("import")).unwrap()
    );

    let sim_port = free_port();
    let sim_addr = format!("127.0.0.1:{sim_port}");
    let _sim = Guard::from(
        smarty(&log("live"))
            .args([
                "simulate",
                "--listen",
                &sim_addr,
                "--interval",
                "1s",
                "--key",
                KEY,
            ])
            .spawn()
            .unwrap(),
    );
    wait_for_port(sim_port);
    let port = free_port();
    let mut run = Guard::from(
        smarty(&log("run"))
            .args([
                "run",
                &format!("tcp://{sim_addr}"),
                "--name",
                "home",
                "--key",
                KEY,
            ])
            .args(["--http", &format!("127.0.0.1:{port}"), "--state-dir"])
            .arg(d)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(request(port, "/healthz", ""), Ok((200, _))) {
        if let Some(status) = run.child.try_wait().unwrap() {
            panic!(
                "smarty run exited ({status}):\n{}",
                std::fs::read_to_string(log("run")).unwrap()
            );
        }
        assert!(Instant::now() < deadline, "/healthz is not 200 after 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }

    let report = get(
        port,
        "/api/meters/home/tariff?period=day&from=2025-12-30&to=2026-01-03",
    );
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{report}");
    // Per kWh imported, VAT included: supply + network + electricity tax (docs/tariff.md).
    let per_kwh_2025 = (0.1329 + 0.0759 + 0.001) * 1.08;
    let per_kwh_2026 = (0.1229 + 0.0510 + 0.001) * 1.08;
    for row in rows {
        let day = row["period"].as_str().unwrap();
        let kwh = row["energy_import_kwh"].as_f64().unwrap();
        let eur = row["cost"]["energy_eur"].as_f64().unwrap();
        assert!(kwh > 1.0, "{day}: {kwh} kWh");
        let (per_kwh, fixed) = if day.starts_with("2025") {
            (per_kwh_2025, 0.65) // (11.11 + 5.90 + 1.75) × 1.08 / 31
        } else {
            (per_kwh_2026, 0.52) // (7.42 + 5.72 + 1.75) × 1.08 / 31
        };
        assert!(
            (eur / kwh - per_kwh).abs() < 0.002,
            "{day}: {eur} € for {kwh} kWh is not {per_kwh} €/kWh"
        );
        assert_eq!(row["cost"]["fixed_eur"], fixed, "{day}");
    }
    let periods = report["price_periods"].as_array().unwrap();
    assert_eq!(periods.len(), 2, "{report}");
    assert_eq!(periods[1]["from"], "2026-01-01");
    assert_eq!(periods[1]["prices"]["network_price_eur_per_kwh"], 0.051);

    // The summary: the fixed fees' share of each cost.
    let summary = get(port, "/api/meters/home/summary");
    for key in ["today", "month", "last_month"] {
        let part = &summary[key];
        let (cost, fixed) = (part["cost_eur"].as_f64(), part["fixed_eur"].as_f64());
        let (Some(cost), Some(fixed)) = (cost, fixed) else {
            panic!("{key}: no cost or no fixed_eur: {summary}");
        };
        assert!(fixed <= cost, "{key}: {summary}");
    }
}
