//! From configuration to backends: a registry of URL schemes, each behind its cargo feature.

use std::sync::Arc;

use switchyard_core::{Error, Queue, Result, Storage};

use crate::config::Config;

/// Storage URL schemes: (scheme, cargo feature, compiled in).
const STORAGE_SCHEMES: &[(&str, &str, bool)] = &[
    ("sqlite", "sqlite", cfg!(feature = "sqlite")),
    ("postgres", "postgres", cfg!(feature = "postgres")),
    ("postgresql", "postgres", cfg!(feature = "postgres")),
    ("redis", "redis", cfg!(feature = "redis")),
    ("rediss", "redis", cfg!(feature = "redis")),
];

/// Queue URL schemes besides `storage`.
const QUEUE_SCHEMES: &[(&str, &str, bool)] = &[
    ("sqs", "sqs", cfg!(feature = "sqs")),
    ("amqp", "rabbitmq", cfg!(feature = "rabbitmq")),
    ("amqps", "rabbitmq", cfg!(feature = "rabbitmq")),
    ("redis", "redis", cfg!(feature = "redis")),
    ("rediss", "redis", cfg!(feature = "redis")),
];

fn accepted(schemes: &[(&str, &str, bool)], extra: &str) -> String {
    let mut parts: Vec<String> = extra
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for (scheme, feature, on) in schemes {
        parts.push(if *on {
            format!("{scheme}://…")
        } else {
            format!("{scheme}://… (needs cargo feature `{feature}`)")
        });
    }
    parts.join(", ")
}

fn scheme_of(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    (!scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+'))
    .then_some(scheme)
}

/// Checks the `storage` URL and returns its scheme.
pub fn storage_scheme(url: &str) -> Result<&str> {
    let bad = || {
        Error::config(format!(
            "key `storage`: `{url}` is not a supported storage URL; accepted: {}",
            accepted(STORAGE_SCHEMES, "")
        ))
    };
    let scheme = scheme_of(url).ok_or_else(bad)?;
    match STORAGE_SCHEMES.iter().find(|(s, _, _)| *s == scheme) {
        Some((_, _, true)) => Ok(scheme),
        _ => Err(bad()),
    }
}

/// Checks the `queue` setting and returns its scheme (`storage` for the storage's own).
pub fn queue_scheme(url: &str) -> Result<&str> {
    if url == "storage" {
        return Ok("storage");
    }
    let bad = || {
        Error::config(format!(
            "key `queue`: `{url}` is not a supported queue; accepted: {}",
            accepted(QUEUE_SCHEMES, "storage")
        ))
    };
    let scheme = scheme_of(url).ok_or_else(bad)?;
    match QUEUE_SCHEMES.iter().find(|(s, _, _)| *s == scheme) {
        Some((_, _, true)) => Ok(scheme),
        _ => Err(bad()),
    }
}

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
            Ok(Some(Arc::new(
                switchyard_redis::RedisQueue::connect(c).await?,
            )))
        }
        other => Err(Error::config(format!(
            "key `queue`: scheme `{other}` is not compiled in"
        ))),
    }
}
