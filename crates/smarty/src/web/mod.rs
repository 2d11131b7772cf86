//! The web server: the dashboard at `/`, the JSON API under `/api/` (docs/api.md, described by
//! `/api/openapi.json`), Prometheus metrics at `/metrics` and the health check at `/healthz`.
//!
//! It listens on `127.0.0.1:8080` unless `[http] listen` says otherwise; any address other
//! than loopback requires an access token for the API ([`HttpConfig::check`]).

mod api;
mod assets;
mod auth;
pub mod config;
mod extract;
mod range;
mod state;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::routing::get;
use tokio::net::TcpListener;

pub use config::HttpConfig;
pub use state::WebState;

use crate::service::metrics;

/// The OpenAPI 3.1 description of the API, served at `/api/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The content security policy of every answer: nothing but this server's own files.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Every route of the server.
pub fn router(state: WebState, healthy_within: Duration) -> Router {
    let api = Router::new()
        .route("/meters", get(api::meters))
        .route("/meters/{meter}/latest", get(api::latest))
        .route("/meters/{meter}/series", get(api::series))
        .route("/meters/{meter}/totals", get(api::totals))
        .route("/meters/{meter}/tariff", get(api::tariff_report))
        .route("/meters/{meter}/intervals", get(api::intervals))
        .route("/meters/{meter}/summary", get(api::summary))
        .route("/stream", get(stream::stream))
        .route("/openapi.json", get(api::openapi))
        .fallback(api::not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .with_state(state.clone());
    Router::new()
        .nest("/api", api)
        .merge(metrics::router(Arc::clone(&state.live), healthy_within))
        .route("/", get(assets::index))
        .route("/vendor/{file}", get(assets::vendor))
        .route("/{file}", get(assets::file))
        .layer(middleware::map_response(
            |mut response: axum::response::Response| async move {
                response.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CSP),
                );
                response
            },
        ))
}

/// A bound web server, not serving yet.
#[derive(Debug)]
pub struct WebServer {
    listener: TcpListener,
    healthy_within: Duration,
    token: Option<String>,
}

/// Checks `config`, reads the token and binds the address.
///
/// # Errors
/// An address other than loopback without a token, an unreadable token file, or an address
/// that cannot be bound (in use, not local).
pub async fn bind(config: &HttpConfig) -> Result<WebServer> {
    config.check()?;
    let token = config.token()?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("http: cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    if addr.ip().is_loopback() {
        tracing::info!("dashboard on http://{addr}/ (API /api/, metrics /metrics)");
    } else {
        tracing::warn!(
            "dashboard on http://{addr}/, a non-loopback address: the API needs the access token"
        );
    }
    Ok(WebServer {
        listener,
        healthy_within: Duration::from_secs(config.healthy_within_s),
        token,
    })
}

impl WebServer {
    /// Serves until `shutdown` completes. The token read by [`bind`] replaces `state.token`.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn serve(
        self,
        mut state: WebState,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        state.token = self.token.map(Arc::from);
        axum::serve(self.listener, router(state, self.healthy_within))
            .with_graceful_shutdown(shutdown)
            .await
            .context("http server")
    }
}
