//! End to end: `smarty import` says when a capture lies in the future (a simulated capture
//! made without `--start` begins now and runs ahead of the clock), and the README's example of
//! a simulated day puts it in the past.

use std::path::Path;

use crate::support::{quiet_smarty, run_ok};

const KEY: &str = "000102030405060708090A0B0C0D0E0F";

/// Simulates 100 frames 10 s apart (from `start`, else now) and imports them: import's stderr.
fn import(dir: &Path, name: &str, start: Option<&str>) -> String {
    let capture = dir.join(format!("{name}.bin"));
    let mut simulate = quiet_smarty();
    simulate
        .args(["simulate", "--count", "100", "--key", KEY, "-o"])
        .arg(&capture);
    if let Some(start) = start {
        simulate.args(["--start", start]);
    }
    run_ok(&mut simulate);
    let output = run_ok(
        quiet_smarty()
            .arg("import")
            .arg(&capture)
            .args(["--key", KEY, "--quiet", "--db"])
            .arg(dir.join(format!("{name}.db"))),
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn import_warns_about_readings_in_the_future() {
    let dir = tempfile::tempdir().unwrap();
    // From now, 990 s ahead: the readings past the tolerance (5 minutes) are in the future.
    let stderr = import(dir.path(), "now", None);
    let warning = stderr
        .lines()
        .find(|line| line.contains("in the future"))
        .unwrap_or_else(|| panic!("no warning about the future: {stderr}"));
    let count: u64 = warning
        .split_whitespace()
        .find_map(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("no count: {warning}"));
    assert!((1..=100).contains(&count), "{count} of 100: {warning}");
    assert!(warning.contains("--start"), "no way out: {warning}");
    assert!(stderr.contains("100 telegrams imported"), "{stderr}");
    // From yesterday: nothing to say.
    let yesterday = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24)).as_second();
    let stderr = import(dir.path(), "past", Some(&yesterday.to_string()));
    assert!(!stderr.contains("future"), "{stderr}");
}

#[test]
fn the_readme_simulates_a_day_in_the_past() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("the README");
    let lines: Vec<&str> = readme
        .lines()
        .filter(|line| line.contains("smarty simulate") && line.contains("--count"))
        .collect();
    assert!(!lines.is_empty(), "no simulated capture in the README");
    for line in lines {
        assert!(
            line.contains("--start"),
            "a capture that starts now runs into the future: {line}"
        );
    }
}
