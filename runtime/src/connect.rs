//! URL schemes → backends: opens the storage and the external queue a [`Config`] names, each
//! backend behind its cargo feature.

use std::sync::Arc;

use switchyard_core::{Error, Queue, Result, Storage};

use crate::config::Config;
pub use crate::schemes::{queue_scheme, storage_scheme};

/// Opens the configured storage (not migrated).
pub async fn connect_storage(config: &Config) -> Result<Arc<dyn Storage>> {
    let scheme = storage_scheme(&config.storage)?;
    match scheme {
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            let mut c =
                switchyard_sqlite::SqliteConfig::new(&config.storage).with_prefix(&config.prefix);
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
            Ok(Arc::new(
                switchyard_postgres::PostgresStorage::connect(c).await?,
            ))
        }
        #[cfg(feature = "redis")]
        "redis" | "rediss" => {
            let mut c =
                switchyard_redis::RedisConfig::new(&config.storage).with_prefix(&config.prefix);
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
            let c = switchyard_rabbitmq::RabbitConfig::new(&config.queue)
                .with_prefix(&config.prefix)
                .with_ids_per_message(config.dispatcher.ids_per_message);
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
