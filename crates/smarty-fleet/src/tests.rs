//! The stream and the publisher against a real `nats-server` ([`crate::test_nats`]).

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use smarty_p1::{Aad, Key};

use crate::publish::{PublishError, Publisher, PublisherConfig};
use crate::stream::{self, Ensured, StreamConfig, StreamError};
use crate::subject;
use crate::test_nats::{NatsServer, stored};

/// The system title of virtual meter `i`.
fn title(i: u32) -> [u8; 8] {
    let mut title = *b"SAG\0\0\0\0\0";
    title[4..].copy_from_slice(&i.to_be_bytes());
    title
}

/// Frame `counter` of meter `i`: a real encrypted frame.
fn frame(i: u32, counter: u32) -> Bytes {
    let telegram =
        format!("/Lux5\\253663629_D\r\n\r\n0-0:42.0.0(meter {i} frame {counter})\r\n!0000\r\n");
    let key = Key::from_bytes([i as u8; 16]);
    smarty_p1::encrypt_frame(
        &key,
        &Aad::default(),
        title(i),
        counter,
        telegram.as_bytes(),
    )
    .into()
}

async fn context(server: &NatsServer) -> jetstream::Context {
    let client = crate::nats::connect(&server.url(), "smarty-test")
        .await
        .unwrap();
    jetstream::new(client)
}

async fn publisher(server: &NatsServer, config: PublisherConfig) -> Publisher {
    let client = crate::nats::connect(&server.url(), "smarty-test")
        .await
        .unwrap();
    Publisher::new(client, config)
}

/// Publishes frames `counters` of meters `0..meters` (meter by meter within each counter, as
/// a fleet sends them) and waits for every acknowledgement.
async fn publish_all(
    publisher: &mut Publisher,
    meters: u32,
    counters: std::ops::Range<u32>,
) -> crate::publish::Report {
    for counter in counters {
        for i in 0..meters {
            publisher
                .publish(&title(i), counter, frame(i, counter))
                .await
                .unwrap();
        }
    }
    publisher.flush().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_created_then_checked_and_never_changed_silently() {
    let server = NatsServer::start();
    let js = context(&server).await;
    let config = StreamConfig::default();

    let created = stream::ensure(&js, &config).await.unwrap();
    let Ensured::Created(info) = &created else {
        panic!("not created: {created:?}");
    };
    assert_eq!(info.config.name, "SMARTY_RAW");
    assert_eq!(info.config.subjects, ["smarty.raw.>"]);
    assert_eq!(
        info.config.retention,
        jetstream::stream::RetentionPolicy::Limits
    );
    assert_eq!(info.config.max_age, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(info.config.duplicate_window, Duration::from_secs(600));
    assert_eq!(info.config.num_replicas, 1);

    // Again: found as it is.
    match stream::ensure(&js, &config).await.unwrap() {
        Ensured::Checked {
            differences,
            updated,
            ..
        } => assert!(differences.is_empty() && !updated, "{differences:?}"),
        other => panic!("not checked: {other:?}"),
    }

    // Other limits: reported and left, unless asked to update.
    let mut shorter = StreamConfig {
        max_age: Duration::from_secs(2 * 24 * 3600),
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    let Ensured::Checked {
        differences,
        updated: false,
        ..
    } = stream::ensure(&js, &shorter).await.unwrap()
    else {
        panic!("not checked");
    };
    let settings: Vec<&str> = differences.iter().map(|d| d.setting).collect();
    assert_eq!(settings, ["max_age", "duplicate_window"]);
    let info = js
        .get_stream("SMARTY_RAW")
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(info.config.max_age, Duration::from_secs(7 * 24 * 3600));
    shorter.update = true;
    let Ensured::Checked {
        info,
        updated: true,
        ..
    } = stream::ensure(&js, &shorter).await.unwrap()
    else {
        panic!("not updated");
    };
    assert_eq!(info.config.max_age, Duration::from_secs(2 * 24 * 3600));
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
    assert_eq!(info.config.subjects, ["smarty.raw.>"]);

    // A stream of that name for other subjects: refused, and left as it is.
    js.create_stream(jetstream::stream::Config {
        name: "OTHER".into(),
        subjects: vec!["other.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let other = StreamConfig {
        name: "OTHER".into(),
        ..Default::default()
    };
    let error = stream::ensure(&js, &other).await.unwrap_err();
    assert!(matches!(error, StreamError::Subjects { .. }), "{error:?}");
    assert!(error.to_string().contains("[\"other.>\"]"), "{error}");
    let info = js.get_stream("OTHER").await.unwrap().cached_info().clone();
    assert_eq!(info.config.subjects, ["other.>"]);

    // A second stream for the same subjects: the overlap is named.
    let second = StreamConfig {
        name: "SMARTY_RAW_2".into(),
        ..Default::default()
    };
    let error = stream::ensure(&js, &second).await.unwrap_err();
    assert!(
        matches!(&error, StreamError::Overlap { other, .. } if other == "SMARTY_RAW"),
        "{error:?}"
    );

    // Settings that cannot work never reach the server.
    let bad = StreamConfig {
        replicas: 0,
        ..Default::default()
    };
    assert!(matches!(
        stream::ensure(&js, &bad).await,
        Err(StreamError::Config(_))
    ));
    for bad in [
        StreamConfig {
            duplicate_window: Duration::from_secs(8 * 24 * 3600),
            ..Default::default()
        },
        StreamConfig {
            name: "smarty.raw".into(),
            ..Default::default()
        },
    ] {
        assert!(matches!(bad.check(), Err(StreamError::Config(_))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_starting_at_once_differently_configured_both_go_on() {
    let server = NatsServer::start();
    let js = context(&server).await;
    let longer = StreamConfig {
        max_age: Duration::from_secs(14 * 24 * 3600),
        ..Default::default()
    };
    let default = StreamConfig::default();
    let (a, b) = tokio::join!(stream::ensure(&js, &default), stream::ensure(&js, &longer));
    let (a, b) = (a.unwrap(), b.unwrap());
    let created = [&a, &b]
        .iter()
        .filter(|e| matches!(e, Ensured::Created(_)))
        .count();
    assert_eq!(created, 1, "{a:?} {b:?}");
    assert_eq!(a.info().config.subjects, ["smarty.raw.>"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_jetstream_is_named() {
    let server = NatsServer::without_jetstream();
    let error = stream::ensure(&context(&server).await, &StreamConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(error, StreamError::NoJetStream), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_meters_ten_frames_each_stored_once_with_subjects_and_ids() {
    let server = NatsServer::start();
    let js = context(&server).await;
    stream::ensure(&js, &StreamConfig::default()).await.unwrap();
    let config = PublisherConfig {
        max_in_flight: 32,
        ..Default::default()
    };
    let mut publisher = publisher(&server, config).await;

    let report = publish_all(&mut publisher, 20, 1000..1010).await;
    assert_eq!(
        (report.published, report.acknowledged, report.duplicates),
        (200, 200, 0)
    );
    let stored = stored(&server.url(), "SMARTY_RAW").await;
    assert_eq!(stored.len(), 200);
    let mut expected = BTreeSet::new();
    for i in 0..20 {
        for counter in 1000..1010 {
            expected.insert((
                subject::raw(&title(i)),
                subject::message_id(&title(i), counter),
                frame(i, counter).to_vec(),
            ));
        }
    }
    let got: BTreeSet<_> = stored
        .iter()
        .map(|s| {
            (
                s.subject.clone(),
                s.message_id.clone().expect("a message id"),
                s.payload.clone(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    // Each meter's frames in counter order.
    for i in 0..20 {
        let ids: Vec<&str> = stored
            .iter()
            .filter(|s| s.subject == subject::raw(&title(i)))
            .filter_map(|s| s.message_id.as_deref())
            .collect();
        let counters: Vec<u32> = ids
            .iter()
            .map(|id| id.rsplit_once(':').unwrap().1.parse().unwrap())
            .collect();
        assert_eq!(counters, (1000..1010).collect::<Vec<_>>());
    }

    // The same frames again, from another publisher: acknowledged as duplicates, nothing added.
    let mut again = publisher_again(&server).await;
    let report = publish_all(&mut again, 20, 1000..1010).await;
    assert_eq!((report.acknowledged, report.duplicates), (200, 200));
    assert_eq!(stored_count(&js).await, 200);
    // New frames still land.
    let report = publish_all(&mut again, 20, 1010..1011).await;
    assert_eq!((report.acknowledged, report.duplicates), (220, 200));
    assert_eq!(stored_count(&js).await, 220);
}

async fn publisher_again(server: &NatsServer) -> Publisher {
    publisher(server, PublisherConfig::default()).await
}

async fn stored_count(js: &jetstream::Context) -> u64 {
    js.get_stream("SMARTY_RAW")
        .await
        .unwrap()
        .cached_info()
        .state
        .messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_stream_publishing_fails_and_says_why() {
    let server = NatsServer::start();
    let config = PublisherConfig {
        no_stream_tries: 2,
        ..Default::default()
    };
    let mut publisher = publisher(&server, config).await;
    publisher.publish(&title(1), 1, frame(1, 1)).await.unwrap();
    let error = publisher.flush().await.unwrap_err();
    assert_eq!(
        error,
        PublishError::NoStream {
            subject: "smarty.raw.5341470000000001".into(),
            tries: 2
        }
    );
    assert!(error.to_string().contains("create the stream"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_published_while_the_server_restarts_are_all_stored_once() {
    let mut server = NatsServer::start();
    let js = context(&server).await;
    stream::ensure(&js, &StreamConfig::default()).await.unwrap();
    let config = PublisherConfig {
        ack_timeout: Duration::from_secs(2),
        max_retry_wait: Duration::from_millis(500),
        max_in_flight: 64,
        ..Default::default()
    };
    let mut publisher = publisher(&server, config).await;

    let report = publish_all(&mut publisher, 10, 0..5).await;
    assert_eq!(report.acknowledged, 50);
    // Killed with frames in flight, started again while more are published.
    for i in 0..10 {
        publisher.publish(&title(i), 5, frame(i, 5)).await.unwrap();
    }
    server.kill();
    let restart = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    });
    for counter in 6..10 {
        for i in 0..10 {
            publisher
                .publish(&title(i), counter, frame(i, counter))
                .await
                .unwrap();
        }
    }
    let server = restart.await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(120), publisher.flush())
        .await
        .expect("every frame acknowledged after the restart")
        .unwrap();
    assert_eq!(report.acknowledged, 100, "{report:?}");
    let stored = stored(&server.url(), "SMARTY_RAW").await;
    let ids: BTreeSet<String> = stored.iter().filter_map(|s| s.message_id.clone()).collect();
    assert_eq!(ids.len(), 100, "every frame once");
    assert_eq!(stored.len(), 100, "no frame twice");
}

mod ingest {
    //! Workers against a real `nats-server` and a real PostgreSQL: every frame stored once.

    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use smarty_model::period::Resolution;
    use smarty_p1::{Aad, Key};
    use smarty_store::Store;
    use smarty_store::test_postgres::TestDatabase;
    use tokio::sync::watch;

    use super::{publisher, title};
    use crate::ingest::{self, IngestConfig, IngestStats};
    use crate::keys::{self, MasterKey};
    use crate::keys_csv::MeterKeys;
    use crate::publish::PublisherConfig;
    use crate::stream::{self, StreamConfig};
    use crate::test_nats::NatsServer;

    /// 2026-12-01 00:00:00 UTC.
    const START: i64 = 1_796_083_200;

    fn key(i: u32) -> Key {
        Key::from_bytes([(i as u8).wrapping_add(1); 16])
    }

    /// Frame `counter` of meter `i`: a telegram every 10 s with energy and power, CRC and
    /// all, encrypted with the meter's key.
    fn frame(i: u32, counter: u32) -> Bytes {
        let at = jiff::Timestamp::from_second(START + 10 * i64::from(counter))
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::get("Europe/Luxembourg").unwrap());
        let energy = 1_000_000 + u64::from(counter) * 3 + u64::from(i);
        let body = format!(
            "/Lux5\\253663629_D\r\n\r\n1-3:0.2.8(42)\r\n0-0:1.0.0({}W)\r\n\
             0-0:42.0.0(4D4554455220{i:04})\r\n1-0:1.8.0({:06}.{:03}*kWh)\r\n\
             1-0:1.7.0({:02}.{:03}*kW)\r\n!",
            at.strftime("%y%m%d%H%M%S"),
            energy / 1000,
            energy % 1000,
            1 + counter % 3,
            i % 1000,
        );
        let crc = smarty_p1::crc16_arc(body.as_bytes());
        let telegram = format!("{body}{crc:04X}\r\n");
        smarty_p1::encrypt_frame(
            &key(i),
            &Aad::default(),
            title(i),
            counter,
            telegram.as_bytes(),
        )
        .into()
    }

    /// The workers' logs, shown when a test fails (`RUST_LOG` filters them).
    pub(super) fn logs() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "smarty_fleet=info".into()),
            )
            .with_test_writer()
            .try_init();
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not after 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_workers_store_every_frame_once() {
        logs();
        const METERS: u32 = 40;
        const FRAMES: u32 = 30;
        let server = NatsServer::start();
        let db = TestDatabase::create();
        let store = Store::open(&db.store_config()).unwrap();
        let master: MasterKey = "000102030405060708090A0B0C0D0E0F".parse().unwrap();
        let meters: Vec<MeterKeys> = (0..METERS)
            .map(|i| MeterKeys {
                name: Some(format!("flat-{i:02}")),
                system_title: title(i),
                key: key(i),
                auth_key: None,
            })
            .collect();
        keys::import(&store, &master, &meters).unwrap();
        let mut publisher = publisher(&server, PublisherConfig::default()).await;
        stream::ensure(publisher.context(), &StreamConfig::default())
            .await
            .unwrap();
        // Every frame, and half of them again (a publisher's resends).
        for counter in 0..FRAMES {
            for i in 0..METERS {
                publisher
                    .publish(&title(i), counter, frame(i, counter))
                    .await
                    .unwrap();
            }
        }
        for counter in 0..FRAMES / 2 {
            publisher
                .publish(&title(0), counter, frame(0, counter))
                .await
                .unwrap();
        }
        // A frame of a meter nobody knows, and one with another key.
        publisher
            .publish(&title(999), 1, frame(999, 1))
            .await
            .unwrap();
        let mut wrong = frame(1, 500).to_vec();
        let last = wrong.len() - 1;
        wrong[last] ^= 1; // its tag
        publisher
            .publish(&title(1), 500, wrong.into())
            .await
            .unwrap();
        publisher.flush().await.unwrap();

        let (stop_tx, stop) = watch::channel(false);
        let stats = Arc::new(IngestStats::default());
        let config = IngestConfig {
            batch_max: 150,
            ..IngestConfig::default()
        };
        let mut workers = Vec::new();
        for _ in 0..2 {
            let client = crate::nats::connect(&server.url(), "smarty-ingest-test")
                .await
                .unwrap();
            workers.push(tokio::spawn(ingest::run(
                client,
                store.clone(),
                master.clone(),
                config.clone(),
                Arc::clone(&stats),
                stop.clone(),
            )));
        }
        let total = u64::from(METERS * FRAMES) + 2;
        let expected = u64::from(METERS * FRAMES);
        let began = Instant::now();
        wait_until("every frame stored", || {
            if began.elapsed() > Duration::from_secs(58) {
                eprintln!("{stats:?}");
            }
            stats.stored.load(Ordering::Relaxed) >= expected
                && stats.frames.load(Ordering::Relaxed) >= total
        })
        .await;
        stop_tx.send(true).unwrap();
        for worker in workers {
            worker.await.unwrap().unwrap();
        }
        assert_eq!(
            stats.stored.load(Ordering::Relaxed),
            u64::from(METERS * FRAMES),
            "{stats:?}"
        );
        assert_eq!(
            stats.failed_commits.load(Ordering::Relaxed),
            0,
            "two workers writing one database: {:?}",
            stats.last_error
        );
        assert_eq!(stats.rejected_for("unknown_meter"), 1);
        assert_eq!(
            stats.rejected_for("authentication"),
            1,
            "{:?}",
            stats.rejected
        );
        // Each meter's last frame counter is kept, under its key's check value.
        for i in [0, 7, METERS - 1] {
            let check = smarty_p1::hex::upper(&key(i).check_value()).to_string();
            let counters = store
                .frame_counters(&format!("flat-{i:02}"), &check)
                .unwrap();
            assert_eq!(
                counters,
                [(smarty_p1::hex::upper(&title(i)).to_string(), FRAMES - 1)]
            );
        }
        let reader = store.reader().unwrap();
        for i in 0..METERS {
            let id = reader.meter_id(&format!("flat-{i:02}")).unwrap();
            let rows = reader.raw_rows(id, 0, i64::MAX / 2).unwrap();
            let times: Vec<i64> = rows.iter().map(|r| r.ts).collect();
            let expected: Vec<i64> = (0..FRAMES).map(|c| START + 10 * i64::from(c)).collect();
            assert_eq!(times, expected, "meter {i}: every frame once");
            // The rollups are the sums over the stored readings.
            let energy: f64 = reader
                .series(
                    &format!("flat-{i:02}"),
                    "energy_import_kwh",
                    START,
                    START + 86_400,
                    Resolution::Min15,
                )
                .unwrap()
                .value
                .iter()
                .sum();
            assert!(
                (energy - f64::from(FRAMES - 1) * 0.003).abs() < 1e-9,
                "meter {i}: {energy}"
            );
        }
    }
}

/// The server's `partition()` mapping and [`subject::partition`] agree, meter by meter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_maps_each_meter_to_the_partition_the_workers_compute() {
    let server = NatsServer::with_partitions(4);
    crate::test_nats::create_stream(&server.url()).await;
    let mut publisher = publisher(&server, PublisherConfig::default()).await;
    publish_all(&mut publisher, 200, 1..2).await;
    let stored = stored(&server.url(), "SMARTY_RAW").await;
    assert_eq!(stored.len(), 200);
    let mut per_partition = [0u32; 4];
    for message in &stored {
        let (title, partition) = subject::title_and_partition(&message.subject)
            .unwrap_or_else(|| panic!("not a partitioned subject: {}", message.subject));
        let partition = partition.expect("mapped by the server");
        assert_eq!(
            partition,
            subject::partition(&title, 4),
            "{}",
            message.subject
        );
        per_partition[partition as usize] += 1;
    }
    assert!(per_partition.iter().all(|&n| n > 20), "{per_partition:?}");
}
