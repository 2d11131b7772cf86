//! End to end: `smarty fleet serve` over a fleet's database — keys from `fleet keys import`,
//! readings stored by the store's writer as the workers store them (`smarty import` of the
//! simulator's frames), a rejection count as the workers keep them — with its `/healthz`
//! from the database, its API, the access token as `smarty run` takes
//! it (refused off loopback without one; `[http] token_file` of `--config`), and the fleet's
//! pages in headless Chromium (`tests/browser/fleet.mjs`, screenshots in
//! `target/dashboard-screenshots/fleet-*.png`).

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

use std::time::{SystemTime, UNIX_EPOCH};

use smarty_store::test_postgres::TestDatabase;

use crate::support::{
    Guard, KEY, http_port, quiet_smarty, request, run_ok, smarty, tail, wait_healthy,
};

const MASTER: &str = "000102030405060708090A0B0C0D0E0F";
const METERS: usize = 3;
const TOKEN: &str = "fleet-token-0123456789";

fn with_master(mut cmd: Command) -> Command {
    cmd.env("SMARTY_MASTER_KEY", MASTER);
    cmd
}

/// `smarty fleet serve` with `args`, its log in `log`.
fn serve(db: &TestDatabase, args: &[&str], log: &Path) -> Guard {
    Guard::from(
        smarty()
            .args(["fleet", "serve", "--database", db.url()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(File::create(log).unwrap())
            .spawn()
            .expect("start smarty fleet serve"),
    )
}

#[test]
fn fleet_serve_shows_the_fleet() {
    let db = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The meters' keys, as `fleet keys import` stores them (wrapped).
    let keys = d.join("keys.csv");
    let mut csv = String::from("name,system_title,key,auth_key\n");
    for i in 1..=METERS {
        csv.push_str(&format!("meter-{i:04},53414710000000{i:02},{KEY},\n"));
    }
    std::fs::write(&keys, csv).unwrap();
    run_ok(with_master(quiet_smarty()).args([
        "fleet",
        "keys",
        "import",
        keys.to_str().unwrap(),
        "--database",
        db.url(),
    ]));
    // Two hours of each meter's telegrams, one a minute, ending now, stored as the workers
    // store them (the same writer; `smarty import` of the simulator's frames).
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start = (now - 2 * 3600).to_string();
    for i in 1..=METERS {
        let frames = d.join(format!("meter-{i}.bin"));
        let frames = frames.to_str().unwrap();
        #[rustfmt::skip]
        run_ok(quiet_smarty().args([
            "simulate", "--start", &start, "--count", "120", "--fast", "--interval", "60s",
            "--key", KEY, "--seed", &i.to_string(), "-o", frames,
        ]));
        #[rustfmt::skip]
        run_ok(quiet_smarty().args([
            "import", frames, "--key", KEY, "--db", db.url(), "--meter", &format!("meter-{i:04}"),
            "--quiet",
        ]));
    }
    // The workers set aside meter-0003's frames since (a wrong key, say).
    db.query(
        "INSERT INTO fleet_rejection (meter, reason, count, last_at)
         VALUES ('meter-0003', 'tag', 12, now())",
    );

    // Off loopback without a token: refused, before anything is served.
    let output = smarty()
        .args([
            "fleet",
            "serve",
            "--database",
            db.url(),
            "--http",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("token"), "{stderr}");

    // Off loopback with the token of the configuration's token_file: the API needs it.
    let token_file = d.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let config = d.join("smarty.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"0.0.0.0:0\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    )
    .unwrap();
    let guarded_log = d.join("serve-guarded.log");
    let mut guarded = serve(&db, &["--config", config.to_str().unwrap()], &guarded_log);
    let port = http_port(&mut guarded, &guarded_log);
    wait_healthy(port, &mut guarded, &guarded_log);
    assert_eq!(request(port, "/api/fleet", "").unwrap().0, 401);
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let (status, body) = request(port, "/api/fleet", &bearer).unwrap();
    assert_eq!(status, 200, "{body}");
    drop(guarded);

    // On loopback: no token; /healthz asks the database.
    let log = d.join("serve.log");
    let mut serving = serve(&db, &["--http", "127.0.0.1:0"], &log);
    let port = http_port(&mut serving, &log);
    wait_healthy(port, &mut serving, &log);
    let (_, health) = request(port, "/healthz", "").unwrap();
    assert!(health.contains("\"database\""), "{health}");
    let (status, body) = request(port, "/api/fleet/meters?limit=2", "").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("\"total\":{METERS}")), "{body}");
    assert!(
        body.contains("\"meter-0001\"") && body.contains("\"state\":\"ok\""),
        "{body}"
    );

    // The pages in Chromium.
    let (script, chromium) = crate::dashboard::browser_tools();
    let script = script.with_file_name("fleet.mjs");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard-screenshots");
    let (status, stdout, stderr) = crate::dashboard::run_browser_script(
        &script,
        &[
            format!("http://127.0.0.1:{port}/"),
            shots.display().to_string(),
            METERS.to_string(),
        ],
        &chromium,
        d,
        "the fleet's browser test",
    );
    assert!(
        status.success(),
        "the fleet's pages in Chromium failed ({status}):\n{stderr}\nsmarty fleet serve's log:\n{}",
        tail(&log)
    );
    println!("{stdout}");
}
