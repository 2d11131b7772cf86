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
//! When the broker connection fails or drops, the reader ends with the error and the pipeline
//! reconnects with its back-off.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use rumqttc::mqttbytes::v4::SubscribeReasonCode;
use rumqttc::{
    AsyncClient, Event as MqttEvent, EventLoop, Incoming, MqttOptions, QoS, TlsConfiguration,
    Transport,
};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{OpenFuture, Reader, Source};
use crate::secret::Secret;
use crate::service::mqtt::{Endpoint, parse_url, tls_config};

/// The environment variable holding the password when the URL names only the user.
pub const PASSWORD_ENV: &str = "SMARTY_SOURCE_MQTT_PASSWORD";

/// How long connecting and subscribing may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Messages buffered between the connection task and the reader.
const BUFFER: usize = 64;

/// An MQTT topic of raw frames.
pub struct MqttSource {
    endpoint: Endpoint,
    username: Option<String>,
    password: Option<Secret>,
    topic: String,
    client_id: String,
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
        };
        source.client_id = client_id(&source.to_string());
        Ok(source)
    }

    fn options(&self) -> Result<MqttOptions> {
        let mut options = MqttOptions::new(
            self.client_id.clone(),
            self.endpoint
                .host
                .trim_start_matches('[')
                .trim_end_matches(']'),
            self.endpoint.port,
        );
        options
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(false)
            .set_max_packet_size(1 << 20, 1 << 20);
        if let Some(user) = &self.username {
            let password = self.password.as_ref().map_or("", Secret::expose);
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
        let options = self.options().map_err(io::Error::other)?;
        let (client, eventloop) = AsyncClient::new(options, 10);
        let (tx, rx) = mpsc::channel(BUFFER);
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(drive(client, eventloop, self.topic.clone(), tx, ready_tx));
        let reader = MessageReader {
            rx,
            pending: Vec::new(),
            taken: 0,
            task,
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

/// Drives the connection: subscribes after the CONNACK, reports readiness after the SUBACK,
/// forwards every payload, and ends the stream with the first error.
async fn drive(
    client: AsyncClient,
    mut eventloop: EventLoop,
    topic: String,
    tx: mpsc::Sender<io::Result<Vec<u8>>>,
    ready: oneshot::Sender<io::Result<()>>,
) {
    let mut ready = Some(ready);
    loop {
        let error = match eventloop.poll().await {
            Ok(MqttEvent::Incoming(Incoming::ConnAck(_))) => {
                match client.try_subscribe(topic.clone(), QoS::AtLeastOnce) {
                    Ok(()) => continue,
                    Err(e) => io::Error::other(format!("cannot subscribe to {topic}: {e}")),
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
                        format!("the broker refused the subscription to {topic}"),
                    )
                } else {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(()));
                    }
                    continue;
                }
            }
            Ok(MqttEvent::Incoming(Incoming::Publish(p))) => {
                if tx.send(Ok(payload_bytes(&p.payload))).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(_) => continue,
            Err(e) => io::Error::other(format!("MQTT: {e}")),
        };
        // Before the SUBACK, `open` fails; after it, the reader ends with the error.
        match ready.take() {
            Some(r) => {
                let _ = r.send(Err(error));
            }
            None => {
                let _ = tx.send(Err(error)).await;
            }
        }
        return;
    }
}

/// Payloads as one byte stream; stops the connection when dropped.
struct MessageReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    pending: Vec<u8>,
    taken: usize,
    task: JoinHandle<()>,
}

impl Drop for MessageReader {
    fn drop(&mut self) {
        self.task.abort();
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
            if this.taken < this.pending.len() {
                let n = buf.remaining().min(this.pending.len() - this.taken);
                buf.put_slice(&this.pending[this.taken..this.taken + n]);
                this.taken += n;
                return Poll::Ready(Ok(()));
            }
            match std::task::ready!(this.rx.poll_recv(cx)) {
                Some(Ok(bytes)) => {
                    this.pending = bytes;
                    this.taken = 0;
                }
                Some(Err(e)) => return Poll::Ready(Err(e)),
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
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;
    use tokio::io::AsyncReadExt;

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
                format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
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

        let (client, mut eventloop) = AsyncClient::new(
            MqttOptions::new("test-publisher", "127.0.0.1", broker.port),
            10,
        );
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
                .publish("smarty/home/raw", QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
        // Not subscribed: not read.
        client
            .publish("smarty/home/state", QoS::AtLeastOnce, false, "{}")
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
}
