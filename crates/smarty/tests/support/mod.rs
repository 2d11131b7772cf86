//! What the end-to-end tests share: child processes that end with the test, free loopback
//! ports, and plain HTTP/1.1 requests.

// Each test file uses a part of this module.
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

/// The key of every virtual meter in the tests.
pub const KEY: &str = "000102030405060708090A0B0C0D0E0F";

/// A child process killed when dropped (so a failing test leaves nothing behind), with the
/// state directory it was given, removed after it.
pub struct Guard {
    /// The process.
    pub child: Child,
    /// Its state directory, if the test made one for it.
    pub state: Option<tempfile::TempDir>,
}

impl From<Child> for Guard {
    fn from(child: Child) -> Self {
        Guard { child, state: None }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (right now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits up to 10 s until something accepts connections on `port`.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET path` on loopback with extra header lines (each ending in CR LF): the status and the
/// body, or the error while nothing answers.
pub fn request(port: u16, path: &str, headers: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {head:?}")))?;
    Ok((status, body.to_owned()))
}
