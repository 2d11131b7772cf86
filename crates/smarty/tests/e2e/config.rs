//! End to end: the configuration file, the environment and the command line of the `smarty`
//! binary. Flags apply over the environment over the file (or are refused), `config check`
//! reports every mistake with its line and column, environment values take the type of their
//! field and never show up in a message, and no value of any numeric setting crashes.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::support::{
    Guard, KEY, RefusedPort, reported_address, request, run_with_timeout, smarty,
};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A capture of `count` encrypted frames of the virtual meter (key [`KEY`]).
fn capture(dir: &Path, count: u32) -> PathBuf {
    let path = dir.join("capture.bin");
    let mut sim = smarty();
    sim.args(["simulate", "--fast", "--key", KEY, "--count"])
        .arg(count.to_string())
        .arg("--output")
        .arg(&path);
    let output = run_with_timeout(sim, Duration::from_secs(20));
    assert!(output.status.success(), "{}", text(&output.stderr));
    path
}

/// `smarty config check FILE` on `content`, with extra environment variables.
fn check(dir: &Path, content: &str, env: &[(&str, &str)]) -> Output {
    let path = dir.join("smarty.toml");
    std::fs::write(&path, content).unwrap();
    let mut cmd = smarty();
    cmd.arg("config").arg("check").arg(&path);
    cmd.env("SMARTY_STATE_DIR", dir);
    for (name, value) in env {
        cmd.env(name, value);
    }
    run_with_timeout(cmd, Duration::from_secs(20))
}

const METER: &str = "[[meter]]\nname = \"home\"\nsource = \"/dev/ttyUSB0\"\n";

#[test]
fn flags_next_to_a_config_apply_or_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let capture = capture(dir.path(), 3);
    let state = dir.path().join("state");
    let config = dir.path().join("smarty.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\n[[meter]]\nname = \"home\"\nsource = {capture:?}\nkey = \"{KEY}\"\n\
             [http]\nenabled = false\n"
        ),
    )
    .unwrap();

    // --no-store applies: the three telegrams are read, and no store is made.
    let mut cmd = smarty();
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--no-store");
    let output = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        !state.join("smarty.db").exists(),
        "--no-store was ignored next to --config"
    );
    // Without it, the file's (default) store is made: the flag made the difference.
    let mut cmd = smarty();
    cmd.arg("run").arg("--config").arg(&config);
    let output = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(state.join("smarty.db").exists());

    // --state-dir applies over the file's state_dir.
    let elsewhere = dir.path().join("elsewhere");
    let mut cmd = smarty();
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(&elsewhere);
    let output = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(elsewhere.join("smarty.db").exists(), "--state-dir ignored");

    // The meter's flags cannot apply to a file of several meters: refused, naming both.
    for flag in [
        &["--key-file", "/nonexistent"][..],
        &["--key", KEY],
        &["--name", "other"],
        &["--interval", "1s"],
        &["--baud", "9600"],
        &["--serial", "7E1"],
        &["--no-verify-tag"],
        &["--reject-replay"],
        &["--auth-key", KEY],
        &["--aad", "none"],
    ] {
        let mut cmd = smarty();
        cmd.arg("run").arg("--config").arg(&config).args(flag);
        let output = run_with_timeout(cmd, Duration::from_secs(30));
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag:?} accepted: {stderr}");
        assert!(
            stderr.contains(flag[0]) && stderr.contains("--config"),
            "{flag:?}: {stderr}"
        );
    }

    // --http applies over the file's [http] section (here: off), on the address given (port
    // 0: one of the system's choice, which the log reports).
    let silent = RefusedPort::new(); // nothing listens: the meter keeps reconnecting
    std::fs::write(
        &config,
        format!(
            "[[meter]]\nname = \"home\"\nsource = \"tcp://127.0.0.1:{}\"\n\
             [http]\nenabled = false\nlisten = \"127.0.0.1:1\"\n[store]\nenabled = false\n",
            silent.port()
        ),
    )
    .unwrap();
    let log = dir.path().join("run.log");
    let mut cmd = smarty();
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--http")
        .arg("127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut service = Guard::from(cmd.spawn().unwrap());
    let address = reported_address(&mut service, &log, "dashboard on http://");
    assert!(
        address.ip().is_loopback() && address.port() != 1,
        "{address}"
    );
    let (status, body) = request(address.port(), "/healthz", "").unwrap();
    assert_eq!(status, 503, "{body}"); // served, and no telegram yet
    assert!(body.contains("home"), "{body}");
}

#[test]
fn config_check_reports_every_mistake_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let content = "\
[[meter]]
name = \"home\"
source = \"tcp://p1-dongle.lan\"
baud = \"fast\"
[[meter]]
name = \"garage\"
source = \"/dev/ttyUSB0\"
[[meter]]
name = \"attic\"
source = \"/dev/ttyUSB0\"
interval_s = -3
[mqtt]
qos = 7
[http]
listen = \"127.0.0.1:8080\"
[proxy]
listen = \"127.0.0.1:8080\"
[store]
commit_interval_s = 2e19
";
    let output = check(dir.path(), content, &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for (place, what) in [
        ("smarty.toml:3:10:", "tcp://HOST:PORT"),
        ("smarty.toml:4:8:", "baud"),
        ("smarty.toml:10:10:", "ttyUSB0"),
        ("smarty.toml:11:14:", "interval_s"),
        ("smarty.toml:13:7:", "qos"),
        ("smarty.toml:17:10:", "8080"),
        ("smarty.toml:19:21:", "commit_interval_s"),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.contains(place))
            .unwrap_or_else(|| panic!("no mistake reported at {place}: {stderr}"));
        assert!(line.contains(what), "{line}");
    }
    assert!(stderr.contains("7 mistakes"), "{stderr}");
}

#[test]
fn environment_overrides_take_their_field_type_and_are_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let file = format!(
        "{METER}[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n[http]\nlisten = \"0.0.0.0:8080\"\n"
    );
    // Strings that look like numbers or booleans stay strings where the field is a string.
    let secrets = [
        ("SMARTY_MQTT_USERNAME", "true"),
        ("SMARTY_MQTT_PASSWORD", "123456"),
        ("SMARTY_MQTT_PREFIX", "2025"),
        ("SMARTY_MQTT_CLIENT_ID", "1.5"),
        ("SMARTY_HTTP_TOKEN", "12345678901234567890"),
        ("SMARTY_METER_HOME_KEY", "00000000000000000000000000000001"),
    ];
    let output = check(dir.path(), &file, &secrets);
    let all = text(&output.stdout) + &text(&output.stderr);
    assert!(output.status.success(), "{all}");
    for (_, value) in &secrets[1..] {
        assert!(!all.contains(value), "{value} shown: {all}");
    }
    // Numbers and booleans from the environment are read as the field's type.
    let output = check(
        dir.path(),
        &file,
        &[
            ("SMARTY_MQTT_QOS", "0"),
            ("SMARTY_MQTT_RETAIN_STATE", "true"),
            ("SMARTY_HTTP_HEALTHY_WITHIN_S", "120"),
            ("SMARTY_HTTP_TOKEN_FILE", "/etc/smarty/token"),
            ("SMARTY_STORE_COMMIT_INTERVAL_S", "0.5"),
            ("SMARTY_TARIFF_REFERENCE_POWER_KW", "7"),
            ("SMARTY_METER_HOME_INTERVAL_S", "1"),
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    // A value of the wrong type is refused naming the variable, never showing the value.
    for (name, value) in [
        ("SMARTY_HTTP_HEALTHY_WITHIN_S", "s3cr3t-value"),
        ("SMARTY_MQTT_QOS", "s3cr3t-value"),
        ("SMARTY_MQTT_DISCOVERY", "s3cr3t-value"),
        ("SMARTY_MQTT_PROTOCOL", "s3cr3t-value"),
        ("SMARTY_METER_HOME_BAUD", "s3cr3t-value"),
        ("SMARTY_METER_HOME_KEY", "s3cr3t-value"),
        ("SMARTY_MQTT_QOS", "77777"),
    ] {
        let output = check(dir.path(), &file, &[(name, value)]);
        let all = text(&output.stdout) + &text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}={value}: {all}");
        assert!(all.contains(name), "{name} not named: {all}");
        assert!(!all.contains(value), "{name}: value shown: {all}");
    }
    // An unknown field from the environment is named too.
    let output = check(dir.path(), &file, &[("SMARTY_MQTT_PASWORD", "x")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("SMARTY_MQTT_PASWORD"));
}

#[test]
fn intervals_take_one_syntax_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let capture = capture(dir.path(), 2);
    for interval in ["10", "10s", "500ms", "1m", "0.5"] {
        let mut cmd = smarty();
        cmd.arg("run").arg(&capture).args([
            "--key",
            KEY,
            "--no-http",
            "--no-store",
            "--interval",
            interval,
        ]);
        let output = run_with_timeout(cmd, Duration::from_secs(30));
        assert!(
            output.status.success(),
            "run --interval {interval}: {}",
            text(&output.stderr)
        );
        let mut cmd = smarty();
        cmd.args([
            "simulate", "--output", "-", "--fast", "--count", "1", "--key", KEY,
        ])
        .args(["--interval", interval]);
        let output = run_with_timeout(cmd, Duration::from_secs(30));
        assert!(
            output.status.success(),
            "simulate --interval {interval}: {}",
            text(&output.stderr)
        );
    }
}

/// Values at and beyond the edges of every type.
const EXTREMES: [&str; 12] = [
    "0",
    "-1",
    "nan",
    "inf",
    "-inf",
    "1e300",
    "2e19",
    "0.000001",
    "9223372036854775807",
    "-9223372036854775808",
    "4294967296",
    "65536",
];

#[test]
fn no_value_of_a_numeric_setting_crashes_config_check() {
    let dir = tempfile::tempdir().unwrap();
    // Every numeric field of every section, each given every extreme value.
    let fields = [
        ("[[meter]]\nname = \"home\"\nsource = \"-\"\n", "interval_s"),
        ("[[meter]]\nname = \"home\"\nsource = \"-\"\n", "baud"),
        ("[mqtt]\n", "qos"),
        ("[mqtt]\n", "keep_alive_s"),
        ("[mqtt]\n", "queue_max"),
        ("[http]\n", "healthy_within_s"),
        ("[store]\n", "raw_retention_days"),
        ("[store]\n", "commit_interval_s"),
        ("[tariff]\n", "reference_power_kw"),
        ("[tariff]\n", "energy_price_eur_per_kwh"),
        ("[tariff]\n", "fixed_eur_per_month"),
        ("[tariff]\n", "vat_rate"),
    ];
    for (section, field) in fields {
        for value in EXTREMES {
            let meter = if section.starts_with("[[meter]]") {
                ""
            } else {
                METER
            };
            let content = format!("{meter}{section}{field} = {value}\n");
            let output = check(dir.path(), &content, &[]);
            let stderr = text(&output.stderr);
            assert!(
                matches!(output.status.code(), Some(0 | 1)),
                "{field} = {value}: {:?} {stderr}",
                output.status
            );
            if !output.status.success() {
                assert!(
                    stderr.contains(field),
                    "{field} = {value}: the message does not name the field: {stderr}"
                );
                let line = content.lines().count();
                assert!(
                    stderr.contains(&format!("smarty.toml:{line}:")),
                    "{field} = {value}: the message does not name the line: {stderr}"
                );
            }
        }
    }
}

#[test]
fn no_value_of_a_numeric_flag_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let capture = capture(dir.path(), 1);
    let capture = capture.to_str().unwrap();
    let db = dir.path().join("import.db");
    let db = db.to_str().unwrap();
    // Every numeric flag of the commands that end on their own.
    let commands: [(&[&str], &str); 9] = [
        (
            &["run", capture, "--key", KEY, "--no-http", "--no-store"],
            "--interval",
        ),
        (
            &["run", capture, "--key", KEY, "--no-http", "--no-store"],
            "--baud",
        ),
        (&["read", capture, "--key", KEY, "--quiet"], "--count"),
        (&["read", capture, "--key", KEY, "--quiet"], "--max-frame"),
        (&["read", capture, "--key", KEY, "--quiet"], "--frame-gap"),
        (
            &[
                "simulate", "-o", "-", "--fast", "--count", "1", "--key", KEY,
            ],
            "--interval",
        ),
        (
            &[
                "simulate", "-o", "-", "--fast", "--count", "1", "--key", KEY,
            ],
            "--solar-kwp",
        ),
        (
            &[
                "simulate", "-o", "-", "--fast", "--count", "1", "--key", KEY,
            ],
            "--start",
        ),
        (
            &["import", capture, "--key", KEY, "--quiet", "--db", db],
            "--meter",
        ),
    ];
    for (args, flag) in commands {
        for value in EXTREMES {
            let mut cmd = smarty();
            cmd.args(args).arg(format!("{flag}={value}"));
            let output = run_with_timeout(cmd, Duration::from_secs(30));
            let stderr = text(&output.stderr);
            assert!(
                matches!(output.status.code(), Some(0..=2)),
                "{args:?} {flag}={value}: {:?} {stderr}",
                output.status
            );
            if !output.status.success() {
                assert!(
                    stderr.contains(flag),
                    "{args:?} {flag}={value}: the message does not name the flag: {stderr}"
                );
            }
        }
    }
    // The demo's numbers, refused before anything starts.
    for (flag, value) in [
        ("--history-days", "4294967295"),
        ("--interval", "1e300"),
        ("--interval", "0"),
    ] {
        let mut cmd = smarty();
        cmd.args([
            "demo",
            "--count",
            "1",
            "--http",
            "127.0.0.1:0",
            "--state-dir",
        ])
        .arg(dir.path().join("demo"))
        .arg(format!("{flag}={value}"));
        let output = run_with_timeout(cmd, Duration::from_secs(30));
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}={value}: {stderr}");
        assert!(stderr.contains(flag), "{stderr}");
    }
}

#[test]
fn import_takes_only_meter_names_run_takes() {
    let dir = tempfile::tempdir().unwrap();
    let capture = capture(dir.path(), 1);
    let db = dir.path().join("import.db");
    for name in ["my meter", "home/1", "", "wohnzimmer#2", "zähler"] {
        let mut cmd = smarty();
        cmd.arg("import")
            .arg(&capture)
            .args(["--key", KEY, "--quiet", "--meter", name, "--db"])
            .arg(&db);
        let output = run_with_timeout(cmd, Duration::from_secs(30));
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name:?}: {stderr}");
        assert!(stderr.contains("--meter"), "{stderr}");
    }
    assert!(!db.exists(), "nothing is written for a refused name");
    let mut cmd = smarty();
    cmd.arg("import")
        .arg(&capture)
        .args(["--key", KEY, "--quiet", "--meter", "home-1_b", "--db"])
        .arg(&db);
    let output = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
fn a_key_file_with_a_byte_order_mark_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let capture = capture(dir.path(), 1);
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("\u{feff}{KEY}\r\n")).unwrap();
    let mut cmd = smarty();
    cmd.arg("read")
        .arg(&capture)
        .arg("--key-file")
        .arg(&key_file)
        .arg("--quiet");
    let output = run_with_timeout(cmd, Duration::from_secs(30));
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 telegrams accepted") || stderr.contains("1 telegram accepted"),
        "{stderr}"
    );
    // The same key file in a configuration (the service reads it when it starts).
    let config = format!(
        "[[meter]]\nname = \"home\"\nsource = {capture:?}\nkey_file = {key_file:?}\n\
         [http]\nenabled = false\n[store]\nenabled = false\n"
    );
    let path = dir.path().join("smarty.toml");
    std::fs::write(&path, format!("\u{feff}{config}")).unwrap();
    let mut cmd = smarty();
    cmd.arg("run").arg("--config").arg(&path);
    let output = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
fn database_names_the_store_over_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let capture = capture(dir.path(), 3);
    let state = dir.path().join("state");
    let config = dir.path().join("smarty.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\n[[meter]]\nname = \"home\"\nsource = {capture:?}\nkey = \"{KEY}\"\n\
             [http]\nenabled = false\n[store]\npath = \"history.db\"\n"
        ),
    )
    .unwrap();
    // A PostgreSQL database over the file's SQLite path: the telegrams go there.
    let db = smarty_store::test_postgres::TestDatabase::create();
    let mut cmd = smarty();
    cmd.args(["run", "--database", db.url(), "--config"])
        .arg(&config);
    let output = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        db.query("SELECT count(*) FROM reading"),
        [Some("3".to_owned())]
    );
    assert!(!state.join("history.db").exists(), "--database was ignored");
    // An SQLite file over the same.
    let file = dir.path().join("other.db");
    let mut cmd = smarty();
    cmd.args(["run", "--database"])
        .arg(&file)
        .arg("--config")
        .arg(&config);
    let output = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(file.exists() && !state.join("history.db").exists());
    // Not both --database and --no-store.
    let mut cmd = smarty();
    cmd.args(["run", "--no-store", "--database"])
        .arg(&file)
        .arg("--config")
        .arg(&config);
    let output = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("--no-store"),
        "{}",
        text(&output.stderr)
    );
}
