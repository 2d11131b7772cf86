//! End to end: one process writes a store at a time. A second `smarty demo` changes nothing
//! of the running one (its history, its port) and says why it stops; `smarty import` refuses a
//! store that `smarty run` writes, naming it; `smarty export` reads while it runs.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Guard, KEY, http_port, request, simulator_address, wait_healthy};

fn smarty() -> Command {
    let mut cmd = crate::support::smarty();
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to its end, at most 60 s (a second demo that does not stop fails the test).
fn finish(cmd: &mut Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start smarty");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output.expect("wait for smarty"),
        Err(_) => {
            // Our own child: stop it before failing.
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("{cmd:?} is still running after 60 s");
        }
    }
}

/// The first stored reading, as `smarty export` (read-only, beside the writer) sees it.
fn first_reading(db: &Path) -> i64 {
    let output = finish(
        smarty()
            .args(["export", "--resolution", "15m", "--format", "json", "--db"])
            .arg(db),
    );
    assert!(
        output.status.success(),
        "export while the demo runs: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    document["rows"][0]["ts"]
        .as_i64()
        .unwrap_or_else(|| panic!("no rows: {document}"))
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

#[test]
fn a_second_demo_changes_nothing_of_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("demo");
    let db = state.join("smarty.db");
    let log = dir.path().join("first.log");
    let mut first = Guard::from(
        smarty()
            .args([
                "demo",
                "--history-days",
                "1",
                "--interval",
                "1s",
                "--http",
                "127.0.0.1:0",
            ])
            .arg("--state-dir")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start smarty demo"),
    );
    let port = http_port(&mut first, &log);
    let http = format!("127.0.0.1:{port}");
    wait_healthy(port, &mut first, &log);
    let (file, start) = (inode(&db), first_reading(&db));

    // The same state directory and the same port; the same state directory on another port;
    // another state directory (holding a history of its own) on the same port.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let other_db = other.join("smarty.db");
    std::fs::write(&other_db, b"another history").unwrap();
    // Any other port: the store's lock refuses the demo before it binds one.
    let other_http = "127.0.0.1:0".to_owned();
    for (name, state_dir, address, reason) in [
        ("same directory, same port", &state, &http, "in use"),
        ("same directory, other port", &state, &other_http, "in use"),
        ("other directory, same port", &other, &http, "cannot listen"),
    ] {
        let output = finish(
            smarty()
                .args(["demo", "--history-days", "1", "--http", address])
                .arg("--state-dir")
                .arg(state_dir),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{name}: the second demo ran:\n{stderr}"
        );
        assert!(stderr.contains(reason), "{name}: {stderr}");
        if reason == "in use" {
            assert!(
                stderr.contains(&format!("(pid {})", first.child.id()))
                    && stderr.contains("smarty demo"),
                "{name}: the holder is not named: {stderr}"
            );
        }
        assert!(
            !stderr.contains("Dashboard:"),
            "{name}: announced a dashboard it does not serve:\n{stderr}"
        );
        assert_eq!(
            inode(&db),
            file,
            "{name}: the first demo's store was replaced"
        );
        assert_eq!(
            first_reading(&db),
            start,
            "{name}: the first demo's history changed"
        );
        assert_eq!(
            std::fs::read(&other_db).unwrap(),
            b"another history",
            "{name}: the other directory's history changed"
        );
        assert!(
            matches!(request(port, "/healthz", ""), Ok((200, _))),
            "{name}: the first demo stopped serving"
        );
    }
    assert!(
        first.child.try_wait().unwrap().is_none(),
        "the first demo ended"
    );
}

#[test]
fn import_refuses_a_store_that_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A capture to import, a meter for the service.
    let capture = d.join("capture.bin");
    let output = finish(
        smarty()
            .args([
                "simulate",
                "--start",
                "2026-01-10",
                "--count",
                "100",
                "--fast",
            ])
            .args(["--key", KEY, "-o"])
            .arg(&capture),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sim_log = d.join("simulate.log");
    let mut sim = Guard::from(
        smarty()
            .args([
                "simulate",
                "--listen",
                "127.0.0.1:0",
                "--interval",
                "1s",
                "--key",
                KEY,
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&sim_log).unwrap())
            .spawn()
            .expect("start smarty simulate"),
    );
    let sim_addr = simulator_address(&mut sim, &sim_log);
    let log = d.join("run.log");
    let mut run = Guard::from(
        smarty()
            .args([
                "run",
                &format!("tcp://{sim_addr}"),
                "--name",
                "home",
                "--key",
                KEY,
            ])
            .args(["--http", "127.0.0.1:0", "--state-dir"])
            .arg(d)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start smarty run"),
    );
    let http_port = http_port(&mut run, &log);
    wait_healthy(http_port, &mut run, &log);
    let db = d.join("smarty.db");
    let output = finish(
        smarty()
            .arg("import")
            .arg(&capture)
            .args(["--key", KEY, "--meter", "home", "--quiet", "--db"])
            .arg(&db),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "import wrote beside smarty run:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("smarty run (pid {})", run.child.id())),
        "the writer is not named: {stderr}"
    );
    assert!(stderr.contains("stop"), "no way out is given: {stderr}");
    // Reading stays allowed: the export shows the service's readings once it committed some.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = finish(
            smarty()
                .args(["export", "--resolution", "raw", "--db"])
                .arg(&db),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() && output.stdout.iter().filter(|b| **b == b'\n').count() > 1 {
            break;
        }
        assert!(
            stderr.contains("no readings yet") && Instant::now() < deadline,
            "export beside smarty run: {stderr}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Stopped, the store takes the import.
    drop(run);
    let output = finish(
        smarty()
            .arg("import")
            .arg(&capture)
            .args(["--key", KEY, "--meter", "home", "--quiet", "--db"])
            .arg(&db),
    );
    assert!(
        output.status.success(),
        "import after the service stopped: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
