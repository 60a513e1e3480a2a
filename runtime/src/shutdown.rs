//! Two-stage shutdown: the first request stops fetching and lets running jobs finish; the
//! second (or the drain timeout) aborts them and releases them for re-delivery.

use tokio_util::sync::CancellationToken;

/// A shutdown switch shared by a worker and whoever stops it.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    graceful: CancellationToken,
    hard: CancellationToken,
}

impl Shutdown {
    /// A switch that has not been pulled.
    pub fn new() -> Self {
        Self::default()
    }

    /// First call: graceful (stop fetching, drain). Second call: hard (abort running jobs).
    pub fn request(&self) {
        if self.graceful.is_cancelled() {
            self.hard.cancel();
        } else {
            self.graceful.cancel();
        }
    }

    /// Stops fetching and drains.
    pub fn graceful(&self) {
        self.graceful.cancel();
    }

    /// Aborts running jobs now (implies graceful).
    pub fn hard(&self) {
        self.graceful.cancel();
        self.hard.cancel();
    }

    /// Whether graceful shutdown was requested.
    pub fn is_graceful(&self) -> bool {
        self.graceful.is_cancelled()
    }

    /// Whether hard shutdown was requested.
    pub fn is_hard(&self) -> bool {
        self.hard.is_cancelled()
    }

    /// Resolves when graceful shutdown is requested.
    pub async fn graceful_requested(&self) {
        self.graceful.cancelled().await
    }

    /// Resolves when hard shutdown is requested.
    pub async fn hard_requested(&self) {
        self.hard.cancelled().await
    }

    pub(crate) fn hard_token(&self) -> &CancellationToken {
        &self.hard
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Pulls `shutdown` once per OS signal: the first signal is graceful, the second hard.
pub fn install_signal_handlers(shutdown: Shutdown) {
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutdown requested: finishing running jobs (signal again to abort them)");
        shutdown.request();
        signal().await;
        tracing::warn!("second signal: aborting running jobs and releasing them");
        shutdown.request();
    });
}
