//! Leadership by PostgreSQL advisory lock: one active instance per database (the projector,
//! the relay), the others waiting as hot standbys. The lock belongs to the session, so when the
//! process or its connection dies PostgreSQL frees it and a standby takes over.

use std::future::Future;
use std::time::Duration;

use cartflow_common::DatabaseUrl;
use cartflow_common::retry::Backoff;
use prometheus::IntGauge;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;

/// Runs `lead` (one connection's life: standby, then active) until it ends cleanly or fails
/// for good, starting it again after a back-off while `retry` says its error may pass (logged
/// with `again`); `active` is zero between lives.
pub(crate) async fn serve<F, Fut>(
    mut lead: F,
    retry: impl Fn(&Error) -> bool,
    again: &str,
    active: &IntGauge,
    url: &DatabaseUrl,
    shutdown: &CancellationToken,
) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match lead().await {
            Ok(()) => return Ok(()),
            Err(e) if retry(&e) && !shutdown.is_cancelled() => {
                active.set(0);
                warn!(error = %e, retry_in = ?backoff.peek(), "{again}");
                if !backoff.wait(shutdown).await {
                    return Ok(());
                }
            }
            Err(e) => return Err(e.explained(url)),
        }
    }
}

/// Waits until this session holds advisory lock `lock`, trying every `poll`; `who` names the
/// service in the standby log line. Returns false when shut down first.
pub(crate) async fn acquire(
    client: &Client,
    lock: i64,
    poll: Duration,
    who: &str,
    shutdown: &CancellationToken,
) -> Result<bool, Error> {
    let mut announced = false;
    loop {
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&lock])
            .await?;
        if row.get::<_, bool>(0) {
            return Ok(true);
        }
        if !announced {
            info!("Another {who} is active; waiting as standby.");
            announced = true;
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = shutdown.cancelled() => return Ok(false),
        }
    }
}
