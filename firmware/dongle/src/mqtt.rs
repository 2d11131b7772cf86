//! MQTT through the logic crate's client (mqttrust, [`smarty_dongle::mqtt`]) over
//! embassy-net: embassy-net's `TcpClient` and `DnsSocket` implement the
//! `embedded-nal-async` traits (`TcpConnect`, `Dns`) that mqttrust's `NalTransport` and
//! `DomainBroker` need, so no adapter of our own is needed.
//!
//! The control loop decides when to connect ([`BrokerCommand`]); each session is one
//! mqttrust stack with one connection attempt ([`ConnectOptions::config_once`]), and its end
//! goes back as [`Event::BrokerFailed`] or [`Event::BrokerLost`]: the back-off between
//! attempts is the state machine's ([`smarty_dongle::provisioning`]), and a client that gave
//! up is simply made anew on the next [`BrokerCommand::Connect`].
//!
//! In a session: `online` (retained; the last will says `offline`) on
//! `<prefix>/<meter>/availability`, the status (counters and diagnosis), Home Assistant
//! discovery once per connection (with the first telegram) and again whenever Home Assistant
//! announces `online` on `homeassistant/status`, then each telegram's publications. While the
//! broker is away the publications wait in a [`Ring`] (oldest dropped first, counted), sent
//! when the next session starts.

use alloc::string::String;
use core::cell::Cell;

use embassy_futures::select::{Either, Either4, select, select4};
use embassy_net::{
    Stack,
    dns::DnsSocket,
    tcp::client::{TcpClient, TcpClientState},
};
use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, NoopRawMutex};
use embassy_sync::watch::Receiver;
use embassy_time::{Duration, Ticker, with_timeout};
use smarty_dongle::{
    api::BrokerState,
    discovery,
    mqtt::{
        self, ConnectOptions, RX_BUFFER, TX_BUFFER,
        mqttrust::{
            self, DomainBroker, MqttClient, QoS, Subscribe, SubscribeTopic,
            transport::embedded_nal::NalTransport,
        },
    },
    p1::{self, PublishConfig},
    provisioning::Event,
    ring::Ring,
    settings::Settings,
};
use static_cell::StaticCell;

use crate::state::{self, BrokerCommand, WAITERS};

/// Publications kept while the broker is away, at most.
const RING_ITEMS: usize = 256;
/// Bytes (topics and payloads) kept while the broker is away, at most: a few telegrams.
const RING_BYTES: usize = 16 * 1024;
/// How often the status message (counters, diagnosis) is published.
const STATUS_EVERY: Duration = Duration::from_secs(60);
/// How long the goodbye (`offline`, DISCONNECT) may take when the control loop disconnects.
const GOODBYE: Duration = Duration::from_secs(3);
/// Where Home Assistant announces itself (`online` after it starts).
const HA_STATUS: &str = "homeassistant/status";
/// Home Assistant's discovery prefix.
const DISCOVERY_PREFIX: &str = "homeassistant";
/// The TCP socket's transmit buffer: mqttrust writes whole messages through `write_all`.
const TCP_TX: usize = 1024;
/// Its receive buffer: acknowledgements and Home Assistant's `online`.
const TCP_RX: usize = 512;

type Telegrams = Receiver<'static, CriticalSectionRawMutex, u32, WAITERS>;
type Client<'a> = MqttClient<'a, NoopRawMutex>;

/// How a session ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    /// It never connected.
    Failed,
    /// It was connected and lost the connection.
    Lost,
    /// The control loop asked it to disconnect.
    Disconnected,
}

/// Publishes to the broker of the settings whenever the control loop says so.
#[embassy_executor::task]
pub async fn client(stack: Stack<'static>) {
    let Some(settings) = state::SETTINGS.try_get().and_then(Option::as_ref) else {
        return;
    };
    let publish = settings.publish_config();
    let Some(mut telegrams) = state::SEQUENCE.receiver() else {
        log::error!("MQTT: no telegram receiver left");
        return;
    };
    static TCP: StaticCell<TcpClientState<1, TCP_TX, TCP_RX>> = StaticCell::new();
    let mut tcp = TcpClient::new(stack, TCP.init(TcpClientState::new()));
    // A broker that stops answering: mqttrust's keep-alive notices too; this frees the socket.
    tcp.set_timeout(Some(Duration::from_secs(mqtt::KEEPALIVE_S * 3)));
    let dns = DnsSocket::new(stack);
    let mut ring = Ring::new(RING_ITEMS, RING_BYTES);
    loop {
        match select(state::BROKER.wait(), telegrams.changed()).await {
            Either::First(BrokerCommand::Connect) => {
                let outcome =
                    session(&tcp, &dns, settings, &publish, &mut ring, &mut telegrams).await;
                log::info!("MQTT: session ended: {outcome:?}");
                state::update(|c| c.broker = BrokerState::Disconnected);
                match outcome {
                    Outcome::Failed => state::EVENTS.send(Event::BrokerFailed).await,
                    Outcome::Lost => state::EVENTS.send(Event::BrokerLost).await,
                    Outcome::Disconnected => {}
                }
            }
            Either::First(BrokerCommand::Disconnect) => {}
            Either::Second(_) => queue(&mut ring, &publish),
        }
    }
}

/// Queues the latest telegram's publications.
fn queue(ring: &mut Ring, publish: &PublishConfig) {
    // Made from the shared telegram in place (no copy of it first: heap is short).
    for p in state::with_latest(|s| p1::publications(s, publish)).unwrap_or_default() {
        ring.push(p);
    }
    state::update(|c| (c.queued, c.dropped) = (ring.len(), ring.dropped()));
}

/// One connection: connect once, then publish until it is lost or the control loop says stop.
async fn session(
    tcp: &TcpClient<'static, 1, TCP_TX, TCP_RX>,
    dns: &DnsSocket<'static>,
    settings: &Settings,
    publish: &PublishConfig,
    ring: &mut Ring,
    telegrams: &mut Telegrams,
) -> Outcome {
    let client_id = alloc::format!(
        "smarty-{}-{}",
        settings.device_name,
        crate::net::mac_suffix()
    );
    let failed = |error: String| {
        log::warn!("MQTT: {error}");
        state::update(|c| c.broker_error = Some(error));
        Outcome::Failed
    };
    let options = match ConnectOptions::new(settings, &client_id) {
        Ok(options) => options,
        Err(error) => return failed(alloc::format!("{error}")),
    };
    let config = match options.config_once() {
        Ok(config) => config,
        Err(error) => return failed(alloc::format!("{error}")),
    };
    let Ok(broker) = DomainBroker::<_>::new_with_port(&settings.mqtt.host, settings.mqtt.port, dns)
    else {
        return failed(String::from("the broker's host name is too long"));
    };
    let mut transport = NalTransport::new(tcp, broker);
    let mut buffers = mqttrust::State::<NoopRawMutex, TX_BUFFER, RX_BUFFER>::new();
    let (mut stack, client) = mqttrust::new(&mut buffers, config);
    state::update(|c| c.broker = BrokerState::Connecting);
    let connected = Cell::new(false);
    let outcome = match select(
        stack.run(&mut transport),
        online(&client, &connected, settings, publish, ring, telegrams),
    )
    .await
    {
        Either::First(()) if connected.get() => Outcome::Lost,
        Either::First(()) => {
            let host = &settings.mqtt.host;
            let port = settings.mqtt.port;
            return failed(alloc::format!("cannot connect to {host}:{port}"));
        }
        Either::Second(outcome) => outcome,
    };
    if outcome == Outcome::Disconnected {
        // A clean DISCONNECT: the broker drops the will (`offline` was published already).
        let _ = with_timeout(GOODBYE, stack.disconnect(&mut transport)).await;
    }
    outcome
}

/// Connected: availability, status, discovery, the queue, then each telegram.
async fn online(
    client: &Client<'_>,
    connected: &Cell<bool>,
    settings: &Settings,
    publish: &PublishConfig,
    ring: &mut Ring,
    telegrams: &mut Telegrams,
) -> Outcome {
    client.wait_connected().await;
    connected.set(true);
    log::info!("MQTT: connected to {}", settings.mqtt.host);
    state::update(|c| (c.broker, c.broker_error) = (BrokerState::Connected, None));
    state::EVENTS.send(Event::BrokerConnected).await;

    let sent = async {
        mqtt::publish(client, &p1::availability(publish, true)).await?;
        publish_status(client, publish).await?;
        mqtt::flush(client, ring).await
    }
    .await;
    state::update(|c| (c.queued, c.dropped) = (ring.len(), ring.dropped()));
    if let Err(error) = sent {
        log::warn!("MQTT: {error}");
        return Outcome::Lost;
    }

    let topics = [SubscribeTopic::builder()
        .topic_path(HA_STATUS)
        .maximum_qos(QoS::AtMostOnce)
        .build()];
    let mut home_assistant = if settings.mqtt.discovery {
        client
            .subscribe::<1>(Subscribe::builder().topics(&topics).build())
            .await
            .map_err(|error| log::warn!("MQTT: cannot subscribe to {HA_STATUS}: {error:?}"))
            .ok()
    } else {
        None
    };
    let mut discovery_due = settings.mqtt.discovery;
    let mut status = Ticker::every(STATUS_EVERY);
    loop {
        // A loss while publishing is seen here; one while waiting, below.
        if !client.is_connected().await {
            return Outcome::Lost;
        }
        if discovery_due && let Some(snapshot) = state::latest() {
            discovery_due = false;
            // One message at a time: all of them at once are ~30 KB of heap.
            for value in &snapshot.values {
                let message =
                    discovery::discovery_message(&snapshot, publish, DISCOVERY_PREFIX, value);
                if let Err(error) = mqtt::publish(client, &message).await {
                    log::warn!("MQTT: discovery: {error}");
                    return Outcome::Lost;
                }
            }
            log::info!("MQTT: discovery published");
        }
        let home_assistant_online = async {
            match home_assistant.as_mut() {
                Some(subscription) => match subscription.next_message().await {
                    // A retained `online` comes with the subscription: discovery is due
                    // on a new connection anyway; only a live one means Home Assistant
                    // (re)started.
                    Some(message) => !message.retain() && message.payload() == b"online",
                    None => core::future::pending().await,
                },
                None => core::future::pending().await,
            }
        };
        let changed = select(client.wait_connection_change(), home_assistant_online);
        match select4(
            changed,
            telegrams.changed(),
            state::BROKER.wait(),
            status.next(),
        )
        .await
        {
            Either4::First(Either::First(true)) => {}
            Either4::First(Either::First(false)) => return Outcome::Lost,
            Either4::First(Either::Second(again)) => discovery_due |= again,
            Either4::Second(_) => {
                queue(ring, publish);
                let sent = mqtt::flush(client, ring).await;
                state::update(|c| (c.queued, c.dropped) = (ring.len(), ring.dropped()));
                if let Err(error) = sent {
                    log::warn!("MQTT: {error}");
                    return Outcome::Lost;
                }
            }
            Either4::Third(BrokerCommand::Disconnect) => {
                // Bounded: mqttrust would wait up to 105 s for a connection to come back.
                let offline = p1::availability(publish, false);
                let _ = with_timeout(GOODBYE, mqtt::publish(client, &offline)).await;
                return Outcome::Disconnected;
            }
            Either4::Third(BrokerCommand::Connect) => {}
            Either4::Fourth(()) => {
                if let Err(error) = publish_status(client, publish).await {
                    log::warn!("MQTT: {error}");
                    return Outcome::Lost;
                }
            }
        }
    }
}

/// Publishes the status message: the reader's counters and the diagnosis.
async fn publish_status(
    client: &Client<'_>,
    publish: &PublishConfig,
) -> Result<(), mqtt::MqttError> {
    let (stats, _, diagnosis) = state::p1_status().await;
    mqtt::publish(client, &p1::status_publication(publish, &stats, &diagnosis)).await
}
