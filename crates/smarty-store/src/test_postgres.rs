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
        simple_query(&self.url, sql)
    }
}

/// The first column of each row of `sql` run at `url` (without TLS), as text; the error of a
/// failed statement.
///
/// # Panics
/// When nothing answers at `url`.
fn simple_query(url: &str, sql: &str) -> Result<Vec<Option<String>>, String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
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
    tls: Option<ServerTls>,
}

/// TLS on a [`TestServer`]: a certificate for `names` (DNS names or IP addresses) signed by
/// an authority made for the test (`openssl`), and whether plain connections are refused
/// (`hostssl` lines only in `pg_hba.conf`).
#[derive(Debug, Clone, Copy)]
pub struct ServerTls {
    /// The names of the server's certificate (`localhost`, `127.0.0.1`, …).
    pub names: &'static [&'static str],
    /// Whether only TLS connections are accepted.
    pub only: bool,
}

impl TestServer {
    /// Creates and starts a cluster.
    ///
    /// # Panics
    /// When PostgreSQL's programs are not installed or the server does not start.
    pub fn start() -> TestServer {
        Self::start_with(None)
    }

    /// Creates and starts a cluster with TLS on ([`ServerTls`]); its authority's certificate
    /// is [`TestServer::ca_file`].
    ///
    /// # Panics
    /// As [`TestServer::start`], and when `openssl` is missing.
    pub fn start_tls(tls: ServerTls) -> TestServer {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<ServerTls>) -> TestServer {
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
        let mut this = TestServer {
            dir,
            port: 0,
            bin,
            tls,
        };
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
        if let Some(tls) = tls {
            this.set_up_tls(tls);
        }
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

    /// Makes an authority and a server certificate signed by it with `openssl`, gives the
    /// server's key to the user the server runs as (mode 0600, as PostgreSQL demands), and
    /// turns TLS on in the cluster's configuration.
    fn set_up_tls(&self, tls: ServerTls) {
        let dir = self.dir.path();
        let path = |name: &str| dir.join(name).display().to_string();
        let openssl = |args: &[&str]| {
            let out = Self::command("openssl", args);
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
        args.extend(new_key);
        let (ca_key, ca) = (path("ca.key"), path("ca.pem"));
        // A name of its own: two tests' authorities are two authorities.
        let ca_name = format!(
            "/CN=smarty test CA {}",
            dir.file_name().unwrap_or_default().to_string_lossy()
        );
        args.extend(["-keyout", &ca_key, "-out", &ca, "-subj", &ca_name]);
        openssl(&args);
        let names: Vec<String> = tls
            .names
            .iter()
            .map(|name| match name.parse::<std::net::IpAddr>() {
                Ok(_) => format!("IP:{name}"),
                Err(_) => format!("DNS:{name}"),
            })
            .collect();
        let extensions = path("server.ext");
        std::fs::write(
            &extensions,
            format!(
                "subjectAltName={}\nbasicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
                names.join(",")
            ),
        )
        .unwrap();
        let (key, request, cert) = (path("server.key"), path("server.csr"), path("server.pem"));
        let subject = format!("/CN={}", tls.names.first().copied().unwrap_or("localhost"));
        let mut args = vec!["req", "-nodes"];
        args.extend(new_key);
        args.extend(["-keyout", &key, "-out", &request, "-subj", &subject]);
        openssl(&args);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &request,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &extensions,
            "-out",
            &cert,
        ]);
        // PostgreSQL refuses a key that others may read, or that it does not own (unless
        // root owns it and it is readable by the server's group).
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        if is_root() {
            let out = Self::command("chown", &["postgres", &key]);
            assert!(out.status.success(), "chown postgres {key}: {out:?}");
        }
        let data = dir.join("data");
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(
            &mut conf,
            format!("ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n").as_bytes(),
        )
        .unwrap();
        if tls.only {
            // `host` lines become `hostssl`: a plain connection over TCP finds no line.
            let hba = data.join("pg_hba.conf");
            let text = std::fs::read_to_string(&hba).unwrap();
            let text: Vec<String> = text
                .lines()
                .map(|line| match line.strip_prefix("host ") {
                    Some(rest) => format!("hostssl {rest}"),
                    None => line.to_owned(),
                })
                .collect();
            std::fs::write(&hba, text.join("\n") + "\n").unwrap();
        }
    }

    /// The certificate of the authority that signed the server's (with [`ServerTls`]).
    ///
    /// # Panics
    /// When the server was started without TLS.
    pub fn ca_file(&self) -> std::path::PathBuf {
        assert!(self.tls.is_some(), "this test server has no TLS");
        self.dir.path().join("ca.pem")
    }

    /// Its port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
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

    /// The administrator's URL (with `sslmode=require` when only TLS is accepted, else
    /// `disable`).
    pub fn admin_url(&self) -> String {
        let mode = if self.tls.is_some_and(|tls| tls.only) {
            "require"
        } else {
            "disable"
        };
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode={mode}",
            self.port
        )
    }

    /// Runs `sql` in database `postgres` of this server (one without [`ServerTls::only`])
    /// and returns the first column of each row as text, or the error of a failed
    /// statement.
    ///
    /// # Panics
    /// When the server does not answer (it is stopped).
    pub fn try_query(&self, sql: &str) -> Result<Vec<Option<String>>, String> {
        simple_query(&self.admin_url(), sql)
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
