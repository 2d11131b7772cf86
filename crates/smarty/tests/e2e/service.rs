//! End to end: `smarty run` with a virtual meter, a real Mosquitto started here, the
//! plain-telegram proxy and the metrics endpoint; sources killed and restarted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{
    Guard, KEY, RefusedPort, http_port, metric, proxy_port, read_log, simulator_address, stop,
    wait_until,
};
use smarty_mqtt::test_broker::{Broker, Subscriber, publish_all};

/// `smarty ARGS` with a directory of its own holding its state directory `state` (the
/// history store and queue), so that tests never share one, and its log ([`log_of`]).
fn smarty(args: &[&str]) -> Guard {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_smarty"))
        .args(args)
        .env_remove("SMARTY_KEY")
        .env("SMARTY_STATE_DIR", dir.path().join("state"))
        .env("RUST_LOG", "smarty=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("smarty.log")).unwrap())
        .spawn()
        .expect("start smarty");
    Guard {
        child,
        state: Some(dir),
    }
}

/// The log (standard error) of a process [`smarty`] started.
fn log_of(process: &Guard) -> PathBuf {
    process.state.as_ref().unwrap().path().join("smarty.log")
}

/// The port of the web server of a `smarty run` that [`smarty`] started.
fn http_port_of(process: &mut Guard) -> u16 {
    let log = log_of(process);
    http_port(process, &log)
}

/// The port of the proxy of a `smarty run` that [`smarty`] started.
fn proxy_port_of(process: &mut Guard) -> u16 {
    let log = log_of(process);
    proxy_port(process, &log)
}

/// Reads one whole telegram from the proxy.
fn proxy_telegram(port: u16) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        stream
            .read_exact(&mut byte)
            .expect("a telegram from the proxy");
        bytes.push(byte[0]);
        if bytes.ends_with(b"\r\n")
            && let Some(bang) = bytes.iter().rposition(|&b| b == b'!')
            && bytes.len() - bang <= 7
            && bytes[bang - 1] == b'\n'
        {
            let start = bytes.iter().position(|&b| b == b'/').unwrap();
            return bytes[start..].to_vec();
        }
    }
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    (status, response)
}

/// A virtual meter on TCP at `address` (`127.0.0.1:0`: a port of the system's choice), with
/// the address it listens on.
fn simulator_tcp(address: &str, seed: &str) -> (Guard, SocketAddr) {
    let mut sim = smarty(&[
        "simulate",
        "--listen",
        address,
        "--key",
        KEY,
        "--interval",
        "300ms",
        "--gas",
        "--seed",
        seed,
    ]);
    let log = log_of(&sim);
    let address = simulator_address(&mut sim, &log);
    (sim, address)
}

#[test]
fn run_publishes_to_mqtt_the_proxy_and_metrics_and_survives_a_source_restart() {
    let broker = Broker::start();
    let broker_port = broker.port;
    let mut messages = Subscriber::start(broker_port, "test-subscriber", false, &["#"]);
    let (mut sim, sim_addr) = simulator_tcp("127.0.0.1:0", "1");
    let mut run = smarty(&[
        "run",
        &format!("tcp://{sim_addr}"),
        "--key",
        KEY,
        "--name",
        "home",
        "--interval",
        "0.3",
        "--mqtt",
        &format!("mqtt://127.0.0.1:{broker_port}"),
        "--proxy",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
    ]);
    let (proxy_port, http_port) = (proxy_port_of(&mut run), http_port_of(&mut run));

    // MQTT: availability, discovery, state and per-value topics.
    messages.expect("smarty/status", |m| m.payload == b"online");
    let discovery = messages.expect(
        "homeassistant/sensor/smarty_sag1030700100001/energy_import_kwh/config",
        // (live deliveries carry no retain flag; the retained copy is tested in service::mqtt)
        |_| true,
    );
    let discovery: serde_json::Value = serde_json::from_slice(&discovery.payload).unwrap();
    assert_eq!(discovery["device_class"], "energy");
    assert_eq!(discovery["state_class"], "total_increasing");
    assert_eq!(discovery["unit_of_measurement"], "kWh");
    let state = messages.expect("smarty/home/state", |_| true);
    let state: serde_json::Value = serde_json::from_slice(&state.payload).unwrap();
    assert_eq!(state["meter_id"], "SAG1030700100001");
    assert_eq!(state["authenticated"], true);
    let energy = messages.expect("smarty/home/energy_import_kwh", |_| true);
    let energy: f64 = energy.text().parse().unwrap();
    assert!(energy > 0.0);

    // The proxy hands out the decrypted telegram, byte-exact with a valid CRC.
    let telegram = proxy_telegram(proxy_port);
    let parsed = smarty_p1::parse(&telegram).expect("a valid plain telegram");
    assert_eq!(parsed.meter_id().as_deref(), Some("SAG1030700100001"));

    // Metrics and health.
    let (status, metrics) = http_get(http_port, "/metrics");
    assert_eq!(status, 200, "{metrics}");
    assert!(metrics.contains("meter=\"home\""), "{metrics}");
    assert!(metrics.contains("smarty_telegrams"), "{metrics}");
    let (status, health) = http_get(http_port, "/healthz");
    assert_eq!(status, 200, "{health}");

    // Kill the simulator (like restarting ser2net); once smarty noticed, start it again,
    // on the port it had, which smarty reads (the one place where a test binds a given port:
    // one it let go of a moment before, which only by a small chance another process is
    // given meanwhile): reading resumes.
    drop(sim);
    until_disconnected(http_port, "home");
    (sim, _) = simulator_tcp(&sim_addr.to_string(), "1");
    let again = proxy_telegram(proxy_port);
    smarty_p1::parse(&again).expect("telegrams again after the restart");

    // Stop smarty as systemd does (SIGTERM): it exits promptly and `offline` is published.
    let stopped = Instant::now();
    Command::new("kill")
        .args(["-TERM", &run.child.id().to_string()])
        .status()
        .unwrap();
    while run.child.try_wait().unwrap().is_none() {
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "smarty run did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(run.child.wait().unwrap().success(), "a clean stop exits 0");
    messages.expect("smarty/status", |m| m.payload == b"offline");
    drop(sim);
}

#[test]
fn run_resumes_when_the_pty_goes_away_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("p1");
    let link_s = link.to_str().unwrap().to_owned();
    let start_simulator = || {
        let sim = smarty(&[
            "simulate",
            "--link",
            &link_s,
            "--key",
            KEY,
            "--interval",
            "300ms",
        ]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !link.exists() {
            assert!(Instant::now() < deadline, "the pty link never appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
        sim
    };
    let sim = start_simulator();
    let mut run = smarty(&[
        "run",
        &link_s,
        "--key",
        KEY,
        "--interval",
        "0.3",
        "--proxy",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
    ]);
    let (proxy_port, http_port) = (proxy_port_of(&mut run), http_port_of(&mut run));
    smarty_p1::parse(&proxy_telegram(proxy_port)).expect("a telegram from the pty");

    // The pty disappears (cable unplugged) and comes back.
    drop(sim);
    let deadline = Instant::now() + Duration::from_secs(10);
    while link.exists() {
        assert!(Instant::now() < deadline, "the pty link stayed");
        std::thread::sleep(Duration::from_millis(20));
    }
    until_disconnected(http_port, "meter");
    let _sim = start_simulator();
    smarty_p1::parse(&proxy_telegram(proxy_port)).expect("telegrams again from the new pty");
}

#[test]
fn raw_frames_published_without_a_key_are_decrypted_by_another_smarty() {
    let broker = Broker::start();
    let broker_port = broker.port;
    let mut messages = Subscriber::start(broker_port, "test-subscriber", false, &["#"]);

    // B: the key, reading the raw topic, serving the decrypted telegrams.
    let mut b = smarty(&[
        "run",
        &format!("mqtt://127.0.0.1:{broker_port}/smarty/home/raw"),
        "--key",
        KEY,
        "--name",
        "decrypted",
        "--proxy",
        "127.0.0.1:0",
        "--no-http",
    ]);
    let proxy_port = proxy_port_of(&mut b);

    // A: where the cable is, without a key: forwards the frames it cannot decrypt.
    let (_sim, sim_addr) = simulator_tcp("127.0.0.1:0", "1");
    let _a = smarty(&[
        "run",
        &format!("tcp://{sim_addr}"),
        "--name",
        "home",
        "--mqtt",
        &format!("mqtt://127.0.0.1:{broker_port}"),
        "--publish-raw",
        "--no-http",
    ]);
    let raw = messages.expect("smarty/home/raw", |_| true);
    assert!(raw.payload.starts_with(b"DB08"), "{}", raw.text());

    let telegram = proxy_telegram(proxy_port);
    let parsed = smarty_p1::parse(&telegram).expect("a valid plain telegram, decrypted by B");
    assert_eq!(parsed.meter_id().as_deref(), Some("SAG1030700100001"));
}

// ---------------------------------------------------------------------------------------
// Faults and load: nothing lost, nothing silent.

/// A `smarty` process with the state directory `state` (kept by the test, so that a second
/// run finds what the first left) and its standard error in the file `log`.
fn service(state: &Path, log: &Path, args: &[&str]) -> Guard {
    let child = Command::new(env!("CARGO_BIN_EXE_smarty"))
        .args(args)
        .env_remove("SMARTY_KEY")
        .env_remove("SMARTY_HTTP_TOKEN")
        .env("SMARTY_STATE_DIR", state)
        .env("RUST_LOG", "smarty=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start smarty");
    Guard::from(child)
}

/// Waits (up to 20 s) until the metrics on `port` show `meter`'s source disconnected.
fn until_disconnected(port: u16, meter: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(port, "smarty_connected", meter, "") != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "smarty never noticed {meter}'s source go"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `count` encrypted frames of the virtual meter with frame counters 1…count, ten simulated
/// seconds apart, starting three days ago (inside the store's raw retention).
fn simulated_frames(dir: &Path, count: u32) -> Vec<Vec<u8>> {
    let file = dir.join(format!("frames-{count}.bin"));
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3 * 86_400;
    let status = Command::new(env!("CARGO_BIN_EXE_smarty"))
        .args(["simulate", "--output", file.to_str().unwrap(), "--fast"])
        .args([
            "--count",
            &count.to_string(),
            "--key",
            KEY,
            "--frame-counter",
            "1",
        ])
        .args(["--seed", "7", "--start", &start.to_string()])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&file).unwrap();
    // DB 08 <title 8> 82 <length 2> <length bytes>
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        assert_eq!(&rest[..2], [0xDB, 0x08]);
        let len = 13 + usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        frames.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    assert_eq!(frames.len(), count as usize);
    frames
}

/// A TCP server on a port of its own that writes `bytes` as fast as it can to the first client
/// and keeps that connection open until dropped (so the service never reads them twice).
struct Burst {
    port: u16,
    _stop: mpsc::Sender<()>,
}

fn burst(bytes: Vec<u8>) -> Burst {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        drop(listener);
        let _ = stream.write_all(&bytes);
        let _ = stopped.recv();
    });
    Burst { port, _stop: stop }
}

/// Readings in the store of state directory `state` (read after the service stopped).
fn stored_readings(state: &Path) -> i64 {
    let db = rusqlite::Connection::open_with_flags(
        state.join("smarty.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    db.query_row("SELECT COALESCE(SUM(n), 0) FROM raw_block", [], |row| {
        row.get(0)
    })
    .unwrap()
}

/// A day of telegrams at 10 s arrives at once (ser2net's buffer after an outage): every one
/// is stored; the meter waits for the store instead of dropping.
#[test]
fn a_burst_over_tcp_is_stored_to_the_last_telegram() {
    const N: u32 = 8_640;
    let dir = tempfile::tempdir().unwrap();
    let (state, log) = (dir.path().join("state"), dir.path().join("run.log"));
    let source = burst(simulated_frames(dir.path(), N).concat());
    let mut run = service(
        &state,
        &log,
        &[
            "run",
            &format!("tcp://127.0.0.1:{}", source.port),
            "--key",
            KEY,
            "--name",
            "home",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let http = http_port(&mut run, &log);
    wait_until(120, "every telegram decoded", &log, || {
        (metric(http, "smarty_telegrams_total", "home", "")? == f64::from(N)).then_some(())
    });
    stop(run, &log);
    assert_eq!(stored_readings(&state), i64::from(N), "{}", read_log(&log));
}

/// `DB 08` + title + `82 00 20 30` + frame counter + 27 bytes: a plausible frame header
/// announcing 32 bytes, whose tag never verifies.
fn fake_header() -> Vec<u8> {
    let mut b = vec![
        0xDB, 0x08, b'F', b'A', b'K', 0, 0, 0, 0, 1, 0x82, 0x00, 0x20, 0x30,
    ];
    b.extend_from_slice(&[0, 0, 0, 1]);
    b.resize(13 + 0x20, 0x55);
    b
}

/// 200 valid frames among 100,000 fake headers: every telegram is stored (rejections never
/// push telegrams out of the outputs' channels), and the 100,000 rejections make a handful of
/// log lines with counts, not 100,000.
#[test]
fn frames_among_fake_headers_are_all_stored_and_rejections_are_summarised() {
    const N: u32 = 200;
    const FAKES_PER_FRAME: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let (state, log) = (dir.path().join("state"), dir.path().join("run.log"));
    let mut stream = Vec::new();
    for frame in simulated_frames(dir.path(), N) {
        for _ in 0..FAKES_PER_FRAME {
            stream.extend_from_slice(&fake_header());
        }
        stream.extend_from_slice(&frame);
    }
    let source = burst(stream);
    let mut run = service(
        &state,
        &log,
        &[
            "run",
            &format!("tcp://127.0.0.1:{}", source.port),
            "--key",
            KEY,
            "--name",
            "home",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let http = http_port(&mut run, &log);
    wait_until(120, "every telegram decoded", &log, || {
        (metric(http, "smarty_telegrams_total", "home", "")? == f64::from(N)).then_some(())
    });
    stop(run, &log);
    assert_eq!(stored_readings(&state), i64::from(N), "{}", read_log(&log));
    let text = read_log(&log);
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("rejected")).collect();
    assert!(
        !warnings.is_empty() && warnings.len() <= 10,
        "one line per reason and interval: {} lines:\n{}",
        warnings.len(),
        warnings[..warnings.len().min(20)].join("\n")
    );
    // The lines carry the counts: together they account for every fake header.
    let counted: u64 = warnings
        .iter()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "rejected")?;
            words.get(at + 1)?.replace(',', "").parse::<u64>().ok()
        })
        .sum();
    assert!(
        counted > 0,
        "the lines give counts:\n{}",
        warnings.join("\n")
    );
}

/// Two meters; the second's pseudo-terminal appears only after the start (a USB cable plugged
/// in later). The service says it is waiting, `/healthz` shows why, and the meter is read as
/// soon as the device is there.
#[test]
fn a_meter_whose_device_appears_after_start_is_reported_and_then_read() {
    let dir = tempfile::tempdir().unwrap();
    let (state, log) = (dir.path().join("state"), dir.path().join("run.log"));
    let link = dir.path().join("late-p1");
    let (_sim, sim_addr) = simulator_tcp("127.0.0.1:0", "1");
    let config = dir.path().join("smarty.toml");
    std::fs::write(
        &config,
        format!(
            "[[meter]]\nname = \"home\"\nsource = \"tcp://{sim_addr}\"\nkey = \"{KEY}\"\n\
             interval_s = 0.3\n\n[[meter]]\nname = \"late\"\nsource = \"{}\"\nkey = \"{KEY}\"\n\
             interval_s = 0.3\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[store]\nenabled = false\n",
            link.display()
        ),
    )
    .unwrap();
    let mut run = service(&state, &log, &["run", "--config", config.to_str().unwrap()]);
    let http = http_port(&mut run, &log);
    wait_until(30, "the first meter's telegrams", &log, || {
        (metric(http, "smarty_telegrams_total", "home", "")? > 0.0).then_some(())
    });
    // The missing device is in the log and on /healthz, naming the meter and the path.
    wait_until(10, "a log line about the missing device", &log, || {
        read_log(&log)
            .lines()
            .any(|l| {
                l.contains("WARN") && l.contains("late") && l.contains(&*link.to_string_lossy())
            })
            .then_some(())
    });
    let health = wait_until(10, "/healthz naming the missing device", &log, || {
        let (_, body) = crate::support::request(http, "/healthz", "").ok()?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        let reason = json["meters"]["late"]["reason"].as_str()?.to_owned();
        reason.contains(&*link.to_string_lossy()).then_some(json)
    });
    assert_eq!(health["meters"]["late"]["connected"], false, "{health}");

    let _late = smarty(&[
        "simulate",
        "--link",
        link.to_str().unwrap(),
        "--key",
        KEY,
        "--interval",
        "300ms",
    ]);
    wait_until(40, "telegrams of the meter plugged in late", &log, || {
        (metric(http, "smarty_telegrams_total", "late", "")? > 0.0).then_some(())
    });
    let text = read_log(&log);
    assert!(
        text.lines()
            .any(|l| l.contains("late") && l.contains("reading")),
        "the log says when the device is read: {text}"
    );
    stop(run, &log);
}

/// With `--reject-replay`, the frame counters survive a restart: frames recorded before the
/// restart and played again afterwards are rejected.
#[test]
fn replay_counters_are_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let frames = simulated_frames(dir.path(), 8);
    let run_on = |frames: &[Vec<u8>], log: &Path| {
        let source = burst(frames.concat());
        let mut run = service(
            &state,
            log,
            &[
                "run",
                &format!("tcp://127.0.0.1:{}", source.port),
                "--key",
                KEY,
                "--name",
                "home",
                "--reject-replay",
                "--no-store",
                "--http",
                "127.0.0.1:0",
            ],
        );
        let http = http_port(&mut run, log);
        let n = frames.len() as f64;
        wait_until(30, "every frame seen", log, || {
            (metric(http, "smarty_frames_total", "home", "")? == n).then_some(())
        });
        let telegrams = metric(http, "smarty_telegrams_total", "home", "").unwrap();
        let replays = metric(
            http,
            "smarty_rejections_total",
            "home",
            ",reason=\"replay\"",
        )
        .unwrap();
        stop(run, log);
        (telegrams, replays)
    };
    let first = run_on(&frames[..5], &dir.path().join("first.log"));
    assert_eq!(first, (5.0, 0.0));
    // The same five frames again (a replay), then three new ones.
    let log = dir.path().join("second.log");
    let second = run_on(&frames, &log);
    assert_eq!(second, (3.0, 5.0), "{}", read_log(&log));
}

/// Outside systemd the history and the MQTT queue hold consumption data: the state directory
/// is private (0700), its files 0600 whatever the umask; a key file others can read is
/// warned about.
#[test]
fn state_files_are_private_and_readable_key_files_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let (state, log) = (dir.path().join("state"), dir.path().join("run.log"));
    let key_file = dir.path().join("home.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let source = burst(simulated_frames(dir.path(), 5).concat());
    let broker = RefusedPort::new();
    let mut run = service(
        &state,
        &log,
        &[
            "run",
            &format!("tcp://127.0.0.1:{}", source.port),
            "--key-file",
            key_file.to_str().unwrap(),
            "--name",
            "home",
            // Nothing listens there: the messages wait in the queue file.
            "--mqtt",
            &format!("mqtt://127.0.0.1:{}", broker.port()),
            "--http",
            "127.0.0.1:0",
        ],
    );
    let http = http_port(&mut run, &log);
    wait_until(30, "every telegram decoded", &log, || {
        (metric(http, "smarty_telegrams_total", "home", "")? == 5.0).then_some(())
    });
    stop(run, &log);
    let text = read_log(&log);
    assert!(
        text.lines().any(|l| l.contains("WARN")
            && l.contains(&*key_file.to_string_lossy())
            && l.contains("readable")),
        "a warning names the key file others can read: {text}"
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700, "the state directory");
    let files: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("smarty.db")),
        "the store is there: {files:?}"
    );
    for file in &files {
        assert_eq!(mode(file) & 0o077, 0, "{} is private", file.display());
    }
}

/// A `smarty` reading the raw frames another one publishes (MQTT raw source) is stopped while
/// 1,000 frames are published; on its restart the broker hands the backlog over at once
/// (persistent session): every telegram is stored.
#[test]
fn an_mqtt_backlog_is_stored_to_the_last_telegram() {
    const N: u32 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let broker_port = broker.port;
    let state = dir.path().join("state");
    let frames = simulated_frames(dir.path(), N);
    let source = format!("mqtt://127.0.0.1:{broker_port}/smarty/home/raw");
    let start = |log: &Path| {
        let mut run = service(
            &state,
            log,
            &[
                "run",
                &source,
                "--key",
                KEY,
                "--name",
                "home",
                "--http",
                "127.0.0.1:0",
            ],
        );
        let http = http_port(&mut run, log);
        (run, http)
    };
    // First run: subscribe (the broker keeps the session), then stop.
    let log = dir.path().join("first.log");
    let (run, http) = start(&log);
    wait_until(30, "the subscription", &log, || {
        (metric(http, "smarty_connected", "home", "")? == 1.0).then_some(())
    });
    stop(run, &log);

    let hex = |frame: &Vec<u8>| -> Vec<u8> {
        frame
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
            .into_bytes()
    };
    publish_all(
        broker_port,
        "smarty/home/raw",
        frames.iter().map(hex).collect(),
        false,
    );

    let log = dir.path().join("second.log");
    let (run, http) = start(&log);
    wait_until(60, "every telegram of the backlog", &log, || {
        (metric(http, "smarty_telegrams_total", "home", "")? == f64::from(N)).then_some(())
    });
    stop(run, &log);
    assert_eq!(stored_readings(&state), i64::from(N), "{}", read_log(&log));
}

/// The guard end to end: a household over its (tiny) reference power makes `smarty run`
/// run the configured command, once per quarter hour, with the alert on its input.
#[test]
fn a_guard_alert_runs_the_configured_command() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, sim_addr) = simulator_tcp("127.0.0.1:0", "4");
    let alerts = dir.path().join("alerts.jsonl");
    let config = dir.path().join("smarty.toml");
    std::fs::write(
        &config,
        format!(
            "[[meter]]\nname = \"home\"\nsource = \"tcp://{sim_addr}\"\nkey = \"{KEY}\"\n\
             interval_s = 0.3\n\n[http]\nenabled = false\n\n[guard]\nreference_power_kw = 0.01\n\
             command = [\"sh\", \"-c\", \"cat >> \\\"$1\\\"\", \"sh\", {:?}]\n",
            alerts.display().to_string()
        ),
    )
    .unwrap();
    let log = dir.path().join("log");
    let run = service(
        &dir.path().join("state"),
        &log,
        &["run", "--config", &config.display().to_string()],
    );
    let alert: serde_json::Value = wait_until(30, "the guard's alert", &log, || {
        let text = std::fs::read_to_string(&alerts).ok()?;
        serde_json::from_str(text.lines().next()?).ok()
    });
    assert_eq!(alert["meter"], "home");
    assert_eq!(alert["kind"], "will_exceed");
    assert_eq!(alert["reference_power_kw"], 0.01);
    assert!(
        alert["projected_average_kw"].as_f64().unwrap() > 0.01,
        "{alert}"
    );
    assert!(read_log(&log).contains("guard alert"), "{}", read_log(&log));
    stop(run, &log);
    // One alert per quarter hour: the simulated telegrams of this run fall into one or two.
    let lines = std::fs::read_to_string(&alerts).unwrap().lines().count();
    assert!((1..=2).contains(&lines), "{lines} alerts");
}
