//! Sources: where P1 bytes come from.
//!
//! Every source implements [`Source`]; the pipeline only sees a byte stream and whether the
//! source is live (followed and reopened) or finite (read to its end).

mod file;
mod hex;
mod mqtt;
mod serial;
mod tcp;

use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;

use anyhow::{Result, bail};
use tokio::io::AsyncRead;

pub use file::{FileSource, StdinSource};
pub use hex::HexOrBinary;
pub use mqtt::{MqttSource, redact_password};
pub use serial::SerialSource;
pub use tcp::TcpSource;

use crate::cli::SerialArgs;

/// An open byte stream.
pub type Reader = Box<dyn AsyncRead + Unpin + Send>;

/// A future that opens a source.
pub type OpenFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Reader>> + Send + 'a>>;

/// Where P1 bytes come from.
pub trait Source: fmt::Display + Send + Sync {
    /// Opens the source (again, after it was lost, for live sources).
    fn open(&self) -> OpenFuture<'_>;

    /// `true` for devices and network sources: followed until interrupted and reopened when
    /// lost. `false` for files and stdin: read to the end.
    fn is_live(&self) -> bool;
}

/// Parses a SOURCE argument: `-`, `tcp://HOST:PORT`, `mqtt[s]://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC`
/// (raw frames another `smarty` published with `--publish-raw`), a serial device or a file.
///
/// A path under `/dev/` or naming a character device (on Windows: `COM1`, `COM8`,
/// `\\.\COM12`) is a serial device (which may appear later, like a USB cable plugged in
/// after start); any other existing path is a file.
///
/// # Errors
/// A malformed `tcp://` or `mqtt://` address, or a path that is neither a device nor an existing file.
pub fn from_spec(spec: &str, serial: &SerialArgs) -> Result<Box<dyn Source>> {
    if spec == "-" {
        return Ok(Box::new(StdinSource));
    }
    if let Some(address) = spec.strip_prefix("tcp://") {
        return Ok(Box::new(TcpSource::new(address)?));
    }
    let scheme = spec.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if matches!(scheme.as_deref(), Some("mqtt" | "mqtts")) {
        return Ok(Box::new(MqttSource::new(spec)?));
    }
    if spec.contains("://") {
        bail!(
            "unknown source {spec:?}: use a serial device, tcp://HOST:PORT, \
             mqtt://HOST[:PORT]/TOPIC, a file or -"
        );
    }
    let path = Path::new(spec);
    if is_device(path) {
        return Ok(Box::new(SerialSource::new(path, serial)));
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(Box::new(FileSource::new(path))),
        Ok(_) => bail!("{spec} is neither a serial device nor a regular file"),
        Err(e) => bail!("cannot open {spec}: {e}"),
    }
}

/// [`from_spec`] for a service that waits for its devices: a path that does not exist yet (or a
/// link to nothing yet) is taken as a serial device that may appear later (a USB cable plugged
/// in after the start, a pseudo-terminal link made by socat or a simulator), opened again until
/// it is there.
///
/// # Errors
/// As [`from_spec`], except for a missing path.
pub fn from_spec_waiting(spec: &str, serial: &SerialArgs) -> Result<Box<dyn Source>> {
    let path = Path::new(spec);
    let plain_path = spec != "-" && !spec.contains("://");
    if plain_path && std::fs::metadata(path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        return Ok(Box::new(SerialSource::new(path, serial)));
    }
    from_spec(spec, serial)
}

#[cfg(unix)]
fn is_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    if path.starts_with("/dev") {
        return true;
    }
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device())
}

/// Windows: serial ports are `COM1`, `COM8`, `\\.\COM12` (any letter case).
#[cfg(windows)]
fn is_device(path: &Path) -> bool {
    let name = path.to_string_lossy();
    let name = name.strip_prefix(r"\\.\").unwrap_or(&name);
    name.len() > 3
        && name[..3].eq_ignore_ascii_case("com")
        && name[3..].bytes().all(|b| b.is_ascii_digit())
}
