//! The connection loop: hyper's HTTP/1.1 on a tokio runtime of its own, with
//! - a bound on open connections ([`Limits::max_connections`]): never more than half the
//!   process's open-file limit, so that a flood of clients cannot take the descriptors a
//!   meter needs to reopen its source. Further clients wait in the kernel's listen queue.
//! - a header read timeout: a client that does not send a request's headers in time (a
//!   "slowloris", or an idle keep-alive connection) is disconnected.
//! - a write timeout: a client that stops reading its answer is disconnected, which frees
//!   the answer and its store-query turn.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio_io_timeout::TimeoutStream;

use super::WebError;
use super::state::QUERY_PERMITS;

/// Worker threads of the server's runtime.
const HTTP_THREADS: usize = 2;

/// A client that accepts no byte of its answer for this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes buffered per connection at most (request headers; the API takes no bodies).
const MAX_BUFFER: usize = 64 * 1024;

/// How long open connections may take to finish when the server stops.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// How often a failing `accept` (out of descriptors, …) is logged at most.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The bounds of the server's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most.
    pub max_connections: usize,
    /// A request's headers must arrive within this time.
    pub header_read_timeout: Duration,
    /// An answer must make progress within this time.
    pub write_timeout: Duration,
}

impl Limits {
    /// The limits of `[http]`: `max_connections`, lowered to half the process's open-file
    /// limit when that is smaller (logged), and the header read timeout.
    pub fn new(configured: usize, header_read_timeout: Duration) -> Limits {
        let files = open_files_limit();
        let max_connections = connection_bound(configured, files);
        if max_connections < configured
            && let Some(files) = files
        {
            tracing::info!(
                "http: at most {max_connections} connections, half the limit of {files} open \
                 files (raise it with LimitNOFILE= or ulimit -n)"
            );
        }
        Limits {
            max_connections,
            header_read_timeout,
            write_timeout: WRITE_TIMEOUT,
        }
    }
}

/// The process's soft limit of open files, when there is one.
#[cfg(unix)]
fn open_files_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Windows sets no such limit on sockets.
#[cfg(not(unix))]
fn open_files_limit() -> Option<u64> {
    None
}

/// `configured` connections, at most half of `open_files` (at least one).
fn connection_bound(configured: usize, open_files: Option<u64>) -> usize {
    match open_files.and_then(|files| usize::try_from(files / 2).ok()) {
        Some(half) => configured.min(half.max(1)),
        None => configured,
    }
}

/// Runs the server of `app` on `listener` on a runtime and threads of its own until
/// `shutdown` completes (on the caller's runtime) or this future is dropped.
///
/// # Errors
/// When the runtime or its thread cannot start, or the listener cannot move to it.
pub async fn run_on_own_threads(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    let start = |what| move |source| WebError::Start { what, source };
    let listener = listener
        .into_std()
        .map_err(start("cannot hand the listener over"))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = oneshot::channel::<Result<(), WebError>>();
    std::thread::Builder::new()
        .name("smarty-http".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(HTTP_THREADS)
                .max_blocking_threads(QUERY_PERMITS + 2)
                .thread_name("smarty-http")
                .enable_all()
                .build()
                .map_err(start("cannot start its runtime"))
                .and_then(|runtime| {
                    let result = runtime.block_on(async move {
                        let listener = TcpListener::from_std(listener)
                            .map_err(start("cannot take over the listener"))?;
                        accept_loop(listener, app, limits, stop_rx).await;
                        Ok(())
                    });
                    runtime.shutdown_timeout(Duration::from_secs(1));
                    result
                });
            let _ = done_tx.send(result);
        })
        .map_err(start("cannot start its thread"))?;
    let finished = |done: Result<Result<(), WebError>, oneshot::error::RecvError>| {
        done.unwrap_or(Err(WebError::ThreadEnded))
    };
    tokio::select! {
        () = shutdown => {
            let _ = stop_tx.send(true);
            finished(done_rx.await)
        }
        done = &mut done_rx => finished(done),
    }
}

/// Resolves when the server is told to stop (or its owner is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Accepts connections within `limits` and serves `app` on them until `stop`.
async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_BUFFER)
        .keep_alive(true);
    let mut errors = AcceptErrors::default();
    loop {
        // A free slot first: without one, new clients wait in the listen queue and cost no
        // descriptor.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = stopped(&mut stop) => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    errors.note(&e);
                    if !is_connection_error(&e) {
                        // Out of descriptors or memory: give the rest of the process room.
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(100)) => {}
                            () = stopped(&mut stop) => break,
                        }
                    }
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let mut io = TimeoutStream::new(stream);
        io.set_write_timeout(Some(limits.write_timeout));
        let io = TokioIo::new(Box::pin(io));
        let connection =
            graceful.watch(builder.serve_connection(io, TowerToHyperService::new(app.clone())));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("http: connection closed: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(STOP_GRACE) => {
            tracing::debug!("http: closing the connections still open");
        }
    }
}

/// Errors of one connection that `accept` reports; the listener itself is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// `accept` errors, logged at most every [`ACCEPT_ERROR_LOG_INTERVAL`] with a count.
#[derive(Default)]
struct AcceptErrors {
    last_log: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    fn note(&mut self, e: &std::io::Error) {
        self.unlogged += 1;
        if self
            .last_log
            .is_some_and(|t| t.elapsed() < ACCEPT_ERROR_LOG_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            "http: cannot accept connections: {e} ({} time{} since the last message)",
            self.unlogged,
            if self.unlogged == 1 { "" } else { "s" }
        );
        self.last_log = Some(Instant::now());
        self.unlogged = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_half_the_descriptors() {
        assert_eq!(connection_bound(256, Some(64)), 32);
        assert_eq!(connection_bound(256, Some(1024)), 256);
        assert_eq!(connection_bound(16, Some(64)), 16);
        assert_eq!(connection_bound(256, Some(1)), 1);
        assert_eq!(connection_bound(256, None), 256);
    }
}
