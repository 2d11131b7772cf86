//! End to end on PostgreSQL: `smarty run` writing to a server that is restarted under it,
//! and a history moved from SQLite to PostgreSQL and back by `smarty store migrate`.

use std::fs::File;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;

use smarty_store::test_postgres::{TestDatabase, TestServer};

use crate::store::check_aggregates_from;
use crate::support::{
    Guard, KEY, http_port, metric, quiet_smarty, read_log, request, run_ok, simulator_address,
    smarty, stop, wait_healthy, wait_until,
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

/// `smarty export --format json` of `db` at `resolution` from `from` to `to` (Unix
/// seconds), as it is written.
fn export_bytes(db: &str, resolution: &str, from: i64, to: i64) -> Vec<u8> {
    run_ok(
        quiet_smarty()
            .args([
                "export",
                "--database",
                db,
                "--format",
                "json",
                "--resolution",
            ])
            .arg(resolution)
            .args(["--from", &from.to_string(), "--to", &to.to_string()]),
    )
    .stdout
}

/// `smarty store migrate --from FROM --to TO`: the line of counts it reports for meter
/// `home` (what precedes `: the same in`).
fn migrate(from: &str, to: &str) -> String {
    let output = run_ok(quiet_smarty().args(["store", "migrate", "--from", from, "--to", to]));
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.lines()
        .find_map(|line| line.split_once(": the same in "))
        .map(|(counts, _)| counts.to_owned())
        .unwrap_or_else(|| panic!("no check of the copy reported:\n{text}"))
}

/// Three months of a simulated meter with gas and water, imported into SQLite and moved to
/// PostgreSQL by `smarty store migrate`: the exports at every resolution are byte for byte
/// the same from both; migrating again reports the same counts and changes nothing;
/// migrating back into a new SQLite file gives the same exports again. A plain telegram
/// every 5 minutes (26,000 of them, three per 15-minute period) keeps the test's debug
/// build within half a minute; a telegram a minute took it past a minute.
#[test]
fn three_months_moved_to_postgres_and_back_export_the_same() {
    const DAY: i64 = 86_400;
    let dir = tempfile::tempdir().unwrap();
    let start = now() - 90 * DAY;
    let count = 90 * 288;
    let capture = dir.path().join("history.bin");
    run_ok(
        quiet_smarty()
            .args(["simulate", "--start", &start.to_string(), "--count"])
            .arg(count.to_string())
            .args([
                "--fast",
                "--interval",
                "5m",
                "--gas",
                "--water",
                "--seed",
                "5",
            ])
            .args(["--plain", "-o"])
            .arg(&capture),
    );
    let sqlite = format!("sqlite:{}", dir.path().join("smarty.db").display());
    let output = run_ok(
        quiet_smarty()
            .args(["import", "--meter", "home", "--database", &sqlite])
            .arg(&capture),
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&format!("{count} telegrams imported")),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let exports = |db: &str| -> Vec<(&str, Vec<u8>)> {
        let middle = start + 45 * DAY;
        let mut out = vec![("raw", export_bytes(db, "raw", middle, middle + DAY))];
        for resolution in ["15m", "hour", "day", "month"] {
            out.push((
                resolution,
                export_bytes(db, resolution, start, start + 91 * DAY),
            ));
        }
        out
    };
    let expected = exports(&sqlite);
    for (resolution, bytes) in &expected {
        let document: Json = serde_json::from_slice(bytes).expect("JSON");
        let rows = document["rows"].as_array().unwrap().len();
        let least = match *resolution {
            "raw" => 288,
            "15m" => 90 * 96,
            "hour" => 90 * 24,
            "day" => 90,
            _ => 3,
        };
        assert!(rows >= least, "{resolution}: {rows} rows");
    }
    let same = |db: &str, what: &str| {
        for ((resolution, want), (_, got)) in expected.iter().zip(exports(db)) {
            assert!(
                *want == got,
                "{what}: the {resolution} exports differ:\n{}\n{}",
                String::from_utf8_lossy(&want[..want.len().min(600)]),
                String::from_utf8_lossy(&got[..got.len().min(600)])
            );
        }
    };

    let server = TestDatabase::create();
    let counts = migrate(&sqlite, server.url());
    assert!(
        counts.contains(&format!("{count} readings")) && counts.contains("M-Bus captures"),
        "{counts}"
    );
    same(server.url(), "PostgreSQL");
    let tables = "SELECT (SELECT count(*) FROM reading) || ' ' || (SELECT count(*) FROM agg_15m) \
                  || ' ' || (SELECT count(*) FROM agg_day) || ' ' || (SELECT count(*) FROM mbus_reading)";
    let rows = server.query(tables);
    // Again: the same counts, nothing added.
    assert_eq!(migrate(&sqlite, server.url()), counts);
    assert_eq!(server.query(tables), rows);
    same(server.url(), "PostgreSQL after a second migration");

    let back = format!("sqlite:{}", dir.path().join("back.db").display());
    assert_eq!(migrate(server.url(), &back), counts);
    same(&back, "SQLite migrated back");
}
