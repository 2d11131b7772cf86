//! The store against sums computed directly over generated raw readings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::aggregate::Agg;
use super::query::{MbusChannel, MbusTotal};
use super::reading::{Aggregation, COLUMNS, MbusRecord, Reading};
use super::test_postgres::TestDatabase;
use super::writer::WriteTotals;
use super::*;
use smarty_model::period::Resolution;
use smarty_model::period::{INTERVAL_S, Period, interval_start};
use smarty_model::time::{day_of, day_start};
use smarty_model::unit::Unit;
use smarty_p1::registry::Medium;

/// The position of a column in [`COLUMNS`].
fn column_index(name: &str) -> usize {
    COLUMNS
        .iter()
        .position(|c| c.name == name)
        .expect("a known column")
}

/// Which backend a test runs on: each test of this file runs on both, with the same
/// expectations ([`on_both`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A store of a test: in a temporary directory or a database of its own (dropped after).
struct TestStore {
    store: Store,
    _dir: tempfile::TempDir,
    db: Option<TestDatabase>,
}

impl std::ops::Deref for TestStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl TestStore {
    /// The first column of the first row of `sql` (the same SQL on both backends), as text.
    fn scalar(&self, sql: &str) -> String {
        match &self.db {
            Some(db) => db.query(sql).remove(0).unwrap_or_default(),
            None => self
                .store
                .reader()
                .unwrap()
                .conn()
                .query_row(sql, [], |row| row.get::<_, rusqlite::types::Value>(0))
                .map(|v| match v {
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    other => format!("{other:?}"),
                })
                .unwrap(),
        }
    }

    /// Runs SQL that changes the store behind its back (tests of repairs).
    fn tamper(&self, sql: &str) {
        match &self.db {
            Some(db) => {
                db.query(sql);
            }
            None => self
                .store
                .writer()
                .unwrap()
                .conn_for_tests()
                .execute_batch(sql)
                .unwrap(),
        }
    }
}

/// A store on `backend` with raw readings kept `retention_days` (0: forever).
fn store_keeping(backend: Backend, retention_days: u32) -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, db) = match backend {
        Backend::Sqlite => (StoreConfig::at(dir.path().join("state/smarty.db")), None),
        Backend::Postgres => {
            let db = TestDatabase::create();
            (db.store_config(), Some(db))
        }
    };
    config.raw_retention_days = retention_days;
    config.commit_interval = Duration::from_millis(10);
    TestStore {
        store: Store::open(&config).unwrap(),
        _dir: dir,
        db,
    }
}

/// A store on `backend` with raw readings kept forever.
fn store(backend: Backend) -> TestStore {
    store_keeping(backend, 0)
}

/// Runs each named test (a function of a [`Backend`]) on SQLite and on PostgreSQL:
/// `name::sqlite` and `name::postgres`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name(super::Backend::Sqlite);
                }
                #[test]
                fn postgres() {
                    super::$name(super::Backend::Postgres);
                }
            }
        )*
    };
}

on_both!(
    aggregates_equal_sums_over_raw_readings,
    a_register_that_goes_backwards_starts_afresh,
    order_of_arrival_and_repeats_do_not_change_the_result,
    dst_days_have_92_and_100_periods,
    pruning_keeps_aggregates_and_late_readings_do_not_change_them,
    mbus_readings_are_stored_once_per_capture_time,
    series_at_every_resolution,
    series_points_cover_whole_periods,
    rebuilding_gives_the_same_aggregates,
    a_year_of_days_and_months_agree,
);

/// `count` readings every `step` seconds from `start`: registers that integrate a random
/// power, per-phase values, a voltage that is missing now and then.
fn readings(meter: &str, start: i64, count: usize, step: i64, seed: u64) -> Vec<Reading> {
    let meter: Arc<str> = Arc::from(meter);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut import, mut export, mut q_import, mut q_export) =
        (11_742_449i64, 3_210_000i64, 500_000i64, 400_000i64);
    (0..count)
        .map(|i| {
            let ts = start + i as i64 * step;
            let p: i64 = rng.random_range(-3000..7000);
            let q: i64 = rng.random_range(-400..400);
            import += p.max(0) * step / 3600 + rng.random_range(0..2);
            export += (-p).max(0) * step / 3600;
            q_import += q.max(0) * step / 3600;
            q_export += (-q).max(0) * step / 3600;
            let mut r = Reading::empty(Arc::clone(&meter), ts);
            r.meter_id = Some("SAG1030700123456".into());
            r.energy_import_wh = Some(import);
            r.energy_export_wh = Some(export);
            r.reactive_energy_import_varh = Some(q_import);
            r.reactive_energy_export_varh = Some(q_export);
            r.power_import_w = Some(p.max(0));
            r.power_export_w = Some((-p).max(0));
            let phases = [p / 3, p / 3, p - 2 * (p / 3)];
            r.power_import_l1_w = Some(phases[0].max(0));
            r.power_import_l2_w = Some(phases[1].max(0));
            r.power_import_l3_w = Some(phases[2].max(0));
            r.power_export_l1_w = Some((-phases[0]).max(0));
            r.power_export_l2_w = Some((-phases[1]).max(0));
            r.power_export_l3_w = Some((-phases[2]).max(0));
            r.reactive_power_import_var = Some(q.max(0));
            r.reactive_power_export_var = Some((-q).max(0));
            r.voltage_l1_dv = Some(2300 + rng.random_range(-60..60));
            r.voltage_l2_dv = (i % 7 != 3).then(|| 2310 + rng.random_range(-60..60));
            r.voltage_l3_dv = Some(2290 + rng.random_range(-60..60));
            r.current_l1_ca = Some(phases[0].abs() * 100 / 230);
            r.current_l2_ca = Some(phases[1].abs() * 100 / 230);
            r.current_l3_ca = Some(phases[2].abs() * 100 / 230);
            r
        })
        .collect()
}

fn write_all(store: &Store, readings: &[Reading], batch: usize) -> WriteTotals {
    let mut writer = store.writer().unwrap();
    for chunk in readings.chunks(batch) {
        for r in chunk {
            writer.push(r.clone());
        }
        writer.flush().unwrap();
    }
    writer.totals()
}

/// Expected energy per period of column `c`: last value in the period minus the last value
/// before it (or the first in it when there is none, or when the register dropped), never
/// negative.
fn expected_energies(readings: &[Reading], c: usize) -> BTreeMap<i64, i64> {
    let mut sorted: Vec<&Reading> = readings.iter().collect();
    sorted.sort_by_key(|r| r.ts);
    let mut out = BTreeMap::new();
    let mut previous: Option<i64> = None;
    let mut period_first: BTreeMap<i64, i64> = BTreeMap::new();
    for r in sorted {
        let Some(v) = r.values()[c] else { continue };
        let p = interval_start(r.ts);
        // The period's reference: the register before it, unless the register dropped
        // (a replaced meter starts afresh).
        let base = *period_first
            .entry(p)
            .or_insert_with(|| previous.filter(|&before| before <= v).unwrap_or(v));
        out.insert(p, (v - base).max(0));
        previous = Some(v);
    }
    out
}

/// Expected (sum, count, min, max) per period of instantaneous column `c`.
fn expected_instants(readings: &[Reading], c: usize) -> BTreeMap<i64, (i64, i64, i64, i64)> {
    let mut out: BTreeMap<i64, (i64, i64, i64, i64)> = BTreeMap::new();
    for r in readings {
        let Some(v) = r.values()[c] else { continue };
        let e = out
            .entry(interval_start(r.ts))
            .or_insert((0, 0, i64::MAX, i64::MIN));
        e.0 += v;
        e.1 += 1;
        e.2 = e.2.min(v);
        e.3 = e.3.max(v);
    }
    out
}

fn all_15m(store: &Store) -> Vec<Agg> {
    let reader = store.reader().unwrap();
    let id = reader.meter_id("home").unwrap();
    reader
        .aggregates(id, i64::MIN, i64::MAX, Resolution::Min15)
        .unwrap()
        .into_iter()
        .map(|(_, a)| a)
        .collect()
}

fn all_days(store: &Store) -> Vec<(String, Agg)> {
    let reader = store.reader().unwrap();
    let id = reader.meter_id("home").unwrap();
    let zone = smarty_model::time::meter_zone();
    reader
        .aggregates(id, i64::MIN, i64::MAX, Resolution::Day)
        .unwrap()
        .into_iter()
        .map(|(start, a)| (day_of(start, &zone).to_string(), a))
        .collect()
}

fn check_against_raw(store: &Store, readings: &[Reading]) {
    let aggs = all_15m(store);
    let zone = smarty_model::time::meter_zone();
    for (c, column) in COLUMNS.iter().enumerate() {
        match column.aggregation {
            Aggregation::Energy => {
                let expected = expected_energies(readings, c);
                let got: BTreeMap<i64, i64> = aggs
                    .iter()
                    .filter_map(|a| a.energy[c].map(|e| (a.start, e)))
                    .collect();
                if expected.is_empty() {
                    assert!(got.values().all(|e| *e == 0), "{}", column.name);
                    continue;
                }
                assert_eq!(got, expected, "energy per period of {}", column.name);
                // Telescoping: the sum is the last register minus the first, exactly.
                let values: Vec<i64> = {
                    let mut sorted: Vec<&Reading> = readings.iter().collect();
                    sorted.sort_by_key(|r| r.ts);
                    sorted.iter().filter_map(|r| r.values()[c]).collect()
                };
                // (Between resets: a register that drops starts afresh.)
                let increases: i64 = values.windows(2).map(|w| (w[1] - w[0]).max(0)).sum();
                if values.windows(2).all(|w| w[1] >= w[0]) {
                    assert_eq!(increases, values.last().unwrap() - values.first().unwrap());
                }
                assert!(got.values().sum::<i64>() <= increases, "{}", column.name);
                assert_eq!(
                    got.values().sum::<i64>(),
                    expected.values().sum::<i64>(),
                    "{}",
                    column.name
                );
            }
            Aggregation::Instant => {
                let expected = expected_instants(readings, c);
                let got: BTreeMap<i64, (i64, i64, i64, i64)> = aggs
                    .iter()
                    .filter(|a| a.count[c] > 0)
                    .map(|a| {
                        (
                            a.start,
                            (
                                a.sum[c].unwrap(),
                                a.count[c],
                                a.min[c].unwrap(),
                                a.max[c].unwrap(),
                            ),
                        )
                    })
                    .collect();
                assert_eq!(got, expected, "sum/count/min/max of {}", column.name);
            }
        }
    }
    // Days: the sum of their periods, exactly.
    let days = all_days(store);
    assert!(!days.is_empty());
    for (day, agg) in &days {
        let date: jiff::civil::Date = day.parse().unwrap();
        assert_eq!(agg.start, day_start(date, &zone));
        let periods: Vec<&Agg> = aggs
            .iter()
            .filter(|a| day_of(a.start, &zone) == date)
            .collect();
        for (c, column) in COLUMNS.iter().enumerate() {
            let energy: Option<i64> = periods
                .iter()
                .filter_map(|p| p.energy[c])
                .reduce(|a, b| a + b);
            assert_eq!(agg.energy[c], energy, "{day} {}", column.name);
            assert_eq!(
                agg.count[c],
                periods.iter().map(|p| p.count[c]).sum::<i64>(),
                "{day} {}",
                column.name
            );
        }
        assert_eq!(agg.n, periods.iter().map(|p| p.n).sum::<i64>());
    }
}

fn aggregates_equal_sums_over_raw_readings(backend: Backend) {
    let store = store(backend);
    // Two days and a bit at 10 s, starting mid-period, committed in uneven batches.
    let data = readings("home", 1_794_960_123, 2 * 8640 + 500, 10, 1);
    let totals = write_all(&store, &data, 997);
    assert_eq!(totals.readings, data.len() as u64);
    assert_eq!(totals.duplicates, 0);
    check_against_raw(&store, &data);

    // Raw readings come back exactly.
    let reader = store.reader().unwrap();
    let id = reader.meter_id("home").unwrap();
    let rows = reader.raw_rows(id, i64::MIN / 2, i64::MAX / 2).unwrap();
    assert_eq!(rows.len(), data.len());
    for (row, r) in rows.iter().zip(&data) {
        assert_eq!((row.ts, row.values), (r.ts, r.values()));
    }
    let meters = reader.meters().unwrap();
    assert_eq!(meters.len(), 1);
    assert_eq!(meters[0].name, "home");
    assert_eq!(meters[0].meter_id.as_deref(), Some("SAG1030700123456"));
    assert_eq!(meters[0].first_reading, Some(data[0].ts));
    assert_eq!(meters[0].last_reading, Some(data.last().unwrap().ts));
}

fn a_register_that_goes_backwards_starts_afresh(backend: Backend) {
    let store = store(backend);
    let start = 1_790_000_100 - 1_790_000_100 % INTERVAL_S;
    let mut readings = readings("home", start, 3 * 90, 10, 3);
    // A replaced meter: from the second period on, the register restarts near zero.
    let drop = readings[90].energy_import_wh.unwrap() - 1_000;
    for r in &mut readings[90..] {
        r.energy_import_wh = Some(r.energy_import_wh.unwrap() - drop);
    }
    write_all(&store, &readings, 50);
    let c = column_index("energy_import_wh");
    let periods = all_15m(&store);
    assert_eq!(periods.len(), 3);
    for p in &periods {
        assert!(p.energy[c].unwrap() >= 0, "{:?}", p.energy[c]);
    }
    // The period of the drop counts what the new register added within it.
    let value = |i: usize| readings[i].energy_import_wh.unwrap();
    assert_eq!(periods[1].energy[c], Some(value(179) - value(90)));
    assert_eq!(periods[2].energy[c], Some(value(269) - value(179)));
    let days = all_days(&store);
    let day_sum: i64 = days.iter().map(|(_, d)| d.energy[c].unwrap()).sum();
    let period_sum: i64 = periods.iter().map(|p| p.energy[c].unwrap()).sum();
    assert_eq!(day_sum, period_sum);
}

fn order_of_arrival_and_repeats_do_not_change_the_result(backend: Backend) {
    let (a, b) = (store(backend), store(backend));
    let data = readings("home", 1_794_960_000, 3000, 10, 2);
    write_all(&a, &data, 3000);
    // The second store gets the later half first, then the earlier half in reverse, then
    // everything again.
    let mut shuffled: Vec<Reading> = data[1500..].to_vec();
    shuffled.extend(data[..1500].iter().rev().cloned());
    let totals = write_all(&b, &shuffled, 211);
    assert_eq!(totals.readings, 3000);
    let again = write_all(&b, &data, 1000);
    assert_eq!(again.readings, 0);
    assert_eq!(again.duplicates, 3000);
    assert_eq!(all_15m(&a), all_15m(&b));
    assert_eq!(all_days(&a), all_days(&b));
    check_against_raw(&b, &data);
}

fn dst_days_have_92_and_100_periods(backend: Backend) {
    let store = store(backend);
    let zone = smarty_model::time::meter_zone();
    let mut data = Vec::new();
    for (day, seed) in [("2026-03-28", 3), ("2026-10-24", 4)] {
        let start = day_start(day.parse().unwrap(), &zone);
        data.extend(readings("home", start, 3 * 24 * 60, 60, seed));
    }
    write_all(&store, &data, 5000);
    let days: BTreeMap<String, Agg> = all_days(&store).into_iter().collect();
    let periods = |day: &str| -> i64 {
        store
            .scalar(&format!("SELECT periods FROM agg_day WHERE day = '{day}'"))
            .parse()
            .unwrap()
    };
    assert_eq!(periods("2026-03-28"), 96);
    assert_eq!(periods("2026-03-29"), 92);
    assert_eq!(periods("2026-03-30"), 96);
    assert_eq!(periods("2026-10-25"), 100);
    assert_eq!(days["2026-03-29"].n, 23 * 60);
    assert_eq!(days["2026-10-25"].n, 25 * 60);
    assert_eq!(
        days["2026-10-26"].start - days["2026-10-25"].start,
        25 * 3600
    );
    check_against_raw(&store, &data);
    // The daily series has one point per local day, at local midnight.
    let reader = store.reader().unwrap();
    let series = reader
        .series(
            "home",
            "energy_import_kwh",
            days["2026-03-29"].start,
            days["2026-03-31"].start,
            Resolution::Day,
        )
        .unwrap();
    assert_eq!(
        series.t,
        vec![days["2026-03-29"].start, days["2026-03-30"].start]
    );
}

#[test]
fn an_older_file_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::at(dir.path().join("smarty.db"));
    let old = Store::open_at_version(&config, 1).unwrap();
    let data = readings("home", 1_794_960_000, 500, 10, 5);
    write_all(&old, &data, 500);
    {
        let reader = old.reader().unwrap();
        assert_eq!(schema::version(reader.conn()).unwrap(), 1);
        assert!(reader.meters().is_err(), "version 1 has no M-Bus tables");
    }
    drop(old);
    let store = Store::open(&config).unwrap();
    let reader = store.reader().unwrap();
    assert_eq!(schema::version(reader.conn()).unwrap(), schema::latest());
    assert_eq!(reader.meters().unwrap()[0].first_reading, Some(data[0].ts));
    check_against_raw(&store, &data);
    let mut writer = store.writer().unwrap();
    writer.push_mbus(mbus(1, 1_794_960_000, 10.0));
    assert_eq!(writer.flush().unwrap(), 1);
}

fn mbus(channel: u8, ts: i64, value: f64) -> MbusRecord {
    MbusRecord {
        meter: Arc::from("home"),
        channel,
        medium: if channel == 1 {
            Medium::Gas
        } else {
            Medium::Water
        },
        unit: Some(Unit::parse("m3")),
        ts,
        value,
    }
}

fn pruning_keeps_aggregates_and_late_readings_do_not_change_them(backend: Backend) {
    let store = store_keeping(backend, 1);
    let now = 1_795_000_000;
    let data = readings("home", now - 3 * 86_400, 3 * 8640, 10, 6);
    write_all(&store, &data, 4000);
    let (aggs, days) = (all_15m(&store), all_days(&store));
    let mut writer = store.writer().unwrap();
    let pruned = writer.prune(now).unwrap();
    let cutoff = interval_start(now - 86_400);
    let old = data.iter().filter(|r| r.ts < cutoff).count() as u64;
    assert_eq!(pruned, old);
    assert_eq!(all_15m(&store), aggs, "15-minute aggregates stay");
    assert_eq!(all_days(&store), days, "daily aggregates stay");
    let reader = store.reader().unwrap();
    let id = reader.meter_id("home").unwrap();
    let rows = reader.raw_rows(id, 0, i64::MAX / 2).unwrap();
    assert_eq!(rows.len(), data.len() - old as usize);
    assert!(rows.iter().all(|r| r.ts >= cutoff));
    // Readings of a pruned period again: its aggregate stays as it was.
    for r in &data[..100] {
        writer.push(r.clone());
    }
    writer.flush().unwrap();
    assert_eq!(writer.totals().duplicates, 100);
    assert_eq!(all_15m(&store), aggs);
    assert_eq!(writer.prune(now).unwrap(), 0);
    // Forever: nothing is pruned.
    let forever = self::store(backend);
    let mut keep = forever.writer().unwrap();
    assert_eq!(keep.prune(now).unwrap(), 0);
}

fn mbus_readings_are_stored_once_per_capture_time(backend: Backend) {
    let store = store(backend);
    let zone = smarty_model::time::meter_zone();
    let day = day_start("2026-11-20".parse().unwrap(), &zone);
    let mut writer = store.writer().unwrap();
    let mut gas = 14_239.771;
    // Every telegram (10 s) repeats the last 5-minute capture; two days.
    let mut captures = Vec::new();
    for i in 0..(2 * 8640) {
        let ts = day + i * 10;
        let capture = ts - ts % 300;
        if ts % 300 == 0 {
            gas += if i % 2 == 0 { 0.012 } else { 0.0 };
            captures.push((capture, gas));
        }
        writer.push_mbus(mbus(1, capture, gas));
    }
    writer.push_mbus(mbus(2, day + 3600, 100.0));
    writer.push_mbus(mbus(2, day + 86_400 + 3600, 100.5));
    assert_eq!(writer.flush().unwrap(), captures.len() + 2);
    assert_eq!(writer.totals().mbus, captures.len() as u64 + 2);
    let reader = store.reader().unwrap();
    let meters = reader.meters().unwrap();
    assert_eq!(
        meters[0].mbus,
        vec![
            MbusChannel {
                channel: 1,
                medium: "gas".into(),
                unit: "m3".into()
            },
            MbusChannel {
                channel: 2,
                medium: "water".into(),
                unit: "m3".into()
            },
        ]
    );
    assert_eq!(meters[0].first_reading, None, "no electricity readings");
    // Consumption per day: each capture's increase counts on the day of its capture.
    let totals = reader
        .mbus_totals("home", day, day + 2 * 86_400, Period::Day)
        .unwrap();
    let expected_day1: f64 = captures
        .windows(2)
        .filter(|w| w[1].0 < day + 86_400)
        .map(|w| w[1].1 - w[0].1)
        .sum();
    let gas_totals: Vec<&MbusTotal> = totals.iter().filter(|t| t.name == "mbus1_gas_m3").collect();
    assert_eq!(gas_totals.len(), 2);
    assert_eq!(gas_totals[0].period, "2026-11-20");
    assert_eq!(gas_totals[0].start, day);
    assert!(
        (gas_totals[0].value - expected_day1).abs() < 1e-6,
        "{gas_totals:?}"
    );
    let water: Vec<&MbusTotal> = totals
        .iter()
        .filter(|t| t.name == "mbus2_water_m3")
        .collect();
    assert_eq!(water.len(), 1, "the first capture has nothing before it");
    assert_eq!(water[0].period, "2026-11-21");
    assert!((water[0].value - 0.5).abs() < 1e-9);
    let month = reader
        .mbus_totals("home", day, day + 2 * 86_400, Period::Month)
        .unwrap();
    assert_eq!(month.len(), 2);
    assert_eq!(month[0].period, "2026-11");
    // The same as a series.
    let series = reader
        .series(
            "home",
            "mbus1_gas_m3",
            day,
            day + 2 * 86_400,
            Resolution::Hour,
        )
        .unwrap();
    assert_eq!(series.unit, "m3");
    assert_eq!(series.t.len(), 48 - 1 + 1, "{:?}", series.t);
    let sum: f64 = series.value.iter().sum();
    assert!((sum - (captures.last().unwrap().1 - captures[0].1)).abs() < 1e-6);
    // Days and months (from the captures around their boundaries) agree with the sums of
    // the hours (from every capture); a range that cuts days has the days that start in it,
    // whole.
    let hours = reader
        .series(
            "home",
            "mbus1_gas_m3",
            day - 2 * 86_400,
            day + 3 * 86_400,
            Resolution::Hour,
        )
        .unwrap();
    let mut per_day: BTreeMap<i64, f64> = BTreeMap::new();
    for (t, v) in hours.t.iter().zip(&hours.value) {
        *per_day
            .entry(day_start(day_of(*t, &zone), &zone))
            .or_default() += v;
    }
    assert_eq!(per_day.len(), 2, "{per_day:?}");
    for (from, to) in [
        (day, day + 2 * 86_400),
        (day + 7 * 3600 + 120, day + 2 * 86_400 - 3600),
        (day - 86_400, day + 86_400 + 1),
    ] {
        let days = reader
            .series("home", "mbus1_gas_m3", from, to, Resolution::Day)
            .unwrap();
        let want: Vec<(i64, f64)> = per_day.range(from..to).map(|(t, v)| (*t, *v)).collect();
        assert_eq!(
            days.t,
            want.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            "{from}..{to}"
        );
        for (v, (_, expected)) in days.value.iter().zip(&want) {
            assert!(
                (v - expected).abs() < 1e-9,
                "{from}..{to}: {v} vs {expected}"
            );
        }
    }
    let november = day_start("2026-11-01".parse().unwrap(), &zone);
    let months = reader
        .series(
            "home",
            "mbus1_gas_m3",
            november,
            day + 3 * 86_400,
            Resolution::Month,
        )
        .unwrap();
    assert_eq!(months.t, [november]);
    let total: f64 = per_day.values().sum();
    assert!((months.value[0] - total).abs() < 1e-9);
    let raw = reader
        .series("home", "mbus1_gas_m3", day, day + 3600, Resolution::Raw)
        .unwrap();
    assert_eq!(
        raw.t.len(),
        11,
        "12 captures in the hour, the first has no previous"
    );
}

fn series_at_every_resolution(backend: Backend) {
    let store = store(backend);
    let zone = smarty_model::time::meter_zone();
    let start = day_start("2026-10-30".parse().unwrap(), &zone);
    let data = readings("home", start, 4 * 8640, 10, 7);
    write_all(&store, &data, 8640);
    let reader = store.reader().unwrap();
    let end = start + 4 * 86_400;
    let import = column_index("energy_import_wh");
    let power = column_index("power_import_w");

    // Raw: instantaneous values as sent, energies as increases since the previous reading.
    let raw = reader
        .series(
            "home",
            "power_import_kw",
            start,
            start + 3600,
            Resolution::Raw,
        )
        .unwrap();
    assert_eq!(raw.t.len(), 360);
    assert_eq!(
        raw.value[5],
        data[5].power_import_w.unwrap() as f64 / 1000.0
    );
    assert!(raw.min.is_none());
    let raw_energy = reader
        .series(
            "home",
            "energy_import_kwh",
            start + 600,
            start + 3600,
            Resolution::Raw,
        )
        .unwrap();
    assert_eq!(raw_energy.t.len(), 300);
    assert_eq!(raw_energy.t[0], data[60].ts);
    let increase = data[60].energy_import_wh.unwrap() - data[59].energy_import_wh.unwrap();
    assert_eq!(raw_energy.value[0], increase as f64 / 1000.0);

    // 15 minutes, hours, days: energies add up, averages are those of the raw readings.
    let expected = expected_energies(&data, import);
    let m15 = reader
        .series("home", "energy_import_kwh", start, end, Resolution::Min15)
        .unwrap();
    assert_eq!(m15.t.len(), 4 * 96);
    assert_eq!(m15.unit, "kWh");
    for (t, v) in m15.t.iter().zip(&m15.value) {
        assert_eq!((v * 1000.0).round() as i64, expected[t]);
    }
    let hours = reader
        .series("home", "energy_import_kwh", start, end, Resolution::Hour)
        .unwrap();
    assert_eq!(hours.t.len(), 4 * 24, "no DST change in these days");
    let hour_wh: i64 = expected.range(start..start + 3600).map(|(_, e)| e).sum();
    assert_eq!((hours.value[0] * 1000.0).round() as i64, hour_wh);
    let days = reader
        .series("home", "energy_import_kwh", start, end, Resolution::Day)
        .unwrap();
    assert_eq!(days.t.len(), 4);
    let total: f64 = days.value.iter().sum();
    let register = |r: &Reading| r.energy_import_wh.unwrap();
    assert_eq!(
        (total * 1000.0).round() as i64,
        register(data.last().unwrap()) - register(&data[0])
    );
    let power_hours = reader
        .series(
            "home",
            "power_import_kw",
            start,
            start + 7200,
            Resolution::Hour,
        )
        .unwrap();
    let first_hour: Vec<i64> = data[..360]
        .iter()
        .map(|r| r.values()[power].unwrap())
        .collect();
    let avg = first_hour.iter().sum::<i64>() as f64 / 360.0 / 1000.0;
    assert!(
        (power_hours.value[0] - avg).abs() < 1e-4,
        "{} vs {avg}",
        power_hours.value[0]
    );
    assert_eq!(
        power_hours.max.as_ref().unwrap()[0],
        *first_hour.iter().max().unwrap() as f64 / 1000.0
    );
    assert_eq!(
        power_hours.min.as_ref().unwrap()[0],
        *first_hour.iter().min().unwrap() as f64 / 1000.0
    );
    let voltage = reader
        .series("home", "voltage_l2_v", start, end, Resolution::Day)
        .unwrap();
    assert_eq!(voltage.unit, "V");
    assert!(voltage.value.iter().all(|v| (225.0..237.0).contains(v)));

    // Months from days: October's two days and November's two (a month is in a series when
    // it starts in the range).
    let october = day_start("2026-10-01".parse().unwrap(), &zone);
    let months = reader
        .series("home", "energy_import_kwh", october, end, Resolution::Month)
        .unwrap();
    assert_eq!(months.t.len(), 2);
    assert_eq!(months.t[0], day_start("2026-10-01".parse().unwrap(), &zone));
    assert_eq!(months.t[1], day_start("2026-11-01".parse().unwrap(), &zone));
    assert!((months.value[0] - days.value[0] - days.value[1]).abs() < 1e-9);

    // Intervals: the energies of the 15-minute periods.
    let intervals = reader.intervals("home", start, start + 86_400).unwrap();
    assert_eq!(intervals.len(), 96);
    assert_eq!(intervals[1].start, start + 900);
    assert_eq!(intervals[1].energy_import_wh, expected[&(start + 900)]);

    // Mistakes.
    assert!(matches!(
        reader.series(
            "home",
            "power_import_kw",
            start,
            start + 32 * 86_400,
            Resolution::Raw
        ),
        Err(StoreError::TooManyPoints {
            days: 32,
            max_days: 31
        })
    ));
    assert!(matches!(
        reader.series("home", "power_kw", start, end, Resolution::Day),
        Err(StoreError::UnknownField(_))
    ));
    assert!(matches!(
        reader.series("home", "mbus3_heat_gj", start, end, Resolution::Day),
        Err(StoreError::UnknownField(_))
    ));
    assert!(matches!(
        reader.series("garage", "power_import_kw", start, end, Resolution::Day),
        Err(StoreError::UnknownMeter(_))
    ));
    assert!(matches!(
        reader.intervals("garage", start, end),
        Err(StoreError::UnknownMeter(_))
    ));
}

/// A series over a range that starts and ends inside periods: points whose start is in the
/// range, each one for its whole period (the same value as in a series over whole periods),
/// at every resolution, for registers, instantaneous values and M-Bus channels alike.
fn series_points_cover_whole_periods(backend: Backend) {
    let store = store(backend);
    let zone = smarty_model::time::meter_zone();
    let start = day_start("2026-10-30".parse().unwrap(), &zone);
    let end = start + 4 * 86_400;
    let data = readings("home", start, 4 * 8640, 10, 7);
    write_all(&store, &data, 8640);
    let mut writer = store.writer().unwrap();
    for (i, ts) in (start..end).step_by(300).enumerate() {
        writer.push_mbus(mbus(1, ts, 100.0 + i as f64 * 0.013));
    }
    writer.flush().unwrap();
    let reader = store.reader().unwrap();
    let ranges = [
        (start + 1800, start + 3 * 3600 + 600),
        (
            start + 86_400 + 3 * 3600 + 17,
            start + 3 * 86_400 + 13 * 3600,
        ),
        (start + 2 * 86_400 + 12 * 3600, end - 3600),
    ];
    for field in ["energy_import_kwh", "power_import_kw", "mbus1_gas_m3"] {
        for resolution in [
            Resolution::Min15,
            Resolution::Hour,
            Resolution::Day,
            Resolution::Month,
        ] {
            let whole = reader
                .series(
                    "home",
                    field,
                    start - 40 * 86_400,
                    end + 40 * 86_400,
                    resolution,
                )
                .unwrap();
            for (from, to) in ranges {
                let part = reader.series("home", field, from, to, resolution).unwrap();
                let want: Vec<usize> = (0..whole.t.len())
                    .filter(|&i| (from..to).contains(&whole.t[i]))
                    .collect();
                let label = format!("{field} {resolution:?} {from}..{to}");
                assert_eq!(
                    part.t,
                    want.iter().map(|&i| whole.t[i]).collect::<Vec<_>>(),
                    "{label}"
                );
                let values: Vec<f64> = want.iter().map(|&i| whole.value[i]).collect();
                assert_eq!(part.value, values, "{label}");
                if let (Some(min), Some(whole_min)) = (&part.min, &whole.min) {
                    let mins: Vec<f64> = want.iter().map(|&i| whole_min[i]).collect();
                    assert_eq!(min, &mins, "{label}");
                }
            }
        }
    }
}

fn rebuilding_gives_the_same_aggregates(backend: Backend) {
    let store = store(backend);
    let data = readings("home", 1_794_960_000, 8640, 10, 8);
    write_all(&store, &data, 8640);
    let (aggs, days) = (all_15m(&store), all_days(&store));
    store.tamper(
        "UPDATE agg_15m SET energy_import_wh = 0, power_import_w_sum = 1;
         UPDATE agg_day SET energy_import_wh = 0;",
    );
    assert_ne!(all_15m(&store), aggs);
    let mut writer = store.writer().unwrap();
    writer
        .rebuild_aggregates("home", data[0].ts, data.last().unwrap().ts + 1)
        .unwrap();
    assert_eq!(all_15m(&store), aggs);
    assert_eq!(all_days(&store), days);
    assert!(matches!(
        writer.rebuild_aggregates("garage", 0, 1),
        Err(StoreError::UnknownMeter(_))
    ));
}

fn a_year_of_days_and_months_agree(backend: Backend) {
    let store = store(backend);
    // A year at 15 minutes: every period and day has its aggregate.
    let start = 1_767_222_000; // 2026-01-01 00:00 +01:00
    let data = readings("home", start, 365 * 96, 900, 9);
    write_all(&store, &data, 20_000);
    let reader = store.reader().unwrap();
    let end = start + 366 * 86_400;
    let days = reader
        .series("home", "energy_import_kwh", start, end, Resolution::Day)
        .unwrap();
    let power = reader
        .series("home", "power_import_kw", start, end, Resolution::Day)
        .unwrap();
    assert_eq!(days.t.len(), 365);
    assert_eq!(power.t.len(), 365);
    let months = reader
        .series("home", "energy_import_kwh", start, end, Resolution::Month)
        .unwrap();
    assert_eq!(months.t.len(), 12);
    let year: f64 = months.value.iter().sum();
    let days_sum: f64 = days.value.iter().sum();
    assert!((year - days_sum).abs() < 1e-6);
}

#[test]
fn a_restarted_postgres_server_loses_nothing_and_doubles_nothing() {
    use super::test_postgres::TestServer;
    let server = TestServer::start();
    let store = Store::open(&server.store_config()).unwrap();
    let mut writer = store.writer().unwrap();
    let data = readings("home", 1_794_960_000, 900, 10, 11);
    let (first, second) = data.split_at(300);
    for r in first {
        writer.push(r.clone());
    }
    assert_eq!(writer.flush().unwrap(), 300);
    // Stopped: the commit fails and its readings stay buffered.
    server.stop();
    for r in &second[..300] {
        writer.push(r.clone());
    }
    let error = writer.flush().unwrap_err().to_string();
    assert!(error.contains("store"), "{error}");
    assert_eq!(writer.buffered(), 300);
    // Started again: the next commit connects again and writes them; readings sent again
    // (the 300 still buffered, and 100 more) are stored once.
    server.restart();
    for r in second[..400].iter().chain(&second[300..]) {
        writer.push(r.clone());
    }
    writer.flush().unwrap();
    assert_eq!(writer.buffered(), 0);
    let totals = writer.totals();
    assert_eq!(totals.readings, data.len() as u64);
    assert_eq!(totals.duplicates, 400);
    drop(writer);
    let reader = Store::open_read_only(&server.store_config())
        .unwrap()
        .reader()
        .unwrap();
    let id = reader.meter_id("home").unwrap();
    let rows = reader.raw_rows(id, 0, i64::MAX / 2).unwrap();
    assert_eq!(rows.len(), data.len());
    let stored = Store::open_read_only(&server.store_config()).unwrap();
    check_against_raw(&stored, &data);
}

#[test]
fn a_history_copied_to_postgres_and_back_gives_the_same_answers() {
    // Three days, the first of them pruned to its aggregates, with gas captures.
    let now = 1_795_000_000;
    let source = store_keeping(Backend::Sqlite, 2);
    let data = readings("home", now - 3 * 86_400, 3 * 8640, 10, 12);
    write_all(&source, &data, 5000);
    {
        let mut writer = source.writer().unwrap();
        for h in 0..72 {
            writer.push_mbus(mbus(
                1,
                now - 3 * 86_400 + h * 3600,
                100.0 + h as f64 * 0.25,
            ));
        }
        writer.flush().unwrap();
        assert!(writer.prune(now).unwrap() > 0);
    }
    let server = store(Backend::Postgres);
    let report = copy::copy(&source, &server, |_, _| {}).unwrap();
    let counts = &report.meters["home"];
    assert_eq!(counts.captures, 72);
    assert!(counts.readings < data.len() as u64 && counts.periods > 3 * 96 - 2);
    // Copying again adds nothing.
    assert_eq!(copy::copy(&source, &server, |_, _| {}).unwrap(), report);
    let back = store(Backend::Sqlite);
    assert_eq!(copy::copy(&server, &back, |_, _| {}).unwrap(), report);
    // The same answers from all three.
    let answers = |store: &Store| {
        let reader = store.reader().unwrap();
        let mut out = Vec::new();
        for (field, resolution) in [
            ("energy_import_kwh", Resolution::Day),
            ("energy_import_kwh", Resolution::Hour),
            ("power_import_kw", Resolution::Min15),
            ("voltage_l1_v", Resolution::Raw),
            ("mbus1_gas_m3", Resolution::Day),
        ] {
            let (from, to) = if resolution == Resolution::Raw {
                (now - 86_400, now)
            } else {
                (now - 4 * 86_400, now)
            };
            out.push(reader.series("home", field, from, to, resolution).unwrap());
        }
        (out, reader.meters().unwrap())
    };
    let expected = answers(&source);
    assert!(!expected.0[0].t.is_empty());
    assert_eq!(answers(&server), expected);
    assert_eq!(answers(&back), expected);
}

#[test]
fn readings_held_on_disk_while_postgres_is_down_reach_it_once_it_is_back() {
    use super::spill::Spill;
    use super::test_postgres::TestServer;
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store-spill.db");
    let store = Store::open(&server.store_config()).unwrap();
    let mut writer = store.writer().unwrap();
    let data = readings("home", 1_794_960_000, 2000, 10, 13);
    for r in &data[..500] {
        writer.push(r.clone());
    }
    writer.flush().unwrap();
    server.stop();
    let mut spill = Spill::at(&path, 1200).unwrap();
    for r in &data[500..1000] {
        writer.push(r.clone());
    }
    writer.push_mbus(mbus(1, data[900].ts, 123.5));
    assert!(writer.flush().is_err());
    assert_eq!(spill.hold(&mut writer).unwrap(), 0);
    assert_eq!((writer.buffered(), spill.held()), (0, 501));
    // Beyond its limit the spill drops, and says how many.
    for r in &data[1000..1800] {
        writer.push(r.clone());
    }
    assert_eq!(spill.hold(&mut writer).unwrap(), 800 - 699);
    assert_eq!(spill.held(), 1200);
    // A restart of the process finds what the spill holds.
    drop(spill);
    let mut spill = Spill::at(&path, 1200).unwrap();
    assert_eq!(spill.held(), 1200);
    // The server is back: the spill drains into it and goes.
    server.restart();
    writer.flush().unwrap();
    assert_eq!(spill.drain_into(&mut writer).unwrap(), 1200);
    assert!(
        !path.exists(),
        "the spill file is removed once its readings are stored"
    );
    let reader = store.reader().unwrap();
    let id = reader.meter_id("home").unwrap();
    let rows = reader.raw_rows(id, 0, i64::MAX / 2).unwrap();
    let expected: Vec<i64> = data[..1699].iter().map(|r| r.ts).collect();
    assert_eq!(rows.iter().map(|r| r.ts).collect::<Vec<_>>(), expected);
    assert_eq!(
        reader.mbus_captures(id, 1, 0, i64::MAX / 2).unwrap().len(),
        1
    );
    check_against_raw(&store, &data[..1699]);
}

#[test]
fn fleet_rejections_add_up_per_meter_and_reason_and_counters_keep_their_tags() {
    let db = TestDatabase::create();
    let store = Store::open(&db.store_config()).unwrap();
    assert!(store.fleet_rejections().unwrap().is_empty());
    let add = |rows: &[(&str, &str, u64)]| {
        let rows: Vec<(String, String, u64)> = rows
            .iter()
            .map(|(m, r, n)| ((*m).to_owned(), (*r).to_owned(), *n))
            .collect();
        store.add_fleet_rejections(&rows).unwrap();
    };
    add(&[
        ("meter-1", "tag", 2),
        ("5341470000000001", "unknown_meter", 1),
    ]);
    add(&[
        ("meter-1", "tag", 3),
        ("meter-1", "replay", 1),
        ("meter-1", "tag", 1),
    ]);
    let got: Vec<(String, String, u64)> = store
        .fleet_rejections()
        .unwrap()
        .into_iter()
        .map(|r| (r.meter, r.reason, r.count))
        .collect();
    assert_eq!(
        got,
        [
            ("5341470000000001".to_owned(), "unknown_meter".to_owned(), 1),
            ("meter-1".to_owned(), "replay".to_owned(), 1),
            ("meter-1".to_owned(), "tag".to_owned(), 6),
        ]
    );
    let last = store.fleet_rejections().unwrap()[2].last_at;
    assert!((jiff::Timestamp::now() - last).get_seconds().abs() < 60);

    // Counters never go back; the tag goes with the counter; another key starts again.
    let title = *b"SAG\0\0\0\0\x01";
    let c = |counter: u32, tag: &[u8], check: &str| {
        FleetCounter::new(
            "meter-1".into(),
            title,
            check.into(),
            counter,
            Some(tag.to_vec()),
        )
    };
    store
        .save_fleet_counters(&[c(10, b"ten", "AAAAAA")])
        .unwrap();
    store
        .save_fleet_counters(&[c(9, b"nine", "AAAAAA")])
        .unwrap();
    assert_eq!(store.fleet_counters().unwrap(), [c(10, b"ten", "AAAAAA")]);
    store
        .save_fleet_counters(&[c(11, b"eleven", "AAAAAA")])
        .unwrap();
    assert_eq!(
        store.fleet_counters().unwrap(),
        [c(11, b"eleven", "AAAAAA")]
    );
    store
        .save_fleet_counters(&[c(1, b"one", "BBBBBB")])
        .unwrap();
    assert_eq!(store.fleet_counters().unwrap(), [c(1, b"one", "BBBBBB")]);
    // The household's counters and the fleet's are the same rows.
    assert_eq!(
        store.frame_counters("meter-1", "BBBBBB").unwrap(),
        [("5341470000000001".to_owned(), 1)]
    );
}

/// The 15-minute and day aggregates of meter `name`.
fn aggregates_of(store: &Store, name: &str) -> (Vec<Agg>, Vec<(i64, Agg)>) {
    let reader = store.reader().unwrap();
    let id = reader.meter_id(name).unwrap();
    let min15 = reader
        .aggregates(id, i64::MIN, i64::MAX, Resolution::Min15)
        .unwrap()
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    let days = reader
        .aggregates(id, i64::MIN, i64::MAX, Resolution::Day)
        .unwrap();
    (min15, days)
}

/// PostgreSQL writes a batch of many meters set-wise, SQLite meter by meter: fed the same
/// batches — meters mixed, periods arriving late, out of order, interleaved with stored
/// readings, and again — both keep the same aggregates, and those of each meter equal sums
/// over its readings.
#[test]
fn many_meters_set_wise_give_the_aggregates_of_meter_by_meter() {
    let (sqlite, postgres) = (store(Backend::Sqlite), store(Backend::Postgres));
    let start = 1_794_960_000 - 3 * 3600;
    let meters: Vec<Vec<Reading>> = (0..6)
        .map(|m| readings(&format!("m{m}"), start + m * 7, 800, 10, 40 + m as u64))
        .collect();
    // Every meter's readings in the order of arrival: mostly in order, a late stretch,
    // every third reading of a stretch first (the rest fills in between), repeats.
    let mut rng = StdRng::seed_from_u64(5);
    let mut arrivals: Vec<Reading> = Vec::new();
    for data in &meters {
        let mut order: Vec<Reading> = Vec::new();
        order.extend(data[300..500].iter().step_by(3).cloned());
        order.extend(data[..300].iter().cloned());
        order.extend(data[300..].iter().cloned());
        order.extend(data[100..140].iter().cloned());
        // Late: a stretch of the second hour after everything else.
        let late: Vec<Reading> = order.drain(380..430).collect();
        order.extend(late);
        arrivals.extend(order);
    }
    // Meters interleaved: each batch takes the next readings of random meters.
    let per_meter = arrivals.len() / meters.len();
    let mut next = vec![0usize; meters.len()];
    let mut mixed = Vec::new();
    while next.iter().any(|&n| n < per_meter) {
        let m = rng.random_range(0..meters.len());
        let take = rng.random_range(1..40).min(per_meter - next[m]);
        mixed.extend_from_slice(&arrivals[m * per_meter + next[m]..][..take]);
        next[m] += take;
    }
    let mut totals = Vec::new();
    for store in [&sqlite, &postgres] {
        let mut writer = store.writer().unwrap();
        let mut at = 0;
        while at < mixed.len() {
            let size = rng.random_range(1..400).min(mixed.len() - at);
            for r in &mixed[at..at + size] {
                writer.push(r.clone());
            }
            writer.flush().unwrap();
            at += size;
        }
        totals.push(writer.totals());
    }
    assert_eq!(totals[0], totals[1]);
    assert_eq!(totals[1].readings, 6 * 800);
    assert_eq!(totals[1].duplicates, (mixed.len() - 6 * 800) as u64);
    for (m, data) in meters.iter().enumerate() {
        let name = format!("m{m}");
        let (sqlite_15m, sqlite_days) = aggregates_of(&sqlite, &name);
        let (postgres_15m, postgres_days) = aggregates_of(&postgres, &name);
        assert!(sqlite_15m.len() >= 9, "{}", sqlite_15m.len());
        assert_eq!(postgres_15m, sqlite_15m, "{name}");
        assert_eq!(postgres_days, sqlite_days, "{name}");
        let c = column_index("energy_import_wh");
        let energy: i64 = postgres_15m.iter().map(|a| a.energy[c].unwrap()).sum();
        assert_eq!(
            energy,
            data.last().unwrap().energy_import_wh.unwrap() - data[0].energy_import_wh.unwrap()
        );
    }
}

/// The fleet's frame counters go with the readings of their frames, in their transaction:
/// saved when it commits (never going back), not at all when it fails; SQLite keeps none.
#[test]
fn frame_counters_are_committed_with_the_readings() {
    let title = *b"SAG\0\0\0\0\x02";
    let c = |counter: u32, tag: &[u8]| {
        FleetCounter::new(
            "home".into(),
            title,
            "AAAAAA".into(),
            counter,
            Some(tag.to_vec()),
        )
    };
    let store = store(Backend::Postgres);
    let data = readings("home", 1_794_960_000, 20, 10, 9);
    let mut writer = store.writer().unwrap();
    for r in &data[..10] {
        writer.push(r.clone());
    }
    assert_eq!(writer.flush_with_counters(&[c(10, b"ten")]).unwrap(), 10);
    assert_eq!(store.fleet_counters().unwrap(), [c(10, b"ten")]);
    // An older counter (a redelivered batch) does not take it back.
    for r in &data[..12] {
        writer.push(r.clone());
    }
    assert_eq!(writer.flush_with_counters(&[c(9, b"nine")]).unwrap(), 2);
    assert_eq!(store.fleet_counters().unwrap(), [c(10, b"ten")]);
    // A batch that fails leaves neither readings nor counters (here the counters fail).
    store.tamper("ALTER TABLE frame_counter ADD CONSTRAINT no_more CHECK (counter < 15)");
    for r in &data[12..] {
        writer.push(r.clone());
    }
    assert!(writer.flush_with_counters(&[c(20, b"twenty")]).is_err());
    assert_eq!(store.fleet_counters().unwrap(), [c(10, b"ten")]);
    assert_eq!(writer.buffered(), 8);
    assert_eq!(store.scalar("SELECT count(*) FROM reading"), "12");
    store.tamper("ALTER TABLE frame_counter DROP CONSTRAINT no_more");
    assert_eq!(writer.flush_with_counters(&[c(20, b"twenty")]).unwrap(), 8);
    assert_eq!(store.fleet_counters().unwrap(), [c(20, b"twenty")]);

    let sqlite = self::store(Backend::Sqlite);
    let mut writer = sqlite.writer().unwrap();
    writer.push(data[0].clone());
    assert!(matches!(
        writer.flush_with_counters(&[c(1, b"one")]),
        Err(StoreError::Config(_))
    ));
}
