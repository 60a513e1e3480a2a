//! What the storage and the queue share about talking to Redis: opening a client and its
//! self-reconnecting connection ([`Conn`], which also reconnects after a failover answers
//! `READONLY`), and retrying idempotent calls on it. The error mapping is in `error.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisError;
use switchyard_core::adapter::redact_url;
use switchyard_core::{Error, Result};

use crate::config::RedisConfig;
use crate::error::{is_transient, redis_err, server_code};

/// How long one attempt to open a connection may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(CONNECTION_TIMEOUT)
        .set_response_timeout(Duration::from_secs(30))
        .set_number_of_retries(6)
        .set_max_delay(2_000)
}

/// The connection the storage or the queue sends its commands on: a [`ConnectionManager`],
/// which reconnects by itself when the connection drops, replaced by a new one when the server
/// answers `READONLY`. A failover that demotes the primary to a replica leaves the connection
/// open, so only a new connection reaches the new primary (through the DNS name or proxy the
/// URL names); Sidekiq's client reconnects on `READONLY` for the same reason.
pub(crate) struct Conn {
    client: redis::Client,
    current: RwLock<ConnectionManager>,
    /// Set while a replacement runs, and until [`REPLACE_EVERY`] after it started, so a fleet
    /// of failing calls during a failover reconnects once a second, not once per call.
    replacing: AtomicBool,
}

/// The shortest time between two replacements of a [`Conn`]'s connection.
const REPLACE_EVERY: Duration = Duration::from_secs(1);

/// Clears [`Conn::replacing`] when the replacement task ends, even if it is dropped (its
/// runtime shut down), so replacements are never off for good.
struct ClearOnDrop(Arc<Conn>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.replacing.store(false, Ordering::SeqCst);
    }
}

impl Conn {
    /// A handle on the current connection (cheap: a clone of the manager).
    pub(crate) fn get(&self) -> ConnectionManager {
        self.current.read().expect("poisoned").clone()
    }

    /// Switchyard's error for a failed `what` (see [`redis_err`]); a `READONLY` answer first
    /// starts the replacement of the connection.
    pub(crate) fn error(self: &Arc<Self>, what: &'static str, e: RedisError) -> Error {
        self.note(&e);
        redis_err(what)(e)
    }

    /// Starts replacing the connection when `e` says the server turned read-only: at most one
    /// replacement at a time and one per [`REPLACE_EVERY`]; calls meanwhile keep the old
    /// connection and fail or are retried. The wake-up listener keeps its own connection
    /// (Pub/Sub messages reach replicas too; polling is the backstop).
    pub(crate) fn note(self: &Arc<Self>, e: &RedisError) {
        if server_code(e) != Some("READONLY") || self.replacing.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::warn!("Redis answered READONLY (a failover made it a replica); reconnecting");
        let guard = ClearOnDrop(Arc::clone(self));
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            match ConnectionManager::new_with_config(guard.0.client.clone(), manager_config()).await
            {
                Ok(fresh) => *guard.0.current.write().expect("poisoned") = fresh,
                Err(e) => tracing::warn!(error = %e, "reconnecting after READONLY failed"),
            }
            tokio::time::sleep_until(started + REPLACE_EVERY).await;
            drop(guard);
        });
    }
}

/// Checks `config` and connects. `key` is the configuration key the URL came from
/// (`storage` or `queue`), for messages: a malformed URL or prefix is a `Config` error naming
/// it; an unreachable server is `Unavailable`. The manager reconnects by itself afterwards.
pub(crate) async fn open(config: &RedisConfig, key: &str) -> Result<(redis::Client, Arc<Conn>)> {
    config.validate_as(key)?;
    let client = client(config, key)?;
    // One direct attempt first: the manager retries its first connection for many seconds
    // before it reports why it failed; an unreachable server should say so at once
    // ("connection refused") or after the connection timeout, and a TLS failure what to set.
    let probe = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(CONNECTION_TIMEOUT)
        .set_response_timeout(CONNECTION_TIMEOUT);
    if let Err(e) = client
        .get_multiplexed_async_connection_with_config(&probe)
        .await
    {
        #[cfg(feature = "tls")]
        if config.url.starts_with("rediss://") {
            if let Some(why) = tls_failure(&e, config).await {
                return Err(Error::config(format!(
                    "cannot connect to Redis at `{}`: {why}",
                    redact_url(&config.url)
                ))
                .with_source(e));
            }
        }
        return Err(Error::unavailable(
            format!("cannot connect to Redis at `{}`", redact_url(&config.url)),
            e,
        ));
    }
    let conn = ConnectionManager::new_with_config(client.clone(), manager_config())
        .await
        .map_err(|e| {
            Error::unavailable(
                format!("cannot connect to Redis at `{}`", redact_url(&config.url)),
                e,
            )
        })?;
    let conn = Arc::new(Conn {
        client: client.clone(),
        current: RwLock::new(conn),
        replacing: AtomicBool::new(false),
    });
    Ok((client, conn))
}

/// The redis crate's client for `config`: with `rediss://`, trusting `tls_ca_file` when set.
fn client(config: &RedisConfig, key: &str) -> Result<redis::Client> {
    let invalid = |e: RedisError| {
        Error::config(format!(
            "key `{key}`: `{}` is not a valid Redis URL; accepted: \
             redis://[user:password@]host[:port][/db], rediss://… (TLS)",
            redact_url(&config.url)
        ))
        .with_source(e)
    };
    let url = config.driver_url();
    #[cfg(feature = "tls")]
    if let Some(path) = &config.tls_ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            Error::config(format!(
                "key `redis.tls_ca_file`: cannot read `{}`; accepted: a readable PEM file with \
                 the CA certificate(s) that signed the server's certificate",
                path.display()
            ))
            .with_source(e)
        })?;
        let certs = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        };
        return redis::Client::build_with_tls(url.as_str(), certs).map_err(|e| {
            Error::config(format!(
                "key `redis.tls_ca_file`: `{}` holds no usable PEM certificate; accepted: a \
                 PEM file with the CA certificate(s) that signed the server's certificate",
                path.display()
            ))
            .with_source(e)
        });
    }
    redis::Client::open(url.as_str()).map_err(invalid)
}

/// What a failed first connection over TLS means, with the fix: a certificate that cannot be
/// trusted, a wrong name, a plain port (it answers a plain `PING`), or a refused handshake.
/// `None` for other failures, which are `Unavailable`.
#[cfg(feature = "tls")]
async fn tls_failure(e: &redis::RedisError, config: &RedisConfig) -> Option<String> {
    use switchyard_core::adapter::{tls_problem, TlsProblem};
    let problem = match tls_problem(e) {
        Some(problem) => problem,
        // A plain Redis port reads the TLS greeting as the start of a command and waits for
        // the rest, so the handshake stalls until the timeout rather than failing.
        None if (e.is_timeout() || e.is_io_error()) && answers_plain_ping(&config.url).await => {
            TlsProblem::NotTls
        }
        None => return None,
    };
    let fix = match problem {
        TlsProblem::NotTrusted => {
            "name the CA that signed it with the setting `redis.tls_ca_file` (a PEM file; \
             `SWITCHYARD_REDIS__TLS_CA_FILE`, or `RedisConfig::tls_ca_file` in code), or skip \
             the checks with `rediss://…#insecure` (`redis.tls_insecure = true`), which leaves \
             the connection open to interception"
        }
        TlsProblem::WrongName => {
            "connect with the host name the certificate names, or skip the checks with \
             `rediss://…#insecure`"
        }
        TlsProblem::NotTls => "use the server's TLS port, or redis:// for a plain port",
        TlsProblem::Refused => {
            "Redis asks for a client certificate unless the server sets `tls-auth-clients no` \
             (or `optional`); Switchyard does not send one"
        }
        _ => "check the server's certificate, or `redis.tls_ca_file`",
    };
    Some(format!("{}; {fix}", problem.describe()))
}

/// Whether the server `url` names answers a plain-text `PING` (`+PONG`, or an error such as
/// `-NOAUTH`) within a second: a plain Redis port, not a TLS one.
#[cfg(feature = "tls")]
async fn answers_plain_ping(url: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let Some(host) = parsed.host_str() else {
        return false;
    };
    let addr = (
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        parsed.port().unwrap_or(6379),
    );
    let ping = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut first = [0u8; 1];
        stream.read_exact(&mut first).await.ok()?;
        Some(matches!(first[0], b'+' | b'-'))
    };
    tokio::time::timeout(Duration::from_secs(1), ping)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Runs an idempotent call on `conn`, trying again a few times while the connection is being
/// re-established (a killed connection fails the request in flight).
pub(crate) async fn retrying<T, F, Fut>(
    conn: &Arc<Conn>,
    what: &'static str,
    mut op: F,
) -> Result<T>
where
    F: FnMut(ConnectionManager) -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<T>>,
{
    let mut delay = Duration::from_millis(25);
    let mut tries = 0;
    loop {
        match op(conn.get()).await {
            Ok(v) => return Ok(v),
            Err(e) if is_transient(&e) && tries < 4 => {
                conn.note(&e);
                tracing::debug!(error = %e, what, "Redis call failed; trying again");
                tries += 1;
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(conn.error(what, e)),
        }
    }
}
