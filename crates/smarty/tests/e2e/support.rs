//! What the end-to-end tests share: the `smarty` binary as a command, child processes that
//! end with the test, the addresses they report, a port that refuses connections, and plain
//! HTTP/1.1 requests.

use std::io::{Read, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
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

/// The last 30 lines of the file `path` (a process's log), for a failure message.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The address a process reports in its log `log` (its standard error, written to that
/// file): what follows the first `before`, up to a space, a comma, a line end or a `/`.
/// Waits for it up to 30 s; fails when the process exits first.
///
/// What `smarty` prints, each with the address it bound (port 0 for one of the system's
/// choice): `dashboard on http://ADDR/` (the web server, `smarty run` and `smarty demo`, at
/// info level), `proxy: serving plain telegrams on ADDR` (info) and `… frames every … to
/// tcp://ADDR` (`smarty simulate --listen`, always).
pub fn reported_address(process: &mut Guard, log: &Path, before: &str) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some((_, rest)) = text.split_once(before)
            && let Some((address, _)) =
                rest.split_once(|c: char| c.is_whitespace() || c == '/' || c == ',')
        {
            return address
                .parse()
                .unwrap_or_else(|e| panic!("{before}{address}: not an address: {e}"));
        }
        if let Some(status) = process.child.try_wait().unwrap() {
            panic!(
                "exited ({status}) before it named its address ({before}…):\n{}",
                tail(log)
            );
        }
        assert!(
            Instant::now() < deadline,
            "no address ({before}…) after 30 s:\n{}",
            tail(log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The port of the web server of `smarty run` (or `demo`) as its log `log` reports it.
pub fn http_port(process: &mut Guard, log: &Path) -> u16 {
    reported_address(process, log, "dashboard on http://").port()
}

/// The port of the plain-telegram proxy of `smarty run` as its log `log` reports it.
pub fn proxy_port(process: &mut Guard, log: &Path) -> u16 {
    reported_address(process, log, "serving plain telegrams on ").port()
}

/// The address of `smarty simulate --listen` as its log `log` reports it.
pub fn simulator_address(process: &mut Guard, log: &Path) -> SocketAddr {
    reported_address(process, log, " to tcp://")
}

/// A loopback port that refuses connections for as long as this lives: a TCP socket bound
/// to it that never listens. Nothing else can take the port meanwhile (which a port found
/// free and let go of would allow), and a connection to it is refused at once.
pub struct RefusedPort {
    socket: OwnedFd,
}

impl RefusedPort {
    /// A port of the system's choice.
    pub fn new() -> RefusedPort {
        use rustix::net::{AddressFamily, SocketType, bind, socket};
        let socket = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        bind(&socket, &SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        RefusedPort { socket }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        let address = rustix::net::getsockname(&self.socket).unwrap();
        SocketAddr::try_from(address).unwrap().port()
    }
}

/// Waits up to 60 s until `GET /healthz` on `port` answers 200; fails with the log `log`
/// when `process` ends first.
pub fn wait_healthy(port: u16, process: &mut Guard, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, _)) = request(port, "/healthz", "") {
            return;
        }
        if let Some(status) = process.child.try_wait().unwrap() {
            panic!("exited ({status}):\n{}", tail(log));
        }
        assert!(
            Instant::now() < deadline,
            "/healthz is not 200 after 60 s:\n{}",
            tail(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` on loopback with extra header lines (each ending in CR LF): the status and the
/// body (a chunked one decoded), or the error while nothing answers.
pub fn request(port: u16, path: &str, headers: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let body = response.get(split + 4..).unwrap_or_default();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {head:?}")))?;
    let chunked = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The content of a `Transfer-Encoding: chunked` body (RFC 9112 §7.1).
fn dechunk(mut body: &[u8]) -> std::io::Result<Vec<u8>> {
    let bad = |what: &str| std::io::Error::other(format!("bad chunked body: {what}"));
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("no chunk size"))?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|_| bad("size"))?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad(size_text))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or_else(|| bad("truncated chunk"))?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).ok_or_else(|| bad("truncated chunk"))?;
    }
}

/// The peak resident memory of process `pid` (`VmHWM` in `/proc/PID/status`), bytes.
pub fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM in kB");
    kib * 1024
}

/// The `smarty` binary under test, logging at `info`, with no `SMARTY_*` variable of the
/// environment the tests run in (a developer's key or token must not change a test).
pub fn smarty() -> Command {
    smarty_logging("smarty=info")
}

/// [`smarty`] logging only warnings and errors, for tests that read what it prints.
pub fn quiet_smarty() -> Command {
    smarty_logging("smarty=warn")
}

fn smarty_logging(filter: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smarty"));
    for (name, _) in std::env::vars() {
        if name.starts_with("SMARTY_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("RUST_LOG", filter);
    cmd
}

/// Runs `cmd` to its end and asserts that it succeeded (its standard error in the message).
pub fn run_ok(cmd: &mut Command) -> Output {
    let output = cmd.output().expect("start smarty");
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `cmd` to its end (at most `timeout`, else the test fails) with nothing on its
/// standard input, draining both pipes so a chatty child never blocks on a full one.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start smarty");
    let started = Instant::now();
    let mut guard = Guard::from(child);
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).unwrap();
            bytes
        })
    };
    let stdout = drain(Box::new(guard.child.stdout.take().unwrap()));
    let stderr = drain(Box::new(guard.child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = guard.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < timeout,
            "smarty did not finish in {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// The whole log of a process (its standard error, written to the file `log`).
pub fn read_log(log: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned()
}

/// Stops `smarty run` as systemd does (SIGTERM) and waits for its clean exit.
pub fn stop(mut run: Guard, log: &Path) {
    Command::new("kill")
        .args(["-TERM", &run.child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = run.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "smarty run did not stop: {}",
            read_log(log)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "a clean stop exits 0: {}", read_log(log));
}

/// Calls `check` until it gives a value, for at most `seconds`; the panic names `what` and
/// the service's log.
pub fn wait_until<T>(
    seconds: u64,
    what: &str,
    log: &Path,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            read_log(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the sample `name{meter="METER"…}` of `/metrics` (`None` while the server
/// does not answer or the sample is absent); `labels` are further labels that must match.
pub fn metric(port: u16, name: &str, meter: &str, labels: &str) -> Option<f64> {
    let (status, body) = request(port, "/metrics", "").ok()?;
    if status != 200 {
        return None;
    }
    let prefix = format!("{name}{{meter=\"{meter}\"{labels}");
    body.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
