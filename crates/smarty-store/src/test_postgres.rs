//! A PostgreSQL database of its own for each test (feature `test_postgres`): created on the
//! server that `SMARTY_TEST_POSTGRES` names (an administrator's URL), else on the one on
//! `127.0.0.1:5432` as user `postgres` (scripts/test starts one when the machine has none),
//! and dropped when the test ends. A test that needs PostgreSQL fails, with this message,
//! when there is none: it never passes without it.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::config::{Location, StoreConfig};
use crate::postgres::PostgresConfig;

/// The administrator's URL when `SMARTY_TEST_POSTGRES` is not set.
const DEFAULT_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";

/// A database that exists while this lives.
pub struct TestDatabase {
    admin: String,
    name: String,
    url: String,
}

/// The administrator's URL of the test server.
pub fn admin_url() -> String {
    std::env::var("SMARTY_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_ADMIN.to_owned())
}

/// Runs `f` on a thread of its own (the synchronous client must not run inside a Tokio
/// runtime, and tests may be async).
fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match std::thread::spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn admin_client(admin: &str) -> postgres::Client {
    postgres::Client::connect(admin, postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "this test needs PostgreSQL at {admin} (scripts/test starts one; or set \
             SMARTY_TEST_POSTGRES to an administrator's URL): {e}"
        )
    })
}

impl TestDatabase {
    /// Creates an empty database named after the process and a counter.
    ///
    /// # Panics
    /// When no PostgreSQL server can be reached.
    pub fn create() -> TestDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let admin = admin_url();
        let name = format!(
            "smarty_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            jiff::Timestamp::now().as_millisecond() % 1_000_000
        );
        let (a, n) = (admin.clone(), name.clone());
        on_thread(move || {
            admin_client(&a)
                .batch_execute(&format!("CREATE DATABASE {n}"))
                .unwrap();
        });
        let mut url = url::Url::parse(&admin).expect("SMARTY_TEST_POSTGRES is a URL");
        url.set_path(&name);
        TestDatabase {
            admin,
            name,
            url: url.to_string(),
        }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A store configuration for it, with the defaults of [`StoreConfig`].
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig::in_location(Location::Postgres(
            PostgresConfig::parse(&self.url).expect("a test URL"),
        ))
    }

    /// Runs `sql` in the database and returns the first column of each row as text.
    ///
    /// # Panics
    /// When the statement fails.
    pub fn query(&self, sql: &str) -> Vec<Option<String>> {
        self.try_query(sql).unwrap()
    }

    /// [`TestDatabase::query`], with the error of a failed statement.
    ///
    /// # Errors
    /// What PostgreSQL said.
    pub fn try_query(&self, sql: &str) -> Result<Vec<Option<String>>, String> {
        let (url, sql) = (self.url.clone(), sql.to_owned());
        on_thread(move || {
            let mut client = admin_client(&url);
            Ok(client
                .simple_query(&sql)
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
                    _ => None,
                })
                .collect())
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        on_thread(move || {
            if let Ok(mut client) = postgres::Client::connect(&admin, postgres::NoTls) {
                let _ =
                    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        });
    }
}

/// A PostgreSQL server of a test's own (to stop and restart it), in a temporary directory,
/// on a loopback port: `initdb` and `pg_ctl` run as the `postgres` user when the test runs
/// as root (PostgreSQL refuses to run as root), with fsync off. Stopped when dropped.
pub struct TestServer {
    dir: tempfile::TempDir,
    port: u16,
    bin: std::path::PathBuf,
}

impl TestServer {
    /// Creates and starts a cluster.
    ///
    /// # Panics
    /// When PostgreSQL's programs are not installed or the server does not start.
    pub fn start() -> TestServer {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .filter_map(Result::ok)
                    .map(|v| v.path().join("bin"))
                    .filter(|bin| bin.join("initdb").exists())
                    .max()
            })
            .expect("this test needs PostgreSQL's programs (Debian package postgresql)");
        let dir = tempfile::Builder::new()
            .prefix("smarty-pg-")
            .tempdir()
            .unwrap();
        // The postgres user must reach and own the directory.
        Self::command("chmod", &["0777", &dir.path().display().to_string()]);
        let data = dir.path().join("data");
        let server = |port| TestServer { dir, port, bin };
        let mut this = server(0);
        this.run(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        // A port nobody uses now; PostgreSQL cannot be given port 0, so another process may
        // take it first: then the next one is tried.
        for _ in 0..20 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap();
            this.port = port;
            if this.try_start() {
                return this;
            }
        }
        panic!("the test's PostgreSQL server did not start");
    }

    fn command(program: &str, args: &[&str]) -> std::process::Output {
        std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    /// Runs one of PostgreSQL's programs, as `postgres` when this process is root.
    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let path = self.bin.join(program).display().to_string();
        if is_root() {
            let mut full = vec!["-u", "postgres", "--", path.as_str()];
            full.extend_from_slice(args);
            Self::command("runuser", &full)
        } else {
            Self::command(&path, args)
        }
    }

    fn try_start(&self) -> bool {
        let data = self.dir.path().join("data").display().to_string();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &options, "-w", "start"],
        )
        .status
        .success()
    }

    /// Stops the server (fast shutdown: connections are closed).
    pub fn stop(&self) {
        let data = self.dir.path().join("data").display().to_string();
        let out = self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts it again on the same port.
    pub fn restart(&self) {
        assert!(
            self.try_start(),
            "the test's PostgreSQL server did not start again"
        );
    }

    /// The administrator's URL.
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// A store configuration for database `postgres` of this server.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig::in_location(Location::Postgres(
            PostgresConfig::parse(&self.admin_url()).expect("a test URL"),
        ))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").display().to_string();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

/// Whether this process runs as root.
fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}
