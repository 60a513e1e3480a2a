//! [`SqliteConfig`] and its builder, and turning it into checked connect options: the prefix
//! rule and the `sqlite:` URL, which must name a database file (or `:memory:`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use switchyard_core::adapter::check_prefix;
use switchyard_core::{Error, Result, SharedClock};

/// Settings of the SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// `sqlite://path/to/file.db`, `sqlite:relative.db` or `sqlite::memory:`.
    pub url: String,
    /// Prepended to every table name, so several independent instances can share one file:
    /// 1 to 32 ASCII letters, digits or `_`, starting with a letter or `_`
    /// ([`PREFIX_RULE`](switchyard_core::adapter::PREFIX_RULE)).
    pub prefix: String,
    /// Reader connections (the writer is always one).
    pub readers: u32,
    /// How long a write waits for another process's lock before failing.
    pub busy_timeout: Duration,
    /// Largest payload accepted by `enqueue`.
    pub max_payload_bytes: usize,
    /// Whether `connect` creates the database file when it does not exist (the default). Off
    /// for tools that must not create anything (`switchyard list`, `status`, `doctor`): a
    /// missing file is then a `NotFound` error naming it.
    pub create_if_missing: bool,
    /// Where every "now" of the backend comes from (enqueue, claim, leases, retries, pruning,
    /// leadership); `None` is the system clock. Tests pass a `TestClock` to move time by hand.
    pub clock: Option<SharedClock>,
}

impl SqliteConfig {
    /// Defaults for `url`: prefix `switchyard_`, 4 readers, 5 s busy timeout, 1 MiB payloads,
    /// the file created if missing.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "switchyard_".to_string(),
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            max_payload_bytes: 1024 * 1024,
            create_if_missing: true,
            clock: None,
        }
    }

    /// Sets whether `connect` creates a missing database file (see
    /// [`create_if_missing`](Self::create_if_missing)).
    pub fn with_create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// Reads the time from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Sets the table prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Checks the prefix and parses the URL: the connect options of both pools (before the
    /// pragmas are set). Every error is a `Config` error naming the key.
    pub(crate) fn connect_options(&self) -> Result<SqliteConnectOptions> {
        check_prefix(&self.prefix)?;
        parse_url(&self.url)
    }

    /// Whether the URL names an in-memory database, which lives only on its one connection.
    pub(crate) fn in_memory(&self) -> bool {
        self.url.contains(":memory:") || self.url.contains("mode=memory")
    }
}

/// Parses a `sqlite:` URL into connect options.
fn parse_url(url: &str) -> Result<SqliteConnectOptions> {
    // `sqlite://` or `sqlite:` alone would open a private temporary database per
    // connection: jobs would vanish as soon as they were stored.
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.split('?').next().unwrap_or_default().is_empty() {
        return Err(Error::config(format!(
            "key `storage`: `{url}` names no database file; accepted: sqlite://path/to/file.db, \
             sqlite:file.db, sqlite::memory:"
        )));
    }
    SqliteConnectOptions::from_str(url).map_err(|e| {
        Error::config(format!(
            "key `storage`: `{url}` is not a valid SQLite URL; accepted: \
             sqlite://path/to/file.db, sqlite:file.db, sqlite::memory:"
        ))
        .with_source(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::ErrorKind;

    /// The backend applies the one prefix rule of `switchyard_core::adapter::check_prefix`.
    #[test]
    fn bad_prefix_is_a_config_error() {
        let config = SqliteConfig::new("sqlite::memory:").with_prefix("bad-prefix");
        let e = config.connect_options().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("key `prefix`"), "{e}");
        assert!(SqliteConfig::new("sqlite::memory:")
            .connect_options()
            .is_ok());
    }

    /// A URL without a file would give every connection its own temporary database.
    #[test]
    fn a_url_must_name_a_database() {
        for url in ["sqlite://", "sqlite:", "sqlite://?mode=rwc"] {
            let e = parse_url(url).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{url}");
            assert!(e.message().contains("names no database file"), "{e}");
            assert!(e.message().contains("sqlite::memory:"), "{e}");
        }
        for url in [
            "sqlite::memory:",
            "sqlite:jobs.db",
            "sqlite://dir/jobs.db?mode=rwc",
        ] {
            assert!(parse_url(url).is_ok(), "{url}");
        }
        assert!(SqliteConfig::new("sqlite::memory:").in_memory());
        assert!(!SqliteConfig::new("sqlite:jobs.db").in_memory());
    }
}
