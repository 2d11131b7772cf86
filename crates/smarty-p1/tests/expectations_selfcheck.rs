//! Self-check of the corpus expectation loader (`support/expectations.rs`): every normalised
//! check must be consistent with the telegram bytes it is about. Runs over `tests/data` and,
//! when `SMARTY_CORPUS` is set, that folder too. (`examples/dump_expectations.rs` prints
//! the expectations.)

#[path = "support/data.rs"]
mod data;
#[path = "support/expectations.rs"]
mod expectations;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn expected_files(dir: &Path) -> Vec<PathBuf> {
    data::files(dir, "telegrams", ".expected.json")
}

#[test]
fn corpus_expectations_are_consistent_with_telegrams() {
    for dir in data::dirs() {
        let problems = expectations::self_check(&dir);
        for p in &problems {
            eprintln!("PROBLEM: {p}");
        }
        assert!(
            problems.is_empty(),
            "{}: {} self-check problems",
            dir.display(),
            problems.len()
        );
    }
}

#[test]
fn corpus_expectations_are_numerous() {
    // The repository's data holds about 1,400 checks from about 55 files; the folder named by
    // SMARTY_CORPUS only has to contribute some.
    for dir in data::dirs() {
        let (total, files_with_checks) = count_expectations(&dir);
        let (least_checks, least_files) = if data::is_repo_dir(&dir) {
            (1000, 45)
        } else {
            (1, 1)
        };
        assert!(
            total >= least_checks,
            "{}: only {total} checks",
            dir.display()
        );
        assert!(
            files_with_checks >= least_files,
            "{}: only {files_with_checks} files contribute checks",
            dir.display()
        );
    }
}

fn count_expectations(dir: &Path) -> (usize, usize) {
    let mut total = 0;
    let mut files_with_checks = 0;
    let mut per_source: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for path in expected_files(dir) {
        let e = expectations::load(&path);
        println!(
            "{:<75} checks={:>4} raw_lines={:>3} unparsed={:>3} crc_valid={:<11} header={:?}",
            e.file,
            e.checks.len(),
            e.raw_lines.len(),
            e.unparsed.len(),
            format!("{:?}", e.crc_valid),
            e.header
        );
        let source = if e.file.starts_with("dsmr_parser") {
            "dsmr_parser".to_string()
        } else {
            e.file.split('_').next().unwrap_or("?").to_string()
        };
        let s = per_source.entry(source).or_default();
        s.0 += e.checks.len();
        s.1 += e.raw_lines.len();
        s.2 += e.unparsed.len();
        total += e.checks.len();
        if !e.checks.is_empty() {
            files_with_checks += 1;
        }
    }
    for (source, (checks, raw, unparsed)) in &per_source {
        println!(
            "source {source:<12} checks={checks:>5} raw_lines={raw:>4} unparsed={unparsed:>4}"
        );
    }
    println!(
        "{}: total checks = {total}, files with checks = {files_with_checks}",
        dir.display()
    );
    (total, files_with_checks)
}

#[test]
fn helpers() {
    use expectations::{canonical_decimal, same_instant};
    assert_eq!(canonical_decimal("000004.426"), "4.426");
    assert_eq!(canonical_decimal("0.000"), "0");
    assert_eq!(canonical_decimal("00"), "0");
    assert_eq!(canonical_decimal("2.40"), "2.4");
    assert_eq!(canonical_decimal("-040"), "-40");
    assert_eq!(canonical_decimal("-0.0"), "0");
    assert_eq!(canonical_decimal("230."), "230");
    assert_eq!(canonical_decimal(".5"), "0.5");
    assert_eq!(canonical_decimal("1e3"), "1000");
    assert!(same_instant(
        "2017-01-02T19:20:02+01:00",
        "2017-01-02T18:20:02Z"
    ));
    assert!(same_instant(
        "2017-01-02T18:20:02+00:00",
        "2017-01-02T20:20:02.000+02:00"
    ));
    assert!(!same_instant(
        "2017-01-02T19:20:02+01:00",
        "2017-01-02T19:20:02Z"
    ));
    assert!(!same_instant("garbage", "garbage"));
}

#[test]
fn self_check_rejects_wrong_values() {
    use expectations::{Check, What, check_against_telegram};
    // Synthetic telegram (made-up values), not corpus data.
    let telegram = b"/XYZ5 SELFTEST\r\n\r\n1-0:1.8.1(000123.450*kWh)\r\n\
        0-0:96.1.1(544553544D45544552)\r\n0-0:1.0.0(240708091011S)\r\n\
        0-1:24.3.0(240708090000)(00)(60)(1)(0-1:24.2.1)(m3)\r\n(00042.100)\r\n!\r\n";
    let check = |obis: &str, what: What| Check {
        obis: obis.to_string(),
        what,
        origin: "test".to_string(),
    };
    let ok = [
        check("1-0:1.8.1", What::Decimal("123.45".into())),
        check("1-0:1.8.1", What::Unit(Some("kWh".into()))),
        check("0-0:96.1.1", What::Text("TESTMETER".into())),
        check("0-0:96.1.1", What::Hex("544553544D45544552".into())),
        check("0-0:1.0.0", What::Timestamp("2024-07-08T07:10:11Z".into())),
        check("0-1:24.3.0", What::Decimal("42.1".into())),
        check("0-1:24.3.0", What::Unit(Some("m3".into()))),
        check(
            "0-1:24.3.0",
            What::Timestamp("2024-07-08T09:00:00+02:00".into()),
        ),
    ];
    for c in &ok {
        assert_eq!(check_against_telegram(telegram, c), Ok(()), "{c:?}");
    }
    let bad = [
        check("1-0:1.8.1", What::Decimal("123.451".into())),
        check("1-0:1.8.1", What::Decimal("123.450".into())), // not canonical
        check("1-0:1.8.1", What::Unit(None)),
        check("1-0:1.8.2", What::Decimal("123.45".into())),
        check("0-0:96.1.1", What::Text("544553544D45544552".into())),
        check("0-0:1.0.0", What::Timestamp("2024-07-08T09:10:11Z".into())),
    ];
    for c in &bad {
        assert!(check_against_telegram(telegram, c).is_err(), "{c:?}");
    }
}
