//! The plain-telegram proxy: a TCP server that hands every decrypted telegram, byte-exact
//! (`/` … `!CRC` CR LF), to all connected clients, so Home Assistant's DSMR integration,
//! DSMR-reader or dsmr_parser read a Smarty as if it were a plain DSMR 5 meter (in Home
//! Assistant: "DSMR Slimme Meter", connection type network, DSMR version `5L`).
//!
//! - Loopback by default; another address is allowed but logged as a warning, since the
//!   telegrams leave the host unencrypted.
//! - Slow clients never stall the pipeline: the server task only moves each telegram into a
//!   bounded per-client queue ([`CLIENT_QUEUE`] telegrams); a client's own task writes it out.
//!   When a queue is full its oldest telegram is dropped and counted ([`ProxyStats`]); a write
//!   that makes no progress for [`WRITE_TIMEOUT`] disconnects the client.
//! - A client connecting mid-stream receives whole telegrams only, from the next one on.
//! - The server falling behind the broadcast channel (`Lagged`) is logged and skipped.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinSet;

use smarty_model::event::{MeterEvent, TelegramEvent};

/// Telegrams queued per client before its oldest is dropped.
pub const CLIENT_QUEUE: usize = 16;

/// A client whose socket accepts no byte for this long is disconnected.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// `[proxy]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Address to listen on, `host:port` (default `127.0.0.1:2001`).
    pub listen: String,
    /// The meter whose telegrams are served (its configured name); default: every meter's.
    pub meter: Option<String>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: "127.0.0.1:2001".to_owned(),
            meter: None,
        }
    }
}

/// Counters of a running proxy, shared with whoever wants to report them.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Clients connected now.
    pub clients: AtomicUsize,
    /// Clients accepted since start.
    pub connections: AtomicU64,
    /// Telegrams handed to clients' queues (one per client and telegram).
    pub queued: AtomicU64,
    /// Telegrams dropped because a client's queue was full.
    pub dropped: AtomicU64,
    /// Telegrams the proxy missed because it fell behind the broadcast channel.
    pub lagged: AtomicU64,
}

/// A bound proxy, not serving yet (bind first to learn the port when listening on port 0).
#[derive(Debug)]
pub struct Proxy {
    listener: TcpListener,
    meter: Option<String>,
    stats: Arc<ProxyStats>,
}

/// Binds `config.listen`, warning when the address is not a loopback address.
pub async fn bind(config: &ProxyConfig) -> anyhow::Result<Proxy> {
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("proxy: cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    if addr.ip().is_loopback() {
        tracing::info!("proxy: serving plain telegrams on {addr}");
    } else {
        tracing::warn!(
            "proxy: serving plain telegrams on {addr}, a non-loopback address: telegrams \
             leave this host unencrypted"
        );
    }
    Ok(Proxy {
        listener,
        meter: config.meter.clone(),
        stats: Arc::default(),
    })
}

/// One connected client as seen by the server task.
struct ProxyClient {
    addr: SocketAddr,
    queue: Arc<ClientQueue>,
}

/// A bounded queue that drops its oldest entry when full.
#[derive(Default)]
struct ClientQueue {
    telegrams: Mutex<VecDeque<Arc<TelegramEvent>>>,
    ready: Notify,
    closed: AtomicBool,
    dropped: AtomicU64,
}

impl ClientQueue {
    /// Queues a telegram; `true` when the oldest one had to be dropped for it.
    fn push(&self, telegram: Arc<TelegramEvent>) -> bool {
        let dropped = {
            let mut queue = self.telegrams.lock().unwrap_or_else(|e| e.into_inner());
            let dropped = queue.len() >= CLIENT_QUEUE;
            if dropped {
                queue.pop_front();
            }
            queue.push_back(telegram);
            dropped
        };
        if dropped {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.ready.notify_one();
        dropped
    }

    fn pop(&self) -> Option<Arc<TelegramEvent>> {
        self.telegrams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.ready.notify_one();
    }
}

impl Proxy {
    /// The address actually bound.
    #[cfg(test)]
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The proxy's counters.
    #[cfg(test)]
    pub fn stats(&self) -> Arc<ProxyStats> {
        Arc::clone(&self.stats)
    }

    /// Serves clients until the event channel closes; then disconnects them.
    pub async fn serve(self, mut events: broadcast::Receiver<MeterEvent>) -> anyhow::Result<()> {
        let mut clients: Vec<ProxyClient> = Vec::new();
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, addr)) => {
                        tracing::info!("proxy: client {addr} connected");
                        let _ = stream.set_nodelay(true);
                        let queue = Arc::new(ClientQueue::default());
                        self.stats.clients.fetch_add(1, Ordering::Relaxed);
                        self.stats.connections.fetch_add(1, Ordering::Relaxed);
                        tasks.spawn(serve_client(
                            stream,
                            addr,
                            Arc::clone(&queue),
                            Arc::clone(&self.stats),
                        ));
                        clients.push(ProxyClient { addr, queue });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: retry after a pause.
                        tracing::warn!("proxy: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                event = events.recv() => match event {
                    Ok(MeterEvent::Telegram(telegram)) => {
                        if self.meter.as_deref().is_some_and(|m| m != &*telegram.meter) {
                            continue;
                        }
                        clients.retain(|c| !c.queue.closed.load(Ordering::Relaxed));
                        for client in &clients {
                            self.stats.queued.fetch_add(1, Ordering::Relaxed);
                            if client.queue.push(Arc::clone(&telegram)) {
                                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                                let n = client.queue.dropped.load(Ordering::Relaxed);
                                if n == 1 {
                                    tracing::warn!(
                                        "proxy: client {} does not keep up, dropping its \
                                         oldest telegrams",
                                        client.addr
                                    );
                                }
                            }
                        }
                        while tasks.try_join_next().is_some() {}
                    }
                    Ok(MeterEvent::Status(_) | MeterEvent::RawFrame { .. } | MeterEvent::Guard(_)) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        self.stats.lagged.fetch_add(n, Ordering::Relaxed);
                        tracing::warn!("proxy: fell behind, skipped {n} events");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        for client in &clients {
            client.queue.close();
        }
        // Let clients flush what is queued, but not for long.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        Ok(())
    }
}

/// Writes a client's queue to its socket until it disconnects, fails, stalls or the proxy
/// stops; reads (and ignores) what it sends, to notice a close promptly.
async fn serve_client(
    stream: TcpStream,
    addr: SocketAddr,
    queue: Arc<ClientQueue>,
    stats: Arc<ProxyStats>,
) {
    let (mut reader, mut writer) = stream.into_split();
    let mut scratch = [0u8; 256];
    let reason: String = 'client: loop {
        while let Some(telegram) = queue.pop() {
            match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&telegram.telegram)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => break 'client format!("write failed: {e}"),
                Err(_) => {
                    break 'client format!("stalled for {} s", WRITE_TIMEOUT.as_secs());
                }
            }
        }
        if queue.closed.load(Ordering::Relaxed) {
            break "proxy stopped".to_owned();
        }
        tokio::select! {
            () = queue.ready.notified() => {}
            read = reader.read(&mut scratch) => match read {
                Ok(0) => break "closed by client".to_owned(),
                Ok(_) => {}
                Err(e) => break format!("read failed: {e}"),
            },
        }
    };
    queue.close();
    let _ = writer.shutdown().await;
    stats.clients.fetch_sub(1, Ordering::Relaxed);
    let dropped = queue.dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        tracing::info!("proxy: client {addr} disconnected ({reason}; {dropped} telegrams dropped)");
    } else {
        tracing::info!("proxy: client {addr} disconnected ({reason})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smarty_p1::registry::Kind;
    use smarty_p1::{Decoder, DecoderConfig};

    const TELEGRAM: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../smarty-p1/tests/data/telegrams/meterlogger_lux5_253663629_d_2026.txt"
    ));

    fn event(meter: &str) -> Arc<TelegramEvent> {
        let mut decoder = Decoder::new(DecoderConfig::default());
        decoder.push(TELEGRAM);
        let decoded = decoder
            .finish()
            .expect("a telegram")
            .expect("an accepted telegram");
        Arc::new(TelegramEvent::new(
            &Arc::from(meter),
            &decoded,
            std::time::SystemTime::now(),
        ))
    }

    async fn start(
        config: ProxyConfig,
    ) -> (SocketAddr, Arc<ProxyStats>, broadcast::Sender<MeterEvent>) {
        let proxy = bind(&config).await.unwrap();
        let (addr, stats) = (proxy.local_addr(), proxy.stats());
        let (tx, rx) = broadcast::channel(64);
        tokio::spawn(proxy.serve(rx));
        (addr, stats, tx)
    }

    fn local() -> ProxyConfig {
        ProxyConfig {
            listen: "127.0.0.1:0".into(),
            meter: None,
        }
    }

    async fn wait_for_clients(stats: &ProxyStats, n: usize) {
        tokio::time::timeout(Duration::from_secs(20), async {
            while stats.clients.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("clients connect");
    }

    async fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut buf))
            .await
            .expect("data in time")
            .expect("data");
        buf
    }

    #[test]
    fn config_defaults_and_rejects_unknown_fields() {
        let config: ProxyConfig = toml::from_str("").unwrap();
        assert_eq!(config, ProxyConfig::default());
        assert_eq!(config.listen, "127.0.0.1:2001");
        let config: ProxyConfig = toml::from_str("meter = \"home\"").unwrap();
        assert_eq!(config.meter.as_deref(), Some("home"));
        assert!(toml::from_str::<ProxyConfig>("port = 1").is_err());
    }

    #[test]
    fn the_test_telegram_decodes_byte_exact() {
        assert_eq!(event("home").telegram, TELEGRAM);
    }

    #[tokio::test]
    async fn clients_receive_telegrams_byte_exact_and_only_of_their_meter() {
        let (addr, stats, tx) = start(local()).await;
        let mut a = TcpStream::connect(addr).await.unwrap();
        let mut b = TcpStream::connect(addr).await.unwrap();
        wait_for_clients(&stats, 2).await;
        let home = event("home");
        tx.send(MeterEvent::Telegram(Arc::clone(&home))).unwrap();
        tx.send(MeterEvent::Telegram(Arc::clone(&home))).unwrap();
        let expected = [TELEGRAM, TELEGRAM].concat();
        assert_eq!(read_exact(&mut a, expected.len()).await, expected);
        assert_eq!(read_exact(&mut b, expected.len()).await, expected);

        // A proxy for one meter ignores the others.
        let (addr, stats, tx) = start(ProxyConfig {
            meter: Some("garage".into()),
            ..local()
        })
        .await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        wait_for_clients(&stats, 1).await;
        tx.send(MeterEvent::Telegram(home)).unwrap();
        tx.send(MeterEvent::Telegram(event("garage"))).unwrap();
        assert_eq!(read_exact(&mut c, TELEGRAM.len()).await, TELEGRAM);
        drop(tx); // the proxy stops and disconnects its clients
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert!(rest.is_empty(), "only the garage telegram");
    }

    #[tokio::test]
    async fn a_client_that_never_reads_does_not_hold_up_others() {
        let (addr, stats, tx) = start(local()).await;
        // The stalled client: never reads, with a small receive buffer.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let _stalled = socket.connect(addr).await.unwrap();
        let mut fast = TcpStream::connect(addr).await.unwrap();
        wait_for_clients(&stats, 2).await;

        // 400 telegrams of 64 KiB each (25 MiB): far more than socket buffers hold.
        let template = event("home");
        for i in 0..400u32 {
            let mut big = (*template).clone();
            big.telegram = vec![b'0' + (i % 10) as u8; 64 * 1024];
            big.telegram[..4].copy_from_slice(&i.to_be_bytes());
            let expected = big.telegram.clone();
            tx.send(MeterEvent::Telegram(Arc::new(big))).unwrap();
            assert_eq!(
                read_exact(&mut fast, expected.len()).await,
                expected,
                "#{i}"
            );
        }
        assert!(
            stats.dropped.load(Ordering::Relaxed) > 0,
            "the stalled client's queue overflowed"
        );
        assert_eq!(stats.clients.load(Ordering::Relaxed), 2);
        assert_eq!(stats.lagged.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_client_that_leaves_is_forgotten() {
        let (addr, stats, tx) = start(local()).await;
        let gone = TcpStream::connect(addr).await.unwrap();
        wait_for_clients(&stats, 1).await;
        drop(gone);
        tokio::time::timeout(Duration::from_secs(10), async {
            while stats.clients.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the disconnect is noticed");
        let mut next = TcpStream::connect(addr).await.unwrap();
        wait_for_clients(&stats, 1).await;
        tx.send(MeterEvent::Telegram(event("home"))).unwrap();
        assert_eq!(read_exact(&mut next, TELEGRAM.len()).await, TELEGRAM);
    }

    #[tokio::test]
    async fn a_lagging_proxy_skips_and_counts() {
        let proxy = bind(&local()).await.unwrap();
        let (addr, stats) = (proxy.local_addr(), proxy.stats());
        let (tx, rx) = broadcast::channel(4);
        // Overrun the channel before the proxy runs.
        let home = event("home");
        for _ in 0..10 {
            tx.send(MeterEvent::Telegram(Arc::clone(&home))).unwrap();
        }
        tokio::spawn(proxy.serve(rx));
        let mut client = TcpStream::connect(addr).await.unwrap();
        wait_for_clients(&stats, 1).await;
        tokio::time::timeout(Duration::from_secs(10), async {
            while stats.lagged.load(Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("lag noticed");
        assert_eq!(stats.lagged.load(Ordering::Relaxed), 6);
        tx.send(MeterEvent::Telegram(home)).unwrap();
        // The client may also see some of the 4 telegrams left in the channel; it sees whole
        // telegrams in any case.
        let got = read_exact(&mut client, TELEGRAM.len()).await;
        assert_eq!(got, TELEGRAM);
    }

    /// The proxy read by dsmr_parser's own TCP reader (the one Home Assistant uses) yields
    /// the values we decoded.
    #[tokio::test]
    async fn dsmr_parser_reads_the_proxy() {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/dsmr_parser_proxy_client.py"
        );
        let probe = std::process::Command::new("python3")
            .args(["-c", "import dsmr_parser.clients.protocol"])
            .output();
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                eprintln!(
                    "SKIPPED dsmr_parser_reads_the_proxy: python3 has no dsmr_parser \
                     (pip install -r bench/requirements.txt): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                return;
            }
            Err(e) => {
                eprintln!("SKIPPED dsmr_parser_reads_the_proxy: no python3: {e}");
                return;
            }
        }

        const COUNT: usize = 3;
        let (addr, stats, tx) = start(local()).await;
        let child = std::process::Command::new("python3")
            .arg(script)
            .args([
                addr.ip().to_string(),
                addr.port().to_string(),
                COUNT.to_string(),
                "5L".into(),
                "30".into(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        wait_for_clients(&stats, 1).await;
        // One after the other: dsmr_parser's buffer takes every whole telegram it holds.
        let home = event("home");
        for _ in 0..COUNT {
            tx.send(MeterEvent::Telegram(Arc::clone(&home))).unwrap();
        }
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::task::spawn_blocking(move || child.wait_with_output()),
        )
        .await
        .expect("dsmr_parser finishes")
        .unwrap()
        .unwrap();
        assert!(
            out.status.success(),
            "dsmr_parser client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let parsed: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_slice(&out.stdout).expect("JSON from the script");
        assert_eq!(parsed.len(), COUNT);

        for telegram in &parsed {
            let mut compared = Vec::new();
            for value in &home.values {
                let compare = matches!(
                    value.id.kind(),
                    Kind::Energy | Kind::Power | Kind::Voltage | Kind::Current | Kind::MbusReading
                );
                let Some(ours) = value.data.number() else {
                    continue;
                };
                if !compare {
                    continue;
                }
                let Some(theirs) = telegram.get(&value.code) else {
                    continue; // not in dsmr_parser's LUXEMBOURG_SMARTY specification
                };
                let theirs: f64 = theirs["value"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("{}: a number from dsmr_parser", value.code));
                assert_eq!(theirs, ours, "{} ({})", value.name, value.code);
                compared.push(value.name.as_str());
            }
            for name in [
                "energy_import_kwh",
                "energy_export_kwh",
                "power_import_kw",
                "power_export_kw",
                "voltage_l1_v",
                "voltage_l2_v",
                "voltage_l3_v",
                "current_l1_a",
                "power_import_l1_kw",
                "mbus1_gas_m3",
            ] {
                assert!(compared.contains(&name), "{name} compared with dsmr_parser");
            }
        }
    }
}
