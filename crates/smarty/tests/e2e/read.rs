//! End to end: what `smarty read` says and how it exits when nothing decrypts, and every
//! command writing to a pipe whose reader went away (`smarty … | head`).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Guard, KEY, smarty};

/// Another key than the one the frames were encrypted with.
const OTHER_KEY: &str = "F0E0D0C0B0A090807060504030201000";

/// Waits at most 30 s for the child; its standard error, read to the end.
fn finish(mut guard: Guard) -> (ExitStatus, String) {
    let stderr = guard.child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = guard.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "smarty did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = stderr.map(|t| t.join().unwrap()).unwrap_or_default();
    (status, stderr)
}

/// `count` frames of the virtual meter, encrypted with [`KEY`], in a file of `dir`.
fn capture(dir: &Path, count: u32) -> PathBuf {
    let file = dir.join(format!("capture-{count}.bin"));
    let status = smarty()
        .args(["simulate", "--output", file.to_str().unwrap(), "--fast"])
        .args(["--count", &count.to_string(), "--key", KEY, "--gas"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    file
}

fn read_file(file: &Path, args: &[&str]) -> (ExitStatus, String) {
    let child = smarty()
        .arg("read")
        .arg(file)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(Guard::from(child))
}

#[test]
fn a_file_where_every_frame_is_rejected_fails_naming_the_likely_cause() {
    let dir = tempfile::tempdir().unwrap();
    let file = capture(dir.path(), 20);

    // The wrong key: one warning with the count, a summary naming the key, exit 1.
    let (status, stderr) = read_file(&file, &["--key", OTHER_KEY]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "one warning per reason: {stderr}");
    assert!(
        warnings[0].contains("20") && warnings[0].contains("wrong key"),
        "{stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("no telegram"), "{stderr}");
    assert!(
        last.contains("decryption key"),
        "the likely cause: {stderr}"
    );
    assert!(!stderr.contains(OTHER_KEY), "{stderr}");

    // The right key and the wrong authentication key: the summary names that one.
    let (status, stderr) = read_file(
        &file,
        &[
            "--key",
            KEY,
            "--auth-key",
            "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
        ],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.contains("WARN")).count(),
        1,
        "{stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("authentication key"), "{stderr}");

    // Not a capture at all: no telegram either.
    let noise = dir.path().join("noise.bin");
    std::fs::write(&noise, vec![0x55u8; 4096]).unwrap();
    let (status, stderr) = read_file(&noise, &["--key", KEY]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no telegram"), "{stderr}");

    // The right key: exit 0, no warning.
    let (status, stderr) = read_file(&file, &["--key", KEY]);
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("WARN"), "{stderr}");
}

/// Every command that writes to standard output, its reader gone before it writes (`| head`
/// that already exited): no panic, no error, exit 0.
#[test]
fn every_command_stops_quietly_when_its_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let file = capture(dir.path(), 200);
    let file_s = file.to_str().unwrap();
    let db = dir.path().join("history.db");
    let db_s = db.to_str().unwrap();
    let import = smarty()
        .args(["import", file_s, "--db", db_s, "--key", KEY, "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(import.success());
    let commands: &[&[&str]] = &[
        &["read", file_s, "--key", KEY],
        &["read", file_s, "--key", KEY, "--format", "json"],
        &["read", file_s, "--key", KEY, "--format", "dsmr"],
        &["read", file_s, "--format", "raw"],
        &["simulate", "--output", "-", "--fast", "--count", "100000"],
        &["config", "example"],
        &["export", "--db", db_s, "--resolution", "raw"],
        &["export", "--db", db_s, "--format", "json"],
    ];
    for args in commands {
        let mut child = smarty()
            .args(*args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let (status, stderr) = finish(Guard::from(child));
        assert_eq!(status.code(), Some(0), "smarty {args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.to_lowercase().contains("broken pipe"),
            "smarty {args:?}: {stderr}"
        );
    }

    // Like `| head -n 3`: the reader takes a few lines, then goes.
    let mut child = smarty()
        .args(["read", file_s, "--key", KEY, "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .take(3)
        .map(Result::unwrap)
        .collect();
    assert_eq!(lines.len(), 3);
    let (status, stderr) = finish(Guard::from(child));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Standard error gone (`2>&-` through a pipe): the summary is skipped, the exit is clean.
    let mut child = smarty()
        .args(["read", file_s, "--key", OTHER_KEY])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let (status, _) = finish(Guard::from(child));
    assert_eq!(status.code(), Some(1), "no telegram, but no panic (101)");
}

/// The decoder's layout (a telegram with the shape of the one before takes its objects from
/// that one's) against reading every line: the same telegrams, objects, values and unknown
/// lines for the virtual meter of every firmware, with and without M-Bus meters, over a
/// simulated day in which the values change from telegram to telegram.
#[test]
fn telegrams_of_every_firmware_decode_the_same_with_and_without_the_layout() {
    use smarty_p1::{Decoder, DecoderConfig};
    let dir = tempfile::tempdir().unwrap();
    for firmware in ["full", "basic", "early"] {
        for mbus in [&[][..], &["--gas", "--water"][..]] {
            let file = dir.path().join(format!("{firmware}-{}.txt", mbus.len()));
            let status = smarty()
                .args(["simulate", "--plain", "--fast", "--count", "300"])
                .args(["--firmware", firmware, "--output", file.to_str().unwrap()])
                .args(mbus)
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
            let bytes = std::fs::read(&file).unwrap();
            let decode = |reuse_layout: bool| {
                let mut decoder =
                    Decoder::new(DecoderConfig::default().with_reuse_layout(reuse_layout));
                let mut telegrams = Vec::new();
                decoder.push(&bytes);
                // All the bytes are there: `finish` yields every telegram, the last one too.
                while let Some(result) = decoder.finish() {
                    let decoded = result.expect("a simulated telegram decodes");
                    let telegram = &decoded.telegram;
                    let values: Vec<_> = telegram.objects().iter().map(|o| o.value()).collect();
                    telegrams.push(format!(
                        "{telegram:?}\n{values:?}\n{:?}\n{:?}",
                        telegram.unknown_lines(),
                        telegram.readings()
                    ));
                }
                (telegrams, decoder.stats().from_layout)
            };
            let (with, from_layout) = decode(true);
            let (without, none) = decode(false);
            assert_eq!(with.len(), 300, "{firmware} {mbus:?}");
            assert_eq!(none, 0);
            for (i, (a, b)) in with.iter().zip(&without).enumerate() {
                assert_eq!(a, b, "{firmware} {mbus:?}: telegram {i}");
            }
            // The values change, the lines stay: most telegrams come from the layout.
            assert!(
                from_layout > 200,
                "{firmware} {mbus:?}: {from_layout} of 300 from the layout"
            );
        }
    }
}
