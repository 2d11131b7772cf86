//! The publications of the real frame through the firmware's MQTT client (mqttrust, via
//! [`smarty_dongle::mqtt`]) to the Mosquitto on 127.0.0.1:1883, read back by a second
//! mqttrust client: every value arrives with its payload, retained messages stay, and the
//! last will says `offline` when the dongle's connection drops. A unique topic prefix per run;
//! deadlines, no fixed sleeps; the retained messages are cleared at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use embassy_futures::select::{Either, select};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_io_adapters::tokio_1::FromTokio;
use embedded_nal_async::TcpConnect;
use mqttrust::transport::embedded_nal::NalTransport;
use mqttrust::{IpBroker, Publish, QoS, State, Subscribe, SubscribeTopic};
use smarty_dongle::mqtt::{self, ConnectOptions, PROTOCOL, RX_BUFFER, TX_BUFFER};
use smarty_dongle::p1::{self, PublishConfig, Reader};
use smarty_dongle::{discovery, ring::Ring};
use smarty_p1::{DecoderConfig, Key};

const REAL_FRAME_HEX: &str = include_str!(
    "../../../crates/smarty-p1/tests/data/encrypted/nexxtlab_lux_t210d_fc0005a8e3.hex"
);

struct Network;

impl TcpConnect for Network {
    type Error = std::io::Error;
    type Connection<'a> = FromTokio<tokio::net::TcpStream>;

    async fn connect(
        &self,
        remote: core::net::SocketAddr,
    ) -> Result<Self::Connection<'_>, Self::Error> {
        let stream = tokio::net::TcpStream::connect(remote).await?;
        stream.set_nodelay(true)?;
        Ok(FromTokio::new(stream))
    }
}

fn broker() -> IpBroker {
    IpBroker::new(core::net::Ipv4Addr::LOCALHOST, 1883)
}

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}-{}-{nanos}", std::process::id())
}

#[tokio::test(flavor = "current_thread")]
async fn the_real_frame_reaches_mosquitto_and_the_will_says_offline() {
    if std::net::TcpStream::connect("127.0.0.1:1883").is_err() {
        panic!("this test needs an MQTT broker (Mosquitto) on 127.0.0.1:1883");
    }
    tokio::time::timeout(Duration::from_secs(60), run())
        .await
        .expect("deadline: the broker round trip took over 60 s");
}

async fn run() {
    // The dongle's side: the real frame through the reader into publications.
    let prefix = unique("smarty-dongle-test");
    let mut config = PublishConfig::new(&prefix, "home");
    config.raw = true;
    config.qos = p1::QoS::AtLeastOnce;
    let frame = smarty_p1::hex::decode(REAL_FRAME_HEX).unwrap();
    let key: Key = "D491470F47126332B07D1923B3504188".parse().unwrap();
    let mut reader = Reader::new(DecoderConfig::new(key));
    reader.push(&frame, 0);
    let snapshot = reader.poll().unwrap().unwrap();
    let discovery_prefix = format!("{prefix}/ha");
    let mut ring = Ring::new(256, 64 * 1024);
    ring.push(p1::availability(&config, true));
    for m in discovery::discovery_messages(&snapshot, &config, &discovery_prefix) {
        ring.push(m);
    }
    for m in p1::publications(&snapshot, &config) {
        ring.push(m);
    }
    let expected: BTreeMap<String, Vec<u8>> = {
        let mut all = BTreeMap::new();
        let mut copy = ring.clone();
        while let Some(m) = copy.pop() {
            all.insert(m.topic, m.payload);
        }
        all
    };
    assert_eq!(ring.dropped(), 0);
    let retained: Vec<String> = {
        let mut copy = ring.clone();
        std::iter::from_fn(|| copy.pop())
            .filter(|m| m.retain)
            .map(|m| m.topic)
            .collect()
    };

    let network = Network;
    let filter = format!("{prefix}/#");
    let availability = config.availability_topic();

    // The subscriber: a second client of the same crate.
    let sub_options =
        ConnectOptions::anonymous(&unique("sub"), &PublishConfig::new(&prefix, "subscriber"));
    let mut sub_state = State::<NoopRawMutex, 2048, TX_BUFFER>::new();
    let (mut sub_stack, sub_client) = mqttrust::new(&mut sub_state, sub_options.config().unwrap());
    let mut sub_transport = NalTransport::new(&network, broker());

    let test = async {
        let topics = [SubscribeTopic::builder()
            .topic_path(&filter)
            .maximum_qos(QoS::AtLeastOnce)
            .build()];
        let mut subscription = sub_client
            .subscribe::<1>(Subscribe::builder().topics(&topics).build())
            .await
            .expect("subscribe");

        // The dongle: publishes everything, then its connection drops without DISCONNECT.
        let dongle = async {
            let options = ConnectOptions::anonymous(&unique("dongle"), &config);
            let mut state = State::<NoopRawMutex, TX_BUFFER, RX_BUFFER>::new();
            let (mut stack, client) = mqttrust::new(&mut state, options.config().unwrap());
            let mut transport = NalTransport::new(&network, broker());
            let sent =
                match select(stack.run(&mut transport), mqtt::flush(&client, &mut ring)).await {
                    Either::First(()) => panic!("the dongle's MQTT stack stopped"),
                    Either::Second(sent) => sent.expect("publish"),
                };
            drop(transport); // the TCP connection closes: the broker sends the will
            sent
        };
        let receive = async {
            let mut got: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            let mut offline = false;
            while got.len() < expected.len() || !offline {
                let message = subscription
                    .next_message()
                    .await
                    .expect("subscription ended");
                let topic = message.topic_name().to_owned();
                let payload = message.payload().to_vec();
                if topic == availability && payload == b"offline" {
                    offline = true;
                } else {
                    got.insert(topic, payload);
                }
            }
            got
        };
        let (sent, got) = tokio::join!(dongle, receive);
        assert_eq!(sent, expected.len());
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>()
        );
        for (topic, payload) in &expected {
            assert_eq!(&got[topic], payload, "{topic}");
        }
        assert_eq!(got[&format!("{prefix}/home/energy_import_kwh")], b"6.695");
        assert_eq!(
            got[&format!("{prefix}/home/raw")],
            REAL_FRAME_HEX.trim().as_bytes()
        );
        drop(subscription);

        // Retained: a fresh subscription to one value gets its last payload at once; and
        // the will is retained too.
        for (topic, payload) in [
            (format!("{prefix}/home/energy_import_kwh"), &b"6.695"[..]),
            (availability.clone(), &b"offline"[..]),
        ] {
            let topics = [SubscribeTopic::builder().topic_path(&topic).build()];
            let mut sub = sub_client
                .subscribe::<1>(Subscribe::builder().topics(&topics).build())
                .await
                .expect("subscribe");
            let message = sub.next_message().await.expect("retained message");
            assert_eq!(
                (message.topic_name(), message.payload()),
                (topic.as_str(), payload)
            );
        }

        // Clean up: empty retained messages delete the retained ones.
        for topic in retained.iter().chain([&availability]) {
            sub_client
                .publish(
                    Publish::builder()
                        .topic_name(topic.as_str())
                        .payload(&b""[..])
                        .retain(true)
                        .build(),
                )
                .await
                .expect("clear retained");
        }
    };
    match select(sub_stack.run(&mut sub_transport), test).await {
        Either::First(()) => panic!("the subscriber's MQTT stack stopped"),
        Either::Second(()) => {}
    }
    eprintln!("MQTT {} round trip ok", PROTOCOL.as_str());
}

/// `config_once`: the stack makes one attempt and returns (the firmware's state machine
/// retries), where `config` would retry ten times with back-off for minutes. No broker
/// listens on port 1.
#[tokio::test(flavor = "current_thread")]
async fn config_once_gives_up_after_one_failed_attempt() {
    let options = ConnectOptions::anonymous(&unique("once"), &PublishConfig::new("t", "home"));
    let mut state = State::<NoopRawMutex, 1024, 1024>::new();
    let (mut stack, _client) = mqttrust::new(&mut state, options.config_once().unwrap());
    let network = Network;
    let mut transport =
        NalTransport::new(&network, IpBroker::new(core::net::Ipv4Addr::LOCALHOST, 1));
    tokio::time::timeout(Duration::from_secs(10), stack.run(&mut transport))
        .await
        .expect("the stack returns after one failed attempt");
}
