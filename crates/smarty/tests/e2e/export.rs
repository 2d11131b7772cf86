//! End to end: `smarty export` at every resolution over ranges that start and end anywhere —
//! on a local midnight or not, on a 15-minute boundary or not, inside one period, across a
//! daylight-saving change — on a store filled by `smarty import`.
//!
//! An aggregated export holds every period that overlaps the range, each one whole: the rows
//! of a range are exactly the rows of the whole history whose period overlaps it. A raw export
//! holds the readings inside the range.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value as Json;

use crate::support::{quiet_smarty, run_ok};

const KEY: &str = "000102030405060708090A0B0C0D0E0F";
/// 2025-10-25 00:00 +02:00: two days at a telegram a minute, over the night the clocks go
/// back (2025-10-26 has 25 hours).
const START: i64 = 1_761_343_200;
const DAY: i64 = 86_400;

type Row = BTreeMap<String, Json>;

/// Simulates `count` frames every `interval` from `start` (with gas and water meters) and
/// imports them into `db`.
fn fill(dir: &Path, db: &Path, start: i64, count: u64, interval: &str) {
    let capture = dir.join(format!("capture-{start}.bin"));
    run_ok(
        quiet_smarty()
            .args(["simulate", "--start", &start.to_string(), "--count"])
            .arg(count.to_string())
            .args(["--interval", interval, "--fast", "--gas", "--water"])
            .args(["--seed", "7", "--key", KEY, "-o"])
            .arg(&capture),
    );
    run_ok(
        quiet_smarty()
            .arg("import")
            .arg(&capture)
            .args(["--key", KEY, "--meter", "home", "--quiet", "--db"])
            .arg(db),
    );
}

/// `smarty export --format json` with the given range options: its rows.
fn export(db: &Path, resolution: &str, range: &[&str]) -> Vec<Row> {
    let output = run_ok(
        quiet_smarty()
            .args(["export", "--db"])
            .arg(db)
            .args(["--resolution", resolution, "--format", "json"])
            .args(range),
    );
    let document: Json = serde_json::from_slice(&output.stdout).expect("export is JSON");
    assert_eq!(document["resolution"], resolution);
    document["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| serde_json::from_value(row.clone()).unwrap())
        .collect()
}

fn ts(row: &Row) -> i64 {
    row["ts"].as_i64().unwrap()
}

/// The electricity columns a resolution must have, each with a number in every row.
fn electricity(resolution: &str) -> [&'static str; 2] {
    match resolution {
        "raw" => ["energy_import_kwh", "power_import_kw"],
        _ => ["energy_import_kwh", "power_import_kw_avg"],
    }
}

/// Exports the ranges at `resolutions` from the store holding two days of history from
/// `start` (a local midnight) and compares them with the export of the whole history.
fn check_ranges(db: &Path, start: i64, resolutions: &[&str]) {
    let local = |offset: i64| (start + offset).to_string();
    // (name, from, to): Unix seconds, as `--from` and `--to` take them.
    let ranges = [
        ("two whole days", local(0), local(2 * DAY + 3600)),
        (
            "mid-day, no midnight",
            local(10 * 3600 + 433),
            local(14 * 3600),
        ),
        (
            "inside one quarter hour",
            local(10 * 3600 + 120),
            local(10 * 3600 + 540),
        ),
        (
            "across midnight (and the clock change)",
            local(20 * 3600 + 60),
            local(DAY + 5 * 3600 + 600),
        ),
        (
            "the last minutes",
            local(2 * DAY - 300),
            local(2 * DAY - 60),
        ),
    ];
    for &resolution in resolutions {
        let all = if resolution == "raw" {
            export(
                db,
                resolution,
                &["--from", &local(-DAY), "--to", &local(3 * DAY)],
            )
        } else {
            // A wide range: every period of every resolution is in it whole.
            export(
                db,
                resolution,
                &["--from", &local(-40 * DAY), "--to", &local(40 * DAY)],
            )
        };
        assert!(!all.is_empty(), "{resolution}: the whole history is empty");
        for column in electricity(resolution) {
            assert!(
                all.iter().all(|row| row[column].is_number()),
                "{resolution}: {column} missing in the whole history: {:?}",
                all[0]
            );
        }
        if resolution != "raw" {
            assert!(
                all.iter().any(|row| row["mbus1_gas_m3"].is_number()),
                "{resolution}: no gas in the whole history"
            );
        }
        for (name, from, to) in &ranges {
            let (from_s, to_s): (i64, i64) = (from.parse().unwrap(), to.parse().unwrap());
            let rows = export(db, resolution, &["--from", from, "--to", to]);
            let expected: Vec<Row> = if resolution == "raw" {
                all.iter()
                    .filter(|row| (from_s..to_s).contains(&ts(row)))
                    .cloned()
                    .collect()
            } else {
                // The period holding `from` starts at the last row at or before it.
                let first = all
                    .iter()
                    .map(ts)
                    .filter(|&t| t <= from_s)
                    .max()
                    .unwrap_or(from_s);
                all.iter()
                    .filter(|row| (first..to_s).contains(&ts(row)))
                    .cloned()
                    .collect()
            };
            assert!(
                !expected.is_empty(),
                "{resolution}, {name}: nothing expected"
            );
            assert_eq!(
                rows.iter().map(ts).collect::<Vec<_>>(),
                expected.iter().map(ts).collect::<Vec<_>>(),
                "{resolution}, {name}: the rows' times"
            );
            for (row, want) in rows.iter().zip(&expected) {
                assert_eq!(row, want, "{resolution}, {name}");
            }
        }
    }
}

/// Aggregates are kept forever: a fixed history over the night the clocks went back.
#[test]
fn aggregated_exports_of_any_range_hold_whole_periods() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("smarty.db");
    fill(dir.path(), &db, START, 2 * 1440, "60s");
    check_ranges(&db, START, &["15m", "hour", "day", "month"]);
}

/// Raw readings are kept for the retention period (90 days): a history of the last days.
#[test]
fn raw_exports_of_any_range_hold_the_readings_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("smarty.db");
    let zone = jiff::tz::TimeZone::get("Europe/Luxembourg").unwrap();
    let today = jiff::Timestamp::now().to_zoned(zone.clone()).date();
    let start = (today - jiff::Span::new().days(5))
        .to_zoned(zone)
        .unwrap()
        .timestamp()
        .as_second();
    fill(dir.path(), &db, start, 2 * 1440, "60s");
    check_ranges(&db, start, &["raw", "15m", "day"]);
}

/// A store that has a few minutes of readings, as after starting the service: the plain
/// `smarty export` (15 minutes, from the first reading to now) and every other resolution
/// print those minutes with their values, not a bare header.
#[test]
fn a_few_minutes_of_history_export_with_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("smarty.db");
    // Two minutes into a quarter hour three hours ago, 30 telegrams 10 s apart: five
    // minutes, no boundary of any period but the quarter hour's start before them.
    let now = jiff::Timestamp::now().as_second();
    let start = (now - 3 * 3600).div_euclid(900) * 900 + 120;
    fill(dir.path(), &db, start, 30, "10s");
    let csv = run_ok(quiet_smarty().args(["export", "--db"]).arg(&db));
    let text = String::from_utf8(csv.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    assert!(
        header.contains(&"energy_import_kwh") && header.contains(&"power_import_kw_avg"),
        "the plain export has no electricity columns: {text}"
    );
    assert_eq!(rows.len(), 1, "one quarter hour: {text}");
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    assert_eq!(rows[0][column("ts")], (start - 120).to_string(), "{text}");
    for name in [
        "energy_import_kwh",
        "power_import_kw_avg",
        "power_import_kw_max",
    ] {
        let value = rows[0][column(name)];
        assert!(value.parse::<f64>().is_ok(), "{name} is {value:?}: {text}");
    }
    for resolution in ["raw", "15m", "hour", "day", "month"] {
        let rows = export(&db, resolution, &[]);
        let want = if resolution == "raw" { 30 } else { 1 };
        assert_eq!(rows.len(), want, "{resolution}: {rows:?}");
        for column in electricity(resolution) {
            assert!(
                rows.iter().all(|row| row[column].is_number()),
                "{resolution}: {column} missing: {rows:?}"
            );
        }
    }
}
