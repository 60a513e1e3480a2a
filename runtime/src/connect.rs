//! URL schemes → backends: opens the storage and the external queue a [`Config`] names, each
//! backend behind its cargo feature.

use std::sync::Arc;

use switchyard_core::{Error, Queue, Result, Storage};

use crate::config::Config;
pub use crate::schemes::{queue_scheme, storage_scheme};

/// Opens the configured storage (not migrated).
pub async fn connect_storage(config: &Config) -> Result<Arc<dyn Storage>> {
    open_storage(config, false).await
}

/// The longest a tool that must not create anything waits for the storage's server to answer
/// a first connection ([`connect_storage_existing`]).
pub const EXISTING_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the configured storage for a tool that must not create anything (the read-only
/// commands, `doctor`, `destroy`): a SQLite file that does not exist is a `NotFound` error
/// instead of a new empty database, the first connection waits at most
/// [`EXISTING_CONNECT_TIMEOUT`], and Redis' persistence warning is left to `doctor`. Not
/// migrated, and nothing is written on connecting.
pub async fn connect_storage_existing(config: &Config) -> Result<Arc<dyn Storage>> {
    open_storage(config, true).await
}

async fn open_storage(config: &Config, existing: bool) -> Result<Arc<dyn Storage>> {
    let _ = existing; // unused when no backend that reads it is compiled in
    let scheme = storage_scheme(&config.storage)?;
    match scheme {
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            let mut c = switchyard_sqlite::SqliteConfig::new(&config.storage)
                .with_prefix(&config.prefix)
                .with_create_if_missing(!existing);
            c.max_payload_bytes = config.max_payload_bytes;
            Ok(Arc::new(
                switchyard_sqlite::SqliteStorage::connect(c).await?,
            ))
        }
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            let mut c = switchyard_postgres::PostgresConfig::new(&config.storage)
                .with_prefix(&config.prefix);
            c.max_payload_bytes = config.max_payload_bytes;
            c.listen = config.postgres.listen;
            c.max_connections = config.postgres.max_connections;
            c.synchronous_commit = config.postgres.synchronous_commit;
            if existing {
                c.acquire_timeout = c.acquire_timeout.min(EXISTING_CONNECT_TIMEOUT);
            }
            Ok(Arc::new(
                switchyard_postgres::PostgresStorage::connect(c).await?,
            ))
        }
        #[cfg(feature = "redis")]
        "redis" | "rediss" => {
            let mut c = switchyard_redis::RedisConfig::new(&config.storage)
                .with_prefix(&config.prefix)
                .with_persistence_warning(!existing);
            c.max_payload_bytes = config.max_payload_bytes;
            c.finished_ttl = config.redis_finished_ttl();
            let c = redis_tls(c, config);
            Ok(Arc::new(switchyard_redis::RedisStorage::connect(c).await?))
        }
        other => Err(Error::config(format!(
            "key `storage`: scheme `{other}` is not compiled in"
        ))),
    }
}

/// Opens the configured external queue, or `None` for the storage's own.
pub async fn connect_queue(config: &Config) -> Result<Option<Arc<dyn Queue>>> {
    let scheme = queue_scheme(&config.queue)?;
    match scheme {
        "storage" => Ok(None),
        #[cfg(feature = "sqs")]
        "sqs" => {
            let c = switchyard_sqs::SqsConfig::from_url(&config.queue)?
                .with_prefix(&config.prefix)
                .with_region(config.sqs.region.clone())
                .with_endpoint_url(config.sqs.endpoint_url.clone())
                .with_fifo(config.sqs.fifo)
                .with_tls_ca_file(config.sqs.tls_ca_file.clone())
                .with_ids_per_message(config.dispatcher.ids_per_message);
            Ok(Some(Arc::new(switchyard_sqs::SqsQueue::connect(c).await?)))
        }
        #[cfg(feature = "rabbitmq")]
        "amqp" | "amqps" => {
            let c = rabbit_config(config);
            Ok(Some(Arc::new(
                switchyard_rabbitmq::RabbitQueue::connect(c).await?,
            )))
        }
        #[cfg(feature = "redis")]
        "redis" | "rediss" => {
            let c = switchyard_redis::RedisConfig::new(&config.queue).with_prefix(&config.prefix);
            let c = redis_tls(c, config);
            Ok(Some(Arc::new(
                switchyard_redis::RedisQueue::connect(c).await?,
            )))
        }
        other => Err(Error::config(format!(
            "key `queue`: scheme `{other}` is not compiled in"
        ))),
    }
}

/// The RabbitMQ queue's settings from `queue`, `prefix`, `dispatcher.ids_per_message` and the
/// `[rabbitmq]` section (its unset keys keep the adapter's defaults). The configuration has
/// checked every range.
#[cfg(feature = "rabbitmq")]
pub fn rabbit_config(config: &Config) -> switchyard_rabbitmq::RabbitConfig {
    use std::time::Duration;
    let r = &config.rabbitmq;
    let mut c = switchyard_rabbitmq::RabbitConfig::new(&config.queue)
        .with_prefix(&config.prefix)
        .with_ids_per_message(config.dispatcher.ids_per_message);
    let d = Duration::from_secs_f64;
    if let Some(n) = r.prefetch {
        c = c.with_prefetch(u16::try_from(n).unwrap_or(u16::MAX));
    }
    if let Some(n) = r.max_priority {
        c = c.with_max_priority(u8::try_from(n).unwrap_or(u8::MAX));
    }
    if let Some(n) = r.heartbeat_secs {
        c = c.with_heartbeat(Duration::from_secs(u64::from(n)));
    }
    if let Some(v) = r.connect_timeout_secs {
        c = c.with_connect_timeout(d(v));
    }
    if let Some(v) = r.reconnect_backoff_max_secs {
        c = c.with_reconnect_backoff_max(d(v));
    }
    if let Some(v) = r.settle_after_secs {
        c = c.with_settle_after(d(v));
    }
    if let Some(v) = r.nack_hold_max_secs {
        c = c.with_nack_hold_max(d(v));
    }
    if let Some(v) = r.queue_expires_secs {
        c = c.with_queue_expires(d(v));
    }
    if let Some(v) = r.consumer_timeout_secs {
        c = c.with_consumer_timeout(d(v));
    }
    if let Some(name) = &r.connection_name {
        c = c.with_connection_name(name);
    }
    c
}

/// The `[redis]` TLS settings, for a `rediss://` URL (a plain `redis://` one ignores them, so a
/// plain storage may sit beside a TLS queue).
#[cfg(feature = "redis")]
fn redis_tls(
    mut c: switchyard_redis::RedisConfig,
    config: &Config,
) -> switchyard_redis::RedisConfig {
    if !c.url.starts_with("rediss://") {
        return c;
    }
    c.tls_ca_file.clone_from(&config.redis.tls_ca_file);
    c.with_tls_insecure(config.redis.tls_insecure)
}
