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
        wait_until("every frame stored", || {
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

    /// Frame `counter` of meter `i` with another telegram (the same counter, another tag).
    fn other_frame(i: u32, counter: u32) -> Bytes {
        let mut body = frame_body(i, counter);
        body = body.replace("1-0:1.7.0(", "1-0:1.7.0(9");
        seal(i, counter, &body, &key(i))
    }

    fn frame_body(i: u32, counter: u32) -> String {
        let at = jiff::Timestamp::from_second(START + 10 * i64::from(counter))
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::get("Europe/Luxembourg").unwrap());
        let energy = 1_000_000 + u64::from(counter) * 3 + u64::from(i);
        format!(
            "/Lux5\\253663629_D\r\n\r\n1-3:0.2.8(42)\r\n0-0:1.0.0({}W)\r\n\
             0-0:42.0.0(4D4554455220{i:04})\r\n1-0:1.8.0({:06}.{:03}*kWh)\r\n\
             1-0:1.7.0({:02}.{:03}*kW)\r\n!",
            at.strftime("%y%m%d%H%M%S"),
            energy / 1000,
            energy % 1000,
            1 + counter % 3,
            i % 1000,
        )
    }

    fn seal(i: u32, counter: u32, body: &str, key: &Key) -> Bytes {
        let crc = smarty_p1::crc16_arc(body.as_bytes());
        let telegram = format!("{body}{crc:04X}\r\n");
        smarty_p1::encrypt_frame(key, &Aad::default(), title(i), counter, telegram.as_bytes())
            .into()
    }

    /// A fleet of `meters` in a fresh database: the store, the master key.
    fn fleet_of(meters: u32, store: &Store) -> MasterKey {
        let master: MasterKey = "000102030405060708090A0B0C0D0E0F".parse().unwrap();
        let meters: Vec<MeterKeys> = (0..meters)
            .map(|i| MeterKeys {
                name: Some(format!("m-{i:03}")),
                system_title: title(i),
                key: key(i),
                auth_key: None,
            })
            .collect();
        keys::import(store, &master, &meters).unwrap();
        master
    }

    type Worker = (
        tokio::task::JoinHandle<Result<(), ingest::IngestError>>,
        Arc<IngestStats>,
    );

    async fn start_workers(
        n: usize,
        server: &NatsServer,
        store: &Store,
        master: &MasterKey,
        config: &IngestConfig,
        stop: &watch::Receiver<bool>,
    ) -> Vec<Worker> {
        let mut workers = Vec::new();
        for _ in 0..n {
            let client = crate::nats::connect(&server.url(), "smarty-ingest-test")
                .await
                .unwrap();
            let stats = Arc::new(IngestStats::default());
            workers.push((
                tokio::spawn(ingest::run(
                    client,
                    store.clone(),
                    master.clone(),
                    config.clone(),
                    Arc::clone(&stats),
                    stop.clone(),
                )),
                stats,
            ));
        }
        workers
    }

    fn sum(workers: &[Worker], f: impl Fn(&IngestStats) -> u64) -> u64 {
        workers.iter().map(|(_, s)| f(s)).sum()
    }

    fn stored(workers: &[Worker]) -> u64 {
        sum(workers, |s| s.stored.load(Ordering::Relaxed))
    }

    async fn publish_range(
        publisher: &mut crate::publish::Publisher,
        meters: u32,
        counters: std::ops::Range<u32>,
    ) {
        for counter in counters {
            for i in 0..meters {
                publisher
                    .publish(&title(i), counter, frame(i, counter))
                    .await
                    .unwrap();
            }
        }
        publisher.flush().await.unwrap();
    }

    /// Rows of `reading` stored in a later transaction than a row of the same meter with a
    /// later time (order broken), by the transaction ids PostgreSQL keeps.
    const OUT_OF_ORDER: &str = "SELECT count(*) FROM (
           SELECT time, max(time) OVER (PARTITION BY meter ORDER BY xmin::text::bigint
             RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
           FROM reading) x WHERE before > time";

    /// Meters whose 15-minute energies do not add up to their last register minus their
    /// first.
    const ROLLUPS_OFF: &str = "SELECT count(*) FROM
           (SELECT meter, max(energy_import_wh) - min(energy_import_wh) AS e FROM reading GROUP BY meter) r
           JOIN (SELECT meter, sum(energy_import_wh) AS e FROM agg_15m GROUP BY meter) a
           USING (meter) WHERE r.e <> a.e";

    fn one(db_rows: Vec<Option<String>>) -> String {
        db_rows.into_iter().flatten().next().unwrap_or_default()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn four_partitions_two_workers_every_frame_once_in_each_meters_order() {
        logs();
        const METERS: u32 = 200;
        const FRAMES: u32 = 50;
        let server = NatsServer::with_partitions(4);
        let db = TestDatabase::create();
        let store = Store::open(&db.store_config()).unwrap();
        let master = fleet_of(METERS, &store);
        let mut publisher = publisher(&server, PublisherConfig::default()).await;
        stream::ensure(publisher.context(), &StreamConfig::default())
            .await
            .unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let config = IngestConfig {
            partitions: 4,
            batch_max: 250,
            ..IngestConfig::default()
        };
        let workers = start_workers(2, &server, &store, &master, &config, &stop).await;
        // Frames flow while both workers take partitions.
        publish_range(&mut publisher, METERS, 0..FRAMES).await;
        let expected = u64::from(METERS * FRAMES);
        wait_until("every frame stored", || stored(&workers) >= expected).await;
        stop_tx.send(true).unwrap();
        let held: Vec<u64> = workers
            .iter()
            .map(|(_, s)| s.batches.load(Ordering::Relaxed))
            .collect();
        let stats: Vec<Arc<IngestStats>> = workers.iter().map(|(_, s)| Arc::clone(s)).collect();
        for (worker, _) in workers {
            worker.await.unwrap().unwrap();
        }
        let total = |f: fn(&IngestStats) -> &std::sync::atomic::AtomicU64| -> u64 {
            stats.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
        };
        assert_eq!(total(|s| &s.stored), expected, "{stats:?}");
        assert_eq!(total(|s| &s.out_of_order), 0);
        assert_eq!(total(|s| &s.replays), 0);
        assert_eq!(total(|s| &s.unmapped), 0);
        assert_eq!(total(|s| &s.failed_commits), 0);
        assert!(
            held.iter().all(|&b| b > 0),
            "both workers store: batches {held:?}"
        );
        // Every (meter, frame) once, stored in each meter's order; the rollups add up.
        assert_eq!(
            one(db.query("SELECT count(*) FROM reading")),
            expected.to_string()
        );
        assert_eq!(
            one(db.query("SELECT count(*) FROM (SELECT DISTINCT meter, time FROM reading) x")),
            expected.to_string()
        );
        assert_eq!(
            one(db.query("SELECT count(DISTINCT meter) FROM reading")),
            METERS.to_string()
        );
        assert_eq!(one(db.query(OUT_OF_ORDER)), "0");
        assert_eq!(one(db.query(ROLLUPS_OFF)), "0");
        assert_eq!(
            one(db.query(
                "SELECT count(*) FROM frame_counter WHERE counter = 49 AND tag IS NOT NULL"
            )),
            METERS.to_string()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_set_aside_are_counted_and_kept_and_the_others_flow() {
        logs();
        const METERS: u32 = 20;
        let server = NatsServer::with_partitions(4);
        let db = TestDatabase::create();
        let store = Store::open(&db.store_config()).unwrap();
        let master = fleet_of(METERS, &store);
        let mut publisher = publisher(&server, PublisherConfig::default()).await;
        stream::ensure(publisher.context(), &StreamConfig::default())
            .await
            .unwrap();
        publish_range(&mut publisher, METERS, 0..10).await;
        // A replay of meter 3's frame 2 (another message id: the stream takes it), meter 4's
        // frame 9 again with another content (nonce reuse), meter 5's frame 10 under another
        // key, and a meter nobody knows.
        let js = publisher.context().clone();
        let raw = |i: u32, payload: Bytes| {
            let js = js.clone();
            async move {
                js.publish(crate::subject::raw(&title(i)), payload)
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        };
        raw(3, frame(3, 2)).await;
        raw(4, other_frame(4, 9)).await;
        raw(5, seal(5, 10, &frame_body(5, 10), &key(77))).await;
        raw(999, frame(999, 1)).await;
        publish_range(&mut publisher, METERS, 10..20).await;

        let (stop_tx, stop) = watch::channel(false);
        let config = IngestConfig {
            partitions: 4,
            batch_max: 50,
            ..IngestConfig::default()
        };
        let workers = start_workers(2, &server, &store, &master, &config, &stop).await;
        let expected = u64::from(METERS * 20);
        wait_until("the others stored", || {
            stored(&workers) >= expected
                && sum(&workers, |s| s.dead_lettered.load(Ordering::Relaxed)) >= 4
        })
        .await;
        stop_tx.send(true).unwrap();
        let stats: Vec<Arc<IngestStats>> = workers.iter().map(|(_, s)| Arc::clone(s)).collect();
        for (worker, _) in workers {
            worker.await.unwrap().unwrap();
        }
        let reason = |r: &str| stats.iter().map(|s| s.rejected_for(r)).sum::<u64>();
        assert_eq!(reason("replay"), 1, "{stats:?}");
        assert_eq!(reason("nonce_reuse"), 1);
        assert_eq!(reason("wrong_key"), 1);
        assert_eq!(reason("unknown_meter"), 1);
        assert_eq!(
            stats
                .iter()
                .map(|s| s.nonce_reuse.load(Ordering::Relaxed))
                .sum::<u64>(),
            1
        );
        assert_eq!(
            stats
                .iter()
                .map(|s| s.replays.load(Ordering::Relaxed))
                .sum::<u64>(),
            1
        );
        assert_eq!(
            stats
                .iter()
                .map(|s| s.stored.load(Ordering::Relaxed))
                .sum::<u64>(),
            expected
        );
        // Kept in the dead-letter stream, with why and where from.
        let dead = crate::test_nats::stored(&server.url(), "SMARTY_DEAD").await;
        let mut subjects: Vec<&str> = dead.iter().map(|d| d.subject.as_str()).collect();
        subjects.sort_unstable();
        let hex = |i: u32| smarty_p1::hex::upper(&title(i)).to_string();
        let mut want = vec![
            format!("smarty.dead.replay.{}", hex(3)),
            format!("smarty.dead.nonce_reuse.{}", hex(4)),
            format!("smarty.dead.wrong_key.{}", hex(5)),
            format!("smarty.dead.unknown_meter.{}", hex(999)),
        ];
        want.sort_unstable();
        assert_eq!(subjects, want);
        assert!(dead.iter().any(|d| d.payload == frame(3, 2).to_vec()));
        // Counted per meter in the database.
        let rejections: Vec<(String, String, u64)> = store
            .fleet_rejections()
            .unwrap()
            .into_iter()
            .map(|r| (r.meter, r.reason, r.count))
            .collect();
        assert_eq!(
            rejections,
            [
                (hex(999), "unknown_meter".to_owned(), 1),
                ("m-003".to_owned(), "replay".to_owned(), 1),
                ("m-004".to_owned(), "nonce_reuse".to_owned(), 1),
                ("m-005".to_owned(), "wrong_key".to_owned(), 1),
            ]
        );
        // Every other frame flowed: 20 readings per meter.
        assert_eq!(
            one(db.query("SELECT count(*) FROM (SELECT meter FROM reading GROUP BY meter HAVING count(*) = 20) x")),
            METERS.to_string()
        );
        assert_eq!(one(db.query(OUT_OF_ORDER)), "0");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_imported_again_is_taken_by_running_workers() {
        logs();
        const METERS: u32 = 3;
        let server = NatsServer::start();
        let db = TestDatabase::create();
        let store = Store::open(&db.store_config()).unwrap();
        let master = fleet_of(METERS, &store);
        // Meter 1 was imported with a wrong key.
        let wrong = MeterKeys {
            name: Some("m-001".to_owned()),
            system_title: title(1),
            key: key(77),
            auth_key: None,
        };
        keys::import(&store, &master, std::slice::from_ref(&wrong)).unwrap();
        let mut publisher = publisher(&server, PublisherConfig::default()).await;
        stream::ensure(publisher.context(), &StreamConfig::default())
            .await
            .unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let config = IngestConfig {
            batch_max: 10,
            keys_refresh: Duration::from_millis(100),
            ..IngestConfig::default()
        };
        let workers = start_workers(1, &server, &store, &master, &config, &stop).await;
        publish_range(&mut publisher, METERS, 0..5).await;
        wait_until("meter 1 set aside, the others stored", || {
            stored(&workers) >= u64::from((METERS - 1) * 5)
                && workers[0].1.rejected_for("wrong_key") >= 5
        })
        .await;
        // The operator imports the right key; the running worker takes it.
        let right = MeterKeys {
            key: key(1),
            ..wrong
        };
        keys::import(&store, &master, std::slice::from_ref(&right)).unwrap();
        // Frames of every meter go on; meter 1's are stored once the worker looked again.
        let meter_1 = "SELECT count(*) FROM reading r JOIN meter m ON m.id = r.meter \
                       WHERE m.name = 'm-001'";
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut next = 5;
        while one(db.query(meter_1)) == "0" {
            assert!(Instant::now() < deadline, "meter 1 not stored after 60 s");
            publish_range(&mut publisher, METERS, next..next + 1).await;
            next += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(workers[0].1.rejected_for("wrong_key") >= 5);
        stop_tx.send(true).unwrap();
        for (worker, _) in workers {
            worker.await.unwrap().unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_postgres_restart_mid_stream_loses_nothing_and_doubles_nothing() {
        use smarty_store::test_postgres::TestServer;
        logs();
        const METERS: u32 = 20;
        let pg = TestServer::start();
        let nats = NatsServer::with_partitions(2);
        let store = Store::open(&pg.store_config()).unwrap();
        let master = fleet_of(METERS, &store);
        let mut publisher = publisher(&nats, PublisherConfig::default()).await;
        stream::ensure(publisher.context(), &StreamConfig::default())
            .await
            .unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let config = IngestConfig {
            partitions: 2,
            batch_max: 40,
            poll: Duration::from_millis(200),
            ..IngestConfig::default()
        };
        let workers = start_workers(2, &nats, &store, &master, &config, &stop).await;
        publish_range(&mut publisher, METERS, 0..10).await;
        wait_until("the first frames stored", || {
            stored(&workers) >= u64::from(METERS * 10)
        })
        .await;
        pg.stop();
        publish_range(&mut publisher, METERS, 10..20).await;
        wait_until("a commit fails, or the database is missed", || {
            sum(&workers, |s| s.failed_commits.load(Ordering::Relaxed)) > 0
                || workers
                    .iter()
                    .any(|(_, s)| !s.database_ok.load(Ordering::Relaxed))
        })
        .await;
        assert!(workers.iter().any(|(_, s)| s.health(&config).is_err()));
        pg.restart();
        // A commit cut by the stop may have committed: its frames come again, and are
        // found stored. What counts is the database.
        let rows = |sql: &str| one(pg.try_query(sql).unwrap_or_default());
        wait_until("every frame stored", || {
            rows("SELECT count(*) FROM reading") == (METERS * 20).to_string()
                && sum(&workers, |s| s.lag.load(Ordering::Relaxed)) == 0
        })
        .await;
        stop_tx.send(true).unwrap();
        let stats: Vec<Arc<IngestStats>> = workers.iter().map(|(_, s)| Arc::clone(s)).collect();
        for (worker, _) in workers {
            worker.await.unwrap().unwrap();
        }
        let total: u64 = stats
            .iter()
            .map(|s| s.stored.load(Ordering::Relaxed) + s.duplicates.load(Ordering::Relaxed))
            .sum();
        assert!(total >= u64::from(METERS * 20), "{stats:?}");
        assert_eq!(
            stats
                .iter()
                .map(|s| s.replays.load(Ordering::Relaxed))
                .sum::<u64>(),
            0
        );
        assert!(stats.iter().all(|s| s.health(&config).is_ok()));
        let rows = pg
            .try_query("SELECT count(*) FROM (SELECT DISTINCT meter, time FROM reading) x")
            .unwrap();
        assert_eq!(one(rows), (METERS * 20).to_string());
        let rows = pg.try_query("SELECT count(*) FROM reading").unwrap();
        assert_eq!(one(rows), (METERS * 20).to_string());
        assert_eq!(one(pg.try_query(OUT_OF_ORDER).unwrap()), "0");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn consumers_made_for_another_number_of_partitions_are_refused() {
        let server = NatsServer::with_partitions(2);
        let db = TestDatabase::create();
        let store = Store::open(&db.store_config()).unwrap();
        let master = fleet_of(1, &store);
        let (_stop_tx, stop) = watch::channel(false);
        // A worker of one partition made its consumer; one of two partitions starts.
        let one = IngestConfig {
            partitions: 1,
            ..IngestConfig::default()
        };
        let (stop_one, stopped) = watch::channel(false);
        let workers = start_workers(1, &server, &store, &master, &one, &stopped).await;
        wait_until("the first worker runs", || {
            workers[0].1.database_ok.load(Ordering::Relaxed)
        })
        .await;
        stop_one.send(true).unwrap();
        for (worker, _) in workers {
            worker.await.unwrap().unwrap();
        }
        let two = IngestConfig {
            partitions: 2,
            ..IngestConfig::default()
        };
        let workers = start_workers(1, &server, &store, &master, &two, &stop).await;
        let (worker, _) = workers.into_iter().next().unwrap();
        let error = worker.await.unwrap().unwrap_err().to_string();
        assert!(error.contains("smarty-ingest-0 (smarty.raw.*)"), "{error}");
        assert!(error.contains("--partitions 2"), "{error}");
        assert!(error.contains("--start-sequence 1"), "{error}");
    }

    /// A consumer made when a partition let out one batch at most is given room for two (one
    /// committing while the next is decoded), its position kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_consumer_of_an_earlier_version_is_given_room_for_two_batches() {
        let server = NatsServer::start();
        let db = TestDatabase::create();
        let store = Store::open(&db.store_config()).unwrap();
        let master = fleet_of(1, &store);
        crate::test_nats::create_stream(&server.url()).await;
        let js = super::context(&server).await;
        let stream = js.get_stream("SMARTY_RAW").await.unwrap();
        let config = IngestConfig {
            batch_max: 300,
            ..IngestConfig::default()
        };
        stream
            .create_consumer(async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("smarty-ingest-0".to_owned()),
                ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                max_ack_pending: 300,
                filter_subject: crate::subject::unmapped_filter(),
                ..Default::default()
            })
            .await
            .unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let workers = start_workers(1, &server, &store, &master, &config, &stop).await;
        wait_until("the worker runs", || {
            workers[0].1.database_ok.load(Ordering::Relaxed)
        })
        .await;
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer("smarty-ingest-0").await.unwrap();
        let info = consumer.info().await.unwrap();
        assert_eq!(info.config.max_ack_pending, 600);
        assert_eq!(
            info.config.filter_subject,
            crate::subject::unmapped_filter()
        );
        stop_tx.send(true).unwrap();
        for (worker, _) in workers {
            worker.await.unwrap().unwrap();
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
