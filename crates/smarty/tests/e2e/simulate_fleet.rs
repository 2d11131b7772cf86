//! End to end: `smarty simulate --meters N --keys-out FILE` and `smarty simulate --keys FILE
//! --nats URL | --mqtt URL` against a real `nats-server` (JetStream and its MQTT listener,
//! [`smarty_fleet::test_nats`]): every meter's frames on its subject, with its message id,
//! encrypted with its key; frame counters, telegram times and energy registers advancing
//! across runs, also after a killed run.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use smarty_fleet::keys_csv::{self, MeterKeys};
use smarty_fleet::subject;
use smarty_fleet::test_nats::{NatsServer, Stored, block_on, create_stream, message_count, stored};
use smarty_p1::{Aad, Decryptor, EncryptedFrame};

use super::support::{Guard, tail};

fn smarty(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smarty"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `smarty args…` and fails with its output unless it succeeds.
fn smarty_ok(args: &[&str]) -> String {
    let out = smarty(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "smarty {args:?}: {stderr}");
    stderr
}

/// `smarty simulate --meters n --keys-out DIR/fleet.csv`, read back.
fn make_fleet(dir: &Path, n: u32) -> (String, Vec<MeterKeys>) {
    let path = dir.join("fleet.csv");
    let path_s = path.to_str().unwrap().to_owned();
    smarty_ok(&[
        "simulate",
        "--meters",
        &n.to_string(),
        "--keys-out",
        &path_s,
    ]);
    let keys = keys_csv::read_file(&path).unwrap();
    (path_s, keys)
}

/// One stored frame, checked and opened: decrypted with its meter's key (the tag verified),
/// its subject and message id those of the frame's system title and counter.
#[derive(Debug)]
struct Opened {
    title: [u8; 8],
    counter: u32,
    telegram_time: i64,
    import_kwh: f64,
}

fn open(stored: &Stored, keys: &[MeterKeys], with_ids: bool) -> Opened {
    let frame = EncryptedFrame::parse(&stored.payload).expect("a raw encrypted frame");
    let title = frame.system_title();
    let counter = frame.frame_counter();
    assert_eq!(stored.subject, subject::raw(&title));
    if with_ids {
        assert_eq!(
            stored.message_id.as_deref(),
            Some(subject::message_id(&title, counter).as_str())
        );
    }
    let meter = keys
        .iter()
        .find(|k| k.system_title == title)
        .expect("a meter of the keys file");
    let mut plaintext = Vec::new();
    Decryptor::new(&meter.key, Aad::default(), true)
        .decrypt(&frame, &mut plaintext)
        .expect("decrypts with its meter's key, tag verified");
    let telegram = smarty_p1::parse(&plaintext).expect("a telegram");
    let readings = telegram.readings();
    Opened {
        title,
        counter,
        telegram_time: readings
            .timestamp
            .and_then(|t| t.unix_seconds())
            .expect("a telegram time"),
        import_kwh: readings
            .energy_import_kwh
            .expect("an import register")
            .to_f64(),
    }
}

/// Per meter, its frames in stream order: each one's counter, time and import register
/// strictly or weakly increasing as they must.
fn assert_advancing(frames: &[Opened]) -> BTreeMap<[u8; 8], Vec<&Opened>> {
    let mut by_meter: BTreeMap<[u8; 8], Vec<&Opened>> = BTreeMap::new();
    for f in frames {
        by_meter.entry(f.title).or_default().push(f);
    }
    for (title, frames) in &by_meter {
        for pair in frames.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!(
                a.counter < b.counter,
                "{title:?}: counter {} then {}",
                a.counter,
                b.counter
            );
            assert!(
                a.telegram_time < b.telegram_time,
                "{title:?}: time {} then {}",
                a.telegram_time,
                b.telegram_time
            );
            assert!(
                a.import_kwh <= b.import_kwh,
                "{title:?}: import {} then {}",
                a.import_kwh,
                b.import_kwh
            );
        }
    }
    by_meter
}

#[test]
fn the_keys_file_of_a_new_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let (path, keys) = make_fleet(dir.path(), 20);
    assert_eq!(keys.len(), 20);
    let names: Vec<String> = keys.iter().map(MeterKeys::name).collect();
    assert_eq!(names[0], "meter-0001");
    assert_eq!(names[19], "meter-0020");
    let titles: HashSet<[u8; 8]> = keys.iter().map(|k| k.system_title).collect();
    let secret: HashSet<[u8; 16]> = keys.iter().map(|k| *k.key.as_bytes()).collect();
    assert_eq!(
        (titles.len(), secret.len()),
        (20, 20),
        "each its own title and key"
    );
    assert!(keys.iter().all(|k| k.auth_key.is_none()));
    assert!(keys.iter().all(|k| k.system_title.starts_with(b"SAG")));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("name,system_title,key,auth_key\r\n"),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the keys are its owner's only");
    // Never overwritten.
    let again = smarty(&["simulate", "--meters", "3", "--keys-out", &path]);
    assert!(!again.status.success());
    assert_eq!(keys_csv::read_file(Path::new(&path)).unwrap(), keys);
}

#[test]
fn a_fleet_on_nats_every_frame_once_advancing_across_runs() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (keys_path, keys) = make_fleet(dir.path(), 20);
    let url = server.url();
    let log = smarty_ok(&[
        "simulate", "--keys", &keys_path, "--nats", &url, "--count", "10", "--fast",
    ]);
    assert!(log.contains("200 frames sent"), "{log}");
    let first = block_on(stored(&url, "SMARTY_RAW"));
    assert_eq!(first.len(), 200);
    let frames: Vec<Opened> = first.iter().map(|s| open(s, &keys, true)).collect();
    let by_meter = assert_advancing(&frames);
    assert_eq!(by_meter.len(), 20);
    assert!(by_meter.values().all(|f| f.len() == 10));
    // Within a run, the meters tick together, 10 s apart.
    let ticks: HashSet<i64> = frames.iter().map(|f| f.telegram_time).collect();
    assert_eq!(ticks.len(), 10);

    // A second run goes on after the first, though the first ran ahead of the clock.
    let log = smarty_ok(&[
        "simulate", "--keys", &keys_path, "--nats", &url, "--count", "5", "--fast",
    ]);
    assert!(log.contains("20 meters continue the last run"), "{log}");
    let all = block_on(stored(&url, "SMARTY_RAW"));
    assert_eq!(all.len(), 300);
    let frames: Vec<Opened> = all.iter().map(|s| open(s, &keys, true)).collect();
    assert_advancing(&frames);

    // A run killed mid-way, then another: still every counter, time and register advancing.
    let log_path = dir.path().join("killed.log");
    let mut killed = Guard::from(
        Command::new(env!("CARGO_BIN_EXE_smarty"))
            .args([
                "simulate",
                "--keys",
                &keys_path,
                "--nats",
                &url,
                "--interval",
                "1",
            ])
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while block_on(message_count(&url, "SMARTY_RAW")) < 340 {
        assert!(
            killed.child.try_wait().unwrap().is_none(),
            "{}",
            tail(&log_path)
        );
        assert!(Instant::now() < deadline, "{}", tail(&log_path));
        std::thread::sleep(Duration::from_millis(50));
    }
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    smarty_ok(&[
        "simulate", "--keys", &keys_path, "--nats", &url, "--count", "2", "--fast",
    ]);
    let all = block_on(stored(&url, "SMARTY_RAW"));
    let frames: Vec<Opened> = all.iter().map(|s| open(s, &keys, true)).collect();
    assert_advancing(&frames);
    let ids: HashSet<&str> = all.iter().filter_map(|s| s.message_id.as_deref()).collect();
    assert_eq!(ids.len(), all.len(), "no message id twice");
}

#[test]
fn a_fleet_through_the_mqtt_listener_lands_on_the_same_subjects() {
    let server = NatsServer::with_mqtt();
    block_on(create_stream(&server.url()));
    let dir = tempfile::tempdir().unwrap();
    let (keys_path, keys) = make_fleet(dir.path(), 20);
    let log = smarty_ok(&[
        "simulate",
        "--keys",
        &keys_path,
        "--mqtt",
        &server.mqtt_url(),
        "--count",
        "10",
        "--fast",
    ]);
    assert!(log.contains("200 frames sent"), "{log}");
    let stored = block_on(stored(&server.url(), "SMARTY_RAW"));
    assert_eq!(stored.len(), 200);
    // Subjects smarty.raw.<title> of each frame's own title (no message ids over MQTT).
    let frames: Vec<Opened> = stored.iter().map(|s| open(s, &keys, false)).collect();
    let by_meter = assert_advancing(&frames);
    assert_eq!(by_meter.len(), 20);
    assert!(by_meter.values().all(|f| f.len() == 10));
}

#[test]
fn fleet_options_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (keys_path, _) = make_fleet(dir.path(), 2);
    for (args, expected) in [
        (vec!["--keys", &keys_path], "--nats"),
        (
            vec![
                "--keys",
                &keys_path,
                "--nats",
                "nats://127.0.0.1:1",
                "--interval",
                "0.5",
            ],
            "at most once a second",
        ),
        (
            vec![
                "--keys",
                &keys_path,
                "--nats",
                "nats://127.0.0.1:1",
                "--key",
                "00",
            ],
            "--key",
        ),
        (vec!["--meters", "3"], "--keys-out"),
        (
            vec![
                "--keys",
                "/nonexistent/fleet.csv",
                "--mqtt",
                "mqtt://127.0.0.1:1",
            ],
            "/nonexistent/fleet.csv",
        ),
    ] {
        let out = smarty(&[&["simulate"][..], &args].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
