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
//! The topic is split off here; the rest is parsed as the MQTT output's address is
//! ([`BrokerUrl::parse`]), and TLS is set up as for the output.
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
//! A frame is acknowledged to the broker (PUBACK) only once its last byte was read, so what
//! was not read when the connection or `smarty` went is sent again by the broker (a frame may
//! come twice; the decoder's frame counter tells them apart). See [`Subscriber`] for the flow
//! control.
//!
//! When the broker connection fails or drops, the reader ends with the error and the pipeline
//! reconnects with its back-off.

use std::io;

use anyhow::{Result, bail};
use bytes::{Buf, Bytes};
use tokio_stream::StreamExt as _;
use tokio_util::io::StreamReader;

use super::{OpenFuture, Reader, Source};
use smarty_mqtt::config::host_label;
use smarty_mqtt::{BrokerUrl, Connection, Endpoint, Received, Subscriber};

/// The environment variable holding the password when the URL names only the user.
pub const PASSWORD_ENV: &str = "SMARTY_SOURCE_MQTT_PASSWORD";

/// Keep-alive interval, seconds.
const KEEP_ALIVE_S: u16 = 30;

/// An MQTT topic of raw frames.
#[derive(Debug)]
pub struct MqttSource {
    /// The URL as shown (without the password).
    shown: String,
    subscriber: Subscriber,
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
            bail!("not an MQTT URL: {usage}");
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
        let url = BrokerUrl::parse(&format!("{scheme}://{authority}"))
            .map_err(|e| anyhow::anyhow!("{scheme}://…: {e}; {usage}"))?;
        let password = match (&url.username, url.password) {
            (Some(_), Some(p)) => Some(p),
            (Some(_), None) => env_password.filter(|p| !p.is_empty()).map(Into::into),
            (None, _) => None,
        };
        let shown = shown(&url.endpoint, url.username.as_deref(), topic);
        let connection = Connection {
            client_id: client_id(&shown),
            endpoint: url.endpoint,
            username: url.username,
            password,
            keep_alive_s: KEEP_ALIVE_S,
            ca_file: None,
        };
        Ok(MqttSource {
            shown,
            subscriber: Subscriber::new(connection, topic.to_owned()),
        })
    }

    async fn connect(&self) -> io::Result<Reader> {
        let subscription = self.subscriber.subscribe().await?;
        let frames = subscription.map(|received| received.map(Frame::new));
        Ok(Box::new(StreamReader::new(frames)))
    }
}

/// `mqtt[s]://[user@]host:port/topic`: the URL without the password.
fn shown(endpoint: &Endpoint, username: Option<&str>, topic: &str) -> String {
    let scheme = if endpoint.tls { "mqtts" } else { "mqtt" };
    let user = username.map(|u| format!("{u}@")).unwrap_or_default();
    format!(
        "{scheme}://{user}{}:{}/{topic}",
        endpoint.host, endpoint.port
    )
}

impl std::fmt::Display for MqttSource {
    /// The URL without the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
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
/// short (the MQTT 3.1.1 limit brokers must accept; Mosquitto accepts longer ones). The
/// broker keeps the session under it: it must stay the same across runs and versions.
fn client_id(source: &str) -> String {
    // FNV-1a (32 bits): stable across runs and versions, unlike std's hasher.
    let mut hash: u32 = 0x811c_9dc5;
    for b in source.bytes() {
        hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    match host_label(24) {
        Some(host) => format!("smarty-src-{host}-{hash:08x}"),
        None => format!("smarty-src-{hash:08x}"),
    }
}

/// A SOURCE string fit for logs: the password of a `scheme://user:password@…` URL replaced
/// by `***`; anything else unchanged. Text only (no parsing), so that even a SOURCE too
/// broken to parse never shows its password.
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

/// The bytes of one message: hex text decoded, anything else as it is.
pub fn payload_bytes(payload: &Bytes) -> Bytes {
    let digits = payload.iter().filter(|b| !b.is_ascii_whitespace()).count();
    let hex = digits > 0
        && digits % 2 == 0
        && payload
            .iter()
            .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace());
    if !hex {
        return payload.clone();
    }
    // Only hex digits and white space, an even number of digits: it decodes.
    std::str::from_utf8(payload)
        .ok()
        .and_then(|text| smarty_p1::hex::decode(text).ok())
        .map_or_else(|| payload.clone(), Bytes::from)
}

/// One message's bytes as a chunk of the source's byte stream: acknowledged to the broker
/// once its last byte was read.
struct Frame {
    bytes: Bytes,
    /// The message, until acknowledged.
    received: Option<Received>,
}

impl Frame {
    fn new(received: Received) -> Frame {
        let mut frame = Frame {
            bytes: payload_bytes(received.payload()),
            received: Some(received),
        };
        // Nothing to read: done at once.
        frame.acknowledge_if_read();
        frame
    }

    fn acknowledge_if_read(&mut self) {
        if self.bytes.is_empty()
            && let Some(received) = self.received.take()
        {
            received.acknowledge();
        }
    }
}

impl Buf for Frame {
    fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn chunk(&self) -> &[u8] {
        &self.bytes
    }

    fn advance(&mut self, n: usize) {
        self.bytes.advance(n);
        self.acknowledge_if_read();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

    use smarty_model::secret::Secret;
    use smarty_mqtt::test_broker::{Broker, publish_all};

    #[test]
    fn specs_are_parsed_and_the_password_is_never_shown() {
        let s = MqttSource::with_env_password("mqtt://broker.lan/smarty/home/raw", None).unwrap();
        assert_eq!(s.to_string(), "mqtt://broker.lan:1883/smarty/home/raw");
        let c = s.subscriber.connection();
        assert!(!c.endpoint.tls);
        assert_eq!(s.subscriber.topic(), "smarty/home/raw");
        // The id of the broker's session for this source: the same in every run and version.
        let host = host_label(24).unwrap();
        assert_eq!(c.client_id, format!("smarty-src-{host}-6635e901"));

        let s =
            MqttSource::with_env_password("mqtts://u%40x:s%3Acret@[::1]:9000/a/+/#", None).unwrap();
        let c = s.subscriber.connection();
        assert_eq!(c.username.as_deref(), Some("u@x"));
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("s:cret"));
        assert_eq!(s.subscriber.topic(), "a/+/#");
        assert_eq!((c.endpoint.tls, c.endpoint.port), (true, 9000));
        assert_eq!(s.to_string(), "mqtts://u@x@[::1]:9000/a/+/#");
        assert!(!format!("{s:?}").contains("s:cret"));

        let s = MqttSource::with_env_password("mqtt://me@h/t", Some("fromenv".into())).unwrap();
        let c = s.subscriber.connection();
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("fromenv"));
        assert!(!s.to_string().contains("fromenv"));
        let s = MqttSource::with_env_password("mqtt://h/t", Some("fromenv".into())).unwrap();
        assert_eq!(s.subscriber.connection().password, None);

        for bad in [
            "mqtt://h",
            "mqtt://h/",
            "mqtt:///t",
            "mqtt://h:0/t",
            "mqtt://:p@h/t",
            "http://h/t",
            "mqtt://u%zz@h/t",
            "tcp://h/t",
        ] {
            assert!(MqttSource::with_env_password(bad, None).is_err(), "{bad}");
        }
        let e = MqttSource::with_env_password("mqtt://h:0/t", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "mqtt://…: port 0 is not a port to connect to; expected \
             mqtt://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC (e.g. mqtt://broker.lan/smarty/home/raw)"
        );
        // Errors never show the password.
        for bad in [
            "mqtt://u:hunter2@h:0/t",
            "mqtt://u:hunter2@h",
            "u:hunter2@h/t",
        ] {
            let e = MqttSource::with_env_password(bad, None).unwrap_err();
            assert!(!format!("{e:#}").contains("hunter2"), "{e:#}");
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
        let p = |payload: &[u8]| payload_bytes(&Bytes::copy_from_slice(payload)).to_vec();
        assert_eq!(p(b"DB08 5341\r\n"), [0xDB, 0x08, 0x53, 0x41]);
        assert_eq!(p(b"db0853"), [0xDB, 0x08, 0x53]);
        assert_eq!(p(b"DB0"), b"DB0", "odd count: binary");
        assert_eq!(p(b"/ISK5\r\n"), b"/ISK5\r\n");
        assert_eq!(p(&[0xDB, 0x08]), [0xDB, 0x08]);
        assert_eq!(p(b""), b"");
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

        let frame1: Vec<u8> = (0..=255u8).chain([0xDB, 0x08]).collect();
        let frame2 = vec![0xDB, 0x08, 0x53, 0x41, 0x47, 0x00, 0xFF];
        let binary = b"/Lux5\\253663629_D\r\n\r\n!ABCD\r\n".to_vec();
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02X}")).collect::<String>();
        // Empty messages between them add nothing, and are acknowledged: more of them than
        // the broker's in-flight window (20) does not stall the stream.
        let mut payloads = vec![
            hex(&frame1).into_bytes(),
            format!("{}\n", hex(&frame2).to_lowercase()).into_bytes(),
        ];
        payloads.extend(std::iter::repeat_n(Vec::new(), 30));
        payloads.push(binary.clone());
        publish(broker.port, "smarty/home/raw", payloads).await;
        // Not subscribed: not read.
        publish(broker.port, "smarty/home/state", vec![b"{}".to_vec()]).await;
        assert_eq!(read_exactly(&mut reader, frame1.len()).await, frame1);
        assert_eq!(read_exactly(&mut reader, frame2.len()).await, frame2);
        assert_eq!(read_exactly(&mut reader, binary.len()).await, binary);

        // The broker goes away: the reader ends with an error (the pipeline reconnects), and
        // opening again fails until it is back.
        broker.kill();
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut rest))
            .await
            .expect("the reader ends");
        assert!(ended.is_err(), "{ended:?}");
        assert!(source.open().await.is_err());
    }

    /// Publishes `payloads` on `topic` at QoS 1 and waits until the broker took them all.
    async fn publish(port: u16, topic: &'static str, payloads: Vec<Vec<u8>>) {
        tokio::task::spawn_blocking(move || publish_all(port, topic, payloads, false))
            .await
            .unwrap();
    }

    /// A `smarty` that was away comes back to a backlog of 1,000 frames in its persistent
    /// session: it connects, and reads every frame once, in order, however the broker
    /// interleaves the backlog with the subscription's acknowledgement. Several rounds, so
    /// that a racy hang shows.
    #[tokio::test]
    async fn a_backlog_of_frames_arrives_whole_after_a_reconnect() {
        const FRAMES: usize = 1_000;
        let broker = Broker::with_config("max_queued_messages 5000\n");
        let source =
            MqttSource::new(&format!("mqtt://127.0.0.1:{}/smarty/+/raw", broker.port)).unwrap();
        // The first connection creates the persistent session and its subscription.
        drop(source.open().await.unwrap());
        for round in 0..4 {
            let frames: Vec<Vec<u8>> = (0..FRAMES)
                .map(|i| format!("round {round} frame {i:05}\n").into_bytes())
                .collect();
            publish(broker.port, "smarty/home/raw", frames.clone()).await;
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
        publish(broker.port, "smarty/home/raw", frames.clone()).await;
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
