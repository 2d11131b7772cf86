//! What every request handler shares.

use std::sync::Arc;

use tokio::sync::{Semaphore, broadcast};

use smarty_model::event::MeterEvent;
use smarty_model::live::LiveState;
use smarty_model::secret::Secret;
use smarty_store::Store;
use smarty_tariff::TariffConfig;

/// The web server's shared state: cheap to clone.
#[derive(Clone)]
pub struct WebState {
    /// The latest telegram and status of every meter (fed by the event stream).
    pub live: Arc<LiveState>,
    /// The history store, when it is on.
    pub store: Option<Store>,
    /// Prices and reference power for the cost figures.
    pub tariff: Arc<TariffConfig>,
    /// The event channel, for the live stream. Weak, so that the channel closes (and live
    /// streams end) when the service stops.
    pub events: broadcast::WeakSender<MeterEvent>,
    /// The API's access token, when one is required (set by `WebServer::serve` from the
    /// configuration).
    pub token: Option<Arc<Secret>>,
}

/// Store queries running at once, at most: each holds a read connection, and its answer
/// until it is sent. Further requests wait for a turn.
pub const QUERY_PERMITS: usize = 4;

/// Points in one series answer, at most: about 2.5 MB of JSON. `resolution=auto` picks a
/// coarser resolution instead; an explicit resolution is refused with 400.
pub const MAX_POINTS: u64 = 100_000;

/// The API handlers' state: the shared state and the bounds on the work of a request.
#[derive(Clone)]
pub struct App {
    /// The shared state.
    pub web: WebState,
    /// Turns for store queries ([`QUERY_PERMITS`]).
    pub queries: Arc<Semaphore>,
    /// Points in one series answer, at most ([`MAX_POINTS`]).
    pub max_points: u64,
    /// Serving a fleet (`smarty fleet serve`), with its settings.
    pub fleet: Option<crate::FleetOptions>,
}

impl App {
    /// The handlers' state over `web`, with the default bounds.
    pub fn new(web: WebState) -> App {
        App {
            web,
            queries: Arc::new(Semaphore::new(QUERY_PERMITS)),
            max_points: MAX_POINTS,
            fleet: None,
        }
    }
}
