//! SIGINT and SIGTERM as a cancellation token.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A token cancelled on the first SIGINT or SIGTERM. A second signal exits at once with status
/// 130, for the operator who does not want to wait for the drain.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            warn!("Could not install signal handlers; stop the process with SIGKILL.");
            return;
        };
        tokio::select! {
            _ = int.recv() => info!(signal = "SIGINT", "Shutting down."),
            _ = term.recv() => info!(signal = "SIGTERM", "Shutting down."),
        }
        cancel.cancel();
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        warn!("Second signal: exiting without draining.");
        std::process::exit(130);
    });
    token
}
