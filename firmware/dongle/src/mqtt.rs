//! MQTT 3.1.1 publishing over an embassy-net TCP socket: CONNECT, PUBLISH (QoS 0), PINGREQ.
//! 3.1.1 because brokers of every kind speak it (Mosquitto, Home Assistant's, NATS's MQTT
//! listener, which speaks nothing newer); QoS 0 because the next telegram follows in 10 s.
//!
//! TODO(merge h-fw-logic): the topics, the Home Assistant discovery payloads and the
//! publication set come from the logic crate's MQTT glue; this module then keeps only the
//! packets and the connection loop.

use alloc::vec::Vec;

use embassy_net::{Stack, tcp::TcpSocket};
use embassy_time::{Duration, Timer, with_timeout};
use embedded_io_async::{Read as _, Write as _};

use crate::{settings::Settings, state};

/// The keep-alive the dongle announces; it pings at half of it.
const KEEP_ALIVE_S: u16 = 60;

/// Appends MQTT's variable-length "remaining length".
fn remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

/// Appends a length-prefixed UTF-8 string or binary field.
fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A CONNECT packet: clean session, optional user and password, a retained "offline" will
/// on `status_topic`.
pub fn connect_packet(client_id: &str, user: &str, password: &str, status_topic: &str) -> Vec<u8> {
    let mut body = Vec::new();
    field(&mut body, b"MQTT");
    body.push(4); // protocol level 3.1.1
    let mut flags = 0x02 | 0x04 | 0x20; // clean session, will, will retain (QoS 0)
    if !user.is_empty() {
        flags |= 0x80;
        if !password.is_empty() {
            flags |= 0x40;
        }
    }
    body.push(flags);
    body.extend_from_slice(&KEEP_ALIVE_S.to_be_bytes());
    field(&mut body, client_id.as_bytes());
    field(&mut body, status_topic.as_bytes());
    field(&mut body, b"offline");
    if !user.is_empty() {
        field(&mut body, user.as_bytes());
        if !password.is_empty() {
            field(&mut body, password.as_bytes());
        }
    }
    let mut packet = Vec::with_capacity(body.len() + 5);
    packet.push(0x10);
    remaining_length(&mut packet, body.len());
    packet.extend_from_slice(&body);
    packet
}

/// A PUBLISH packet, QoS 0.
pub fn publish_packet(topic: &str, payload: &[u8], retain: bool) -> Vec<u8> {
    let mut packet = Vec::with_capacity(topic.len() + payload.len() + 7);
    packet.push(0x30 | u8::from(retain));
    remaining_length(&mut packet, 2 + topic.len() + payload.len());
    field(&mut packet, topic.as_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// Why a session ended.
#[derive(Debug)]
enum SessionError {
    /// DNS, TCP connect, read or write failed.
    Network,
    /// The broker refused the connection (the CONNACK's return code) or answered nonsense.
    Refused(#[allow(dead_code, reason = "read through Debug in log messages")] u8),
}

/// Publishes every telegram to the broker of `settings`, reconnecting with back-off.
#[embassy_executor::task]
pub async fn publisher(stack: Stack<'static>, settings: Settings) {
    if settings.mqtt_host.is_empty() {
        return;
    }
    let mut backoff_s = 2;
    loop {
        match session(stack, &settings).await {
            Ok(()) => backoff_s = 2,
            Err(error) => log::warn!("MQTT: {error:?}; again in {backoff_s} s"),
        }
        Timer::after(Duration::from_secs(backoff_s)).await;
        backoff_s = (backoff_s * 2).min(300);
    }
}

/// One connection: connect, then publish each new telegram and ping in between.
async fn session(stack: Stack<'static>, settings: &Settings) -> Result<(), SessionError> {
    stack.wait_config_up().await;
    let address = match settings.mqtt_host.parse() {
        Ok(address) => address,
        Err(_) => *stack
            .dns_query(&settings.mqtt_host, embassy_net::dns::DnsQueryType::A)
            .await
            .map_err(|_| SessionError::Network)?
            .first()
            .ok_or(SessionError::Network)?,
    };
    let mut rx = [0_u8; 256];
    let mut tx = [0_u8; 2048];
    let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
    socket.set_timeout(Some(Duration::from_secs(u64::from(KEEP_ALIVE_S) * 2)));
    socket
        .connect((address, settings.mqtt_port))
        .await
        .map_err(|_| SessionError::Network)?;

    let mac = crate::net::mac_suffix();
    let client_id = alloc::format!("smarty-dongle-{mac}");
    let status_topic = alloc::format!("smarty/{mac}/status");
    let connect = connect_packet(
        &client_id,
        &settings.mqtt_user,
        &settings.mqtt_password,
        &status_topic,
    );
    socket
        .write_all(&connect)
        .await
        .map_err(|_| SessionError::Network)?;
    let mut connack = [0_u8; 4];
    socket
        .read_exact(&mut connack)
        .await
        .map_err(|_| SessionError::Network)?;
    if connack[0] != 0x20 || connack[3] != 0 {
        return Err(SessionError::Refused(connack[3]));
    }
    log::info!("MQTT: connected to {}", settings.mqtt_host);
    let online = publish_packet(&status_topic, b"online", true);
    socket
        .write_all(&online)
        .await
        .map_err(|_| SessionError::Network)?;

    let mut telegrams = state::SEQUENCE.receiver().ok_or(SessionError::Network)?;
    loop {
        let ping_after = Duration::from_secs(u64::from(KEEP_ALIVE_S / 2));
        match with_timeout(ping_after, telegrams.changed()).await {
            Ok(_) => {
                let Some(snapshot) = state::latest() else {
                    continue;
                };
                let id = if snapshot.meter_id.is_empty() {
                    mac.as_str()
                } else {
                    snapshot.meter_id.as_str()
                };
                let topic = alloc::format!("smarty/{id}/state");
                let packet = publish_packet(&topic, snapshot.json.as_bytes(), true);
                socket
                    .write_all(&packet)
                    .await
                    .map_err(|_| SessionError::Network)?;
            }
            Err(_) => {
                socket
                    .write_all(&[0xC0, 0x00])
                    .await
                    .map_err(|_| SessionError::Network)?;
            }
        }
        socket.flush().await.map_err(|_| SessionError::Network)?;
        // Drain PINGRESPs (and anything else the broker sends) without blocking.
        while socket.can_recv() {
            let mut sink = [0_u8; 64];
            if socket
                .read(&mut sink)
                .await
                .map_err(|_| SessionError::Network)?
                == 0
            {
                return Err(SessionError::Network);
            }
        }
    }
}
