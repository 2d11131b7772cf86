//! The MQTT output against a real Mosquitto ([`super::test_broker`]): topics, discovery,
//! availability and the last will with MQTT 3.1.1 and 5; every message once and in order at
//! QoS 0, 1 and 2 through broker outages and restarts of the output; a queue that cannot be
//! written, a damaged queue file and an unreachable broker on `/healthz`; TLS with a
//! `ca_file`; the simulator's plain QoS 1 sender through a broker restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value as Json;
use smarty_p1::{Aad, Decoder, DecoderConfig, Key, encrypt_frame};
use tokio::sync::mpsc;

use super::config::{MqttConfig, Protocol};
use super::test_broker::{Broker, Received, Subscriber, publish_all};
use super::{Connection, Subscriber as RawSubscriber, run_reporting, spawn};
use smarty_model::event::{GuardEvent, MeterEvent, MeterStatus, TelegramEvent};
use smarty_model::guard::{Guard, GuardConfig, Reading};
use smarty_model::live::{LiveState, QueueReport};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../smarty-p1/tests/data/telegrams/meterlogger_lux5_253663629_d_2026.txt"
);
const KEY: &str = "000102030405060708090A0B0C0D0E0F";

/// The corpus telegram in an encrypted frame with frame counter `fc`, decoded.
/// What `check` gives once it gives something, within 20 s (a condition the output reports
/// asynchronously: its health, its queue's).
async fn until<T>(check: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "not within 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(super) fn telegram_event(fc: u32) -> Arc<TelegramEvent> {
    let text = std::fs::read(CORPUS).unwrap_or_else(|e| panic!("test data missing: {CORPUS}: {e}"));
    let key: Key = KEY.parse().unwrap();
    let frame = encrypt_frame(
        &key,
        &Aad::default(),
        *b"SAG\x10\x30\x70\x01\x27",
        fc,
        &text,
    );
    let mut decoder = Decoder::new(DecoderConfig::new(key));
    decoder.push(&frame);
    let decoded = match decoder.next() {
        Some(d) => d.unwrap(),
        None => decoder.finish().unwrap().unwrap(),
    };
    assert_eq!(decoded.frame.unwrap().frame_counter, fc);
    Arc::new(TelegramEvent::new(
        &Arc::from("home"),
        &decoded,
        SystemTime::now(),
    ))
}

/// 2026-01-01 00:00 UTC, the start of a quarter hour (and of a month).
pub(super) const QUARTER: i64 = 1_767_225_600;

/// The guard events of meter `home` (reference power 3 kW, headroom alert below 1 kW) for a
/// real guard fed five readings: the last of 2025 (0.4 kW); 5 minutes into the quarter of
/// [`QUARTER`] with 250 Wh drawn at 5 kW (closes December's last quarter; `will_exceed`
/// alert); 10 minutes in, 600 Wh; 13 min 20 s in, 800 Wh (exceeded; `headroom_low` alert);
/// 10 s into the next quarter (closes the first one with 800 Wh; fine again).
pub(super) fn guard_events() -> Vec<Arc<GuardEvent>> {
    let mut guard = Guard::new(
        GuardConfig::new(3.0).with_headroom_alert_kw(Some(1.0)),
        jiff::tz::TimeZone::UTC,
    );
    let meter: Arc<str> = Arc::from("home");
    [
        (QUARTER - 10, 1_000_000, 0.4),
        (QUARTER + 300, 1_000_250, 5.0),
        (QUARTER + 600, 1_000_600, 5.0),
        (QUARTER + 800, 1_000_800, 5.0),
        (QUARTER + 910, 1_000_810, 0.5),
    ]
    .into_iter()
    .map(|(ts, wh, kw)| {
        let update = guard.update(&Reading::new(ts, wh, Some(kw)));
        Arc::new(GuardEvent::new(&meter, update))
    })
    .collect()
}

fn meter_status(connected: bool) -> Arc<MeterStatus> {
    Arc::new(MeterStatus {
        meter: Arc::from("home"),
        source: "/dev/ttyUSB0".into(),
        connected,
        last_telegram: Some(SystemTime::now()),
        stats: Default::default(),
        reconnects: 0,
        last_error: None,
    })
}

fn config(broker: &Broker) -> MqttConfig {
    MqttConfig {
        url: broker.url(),
        client_id: Some("smarty-test".into()),
        ..MqttConfig::default()
    }
}

/// Publishes Home Assistant's birth message (`online` on `homeassistant/status`).
async fn home_assistant_online(broker: &Broker) {
    let port = broker.port;
    tokio::task::spawn_blocking(move || {
        publish_all(
            port,
            "homeassistant/status",
            vec![b"online".to_vec()],
            false,
        );
    })
    .await
    .unwrap();
}

fn discovery(got: &[Received]) -> HashMap<String, Json> {
    got.iter()
        .filter(|r| r.topic.starts_with("homeassistant/sensor/"))
        .map(|r| (r.topic.clone(), serde_json::from_slice(&r.payload).unwrap()))
        .collect()
}

#[tokio::test]
async fn discovery_state_values_availability_and_last_will() {
    let broker = Broker::start();
    let mut sub = Subscriber::start(broker.port, "sub-1", false, &["#"]);
    let event = telegram_event(7);
    let cfg = MqttConfig {
        publish_raw: true,
        ..config(&broker)
    };

    let mut unique_ids = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = mpsc::channel(16);
        let task = spawn(cfg.clone(), rx);
        tx.try_send(MeterEvent::Status(meter_status(true))).unwrap();
        tx.try_send(MeterEvent::Telegram(Arc::clone(&event)))
            .unwrap();
        let got = sub
            .until_async(10, |g| g.iter().any(|r| r.topic == "smarty/home/raw"))
            .await;
        let disc = discovery(&got);
        assert_eq!(disc.len(), event.values.len(), "one config per value");
        let mut ids: Vec<String> = disc
            .values()
            .map(|c| c["unique_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        unique_ids.push(ids);
        let energy = &disc["homeassistant/sensor/smarty_sag1030700012701/energy_import_kwh/config"];
        assert_eq!(
            energy["unique_id"],
            "smarty_sag1030700012701_energy_import_kwh"
        );
        assert_eq!(energy["state_topic"], "smarty/home/energy_import_kwh");
        assert_eq!(energy["device_class"], "energy");
        assert_eq!(energy["state_class"], "total_increasing");
        assert_eq!(energy["unit_of_measurement"], "kWh");
        assert_eq!(energy["availability_mode"], "all");
        assert_eq!(energy["availability"][0]["topic"], "smarty/status");
        assert_eq!(
            energy["availability"][1]["topic"],
            "smarty/home/availability"
        );
        assert_eq!(energy["device"]["manufacturer"], "Sagemcom");
        assert_eq!(
            energy["device"]["identifiers"][0],
            "smarty_sag1030700012701"
        );
        assert_eq!(energy["device"]["sw_version"], "42");
        assert_eq!(energy["origin"]["name"], "smarty");
        let gas = &disc["homeassistant/sensor/smarty_sag1030700012701/mbus1_gas_m3/config"];
        assert_eq!(gas["device_class"], "gas");
        assert_eq!(gas["unit_of_measurement"], "m³");
        assert_eq!(gas["device"]["via_device"], "smarty_sag1030700012701");
        let kvarh = &disc["homeassistant/sensor/smarty_sag1030700012701/reactive_energy_import_kvarh/config"];
        assert_eq!(kvarh["device_class"], "reactive_energy");
        let payload = |topic: &str| {
            got.iter()
                .rev()
                .find(|r| r.topic == topic)
                .unwrap_or_else(|| panic!("{topic}"))
                .text()
        };
        assert_eq!(payload("smarty/status"), "online");
        assert_eq!(payload("smarty/home/availability"), "online");
        assert_eq!(payload("smarty/home/energy_import_kwh"), "273.764");
        assert_eq!(payload("smarty/home/voltage_l1_v"), "231.0");
        assert_eq!(payload("smarty/home/meter_id"), "SAG1030700012701");
        let state: Json = serde_json::from_str(&payload("smarty/home/state")).unwrap();
        assert_eq!(state["frame_counter"], 7);
        assert_eq!(state, event.rendered_json);
        let status: Json = serde_json::from_str(&payload("smarty/home/status")).unwrap();
        assert_eq!(status["connected"], true);
        assert!(payload("smarty/home/raw").starts_with("DB08534147"));
        // The values come after discovery, the state before the values.
        let pos = |t: &str| got.iter().position(|r| r.topic == t).unwrap();
        assert!(pos(&energy_topic()) < pos("smarty/home/state"));
        assert!(pos("smarty/home/state") < pos("smarty/home/energy_import_kwh"));

        // Killing the task drops the connection: the broker sends the last will.
        task.abort();
        let _ = task.await;
        sub.until_async(10, |g| {
            g.iter()
                .any(|r| r.topic == "smarty/status" && r.payload == b"offline")
        })
        .await;
    }
    assert_eq!(
        unique_ids[0], unique_ids[1],
        "unique ids stable across runs"
    );
    // Discovery, availability and status are retained: a newcomer gets them.
    let mut late = Subscriber::start(broker.port, "late", false, &["#"]);
    let got = late
        .until_async(10, |g| {
            discovery(g).len() == event.values.len()
                && g.iter().any(|r| r.topic == "smarty/home/availability")
                && g.iter().any(|r| r.topic == "smarty/home/status")
        })
        .await;
    assert!(
        got.iter()
            .filter(|r| r.topic.starts_with("homeassistant/") || r.topic.ends_with("status"))
            .all(|r| r.retain)
    );

    // Home Assistant's birth message brings the discovery again; a clean shutdown
    // publishes offline itself.
    let (tx, rx) = mpsc::channel(16);
    let task = spawn(cfg.clone(), rx);
    tx.try_send(MeterEvent::Telegram(Arc::clone(&event)))
        .unwrap();
    sub.until_async(10, |g| g.iter().any(|r| r.topic == "smarty/home/state"))
        .await;
    home_assistant_online(&broker).await;
    let got = sub
        .until_async(10, |g| discovery(g).len() == event.values.len())
        .await;
    assert_eq!(discovery(&got).len(), event.values.len());
    drop(tx);
    task.await.unwrap().unwrap();
    let got = sub
        .until_async(10, |g| g.iter().any(|r| r.topic == "smarty/status"))
        .await;
    assert_eq!(got.last().unwrap().text(), "offline");
}

#[tokio::test]
async fn mqtt5_state_discovery_availability_and_last_will() {
    let broker = Broker::start();
    let mut sub = Subscriber::start(broker.port, "sub-5", false, &["#"]);
    let event = telegram_event(9);
    for qos in [1, 2] {
        let cfg = MqttConfig {
            protocol: Protocol::V5,
            qos,
            ..config(&broker)
        };
        let (tx, rx) = mpsc::channel(16);
        let task = spawn(cfg, rx);
        tx.try_send(MeterEvent::Status(meter_status(true))).unwrap();
        tx.try_send(MeterEvent::Telegram(Arc::clone(&event)))
            .unwrap();
        let got = sub
            .until_async(10, |g| {
                discovery(g).len() == event.values.len()
                    && g.iter().any(|r| r.topic == "smarty/home/state")
                    && g.iter().any(|r| r.topic == "smarty/home/energy_import_kwh")
                    && g.iter().any(|r| r.topic == "smarty/home/availability")
                    && g.iter().any(|r| r.topic == "smarty/status")
            })
            .await;
        let payload = |topic: &str| {
            got.iter()
                .rev()
                .find(|r| r.topic == topic)
                .unwrap_or_else(|| panic!("{topic}"))
                .text()
        };
        assert_eq!(payload("smarty/status"), "online");
        assert_eq!(payload("smarty/home/availability"), "online");
        assert_eq!(payload("smarty/home/energy_import_kwh"), "273.764");
        let state: Json = serde_json::from_str(&payload("smarty/home/state")).unwrap();
        assert_eq!(state, event.rendered_json);
        let pos = |t: &str| got.iter().position(|r| r.topic == t).unwrap();
        assert!(pos(&energy_topic()) < pos("smarty/home/state"));

        if qos == 1 {
            // Home Assistant's birth message (an incoming MQTT 5 publish) brings the
            // discovery again; the last will arrives when the connection just drops.
            home_assistant_online(&broker).await;
            sub.until_async(10, |g| discovery(g).len() == event.values.len())
                .await;
            task.abort();
            let _ = task.await;
            sub.until_async(10, |g| {
                g.iter()
                    .any(|r| r.topic == "smarty/status" && r.payload == b"offline")
            })
            .await;
        } else {
            // A clean shutdown publishes offline itself.
            drop(tx);
            task.await.unwrap().unwrap();
            let got = sub
                .until_async(10, |g| g.iter().any(|r| r.topic == "smarty/status"))
                .await;
            assert_eq!(got.last().unwrap().text(), "offline");
        }
    }
}

fn energy_topic() -> String {
    "homeassistant/sensor/smarty_sag1030700012701/energy_import_kwh/config".into()
}

fn frame_counters(got: &[Received]) -> Vec<u64> {
    got.iter()
        .filter(|r| r.topic == "smarty/home/state")
        .map(|r| {
            let state: Json = serde_json::from_slice(&r.payload).unwrap();
            state["frame_counter"].as_u64().unwrap()
        })
        .collect()
}

/// Every counter of `expected` arrived, first arrivals in order; repeats are only
/// duplicates of counters already seen.
fn assert_in_order_once(counters: &[u64], expected: &[u64]) {
    let mut firsts = Vec::new();
    for &c in counters {
        if !firsts.contains(&c) {
            firsts.push(c);
        }
    }
    assert_eq!(firsts, expected, "arrivals: {counters:?}");
}

/// Waits until `report` shows at least `depth` queued messages.
async fn until_queued(report: &QueueReport, depth: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while report.depth() < depth {
        assert!(Instant::now() < deadline, "never {depth} messages queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every telegram arrives once, in order, through broker outages and a restart of the
/// output with the broker down (its queue on disk).
async fn nothing_is_lost(protocol: Protocol, qos: u8) {
    let mut broker = Broker::persistent();
    let queue_dir = tempfile::tempdir().unwrap();
    let cfg = MqttConfig {
        queue_dir: Some(queue_dir.path().to_path_buf()),
        discovery: false,
        protocol,
        qos,
        ..config(&broker)
    };
    let mut sub = Subscriber::start(broker.port, "sub-outage", true, &["smarty/+/state"]);
    let (tx, rx) = mpsc::channel(64);
    let report = Arc::new(QueueReport::default());
    let task = tokio::spawn(run_reporting(
        cfg.clone(),
        rx,
        Some(Arc::clone(&report)),
        None,
    ));
    tx.try_send(MeterEvent::Telegram(telegram_event(1)))
        .unwrap();
    let got = sub
        .until_async(10, |g| frame_counters(g).contains(&1))
        .await;
    let mut counters = frame_counters(&got);

    // The broker goes away; telegrams keep coming.
    broker.stop();
    for fc in 2..=6 {
        tx.try_send(MeterEvent::Telegram(telegram_event(fc)))
            .unwrap();
    }
    until_queued(&report, 5).await;
    broker.restart();
    for fc in 7..=8 {
        tx.try_send(MeterEvent::Telegram(telegram_event(fc)))
            .unwrap();
    }
    let got = sub
        .until_async(30, |g| frame_counters(g).contains(&8))
        .await;
    counters.extend(frame_counters(&got));
    assert_in_order_once(&counters, &(1..=8).collect::<Vec<_>>());

    // smarty stops while the broker is down: the queue waits on disk for the next run.
    broker.stop();
    for fc in 9..=11 {
        tx.try_send(MeterEvent::Telegram(telegram_event(fc)))
            .unwrap();
    }
    until_queued(&report, 3).await;
    drop(tx);
    task.await.unwrap().unwrap();
    broker.restart();
    let (_tx, rx) = mpsc::channel::<MeterEvent>(4);
    let task = spawn(cfg.clone(), rx);
    let got = sub
        .until_async(30, |g| frame_counters(g).contains(&11))
        .await;
    // A message whose acknowledgement the broker's stop cut off comes again: a duplicate.
    counters.extend(frame_counters(&got));
    assert_in_order_once(&counters, &(1..=11).collect::<Vec<_>>());
    task.abort();
}

#[tokio::test]
async fn nothing_is_lost_while_the_broker_is_down_or_smarty_restarts() {
    nothing_is_lost(Protocol::V4, 1).await;
}

#[tokio::test]
async fn nothing_is_lost_at_qos_2() {
    nothing_is_lost(Protocol::V4, 2).await;
}

#[tokio::test]
async fn nothing_is_lost_with_mqtt5() {
    nothing_is_lost(Protocol::V5, 1).await;
}

#[tokio::test]
async fn nothing_is_lost_with_mqtt5_at_qos_2() {
    nothing_is_lost(Protocol::V5, 2).await;
}

/// At QoS 0 a message leaves the queue once written: everything arrives while the broker
/// is up.
#[tokio::test]
async fn qos_0_delivers_in_order() {
    for protocol in [Protocol::V4, Protocol::V5] {
        let broker = Broker::start();
        let mut sub = Subscriber::start(broker.port, "sub-qos0", false, &["smarty/+/state"]);
        let cfg = MqttConfig {
            discovery: false,
            protocol,
            qos: 0,
            ..config(&broker)
        };
        let (tx, rx) = mpsc::channel(64);
        let task = spawn(cfg, rx);
        for fc in 1..=20 {
            tx.try_send(MeterEvent::Telegram(telegram_event(fc)))
                .unwrap();
        }
        let got = sub.until_async(10, |g| frame_counters(g).len() >= 20).await;
        assert_eq!(frame_counters(&got), (1..=20).collect::<Vec<u64>>());
        drop(tx);
        task.await.unwrap().unwrap();
    }
}

/// A queue directory that cannot be written: the output carries on in memory and delivers,
/// and `/healthz` says the queue is not persisting.
#[tokio::test]
async fn a_queue_that_cannot_be_written_shows_on_healthz() {
    let broker = Broker::start();
    let disk = super::small_disk::SmallDisk::mount("64k");
    disk.remount("ro");
    let mut sub = Subscriber::start(broker.port, "sub-ro", false, &["smarty/+/state"]);
    let cfg = MqttConfig {
        queue_dir: Some(disk.path().join("queue")),
        discovery: false,
        ..config(&broker)
    };
    let live = LiveState::new(["home"]);
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(run_reporting(cfg, rx, Some(live.mqtt_queue()), None));
    tx.try_send(MeterEvent::Telegram(telegram_event(1)))
        .unwrap();
    sub.until_async(10, |g| frame_counters(g).contains(&1))
        .await;
    let queue = live.mqtt_queue();
    let reason = until(|| queue.not_persisting()).await;
    assert!(reason.contains("Read-only"), "{reason}");

    // Writable again: reported as persisting again.
    disk.remount("rw");
    until(|| queue.not_persisting().is_none().then_some(())).await;
    drop(tx);
    task.await.unwrap().unwrap();
}

/// A broker that goes away shows on `/healthz` with the reason (the output queues and
/// retries meanwhile); once it is back the output is healthy again.
#[tokio::test]
async fn a_broker_outage_shows_on_healthz() {
    let mut broker = Broker::start();
    let mut sub = Subscriber::start(broker.port, "sub-health", false, &["smarty/+/state"]);
    let live = LiveState::new(["home"]);
    let (tx, rx) = mpsc::channel(16);
    let health = live.output("mqtt");
    let task = tokio::spawn(run_reporting(
        config(&broker),
        rx,
        Some(live.mqtt_queue()),
        Some(health.clone()),
    ));
    tx.try_send(MeterEvent::Telegram(telegram_event(1)))
        .unwrap();
    sub.until_async(10, |g| frame_counters(g).contains(&1))
        .await;
    until(|| health.problem().is_none().then_some(())).await;

    broker.stop();
    let reason = until(|| health.problem()).await;
    assert!(reason.contains("unreachable"), "{reason}");

    broker.restart();
    until(|| health.problem().is_none().then_some(())).await;
    drop(tx);
    task.await.unwrap().unwrap();
}

/// A queue file that is empty or not a queue at all does not keep the output from
/// starting: it is set aside and the output delivers.
#[tokio::test]
async fn a_damaged_queue_file_does_not_stop_the_output() {
    let broker = Broker::start();
    let mut sub = Subscriber::start(broker.port, "sub-damaged", false, &["smarty/+/state"]);
    for (n, content) in [&b""[..], b"SMARTYQ1M\x01garbage", b"not a database"]
        .into_iter()
        .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(smarty_store::queue::FILE_NAME), content).unwrap();
        let cfg = MqttConfig {
            queue_dir: Some(dir.path().to_path_buf()),
            discovery: false,
            ..config(&broker)
        };
        let (tx, rx) = mpsc::channel(16);
        let task = spawn(cfg, rx);
        let fc = u32::try_from(n).unwrap() + 1;
        tx.try_send(MeterEvent::Telegram(telegram_event(fc)))
            .unwrap();
        sub.until_async(10, |g| frame_counters(g).contains(&u64::from(fc)))
            .await;
        drop(tx);
        task.await.unwrap().unwrap();
    }
}

/// `mqtts://` with the broker's own authority as `ca_file`: the output delivers and the raw
/// source's subscriber subscribes. With the system's authorities instead, which do not know
/// the broker's, the connection is refused and `/healthz` says why.
#[tokio::test]
async fn tls_with_a_ca_file_works_and_an_unknown_authority_is_refused() {
    let broker = Broker::with_tls();
    let tls_port = broker.tls_port.unwrap();
    let ca_file = broker.certificates().ca_file;
    let mut sub = Subscriber::start(broker.port, "sub-tls", false, &["smarty/+/state"]);
    let cfg = MqttConfig {
        url: format!("mqtts://127.0.0.1:{tls_port}"),
        ca_file: Some(ca_file.clone()),
        discovery: false,
        ..config(&broker)
    };
    let (tx, rx) = mpsc::channel(16);
    let task = spawn(cfg.clone(), rx);
    tx.try_send(MeterEvent::Telegram(telegram_event(1)))
        .unwrap();
    sub.until_async(10, |g| frame_counters(g).contains(&1))
        .await;
    drop(tx);
    task.await.unwrap().unwrap();

    let connection = |ca_file: Option<std::path::PathBuf>| Connection {
        endpoint: cfg.check().unwrap(),
        client_id: "smarty-src-tls".into(),
        username: None,
        password: None,
        keep_alive_s: 30,
        ca_file,
    };
    let subscriber = RawSubscriber::new(connection(Some(ca_file)), "smarty/+/raw".into());
    drop(subscriber.subscribe().await.expect("subscribed over TLS"));
    let subscriber = RawSubscriber::new(connection(None), "smarty/+/raw".into());
    let refused = subscriber.subscribe().await.unwrap_err().to_string();
    assert!(refused.contains("UnknownIssuer"), "{refused}");

    let live = LiveState::new(["home"]);
    let cfg = MqttConfig {
        ca_file: None,
        ..cfg
    };
    let (tx, rx) = mpsc::channel(16);
    let health = live.output("mqtt");
    let task = tokio::spawn(run_reporting(cfg, rx, None, Some(health.clone())));
    let reason = until(|| health.problem()).await;
    assert!(reason.contains("UnknownIssuer"), "{reason}");
    drop(tx);
    task.await.unwrap().unwrap();
}

/// The simulator's [`super::Sender`]: every message arrives, also those sent while the broker
/// was down (at QoS 1 perhaps twice, never not at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_delivers_every_message_across_a_broker_restart() {
    let mut broker = Broker::persistent();
    let mut sub = Subscriber::start(broker.port, "sub-sender", true, &["sender/#"]);
    let connection = Connection {
        endpoint: super::Endpoint::parse(&broker.url()).unwrap(),
        client_id: "smarty-sender-test".into(),
        username: None,
        password: None,
        keep_alive_s: 5,
        ca_file: None,
    };
    let mut sender = super::Sender::connect(&connection, 8).await.unwrap();
    for i in 0..20u32 {
        let topic = format!("sender/{}", i % 4);
        sender
            .send(&topic, bytes::Bytes::from(i.to_be_bytes().to_vec()))
            .await
            .unwrap();
    }
    sender.flush().await.unwrap();
    broker.stop();
    let restart = tokio::task::spawn_blocking(move || {
        broker.restart();
        broker
    });
    for i in 20..40u32 {
        let topic = format!("sender/{}", i % 4);
        sender
            .send(&topic, bytes::Bytes::from(i.to_be_bytes().to_vec()))
            .await
            .unwrap();
    }
    let _broker = restart.await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), sender.flush())
        .await
        .expect("every message acknowledged after the restart")
        .unwrap();
    assert_eq!(sender.sent(), 40);
    let got = sub
        .until_async(30, |g| {
            let seen: std::collections::HashSet<_> = g.iter().map(|r| r.payload.clone()).collect();
            seen.len() == 40
        })
        .await;
    for r in &got {
        let i = u32::from_be_bytes(r.payload.as_slice().try_into().unwrap());
        assert_eq!(r.topic, format!("sender/{}", i % 4));
    }
    sender.close().await;
}

/// A server that closes every connection at once: the sender says so instead of waiting.
#[tokio::test]
async fn the_sender_reports_a_broker_that_refuses_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    let connection = Connection {
        endpoint: super::Endpoint::parse(&format!("mqtt://127.0.0.1:{port}")).unwrap(),
        client_id: "smarty-sender-test".into(),
        username: None,
        password: None,
        keep_alive_s: 5,
        ca_file: None,
    };
    let error = super::Sender::connect(&connection, 8)
        .await
        .err()
        .expect("refused");
    assert_eq!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{error}"
    );
}

/// The guard's topics after a telegram: its entities announced once (sensors, the binary
/// sensor, the alert event) under the meter's device, the state's JSON and figures retained
/// as `retain_state`, alerts and closed quarters never retained; Home Assistant's birth
/// message announces the guard's entities again.
#[tokio::test]
async fn the_guard_publishes_figures_alerts_closed_quarters_and_discovery() {
    let broker = Broker::start();
    let mut sub = Subscriber::start(broker.port, "sub-guard", false, &["#"]);
    let telegram = telegram_event(3);
    let events = guard_events();
    let cfg = MqttConfig {
        retain_state: true,
        qos: 0,
        ..config(&broker)
    };
    let (tx, rx) = mpsc::channel(16);
    let task = spawn(cfg.clone(), rx);
    tx.try_send(MeterEvent::Status(meter_status(true))).unwrap();
    tx.try_send(MeterEvent::Telegram(Arc::clone(&telegram)))
        .unwrap();
    for event in &events {
        tx.try_send(MeterEvent::Guard(Arc::clone(event))).unwrap();
    }
    let last = events.last().unwrap();
    let last_json = crate::topics::guard_json(&last.state);
    let got = sub
        .until_async(10, |g| {
            g.iter().any(|r| {
                r.topic == "smarty/home/guard"
                    && serde_json::from_slice::<Json>(&r.payload).ok().as_ref() == Some(&last_json)
            }) && g
                .iter()
                .filter(|r| r.topic == "smarty/home/guard/will_exceed")
                .count()
                == events.len()
                && g.iter()
                    .filter(|r| r.topic == "smarty/home/guard/alert")
                    .count()
                    == 2
        })
        .await;
    let on_topic = |topic: &str| -> Vec<String> {
        got.iter()
            .filter(|r| r.topic == topic)
            .map(Received::text)
            .collect()
    };
    // One state and one message per figure for each event, in the events' order.
    assert_eq!(on_topic("smarty/home/guard").len(), events.len());
    assert_eq!(
        on_topic("smarty/home/guard/verdict"),
        ["fine", "will_exceed", "will_exceed", "exceeded", "fine"]
    );
    assert_eq!(
        on_topic("smarty/home/guard/will_exceed"),
        ["OFF", "ON", "ON", "ON", "OFF"]
    );
    assert_eq!(
        on_topic("smarty/home/guard/energy_import_kwh"),
        ["0.000", "0.250", "0.600", "0.800", "0.010"]
    );
    assert_eq!(
        on_topic("smarty/home/guard/headroom_kw")[1..4],
        ["3.000", "1.800", "0.000"]
    );
    assert_eq!(
        on_topic("smarty/home/guard/reference_power_kw"),
        ["3.000"; 5]
    );
    assert_eq!(on_topic("smarty/home/guard/month_peak_kw")[4], "3.200");
    for r in got
        .iter()
        .filter(|r| r.topic.starts_with("smarty/home/guard/"))
    {
        let name = &r.topic["smarty/home/guard/".len()..];
        if ["verdict", "will_exceed", "alert", "closed"].contains(&name) {
            continue;
        }
        let x: f64 = r
            .text()
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", r.topic));
        assert!(x.is_finite(), "{}: {x}", r.topic);
    }
    // The alerts: JSON with the kind (and event type), title, message and figures.
    let alerts: Vec<Json> = on_topic("smarty/home/guard/alert")
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    assert_eq!(alerts[0]["kind"], "will_exceed");
    assert_eq!(alerts[0]["event_type"], "will_exceed");
    assert_eq!(alerts[0]["meter"], "home");
    assert_eq!(alerts[0]["projected_average_kw"], 4.333);
    assert_eq!(alerts[0]["reference_power_kw"], 3.0);
    assert_eq!(alerts[0]["quarter_start"], "2026-01-01T00:00:00Z");
    assert_eq!(alerts[0]["at"], "2026-01-01T00:05:00Z");
    assert_eq!(
        alerts[0]["title"],
        "Smarty home: reference power will be exceeded"
    );
    assert_eq!(alerts[1]["kind"], "headroom_low");
    assert_eq!(alerts[1]["headroom_kw"], 0.0);
    assert_eq!(alerts[1]["threshold_kw"], 1.0);
    // The closed quarters: December's last (nothing drawn in its last 10 s), then the first.
    let closed: Vec<Json> = on_topic("smarty/home/guard/closed")
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    assert_eq!(closed.len(), 2);
    assert_eq!(closed[0]["start"], "2025-12-31T23:45:00Z");
    assert_eq!(
        closed[1],
        serde_json::json!({
            "meter": "home",
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-01-01T00:15:00Z",
            "energy_import_kwh": 0.8,
            "average_power_kw": 3.2,
        })
    );
    // Discovery: the guard's entities once, before its first message, on the meter's device.
    let configs: HashMap<String, Json> = got
        .iter()
        .filter(|r| r.topic.starts_with("homeassistant/") && r.topic.contains("/guard_"))
        .map(|r| (r.topic.clone(), serde_json::from_slice(&r.payload).unwrap()))
        .collect();
    assert_eq!(configs.len(), 9, "{:?}", configs.keys());
    assert_eq!(
        got.iter()
            .filter(|r| r.topic.starts_with("homeassistant/") && r.topic.contains("/guard_"))
            .count(),
        9,
        "announced once"
    );
    let device = "smarty_sag1030700012701";
    let energy = &configs[&format!("homeassistant/sensor/{device}/guard_energy_import_kwh/config")];
    assert_eq!(energy["state_topic"], "smarty/home/guard/energy_import_kwh");
    assert_eq!(energy["unit_of_measurement"], "kWh");
    assert_eq!(energy["device_class"], "energy");
    assert_eq!(energy["state_class"], "total_increasing");
    assert_eq!(
        energy["unique_id"],
        format!("{device}_guard_energy_import_kwh")
    );
    assert_eq!(energy["device"]["identifiers"][0], device);
    assert_eq!(
        energy["availability"][1]["topic"],
        "smarty/home/availability"
    );
    let headroom = &configs[&format!("homeassistant/sensor/{device}/guard_headroom_kw/config")];
    assert_eq!(headroom["state_topic"], "smarty/home/guard/headroom_kw");
    assert_eq!(headroom["unit_of_measurement"], "kW");
    assert_eq!(headroom["device_class"], "power");
    let verdict = &configs[&format!("homeassistant/sensor/{device}/guard_verdict/config")];
    assert_eq!(verdict["device_class"], "enum");
    assert_eq!(
        verdict["options"],
        serde_json::json!(["fine", "will_exceed", "exceeded"])
    );
    let binary =
        &configs[&format!("homeassistant/binary_sensor/{device}/guard_will_exceed/config")];
    assert_eq!(binary["state_topic"], "smarty/home/guard/will_exceed");
    assert_eq!(binary["device_class"], "problem");
    assert_eq!(
        (&binary["payload_on"], &binary["payload_off"]),
        (&Json::from("ON"), &Json::from("OFF"))
    );
    assert_eq!(binary["device"], energy["device"]);
    let alert = &configs[&format!("homeassistant/event/{device}/guard_alert/config")];
    assert_eq!(alert["state_topic"], "smarty/home/guard/alert");
    assert_eq!(
        alert["event_types"],
        serde_json::json!(["headroom_low", "will_exceed", "new_monthly_peak"])
    );
    // Every guard entity reads a topic the guard publishes on.
    for (topic, c) in &configs {
        let state_topic = c["state_topic"].as_str().unwrap();
        assert!(got.iter().any(|r| r.topic == state_topic), "{topic}");
    }
    let pos = |t: &str| got.iter().position(|r| r.topic == t).unwrap();
    assert!(
        pos(&format!(
            "homeassistant/binary_sensor/{device}/guard_will_exceed/config"
        )) < pos("smarty/home/guard")
    );

    // Retained: the state, the figures and discovery; never the alerts or closed quarters.
    let mut late = Subscriber::start(broker.port, "late-guard", false, &["#"]);
    let got = late
        .until_async(10, |g| {
            g.iter().filter(|r| r.topic.contains("/guard_")).count() == 9
                && g.iter().any(|r| r.topic == "smarty/home/guard")
                && g.iter().any(|r| r.topic == "smarty/home/guard/will_exceed")
        })
        .await;
    assert!(got.iter().all(|r| r.retain));
    let retained = |topic: &str| got.iter().find(|r| r.topic == topic).map(Received::text);
    assert_eq!(
        retained("smarty/home/guard/will_exceed").as_deref(),
        Some("OFF")
    );
    let state: Json = serde_json::from_str(&retained("smarty/home/guard").unwrap()).unwrap();
    assert_eq!(state, last_json);
    // Retained messages come right after subscribing: any retained alert or closed quarter
    // would be here before the discovery that Home Assistant's birth message brings again.
    home_assistant_online(&broker).await;
    let again = late
        .until_async(10, |g| {
            g.iter().filter(|r| r.topic.contains("/guard_")).count() == 9
        })
        .await;
    for got in [&got, &again] {
        assert!(
            !got.iter()
                .any(|r| r.topic.ends_with("/guard/alert") || r.topic.ends_with("/guard/closed"))
        );
    }
    drop(tx);
    task.await.unwrap().unwrap();
}
