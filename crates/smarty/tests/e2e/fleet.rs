//! End to end: a fleet through NATS into PostgreSQL with the commands a person runs —
//! `simulate --meters` and `--keys --nats` (and `--mqtt`), `fleet keys import`, two `fleet
//! ingest --partitions 4` workers on a server that maps subjects to 4 partitions, one of them
//! killed with SIGKILL mid-stream — every frame stored once, in each meter's order; the
//! survivor's `/metrics` and `/healthz`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use smarty_fleet::test_nats::NatsServer;
use smarty_store::test_postgres::TestDatabase;

use crate::support::{Guard, quiet_smarty, reported_address, request, run_ok, tail};

const MASTER: &str = "000102030405060708090A0B0C0D0E0F";

fn smarty() -> Command {
    let mut cmd = quiet_smarty();
    cmd.env("SMARTY_MASTER_KEY", MASTER);
    cmd
}

/// Readings stored, per meter, by SQL of the test's own.
fn stored(db: &TestDatabase) -> Vec<(String, i64)> {
    db.try_query(
        "SELECT m.name || ':' || count(r.*) FROM meter m LEFT JOIN reading r ON r.meter = m.id
         GROUP BY m.name ORDER BY m.name",
    )
    .unwrap_or_default()
    .into_iter()
    .flatten()
    .filter_map(|row| {
        let (name, n) = row.rsplit_once(':')?;
        Some((name.to_owned(), n.parse().ok()?))
    })
    .collect()
}

fn total(db: &TestDatabase) -> i64 {
    stored(db).iter().map(|(_, n)| n).sum()
}

/// A worker on 4 partitions, its standard error into `log`; with `/metrics` on a port of
/// the system's choice when `http`.
fn worker(nats: &str, db: &TestDatabase, log: &std::path::Path, http: bool) -> Guard {
    let mut cmd = smarty();
    cmd.args(["fleet", "ingest", "--nats", nats, "--database", db.url()])
        .args(["--batch", "50", "--ack-wait-s", "2", "--partitions", "4"]);
    if http {
        cmd.args(["--http", "127.0.0.1:0"]);
    }
    Guard::from(
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start smarty fleet ingest"),
    )
}

/// A sample of the Prometheus text `metrics`.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_fleet_is_stored_once_though_a_worker_is_killed() {
    const METERS: i64 = 20;
    let server = NatsServer::with_partitions(4);
    let nats = server.url();
    let db = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.csv");
    let keys = keys.to_str().unwrap();
    run_ok(smarty().args([
        "simulate",
        "--meters",
        &METERS.to_string(),
        "--keys-out",
        keys,
    ]));
    run_ok(smarty().args(["fleet", "keys", "import", keys, "--database", db.url()]));
    // Ten frames of each meter, then two workers; one killed once it stored some.
    run_ok(smarty().args([
        "simulate", "--keys", keys, "--nats", &nats, "--count", "10", "--fast",
    ]));
    let (first_log, second_log) = (dir.path().join("first.log"), dir.path().join("second.log"));
    let mut first = worker(&nats, &db, &first_log, false);
    wait_for("the first readings", || total(&db) > 0);
    let mut second = worker(&nats, &db, &second_log, true);
    let port = reported_address(&mut second, &second_log, "metrics on http://").port();
    // More frames while the first worker dies.
    let mut more = smarty()
        .args([
            "simulate", "--keys", keys, "--nats", &nats, "--count", "20", "--fast",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    first.child.kill().unwrap(); // SIGKILL, mid-batch or not
    assert!(more.wait().unwrap().success());
    // Every frame once: 30 of each meter, redelivered from the dead worker to the other.
    wait_for("every frame stored", || total(&db) == 30 * METERS);
    let _ = first.child.wait();
    let per_meter = stored(&db);
    // Stored in each meter's order: no row written by a later transaction than a row of the
    // same meter with a later time.
    let out_of_order = db.query(
        "SELECT count(*) FROM (SELECT time, max(time) OVER (PARTITION BY meter
           ORDER BY xmin::text::bigint RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
         FROM reading) x WHERE before > time",
    );
    assert_eq!(out_of_order, [Some("0".to_owned())]);
    // The survivor's metrics and health.
    let (status, metrics) = request(port, "/metrics", "").unwrap();
    assert_eq!(status, 200, "{metrics}");
    for name in [
        "smarty_fleet_frames_total",
        "smarty_fleet_stored_total",
        "smarty_fleet_duplicates_total",
        "smarty_fleet_redelivered_total",
        "smarty_fleet_replays_total",
        "smarty_fleet_nonce_reuse_total",
        "smarty_fleet_consumer_lag",
        "smarty_fleet_commit_seconds_count",
    ] {
        assert!(sample(&metrics, name).is_some(), "{name} in\n{metrics}");
    }
    assert!(sample(&metrics, "smarty_fleet_stored_total").unwrap() > 0.0);
    assert_eq!(sample(&metrics, "smarty_fleet_replays_total"), Some(0.0));
    assert_eq!(
        sample(&metrics, "smarty_fleet_out_of_order_total"),
        Some(0.0)
    );
    assert!(metrics.contains("smarty_fleet_rejected_total{reason=\"unknown_meter\"} 0"));
    let (status, health) = request(port, "/healthz", "").unwrap();
    assert_eq!(status, 200, "{health}\n{}", tail(&second_log));
    assert_eq!(per_meter.len(), METERS as usize, "{per_meter:?}");
    assert!(per_meter.iter().all(|(_, n)| *n == 30), "{per_meter:?}");
    // The rollups are the sums over the readings: each meter's energy over its 15-minute
    // periods equals its last register minus its first.
    let mismatches = db.query(
        "SELECT m.name FROM meter m
         JOIN (SELECT meter, max(energy_import_wh) - min(energy_import_wh) AS e FROM reading GROUP BY meter) r
           ON r.meter = m.id
         JOIN (SELECT meter, sum(energy_import_wh) AS e FROM agg_15m GROUP BY meter) a
           ON a.meter = m.id
         WHERE r.e <> a.e",
    );
    assert!(
        mismatches.is_empty(),
        "rollups differ from the readings: {mismatches:?}"
    );
    second.child.kill().unwrap();
}

/// Frames sent through NATS's MQTT listener are mapped to their partitions as native ones.
#[test]
fn frames_through_the_mqtt_listener_land_in_their_partitions() {
    let server = NatsServer::with_partitions(4);
    smarty_fleet::test_nats::block_on(smarty_fleet::test_nats::create_stream(&server.url()));
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.csv");
    let keys = keys.to_str().unwrap();
    run_ok(smarty().args(["simulate", "--meters", "20", "--keys-out", keys]));
    run_ok(smarty().args([
        "simulate",
        "--keys",
        keys,
        "--mqtt",
        &server.mqtt_url(),
        "--count",
        "2",
        "--fast",
    ]));
    let stored = smarty_fleet::test_nats::block_on(smarty_fleet::test_nats::stored(
        &server.url(),
        "SMARTY_RAW",
    ));
    assert_eq!(stored.len(), 40);
    for message in &stored {
        let (title, partition) = smarty_fleet::subject::title_and_partition(&message.subject)
            .unwrap_or_else(|| panic!("{}", message.subject));
        assert_eq!(
            partition,
            Some(smarty_fleet::subject::partition(&title, 4)),
            "{}",
            message.subject
        );
    }
}
