//! The web server end to end, where the process matters: `smarty run` on a live virtual
//! meter feeding the API, its stream and the metrics; the access token taken from the
//! environment; heavy queries and slow clients against the process's memory and open files.
//! The answers of the API themselves are tested in process (smarty-web's `tests`).

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::{
    Guard, KEY, http_port, peak_memory, request, simulator_address, smarty, wait_healthy,
};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn get_with(port: u16, path: &str, headers: &str) -> (u16, String) {
    request(port, path, headers).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn get(port: u16, path: &str) -> (u16, String) {
    get_with(port, path, "")
}

/// GET that must answer 200 with JSON.
fn json(port: u16, path: &str) -> Value {
    let (status, body) = get(port, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// GET that must fail with `status` and a JSON error message.
fn error(port: u16, path: &str, status: u16) -> String {
    let (got, body) = get(port, path);
    assert_eq!(got, status, "{path}: {body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    body["error"].as_str().unwrap().to_owned()
}

/// A virtual meter serving a telegram a second on a port of its own, and `smarty run` reading
/// it as meter `home` with the web server on `http` (`127.0.0.1:0`: a port of the system's
/// choice, in the log `dir/run.log`) and the state directory `dir`.
fn live(dir: &Path, http: &str, token: Option<&str>) -> (Guard, Guard) {
    let sim_log = dir.join("simulate.log");
    let mut sim = Guard::from(
        smarty()
            .args(["simulate", "--listen", "127.0.0.1:0"])
            .args([
                "--interval",
                "1s",
                "--gas",
                "--water",
                "--seed",
                "7",
                "--key",
                KEY,
            ])
            .stderr(File::create(&sim_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let sim_addr = simulator_address(&mut sim, &sim_log);
    let mut run = smarty();
    run.args(["run", &format!("tcp://{sim_addr}"), "--name", "home"])
        .args([
            "--key",
            KEY,
            "--interval",
            "1",
            "--http",
            http,
            "--state-dir",
        ])
        .arg(dir)
        .stderr(File::create(dir.join("run.log")).unwrap());
    if let Some(token) = token {
        run.env("SMARTY_HTTP_TOKEN", token);
    }
    (sim, Guard::from(run.spawn().unwrap()))
}

/// `smarty run` on a live virtual meter: the meter's state, its latest telegram, the live
/// stream and the metrics come from the running pipeline; no secret shows anywhere. (The
/// answers themselves, over a history, are tested in process: smarty-web's `tests`.)
#[test]
fn the_live_pipeline_feeds_the_api_its_stream_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, mut run) = live(dir.path(), "127.0.0.1:0", None);
    let port = http_port(&mut run, &dir.path().join("run.log"));
    wait_healthy(port, &mut run, &dir.path().join("run.log"));

    let meters = json(port, "/api/meters");
    let home = &meters["meters"][0];
    assert_eq!(meters["meters"].as_array().unwrap().len(), 1, "{meters}");
    assert_eq!(home["name"], "home");
    assert_eq!(home["connected"], true);
    assert!(home["meter_id"].as_str().unwrap().starts_with("SAG"));
    assert!(home["telegrams"].as_u64().unwrap() >= 1);
    assert_eq!(home["rejections"]["wrong_key"], 0);

    let latest = json(port, "/api/meters/home/latest");
    assert!(latest["values"]["power_import_kw"].is_number(), "{latest}");
    assert!(latest["values"]["mbus1_gas_m3"].is_number(), "{latest}");
    assert_eq!(latest["telegram"]["meter_id"], home["meter_id"]);

    // The live stream delivers the next telegram.
    let event = first_telegram_event(port, "/api/stream?meter=home");
    assert_eq!(event["meter"], "home");
    assert!(event["values"]["power_import_kw"].is_number());

    let (status, metrics) = get(port, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("smarty_telegrams_total{meter=\"home\"}"));
    // No secret anywhere.
    for body in [meters.to_string(), latest.to_string(), metrics] {
        assert!(!body.contains(KEY) && !body.to_lowercase().contains(&KEY.to_lowercase()));
    }
}

/// The token's wiring: without one, `smarty run` refuses to listen beyond loopback; with
/// `SMARTY_HTTP_TOKEN`, the server on all addresses asks for it (the rules of the token
/// themselves are tested in process: smarty-web's `tests::auth`).
#[test]
fn other_addresses_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let output = smarty()
        .args([
            "run",
            "tcp://127.0.0.1:1",
            "--key",
            KEY,
            "--http",
            "0.0.0.0:0",
        ])
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("token_file"), "{stderr}");

    let token = "q+8/ZmFrZS10b2tlbg==";
    let in_query = "q%2B8%2FZmFrZS10b2tlbg%3D%3D";
    let (_sim, mut run) = live(dir.path(), "0.0.0.0:0", Some(token));
    let log = dir.path().join("run.log");
    let port = http_port(&mut run, &log);
    wait_healthy(port, &mut run, &log);
    assert!(error(port, "/api/meters", 401).contains("token"));
    let bearer = format!("Authorization: Bearer {token}\r\n");
    let (status, body) = get_with(port, "/api/meters", &bearer);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"home\""));
    assert_eq!(get(port, &format!("/api/meters?token={in_query}")).0, 200);
    let (status, metrics) = get(port, "/metrics");
    assert_eq!(status, 401, "{metrics}");
    let (status, metrics) = get_with(port, "/metrics", &bearer);
    assert_eq!(status, 200);
    assert!(metrics.contains("smarty_telegrams_total{meter=\"home\"}"));
}

/// Opens the live stream at `path` and returns the data of its first `telegram` event.
fn first_telegram_event(port: u16, path: &str) -> Value {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut lines = BufReader::new(stream).lines();
    let status = lines.next().unwrap().unwrap();
    assert!(status.contains(" 200 "), "{path}: {status}");
    while let Some(Ok(line)) = lines.next() {
        if line == "event: telegram" {
            let data = lines.next().unwrap().unwrap();
            return serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
        }
    }
    panic!("{path}: the stream ended without a telegram");
}

/// `days` of plain (unencrypted, quick to make) history at a telegram a minute, imported into
/// `dir`'s store for meter `home`.
fn plain_history(dir: &Path, days: i64) {
    let capture = dir.join("history.bin");
    let status = smarty()
        .args([
            "simulate",
            "--plain",
            "--fast",
            "--seed",
            "7",
            "--interval",
            "60s",
        ])
        .args(["--start", &(now() - days * 86_400).to_string()])
        .args(["--count", &(days * 1440).to_string(), "-o"])
        .arg(&capture)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let output = smarty()
        .args(["import", "--meter", "home", "--quiet", "--state-dir"])
        .arg(dir)
        .arg(&capture)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A plain virtual meter serving a telegram every `interval` on `address` (`127.0.0.1:0`: a
/// port of the system's choice), its log in `log`; with the address it listens on.
fn plain_simulator(address: &str, interval: &str, log: &Path) -> (Guard, SocketAddr) {
    let mut sim = Guard::from(
        smarty()
            .args(["simulate", "--plain", "--seed", "7", "--interval", interval])
            .args(["--listen", address])
            .stderr(File::create(log).unwrap())
            .spawn()
            .unwrap(),
    );
    let address = simulator_address(&mut sim, log);
    (sim, address)
}

/// A configuration for one plain meter on `sim` with the web server on a port of the
/// system's choice.
fn plain_config(dir: &Path, sim: SocketAddr, http_extra: &str) -> std::path::PathBuf {
    let config = dir.join("smarty.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {dir:?}\n\n[[meter]]\nname = \"home\"\nsource = \"tcp://{sim}\"\n\
             interval_s = 1\n\n[http]\nlisten = \"127.0.0.1:0\"\n{http_extra}\n",
            dir = dir.display().to_string(),
        ),
    )
    .unwrap();
    config
}

/// How one request of the load went.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// A whole 200 answer.
    Whole,
    /// 503: the store was busy for too long (the bound doing its work).
    Busy,
    /// Given up because the load ended.
    Abandoned,
}

/// GET `path`, reading the answer until it is complete or `stop` is set; anything but a 200,
/// a 503 or giving up is an error.
fn load_request(port: u16, path: &str, stop: &AtomicBool) -> Result<Outcome, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    return Ok(Outcome::Abandoned);
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let head = String::from_utf8_lossy(&response[..response.len().min(12)]).into_owned();
    match head.get(9..12) {
        // JSON to its end, chunked or not.
        Some("200") if response.ends_with(b"}\r\n0\r\n\r\n") || response.ends_with(b"}") => {
            Ok(Outcome::Whole)
        }
        Some("503") => Ok(Outcome::Busy),
        _ => Err(format!("{head:?}, {} bytes", response.len())),
    }
}

#[test]
fn heavy_queries_leave_memory_bounded_and_telegrams_flowing() {
    const CLIENTS: usize = 150;
    /// Whole answers the load must have given before it ends.
    const ANSWERS: u64 = 20;
    /// The service's memory must stay below this under the load (it needs about 20 MB idle;
    /// unbounded, 150 month-long raw queries took it past 400 MB).
    const MEMORY_BOUND: u64 = 150 << 20;
    let dir = tempfile::tempdir().unwrap();
    plain_history(dir.path(), 30);
    let (_sim, sim_addr) = plain_simulator("127.0.0.1:0", "1s", &dir.path().join("sim.log"));
    let config = plain_config(dir.path(), sim_addr, "");
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

    // The live stream, opened before the load.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /api/stream?meter=home HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut events = BufReader::new(stream).lines();
    assert!(events.next().unwrap().unwrap().contains(" 200 "));

    // Month-long raw series from many clients at once, again and again, until the end.
    let from = now() - 30 * 86_400 + 3600;
    let path = format!("/api/meters/home/series?field=power_import_kw&resolution=raw&from={from}");
    let stop = Arc::new(AtomicBool::new(false));
    let (started, answered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, started, answered, path) = (
                Arc::clone(&stop),
                Arc::clone(&started),
                Arc::clone(&answered),
                path.clone(),
            );
            std::thread::spawn(move || -> Result<(), String> {
                while !stop.load(Ordering::Relaxed) {
                    started.fetch_add(1, Ordering::Relaxed);
                    if load_request(port, &path, &stop)? == Outcome::Whole {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(())
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while started.load(Ordering::Relaxed) < CLIENTS as u64 {
        assert!(Instant::now() < deadline, "the clients did not start");
        std::thread::sleep(Duration::from_millis(10));
    }

    // Telegrams keep arriving while the load goes on.
    let mut telegrams = 0;
    let mut last_received = 0;
    while telegrams < 5 {
        assert!(
            Instant::now() < deadline,
            "{telegrams} telegrams during the load"
        );
        let mut next = || {
            events
                .next()
                .expect("the live stream ended")
                .expect("a telegram within 30 s")
        };
        if next() == "event: telegram" {
            telegrams += 1;
            let data: Value = serde_json::from_str(next().strip_prefix("data: ").unwrap()).unwrap();
            last_received = data["received"].as_i64().unwrap();
        }
    }
    // And the load is real: answers come out of it (with unbounded work, the first ones come
    // when every request holds its month of readings at once).
    while answered.load(Ordering::Relaxed) < ANSWERS {
        assert!(
            Instant::now() < deadline,
            "only {} answers under the load",
            answered.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let under_load = started.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        if let Err(e) = client.join().unwrap() {
            panic!("a request of the load failed: {e}");
        }
    }
    let answered = answered.load(Ordering::Relaxed);
    let peak = peak_memory(run.child.id());
    eprintln!(
        "{under_load} requests, {answered} answered; smarty's peak memory {} MB",
        peak >> 20
    );
    assert!(
        peak < MEMORY_BOUND,
        "smarty grew to {} MB under {under_load} requests ({answered} answered)",
        peak >> 20
    );
    // What arrived during the load reached the store too (it commits every few seconds).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let meters = json(port, "/api/meters");
        let stored = meters["meters"][0]["last_reading"].as_i64().unwrap_or(0);
        if stored >= last_received - 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store ends at {stored}, the load saw a telegram at {last_received}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The answers were whole: a month of raw readings, one a minute.
    let (status, body) = get(port, &path);
    assert_eq!(status, 200);
    let series: Value = serde_json::from_str(&body).unwrap();
    assert!(series["t"].as_array().unwrap().len() > 40_000);
}

#[test]
fn slow_clients_are_dropped_and_leave_descriptors_for_the_meters() {
    const SLOW_CLIENTS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let sim_log = dir.path().join("sim.log");
    let (sim, sim_addr) = plain_simulator("127.0.0.1:0", "300ms", &sim_log);
    let config = plain_config(dir.path(), sim_addr, "header_read_timeout_s = 2");
    // 64 open files, as in a tight container or under a low `ulimit -n`.
    let log = dir.path().join("run.log");
    let mut run = Guard::from(
        Command::new("prlimit")
            .arg("--nofile=64:64")
            .arg(env!("CARGO_BIN_EXE_smarty"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "smarty=info")
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("prlimit (util-linux) runs smarty with 64 open files"),
    );
    let port = http_port(&mut run, &log);
    wait_healthy(port, &mut run, &log);

    // Clients that connect and never finish their headers, or send nothing at all.
    let slow: Vec<TcpStream> = (0..SLOW_CLIENTS)
        .map(|i| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            if i % 2 == 0 {
                stream
                    .write_all(b"GET /api/meters HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                    .unwrap();
            }
            stream
        })
        .collect();

    // The meter's source goes away and comes back: smarty must open a new connection.
    // It comes back on the port it had, which the configuration names: the one place where
    // a test binds a given port, one it let go of a moment before (only by a small chance is
    // another process given that very port meanwhile).
    drop(sim);
    let restarted = now();
    let (_sim, _) = plain_simulator(&sim_addr.to_string(), "300ms", &sim_log);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        assert!(
            Instant::now() < deadline,
            "the API never answered with a telegram from the reopened source"
        );
        if let Ok((200, body)) = request(port, "/api/meters", "") {
            let meters: Value = serde_json::from_str(&body).unwrap();
            let home = &meters["meters"][0];
            if home["connected"] == true
                && home["last_telegram"]
                    .as_i64()
                    .is_some_and(|t| t > restarted)
            {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // Every slow client was disconnected by the server.
    for (i, mut stream) in slow.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("slow client {i} is still connected: {e}"),
        }
    }
}
