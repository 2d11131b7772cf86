//! A small probe server for programs other than the gateway (the fleet's workers): `GET
//! /metrics` answers the text a closure renders (Prometheus text format 0.0.4), `GET /healthz`
//! 200 with the health closure's text, or 503 with its reason. Nothing else; no token (it
//! shows counters and a reason, no meter data): keep it on loopback or a private network.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::WebError;

/// Renders the metrics text.
pub type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// `Ok(text)` when healthy, `Err(reason)` when not.
pub type HealthFn = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// What a probe server answers.
#[derive(Clone)]
pub struct Probe {
    /// `/metrics`.
    pub metrics: MetricsFn,
    /// `/healthz`.
    pub health: HealthFn,
}

/// A bound probe server, not serving yet.
#[derive(Debug)]
pub struct ProbeServer {
    listener: TcpListener,
}

/// The address of `text`: `HOST:PORT`, or a port alone for loopback (`9100` is
/// `127.0.0.1:9100`).
///
/// # Example
/// ```
/// assert_eq!(smarty_web::probe::address("9100"), "127.0.0.1:9100");
/// assert_eq!(smarty_web::probe::address("0.0.0.0:9100"), "0.0.0.0:9100");
/// ```
pub fn address(text: &str) -> String {
    let text = text.trim();
    if text.parse::<u16>().is_ok() {
        format!("127.0.0.1:{text}")
    } else {
        text.to_owned()
    }
}

/// Binds `listen` ([`address`]).
///
/// # Errors
/// [`WebError::Bind`] for an address that cannot be bound (in use, not local).
pub async fn bind(listen: &str) -> Result<ProbeServer, WebError> {
    let listen = address(listen);
    let bind_error = |source| WebError::Bind {
        address: listen.clone(),
        source,
    };
    let listener = TcpListener::bind(&listen).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    if addr.ip().is_loopback() {
        tracing::info!("metrics on http://{addr}/metrics, health on http://{addr}/healthz");
    } else {
        tracing::warn!(
            "metrics on http://{addr}/metrics, health on /healthz: a non-loopback address, \
             without a token"
        );
    }
    Ok(ProbeServer { listener })
}

impl ProbeServer {
    /// The bound address.
    ///
    /// # Errors
    /// The socket's address cannot be read.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, on the caller's runtime.
    ///
    /// # Errors
    /// [`WebError::Start`] when serving fails.
    pub async fn serve(
        self,
        probe: Probe,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), WebError> {
        let metrics = Arc::clone(&probe.metrics);
        let health = Arc::clone(&probe.health);
        let app = Router::new()
            .route(
                "/metrics",
                get(move || {
                    let metrics = Arc::clone(&metrics);
                    async move { text(StatusCode::OK, metrics(), "text/plain; version=0.0.4") }
                }),
            )
            .route(
                "/healthz",
                get(move || {
                    let health = Arc::clone(&health);
                    async move {
                        match health() {
                            Ok(ok) => text(StatusCode::OK, ok + "\n", "text/plain"),
                            Err(why) => {
                                text(StatusCode::SERVICE_UNAVAILABLE, why + "\n", "text/plain")
                            }
                        }
                    }
                }),
            );
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| WebError::Start {
                what: "the probe server failed",
                source,
            })
    }
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
