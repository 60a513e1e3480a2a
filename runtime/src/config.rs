//! Configuration (figment): defaults < `switchyard.toml` < `SWITCHYARD_*` environment variables
//! (nested keys with `__`, e.g. `SWITCHYARD_WORKER__CONCURRENCY=32`). Unknown keys are errors
//! that name the key and list the accepted ones.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use switchyard_core::{Error, Result};

use crate::backoff::Backoff;
use crate::dispatcher::DispatcherConfig;
use crate::maintenance::MaintenanceConfig;
use crate::worker::WorkerConfig;

/// The default storage when nothing is configured: a SQLite file in the working directory.
pub const DEFAULT_STORAGE: &str = "sqlite://switchyard.db";

/// Everything Switchyard reads from configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where job records live: `sqlite://…`, `postgres://…`, `redis://…`.
    pub storage: String,
    /// How jobs are delivered: `storage` (the storage's own queue), `sqs://…`, `amqp://…`,
    /// `redis://…`.
    pub queue: String,
    /// Table/key prefix, so several instances share one database.
    pub prefix: String,
    /// Largest payload accepted at enqueue, in bytes of JSON.
    pub max_payload_bytes: usize,
    /// Run migrations when connecting.
    pub auto_migrate: bool,
    /// Worker settings, defaults for every queue.
    pub worker: WorkerSection,
    /// Queues this process works, with optional per-queue concurrency.
    pub queues: BTreeMap<String, QueueSection>,
    /// The rescuer plugin.
    pub rescuer: RescuerSection,
    /// The pruner plugin.
    pub pruner: PrunerSection,
    /// The dispatcher (external queues only).
    pub dispatcher: DispatcherSection,
    /// PostgreSQL-specific settings.
    pub postgres: PostgresSection,
    /// Amazon SQS settings (queue = "sqs://…").
    pub sqs: SqsSection,
    /// Redis settings (storage or queue = "redis://…" / "rediss://…").
    pub redis: RedisSection,
    /// The cron plugin.
    pub cron: crate::cron::CronSection,
    /// Schedules declared in configuration, by id (`docs/cron.md`).
    pub schedules: BTreeMap<String, crate::cron::ScheduleSection>,
    /// RabbitMQ settings (queue = "amqp://…").
    pub rabbitmq: RabbitmqSection,
}

/// `[worker]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSection {
    /// Jobs run at once per queue.
    pub concurrency: usize,
    /// Lease length in seconds.
    #[serde(deserialize_with = "seconds::de")]
    pub lease_secs: f64,
    /// Heartbeat interval in seconds.
    #[serde(deserialize_with = "seconds::de")]
    pub heartbeat_secs: f64,
    /// Polling backstop in milliseconds.
    pub poll_interval_ms: u64,
    /// Graceful shutdown timeout in seconds.
    #[serde(deserialize_with = "seconds::de")]
    pub shutdown_timeout_secs: f64,
    /// First retry delay in milliseconds.
    pub backoff_base_ms: u64,
    /// Longest retry delay in seconds.
    #[serde(deserialize_with = "seconds::de")]
    pub backoff_max_secs: f64,
    /// Retry delay jitter, 0.0 to 1.0.
    pub backoff_jitter: f64,
    /// Claims in flight at once per queue (overlaps a claim's round trip with running jobs).
    pub fetchers: usize,
}

/// `[queues.<name>]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSection {
    /// Overrides `worker.concurrency` for this queue.
    pub concurrency: Option<usize>,
    /// Overrides `worker.lease_secs` for this queue.
    #[serde(deserialize_with = "seconds::de_opt")]
    pub lease_secs: Option<f64>,
    /// Overrides `worker.heartbeat_secs` for this queue.
    #[serde(deserialize_with = "seconds::de_opt")]
    pub heartbeat_secs: Option<f64>,
    /// Overrides `worker.shutdown_timeout_secs` for this queue.
    #[serde(deserialize_with = "seconds::de_opt")]
    pub shutdown_timeout_secs: Option<f64>,
    /// Overrides `worker.backoff_base_ms` for this queue.
    pub backoff_base_ms: Option<u64>,
    /// Overrides `worker.backoff_max_secs` for this queue.
    #[serde(deserialize_with = "seconds::de_opt")]
    pub backoff_max_secs: Option<f64>,
    /// Overrides `worker.backoff_jitter` for this queue.
    pub backoff_jitter: Option<f64>,
    /// Global concurrency limit across every process, stored at start when Storage has no
    /// settings for the queue (the stored value wins; see docs/flow-control.md).
    pub global_concurrency: Option<u32>,
    /// Global rate limit `N/PERIOD` (e.g. `"100/1s"`), stored like `global_concurrency`.
    pub rate_limit: Option<String>,
    /// What the limits count per: `none`, `kind` or `payload.<field>`.
    pub partition: Option<String>,
}

/// `[rescuer]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RescuerSection {
    /// Run it.
    pub enabled: bool,
    /// Seconds between scans.
    #[serde(deserialize_with = "seconds::de")]
    pub interval_secs: f64,
}

/// `[pruner]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrunerSection {
    /// Run it.
    pub enabled: bool,
    /// Seconds between runs.
    #[serde(deserialize_with = "seconds::de")]
    pub interval_secs: f64,
    /// Keep finished jobs this many seconds.
    #[serde(deserialize_with = "seconds::de")]
    pub retention_secs: f64,
}

/// `[dispatcher]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatcherSection {
    /// Polling backstop in milliseconds.
    pub poll_interval_ms: u64,
    /// Lowers the queue's native delay limit (seconds).
    #[serde(deserialize_with = "seconds::de_opt")]
    pub max_native_delay_secs: Option<f64>,
    /// Republish a dispatched job not claimed after this many seconds.
    #[serde(deserialize_with = "seconds::de")]
    pub redispatch_after_secs: f64,
    /// Most job ids one broker message carries when a publish holds more messages than one
    /// broker batch (1 to 100; 1 turns bundles off). See docs/sqs.md, "Bundles".
    pub ids_per_message: usize,
}

/// `[postgres]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresSection {
    /// Use LISTEN/NOTIFY wake-ups (turn off behind PgBouncer in transaction mode).
    pub listen: bool,
    /// Pool size.
    pub max_connections: u32,
    /// Make the worker's hot path (claim, heartbeat, complete, rescue) wait for the WAL flush.
    /// Off by default; see docs/postgres.md.
    pub synchronous_commit: bool,
}

/// `[sqs]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqsSection {
    /// AWS region (default from the environment, else `us-east-1`).
    pub region: Option<String>,
    /// Endpoint override, e.g. an emulator on loopback.
    pub endpoint_url: Option<String>,
    /// Use FIFO queues.
    pub fifo: bool,
    /// A PEM file of CA certificate(s) to trust for an https endpoint besides the system's
    /// (an endpoint behind a private CA).
    pub tls_ca_file: Option<std::path::PathBuf>,
}

/// `[redis]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSection {
    /// The Redis storage's safety net: a finished job's hash expires this long after it
    /// finishes, even when no pruner runs. Unset: `pruner.retention_secs` plus one day, so
    /// the pruner always comes first. 0 turns the expiry off; with the Redis storage and the
    /// pruner on, any other value must be at least `pruner.retention_secs`, or jobs would
    /// vanish before their retention ends. At most [`MAX_REDIS_TTL_SECS`].
    #[serde(deserialize_with = "seconds::de_opt")]
    pub finished_ttl_secs: Option<f64>,
    /// With a `rediss://` storage or queue: a PEM file of the CA certificate(s) that signed
    /// the server's certificate, trusted instead of the built-in roots (a private CA, a
    /// self-signed server).
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// With a `rediss://` storage or queue: accept any server certificate, unchecked (the same
    /// as the URL's `#insecure`). Encrypted, but open to interception: for tests only.
    pub tls_insecure: bool,
}

/// `[rabbitmq]`: the settings of the RabbitMQ queue (queue = "amqp://…"); see
/// docs/rabbitmq.md. Unset keys keep the adapter's defaults. Job ids per message are
/// `dispatcher.ids_per_message`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RabbitmqSection {
    /// Unacked deliveries per broker queue, 1 to 65,535. Unset: four times the worker's first
    /// receive (its free slots at start).
    pub prefetch: Option<u32>,
    /// `x-max-priority` of the broker queues, 0 (no priorities) to 255 (RabbitMQ advises at
    /// most 10). Default 10.
    pub max_priority: Option<u32>,
    /// The AMQP heartbeat the client asks for, in whole seconds, 0 (the broker's) to 65,535.
    /// The broker closes a connection it has not heard from in about two of these, which hands
    /// the deliveries a frozen worker holds to live ones. Default 5.
    pub heartbeat_secs: Option<u32>,
    /// How long one connection attempt may take. Default 5.
    pub connect_timeout_secs: Option<f64>,
    /// Longest wait between reconnection attempts. Default 5.
    pub reconnect_backoff_max_secs: Option<f64>,
    /// A delivery held this long (a long job) is acked early, before the broker's
    /// `consumer_timeout`. Default 600.
    pub settle_after_secs: Option<f64>,
    /// Longest a delayed `nack` holds a message before requeueing it. Default 5.
    pub nack_hold_max_secs: Option<f64>,
    /// `x-expires` of the broker queues: deleted after this long unused. Unset: never.
    pub queue_expires_secs: Option<f64>,
    /// `x-consumer-timeout` of the broker queues (RabbitMQ 3.12 and later). Unset: the
    /// broker's.
    pub consumer_timeout_secs: Option<f64>,
    /// The connection name the broker shows. Default `switchyard {prefix}`.
    pub connection_name: Option<String>,
}

/// Longest `x-expires` or `x-consumer-timeout` in seconds: RabbitMQ takes them as 32-bit
/// signed milliseconds.
pub const MAX_RABBITMQ_QUEUE_ARG_SECS: f64 = i32::MAX as f64 / 1000.0;

impl RabbitmqSection {
    /// Checks the ranges serde cannot, naming the key and what it accepts.
    fn validate(&self) -> Result<()> {
        let range = |key: &str, v: Option<u32>, lo: u32, hi: u32, note: &str| match v {
            Some(v) if v < lo || v > hi => Err(Error::config(format!(
                "key `rabbitmq.{key}`: {v} is out of range; accepted: {lo} to {hi}{note}"
            ))),
            _ => Ok(()),
        };
        range("prefetch", self.prefetch, 1, u32::from(u16::MAX), "")?;
        range(
            "max_priority",
            self.max_priority,
            0,
            255,
            " (0 turns priorities off; RabbitMQ advises at most 10)",
        )?;
        range(
            "heartbeat_secs",
            self.heartbeat_secs,
            0,
            u32::from(u16::MAX),
            " (0 takes the broker's)",
        )?;
        for (key, v) in [
            ("connect_timeout_secs", self.connect_timeout_secs),
            (
                "reconnect_backoff_max_secs",
                self.reconnect_backoff_max_secs,
            ),
            ("settle_after_secs", self.settle_after_secs),
            ("nack_hold_max_secs", self.nack_hold_max_secs),
        ] {
            if let Some(v) = v {
                secs(&format!("rabbitmq.{key}"), v)?;
            }
        }
        for (key, v) in [
            ("queue_expires_secs", self.queue_expires_secs),
            ("consumer_timeout_secs", self.consumer_timeout_secs),
        ] {
            if let Some(v) = v {
                if !(0.001..=MAX_RABBITMQ_QUEUE_ARG_SECS).contains(&v) {
                    return Err(Error::config(format!(
                        "key `rabbitmq.{key}`: {v} is out of range; accepted: 0.001 to \
                         {MAX_RABBITMQ_QUEUE_ARG_SECS} seconds (RabbitMQ takes 32-bit \
                         milliseconds), or unset"
                    )));
                }
            }
        }
        if let Some(name) = &self.connection_name {
            if name.is_empty() || name.len() > 255 {
                return Err(Error::config(format!(
                    "key `rabbitmq.connection_name`: `{name}` is not accepted; accepted: 1 to \
                     255 bytes"
                )));
            }
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut queues = BTreeMap::new();
        queues.insert(
            switchyard_core::DEFAULT_QUEUE.to_string(),
            QueueSection::default(),
        );
        Self {
            storage: DEFAULT_STORAGE.to_string(),
            queue: "storage".to_string(),
            prefix: "switchyard_".to_string(),
            max_payload_bytes: 1024 * 1024,
            auto_migrate: true,
            worker: WorkerSection::default(),
            queues,
            rescuer: RescuerSection::default(),
            pruner: PrunerSection::default(),
            dispatcher: DispatcherSection::default(),
            postgres: PostgresSection::default(),
            sqs: SqsSection::default(),
            redis: RedisSection::default(),
            cron: Default::default(),
            schedules: BTreeMap::new(),
            rabbitmq: RabbitmqSection::default(),
        }
    }
}

impl Default for WorkerSection {
    fn default() -> Self {
        Self {
            concurrency: 16,
            lease_secs: 30.0,
            heartbeat_secs: 10.0,
            poll_interval_ms: 1000,
            shutdown_timeout_secs: 30.0,
            backoff_base_ms: 1000,
            backoff_max_secs: 3600.0,
            backoff_jitter: 0.2,
            fetchers: 2,
        }
    }
}

impl Default for RescuerSection {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 5.0,
        }
    }
}

impl Default for PrunerSection {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 60.0,
            retention_secs: 7.0 * 24.0 * 3600.0,
        }
    }
}

impl Default for DispatcherSection {
    fn default() -> Self {
        Self {
            poll_interval_ms: 500,
            max_native_delay_secs: None,
            redispatch_after_secs: 1800.0,
            ids_per_message: switchyard_core::bundle::DEFAULT_IDS_PER_MESSAGE,
        }
    }
}

impl Default for PostgresSection {
    fn default() -> Self {
        Self {
            listen: true,
            max_connections: 10,
            synchronous_commit: false,
        }
    }
}

/// The longest expiry `redis.finished_ttl_secs` accepts (about 31,700 years; Redis refuses
/// an `EXPIRE` whose end in milliseconds does not fit in 64 bits). `RedisStorage::connect`
/// clamps its `finished_ttl` to the same bound for code that builds a `RedisConfig` itself;
/// this crate compiles without switchyard-redis, so the bound is stated in both.
pub const MAX_REDIS_TTL_SECS: f64 = 1e12;

/// The longest duration any `*_secs` key accepts (about 31,700 years): far enough for any
/// setting, and near enough that `now` plus or minus it is still a date (past about 8e12 s,
/// date arithmetic overflows).
pub const MAX_SECS: f64 = 1e12;

/// `v` seconds for `key` (a configuration key, or a command-line flag): a finite number from 0
/// to [`MAX_SECS`], else an error naming the key and what it accepts.
pub fn secs(key: &str, v: f64) -> Result<Duration> {
    let refused = || {
        let flag = key.starts_with("--");
        let msg = format!(
            "{} `{key}`: {v} is not a valid number of seconds; accepted: a number from 0 to \
             {MAX_SECS:e}, or a duration such as \"30s\", \"15m\" or \"7d\"",
            if flag { "flag" } else { "key" }
        );
        if flag {
            Error::invalid(msg)
        } else {
            Error::config(msg)
        }
    };
    if v > MAX_SECS {
        return Err(refused());
    }
    Duration::try_from_secs_f64(v).map_err(|_| refused())
}

/// The `*_secs` keys: a number of seconds (`30`, `1.5`), or a duration as text in humantime's
/// form (`"30s"`, `"15m"`, `"1h30m"`, `"7d"`). Range checks are [`secs`]'s, in
/// [`Config::validate`].
mod seconds {
    use std::fmt;

    use serde::de::{self, Deserializer, Unexpected, Visitor};

    struct Seconds;

    impl<'de> Visitor<'de> for Seconds {
        type Value = f64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number of seconds, or a duration such as \"30s\", \"15m\" or \"7d\"")
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            let t = v.trim();
            if let Ok(n) = t.parse::<f64>() {
                return Ok(n);
            }
            humantime::parse_duration(t)
                .map(|d| d.as_secs_f64())
                .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
        }
    }

    struct MaybeSeconds;

    impl<'de> Visitor<'de> for MaybeSeconds {
        type Value = Option<f64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            Seconds.expecting(f)
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            de(d).map(Some)
        }
    }

    /// A `*_secs` value.
    pub(super) fn de<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        d.deserialize_any(Seconds)
    }

    /// An optional `*_secs` value.
    pub(super) fn de_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        d.deserialize_option(MaybeSeconds)
    }
}

/// One figment error as `key `…`: what is wrong (from <source>)`, with "did you mean" for an
/// unknown key.
fn describe(err: &figment::Error) -> String {
    let key = err.path.join(".");
    let from_env = err
        .metadata
        .as_ref()
        .is_some_and(|m| m.name.contains("environment"));
    let source = err
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(figment::Source::File(path)) => format!(" (from {} `{}`)", m.name, path.display()),
            _ => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    if let figment::error::Kind::UnknownField(found, expected) = &err.kind {
        return format!(
            "{}{source}",
            unknown_key(&err.path, found, expected, from_env)
        );
    }
    if key.is_empty() {
        format!("{}{source}", err.kind)
    } else {
        format!("key `{key}`: {}{source}", err.kind)
    }
}

/// The message for the unknown key `found` at `path` (its last element), whose siblings are
/// `expected`: the closest known key if one is close (`strsim`), then the accepted siblings.
fn unknown_key(path: &[String], found: &str, expected: &[&str], from_env: bool) -> String {
    let parent = path
        .get(..path.len().saturating_sub(1))
        .unwrap_or_default()
        .join(".");
    let full = |k: &str| {
        if parent.is_empty() {
            k.to_string()
        } else {
            format!("{parent}.{k}")
        }
    };
    let shown = full(found);
    let close = |a: &str, b: &str| strsim::jaro_winkler(&a.to_ascii_lowercase(), b);
    let sibling = expected
        .iter()
        .map(|k| (close(found, k), full(k)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let suggestion = match sibling {
        Some((score, k)) if score >= 0.8 => Some(k),
        // A key of another section: `retention` for `pruner.retention_secs`.
        _ => known_keys()
            .into_iter()
            .map(|k| {
                let leaf = k.rsplit('.').next().unwrap_or(&k).to_string();
                (close(found, &leaf).max(close(&shown, &k)), k)
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .filter(|(score, _)| *score >= 0.8)
            .map(|(_, k)| k),
    };
    let mut msg = format!("key `{shown}` is not a known key");
    if let Some(k) = suggestion {
        if from_env {
            let var = format!("SWITCHYARD_{}", k.replace('.', "__").to_ascii_uppercase());
            msg.push_str(&format!(" (did you mean `{k}`, `{var}`?)"));
        } else {
            msg.push_str(&format!(" (did you mean `{k}`?)"));
        }
    }
    let accepted: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
    let place = if parent.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in `[{parent}]`")
    };
    msg.push_str(&format!("; accepted {place}: {}", accepted.join(", ")));
    msg
}

/// Every key of the configuration as a dotted path (`worker.concurrency`), sections included,
/// per-queue keys left out.
fn known_keys() -> Vec<String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        if let serde_json::Value::Object(map) = v {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push(path.clone());
                if path != "queues" {
                    walk(&path, v, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::to_value(Config::default()) {
        walk("", &v, &mut out);
    }
    out
}

impl Config {
    /// Loads defaults < the TOML file `SWITCHYARD_CONFIG` names (which must exist), else
    /// `switchyard.toml` in the working directory (if present) < `SWITCHYARD_*` environment
    /// variables.
    pub fn load() -> Result<Self> {
        match std::env::var_os("SWITCHYARD_CONFIG") {
            Some(path) => {
                let path = std::path::PathBuf::from(path);
                if !path.is_file() {
                    return Err(Error::config(format!(
                        "SWITCHYARD_CONFIG names `{}`, which is not a file; accepted: the path \
                         of a TOML configuration file, or unset for ./switchyard.toml",
                        path.display()
                    )));
                }
                Self::load_from(&path)
            }
            None => Self::load_from(Path::new("switchyard.toml")),
        }
    }

    /// Like [`Config::load`] with another TOML file.
    pub fn load_from(path: &Path) -> Result<Self> {
        // Queues come from the file and the environment only: a default `default` queue in the
        // figment's defaults would be merged into every configured set of queues, so it is
        // added after extraction, and only when no queue is configured.
        let mut defaults = Config::default();
        defaults.queues.clear();
        Self::from_figment(
            Figment::from(Serialized::defaults(defaults))
                .merge(Toml::file(path))
                .merge(
                    Env::prefixed("SWITCHYARD_")
                        // Not configuration keys: the path of the configuration file itself
                        // (`SWITCHYARD_CONFIG`, read by the CLI) and the test suite's settings.
                        .filter(|k| {
                            let k = k.as_str().to_ascii_lowercase();
                            k != "config" && !k.starts_with("test_")
                        })
                        .split("__"),
                ),
        )
    }

    /// Extracts and validates a configuration from any figment.
    pub fn from_figment(figment: Figment) -> Result<Self> {
        let mut config: Config = figment.extract().map_err(|e| {
            let msgs: Vec<String> = e.into_iter().map(|err| describe(&err)).collect();
            Error::config(msgs.join("; "))
        })?;
        if config.queues.is_empty() {
            config.queues.insert(
                switchyard_core::DEFAULT_QUEUE.to_string(),
                QueueSection::default(),
            );
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks values that serde cannot: URLs, ranges.
    pub fn validate(&self) -> Result<()> {
        crate::cron::defs_from_config(&self.schedules)?;
        crate::schemes::storage_scheme(&self.storage)?;
        crate::schemes::queue_scheme(&self.queue)?;
        if self.worker.concurrency == 0 {
            return Err(Error::config(
                "key `worker.concurrency`: 0 is not accepted; use 1 or more",
            ));
        }
        for (name, q) in &self.queues {
            if name.is_empty() || name.len() > 128 {
                return Err(Error::config(format!(
                    "key `queues`: `{name}` is not a valid queue name; accepted: 1 to 128 characters"
                )));
            }
            if q.concurrency == Some(0) {
                return Err(Error::config(format!(
                    "key `queues.{name}.concurrency`: 0 is not accepted; use 1 or more"
                )));
            }
            // Only what the queue sets is checked here; `[worker]`'s own values are checked
            // below under their own keys.
            if q.lease_secs.is_some() || q.heartbeat_secs.is_some() {
                let w = &self.worker;
                let lease_secs = q.lease_secs.unwrap_or(w.lease_secs);
                let hb_secs = q.heartbeat_secs.unwrap_or(w.heartbeat_secs);
                let (lease_key, hb_key) = (
                    match q.lease_secs {
                        Some(_) => format!("queues.{name}.lease_secs"),
                        None => "worker.lease_secs".to_string(),
                    },
                    match q.heartbeat_secs {
                        Some(_) => format!("queues.{name}.heartbeat_secs"),
                        None => "worker.heartbeat_secs".to_string(),
                    },
                );
                let lease = secs(&lease_key, lease_secs)?;
                let hb = secs(&hb_key, hb_secs)?;
                if hb.is_zero() || hb >= lease {
                    return Err(Error::config(format!(
                        "key `{hb_key}`: {hb_secs} must be above 0 and below the lease of queue \
                         `{name}` ({lease_secs} s, `{lease_key}`) so leases are renewed before \
                         they expire"
                    )));
                }
            }
            if let Some(t) = q.shutdown_timeout_secs {
                secs(&format!("queues.{name}.shutdown_timeout_secs"), t)?;
            }
            if let Some(t) = q.backoff_max_secs {
                secs(&format!("queues.{name}.backoff_max_secs"), t)?;
            }
            if q.global_concurrency == Some(0) {
                return Err(Error::config(format!(
                    "key `queues.{name}.global_concurrency`: 0 is not accepted; use 1 or more \
                     (or pause the queue)"
                )));
            }
            if let Some(r) = &q.rate_limit {
                let rate = crate::flow::parse_rate(r).map_err(|why| {
                    Error::config(format!("key `queues.{name}.rate_limit`: {why}"))
                })?;
                let flow = switchyard_core::QueueFlow {
                    rate: Some(rate),
                    ..switchyard_core::QueueFlow::new(name.as_str())
                };
                switchyard_core::flow::check_flow(&flow).map_err(|e| {
                    Error::config(format!("key `queues.{name}.rate_limit`: {}", e.message()))
                })?;
            }
            if let Some(p) = &q.partition {
                p.parse::<switchyard_core::Partition>().map_err(|e| {
                    Error::config(format!("key `queues.{name}.partition`: {}", e.message()))
                })?;
            }
            if let Some(j) = q.backoff_jitter {
                if !(0.0..=1.0).contains(&j) {
                    return Err(Error::config(format!(
                        "key `queues.{name}.backoff_jitter`: {j} is out of range; accepted: 0.0 to 1.0"
                    )));
                }
            }
        }
        let lease = secs("worker.lease_secs", self.worker.lease_secs)?;
        let hb = secs("worker.heartbeat_secs", self.worker.heartbeat_secs)?;
        if hb.is_zero() || hb >= lease {
            return Err(Error::config(format!(
                "key `worker.heartbeat_secs`: {} must be above 0 and below `worker.lease_secs` ({}) \
                 so leases are renewed before they expire",
                self.worker.heartbeat_secs, self.worker.lease_secs
            )));
        }
        if !(0.0..=1.0).contains(&self.worker.backoff_jitter) {
            return Err(Error::config(format!(
                "key `worker.backoff_jitter`: {} is out of range; accepted: 0.0 to 1.0",
                self.worker.backoff_jitter
            )));
        }
        secs(
            "worker.shutdown_timeout_secs",
            self.worker.shutdown_timeout_secs,
        )?;
        secs("worker.backoff_max_secs", self.worker.backoff_max_secs)?;
        secs("rescuer.interval_secs", self.rescuer.interval_secs)?;
        secs("pruner.interval_secs", self.pruner.interval_secs)?;
        secs("pruner.retention_secs", self.pruner.retention_secs)?;
        secs(
            "dispatcher.redispatch_after_secs",
            self.dispatcher.redispatch_after_secs,
        )?;
        let most = switchyard_core::bundle::MAX_IDS_PER_MESSAGE;
        if !(1..=most).contains(&self.dispatcher.ids_per_message) {
            return Err(Error::config(format!(
                "key `dispatcher.ids_per_message`: {} is out of range; accepted: 1 to {most} \
                 (1 sends one message per job)",
                self.dispatcher.ids_per_message
            )));
        }
        self.rabbitmq.validate()?;
        if let Some(d) = self.dispatcher.max_native_delay_secs {
            secs("dispatcher.max_native_delay_secs", d)?;
        }
        if self.redis.tls_ca_file.is_some() || self.redis.tls_insecure {
            let tls = |url: &str| url.starts_with("rediss://");
            if !tls(&self.storage) && !tls(&self.queue) {
                return Err(Error::config(
                    "key `redis.tls_ca_file` / `redis.tls_insecure`: set, but neither `storage` \
                     nor `queue` is a rediss:// URL; accepted: a rediss:// storage or queue \
                     with them, or neither",
                ));
            }
        }
        if let Some(t) = self.redis.finished_ttl_secs {
            if t > MAX_REDIS_TTL_SECS {
                return Err(Error::config(format!(
                    "key `redis.finished_ttl_secs`: {t} is beyond what Redis can expire; \
                     accepted: 0 (no expiry) up to {MAX_REDIS_TTL_SECS}"
                )));
            }
            secs("redis.finished_ttl_secs", t)?;
            let redis = matches!(
                crate::schemes::storage_scheme(&self.storage),
                Ok("redis" | "rediss")
            );
            if redis && self.pruner.enabled && t > 0.0 && t < self.pruner.retention_secs {
                return Err(Error::config(format!(
                    "key `redis.finished_ttl_secs`: {t} is below `pruner.retention_secs` ({}), \
                     so finished jobs would expire before their retention ends; accepted: 0 \
                     (no expiry) or at least the retention (or lower the retention)",
                    self.pruner.retention_secs
                )));
            }
        }
        Ok(())
    }

    /// How long a finished job's hash lives at most in the Redis storage: `redis.finished_ttl_secs`,
    /// or `pruner.retention_secs` plus one day when unset (no expiry when that is beyond what
    /// Redis can expire, a retention meant as "keep"). Zero means no expiry.
    pub fn redis_finished_ttl(&self) -> Duration {
        let secs = self
            .redis
            .finished_ttl_secs
            .unwrap_or(self.pruner.retention_secs + 24.0 * 3600.0);
        if secs > MAX_REDIS_TTL_SECS {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
    }

    /// The worker settings for one queue.
    /// `[queues.<name>]` overrides `[worker]` key by key.
    pub fn worker_config(&self, queue: &str) -> WorkerConfig {
        let w = &self.worker;
        let none = QueueSection::default();
        let q = self.queues.get(queue).unwrap_or(&none);
        WorkerConfig {
            queues: vec![queue.to_string()],
            concurrency: q.concurrency.unwrap_or(w.concurrency),
            lease: Duration::from_secs_f64(q.lease_secs.unwrap_or(w.lease_secs)),
            heartbeat: Duration::from_secs_f64(q.heartbeat_secs.unwrap_or(w.heartbeat_secs)),
            poll_interval: Duration::from_millis(w.poll_interval_ms),
            shutdown_timeout: Duration::from_secs_f64(
                q.shutdown_timeout_secs.unwrap_or(w.shutdown_timeout_secs),
            ),
            backoff: Backoff {
                base: Duration::from_millis(q.backoff_base_ms.unwrap_or(w.backoff_base_ms)),
                max: Duration::from_secs_f64(q.backoff_max_secs.unwrap_or(w.backoff_max_secs)),
                jitter: q.backoff_jitter.unwrap_or(w.backoff_jitter),
            },
            fetchers: w.fetchers.max(1),
            ..WorkerConfig::default()
        }
    }

    /// The maintenance settings.
    pub fn maintenance_config(&self) -> MaintenanceConfig {
        MaintenanceConfig {
            rescuer: self.rescuer.enabled,
            rescue_interval: Duration::from_secs_f64(self.rescuer.interval_secs),
            pruner: self.pruner.enabled,
            prune_interval: Duration::from_secs_f64(self.pruner.interval_secs),
            retention: Duration::from_secs_f64(self.pruner.retention_secs),
            leader_ttl: MaintenanceConfig::leader_ttl_for(Duration::from_secs_f64(
                self.worker.lease_secs,
            )),
            ..MaintenanceConfig::default()
        }
    }

    /// The dispatcher settings.
    pub fn dispatcher_config(&self) -> DispatcherConfig {
        DispatcherConfig {
            poll_interval: Duration::from_millis(self.dispatcher.poll_interval_ms),
            max_native_delay: self
                .dispatcher
                .max_native_delay_secs
                .map(Duration::from_secs_f64),
            redispatch_after: Duration::from_secs_f64(self.dispatcher.redispatch_after_secs),
            ..DispatcherConfig::default()
        }
    }
}
