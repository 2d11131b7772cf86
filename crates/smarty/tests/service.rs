//! End to end: `smarty run` with a virtual meter, a real Mosquitto started here, the
//! plain-telegram proxy and the metrics endpoint; sources killed and restarted.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod support;

use support::{Guard, KEY, free_port, wait_for_port};

/// Kills the child when dropped.
/// `smarty ARGS` with a state directory of its own (the history store and queue), so that
/// tests never share one.
fn smarty(args: &[&str]) -> Guard {
    let state = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_smarty"))
        .args(args)
        .env_remove("SMARTY_KEY")
        .env("SMARTY_STATE_DIR", state.path())
        .env("RUST_LOG", "smarty=info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start smarty");
    Guard {
        child,
        state: Some(state),
    }
}

/// A Mosquitto on a free loopback port (it drops to its own user when started as root).
fn mosquitto(dir: &Path) -> (Guard, u16) {
    let port = free_port();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let child = Command::new("/usr/sbin/mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto (Debian package mosquitto) runs");
    wait_for_port(port);
    (Guard::from(child), port)
}

/// Subscribes to everything and forwards (topic, payload, retained) to a channel.
fn subscribe(port: u16) -> mpsc::Receiver<(String, Vec<u8>, bool)> {
    let mut options = rumqttc::MqttOptions::new("test-subscriber", ("127.0.0.1", port));
    options.set_keep_alive(5);
    let (client, mut connection) = rumqttc::Client::builder(options).capacity(100).build();
    client.subscribe("#", rumqttc::QoS::AtLeastOnce).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _client = client;
        for notification in connection.iter() {
            match notification {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    if tx
                        .send((
                            String::from_utf8_lossy(&p.topic).into_owned(),
                            p.payload.to_vec(),
                            p.retain,
                        ))
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    rx
}

/// Waits for a message on `topic` satisfying `check`.
fn expect_message(
    rx: &mpsc::Receiver<(String, Vec<u8>, bool)>,
    topic: &str,
    mut check: impl FnMut(&[u8], bool) -> bool,
) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no matching message on {topic}");
        if let Ok((t, payload, retained)) = rx.recv_timeout(left)
            && t == topic
            && check(&payload, retained)
        {
            return payload;
        }
    }
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

fn simulator_tcp(port: u16, seed: &str) -> Guard {
    let sim = smarty(&[
        "simulate",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--key",
        KEY,
        "--interval",
        "300ms",
        "--gas",
        "--seed",
        seed,
    ]);
    wait_for_port(port);
    sim
}

#[test]
fn run_publishes_to_mqtt_the_proxy_and_metrics_and_survives_a_source_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, broker_port) = mosquitto(dir.path());
    let messages = subscribe(broker_port);
    let (sim_port, proxy_port, http_port) = (free_port(), free_port(), free_port());
    let mut sim = simulator_tcp(sim_port, "1");
    let mut run = smarty(&[
        "run",
        &format!("tcp://127.0.0.1:{sim_port}"),
        "--key",
        KEY,
        "--name",
        "home",
        "--interval",
        "0.3",
        "--mqtt",
        &format!("mqtt://127.0.0.1:{broker_port}"),
        "--proxy",
        &format!("127.0.0.1:{proxy_port}"),
        "--http",
        &format!("127.0.0.1:{http_port}"),
    ]);

    // MQTT: availability, discovery, state and per-value topics.
    expect_message(&messages, "smarty/status", |p, _| p == b"online");
    let discovery = expect_message(
        &messages,
        "homeassistant/sensor/smarty_sag1030700100001/energy_import_kwh/config",
        // (live deliveries carry no retain flag; the retained copy is tested in service::mqtt)
        |_, _| true,
    );
    let discovery: serde_json::Value = serde_json::from_slice(&discovery).unwrap();
    assert_eq!(discovery["device_class"], "energy");
    assert_eq!(discovery["state_class"], "total_increasing");
    assert_eq!(discovery["unit_of_measurement"], "kWh");
    let state = expect_message(&messages, "smarty/home/state", |_, _| true);
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(state["meter_id"], "SAG1030700100001");
    assert_eq!(state["authenticated"], true);
    let energy = expect_message(&messages, "smarty/home/energy_import_kwh", |_, _| true);
    let energy: f64 = String::from_utf8(energy).unwrap().parse().unwrap();
    assert!(energy > 0.0);

    // The proxy hands out the decrypted telegram, byte-exact with a valid CRC.
    wait_for_port(proxy_port);
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

    // Kill the simulator (like restarting ser2net) and start it again: reading resumes.
    drop(sim);
    std::thread::sleep(Duration::from_millis(800));
    let before = Instant::now();
    sim = simulator_tcp(sim_port, "1");
    let again = proxy_telegram(proxy_port);
    smarty_p1::parse(&again).expect("telegrams again after the restart");
    assert!(before.elapsed() < Duration::from_secs(30));

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
    expect_message(&messages, "smarty/status", |p, _| p == b"offline");
    drop(sim);
}

#[test]
fn run_resumes_when_the_pty_goes_away_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("p1");
    let link_s = link.to_str().unwrap().to_owned();
    let proxy_port = free_port();
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
    let _run = smarty(&[
        "run",
        &link_s,
        "--key",
        KEY,
        "--interval",
        "0.3",
        "--proxy",
        &format!("127.0.0.1:{proxy_port}"),
    ]);
    wait_for_port(proxy_port);
    smarty_p1::parse(&proxy_telegram(proxy_port)).expect("a telegram from the pty");

    // The pty disappears (cable unplugged) and comes back.
    drop(sim);
    let deadline = Instant::now() + Duration::from_secs(10);
    while link.exists() {
        assert!(Instant::now() < deadline, "the pty link stayed");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    let _sim = start_simulator();
    smarty_p1::parse(&proxy_telegram(proxy_port)).expect("telegrams again from the new pty");
}

#[test]
fn raw_frames_published_without_a_key_are_decrypted_by_another_smarty() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, broker_port) = mosquitto(dir.path());
    let messages = subscribe(broker_port);
    let (sim_port, proxy_port) = (free_port(), free_port());

    // B: the key, reading the raw topic, serving the decrypted telegrams.
    let _b = smarty(&[
        "run",
        &format!("mqtt://127.0.0.1:{broker_port}/smarty/home/raw"),
        "--key",
        KEY,
        "--name",
        "decrypted",
        "--proxy",
        &format!("127.0.0.1:{proxy_port}"),
    ]);
    wait_for_port(proxy_port);

    // A: where the cable is, without a key: forwards the frames it cannot decrypt.
    let _sim = simulator_tcp(sim_port, "1");
    let _a = smarty(&[
        "run",
        &format!("tcp://127.0.0.1:{sim_port}"),
        "--name",
        "home",
        "--mqtt",
        &format!("mqtt://127.0.0.1:{broker_port}"),
        "--publish-raw",
    ]);
    let raw = expect_message(&messages, "smarty/home/raw", |_, _| true);
    assert!(
        raw.starts_with(b"DB08"),
        "{}",
        String::from_utf8_lossy(&raw)
    );

    let telegram = proxy_telegram(proxy_port);
    let parsed = smarty_p1::parse(&telegram).expect("a valid plain telegram, decrypted by B");
    assert_eq!(parsed.meter_id().as_deref(), Some("SAG1030700100001"));
}

/// Keeps `BufRead` in use for readers of this file who extend it with stderr checks.
#[allow(dead_code)]
fn lines(child: &mut Child) -> impl Iterator<Item = String> + '_ {
    BufReader::new(child.stderr.as_mut().unwrap())
        .lines()
        .map_while(Result::ok)
}
