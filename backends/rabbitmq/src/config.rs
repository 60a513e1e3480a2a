//! [`RabbitConfig`]: the settings of the RabbitMQ queue, and the checks on its URL and names.

use std::path::PathBuf;
use std::time::Duration;

use switchyard_core::{adapter, Error, Result};

/// The AMQP heartbeat a [`RabbitConfig`] asks for unless told otherwise.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// What an AMQP URL may look like, for error messages.
const ACCEPTED_URLS: &str = "amqp://[user:password@]host[:port][/vhost] (vhost `/` is `%2f`), \
                             or amqps://…[?cacertfile=/path/ca.pem] (TLS)";

/// Longest broker queue name RabbitMQ accepts, in bytes.
const MAX_QUEUE_NAME: usize = 255;

/// Settings of the RabbitMQ queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RabbitConfig {
    /// `amqp://user:password@host:port/vhost` (the default vhost `/` is written `%2f`), or
    /// `amqps://…` for TLS (port 5671 by default), checked against the system's CA
    /// certificates and [`tls_ca_file`](Self::tls_ca_file) or the URL's `?cacertfile=…`.
    pub url: String,
    /// Every broker queue is named `{prefix}{switchyard queue}`, so several instances share one
    /// vhost. The one prefix rule of every backend:
    /// [`PREFIX_RULE`](switchyard_core::adapter::PREFIX_RULE).
    pub prefix: String,
    /// Unacked deliveries the broker sends to this process per queue. `None`: derived from the
    /// worker's concurrency (the size of the first `receive`, which asks for every free slot).
    /// Set it to the sum of the concurrencies when several workers share one `RabbitQueue`.
    pub prefetch: Option<u16>,
    /// `x-max-priority` of the broker queues (0 turns priorities off; RabbitMQ allows up to
    /// 255 and advises at most 10). Job priorities map onto `0..=max_priority`: a negative
    /// priority is 0, priority `p >= 0` is `p + 1`, capped. Queue arguments cannot change
    /// after a queue is declared: changing this needs new queues (another prefix).
    pub max_priority: u8,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// Longest wait between reconnection attempts (the wait doubles from 100 ms up to this).
    /// Calls in the meantime fail at once with `Unavailable`.
    pub reconnect_backoff_max: Duration,
    /// A delivery held this long (a long job) is acked early by `extend`, before the broker's
    /// `consumer_timeout` (30 min by default) closes its channel. The job stays protected by
    /// its lease in Storage; if its worker dies, the rescuer and the dispatcher publish it
    /// again. Keep it well below the broker's `consumer_timeout`.
    pub settle_after: Duration,
    /// `nack` with a delay keeps the message unacked for at most this long, then gives it back
    /// to the broker (RabbitMQ has no per-message delay); the worker nacks it again until the
    /// job is due. It holds one prefetch slot meanwhile.
    pub nack_hold_max: Duration,
    /// `x-expires` of the broker queues: a queue unused this long is deleted by the broker.
    /// `None` (the default) for production; tests set it so their queues vanish.
    pub queue_expires: Option<Duration>,
    /// `x-consumer-timeout` of the broker queues, honoured by RabbitMQ 3.12 and later (earlier
    /// versions ignore it and apply the broker-wide `consumer_timeout`). `None`: not set.
    pub consumer_timeout: Option<Duration>,
    /// Most job ids one message carries when a publish holds more than ten messages for one
    /// queue and priority (see `switchyard_core::adapter::bundle`); 1 sends one message per job.
    pub ids_per_message: usize,
    /// Client-provided connection name, shown by `rabbitmqctl list_connections
    /// client_properties` and the management UI. Default: `switchyard {prefix}`.
    pub connection_name: Option<String>,
    /// The AMQP heartbeat this client asks for (whole seconds, rounded up; at most 65,535). The
    /// broker closes a connection it has heard nothing from for about two of these, which puts
    /// the deliveries a frozen or cut-off worker holds back in the queue for live consumers.
    /// With the broker's own default (60 s) that took about three minutes, during which the
    /// jobs behind those deliveries waited (see `docs/rabbitmq.md`, *A frozen worker*).
    /// Default 5 s. Zero takes the broker's value. A `heartbeat` key in the URL wins.
    pub heartbeat: Duration,
    /// With `amqps://`: a PEM file of CA certificate(s) to trust besides the system's, for a
    /// private CA or a self-signed broker. The URL's `?cacertfile=/path/ca.pem` (the query key
    /// of RabbitMQ's own URI scheme) sets the same; give one or the other.
    pub tls_ca_file: Option<PathBuf>,
}

impl RabbitConfig {
    /// Defaults for `url`: prefix `switchyard_`, prefetch from the worker's concurrency,
    /// `x-max-priority` 10, 5 s connect timeout, reconnection backoff up to 5 s, early settling
    /// after 10 min, nack holds of at most 5 s, up to ten job ids per message.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "switchyard_".to_string(),
            prefetch: None,
            max_priority: 10,
            connect_timeout: Duration::from_secs(5),
            reconnect_backoff_max: Duration::from_secs(5),
            settle_after: Duration::from_secs(10 * 60),
            nack_hold_max: Duration::from_secs(5),
            queue_expires: None,
            consumer_timeout: None,
            connection_name: None,
            tls_ca_file: None,
            ids_per_message: adapter::bundle::DEFAULT_IDS_PER_MESSAGE,
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }

    /// Sets the AMQP heartbeat the client asks for (zero: the broker's).
    pub fn with_heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// Sets how long one connection attempt may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the longest wait between reconnection attempts.
    pub fn with_reconnect_backoff_max(mut self, most: Duration) -> Self {
        self.reconnect_backoff_max = most;
        self
    }

    /// Sets the longest a delayed `nack` holds a message.
    pub fn with_nack_hold_max(mut self, most: Duration) -> Self {
        self.nack_hold_max = most;
        self
    }

    /// The heartbeat to ask the broker for, in whole seconds (`None`: the broker's).
    pub(crate) fn heartbeat_secs(&self) -> Option<u16> {
        if self.heartbeat.is_zero() {
            return None;
        }
        let secs = self.heartbeat.as_secs_f64().ceil();
        Some(if secs >= f64::from(u16::MAX) {
            u16::MAX
        } else {
            secs as u16
        })
    }

    /// Sets the queue name prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the most job ids one message carries (clamped to 1..=100; 1: one message per job).
    pub fn with_ids_per_message(mut self, n: usize) -> Self {
        self.ids_per_message = n.clamp(1, adapter::bundle::MAX_IDS_PER_MESSAGE);
        self
    }

    /// Sets the prefetch per queue.
    pub fn with_prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = Some(prefetch.max(1));
        self
    }

    /// Sets `x-max-priority`.
    pub fn with_max_priority(mut self, max: u8) -> Self {
        self.max_priority = max;
        self
    }

    /// Sets `x-expires` of the broker queues.
    pub fn with_queue_expires(mut self, after: Duration) -> Self {
        self.queue_expires = Some(after);
        self
    }

    /// Sets `x-consumer-timeout` of the broker queues (RabbitMQ 3.12+).
    pub fn with_consumer_timeout(mut self, timeout: Duration) -> Self {
        self.consumer_timeout = Some(timeout);
        self
    }

    /// Sets how long a delivery is held before `extend` acks it early.
    pub fn with_settle_after(mut self, after: Duration) -> Self {
        self.settle_after = after;
        self
    }

    /// Sets the client-provided connection name.
    pub fn with_connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = Some(name.into());
        self
    }

    /// Trusts the CA certificate(s) in the PEM file `path` for `amqps://` (see
    /// [`tls_ca_file`](Self::tls_ca_file)).
    pub fn with_tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// The broker queue for a Switchyard queue.
    pub fn broker_queue(&self, queue: &str) -> Result<String> {
        let name = format!("{}{}", self.prefix, queue);
        if queue.is_empty() || name.len() > MAX_QUEUE_NAME {
            return Err(Error::invalid(format!(
                "queue `{queue}`: the broker queue `{name}` must be 1 to {MAX_QUEUE_NAME} bytes"
            )));
        }
        Ok(name)
    }

    /// The name this connection shows in the broker.
    pub fn connection_name(&self) -> String {
        self.connection_name
            .clone()
            .unwrap_or_else(|| format!("switchyard {}", self.prefix))
    }

    /// Checks the URL and the prefix; returns the parsed URL.
    pub(crate) fn validate(&self) -> Result<lapin::uri::AMQPUri> {
        let scheme = self.url.split_once("://").map(|(s, _)| s);
        match scheme {
            Some("amqp") => {}
            Some("amqps") if cfg!(feature = "tls") => {}
            Some("amqps") => {
                return Err(Error::config(
                    "key `queue`: `amqps://` needs the `tls` feature of switchyard-rabbitmq \
                     (the `rabbitmq` feature of `switchyard` turns it on; this build has no \
                     TLS); accepted: amqp://[user:password@]host[:port][/vhost]",
                ))
            }
            _ => {
                return Err(Error::config(format!(
                    "key `queue`: `{}` is not an AMQP URL; accepted: {ACCEPTED_URLS}",
                    adapter::redact_url(&self.url)
                )))
            }
        }
        let mut uri: lapin::uri::AMQPUri = self.url.parse().map_err(|e: String| {
            Error::config(format!(
                "key `queue`: `{}` is not a valid AMQP URL ({e}); accepted: {ACCEPTED_URLS}",
                adapter::redact_url(&self.url)
            ))
        })?;
        // lapin's parser ignores query keys it does not know, so a `?prefix=` meant for the
        // `prefix` setting, or a misspelt `heartbeat`, would pass silently. Checked once the
        // URL parsed, on its decoded query keys (as lapin reads them).
        if let Ok(parsed) = url::Url::parse(&self.url) {
            for (key, _) in parsed.query_pairs() {
                if key == CA_FILE_KEY {
                    continue;
                }
                if !AMQP_URL_KEYS.contains(&key.as_ref()) {
                    return Err(Error::config(format!(
                        "key `queue`: `{}` has the query key `{key}`, which lapin does not read \
                         (it would be ignored); accepted: {}, {CA_FILE_KEY} (the queue-name \
                         prefix is the `prefix` setting)",
                        adapter::redact_url(&self.url),
                        AMQP_URL_KEYS.join(", ")
                    )));
                }
            }
        }
        adapter::check_prefix(&self.prefix)?;
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = self.heartbeat_secs();
        }
        self.ca_file()?;
        Ok(uri)
    }

    /// The CA file to trust: [`tls_ca_file`](Self::tls_ca_file) or the URL's `cacertfile`,
    /// which must name a file and come with `amqps://`.
    fn ca_file(&self) -> Result<Option<PathBuf>> {
        let from_url = url::Url::parse(&self.url).ok().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == CA_FILE_KEY)
                .map(|(_, v)| PathBuf::from(v.into_owned()))
        });
        let file = match (&self.tls_ca_file, from_url) {
            (Some(_), Some(_)) => {
                return Err(Error::config(format!(
                    "key `queue`: `{}` names a CA file with `{CA_FILE_KEY}`, and \
                     `tls_ca_file` is set too; accepted: one of them",
                    adapter::redact_url(&self.url)
                )))
            }
            (Some(f), None) => f.clone(),
            (None, Some(f)) => f,
            (None, None) => return Ok(None),
        };
        if !self.url.starts_with("amqps://") {
            return Err(Error::config(format!(
                "key `queue`: `{}` names a CA file, which only `amqps://` uses; accepted: an \
                 amqps:// URL with it, or no CA file",
                adapter::redact_url(&self.url)
            )));
        }
        if !file.is_file() {
            return Err(Error::config(format!(
                "key `queue`: the CA file `{}` is not a file; accepted: the path of a PEM file \
                 with the CA certificate(s) that signed the broker's certificate",
                file.display()
            )));
        }
        Ok(Some(file))
    }

    /// The PEM text of the CA file to trust, if any (read at each connection, so a renewed
    /// file is picked up on reconnect).
    pub(crate) fn ca_pem(&self) -> Result<Option<String>> {
        let Some(file) = self.ca_file()? else {
            return Ok(None);
        };
        std::fs::read_to_string(&file).map(Some).map_err(|e| {
            Error::config(format!(
                "key `queue`: cannot read the CA file `{}`; accepted: a readable PEM file",
                file.display()
            ))
            .with_source(e)
        })
    }
}

/// The URL query key that names a CA file, as in RabbitMQ's own URI scheme.
const CA_FILE_KEY: &str = "cacertfile";

/// The query keys of an AMQP URL that lapin understands.
const AMQP_URL_KEYS: [&str; 5] = [
    "heartbeat",
    "connection_timeout",
    "frame_max",
    "channel_max",
    "auth_mechanism",
];

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::ErrorKind;

    #[test]
    fn accepts_the_default_url() {
        RabbitConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f")
            .validate()
            .unwrap();
    }

    #[test]
    fn rejects_other_schemes_and_hides_the_password() {
        let e = RabbitConfig::new("http://u:secret@h/")
            .validate()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("accepted"), "{e}");
        assert!(!e.message().contains("secret"), "{e}");
    }

    /// A query key lapin would ignore is an error naming it; the keys lapin reads pass.
    #[test]
    fn rejects_unknown_query_keys() {
        for (url, key) in [
            ("amqp://u:secret@h/%2f?prefix=jobs", "`prefix`"),
            ("amqp://h/%2f?heartbeat=10&hearbeat=5", "`hearbeat`"),
        ] {
            let e = RabbitConfig::new(url).validate().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{url}");
            assert!(e.message().contains(key), "{url}: {e}");
            assert!(e.message().contains("heartbeat"), "{e}");
            assert!(!e.message().contains("secret"), "{e}");
        }
        RabbitConfig::new("amqp://h/%2f?heartbeat=10&connection_timeout=5000&frame_max=131072")
            .validate()
            .unwrap();
        // Keys are read decoded, as lapin reads them.
        RabbitConfig::new("amqp://h/%2f?heart%62eat=10")
            .validate()
            .unwrap();
    }

    /// `amqps://` is accepted (this crate's tests build with TLS), with a CA file from the URL
    /// or the setting, which must exist, come with amqps:// and be given once.
    #[cfg(feature = "tls")]
    #[test]
    fn accepts_amqps_with_a_ca_file() {
        RabbitConfig::new("amqps://u:secret@broker.example.com/%2f")
            .validate()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("rabbit-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "pem").unwrap();
        let url = format!("amqps://h/%2f?cacertfile={}&heartbeat=10", ca.display());
        let c = RabbitConfig::new(&url);
        c.validate().unwrap();
        assert_eq!(c.ca_pem().unwrap().as_deref(), Some("pem"));
        let c = RabbitConfig::new("amqps://h/%2f").with_tls_ca_file(&ca);
        assert_eq!(c.ca_pem().unwrap().as_deref(), Some("pem"));
        for (c, says) in [
            (RabbitConfig::new(&url).with_tls_ca_file(&ca), "one of them"),
            (
                RabbitConfig::new("amqp://h/%2f").with_tls_ca_file(&ca),
                "only `amqps://`",
            ),
            (
                RabbitConfig::new("amqps://u:secret@h/%2f?cacertfile=/nonexistent.pem"),
                "/nonexistent.pem",
            ),
        ] {
            let e = c.validate().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{e}");
            assert!(e.message().contains(says), "{e}");
            assert!(!e.message().contains("secret"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_bad_prefixes() {
        for p in ["amq.x", "a b", &"x".repeat(65)] {
            let e = RabbitConfig::new("amqp://h")
                .with_prefix(p)
                .validate()
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{p}");
        }
    }

    /// The heartbeat asked for: the setting in whole seconds, unless the URL names one.
    #[test]
    fn the_heartbeat_comes_from_the_setting_unless_the_url_has_one() {
        let c = RabbitConfig::new("amqp://h/%2f");
        assert_eq!(c.validate().unwrap().query.heartbeat, Some(5));
        let c = c.with_heartbeat(Duration::from_millis(2500));
        assert_eq!(c.validate().unwrap().query.heartbeat, Some(3));
        let c = c.with_heartbeat(Duration::ZERO);
        assert_eq!(c.validate().unwrap().query.heartbeat, None);
        let c = c.with_heartbeat(Duration::from_secs(1 << 20));
        assert_eq!(c.validate().unwrap().query.heartbeat, Some(u16::MAX));
        let c =
            RabbitConfig::new("amqp://h/%2f?heartbeat=20").with_heartbeat(Duration::from_secs(1));
        assert_eq!(c.validate().unwrap().query.heartbeat, Some(20));
    }

    #[test]
    fn broker_queue_names() {
        let c = RabbitConfig::new("amqp://h").with_prefix("t_");
        assert_eq!(c.broker_queue("default").unwrap(), "t_default");
        assert!(c.broker_queue("").is_err());
        assert!(c.broker_queue(&"q".repeat(300)).is_err());
    }
}
