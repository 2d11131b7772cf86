//! End to end on PostgreSQL: `smarty run` writing to a server that is restarted under it,
//! and a history moved from SQLite to PostgreSQL and back by `smarty store migrate`.

use std::fs::File;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;

use smarty_store::test_postgres::TestServer;

use crate::store::check_aggregates_from;
use crate::support::{
    Guard, KEY, http_port, metric, read_log, request, simulator_address, smarty, stop,
    wait_healthy, wait_until,
};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `/healthz` of `port`: the status and the body as JSON (`None` while nothing answers).
fn health(port: u16) -> Option<(u16, Json)> {
    let (status, body) = request(port, "/healthz", "").ok()?;
    Some((
        status,
        serde_json::from_str(&body).expect("/healthz is JSON"),
    ))
}

/// The readings stored on `server` and the time of the last one (`None` while the schema is
/// not there yet).
fn stored(server: &TestServer) -> Option<(i64, i64)> {
    let rows = server
        .try_query("SELECT count(*)::text || ' ' || coalesce(max(extract(epoch FROM time))::bigint, 0)::text FROM reading")
        .ok()?;
    let text = rows.first()?.clone()?;
    let (count, last) = text.split_once(' ')?;
    Some((count.parse().ok()?, last.parse().ok()?))
}

/// `smarty run` reads a virtual meter sending a telegram every 200 ms into PostgreSQL,
/// committing every 0.2 s; the server is stopped under it and started again. `/healthz`
/// reports the store failing meanwhile and healthy again after; once stopped with SIGTERM,
/// every second between the first and the last stored telegram is there once (the meter's
/// telegram times have whole seconds, so five telegrams share one: the first stored wins),
/// as many as `smarty run` says it stored, and the rollups equal the sums over them.
#[test]
fn run_survives_a_postgres_restart_losing_nothing_and_doubling_nothing() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let started = now();
    let sim_log = dir.path().join("simulate.log");
    let mut sim = Guard::from(
        smarty()
            .args(["simulate", "--listen", "127.0.0.1:0", "--interval", "200ms"])
            .args(["--seed", "7", "--key", KEY])
            .stderr(File::create(&sim_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let sim_addr = simulator_address(&mut sim, &sim_log);
    let key_file = dir.path().join("home.key");
    std::fs::write(&key_file, KEY).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let url = server.admin_url();
    let config = dir.path().join("smarty.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\n\n[[meter]]\nname = \"home\"\nsource = \"tcp://{sim_addr}\"\n\
             key_file = {key:?}\ninterval_s = 1\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n\
             [store]\nurl = {url:?}\ncommit_interval_s = 0.2\n",
            state = dir.path().display().to_string(),
            key = key_file.display().to_string(),
        ),
    )
    .unwrap();
    let log = dir.path().join("run.log");
    let mut run = Guard::from(
        smarty()
            .args(["run", "--config"])
            .arg(&config)
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let port = http_port(&mut run, &log);
    wait_healthy(port, &mut run, &log);
    let (before, _) = wait_until(30, "readings stored", &log, || {
        stored(&server).filter(|(count, _)| *count >= 3)
    });

    server.stop();
    let stopped = now();
    let reason = wait_until(30, "/healthz reporting the store failing", &log, || {
        let (status, body) = health(port)?;
        let store = &body["outputs"]["store"];
        (status == 503 && store["healthy"] == false).then(|| store["reason"].to_string())
    });
    assert!(reason.contains("cannot commit"), "{reason}");
    assert!(
        reason.contains("readings waiting"),
        "the buffered readings are counted: {reason}"
    );
    // The meter goes on meanwhile: three seconds of telegrams wait for the server.
    // (`/metrics` does not read the store; `/api/meters` fails while the server is down.)
    let telegrams = || metric(port, "smarty_telegrams_total", "home", "");
    let sent = telegrams().expect("the meter's telegrams");
    wait_until(30, "telegrams while the server is down", &log, || {
        telegrams().filter(|n| *n >= sent + 15.0)
    });

    server.restart();
    let restarted = now();
    wait_healthy(port, &mut run, &log);
    let (_, body) = health(port).unwrap();
    assert_eq!(body["outputs"]["store"]["healthy"], true, "{body}");
    // Readings of after the restart are stored.
    let (after, _) = wait_until(30, "readings stored after the restart", &log, || {
        stored(&server).filter(|(_, last)| *last >= restarted + 2)
    });
    assert!(after > before);
    stop(run, &log);
    drop(sim);

    let text = read_log(&log);
    let written: usize = text
        .split_once("store: stopped after storing ")
        .and_then(|(_, rest)| rest.split_once(' '))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no final count in the log:\n{text}"));
    assert!(
        text.contains("store: commits work again"),
        "the outage is logged:\n{text}"
    );
    let times = check_aggregates_from(url.as_str(), started - 60);
    assert_eq!(times.len(), written, "stored once each");
    assert!(
        times[0] < stopped && *times.last().unwrap() > restarted,
        "the readings span the outage"
    );
    let gaps: Vec<(i64, i64)> = times
        .windows(2)
        .filter(|w| w[1] - w[0] != 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(
        gaps.is_empty(),
        "telegram times not one second apart (lost or doubled): {gaps:?}"
    );
}
