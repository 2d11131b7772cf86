//! End to end: the history store through the `smarty` binary. `simulate` makes captures,
//! `import` fills a store (and is killed with SIGKILL mid-way), `export` reads it back.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use smarty_store::test_postgres::TestDatabase;

use crate::support::{quiet_smarty, run_ok};

const KEY: &str = "000102030405060708090A0B0C0D0E0F";
/// 2026-11-01 00:00 +01:00.
const START: i64 = 1_793_487_600;

/// `count` frames every 10 s from [`START`] with a gas meter.
fn simulate(path: &Path, count: u64, plain: bool) {
    let mut cmd = quiet_smarty();
    cmd.args(["simulate", "--start", &START.to_string(), "--count"])
        .arg(count.to_string())
        .args(["--fast", "--gas", "--seed", "7", "-o"])
        .arg(path);
    if plain {
        cmd.arg("--plain");
    } else {
        cmd.args(["--key", KEY]);
    }
    run_ok(&mut cmd);
}

/// `smarty export --format json` rows from [`START`].
fn export(
    db: impl AsRef<std::ffi::OsStr>,
    resolution: &str,
    meter: Option<&str>,
) -> Vec<BTreeMap<String, Json>> {
    export_from(db, resolution, meter, START)
}

/// `smarty export --format json` rows from `from` (Unix seconds) to now.
pub fn export_from(
    db: impl AsRef<std::ffi::OsStr>,
    resolution: &str,
    meter: Option<&str>,
    from: i64,
) -> Vec<BTreeMap<String, Json>> {
    let mut cmd = quiet_smarty();
    cmd.args(["export", "--database"])
        .arg(db)
        .args(["--resolution", resolution, "--format", "json", "--from"])
        .arg(from.to_string());
    if let Some(meter) = meter {
        cmd.args(["--meter", meter]);
    }
    let output = run_ok(&mut cmd);
    let document: Json = serde_json::from_slice(&output.stdout).expect("export is JSON");
    assert_eq!(document["resolution"], resolution);
    document["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| serde_json::from_value(row.clone()).unwrap())
        .collect()
}

fn wh(value: &Json) -> i64 {
    (value.as_f64().expect("a number") * 1000.0).round() as i64
}

/// [`check_aggregates_from`] [`START`].
fn check_aggregates(db: impl AsRef<std::ffi::OsStr> + Copy) -> Vec<i64> {
    check_aggregates_from(db, START)
}

/// The 15-minute and daily energies from `from` (Unix seconds) agree with the raw
/// registers: each period's energy is the register increase since the previous reading, each
/// day is the sum of its periods. The times of the raw readings.
pub fn check_aggregates_from(db: impl AsRef<std::ffi::OsStr> + Copy, from: i64) -> Vec<i64> {
    let export = |db, resolution| export_from(db, resolution, None, from);
    let raw = export(db, "raw");
    let times: Vec<i64> = raw.iter().map(|r| r["ts"].as_i64().unwrap()).collect();
    let mut expected: BTreeMap<i64, i64> = BTreeMap::new();
    let mut previous: Option<i64> = None;
    for row in &raw {
        let register = wh(&row["energy_import_kwh"]);
        let period = row["ts"].as_i64().unwrap() / 900 * 900;
        let base = previous.unwrap_or(register);
        *expected.entry(period).or_default() += register - base;
        previous = Some(register);
    }
    let periods = export(db, "15m");
    let got: BTreeMap<i64, i64> = periods
        .iter()
        .map(|r| (r["ts"].as_i64().unwrap(), wh(&r["energy_import_kwh"])))
        .collect();
    assert_eq!(got, expected, "15-minute energies against raw registers");
    let days = export(db, "day");
    let day_total: i64 = days.iter().map(|r| wh(&r["energy_import_kwh"])).sum();
    assert_eq!(day_total, expected.values().sum::<i64>());
    if let (Some(first), Some(last)) = (raw.first(), raw.last()) {
        assert_eq!(
            day_total,
            wh(&last["energy_import_kwh"]) - wh(&first["energy_import_kwh"]),
            "the energies telescope"
        );
    }
    times
}

#[test]
fn store_survives_kill_9_during_an_import() {
    kill_9_during_an_import(None);
}

#[test]
fn a_postgres_store_survives_kill_9_during_an_import() {
    kill_9_during_an_import(Some(TestDatabase::create()));
}

/// An import killed with SIGKILL once a few commits are in, into an SQLite file or, with
/// `server`, a PostgreSQL database: every committed reading is there, the aggregates equal
/// the sums over them, and a second import completes the data.
fn kill_9_during_an_import(server: Option<TestDatabase>) {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("day.bin");
    let file = dir.path().join("state/smarty.db");
    let (db, location) = match &server {
        Some(server) => (server.url().to_owned(), format!("url = {:?}", server.url())),
        None => (
            file.display().to_string(),
            format!("path = {:?}", file.display()),
        ),
    };
    let config = dir.path().join("smarty.toml");
    std::fs::write(
        &config,
        format!(
            "[[meter]]\nname = \"home\"\nsource = \"-\"\n[store]\n{location}\n\
             raw_retention_days = 0\ncommit_interval_s = 0.05\n"
        ),
    )
    .unwrap();
    let count = 8640u64;
    simulate(&capture, count, true);
    let expected: Vec<i64> = (0..count as i64).map(|i| START + 10 * i).collect();
    // What is stored, read with SQL of the test's own.
    let stored = || -> i64 {
        match &server {
            // No table before the import made the schema.
            Some(server) => server
                .try_query("SELECT count(*) FROM reading")
                .ok()
                .and_then(|rows| rows.first().cloned().flatten())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            None => rusqlite::Connection::open(&file)
                .and_then(|c| {
                    c.query_row("SELECT COALESCE(SUM(n), 0) FROM raw_block", [], |r| {
                        r.get::<_, i64>(0)
                    })
                })
                .unwrap_or(0),
        }
    };

    let mut import = quiet_smarty()
        .args(["import", "--quiet", "--meter", "home", "--config"])
        .arg(&config)
        .arg(&capture)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once a few commits are in, well before the end.
    let started = Instant::now();
    while stored() < 500 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the import stored nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    import.kill().unwrap(); // SIGKILL
    let status = import.wait().unwrap();
    assert!(!status.success(), "the import was killed, not finished");

    if server.is_none() {
        let conn = rusqlite::Connection::open(&file).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
    let times = check_aggregates(db.as_str());
    assert!(
        !times.is_empty() && times.len() < expected.len(),
        "{} readings stored",
        times.len()
    );
    assert_eq!(
        times,
        expected[..times.len()],
        "the stored readings are a prefix of the capture"
    );

    // A second import completes the data, keeping what is there.
    let output = run_ok(
        quiet_smarty()
            .args(["import", "--quiet", "--meter", "home", "--config"])
            .arg(&config)
            .arg(&capture),
    );
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(
        summary.contains(&format!(
            "{} telegrams imported, {} skipped as already stored",
            expected.len() - times.len(),
            times.len()
        )),
        "{summary}"
    );
    assert_eq!(check_aggregates(db.as_str()), expected);
}

#[test]
fn store_export_and_import_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("frames.hex");
    let binary = dir.path().join("frames.bin");
    let db = dir.path().join("smarty.db");
    // Encrypted frames as the hex lines of `read --format raw`.
    simulate(&binary, 2000, false);
    let hex = run_ok(
        quiet_smarty()
            .args(["read", "--format", "raw"])
            .arg(&binary),
    );
    std::fs::write(&capture, &hex.stdout).unwrap();

    // No key: a clear error, nothing imported.
    let output = quiet_smarty()
        .args(["import", "--db"])
        .arg(&db)
        .arg(&capture)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--key-file"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let output = run_ok(
        quiet_smarty()
            .args(["import", "--meter", "home", "--key", KEY, "--db"])
            .arg(&db)
            .arg(&capture),
    );
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(
        summary.contains("2000 telegrams imported, 0 skipped as already stored, 0 rejected frames"),
        "{summary}"
    );
    assert!(
        summary.contains("from 2026-11-01T00:00:00+01:00 to 2026-11-01T05:33:10+01:00"),
        "{summary}"
    );

    // The JSON lines of `read --format json` into a second meter: the same readings.
    let lines = run_ok(
        quiet_smarty()
            .args(["read", "--format", "json", "--key", KEY])
            .arg(&binary),
    );
    let jsonl = dir.path().join("telegrams.jsonl");
    std::fs::write(&jsonl, &lines.stdout).unwrap();
    let output = run_ok(
        quiet_smarty()
            .args(["import", "--meter", "garage", "--db"])
            .arg(&db)
            .arg(&jsonl),
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("2000 telegrams imported"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Again: everything is there already.
    let output = run_ok(
        quiet_smarty()
            .args(["import", "--meter", "garage", "--db"])
            .arg(&db)
            .arg(&jsonl),
    );
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("0 telegrams imported, 2000 skipped as already stored"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Two meters: export wants to know which.
    let output = quiet_smarty()
        .args(["export", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("garage, home") && message.contains("--meter"),
        "{message}"
    );

    // Raw rows are the telegrams' values.
    let telegrams: Vec<Json> = String::from_utf8_lossy(&lines.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for meter in ["home", "garage"] {
        let raw = export(&db, "raw", Some(meter));
        assert_eq!(raw.len(), 2000);
        for (row, telegram) in raw.iter().zip(&telegrams) {
            assert_eq!(row["time"], telegram["timestamp"]);
            for (column, code) in [
                ("energy_import_kwh", "1-0:1.8.0"),
                ("power_import_kw", "1-0:1.7.0"),
                ("voltage_l1_v", "1-0:32.7.0"),
                ("current_l2_a", "1-0:51.7.0"),
            ] {
                assert_eq!(
                    row[column].as_f64(),
                    telegram["objects"][code]["value"].as_f64(),
                    "{meter} {column} at {}",
                    row["time"]
                );
            }
        }
    }

    // CSV and JSON exports agree; days are the sums of their periods; gas is the increase of
    // the captures.
    let periods = export(&db, "15m", Some("home"));
    let days = export(&db, "day", Some("home"));
    assert_eq!(days.len(), 1);
    for column in ["energy_import_kwh", "energy_export_kwh", "mbus1_gas_m3"] {
        let sum: i64 = periods.iter().map(|r| wh(&r[column])).sum();
        assert_eq!(wh(&days[0][column]), sum, "{column}");
    }
    let gas: Vec<f64> = telegrams
        .iter()
        .map(|t| t["objects"]["0-1:24.2.1"]["value"].as_f64().unwrap())
        .collect();
    assert_eq!(
        wh(&days[0]["mbus1_gas_m3"]),
        ((gas.last().unwrap() - gas[0]) * 1000.0).round() as i64
    );
    let csv = run_ok(
        quiet_smarty()
            .args(["export", "--meter", "home", "--resolution", "15m", "--db"])
            .arg(&db)
            .args(["--from", "2026-11-01", "--to", "2026-11-02"]),
    );
    let text = String::from_utf8(csv.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&header[..3], ["time", "ts", "energy_import_kwh"]);
    assert!(header.contains(&"power_import_kw_avg") && header.contains(&"mbus1_gas_m3"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), periods.len());
    for (csv_row, json_row) in rows.iter().zip(&periods) {
        assert_eq!(csv_row[0], json_row["time"].as_str().unwrap());
        for (name, cell) in header.iter().zip(csv_row).skip(1) {
            let value = &json_row[*name];
            if value.is_null() {
                assert_eq!(*cell, "", "{name}");
            } else {
                assert_eq!(
                    cell.parse::<f64>().unwrap(),
                    value.as_f64().unwrap(),
                    "{name}"
                );
            }
        }
    }
    // To a file, and hourly: the hours add up to the day.
    let out = dir.path().join("hours.json");
    run_ok(
        quiet_smarty()
            .args([
                "export",
                "--meter",
                "home",
                "--resolution",
                "hour",
                "--format",
                "json",
                "--db",
            ])
            .arg(&db)
            .arg("-o")
            .arg(&out),
    );
    let hours: Json = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let hour_sum: i64 = hours["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| wh(&r["energy_import_kwh"]))
        .sum();
    assert_eq!(hour_sum, wh(&days[0]["energy_import_kwh"]));
    assert_eq!(hours["meter"], "home");

    // No store at all.
    let output = quiet_smarty()
        .args(["export", "--db"])
        .arg(dir.path().join("missing.db"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no store at"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!dir.path().join("missing.db").exists());
}
