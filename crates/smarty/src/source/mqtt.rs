//! MQTT sources: raw frames that another `smarty` (`--publish-raw`, topic
//! `<prefix>/<meter>/raw`) or a P1 dongle published, decrypted here — offline decryption, as
//! Go Smarty Reader's forwarder does it: the key lives only where decryption happens.
//!
//! # SOURCE
//!
//! `mqtt://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC` (TCP, port 1883 by default) or
//! `mqtts://…` (TLS, port 8883 by default; the server certificate is checked against the
//! system's authorities, or the PEM bundle named by `SSL_CERT_FILE` for a self-signed one).
//! `TOPIC` is everything after the first `/` following the host, taken literally; it may hold
//! the wildcards `+` and `#` (`mqtt://broker.lan/smarty/+/raw`). `USER` and `PASSWORD` may be
//! percent-encoded (`%40` for `@`, `%3A` for `:`). Rather than putting the password in the
//! URL (visible in `ps`), give only the user and set the environment variable
//! `SMARTY_SOURCE_MQTT_PASSWORD`.
//!
//! The host and port are parsed by [`crate::service::mqtt::parse_url`] and TLS is set up as for
//! the MQTT output; the user, password and topic are split off here first (the output's URL
//! carries neither).
//!
//! # Payloads
//!
//! One message is one frame (or one plaintext telegram). A payload of hex text (only hex
//! digits and white space, an even number of digits — what `--publish-raw` and
//! `smarty read --format raw` write) is decoded; anything else is passed on as binary.
//!
//! # Sessions
//!
//! The subscription is at QoS 1 in a persistent session (clean session off) under a client id
//! derived from the host name and the source (`smarty-src-<host>-<hash>`), so the broker keeps
//! the frames published while this `smarty` was away and hands them over on reconnect. Two
//! `smarty` processes on one host reading the same source would share that id and throw each
//! other off: give them different topics or hosts.
//!
//! A frame is acknowledged to the broker (PUBACK) only once it was read, so what was not read
//! when the connection or `smarty` went is sent again by the broker (a frame may come twice;
//! the decoder's frame counter tells them apart). The broker's in-flight window (Mosquitto:
//! 20) bounds what is received and not read yet; the connection keeps answering pings and
//! acknowledging while the reader is busy, so a backlog of thousands of frames on reconnect
//! flows through at the reader's pace.
//!
//! When the broker connection fails or drops, the reader ends with the error and the pipeline
//! reconnects with its back-off.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use rumqttc::mqttbytes::v4::SubscribeReasonCode;
use rumqttc::{
    AckMode, AsyncClient, Event as MqttEvent, EventLoop, Incoming, ManualAck, MqttOptions,
    Outgoing, QoS, TlsConfiguration, Transport,
};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{OpenFuture, Reader, Source};
use crate::secret::Secret;
use crate::service::mqtt::{Endpoint, parse_url, tls_config};

/// The environment variable holding the password when the URL names only the user.
pub const PASSWORD_ENV: &str = "SMARTY_SOURCE_MQTT_PASSWORD";

/// How long connecting and subscribing may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Keep-alive interval, seconds.
const KEEP_ALIVE_S: u16 = 30;
/// How long closing the connection waits for the broker to close its end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// QoS 0 frames (which the broker sends without flow control) waiting for the reader, at most.
const MAX_PENDING_QOS0: usize = 10_000;

/// An MQTT topic of raw frames.
pub struct MqttSource {
    endpoint: Endpoint,
    username: Option<String>,
    password: Option<Secret>,
    topic: String,
    client_id: String,
    /// The task of the last connection, to wait for its end before the next.
    connection: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for MqttSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttSource")
            .field("endpoint", &self.endpoint)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("topic", &self.topic)
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl MqttSource {
    /// Parses `mqtt[s]://[user[:password]@]host[:port]/topic`; a user without a password in
    /// the URL takes the password from `SMARTY_SOURCE_MQTT_PASSWORD`, if set.
    ///
    /// # Errors
    /// An unknown scheme, a bad host or port, no topic, or a password without a user.
    pub fn new(spec: &str) -> Result<Self> {
        Self::with_env_password(spec, std::env::var(PASSWORD_ENV).ok())
    }

    fn with_env_password(spec: &str, env_password: Option<String>) -> Result<Self> {
        let usage = "expected mqtt://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC \
                     (e.g. mqtt://broker.lan/smarty/home/raw)";
        let Some((scheme, rest)) = spec.split_once("://") else {
            bail!("{spec:?}: {usage}");
        };
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "mqtt" && scheme != "mqtts" {
            bail!("{scheme}://…: {usage}");
        }
        let Some((authority, topic)) = rest.split_once('/') else {
            bail!("{scheme}://… has no topic: {usage}");
        };
        if topic.is_empty() || topic.contains('\0') {
            bail!("{scheme}://… has no topic: {usage}");
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (Some(percent_decode(user)?), Some(percent_decode(pass)?)),
                None => (Some(percent_decode(u)?), None),
            },
        };
        if username.as_deref() == Some("") {
            bail!("{scheme}://…: empty user name before @");
        }
        let password = match (&username, password) {
            (Some(_), Some(p)) => Some(Secret::from(p)),
            (Some(_), None) => env_password.filter(|p| !p.is_empty()).map(Secret::from),
            (None, _) => None,
        };
        let endpoint = parse_url(&format!("{scheme}://{hostport}"))
            .map_err(|e| anyhow::anyhow!("{}", e.to_string().replace("mqtt.url ", "source ")))?;
        let mut source = MqttSource {
            endpoint,
            username,
            password,
            topic: topic.to_owned(),
            client_id: String::new(),
            connection: std::sync::Mutex::new(None),
        };
        source.client_id = client_id(&source.to_string());
        Ok(source)
    }

    fn options(&self) -> Result<MqttOptions> {
        let mut options = MqttOptions::new(
            self.client_id.clone(),
            (self.endpoint.host_name(), self.endpoint.port),
        );
        options
            .set_keep_alive(KEEP_ALIVE_S)
            .set_clean_session(false)
            // A frame is acknowledged once read, not on arrival: what was not read when the
            // connection or `smarty` goes comes again.
            .set_ack_mode(AckMode::Manual)
            .set_max_packet_size(1 << 20, 1 << 20);
        if let Some(user) = &self.username {
            let password = self.password.as_ref().map_or("", Secret::expose).to_owned();
            options.set_credentials(user.clone(), password);
        }
        if self.endpoint.tls {
            let tls = tls_config(None)?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls),
            )));
        }
        Ok(options)
    }

    async fn connect(&self) -> io::Result<Reader> {
        // One connection at a time: a new one under the same client id would throw the old
        // one off while it still sends its last acknowledgements.
        let previous = self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(previous) = previous {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, previous).await;
        }
        let mut options = self.options().map_err(io::Error::other)?;
        let socket = SocketSlot::default();
        let slot = Arc::clone(&socket);
        options.set_socket_connector(move |host, network_options| {
            let slot = Arc::clone(&slot);
            async move {
                let stream = rumqttc::default_socket_connect(host, network_options)
                    .await?
                    .into_std()?;
                *slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(stream.try_clone()?);
                tokio::net::TcpStream::from_std(stream)
            }
        });
        // Unbounded: the acknowledgements go through it, and must never wait (their number is
        // bounded by the broker's in-flight window).
        let (client, eventloop) = AsyncClient::builder(options)
            .unbounded()
            .try_build()
            .map_err(io::Error::other)?;
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let (error_tx, error) = oneshot::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let link = Link {
            client: client.clone(),
            topic: self.topic.clone(),
            frames: frames_tx,
            error: Some(error_tx),
            ready: Some(ready_tx),
            pending: Arc::clone(&pending),
            dropped_qos0: 0,
            socket,
        };
        let task = tokio::spawn(link.drive(eventloop));
        *self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
        let reader = MessageReader {
            client,
            frames,
            error,
            pending,
            current: None,
            taken: 0,
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, ready_rx).await {
            Ok(Ok(Ok(()))) => Ok(Box::new(reader) as Reader),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(io::Error::other("the MQTT connection task ended")),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connecting and subscribing timed out",
            )),
        }
    }
}

impl fmt::Display for MqttSource {
    /// The URL without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.endpoint.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://")?;
        if let Some(user) = &self.username {
            write!(f, "{user}@")?;
        }
        write!(
            f,
            "{}:{}/{}",
            self.endpoint.host, self.endpoint.port, self.topic
        )
    }
}

impl Source for MqttSource {
    fn open(&self) -> OpenFuture<'_> {
        Box::pin(self.connect())
    }

    fn is_live(&self) -> bool {
        true
    }
}

/// `smarty-src-<hostname>-<hash of the source>`, at most 23 characters when the host name is
/// short (the MQTT 3.1.1 limit brokers must accept; Mosquitto accepts longer ones).
fn client_id(source: &str) -> String {
    // FNV-1a: stable across runs and versions (unlike std's hasher).
    let mut hash: u32 = 0x811c_9dc5;
    for b in source.bytes() {
        hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(24)
        .collect();
    if host.is_empty() {
        format!("smarty-src-{hash:08x}")
    } else {
        format!("smarty-src-{host}-{hash:08x}")
    }
}

/// A SOURCE string fit for logs: the password of a `scheme://user:password@…` URL replaced
/// by `***`; anything else unchanged.
pub fn redact_password(spec: &str) -> String {
    let Some((scheme, rest)) = spec.split_once("://") else {
        return spec.to_owned();
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once('@') {
        Some((userinfo, _)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{}", &rest[userinfo.len() + 1..]),
            None => spec.to_owned(),
        },
        None => spec.to_owned(),
    }
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .context("bad percent escape in the user or password")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("the user or password is not UTF-8")
}

/// The bytes of one message: hex text decoded, anything else as it is.
pub fn payload_bytes(payload: &[u8]) -> Vec<u8> {
    let digits = payload.iter().filter(|b| !b.is_ascii_whitespace()).count();
    let hex = digits > 0
        && digits % 2 == 0
        && payload
            .iter()
            .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace());
    if !hex {
        return payload.to_vec();
    }
    let mut out = Vec::with_capacity(digits / 2);
    let mut high: Option<u8> = None;
    for &b in payload {
        let Some(v) = (b as char).to_digit(16) else {
            continue;
        };
        let v = v as u8;
        match high.take() {
            Some(h) => out.push((h << 4) | v),
            None => high = Some(v),
        }
    }
    out
}

/// One message as the reader gets it.
struct Frame {
    bytes: Vec<u8>,
    /// The acknowledgement to send once the bytes were read (`None` at QoS 0).
    ack: Option<ManualAck>,
}

/// The connection task's ends of the channels to the reader.
struct Link {
    client: AsyncClient,
    topic: String,
    frames: mpsc::UnboundedSender<Frame>,
    /// The error the connection ended with, for the reader.
    error: Option<oneshot::Sender<io::Error>>,
    /// Told once subscribed (or why not).
    ready: Option<oneshot::Sender<io::Result<()>>>,
    /// Frames sent to the reader and not read yet.
    pending: Arc<AtomicUsize>,
    /// QoS 0 frames dropped because the reader fell behind, since the last warning.
    dropped_qos0: u64,
    /// A second handle on the connection's socket, to close it cleanly.
    socket: SocketSlot,
}

/// A second handle on a connection's TCP socket (a duplicated descriptor), set by the socket
/// connector.
type SocketSlot = Arc<std::sync::Mutex<Option<std::net::TcpStream>>>;

/// Closes a connection whose DISCONNECT went out, without losing what was sent before it.
///
/// Closing a socket that still holds unread data resets the connection, and a reset makes the
/// broker throw away what it did not read yet: the last acknowledgements, and the DISCONNECT.
/// So: the descriptor rumqttc held is closed already; through the second one, signal the end
/// of what we send (the broker reads all of it first), and read until the broker closed its
/// end (for [`CLOSE_TIMEOUT`] at most).
async fn close_cleanly(socket: &SocketSlot) {
    let Some(socket) = socket
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    else {
        return;
    };
    if socket.shutdown(std::net::Shutdown::Write).is_err() {
        return;
    }
    let Ok(mut socket) = tokio::net::TcpStream::from_std(socket) else {
        return;
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        let mut sink = [0u8; 4096];
        while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

impl Link {
    /// Drives the connection: subscribes after the CONNACK (unless the broker kept the
    /// session, subscription included), reports readiness, and forwards every payload. It
    /// never waits for the reader, so acknowledgements and keep-alive pings always flow: the
    /// broker holds back QoS 1 frames beyond its in-flight window until the reader
    /// acknowledged earlier ones. Ends with the first error, or once the DISCONNECT the
    /// reader asks for when dropped (after its last acknowledgements) went out.
    ///
    /// `poll` is never cancelled: a request it took from the channel would be lost.
    async fn drive(mut self, mut eventloop: EventLoop) {
        loop {
            let error = match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Incoming::ConnAck(ack))) => {
                    if ack.session_present {
                        self.set_ready(Ok(()));
                        continue;
                    }
                    match self
                        .client
                        .try_subscribe(self.topic.clone(), QoS::AtLeastOnce)
                    {
                        Ok(()) => continue,
                        Err(e) => {
                            io::Error::other(format!("cannot subscribe to {}: {e}", self.topic))
                        }
                    }
                }
                Ok(MqttEvent::Incoming(Incoming::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, SubscribeReasonCode::Failure))
                    {
                        io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            format!("the broker refused the subscription to {}", self.topic),
                        )
                    } else {
                        self.set_ready(Ok(()));
                        continue;
                    }
                }
                Ok(MqttEvent::Incoming(Incoming::Publish(p))) => {
                    self.forward(&p);
                    continue;
                }
                Ok(MqttEvent::Outgoing(Outgoing::Disconnect)) => {
                    drop(eventloop);
                    close_cleanly(&self.socket).await;
                    return;
                }
                Ok(_) => continue,
                Err(e) => io::Error::other(format!("MQTT: {e}")),
            };
            // Before readiness, `open` fails; after it, the reader ends with the error (the
            // frames it did not read were not acknowledged: the broker sends them again).
            if let Some(ready) = self.ready.take() {
                let _ = ready.send(Err(error));
            } else if let Some(tx) = self.error.take() {
                let _ = tx.send(error);
            }
            return;
        }
    }

    fn set_ready(&mut self, result: io::Result<()>) {
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(result);
        }
    }

    /// Hands a message to the reader. QoS 0 frames (a publisher that sends at QoS 0) have no
    /// flow control: past [`MAX_PENDING_QOS0`] unread frames they are dropped and counted.
    fn forward(&mut self, publish: &rumqttc::Publish) {
        let ack = self.client.prepare_ack(publish);
        if ack.is_none() && self.pending.load(Ordering::Relaxed) >= MAX_PENDING_QOS0 {
            if self.dropped_qos0 == 0 {
                tracing::warn!(
                    topic = %self.topic,
                    "MQTT source: the reader fell {MAX_PENDING_QOS0} frames behind; dropping QoS 0 \
                     frames until it catches up (publish at QoS 1 to lose none)"
                );
            }
            self.dropped_qos0 += 1;
            return;
        }
        if self.dropped_qos0 > 0 {
            tracing::warn!(
                topic = %self.topic,
                dropped = self.dropped_qos0,
                "MQTT source: {} QoS 0 frames were dropped while the reader was behind",
                self.dropped_qos0
            );
            self.dropped_qos0 = 0;
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        let frame = Frame {
            bytes: payload_bytes(&publish.payload),
            ack,
        };
        // The reader is gone: its `stop` ends this task.
        let _ = self.frames.send(frame);
    }
}

/// Payloads as one byte stream: each frame is acknowledged to the broker once its last byte
/// was read. Dropping it disconnects.
struct MessageReader {
    client: AsyncClient,
    frames: mpsc::UnboundedReceiver<Frame>,
    /// The error the connection ended with.
    error: oneshot::Receiver<io::Error>,
    /// Frames sent by the connection task and not read yet.
    pending: Arc<AtomicUsize>,
    /// The frame being read.
    current: Option<Frame>,
    taken: usize,
}

impl Drop for MessageReader {
    /// Disconnects, after the acknowledgements queued before (one channel, in order), so
    /// that the broker does not send again what was read.
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
    }
}

impl MessageReader {
    /// The frame was read to its end: acknowledge it.
    fn finish_frame(&mut self) {
        if let Some(frame) = self.current.take() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            if let Some(ack) = frame.ack {
                // The request channel is unbounded: this fails only once the connection task
                // is gone, and then the broker sends the frame again.
                let _ = self.client.try_manual_ack(ack);
            }
        }
        self.taken = 0;
    }
}

impl AsyncRead for MessageReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Some(frame) = &this.current {
                let n = buf.remaining().min(frame.bytes.len() - this.taken);
                buf.put_slice(&frame.bytes[this.taken..this.taken + n]);
                this.taken += n;
                if this.taken == frame.bytes.len() {
                    this.finish_frame();
                }
                if n > 0 {
                    return Poll::Ready(Ok(()));
                }
            }
            // A lost connection ends the stream at once: unread frames come again.
            if let Poll::Ready(result) = Pin::new(&mut this.error).poll(cx) {
                return Poll::Ready(Err(result.unwrap_or_else(|_| {
                    io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the MQTT connection ended",
                    )
                })));
            }
            match std::task::ready!(this.frames.poll_recv(cx)) {
                Some(frame) => {
                    this.current = Some(frame);
                    this.taken = 0;
                }
                // The connection task is gone without a word: treat it as a lost connection.
                None => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the MQTT connection ended",
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::PublishOptions;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;
    use tokio::io::{AsyncBufReadExt, BufReader};

    #[test]
    fn specs_are_parsed_and_the_password_is_never_shown() {
        let s = MqttSource::with_env_password("mqtt://broker.lan/smarty/home/raw", None).unwrap();
        assert_eq!(s.to_string(), "mqtt://broker.lan:1883/smarty/home/raw");
        assert!(!s.endpoint.tls);
        assert_eq!(s.topic, "smarty/home/raw");
        assert!(s.client_id.starts_with("smarty-src-"));

        let s =
            MqttSource::with_env_password("mqtts://u%40x:s%3Acret@[::1]:9000/a/+/#", None).unwrap();
        assert_eq!(s.username.as_deref(), Some("u@x"));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("s:cret"));
        assert_eq!(s.topic, "a/+/#");
        assert_eq!(s.endpoint.port, 9000);
        assert_eq!(s.to_string(), "mqtts://u@x@[::1]:9000/a/+/#");
        assert!(!format!("{s:?}").contains("s:cret"));

        let s = MqttSource::with_env_password("mqtt://me@h/t", Some("fromenv".into())).unwrap();
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("fromenv"));
        assert!(!s.to_string().contains("fromenv"));
        let s = MqttSource::with_env_password("mqtt://h/t", Some("fromenv".into())).unwrap();
        assert_eq!(s.password, None);

        for bad in [
            "mqtt://h",
            "mqtt://h/",
            "mqtt:///t",
            "mqtt://h:0/t",
            "mqtt://:p@h/t",
            "http://h/t",
            "mqtt://u%zz@h/t",
        ] {
            assert!(MqttSource::with_env_password(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_are_redacted_in_specs() {
        assert_eq!(
            redact_password("mqtt://u:p%40ss@h:1/a/b"),
            "mqtt://u:***@h:1/a/b"
        );
        assert_eq!(redact_password("mqtt://u@h/t"), "mqtt://u@h/t");
        assert_eq!(redact_password("mqtt://h/t@x"), "mqtt://h/t@x");
        assert_eq!(redact_password("/dev/ttyUSB0"), "/dev/ttyUSB0");
    }

    #[test]
    fn hex_payloads_are_decoded_and_binary_ones_passed_through() {
        assert_eq!(
            payload_bytes(b"DB08 5341\r\n"),
            vec![0xDB, 0x08, 0x53, 0x41]
        );
        assert_eq!(payload_bytes(b"db0853"), vec![0xDB, 0x08, 0x53]);
        assert_eq!(payload_bytes(b"DB0"), b"DB0".to_vec(), "odd count: binary");
        assert_eq!(payload_bytes(b"/ISK5\r\n"), b"/ISK5\r\n".to_vec());
        assert_eq!(payload_bytes(&[0xDB, 0x08]), vec![0xDB, 0x08]);
        assert_eq!(payload_bytes(b""), Vec::<u8>::new());
    }

    /// A Mosquitto on a loopback port, killed on drop.
    struct Broker {
        _dir: tempfile::TempDir,
        port: u16,
        child: Child,
    }

    impl Broker {
        fn start() -> Broker {
            Broker::start_with("")
        }

        /// A broker with `extra` lines of configuration.
        fn start_with(extra: &str) -> Broker {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let dir = tempfile::tempdir().unwrap();
            // Mosquitto drops to its own user when started as root.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
            let path = dir.path().join("mosquitto.conf");
            std::fs::write(
                &path,
                format!(
                    "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra}"
                ),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let child = Command::new("/usr/sbin/mosquitto")
                .arg("-c")
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mosquitto runs");
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "mosquitto did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
            Broker {
                _dir: dir,
                port,
                child,
            }
        }
    }

    impl Drop for Broker {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    async fn read_exactly(reader: &mut Reader, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(10), reader.read_exact(&mut out))
            .await
            .expect("the bytes arrive")
            .unwrap();
        out
    }

    #[tokio::test]
    async fn reads_hex_and_binary_payloads_from_a_real_broker() {
        let mut broker = Broker::start();
        let source =
            MqttSource::new(&format!("mqtt://127.0.0.1:{}/smarty/+/raw", broker.port)).unwrap();
        assert!(source.is_live());
        let mut reader = source.open().await.unwrap();

        let (client, mut eventloop) = AsyncClient::builder(MqttOptions::new(
            "test-publisher",
            ("127.0.0.1", broker.port),
        ))
        .capacity(10)
        .build();
        let publisher = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        let frame1: Vec<u8> = (0..=255u8).chain([0xDB, 0x08]).collect();
        let frame2 = vec![0xDB, 0x08, 0x53, 0x41, 0x47, 0x00, 0xFF];
        let binary = b"/Lux5\\253663629_D\r\n\r\n!ABCD\r\n".to_vec();
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02X}")).collect::<String>();
        for payload in [
            hex(&frame1).into_bytes(),
            format!("{}\n", hex(&frame2).to_lowercase()).into_bytes(),
            binary.clone(),
        ] {
            client
                .publish(
                    "smarty/home/raw",
                    payload,
                    PublishOptions::new(QoS::AtLeastOnce),
                )
                .await
                .unwrap();
        }
        // Not subscribed: not read.
        client
            .publish(
                "smarty/home/state",
                "{}",
                PublishOptions::new(QoS::AtLeastOnce),
            )
            .await
            .unwrap();
        assert_eq!(read_exactly(&mut reader, frame1.len()).await, frame1);
        assert_eq!(read_exactly(&mut reader, frame2.len()).await, frame2);
        assert_eq!(read_exactly(&mut reader, binary.len()).await, binary);
        publisher.abort();

        // The broker goes away: the reader ends with an error (the pipeline reconnects), and
        // opening again fails until it is back.
        let _ = broker.child.kill();
        let _ = broker.child.wait();
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut rest))
            .await
            .expect("the reader ends");
        assert!(ended.is_err(), "{ended:?}");
        assert!(source.open().await.is_err());
    }

    /// Publishes `frames` at QoS 1 from a client of its own and waits until the broker took
    /// them all.
    async fn publish_all(port: u16, frames: &[Vec<u8>]) {
        let (client, mut eventloop) =
            AsyncClient::builder(MqttOptions::new("backlog-publisher", ("127.0.0.1", port)))
                .capacity(10)
                .build();
        let frames = frames.to_vec();
        let count = frames.len();
        let publisher = tokio::spawn(async move {
            for frame in frames {
                client
                    .publish(
                        "smarty/home/raw",
                        frame,
                        PublishOptions::new(QoS::AtLeastOnce),
                    )
                    .await
                    .unwrap();
            }
            client
        });
        let mut acked = 0;
        tokio::time::timeout(Duration::from_secs(20), async {
            while acked < count {
                if let MqttEvent::Incoming(Incoming::PubAck(_)) = eventloop.poll().await.unwrap() {
                    acked += 1;
                }
            }
        })
        .await
        .expect("the broker takes the backlog");
        drop(publisher.await.unwrap());
    }

    /// A `smarty` that was away comes back to a backlog of 1,000 frames in its persistent
    /// session: it connects, and reads every frame once, in order, however the broker
    /// interleaves the backlog with the subscription's acknowledgement. Several rounds, so
    /// that a racy hang shows.
    #[tokio::test]
    async fn a_backlog_of_frames_arrives_whole_after_a_reconnect() {
        const FRAMES: usize = 1_000;
        let broker = Broker::start_with("max_queued_messages 5000\n");
        let source =
            MqttSource::new(&format!("mqtt://127.0.0.1:{}/smarty/+/raw", broker.port)).unwrap();
        // The first connection creates the persistent session and its subscription.
        drop(source.open().await.unwrap());
        for round in 0..4 {
            let frames: Vec<Vec<u8>> = (0..FRAMES)
                .map(|i| format!("round {round} frame {i:05}\n").into_bytes())
                .collect();
            publish_all(broker.port, &frames).await;
            let mut reader = tokio::time::timeout(Duration::from_secs(20), source.open())
                .await
                .unwrap_or_else(|_| panic!("round {round}: open hangs"))
                .unwrap_or_else(|e| panic!("round {round}: open fails: {e}"));
            // Every frame of the round, in order; none of the previous round (all were read
            // and acknowledged before the reader went).
            let mut lines = BufReader::new(&mut reader).lines();
            for (i, frame) in frames.iter().enumerate() {
                let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
                    .await
                    .unwrap_or_else(|_| panic!("round {round}: stalled after {i} frames"))
                    .unwrap()
                    .unwrap();
                assert_eq!(line.as_bytes(), frame.trim_ascii_end(), "round {round}");
            }
            drop(lines);
            drop(reader);
        }
    }

    /// A frame is acknowledged once read: those not read when the reader goes come again on
    /// the next connection, those read do not.
    #[tokio::test]
    async fn frames_not_read_come_again_and_frames_read_do_not() {
        let broker = Broker::start();
        let source =
            MqttSource::new(&format!("mqtt://127.0.0.1:{}/smarty/+/raw", broker.port)).unwrap();
        drop(source.open().await.unwrap());
        let frames: Vec<Vec<u8>> = (0..10)
            .map(|i| format!("frame {i:02}\n").into_bytes())
            .collect();
        publish_all(broker.port, &frames).await;
        let mut reader = source.open().await.unwrap();
        assert_eq!(read_exactly(&mut reader, 4 * 9).await, frames[..4].concat());
        drop(reader);
        let mut reader = source.open().await.unwrap();
        assert_eq!(
            String::from_utf8(read_exactly(&mut reader, 6 * 9).await).unwrap(),
            String::from_utf8(frames[4..].concat()).unwrap()
        );
    }
}
