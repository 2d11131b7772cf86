//! `smarty-web`: the web server of the smarty gateway, the dashboard at `/`, the JSON API under
//! `/api/` (docs/api.md, described by `/api/openapi.json`), Prometheus metrics at `/metrics`
//! and the health check at `/healthz`. The only crate of the workspace that uses axum and
//! hyper.
//!
//! It listens on `127.0.0.1:8080` unless `[http] listen` says otherwise; any address other
//! than loopback requires an access token for the API and the metrics
//! ([`HttpConfig::check`]).
//!
//! The server runs on threads of its own (`server`), so that a busy API never delays the
//! meters; its connections, header reads and store queries are bounded.
//!
//! It reads the history through `smarty-store`, the costs through `smarty-tariff`, and what is
//! live (the latest telegrams, the outputs' health) from [`smarty_model::live::LiveState`]; the
//! dashboard's files (`static/`) are compiled in.
//!
//! [`probe`] is a small server of `/metrics` and `/healthz` alone, for programs other than
//! the gateway (the fleet's workers), fed by closures: it knows nothing of what it serves.
//!
//! Started with [`WebServer::fleet`] (`smarty fleet serve`), it serves a fleet's database:
//! the fleet's routes (`fleet.rs`: `/api/fleet/…`, the fleet page at `/`, a `/healthz` that
//! asks the database) beside the household's, which then read each meter from the store.

mod api;
mod assets;
mod auth;
mod body;
pub mod config;
mod error;
mod extract;
mod fields;
mod fleet;
mod health;
mod live;
mod metrics;
mod number;
pub mod probe;
mod range;
mod server;
mod state;
mod stream;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::routing::get;
use tokio::net::TcpListener;

pub use config::{HttpConfig, HttpConfigError};
pub use fleet::{DEFAULT_STALE_AFTER_S, FleetOptions};
pub use state::WebState;

use auth::Access;
use smarty_model::secret::Secret;
use state::App;

/// The OpenAPI 3.1 description of the API, served at `/api/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The content security policy of every answer: nothing but this server's own files.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// What the routes need besides the shared state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouterOptions {
    /// `/healthz` fails when a meter's last telegram is older.
    pub healthy_within: Duration,
    /// `/metrics` is served without the token.
    pub metrics_public: bool,
    /// `smarty fleet serve`: the fleet's routes, its `/healthz` and its page at `/`.
    pub fleet: Option<FleetOptions>,
}

/// Every route of the server; `app.web.token` guards the API and (unless `metrics_public`)
/// the metrics.
pub(crate) fn router(mut app: App, options: RouterOptions) -> Router {
    app.fleet = options.fleet;
    let access = Access {
        token: app.web.token.clone(),
    };
    let mut api = Router::new();
    if options.fleet.is_some() {
        api = api
            .route("/fleet", get(fleet::summary))
            .route("/fleet/meters", get(fleet::meters))
            .route("/fleet/community", get(fleet::community));
    }
    let api = api
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
            access.clone(),
            auth::require_token,
        ))
        .with_state(app.clone());
    let mut metrics = metrics::router(Arc::clone(&app.web.live));
    if !options.metrics_public {
        metrics = metrics.layer(middleware::from_fn_with_state(access, auth::require_token));
    }
    let (health, index) = if options.fleet.is_some() {
        (
            Router::new()
                .route("/healthz", get(fleet::healthz))
                .with_state(app.clone()),
            get(assets::fleet_index),
        )
    } else {
        (
            health::router(Arc::clone(&app.web.live), options.healthy_within),
            get(assets::index),
        )
    };
    Router::new()
        .nest("/api", api)
        .merge(metrics)
        .merge(health)
        .route("/", index)
        .route("/vendor/{file}", get(assets::vendor))
        .route("/js/{file}", get(assets::module))
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

/// Why the web server cannot start or stops. The messages start with `http:` or `[http]:`;
/// the causes are their sources.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// `[http]` settings that cannot work.
    #[error(transparent)]
    Config(#[from] HttpConfigError),
    /// The address cannot be bound (in use, not local).
    #[error("http: cannot listen on {address}")]
    Bind {
        /// `[http] listen`.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server's thread, runtime or listener cannot start.
    #[error("http: {what}")]
    Start {
        /// What failed: `cannot start its runtime`.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server's thread ended without saying why.
    #[error("http: the server thread ended")]
    ThreadEnded,
}

/// A bound web server, not serving yet.
#[derive(Debug)]
pub struct WebServer {
    listener: TcpListener,
    options: RouterOptions,
    limits: server::Limits,
    token: Option<Secret>,
}

/// Checks `config`, takes its token and binds the address.
///
/// # Errors
/// [`WebError::Config`] for an address other than loopback without a token or a token too
/// short, [`WebError::Bind`] for an address that cannot be bound (in use, not local).
pub async fn bind(config: &HttpConfig) -> Result<WebServer, WebError> {
    config.check()?;
    let token = config.token()?;
    let bind_error = |source| WebError::Bind {
        address: config.listen.clone(),
        source,
    };
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    if addr.ip().is_loopback() {
        tracing::info!("dashboard on http://{addr}/ (API /api/, metrics /metrics)");
    } else if config.metrics_public {
        tracing::warn!(
            "dashboard on http://{addr}/, a non-loopback address: the API needs the access \
             token; /metrics is public (metrics_public = true)"
        );
    } else {
        tracing::warn!(
            "dashboard on http://{addr}/, a non-loopback address: the API and /metrics need \
             the access token"
        );
    }
    Ok(WebServer {
        listener,
        options: RouterOptions {
            healthy_within: Duration::from_secs(config.healthy_within_s),
            metrics_public: config.metrics_public,
            fleet: None,
        },
        limits: server::Limits::new(
            config.max_connections,
            Duration::from_secs(config.header_read_timeout_s),
        ),
        token,
    })
}

impl WebServer {
    /// Serves a fleet (`smarty fleet serve`): the fleet's API under `/api/fleet/`, its page
    /// at `/` (each meter's dashboard at `/index.html#meter=NAME`), and a `/healthz` that
    /// asks the database instead of the live telegrams.
    pub fn fleet(mut self, options: FleetOptions) -> WebServer {
        self.options.fleet = Some(options);
        self
    }

    /// Serves until `shutdown` completes. The token read by [`bind`] replaces `state.token`.
    ///
    /// The server runs on a runtime and threads of its own (`smarty-http`), not on the
    /// caller's: requests never take time from the meters. `shutdown` runs on the caller's
    /// runtime. Dropping the returned future stops the server too.
    ///
    /// # Errors
    /// [`WebError::Start`] when the server cannot start, [`WebError::ThreadEnded`] when it
    /// fails.
    pub async fn serve(
        self,
        mut state: WebState,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), WebError> {
        state.token = self.token.map(Arc::new);
        let app = router(App::new(state), self.options);
        server::run_on_own_threads(self.listener, app, self.limits, shutdown).await
    }
}
