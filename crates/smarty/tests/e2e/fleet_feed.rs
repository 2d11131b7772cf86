//! End to end: `smarty run --publish-raw URL` feeds a fleet — natively (`nats://`, each frame
//! on its meter's subject with its message id, held while the server is away) and through
//! NATS's MQTT listener (`mqtt://`) — and both paths store the same rows.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use smarty_fleet::test_nats::{self, NatsServer};
use smarty_store::test_postgres::TestDatabase;

use crate::support::{Guard, KEY, http_port, metric, quiet_smarty, read_log, run_ok, stop};

const MASTER: &str = "000102030405060708090A0B0C0D0E0F";
const STREAM: &str = "SMARTY_RAW";

/// A `smarty` process logging at info into `log`.
fn spawn(args: &[&str], log: &Path) -> Guard {
    let child = Command::new(env!("CARGO_BIN_EXE_smarty"))
        .args(args)
        .env_remove("SMARTY_KEY")
        .env("SMARTY_STATE_DIR", log.with_extension("state"))
        .env("RUST_LOG", "smarty=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start smarty");
    Guard::from(child)
}

/// Calls `check` every 50 ms until it is true, for at most 60 s.
fn wait_for(what: &str, log: &Path, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within 60 s; log:\n{}",
            read_log(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// `(system title, frame counter)` of the encrypted frame that `bytes` start with.
fn header(bytes: &[u8]) -> ([u8; 8], u32) {
    match smarty_p1::FrameHeader::check(bytes, 4096) {
        smarty_p1::HeaderCheck::Valid(h) => (h.system_title, h.frame_counter),
        other => panic!("not an encrypted frame: {other:?}"),
    }
}

fn message_count(url: &str) -> u64 {
    test_nats::block_on(test_nats::message_count(url, STREAM))
}

#[test]
fn publish_raw_nats_sends_every_frame_with_its_id_and_holds_them_while_the_server_is_away() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = NatsServer::start();
    let url = server.url();
    test_nats::block_on(test_nats::create_stream(&url));
    server.kill(); // away when smarty starts: the frames wait
    let sim_log = dir.path().join("sim.log");
    let mut sim = spawn(
        &[
            "simulate",
            "--listen",
            "127.0.0.1:0",
            "--key",
            KEY,
            "--interval",
            "100ms",
        ],
        &sim_log,
    );
    let sim_address = crate::support::simulator_address(&mut sim, &sim_log);
    let log = dir.path().join("run.log");
    let mut run = spawn(
        &[
            "run",
            &format!("tcp://{sim_address}"),
            "--key",
            KEY,
            "--name",
            "home",
            "--interval",
            "0.3",
            "--publish-raw",
            &url,
            "--http",
            "127.0.0.1:0",
            "--no-store",
        ],
        &log,
    );
    let port = http_port(&mut run, &log);
    let telegrams = || metric(port, "smarty_telegrams_total", "home", "").unwrap_or(0.0) as u64;
    wait_for("20 telegrams while NATS is away", &log, || {
        telegrams() >= 20
    });
    server.restart();
    wait_for("frames in the stream", &log, || message_count(&url) >= 20);
    // The meter stops: every telegram it accepted is in the stream, the first ones too.
    drop(sim);
    let mut last = (u64::MAX, Instant::now());
    wait_for("the stream to hold every telegram", &log, || {
        let (t, n) = (telegrams(), message_count(&url));
        if t != last.0 {
            last = (t, Instant::now());
        }
        t == n && last.1.elapsed() > Duration::from_secs(1)
    });
    let stored = test_nats::block_on(test_nats::stored(&url, STREAM));
    assert!(stored.len() >= 20, "{}", stored.len());
    let mut counters = Vec::new();
    for message in &stored {
        let (title, counter) = header(&message.payload);
        assert_eq!(message.subject, format!("smarty.raw.{}", hex(&title)));
        assert_eq!(
            message.message_id.as_deref(),
            Some(format!("{}:{counter}", hex(&title)).as_str())
        );
        counters.push(counter);
    }
    // One meter, its frames once each, none missing in between.
    counters.sort_unstable();
    counters.dedup();
    assert_eq!(counters.len(), stored.len(), "no frame twice");
    let span = counters.last().unwrap() - counters.first().unwrap() + 1;
    assert_eq!(span as usize, counters.len(), "no frame missing");
    stop(run, &log);
    assert!(read_log(&log).contains("fleet: publishing raw frames to"));
}

/// The readings and 15-minute rollups of a database, one text line each, without ids.
fn rows(db: &TestDatabase) -> Vec<String> {
    let mut rows = db
        .query(
            "SELECT m.name || ' ' || (to_jsonb(r) - 'meter')::text FROM reading r
             JOIN meter m ON m.id = r.meter ORDER BY m.name, r.time",
        )
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    rows.extend(
        db.query(
            "SELECT 'agg ' || m.name || ' ' || (to_jsonb(a) - 'meter')::text FROM agg_15m a
             JOIN meter m ON m.id = a.meter ORDER BY m.name, a.start",
        )
        .into_iter()
        .flatten(),
    );
    rows
}

#[test]
fn frames_fed_natively_and_through_the_mqtt_listener_store_the_same_rows() {
    const FRAMES: usize = 120;
    let dir = tempfile::tempdir().unwrap();
    // The frames of one virtual meter, 20 minutes of them, in a file.
    let frames = dir.path().join("frames.bin");
    let frames = frames.to_str().unwrap();
    run_ok(quiet_smarty().args([
        "simulate",
        "--key",
        KEY,
        "--output",
        frames,
        "--count",
        &FRAMES.to_string(),
        "--fast",
        "--gas",
        "--seed",
        "3",
        "--start",
        "2026-03-01T00:00:00Z",
        "--frame-counter",
        "5000",
    ]));
    let bytes = std::fs::read(frames).unwrap();
    let (title, _) = header(&bytes);
    let keys = dir.path().join("keys.csv");
    std::fs::write(
        &keys,
        format!(
            "name,system_title,key,auth_key\nhome,{},{KEY},\n",
            hex(&title)
        ),
    )
    .unwrap();
    let keys = keys.to_str().unwrap();
    let mut results = Vec::new();
    for mqtt in [false, true] {
        let server = NatsServer::with_mqtt();
        let url = server.url();
        let db = TestDatabase::create();
        let log = dir.path().join(format!("run-{mqtt}.log"));
        // NATS keeps MQTT messages only when a stream takes them: the stream first (natively,
        // `smarty run` creates it).
        if mqtt {
            test_nats::block_on(test_nats::create_stream(&url));
        }
        run_ok(quiet_smarty().env("SMARTY_MASTER_KEY", MASTER).args([
            "fleet",
            "keys",
            "import",
            keys,
            "--database",
            db.url(),
        ]));
        // A gateway without the key: the frames are forwarded as they came.
        let target = if mqtt { server.mqtt_url() } else { url.clone() };
        let output = run_ok(quiet_smarty().env("RUST_LOG", "smarty=info").args([
            "run",
            frames,
            "--name",
            "home",
            "--publish-raw",
            &target,
            "--no-http",
            "--no-store",
            "--state-dir",
            dir.path().join(format!("state-{mqtt}")).to_str().unwrap(),
        ]));
        std::fs::write(&log, &output.stderr).unwrap();
        wait_for("every frame in the stream", &log, || {
            message_count(&url) == FRAMES as u64
        });
        let stored = test_nats::block_on(test_nats::stored(&url, STREAM));
        let subject = format!("smarty.raw.{}", hex(&title));
        assert!(stored.iter().all(|m| m.subject == subject));
        assert_eq!(
            stored.iter().all(|m| m.message_id.is_some()),
            !mqtt,
            "message ids natively, none through MQTT"
        );
        let mut worker = Guard::from(
            quiet_smarty()
                .env("SMARTY_MASTER_KEY", MASTER)
                .args(["fleet", "ingest", "--nats", &url, "--database", db.url()])
                .args(["--batch", "50"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start smarty fleet ingest"),
        );
        wait_for("every frame stored", &log, || {
            db.try_query("SELECT count(*) FROM reading")
                .ok()
                .and_then(|r| r.into_iter().flatten().next())
                .is_some_and(|n| n == FRAMES.to_string())
        });
        worker.child.kill().unwrap();
        let _ = worker.child.wait();
        results.push(rows(&db));
    }
    let mqtt = results.pop().unwrap();
    let native = results.pop().unwrap();
    assert!(
        native.len() > FRAMES,
        "readings and rollups: {}",
        native.len()
    );
    assert_eq!(native, mqtt, "the same rows through either path");
}
