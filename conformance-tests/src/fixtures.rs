//! The test servers in one place, migrated storages on them for one prefix, and
//! [`storage_matrix_suite!`](crate::storage_matrix_suite), the storage × queue matrix a broker
//! adapter runs the suite on. Behind the crate features `sqlite`, `postgres` and `redis` (one
//! per storage; the matrix needs all three).
//!
//! The storages are built from URLs through the runtime's configuration path
//! ([`switchyard::connect::connect_storage`]), as a deployment builds them.

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
use std::sync::Arc;

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
use switchyard_core::Storage;

/// The test PostgreSQL server: `SWITCHYARD_TEST_POSTGRES_URL`, default the loopback server,
/// database `test`.
pub fn postgres_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into())
}

/// The test Redis server: `SWITCHYARD_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("SWITCHYARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The test RabbitMQ broker: `SWITCHYARD_TEST_AMQP_URL`, default
/// `amqp://guest:guest@127.0.0.1:5672/%2f`.
pub fn amqp_url() -> String {
    std::env::var("SWITCHYARD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The SQS emulator (`scripts/fauxqs/start.sh`): `SWITCHYARD_TEST_SQS_ENDPOINT`, default
/// `http://127.0.0.1:4577`.
pub fn sqs_endpoint() -> String {
    std::env::var("SWITCHYARD_TEST_SQS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4577".into())
}

/// A migrated SQLite storage with `prefix`, in its own file named after the prefix in the
/// system's temporary directory (`switchyard-conformance/`).
#[cfg(feature = "sqlite")]
pub async fn sqlite(prefix: &str) -> Arc<dyn Storage> {
    let dir = std::env::temp_dir().join("switchyard-conformance");
    std::fs::create_dir_all(&dir).expect("create the test directory");
    let path = dir.join(format!("{prefix}.db"));
    connect(
        format!("sqlite://{}", path.display()),
        prefix,
        "open sqlite",
        |_| {},
    )
    .await
}

/// A migrated PostgreSQL storage with `prefix` on [`postgres_url`], with a pool of 4
/// connections (many cases run at once against one server).
#[cfg(feature = "postgres")]
pub async fn postgres(prefix: &str) -> Arc<dyn Storage> {
    connect(
        postgres_url(),
        prefix,
        "connect to postgres (set SWITCHYARD_TEST_POSTGRES_URL)",
        |c| c.postgres.max_connections = 4,
    )
    .await
}

/// A migrated Redis storage with `prefix` on [`redis_url`].
#[cfg(feature = "redis")]
pub async fn redis(prefix: &str) -> Arc<dyn Storage> {
    connect(
        redis_url(),
        prefix,
        "connect to Redis (set SWITCHYARD_TEST_REDIS_URL)",
        |_| {},
    )
    .await
}

/// Opens `url` with `prefix` through the runtime's configuration (defaults, then `tune`), and
/// migrates it; panics with `what` when the server cannot be reached.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
async fn connect(
    url: String,
    prefix: &str,
    what: &str,
    tune: impl FnOnce(&mut switchyard::Config),
) -> Arc<dyn Storage> {
    let mut config = switchyard::Config {
        storage: url,
        prefix: prefix.to_string(),
        ..switchyard::Config::default()
    };
    tune(&mut config);
    let storage = switchyard::connect::connect_storage(&config)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    storage.migrate().await.expect("migrate");
    storage
}

/// Instantiates [`conformance_suite!`](crate::conformance_suite) once per storage, each
/// composed with the broker adapter's queue: the modules `sqlite`, `postgres` and `redis` of
/// the calling file, with the same tests in each. Needs the features `sqlite`, `postgres` and
/// `redis` of this crate.
///
/// `$queue` is an `async fn(&str) -> Arc<dyn Queue>` that connects the queue with the given
/// prefix; each case's storage and queue share one random prefix. It is named from inside the
/// generated modules (which `use super::*`), so a function of the calling module or an absolute
/// path. Options, in this order:
///
/// - `compose = f`: `fn(Arc<dyn Storage>, Arc<dyn Queue>) -> Backend` builds the backend
///   (default [`Backend::with_queue`](crate::Backend::with_queue)), e.g. to shrink
///   `max_native_delay`;
/// - `modules = (a, b, c)`: other names for the three modules (a file that uses the `redis`
///   crate cannot name a module `redis`).
///
/// ```ignore
/// async fn rabbit(prefix: &str) -> Arc<dyn Queue> { /* connect with prefix */ }
/// switchyard_conformance::storage_matrix_suite!(rabbit);
/// ```
#[macro_export]
macro_rules! storage_matrix_suite {
    (@matrix $queue:path, $compose:path, $sqlite:ident, $postgres:ident, $redis:ident) => {
        $crate::storage_matrix_suite!(@storage $queue, $compose, $sqlite, sqlite);
        $crate::storage_matrix_suite!(@storage $queue, $compose, $postgres, postgres);
        $crate::storage_matrix_suite!(@storage $queue, $compose, $redis, redis);
    };
    (@storage $queue:path, $compose:path, $module:ident, $storage:ident) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            async fn backend() -> $crate::Backend {
                let prefix = $crate::random_prefix();
                let storage = $crate::fixtures::$storage(&prefix).await;
                $compose(storage, $queue(&prefix).await)
            }

            $crate::conformance_suite!(backend);
        }
    };
    ($queue:path, compose = $compose:path, modules = ($a:ident, $b:ident, $c:ident) $(,)?) => {
        $crate::storage_matrix_suite!(@matrix $queue, $compose, $a, $b, $c);
    };
    ($queue:path, compose = $compose:path $(,)?) => {
        $crate::storage_matrix_suite!(@matrix $queue, $compose, sqlite, postgres, redis);
    };
    ($queue:path, modules = ($a:ident, $b:ident, $c:ident) $(,)?) => {
        $crate::storage_matrix_suite!(
            @matrix $queue, $crate::Backend::with_queue, $a, $b, $c
        );
    };
    ($queue:path $(,)?) => {
        $crate::storage_matrix_suite!(
            @matrix $queue, $crate::Backend::with_queue, sqlite, postgres, redis
        );
    };
}
