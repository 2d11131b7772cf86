//! End to end: the `smarty` binary, a virtual meter on a real pseudo-terminal and on TCP,
//! files, stdin, formats, key errors.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Guard, KEY, run_with_timeout, smarty};

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Starts `smarty simulate` and returns it with the first line it prints on stderr.
fn simulate(args: &[&str]) -> (Guard, String) {
    let mut child = smarty()
        .arg("simulate")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start simulator");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    // Keep draining stderr so the simulator never blocks on it.
    std::thread::spawn(move || for _ in stderr.lines() {});
    (Guard::from(child), first)
}

fn wait_for(path: &Path) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_sequence(telegrams: &[serde_json::Value]) {
    for pair in telegrams.windows(2) {
        let a = pair[0]["frame_counter"].as_u64().unwrap();
        let b = pair[1]["frame_counter"].as_u64().unwrap();
        assert!(b > a, "frame counters go up: {a} then {b}");
    }
    for t in telegrams {
        assert_eq!(t["authenticated"], true);
        assert_eq!(t["crc"], "ok");
        assert_eq!(t["version"], "42");
        assert!(t["meter_id"].as_str().unwrap().starts_with("SAG"));
        let energy = &t["objects"]["1-0:1.8.0"];
        assert_eq!(energy["name"], "energy_import_kwh");
        assert_eq!(energy["unit"], "kWh");
        assert!(energy["value"].as_f64().unwrap() > 0.0);
        assert_eq!(t["unknown_lines"], serde_json::json!([]));
    }
}

#[test]
fn simulator_on_a_pty_is_read_like_a_serial_device() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("p1");
    let link_s = link.to_str().unwrap();
    let (_sim, banner) = simulate(&[
        "--link",
        link_s,
        "--key",
        KEY,
        "--interval",
        "200ms",
        "--gas",
    ]);
    assert!(banner.contains("sending encrypted frames"), "{banner}");
    wait_for(&link);
    let mut read = smarty();
    read.args([
        "read", link_s, "--key", KEY, "--format", "json", "--count", "3",
    ]);
    let output = run_with_timeout(read, Duration::from_secs(20));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let telegrams = json_lines(&output);
    assert_eq!(telegrams.len(), 3);
    check_sequence(&telegrams);
    let gas = &telegrams[0]["objects"]["0-1:24.2.1"];
    assert_eq!(gas["name"], "mbus1_gas_m3");
    assert_eq!(gas["unit"], "m3");
    assert!(gas["timestamp"].as_str().is_some());
}

#[test]
fn simulator_on_tcp_is_read_like_ser2net() {
    let (_sim, banner) = simulate(&[
        "--listen",
        "127.0.0.1:0",
        "--key",
        KEY,
        "--interval",
        "200ms",
    ]);
    let address = banner
        .split_whitespace()
        .find_map(|w| w.strip_prefix("tcp://"))
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .to_owned();
    let mut read = smarty();
    read.args([
        "read",
        &format!("tcp://{address}"),
        "--key",
        KEY,
        "--format",
        "json",
        "--count",
        "2",
    ]);
    let output = run_with_timeout(read, Duration::from_secs(20));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    check_sequence(&json_lines(&output));
}

/// A capture of several read blocks (1 MiB each), frames cut at every block's end, is read
/// whole, from a file and from standard input.
#[test]
fn a_capture_larger_than_a_read_block_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.bin");
    let capture_s = capture.to_str().unwrap();
    let mut sim = smarty();
    sim.args([
        "simulate", "--output", capture_s, "--count", "3000", "--fast", "--key", KEY,
    ]);
    let output = run_with_timeout(sim, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let size = std::fs::metadata(&capture).unwrap().len();
    assert!(size > 3 << 20, "{size} bytes: not several blocks");
    let expected = "3000 frames, 0 plaintext telegrams, 3000 telegrams accepted, none rejected";
    let mut read = smarty();
    read.args(["read", capture_s, "--key", KEY, "--quiet"]);
    let output = run_with_timeout(read, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.contains(expected),
        "{stderr}"
    );
    // Standard input from the file (the helper's own standard input is empty).
    let mut read = Command::new("sh");
    read.env("RUST_LOG", "smarty=info").args([
        "-c",
        &format!(
            "exec '{}' read - --key {KEY} --quiet < '{capture_s}'",
            env!("CARGO_BIN_EXE_smarty")
        ),
    ]);
    let output = run_with_timeout(read, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.contains(expected),
        "{stderr}"
    );
}

#[test]
fn a_file_is_read_to_its_end_and_summarised() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.bin");
    let capture_s = capture.to_str().unwrap();
    let mut sim = smarty();
    sim.args([
        "simulate", "--output", capture_s, "--count", "30", "--key", KEY, "--water",
    ]);
    let output = run_with_timeout(sim, Duration::from_secs(20));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut read = smarty();
    read.args(["read", capture_s, "--key", KEY, "--format", "json"]);
    let output = run_with_timeout(read, Duration::from_secs(20));
    assert!(output.status.success());
    let telegrams = json_lines(&output);
    assert_eq!(telegrams.len(), 30);
    check_sequence(&telegrams);
    // Counters grow with the power drawn, 10 s apart.
    let first = telegrams[0]["objects"]["1-0:1.8.0"]["value"]
        .as_f64()
        .unwrap();
    let last = telegrams[29]["objects"]["1-0:1.8.0"]["value"]
        .as_f64()
        .unwrap();
    assert!(last >= first);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("30 frames, 0 plaintext telegrams, 30 telegrams accepted, none rejected"),
        "{stderr}"
    );

    // Text output names every value with its unit.
    let mut read = smarty();
    read.args(["read", capture_s, "--key", KEY]);
    let output = run_with_timeout(read, Duration::from_secs(20));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("energy_import_kwh"), "{text}");
    assert!(text.contains(" kWh"), "{text}");
    assert!(text.contains("mbus2_water_m3"), "{text}");
    assert!(text.contains("(tag verified)"), "{text}");

    // --format dsmr: the decrypted telegrams, byte-exact, CRC valid.
    let mut read = smarty();
    read.args(["read", capture_s, "--key", KEY, "--format", "dsmr"]);
    let output = run_with_timeout(read, Duration::from_secs(20));
    let plain = output.stdout;
    assert_eq!(plain.iter().filter(|&&b| b == b'!').count(), 30);
    let first_end = plain
        .windows(2)
        .position(|w| w == b"\r\n/")
        .map_or(plain.len(), |p| p + 2);
    smarty_p1::parse(&plain[..first_end]).expect("a valid plain telegram");

    // --format raw without a key: every frame as one hex line, nothing rejected.
    let mut read = smarty();
    read.args(["read", capture_s, "--format", "raw"]);
    let output = run_with_timeout(read, Duration::from_secs(20));
    let lines: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 30);
    let bytes = std::fs::read(&capture).unwrap();
    let joined = smarty_p1::hex::decode(&lines.concat()).unwrap();
    assert_eq!(joined, bytes, "raw lines are the frames, in order");
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("30 frames and 0 plaintext telegrams forwarded")
    );

    // The hex capture is read back where the key is (offline decryption).
    let hex_capture = dir.path().join("frames.hex");
    std::fs::write(&hex_capture, lines.join("\n") + "\n").unwrap();
    let mut read = smarty();
    read.args([
        "read",
        hex_capture.to_str().unwrap(),
        "--key",
        KEY,
        "--format",
        "json",
    ]);
    let output = run_with_timeout(read, Duration::from_secs(20));
    assert!(output.status.success());
    assert_eq!(
        json_lines(&output),
        telegrams,
        "same telegrams from the hex capture"
    );
}

#[test]
fn stdin_and_plaintext_meters() {
    let mut sim = smarty();
    sim.args([
        "simulate", "--output", "-", "--count", "5", "--plain", "--fast",
    ]);
    let output = run_with_timeout(sim, Duration::from_secs(20));
    assert!(output.status.success());
    let mut read = smarty()
        .args(["read", "-", "--format", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    read.stdin
        .take()
        .unwrap()
        .write_all(&output.stdout)
        .unwrap();
    let result = read.wait_with_output().unwrap();
    assert!(result.status.success());
    let telegrams = json_lines(&result);
    assert_eq!(telegrams.len(), 5);
    for t in &telegrams {
        assert_eq!(t["system_title"], serde_json::Value::Null);
        assert_eq!(t["authenticated"], serde_json::Value::Null);
        assert_eq!(t["crc"], "ok");
    }
}

#[test]
fn wrong_keys_are_named_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.bin");
    let capture_s = capture.to_str().unwrap();
    let mut sim = smarty();
    sim.args([
        "simulate", "--output", capture_s, "--count", "3", "--key", KEY,
    ]);
    assert!(
        run_with_timeout(sim, Duration::from_secs(20))
            .status
            .success()
    );

    // A different key: "wrong key", counted; the key is not printed.
    let other = "F0E0D0C0B0A090807060504030201000";
    let mut read = smarty();
    read.args(["read", capture_s, "--format", "json"])
        .env("SMARTY_KEY", other);
    let output = run_with_timeout(read, Duration::from_secs(20));
    // No telegram at all: an error naming the likely cause (the module read has more).
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("wrong key"), "{stderr}");
    assert!(stderr.contains("rejected: 3 wrong_key"), "{stderr}");
    assert!(
        !stderr.contains(other) && !stderr.contains(&other.to_lowercase()),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());

    // The right key but another authentication key: the message names the option.
    let mut read = smarty();
    read.args(["read", capture_s, "--key-file", "/dev/null"]);
    let output = run_with_timeout(read, Duration::from_secs(20));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("a key is 32 hex digits"));

    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let mut read = smarty();
    read.args([
        "read",
        capture_s,
        "--key-file",
        key_file.to_str().unwrap(),
        "--auth-key",
        "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
    ]);
    let output = run_with_timeout(read, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("authentication failed: the key is right"),
        "{stderr}"
    );
    assert!(stderr.contains("drop --auth-key/--aad"), "{stderr}");
    assert!(!stderr.contains(KEY), "{stderr}");

    // Tolerant mode accepts them, marked unauthenticated.
    let mut read = smarty();
    read.args([
        "read",
        capture_s,
        "--key",
        KEY,
        "--auth-key",
        "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
        "--no-verify-tag",
        "--format",
        "json",
    ]);
    let output = run_with_timeout(read, Duration::from_secs(20));
    let telegrams = json_lines(&output);
    assert_eq!(telegrams.len(), 3);
    assert!(telegrams.iter().all(|t| t["authenticated"] == false));

    // Bad key text: what is wrong, never the key.
    let mut read = smarty();
    read.args([
        "read",
        capture_s,
        "--key",
        "000102030405060708090A0B0C0D0E0X",
    ]);
    let output = run_with_timeout(read, Duration::from_secs(20));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("found 'X' at position 32"), "{stderr}");
    assert!(!stderr.contains("000102030405"), "{stderr}");
}

#[test]
fn replayed_frames_are_rejected_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.bin");
    let capture_s = capture.to_str().unwrap();
    let mut sim = smarty();
    sim.args([
        "simulate", "--output", capture_s, "--count", "4", "--key", KEY,
    ]);
    assert!(
        run_with_timeout(sim, Duration::from_secs(20))
            .status
            .success()
    );
    let mut twice = std::fs::read(&capture).unwrap();
    twice.extend(twice.clone());
    std::fs::write(&capture, twice).unwrap();
    let mut read = smarty();
    read.args([
        "read",
        capture_s,
        "--key",
        KEY,
        "--reject-replay",
        "--quiet",
    ]);
    let output = run_with_timeout(read, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("4 telegrams accepted, rejected: 4 replay"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "--quiet prints no telegram");
}

#[test]
fn demo_shows_the_main_job() {
    let state = tempfile::tempdir().unwrap();
    let mut demo = smarty();
    demo.args([
        "demo",
        "--interval",
        "300ms",
        "--count",
        "2",
        "--history-days",
        "1",
    ])
    .args(["--http", "127.0.0.1:0", "--state-dir"])
    .arg(state.path());
    let output = run_with_timeout(demo, Duration::from_secs(30));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(text.matches("(tag verified)").count(), 2, "{text}");
    assert!(text.contains("mbus1_gas_m3"), "{text}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("smarty read /dev/pts/"), "{stderr}");
    assert!(
        stderr.contains("2 telegrams accepted, none rejected"),
        "{stderr}"
    );
    // One day of history is within the last two days: a telegram every 10 s.
    assert!(
        stderr.contains("1 day of history (8640 telegrams)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("dashboard on http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(state.path().join("smarty.db").exists());
}

#[test]
fn help_teaches() {
    let output = smarty().args(["read", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "tcp://HOST:PORT",
        "--key-file",
        "SMARTY_KEY",
        "--format",
        "Examples",
    ] {
        assert!(help.contains(needle), "read --help lacks {needle}");
    }
}

#[test]
fn config_example_checks_and_mistakes_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let example = smarty().args(["config", "example"]).output().unwrap();
    assert!(example.status.success());
    let path = dir.path().join("smarty.toml");
    std::fs::write(&path, &example.stdout).unwrap();
    let check = smarty()
        .args(["config", "check", path.to_str().unwrap()])
        .env("SMARTY_STATE_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let summary = String::from_utf8_lossy(&check.stdout);
    assert!(summary.contains("ok, 1 meter, mqtt"), "{summary}");
    assert!(
        summary.contains("dashboard on http://127.0.0.1:8080/"),
        "{summary}"
    );
    let db = dir.path().join("smarty.db");
    assert!(
        summary.contains(&format!("history in {}", db.display())),
        "{summary}"
    );
    assert!(!db.exists(), "config check creates nothing");

    // A web server beyond loopback without a token is refused, naming the setting.
    std::fs::write(
        &path,
        "[[meter]]\nname = \"home\"\nsource = \"/dev/ttyUSB0\"\n[http]\nlisten = \"0.0.0.0:8080\"\n",
    )
    .unwrap();
    let check = smarty()
        .args(["config", "check", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stderr).contains("token_file"));

    std::fs::write(
        &path,
        "[[meter]]\nname = \"home\"\nsorce = \"/dev/ttyUSB0\"\n",
    )
    .unwrap();
    let check = smarty()
        .args(["config", "check", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("smarty.toml:3:1: unknown field `sorce`"),
        "{stderr}"
    );
}

/// A telegram whose CRC line was damaged on the line (`!q0F6` instead of `!80F6`) is a CRC
/// error, never a telegram "without CRC": only the intact copy comes out, and the summary
/// counts no noise.
#[test]
fn a_damaged_crc_line_is_a_crc_error() {
    let good = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../smarty-p1/tests/data/telegrams/meterlogger_lux5_253663629_d_2026.txt"
    ));
    let bang = good.iter().rposition(|&b| b == b'!').unwrap();
    let mut damaged = good.to_vec();
    damaged[bang + 1] = b'q';
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("capture.txt");
    std::fs::write(&file, [&damaged[..], &good[..]].concat()).unwrap();
    let mut read = smarty();
    read.arg("read").arg(&file).args(["--format", "json"]);
    let output = run_with_timeout(read, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let telegrams = json_lines(&output);
    assert_eq!(telegrams.len(), 1, "{stderr}");
    assert_eq!(telegrams[0]["crc"], "ok");
    assert_eq!(telegrams[0]["meter_id"], "SAG1030700012701");
    assert!(stderr.contains("damaged CRC line"), "{stderr}");
    assert!(stderr.contains("crc"), "{stderr}");
    // Its bytes are the rejected telegram's, not noise.
    assert!(!stderr.contains("noise"), "{stderr}");
}
