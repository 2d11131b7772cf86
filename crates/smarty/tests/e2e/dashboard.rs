//! End to end: the web dashboard in a real headless Chromium. Three days of simulated
//! history are imported, a virtual meter sends a telegram a second to `smarty run`, and
//! `tests/browser/dashboard.mjs` (playwright-core driving Debian's Chromium) checks what a
//! person sees: live values, kWh and euro, the history chart and its zoom, the 15-minute view,
//! gas and water with the labels and units the API's metadata gives (`fields` of
//! `/api/meters`, also with other labels and another time zone put in its answer), the
//! reference-power guard's banner and gauge (the live meter has no solar panels and the
//! service guards a reference power below its base load, so every quarter hour will exceed it
//! or has), the status panel and the keyboard. It prints the first contentful paint and
//! leaves screenshots in `target/dashboard-screenshots/`.
//!
//! Needs Node.js, `/usr/bin/chromium` (or `CHROMIUM`) and `crates/smarty-web/static/node_modules`
//! (`npm ci` there): `./scripts/test` installs all three.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::{Guard, KEY, http_port, request, simulator_address, tail};

const SETUP: &str = "run ./scripts/test, which installs Chromium and playwright-core";
/// Three days of history, a telegram a minute.
const HISTORY_S: u64 = 3 * 86_400;
const HISTORY_INTERVAL_S: u64 = 60;
/// The reference power the service guards (`[guard] reference_power_kw`), kW: far below the
/// simulated household's base load (above 0.1 kW at any hour without solar panels). Each
/// quarter hour then will exceed it from its first telegram on (its allowance is 2.5 Wh), save
/// the end of the first one when the service starts late in it with little energy counted:
/// the browser test waits for the next quarter hour then.
const GUARD_REFERENCE_KW: &str = "0.01";

/// The status of `GET path`, or `None` while nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    request(port, path, "").ok().map(|(status, _)| status)
}

/// A `smarty` command with a clean environment; its stderr goes to `log`.
fn smarty(args: &[&str], log: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_smarty"));
    command
        .args(args)
        .env_remove("SMARTY_KEY")
        .env_remove("SMARTY_STATE_DIR")
        .env_remove("SMARTY_HTTP_TOKEN")
        .env("RUST_LOG", "smarty=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(log).unwrap());
    command
}

/// Runs a `smarty` command to its end and asserts that it succeeded.
fn smarty_ok(args: &[&str], log: &Path) {
    let status = smarty(args, log).status().expect("start smarty");
    assert!(
        status.success(),
        "smarty {} failed ({status}):\n{}",
        args.join(" "),
        tail(log)
    );
}

/// Runs a browser test script (`node SCRIPT ARGS…` with `CHROMIUM`), its output in
/// `dir/browser.out` and `dir/browser.err`, for at most 180 s (`what` names it then):
/// its exit status, standard output and standard error.
pub fn run_browser_script(
    script: &Path,
    args: &[String],
    chromium: &Path,
    dir: &Path,
    what: &str,
) -> (std::process::ExitStatus, String, String) {
    let out_path = dir.join("browser.out");
    let err_path = dir.join("browser.err");
    let mut node = Guard::from(
        Command::new("node")
            .arg(script)
            .args(args)
            .env("CHROMIUM", chromium)
            .stdin(Stdio::null())
            .stdout(File::create(&out_path).unwrap())
            .stderr(File::create(&err_path).unwrap())
            .spawn()
            .expect("start node"),
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not finish in 180 s:\n{}",
            tail(&err_path)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        status,
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default(),
    )
}

/// Checks that Node.js, Chromium and playwright-core are there; fails (never skips) when not.
pub fn browser_tools() -> (PathBuf, PathBuf) {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let playwright =
        crate_dir.join("../smarty-web/static/node_modules/playwright-core/package.json");
    assert!(
        playwright.exists(),
        "{} is missing: {SETUP}",
        playwright.display()
    );
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.exists(),
        "{} is missing: {SETUP}",
        chromium.display()
    );
    let node = Command::new("node")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("node does not run ({e}): {SETUP}"));
    assert!(node.status.success(), "node --version failed: {SETUP}");
    (crate_dir.join("tests/browser/dashboard.mjs"), chromium)
}

#[test]
fn dashboard_in_headless_chromium() {
    let (script, chromium) = browser_tools();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = |name: &str| d.join(name).to_str().unwrap().to_owned();

    // History: three days at a telegram a minute, ending now, imported into the store.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start = (now - HISTORY_S).to_string();
    let count = (HISTORY_S / HISTORY_INTERVAL_S).to_string();
    let interval = format!("{HISTORY_INTERVAL_S}s");
    let history = path("history.bin");
    #[rustfmt::skip]
    smarty_ok(
        &["simulate", "--start", &start, "--count", &count, "--fast", "--interval", &interval,
          "--key", KEY, "--gas", "--water", "--seed", "7", "-o", &history],
        &d.join("simulate-history.log"),
    );
    #[rustfmt::skip]
    smarty_ok(
        &["import", &history, "--key", KEY, "--db", &path("smarty.db"), "--meter", "home", "--quiet"],
        &d.join("import.log"),
    );

    // The live meter, a telegram a second, without solar panels (it always imports), and the
    // service with its web server, each on a port of the system's choice, which it reports;
    // the service guards a reference power below the meter's load.
    let sim_log = d.join("simulate.log");
    #[rustfmt::skip]
    let mut sim = Guard::from(
        smarty(
            &["simulate", "--listen", "127.0.0.1:0", "--interval", "1s", "--key", KEY,
              "--gas", "--water", "--seed", "7", "--solar-kwp", "0"],
            &sim_log,
        )
        .spawn()
        .expect("start smarty simulate"),
    );
    let sim_addr = simulator_address(&mut sim, &sim_log);
    let run_log = d.join("run.log");
    // The meter in a configuration file, for its `[guard]` section; the flags apply over it.
    let key_file = path("home.key");
    std::fs::write(&key_file, KEY).unwrap();
    let config = path("smarty.toml");
    std::fs::write(
        &config,
        format!(
            "[[meter]]\nname = \"home\"\nsource = \"tcp://{sim_addr}\"\nkey_file = {key_file:?}\n\n\
             [guard]\nreference_power_kw = {GUARD_REFERENCE_KW}\n"
        ),
    )
    .unwrap();
    #[rustfmt::skip]
    let mut run = Guard::from(
        smarty(
            &["run", "--config", &config, "--http", "127.0.0.1:0", "--state-dir", d.to_str().unwrap()],
            &run_log,
        )
        .spawn()
        .expect("start smarty run"),
    );
    let http_port = http_port(&mut run, &run_log);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_status(http_port, "/healthz") != Some(200) {
        if let Some(status) = run.child.try_wait().unwrap() {
            panic!("smarty run exited ({status}):\n{}", tail(&run_log));
        }
        assert!(
            Instant::now() < deadline,
            "/healthz is not 200 after 30 s:\n{}",
            tail(&run_log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The browser test; screenshots go to target/dashboard-screenshots.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard-screenshots");
    let url = format!("http://127.0.0.1:{http_port}/");
    let (status, stdout, stderr) = run_browser_script(
        &script,
        &[
            url,
            shots.display().to_string(),
            GUARD_REFERENCE_KW.to_owned(),
        ],
        &chromium,
        d,
        "the browser test",
    );
    assert!(
        status.success(),
        "the dashboard test in Chromium failed ({status}):\n{stderr}\nsmarty run's log:\n{}",
        tail(&run_log)
    );
    let result = stdout.trim();
    assert!(
        result.starts_with('{') && result.contains("\"fcp_ms\""),
        "no result line from the browser test: {stdout}\n{stderr}"
    );
    std::fs::create_dir_all(&shots).unwrap();
    std::fs::write(shots.join("result.json"), format!("{result}\n")).unwrap();
    println!("dashboard: {result}");
    println!("screenshots: {}", shots.display());
}
