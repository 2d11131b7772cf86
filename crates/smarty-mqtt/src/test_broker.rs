//! The MQTT test harness: a real Mosquitto (`/usr/sbin/mosquitto`, Debian package
//! `mosquitto`) on a loopback port, optionally with a TLS listener, and plain clients that
//! watch and feed it.
//!
//! One copy for every test that needs a broker: this crate's tests, and with the feature
//! `test-broker` the application's (the unit tests of its raw MQTT source, its end-to-end
//! tests in `crates/smarty/tests/e2e/service.rs`), which so need no MQTT client library of
//! their own. It uses only `std`, `tempfile`, `tokio` (the asynchronous waits) and rumqttc's
//! blocking client, each client in a thread of its own, so that it serves synchronous and
//! asynchronous tests alike. It panics on failure, as tests do.
//!
//! Mosquitto cannot listen on port 0 and report the port it got (the one server under test
//! that cannot); so a port that is free is picked, and if another process takes it before
//! Mosquitto does (Mosquitto says "Address already in use" and exits), another one: the race
//! costs a retry, never a failed test. A broker is ready when it logged that it runs.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a broker may take to start or stop, and a client to connect and subscribe.
const READY: Duration = Duration::from_secs(10);

/// A Mosquitto on loopback, killed when dropped (with its directory).
pub struct Broker {
    dir: tempfile::TempDir,
    /// The plain MQTT port.
    pub port: u16,
    /// The TLS port, for a broker started by [`Broker::with_tls`].
    pub tls_port: Option<u16>,
    persistent: bool,
    child: Option<Child>,
}

/// The certificates of a TLS broker: its own authority, and a server certificate it signed
/// for `127.0.0.1` and `localhost`.
pub struct Certificates {
    /// The authority's certificate (PEM): what a client trusts.
    pub ca_file: PathBuf,
}

impl Broker {
    /// A broker without persistence.
    pub fn start() -> Broker {
        Broker::launch(false, "", false)
    }

    /// A broker that keeps sessions and retained messages across [`Broker::stop`] and
    /// [`Broker::restart`] (SIGTERM saves them).
    pub fn persistent() -> Broker {
        Broker::launch(true, "", false)
    }

    /// A broker without persistence, with `extra` lines of configuration
    /// (`max_queued_messages 5000`).
    pub fn with_config(extra: &str) -> Broker {
        Broker::launch(false, extra, false)
    }

    /// A broker with a TLS listener on [`Broker::tls_port`] besides the plain one, its
    /// certificate signed by an authority of its own ([`Broker::certificates`]). Needs the
    /// `openssl` command (Debian package `openssl`).
    pub fn with_tls() -> Broker {
        Broker::launch(false, "", true)
    }

    fn launch(persistent: bool, extra: &str, tls: bool) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        // Mosquitto drops to its own user when started as root.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        if tls {
            make_certificates(dir.path());
        }
        let mut broker = Broker {
            dir,
            port: 0,
            tls_port: None,
            persistent,
            child: None,
        };
        for _ in 0..10 {
            broker.port = free_port();
            broker.tls_port = tls.then(free_port);
            broker.write_config(extra);
            match broker.spawn() {
                Ok(()) => return broker,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("mosquitto does not start:\n{log}"),
            }
        }
        panic!("mosquitto found no free port in 10 tries");
    }

    fn write_config(&self, extra: &str) {
        let dir = self.dir.path();
        let mut conf = format!(
            "log_dest stderr\nlistener {} 127.0.0.1\nallow_anonymous true\n",
            self.port
        );
        if let Some(port) = self.tls_port {
            conf += &format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\ncafile {0}/ca.pem\n\
                 certfile {0}/server.pem\nkeyfile {0}/server.key\n",
                dir.display()
            );
        }
        if self.persistent {
            conf += &format!(
                "persistence true\npersistence_location {}/\nautosave_interval 0\n",
                dir.display()
            );
        } else {
            conf += "persistence false\n";
        }
        conf += extra;
        let path = dir.join("mosquitto.conf");
        std::fs::write(&path, conf).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// Starts Mosquitto and waits until it runs; `Err` with its log when it ends instead.
    fn spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "the broker runs already");
        let mut child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto (Debian package mosquitto) runs");
        // Its log, line by line; read to the end, so that Mosquitto never blocks on it.
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + READY;
        let mut log = String::new();
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains(" running") => {
                    self.child = Some(child);
                    return Ok(());
                }
                Ok(line) => {
                    log += &line;
                    log.push('\n');
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = child.wait();
                    return Err(log);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("mosquitto did not start in {READY:?}:\n{log}");
                }
            }
        }
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The certificates of a broker started by [`Broker::with_tls`].
    pub fn certificates(&self) -> Certificates {
        assert!(self.tls_port.is_some(), "a broker without TLS");
        Certificates {
            ca_file: self.dir.path().join("ca.pem"),
        }
    }

    /// Stops the broker with SIGTERM (a persistent one saves its sessions) and waits for its
    /// end.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + READY;
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        }
    }

    /// Kills the broker at once (connections drop without a word).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped broker again, on the same port.
    pub fn restart(&mut self) {
        if let Err(log) = self.spawn() {
            panic!(
                "mosquitto does not start again on port {}:\n{log}",
                self.port
            );
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nothing listens on right now, for Mosquitto ([`Broker::launch`] retries
/// with another when it is taken meanwhile).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An authority (`ca.pem`) and a server certificate it signed (`server.pem`, `server.key`)
/// for `127.0.0.1` and `localhost`, in `dir`, readable by Mosquitto's user.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian package openssl) runs");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-days",
                "2",
                "-subj",
                "/CN=smarty test authority",
            ][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-subj", "/CN=127.0.0.1"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    for file in ["ca.pem", "server.pem", "server.key"] {
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

/// One message a [`Subscriber`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Whether the broker sent it as a retained message (on subscribing).
    pub retain: bool,
}

impl Received {
    /// The payload as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A client subscribed to topic filters at QoS 1, in a thread of its own, collecting what
/// arrives. It reconnects (and subscribes again) when the broker goes and comes back.
pub struct Subscriber {
    rx: mpsc::Receiver<Received>,
}

impl Subscriber {
    /// Connects to the broker on `port` as `id` (in a persistent session if `persistent`)
    /// and subscribes to `filters`; returns once subscribed.
    pub fn start(port: u16, id: &str, persistent: bool, filters: &[&str]) -> Subscriber {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let id = id.to_owned();
        let filters: Vec<String> = filters.iter().map(|f| (*f).to_owned()).collect();
        std::thread::spawn(move || {
            let mut options = rumqttc::MqttOptions::new(id, ("127.0.0.1", port));
            options.set_keep_alive(5).set_clean_session(!persistent);
            let (client, mut connection) = rumqttc::Client::builder(options).capacity(100).build();
            for notification in connection.iter() {
                match notification {
                    Ok(rumqttc::Event::Incoming(rumqttc::Incoming::ConnAck(_))) => {
                        for filter in &filters {
                            let _ = client.try_subscribe(filter.clone(), rumqttc::QoS::AtLeastOnce);
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Incoming::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p))) => {
                        let received = Received {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                        };
                        if tx.send(received).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // The broker is away: the iterator connects again (after a pause, so as
                    // not to spin while it is down).
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx
            .recv_timeout(READY)
            .expect("the test subscriber connects and subscribes");
        Subscriber { rx }
    }

    /// Collects what arrives from now on until `done` holds for it; panics after `secs`
    /// seconds, naming the topics received.
    pub fn until(&mut self, secs: u64, mut done: impl FnMut(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut got = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(r) => got.push(r),
                Err(_) => panic!("timed out; got {:?}", topics(&got)),
            }
        }
        got
    }

    /// [`Subscriber::until`] for asynchronous tests: waits without blocking the runtime
    /// (looking every 10 ms).
    pub async fn until_async(
        &mut self,
        secs: u64,
        mut done: impl FnMut(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut got = Vec::new();
        while !done(&got) {
            match self.rx.try_recv() {
                Ok(r) => got.push(r),
                Err(mpsc::TryRecvError::Empty) => {
                    assert!(
                        Instant::now() < deadline,
                        "timed out; got {:?}",
                        topics(&got)
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    panic!("the test subscriber ended; got {:?}", topics(&got))
                }
            }
        }
        got
    }

    /// Waits (up to 20 s) for a message on `topic` for which `check` holds, and returns it.
    pub fn expect(&mut self, topic: &str, mut check: impl FnMut(&Received) -> bool) -> Received {
        let got = self.until(20, |got| {
            got.last().is_some_and(|r| r.topic == topic && check(r))
        });
        got.last().cloned().expect("a message")
    }
}

fn topics(got: &[Received]) -> Vec<&str> {
    got.iter().map(|r| r.topic.as_str()).collect()
}

/// Publishes `payloads` on `topic` at QoS 1 (`retain` as given) from a client of its own, and
/// returns once the broker acknowledged each. Blocking: asynchronous tests call it through
/// `tokio::task::spawn_blocking`.
pub fn publish_all(port: u16, topic: &str, payloads: Vec<Vec<u8>>, retain: bool) {
    let mut options = rumqttc::MqttOptions::new("test-publisher", ("127.0.0.1", port));
    options.set_keep_alive(5);
    let (client, mut connection) = rumqttc::Client::builder(options).capacity(64).build();
    let n = payloads.len();
    let topic = topic.to_owned();
    let publisher = std::thread::spawn(move || {
        for payload in payloads {
            client
                .publish(
                    topic.as_str(),
                    payload,
                    rumqttc::PublishOptions::new(rumqttc::QoS::AtLeastOnce).retain(retain),
                )
                .unwrap();
        }
        client
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut acked = 0;
    if n > 0 {
        for notification in connection.iter() {
            assert!(Instant::now() < deadline, "{acked} of {n} acknowledged");
            match notification {
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::PubAck(_))) => {
                    acked += 1;
                    if acked == n {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("publishing: {e}"),
            }
        }
    }
    let _client = publisher.join().unwrap();
}
