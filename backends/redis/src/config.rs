//! [`RedisConfig`]: the settings of the Redis backend, and the checks on its URL and prefix
//! (the prefix rule is the one every backend shares, `switchyard_core::adapter::check_prefix`).

use std::path::PathBuf;
use std::time::Duration;

use switchyard_core::adapter::{check_prefix, redact_url};
use switchyard_core::{Error, Result};

/// What a Redis URL may look like, for error messages.
const ACCEPTED_URLS: &str = "redis://[user:password@]host[:port][/db] or \
                             rediss://[user:password@]host[:port][/db] (TLS)";

/// Settings of the Redis backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]`, or `rediss://…` for TLS (checked against
    /// the webpki roots, or [`tls_ca_file`](Self::tls_ca_file); `rediss://…#insecure` skips
    /// the checks).
    pub url: String,
    /// Every key starts with `{prefix}:`. The braces are a Redis Cluster hash tag, so all keys
    /// of one instance live in one slot. 1 to 32 ASCII letters, digits or `_`, starting with a
    /// letter or `_` (the rule of every backend, `switchyard_core::adapter::PREFIX_RULE`).
    pub prefix: String,
    /// Largest payload accepted by `enqueue`, in bytes of its JSON encoding.
    pub max_payload_bytes: usize,
    /// Safety net for finished jobs: their hash expires this long after they finish, even when
    /// no pruner runs. Keep it longer than the pruner's retention. Zero disables it.
    pub finished_ttl: Duration,
    /// Whether the storage's `connect` logs a warning (once per process) when the server keeps
    /// nothing over a restart. On by default, for workers; command-line tools turn it off and
    /// leave the finding to `switchyard doctor`.
    pub warn_no_persistence: bool,
    /// With `rediss://`: a PEM file of the CA certificate(s) that signed the server's
    /// certificate, trusted instead of the built-in (webpki) roots. For a private CA or a
    /// self-signed server. `None`: the built-in roots.
    pub tls_ca_file: Option<PathBuf>,
    /// With `rediss://`: accept any server certificate, unchecked (the same as the URL's
    /// `#insecure`). The connection is encrypted but open to interception: for tests only.
    pub tls_insecure: bool,
}

impl RedisConfig {
    /// Defaults for `url`: prefix `switchyard`, 1 MiB payloads, finished jobs expire after 7 days,
    /// the persistence warning on.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "switchyard".to_string(),
            max_payload_bytes: 1024 * 1024,
            finished_ttl: Duration::from_secs(7 * 24 * 3600),
            warn_no_persistence: true,
            tls_ca_file: None,
            tls_insecure: false,
        }
    }

    /// Sets whether `connect` warns about a server without persistence (see
    /// [`warn_no_persistence`](Self::warn_no_persistence)).
    pub fn with_persistence_warning(mut self, warn: bool) -> Self {
        self.warn_no_persistence = warn;
        self
    }

    /// Trusts the CA certificate(s) in the PEM file `path` for `rediss://`, instead of the
    /// built-in roots (see [`tls_ca_file`](Self::tls_ca_file)).
    pub fn with_tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// Skips the server certificate's checks for `rediss://` (see
    /// [`tls_insecure`](Self::tls_insecure)).
    pub fn with_tls_insecure(mut self, insecure: bool) -> Self {
        self.tls_insecure = insecure;
        self
    }

    /// Sets the key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the payload limit.
    pub fn with_max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }

    /// Sets how long a finished job's hash lives at most.
    pub fn with_finished_ttl(mut self, ttl: Duration) -> Self {
        self.finished_ttl = ttl;
        self
    }

    /// Checks the URL and the prefix without connecting; errors name the URL's key as
    /// `storage`.
    pub fn validate(&self) -> Result<()> {
        self.validate_as("storage")
    }

    /// The same checks, naming the URL's configuration key `key` (`storage` or `queue`).
    pub(crate) fn validate_as(&self, key: &str) -> Result<()> {
        check_url(&self.url, key)?;
        self.check_tls(key)?;
        check_prefix(&self.prefix)
    }

    /// The TLS settings fit the URL: only with `rediss://`, a CA file that is there, and not
    /// both a CA file and no checks at all.
    fn check_tls(&self, key: &str) -> Result<()> {
        let tls = self.url.starts_with("rediss://");
        if !tls && (self.tls_ca_file.is_some() || self.tls_insecure) {
            return Err(Error::config(format!(
                "key `redis.tls_ca_file` / `redis.tls_insecure`: set, but key `{key}` is \
                 `{}`, which does not use TLS; accepted: a rediss:// URL with them, or neither",
                redact_url(&self.url)
            )));
        }
        if let Some(path) = &self.tls_ca_file {
            if self.tls_insecure || self.url.ends_with("#insecure") {
                return Err(Error::config(
                    "key `redis.tls_ca_file`: set together with `#insecure` / \
                     `redis.tls_insecure`, which checks no certificate; accepted: one of them \
                     (the CA file, to check the server against it)",
                ));
            }
            if !path.is_file() {
                return Err(Error::config(format!(
                    "key `redis.tls_ca_file`: `{}` is not a file; accepted: the path of a PEM \
                     file with the CA certificate(s) that signed the server's certificate",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    /// The URL the redis crate is given: `#insecure` appended when
    /// [`tls_insecure`](Self::tls_insecure) asks for it.
    pub(crate) fn driver_url(&self) -> String {
        if self.tls_insecure && !self.url.ends_with("#insecure") {
            format!("{}#insecure", self.url)
        } else {
            self.url.clone()
        }
    }
}

/// Checks that `url`, the value of the configuration key `key`, is a `redis://` or `rediss://`
/// URL with a host.
pub(crate) fn check_url(url: &str, key: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::config(format!(
            "key `{key}`: `{}` is not a valid Redis URL ({why}); accepted: {ACCEPTED_URLS}",
            redact_url(url)
        ))
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !crate::URL_SCHEMES.contains(&parsed.scheme()) {
        return Err(bad(&format!("scheme `{}`", parsed.scheme())));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    let path = parsed.path().trim_start_matches('/');
    if !path.is_empty() && path.parse::<u32>().is_err() {
        return Err(bad(&format!("database `{path}` is not a number")));
    }
    // The redis crate reads `protocol` and ignores every other query key; Switchyard's
    // scripts and listener speak RESP2. Anything else is a mistake (a `?prefix=` meant for
    // the `prefix` setting, say) that would otherwise pass silently.
    for (k, v) in parsed.query_pairs() {
        match (k.as_ref(), v.as_ref()) {
            ("protocol", "2" | "resp2") => {}
            ("protocol", other) => {
                return Err(bad(&format!(
                    "protocol `{other}`: Switchyard speaks RESP2, the default; accepted: \
                     protocol=resp2 or protocol=2 (lower case), or no protocol"
                )))
            }
            (other, _) => {
                return Err(bad(&format!(
                    "unknown query key `{other}`; accepted: protocol=resp2 (the key prefix, \
                     payload limit and finished-job expiry are settings: `prefix`, \
                     `max_payload_bytes` and `redis.finished_ttl_secs` in the configuration, \
                     `RedisConfig`'s fields in code)"
                )))
            }
        }
    }
    // `rediss://…#insecure` skips the server certificate's checks (the redis crate reads it);
    // any other fragment is a mistake.
    match (parsed.scheme(), parsed.fragment()) {
        (_, None) | ("rediss", Some("insecure")) => {}
        (_, Some(f)) => {
            return Err(bad(&format!(
                "fragment `#{f}`; accepted: none, or #insecure on rediss:// (no certificate \
                 checks)"
            )))
        }
    }
    #[cfg(not(feature = "tls"))]
    if parsed.scheme() == "rediss" {
        return Err(Error::config(format!(
            "key `{key}`: `{}` asks for TLS, but switchyard-redis was built without its `tls` \
             feature (the `redis` feature of `switchyard` turns it on); enable it, or use \
             redis://",
            redact_url(url)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::ErrorKind;

    #[test]
    fn accepts_redis_urls() {
        check_url("redis://127.0.0.1:6379", "storage").unwrap();
        check_url("redis://:secret@localhost/2", "storage").unwrap();
        check_url("redis://user:secret@example.com:6380/0", "queue").unwrap();
        check_url("redis://127.0.0.1:6379/?protocol=resp2", "storage").unwrap();
    }

    /// Query keys the redis crate would ignore (or a protocol the backend does not speak) are
    /// errors naming the key, not settings that silently do nothing.
    #[test]
    fn rejects_unknown_query_keys_and_fragments() {
        for (url, names) in [
            ("redis://h:6379?prefix=jobs", "`prefix`"),
            ("redis://h:6379/0?db=1", "`db`"),
            ("redis://h:6379?protocol=resp3", "resp3"),
            ("redis://h:6379#insecure", "#insecure"),
            ("redis://h:6379#x", "#x"),
        ] {
            let e = check_url(url, "queue").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{url}");
            assert!(e.message().contains("key `queue`"), "{e}");
            assert!(e.message().contains(names), "{url}: {e}");
        }
        let e = check_url("redis://h?prefix=jobs", "storage").unwrap_err();
        assert!(e.message().contains("protocol=resp2"), "{e}");
        #[cfg(feature = "tls")]
        check_url("rediss://h:6380#insecure", "storage").unwrap();
    }

    #[test]
    fn rejects_bad_urls_naming_the_key_and_forms() {
        for url in [
            "postgres://x",
            "redis//x",
            "redis://",
            "redis://h/abc",
            "nonsense",
        ] {
            let e = check_url(url, "storage").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{url}");
            assert!(e.message().contains("key `storage`"), "{e}");
            assert!(e.message().contains("redis://"), "{e}");
        }
    }

    #[test]
    fn hides_passwords() {
        let e = check_url("postgres://u:hunter2@h", "queue").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    /// The TLS settings need a rediss:// URL, a CA file that is there, and not both a CA file
    /// and no checks; `tls_insecure` becomes the redis crate's `#insecure`.
    #[test]
    fn checks_tls_settings() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "pem").unwrap();
        let plain = RedisConfig::new("redis://h:6379").with_tls_ca_file(&ca);
        let e = plain.validate().unwrap_err();
        assert!(e.message().contains("does not use TLS"), "{e}");
        let e = RedisConfig::new("redis://h:6379")
            .with_tls_insecure(true)
            .validate()
            .unwrap_err();
        assert!(e.message().contains("rediss://"), "{e}");
        let missing = RedisConfig::new("rediss://h:6379").with_tls_ca_file("/nonexistent.pem");
        let e = missing.validate().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("/nonexistent.pem"), "{e}");
        for both in [
            RedisConfig::new("rediss://h:6379#insecure").with_tls_ca_file(&ca),
            RedisConfig::new("rediss://h:6379")
                .with_tls_ca_file(&ca)
                .with_tls_insecure(true),
        ] {
            let e = both.validate().unwrap_err();
            assert!(e.message().contains("one of them"), "{e}");
        }
        let ok = RedisConfig::new("rediss://h:6379").with_tls_ca_file(&ca);
        ok.validate().unwrap();
        assert_eq!(ok.driver_url(), "rediss://h:6379");
        let insecure = RedisConfig::new("rediss://h:6379").with_tls_insecure(true);
        insecure.validate().unwrap();
        assert_eq!(insecure.driver_url(), "rediss://h:6379#insecure");
    }

    /// The configuration applies the one prefix rule of every backend (which refuses `-` and
    /// `.`, accepted by Redis alone before); a bad prefix is a `Config` error naming the key.
    #[test]
    fn checks_prefixes() {
        let with = |p: &str| RedisConfig::new("redis://127.0.0.1:6379").with_prefix(p);
        with("switchyard").validate().unwrap();
        with("t3kq9z_").validate().unwrap();
        for p in [
            "",
            "a{b}",
            "a b",
            "my-app",
            "a.b",
            &"x".repeat(33),
            &"x".repeat(65),
        ] {
            let e = with(p).validate().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{p}");
            assert!(e.message().contains("key `prefix`"), "{e}");
        }
    }
}
