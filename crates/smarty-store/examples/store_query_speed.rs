//! Query times on a real store: the series queries of the API and the dashboard
//! (`ReadConnection::series`), each the best of 5, on the store at LOCATION (one that
//! `bench/store_size.sh` made, or a service's own), its first meter. LOCATION is what
//! `--database` takes: an SQLite file (`PATH` or `sqlite:PATH`) or a PostgreSQL database
//! (`postgres://user@host/database`).
//!
//! ```sh
//! cargo run --release -p smarty-store --example store_query_speed -- smarty.db
//! cargo run --release -p smarty-store --example store_query_speed -- postgres://postgres@127.0.0.1/smarty
//! ```

use std::time::{Duration, Instant};

use smarty_model::period::Resolution;
use smarty_store::config::Location;
use smarty_store::{Store, StoreConfig};

fn main() {
    let Some(text) = std::env::args().nth(1) else {
        eprintln!("usage: store_query_speed LOCATION (a smarty.db, or postgres://user@host/db)");
        std::process::exit(2);
    };
    let location = Location::parse(&text).unwrap_or_else(|e| {
        eprintln!("store_query_speed: {e}");
        std::process::exit(2);
    });
    let store = Store::open_read_only(&StoreConfig::in_location(location)).unwrap();
    let reader = store.reader().unwrap();
    let meter = reader.meters().unwrap().remove(0);
    let last = meter.last_reading.unwrap() + 1;
    let day = 86_400;
    let cases = [
        (
            "a year of days, energy",
            "energy_import_kwh",
            Resolution::Day,
            365 * day,
        ),
        (
            "a year of days, power",
            "power_import_kw",
            Resolution::Day,
            365 * day,
        ),
        (
            "a year of days, gas",
            "mbus1_gas_m3",
            Resolution::Day,
            365 * day,
        ),
        (
            "a year of months, energy",
            "energy_import_kwh",
            Resolution::Month,
            365 * day,
        ),
        (
            "120 days of hours, power",
            "power_import_kw",
            Resolution::Hour,
            120 * day,
        ),
        (
            "14 days of 15 minutes, power",
            "power_import_kw",
            Resolution::Min15,
            14 * day,
        ),
        (
            "12 hours raw, power",
            "power_import_kw",
            Resolution::Raw,
            day / 2,
        ),
        (
            "31 days raw, voltage",
            "voltage_l1_v",
            Resolution::Raw,
            31 * day,
        ),
    ];
    for (label, field, resolution, span) in cases {
        let mut best = Duration::MAX;
        let mut points = 0;
        for _ in 0..5 {
            let timed = Instant::now();
            let series = reader
                .series(&meter.name, field, last - span, last, resolution)
                .unwrap();
            best = best.min(timed.elapsed());
            points = series.t.len();
        }
        println!(
            "{label}: {points} points in {:.2} ms",
            best.as_secs_f64() * 1000.0
        );
    }
    // The tariff report's input: a year of 15-minute energies.
    let mut best = Duration::MAX;
    let mut points = 0;
    for _ in 0..5 {
        let timed = Instant::now();
        points = reader
            .intervals(&meter.name, last - 365 * day, last)
            .unwrap()
            .len();
        best = best.min(timed.elapsed());
    }
    println!(
        "a year of 15-minute intervals (the tariff report's input): {points} points in {:.2} ms",
        best.as_secs_f64() * 1000.0
    );
}
