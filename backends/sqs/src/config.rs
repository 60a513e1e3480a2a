//! [`SqsConfig`]: the `sqs://` URL, the `[sqs]` settings, and how Switchyard queue names map to
//! SQS queue names.

use std::path::PathBuf;
use std::time::Duration;

use switchyard_core::{adapter, Error, Result};

/// The accepted URL forms, quoted in every URL error.
pub(crate) const ACCEPTED: &str = "sqs://<region> (e.g. sqs://eu-west-1), \
     sqs://<host>:<port> for an emulator on plain HTTP (e.g. sqs://127.0.0.1:4577), \
     or sqs:// (region and endpoint from [sqs] / the environment); \
     optional /<queue-name-prefix> path and query keys region, endpoint (or endpoint_url), fifo, \
     fifo_group";

/// Region used when neither the URL, the `[sqs]` section nor the environment names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// How FIFO queues group messages (`MessageGroupId`). SQS delivers one group's messages in
/// order and holds back the rest of a group while one of its messages is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FifoGroup {
    /// One group per Switchyard queue: jobs of a queue are delivered in order, one receive batch
    /// at a time (strict ordering, little parallelism).
    #[default]
    Queue,
    /// One group per job: no ordering between jobs, full parallelism; FIFO then only adds
    /// exactly-once publishing.
    Job,
}

/// Settings of an [`SqsQueue`](crate::SqsQueue).
///
/// Build it from a URL with [`SqsConfig::from_url`], then apply the `[sqs]` settings:
///
/// ```
/// use switchyard_sqs::SqsConfig;
/// let c = SqsConfig::from_url("sqs://127.0.0.1:4577/app-")
///     .unwrap()
///     .with_prefix("switchyard_")
///     .with_region(Some("eu-west-1".into()));
/// assert_eq!(c.endpoint_url.as_deref(), Some("http://127.0.0.1:4577"));
/// assert_eq!(c.queue_name("default"), "app-switchyard_default");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqsConfig {
    /// AWS region. `None`: `AWS_REGION` / `AWS_DEFAULT_REGION`, else [`DEFAULT_REGION`].
    pub region: Option<String>,
    /// Endpoint override (an emulator such as fauxqs, a VPC endpoint; `https://…` is checked
    /// against the system's CA certificates and [`tls_ca_file`](Self::tls_ca_file)). `None`:
    /// AWS's own (always https).
    pub endpoint_url: Option<String>,
    /// A PEM file of CA certificate(s) to trust for https besides the system's: an endpoint
    /// behind a private CA, or a TLS-inspecting proxy. `None`: the system's alone.
    pub tls_ca_file: Option<PathBuf>,
    /// Queue-name prefix from the URL path (a namespace such as `prod-`).
    pub name_prefix: String,
    /// Switchyard's instance prefix (the `prefix` setting), after `name_prefix`. Default
    /// `switchyard_`; [`SqsQueue::connect`](crate::SqsQueue::connect) refuses one that breaks
    /// [`PREFIX_RULE`](switchyard_core::adapter::PREFIX_RULE) (an empty one too).
    pub prefix: String,
    /// Use FIFO queues (`.fifo` names, `MessageGroupId`, no per-message delay).
    pub fifo: bool,
    /// How FIFO messages are grouped.
    pub fifo_group: FifoGroup,
    /// How long SQS keeps a message that nobody deletes (at most 14 days, the default).
    pub retention: Duration,
    /// Most batch calls (send, delete, change visibility) in flight at once for one publish
    /// or ack.
    pub concurrency: usize,
    /// Most job ids one message carries when a publish holds more than ten messages for one
    /// queue (see `switchyard_core::adapter::bundle`); 1 sends one message per job. The runtime sets
    /// it from `dispatcher.ids_per_message`.
    pub ids_per_message: usize,
}

impl Default for SqsConfig {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            tls_ca_file: None,
            name_prefix: String::new(),
            prefix: "switchyard_".to_string(),
            fifo: false,
            fifo_group: FifoGroup::default(),
            retention: Duration::from_secs(14 * 24 * 3600),
            concurrency: 8,
            ids_per_message: adapter::bundle::DEFAULT_IDS_PER_MESSAGE,
        }
    }
}

fn bad(url: &str, why: &str) -> Error {
    Error::config(format!(
        "key `queue`: `{url}` is not a valid SQS URL ({why}); accepted: {ACCEPTED}"
    ))
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`: letters, dashes, a final number.
fn looks_like_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

fn parse_bool(url: &str, key: &str, v: &str) -> Result<bool> {
    match v {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(bad(
            url,
            &format!("`{key}` must be true or false, got `{v}`"),
        )),
    }
}

impl SqsConfig {
    /// Parses a queue URL:
    ///
    /// | URL | region | endpoint |
    /// |---|---|---|
    /// | `sqs://eu-west-1` | `eu-west-1` | AWS |
    /// | `sqs://127.0.0.1:4577`, `sqs://localhost:4577` | from elsewhere | `http://127.0.0.1:4577` |
    /// | `sqs://` | from elsewhere | from elsewhere |
    ///
    /// An optional path is a queue-name prefix (`sqs://eu-west-1/prod-`). Query keys:
    /// `region`, `endpoint` (alias `endpoint_url`, e.g. `https://sqs.example:443`), `fifo`
    /// (`true`/`false`), `fifo_group` (`queue`/`job`). Anything else is an
    /// [`ErrorKind::Config`](switchyard_core::ErrorKind::Config) naming the key `queue` and the
    /// accepted forms.
    pub fn from_url(url: &str) -> Result<Self> {
        if !url.starts_with("sqs://") {
            return Err(bad(url, "it must start with `sqs://`"));
        }
        let parsed = url::Url::parse(url).map_err(|e| bad(url, &e.to_string()))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(
                url,
                "credentials do not belong in the URL; use the AWS environment or profile",
            ));
        }
        let mut c = SqsConfig::default();
        let host = parsed.host_str().unwrap_or("");
        match (host, parsed.port()) {
            ("", None) => {}
            ("", Some(_)) => return Err(bad(url, "a port needs a host")),
            (h, None) if looks_like_region(h) => c.region = Some(h.to_string()),
            (h, port) => {
                let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                c.endpoint_url = Some(format!("http://{h}{port}"));
            }
        }
        let path = parsed.path().trim_start_matches('/');
        if path.contains('/') {
            return Err(bad(url, "the path is one queue-name prefix, without `/`"));
        }
        c.name_prefix = path.to_string();
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "region" => c.region = Some(v.into_owned()),
                "endpoint" | "endpoint_url" => {
                    let e = url::Url::parse(&v)
                        .map_err(|e| bad(url, &format!("`{k}` is not a URL: {e}")))?;
                    if e.scheme() != "http" && e.scheme() != "https" {
                        return Err(bad(url, &format!("`{k}` must be an http(s) URL")));
                    }
                    c.endpoint_url = Some(v.trim_end_matches('/').to_string());
                }
                "fifo" => c.fifo = parse_bool(url, "fifo", &v)?,
                "fifo_group" => {
                    c.fifo_group = match v.as_ref() {
                        "queue" => FifoGroup::Queue,
                        "job" => FifoGroup::Job,
                        other => {
                            return Err(bad(
                                url,
                                &format!("`fifo_group` must be queue or job, got `{other}`"),
                            ))
                        }
                    }
                }
                other => return Err(bad(url, &format!("unknown query key `{other}`"))),
            }
        }
        Ok(c)
    }

    /// Trusts the CA certificate(s) in the PEM file `path` for https when `Some` (the `[sqs]
    /// tls_ca_file` setting); `None` keeps the current one.
    pub fn with_tls_ca_file(mut self, path: Option<impl Into<PathBuf>>) -> Self {
        if let Some(path) = path {
            self.tls_ca_file = Some(path.into());
        }
        self
    }

    /// Sets the most job ids one message carries (clamped to 1..=100; 1: one message per job).
    pub fn with_ids_per_message(mut self, n: usize) -> Self {
        self.ids_per_message = n.clamp(1, adapter::bundle::MAX_IDS_PER_MESSAGE);
        self
    }

    /// Sets Switchyard's instance prefix (placed after the URL's queue-name prefix).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Overrides the region when `Some` (the `[sqs] region` setting); `None` keeps the URL's.
    pub fn with_region(mut self, region: Option<String>) -> Self {
        if region.is_some() {
            self.region = region;
        }
        self
    }

    /// Overrides the endpoint when `Some` (the `[sqs] endpoint_url` setting); `None` keeps the
    /// URL's.
    pub fn with_endpoint_url(mut self, endpoint_url: Option<String>) -> Self {
        if let Some(e) = endpoint_url {
            self.endpoint_url = Some(e.trim_end_matches('/').to_string());
        }
        self
    }

    /// Turns FIFO queues on (the `[sqs] fifo` setting). `false` keeps the URL's `fifo=`.
    pub fn with_fifo(mut self, fifo: bool) -> Self {
        self.fifo |= fifo;
        self
    }

    /// Sets how FIFO messages are grouped.
    pub fn with_fifo_group(mut self, group: FifoGroup) -> Self {
        self.fifo_group = group;
        self
    }

    /// Checks what the URL parser cannot: the instance prefix follows the one prefix rule of
    /// every backend ([`adapter::check_prefix`]).
    pub(crate) fn validate(&self) -> Result<()> {
        adapter::check_prefix(&self.prefix)?;
        self.ca_pem().map(drop)
    }

    /// The PEM text of [`tls_ca_file`](Self::tls_ca_file), if set; a file that cannot be read
    /// is a `Config` error naming the key.
    pub(crate) fn ca_pem(&self) -> Result<Option<Vec<u8>>> {
        let Some(path) = &self.tls_ca_file else {
            return Ok(None);
        };
        std::fs::read(path).map(Some).map_err(|e| {
            Error::config(format!(
                "key `sqs.tls_ca_file`: cannot read `{}`; accepted: the path of a PEM file with \
                 the CA certificate(s) that signed the endpoint's certificate",
                path.display()
            ))
            .with_source(e)
        })
    }

    /// The region to use: this config's, else the environment's, else [`DEFAULT_REGION`].
    pub fn resolved_region(&self) -> String {
        self.region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok().filter(|s| !s.is_empty()))
            .or_else(|| {
                std::env::var("AWS_DEFAULT_REGION")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| DEFAULT_REGION.to_string())
    }

    /// The SQS queue name for a Switchyard queue: `<name_prefix><prefix><queue>`, with every
    /// character outside `A-Za-z0-9_-` replaced by `-`, cut to SQS's 80 characters (`.fifo`
    /// included). When anything had to change, a hash of the full name is appended so that
    /// distinct Switchyard queues never share an SQS queue.
    pub fn queue_name(&self, queue: &str) -> String {
        let full = format!("{}{}{}", self.name_prefix, self.prefix, queue);
        let suffix = if self.fifo { ".fifo" } else { "" };
        let limit = 80 - suffix.len();
        let clean: String = full
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let name = if clean == full && clean.len() <= limit && !clean.is_empty() {
            clean
        } else {
            let hash = format!("-{:08x}", fnv1a(full.as_bytes()));
            let keep = limit - hash.len();
            let head: String = clean.chars().take(keep).collect();
            format!("{head}{hash}")
        };
        format!("{name}{suffix}")
    }
}

/// 32-bit FNV-1a: stable across processes and Rust versions (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::ErrorKind;

    #[test]
    fn region_host_and_empty() {
        let c = SqsConfig::from_url("sqs://eu-west-1").unwrap();
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.endpoint_url, None);

        let c = SqsConfig::from_url("sqs://127.0.0.1:4577").unwrap();
        assert_eq!(c.region, None);
        assert_eq!(c.endpoint_url.as_deref(), Some("http://127.0.0.1:4577"));

        let c = SqsConfig::from_url("sqs://localhost:4577/app-?region=us-west-2").unwrap();
        assert_eq!(c.region.as_deref(), Some("us-west-2"));
        assert_eq!(c.endpoint_url.as_deref(), Some("http://localhost:4577"));
        assert_eq!(c.name_prefix, "app-");

        let c = SqsConfig::from_url("sqs://").unwrap();
        assert_eq!(c, SqsConfig::default());

        let c = SqsConfig::from_url(
            "sqs://us-gov-west-1?endpoint=https://sqs.example:8443/&fifo=true&fifo_group=job",
        )
        .unwrap();
        assert_eq!(c.region.as_deref(), Some("us-gov-west-1"));
        assert_eq!(c.endpoint_url.as_deref(), Some("https://sqs.example:8443"));
        assert!(c.fifo);
        assert_eq!(c.fifo_group, FifoGroup::Job);
    }

    #[test]
    fn settings_override_the_url() {
        let c = SqsConfig::from_url("sqs://eu-west-1?fifo=true")
            .unwrap()
            .with_region(None)
            .with_endpoint_url(Some("http://127.0.0.1:9/".into()))
            .with_fifo(false);
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.endpoint_url.as_deref(), Some("http://127.0.0.1:9"));
        assert!(c.fifo, "with_fifo(false) keeps the URL's fifo=true");
        let c = c.with_region(Some("ap-south-1".into()));
        assert_eq!(c.resolved_region(), "ap-south-1");
    }

    #[test]
    fn bad_urls_name_the_key_and_the_forms() {
        for url in [
            "sqs:nothing",
            "amqp://localhost",
            "sqs://user:pw@eu-west-1",
            "sqs://eu-west-1/a/b",
            "sqs://eu-west-1?colour=blue",
            "sqs://eu-west-1?fifo=maybe",
            "sqs://eu-west-1?endpoint=ftp://x",
            "not a url",
        ] {
            let e = SqsConfig::from_url(url).expect_err(url);
            assert_eq!(e.kind(), ErrorKind::Config, "{url}");
            assert!(e.message().contains("key `queue`"), "{url}: {e}");
            assert!(e.message().contains("sqs://<region>"), "{url}: {e}");
        }
    }

    /// The instance prefix follows the one rule of every backend; the default passes.
    #[test]
    fn a_ca_file_must_be_readable() {
        let c = SqsConfig::default().with_tls_ca_file(Some("/nonexistent/ca.pem"));
        let e = c.validate().unwrap_err();
        assert_eq!(e.kind(), switchyard_core::ErrorKind::Config);
        assert!(e.message().contains("sqs.tls_ca_file"), "{e}");
        assert!(e.message().contains("/nonexistent/ca.pem"), "{e}");
        assert!(SqsConfig::default().validate().is_ok());
    }

    #[test]
    fn validate_applies_the_prefix_rule() {
        SqsConfig::default().validate().unwrap();
        SqsConfig::from_url("sqs://eu-west-1/prod-")
            .unwrap()
            .validate()
            .unwrap();
        for p in ["", "my-app", "a.b", &"x".repeat(33)] {
            let e = SqsConfig::default().with_prefix(p).validate().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{p}");
            assert!(e.message().contains("key `prefix`"), "{p}: {e}");
        }
    }

    #[test]
    fn queue_names_follow_sqs_rules() {
        let c = SqsConfig::default().with_prefix("switchyard_");
        assert_eq!(c.queue_name("default"), "switchyard_default");
        let dotted = c.queue_name("mail.outbound");
        assert!(dotted.starts_with("switchyard_mail-outbound-"), "{dotted}");
        assert_ne!(dotted, c.queue_name("mail-outbound"));
        assert_ne!(c.queue_name("a.b"), c.queue_name("a:b"));
        let long = c.queue_name(&"x".repeat(200));
        assert_eq!(long.len(), 80);
        let fifo = SqsConfig {
            fifo: true,
            ..c.clone()
        };
        let f = fifo.queue_name(&"y".repeat(200));
        assert_eq!(f.len(), 80);
        assert!(f.ends_with(".fifo"));
        assert_eq!(fifo.queue_name("default"), "switchyard_default.fifo");
        for n in [dotted, long, f] {
            let base = n.trim_end_matches(".fifo");
            assert!(base
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'));
        }
    }
}
