//! The wake-up listener: a background task that `LISTEN`s on the instance's channel and bumps
//! the [`WakeHub`] on every notification. It holds one dedicated connection (outside the main
//! pool) and rebuilds it by itself, with backoff, whenever it is lost — a database restart, a
//! `pg_terminate_backend`, a network cut. Workers poll as a backstop meanwhile, and every
//! reconnection wakes them once, since notifications sent while it was down are lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use switchyard_core::WakeHub;
use tokio::task::JoinHandle;

/// What the listener is doing, for tests and `doctor`.
#[derive(Debug, Default)]
pub(crate) struct ListenerStatus {
    /// Whether it is listening right now.
    pub connected: AtomicBool,
    /// How many times it has (re)connected and subscribed.
    pub connects: AtomicU64,
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts the listener task on the current Tokio runtime.
pub(crate) fn spawn(
    options: PgConnectOptions,
    channel: String,
    hub: WakeHub,
    status: Arc<ListenerStatus>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // A pool of one, used by PgListener only to (re)open its connection.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options);
        let mut backoff = MIN_BACKOFF;
        loop {
            match subscribe(&pool, &channel).await {
                Ok(mut listener) => {
                    backoff = MIN_BACKOFF;
                    status.connected.store(true, Ordering::SeqCst);
                    status.connects.fetch_add(1, Ordering::SeqCst);
                    tracing::debug!(%channel, "postgres listener subscribed");
                    // Anything enqueued while we were not listening was not announced.
                    hub.notify();
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(_)) => hub.notify(),
                            // The connection was lost and re-established inside PgListener
                            // (it re-subscribes by itself); notifications may have been missed.
                            Ok(None) => {
                                status.connects.fetch_add(1, Ordering::SeqCst);
                                hub.notify();
                            }
                            Err(error) => {
                                tracing::warn!(%error, %channel, "postgres listener lost its connection; reconnecting (workers poll meanwhile)");
                                break;
                            }
                        }
                    }
                    status.connected.store(false, Ordering::SeqCst);
                }
                Err(error) => {
                    tracing::warn!(%error, %channel, retry_in = ?backoff, "postgres listener cannot subscribe (workers poll meanwhile)");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    })
}

async fn subscribe(pool: &sqlx::PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.ignore_pool_close_event(true);
    listener.listen(channel).await?;
    Ok(listener)
}
