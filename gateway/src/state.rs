//! What every route shares: the hub, the metrics and the shutdown signal. Route-specific
//! state lives with its route: the WebSocket limits in `ws`, the access rules in `auth`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct Shared {
    pub hub: Arc<Hub>,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
}
