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
    pub fn query(&self, sql: &str) -> Vec<Option<String>> {
        let (url, sql) = (self.url.clone(), sql.to_owned());
        on_thread(move || {
            let mut client = admin_client(&url);
            client
                .simple_query(&sql)
                .unwrap()
                .into_iter()
                .filter_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
                    _ => None,
                })
                .collect()
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
