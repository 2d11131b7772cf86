//! What every request handler shares.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::analytics::tariff::TariffConfig;
use crate::service::event::Event;
use crate::service::metrics::MetricsState;
use crate::store::Store;

/// The web server's shared state: cheap to clone.
#[derive(Clone)]
pub struct WebState {
    /// The latest telegram and status of every meter (fed by the event stream).
    pub live: Arc<MetricsState>,
    /// The history store, when it is on.
    pub store: Option<Store>,
    /// Prices and reference power for the cost figures.
    pub tariff: Arc<TariffConfig>,
    /// The event channel, for the live stream. Weak, so that the channel closes (and live
    /// streams end) when the service stops.
    pub events: broadcast::WeakSender<Event>,
    /// The API's access token, when one is required.
    pub token: Option<Arc<str>>,
}
