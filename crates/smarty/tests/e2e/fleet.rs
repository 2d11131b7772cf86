//! End to end: a fleet through NATS into PostgreSQL with the commands a person runs —
//! `simulate --meters` and `--keys --nats`, `fleet keys import`, two `fleet ingest` workers,
//! one of them killed with SIGKILL mid-stream — every frame stored once.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use smarty_fleet::test_nats::NatsServer;
use smarty_store::test_postgres::TestDatabase;

use crate::support::{Guard, quiet_smarty, run_ok};

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

fn worker(nats: &str, db: &TestDatabase) -> Guard {
    Guard::from(
        smarty()
            .args(["fleet", "ingest", "--nats", nats, "--database", db.url()])
            .args(["--batch", "50", "--ack-wait-s", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smarty fleet ingest"),
    )
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
    let server = NatsServer::start();
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
    let mut first = worker(&nats, &db);
    wait_for("the first readings", || total(&db) > 0);
    let mut second = worker(&nats, &db);
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
