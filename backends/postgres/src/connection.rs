//! The connection side of the backend: [`Db`], the state every operation works on (the pool,
//! the statements, the wake-ups and the listener task), opened by [`Db::open`] with the pool
//! options, and [`Db::announce`], which wakes workers in every process.

use std::sync::Arc;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use switchyard_core::adapter::{redact_url, WakeHub};
use switchyard_core::{Error, ErrorKind, Result, StorageCapabilities};
use tokio::task::JoinHandle;

use crate::config::PostgresConfig;
use crate::error::connect_err;
use crate::listener::{self, ListenerStatus};
use crate::sql::Statements;

/// What one storage (and all its clones) shares. The listener task stops when it is dropped.
#[derive(Debug)]
pub(crate) struct Db {
    pub pool: PgPool,
    pub prefix: String,
    pub sql: Statements,
    pub caps: StorageCapabilities,
    pub wake: WakeHub,
    pub listener: Option<JoinHandle<()>>,
    pub listener_status: Arc<ListenerStatus>,
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(task) = &self.listener {
            task.abort();
        }
    }
}

impl Db {
    /// Checks `config`, opens the pool and, when `config.listen` is on, starts the wake-up
    /// listener on its own connection. Must be called inside a Tokio runtime.
    pub(crate) async fn open(config: PostgresConfig) -> Result<Self> {
        let options = config.connect_options()?;
        let pool_options = options
            .clone()
            .application_name(&format!("switchyard {}", config.prefix));
        // One direct connection first: a pool hides why it cannot connect ("pool timed out"
        // after the whole acquire timeout), a direct connect says it at once ("connection
        // refused", a bad password, an unknown database).
        let where_ = || {
            format!(
                "cannot connect to PostgreSQL at `{}`",
                redact_url(&config.url)
            )
        };
        match tokio::time::timeout(config.acquire_timeout, pool_options.connect()).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
            Ok(Err(e)) => return Err(Error::unavailable(where_(), e)),
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "{} (no answer within {:?}; is the host reachable?)",
                        where_(),
                        config.acquire_timeout
                    ),
                ))
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            // A worker uses a few connections at once (fetchers, completer, heartbeater): keep
            // them open so the first claims after start or an idle spell do not pay a connect.
            .min_connections(config.max_connections.clamp(1, 3))
            .acquire_timeout(config.acquire_timeout)
            // A dead connection fails its next statement, which `retrying` runs again on
            // another; sqlx tests every connection when it comes back to the pool. Testing it
            // again on every acquire would cost one extra round trip per operation.
            .test_before_acquire(false)
            .connect_with(pool_options)
            .await
            .map_err(|e| connect_err(&config.url, e))?;
        let sql = Statements::new(&config.prefix, config.synchronous_commit);
        let wake = WakeHub::new();
        let listener_status = Arc::new(ListenerStatus::default());
        let listener = config.listen.then(|| {
            listener::spawn(
                options.application_name(&format!("switchyard-listen {}", config.prefix)),
                sql.channel.clone(),
                wake.clone(),
                listener_status.clone(),
            )
        });
        Ok(Self {
            pool,
            prefix: config.prefix,
            sql,
            caps: StorageCapabilities::full()
                .with_max_payload_bytes(config.max_payload_bytes)
                .with_transactional_enqueue(true)
                .with_cross_process_wakeups(config.listen),
            wake,
            listener,
            listener_status,
        })
    }

    /// Tells listeners in every process that jobs may be runnable (rare paths: rescue, retry,
    /// abort). A failure only delays workers until their next poll.
    pub(crate) async fn announce(&self) {
        self.wake.notify();
        let res = sqlx::query(&self.sql.notify)
            .bind(&self.sql.channel)
            .execute(&self.pool)
            .await;
        if let Err(error) = res {
            tracing::debug!(%error, "postgres pg_notify failed; workers will poll");
        }
    }
}
