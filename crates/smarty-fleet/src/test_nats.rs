//! The NATS test harness (feature `test_nats`, and this crate's tests): a real `nats-server`
//! (Debian package `nats-server`, 2.9 or newer) of the test's own on loopback, with JetStream
//! in a temporary directory and optionally NATS's MQTT listener, stopped when dropped.
//!
//! The server binds port `-1` for its client and MQTT listeners (a port of the system's
//! choice) and reports each in its log (`Listening for client connections on
//! 127.0.0.1:PORT`, `Listening for MQTT clients on mqtt://127.0.0.1:PORT`); it is ready when
//! it logs `Server is ready`, within [`READY`](crate::test_nats::READY). A test that needs it fails when `nats-server`
//! is missing (scripts/test installs it). Synchronous, like the other harnesses, so that
//! synchronous and asynchronous tests alike use it; it panics on failure, as tests do.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the server may take to start.
pub const READY: Duration = Duration::from_secs(20);

/// Where Debian installs the server; `nats-server` on the `PATH` otherwise.
const DEBIAN_BINARY: &str = "/usr/sbin/nats-server";

/// A `nats-server` on loopback with JetStream, killed when dropped (with its directory).
pub struct NatsServer {
    dir: tempfile::TempDir,
    mqtt: bool,
    jetstream: bool,
    /// Partitions of `smarty.raw.*` mapped by the server (docs/fleet.md), when set.
    partitions: Option<u32>,
    /// The client port.
    pub port: u16,
    /// The MQTT port, for a server started by [`NatsServer::with_mqtt`].
    pub mqtt_port: Option<u16>,
    child: Option<Child>,
}

impl NatsServer {
    /// A server with JetStream.
    pub fn start() -> NatsServer {
        NatsServer::launch(false, true)
    }

    /// A server with JetStream and an MQTT listener (MQTT 3.1.1; `a/b/c` is subject `a.b.c`).
    pub fn with_mqtt() -> NatsServer {
        NatsServer::launch(true, true)
    }

    /// A server with JetStream and an MQTT listener that maps each meter's subject
    /// `smarty.raw.<title>` to `smarty.raw.<partition>.<title>`, `partitions` partitions
    /// (the fleet's configuration for `smarty fleet ingest --partitions`).
    pub fn with_partitions(partitions: u32) -> NatsServer {
        NatsServer::launch_with(true, true, Some(partitions))
    }

    /// A server without JetStream (core NATS only).
    pub fn without_jetstream() -> NatsServer {
        NatsServer::launch(false, false)
    }

    fn launch(mqtt: bool, jetstream: bool) -> NatsServer {
        NatsServer::launch_with(mqtt, jetstream, None)
    }

    fn launch_with(mqtt: bool, jetstream: bool, partitions: Option<u32>) -> NatsServer {
        let mut server = NatsServer {
            dir: tempfile::tempdir().unwrap(),
            mqtt,
            jetstream,
            partitions,
            port: 0,
            mqtt_port: None,
            child: None,
        };
        if let Err(log) = server.spawn(None, None) {
            panic!("nats-server does not start:\n{log}");
        }
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `mqtt://127.0.0.1:PORT` of the MQTT listener.
    ///
    /// # Panics
    /// For a server without one.
    pub fn mqtt_url(&self) -> String {
        let port = self.mqtt_port.expect("a server started with_mqtt");
        format!("mqtt://127.0.0.1:{port}")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// Writes the configuration: the given ports, or `-1` (the system's choice).
    fn write_config(&self, port: Option<u16>, mqtt_port: Option<u16>) -> PathBuf {
        let dir = self.dir.path();
        let port_text = |p: Option<u16>| p.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut conf = format!(
            "server_name: smarty-test\nlisten: \"127.0.0.1:{}\"\n",
            port_text(port)
        );
        if self.jetstream {
            conf += &format!(
                "jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 64MB\n  \
                 max_file_store: 2GB\n}}\n",
                dir.join("jetstream").display()
            );
        }
        if self.mqtt {
            conf += &format!(
                "mqtt {{\n  listen: \"127.0.0.1:{}\"\n}}\n",
                port_text(mqtt_port)
            );
        }
        if let Some(n) = self.partitions {
            conf += &crate::subject::server_mapping(n);
        }
        let path = dir.join("nats-server.conf");
        std::fs::write(&path, conf).unwrap();
        path
    }

    /// Starts the server and waits until it is ready, taking its ports from its log; `Err`
    /// with its log when it ends first.
    fn spawn(&mut self, port: Option<u16>, mqtt_port: Option<u16>) -> Result<(), String> {
        assert!(self.child.is_none(), "the server runs already");
        let config = self.write_config(port, mqtt_port);
        let binary = if Path::new(DEBIAN_BINARY).exists() {
            DEBIAN_BINARY
        } else {
            "nats-server"
        };
        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "this test needs nats-server (Debian package nats-server; scripts/test \
                     installs it): {e}"
                )
            });
        // Its log, line by line into a file of the directory and to this thread; read to the
        // end, so that the server never blocks on it.
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + READY;
        let mut log = String::new();
        let (mut got_port, mut got_mqtt) = (None, None);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(p) = port_after(&line, "Listening for client connections on ") {
                        got_port = Some(p);
                    }
                    if let Some(p) = port_after(&line, "Listening for MQTT clients on mqtt://") {
                        got_mqtt = Some(p);
                    }
                    let ready = line.contains("Server is ready");
                    log += &line;
                    log.push('\n');
                    if ready {
                        match got_port {
                            Some(port) if got_mqtt.is_some() || !self.mqtt => {
                                self.port = port;
                                self.mqtt_port = got_mqtt;
                                self.child = Some(child);
                                return Ok(());
                            }
                            _ => {
                                let _ = child.kill();
                                let _ = child.wait();
                                return Err(format!("a port is missing in:\n{log}"));
                            }
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = child.wait();
                    return Err(log);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("nats-server was not ready in {READY:?}:\n{log}");
                }
            }
        }
    }

    /// Kills the server at once (connections drop without a word); its JetStream directory
    /// stays for [`NatsServer::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the killed server again on the same ports, with its streams.
    ///
    /// # Panics
    /// When it does not start (another process took a port meanwhile).
    pub fn restart(&mut self) {
        if let Err(log) = self.spawn(Some(self.port), self.mqtt_port) {
            panic!(
                "nats-server does not start again on port {}:\n{log}",
                self.port
            );
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One message of a stream, as [`stored`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its sequence number in the stream.
    pub sequence: u64,
    /// Its subject.
    pub subject: String,
    /// Its `Nats-Msg-Id` header, if any.
    pub message_id: Option<String>,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// Every message the stream `stream` of the server `url` holds, in sequence order.
///
/// # Panics
/// When the server or the stream cannot be read.
pub async fn stored(url: &str, stream: &str) -> Vec<Stored> {
    let client = async_nats::connect(url)
        .await
        .expect("the test server answers");
    let context = async_nats::jetstream::new(client);
    let mut handle = context.get_stream(stream).await.expect("the stream exists");
    let state = handle
        .info()
        .await
        .expect("stream information")
        .state
        .clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        let message = match handle.get_raw_message(sequence).await {
            Ok(message) => message,
            // A gap (a message removed): none under this number.
            Err(e) if e.to_string().contains("no message found") => continue,
            Err(e) => panic!("message {sequence} of {stream}: {e}"),
        };
        out.push(Stored {
            sequence,
            subject: message.subject.to_string(),
            message_id: message
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned()),
            payload: message.payload.to_vec(),
        });
    }
    out
}

/// The number of messages the stream `stream` of the server `url` holds.
///
/// # Panics
/// When the server or the stream cannot be read.
pub async fn message_count(url: &str, stream: &str) -> u64 {
    let client = async_nats::connect(url)
        .await
        .expect("the test server answers");
    let context = async_nats::jetstream::new(client);
    let mut handle = context.get_stream(stream).await.expect("the stream exists");
    handle
        .info()
        .await
        .expect("stream information")
        .state
        .messages
}

/// Creates (or checks) the fleet's stream with the default settings on the server `url`, as
/// the fleet's programs do on start.
///
/// # Panics
/// When that fails.
pub async fn create_stream(url: &str) {
    let client = crate::nats::connect(url, "smarty-test").await.unwrap();
    crate::stream::ensure(
        &async_nats::jetstream::new(client),
        &crate::stream::StreamConfig::default(),
    )
    .await
    .unwrap();
}

/// Runs `future` to its end for a synchronous test: on a runtime of its own, on a thread of
/// its own (so that it also works where a runtime runs already).
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        let run = scope.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(future)
        });
        match run.join() {
            Ok(output) => output,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The port at the end of the address following `before` in `line`
/// (`… on 127.0.0.1:4222`, `… on mqtt://127.0.0.1:1883`).
fn port_after(line: &str, before: &str) -> Option<u16> {
    let (_, address) = line.split_once(before)?;
    let address = address.split_whitespace().next()?;
    address.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_read_from_the_log() {
        assert_eq!(
            port_after(
                "[1] 2026/12/04 16:57:25.378480 [INF] Listening for client connections on 127.0.0.1:45927",
                "Listening for client connections on "
            ),
            Some(45927)
        );
        assert_eq!(
            port_after(
                "[1] [INF] Listening for MQTT clients on mqtt://127.0.0.1:45343",
                "Listening for MQTT clients on mqtt://"
            ),
            Some(45343)
        );
        assert_eq!(port_after("[1] [INF] Server is ready", "on "), None);
    }

    #[test]
    fn a_server_starts_reports_its_ports_and_restarts_on_them() {
        let mut server = NatsServer::with_mqtt();
        assert_ne!(server.port, 0);
        let mqtt = server.mqtt_port.expect("an MQTT port");
        assert!(std::net::TcpStream::connect(("127.0.0.1", server.port)).is_ok());
        assert!(std::net::TcpStream::connect(("127.0.0.1", mqtt)).is_ok());
        let port = server.port;
        server.kill();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        server.restart();
        assert_eq!((server.port, server.mqtt_port), (port, Some(mqtt)));
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(server.log().contains("Server is ready"));
    }
}
