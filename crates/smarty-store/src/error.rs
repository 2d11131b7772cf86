//! What can go wrong in the store.

use std::path::PathBuf;

/// An error of the history store. The messages are meant for people: they say what went wrong
/// and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed (a full disk, a locked or damaged file, …).
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed (unreachable, login refused, a statement failed, …).
    #[error("store {server}: {}", postgres_message(source))]
    Postgres {
        /// The server and database, without the password.
        server: String,
        /// The cause.
        #[source]
        source: postgres::Error,
    },
    /// The TLS handshake with PostgreSQL failed on the server's certificate (not trusted,
    /// issued for another name, expired): what is wrong and what to do.
    #[error("store {server}: {reason}")]
    Tls {
        /// The server and database, without the password.
        server: String,
        /// What is wrong with the certificate, and what to do about it.
        reason: String,
        /// The cause.
        #[source]
        source: postgres::Error,
    },
    /// A setting of the store that cannot work (a URL that is not one, a bad `sslmode`).
    #[error("store: {0}")]
    Config(String),
    /// No meter of this name has stored readings.
    #[error("no stored readings for meter {0:?}")]
    UnknownMeter(String),
    /// A series field that the store does not know.
    #[error(
        "unknown field {0:?}: use power_import_kw, power_export_kw, power_import_l1_kw … \
         voltage_l1_v, current_l1_a, energy_import_kwh, energy_export_kwh, mbus1_gas_m3, …"
    )]
    UnknownField(String),
    /// A query would return too many points: raw readings cover at most
    /// [`crate::query::RAW_MAX_DAYS`] days per query.
    #[error(
        "raw resolution covers at most {max_days} days per query, this range has {days}: \
         use 15m, hour, day or month"
    )]
    TooManyPoints {
        /// Days in the requested range (rounded up).
        days: i64,
        /// The most a raw query may cover.
        max_days: i64,
    },
    /// The file's schema cannot be brought to this version of smarty.
    #[error("store schema version {version}: {reason}")]
    Migration {
        /// The version concerned (the file's, or the step that failed).
        version: u32,
        /// What is wrong.
        reason: String,
    },
    /// The store's directory or file cannot be created or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another process writes the store (it holds the writer's lock, docs/storage.md).
    #[error(
        "{} is being written by {}: one process writes a store at a time",
        path.display(),
        holder.as_ref().map_or_else(|| "another process".to_owned(), |h| h.to_string())
    )]
    Locked {
        /// The store file.
        path: PathBuf,
        /// The process holding the lock, when it said who it is.
        holder: Option<super::lock::Holder>,
    },
    /// Stored raw data that does not decode (a damaged file or a foreign writer).
    #[error("damaged raw block of meter {meter} at {start}: {reason}")]
    Corrupt {
        /// The meter's name.
        meter: String,
        /// The block's start, Unix seconds.
        start: i64,
        /// What does not decode.
        reason: String,
    },
}

impl From<postgres::Error> for StoreError {
    /// A PostgreSQL error of a connection whose server is known to the caller's message.
    fn from(source: postgres::Error) -> StoreError {
        StoreError::Postgres {
            server: "PostgreSQL".to_owned(),
            source,
        }
    }
}

/// What PostgreSQL said: the server's message (with its detail and hint), or the client's
/// error and its causes (`error connecting to server: Connection refused`).
fn postgres_message(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut out = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            out.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            out.push_str(&format!("; {hint}"));
        }
        return out;
    }
    let mut out = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        out.push_str(&format!(": {e}"));
        cause = e.source();
    }
    out
}
