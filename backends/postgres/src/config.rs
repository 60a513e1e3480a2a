//! [`PostgresConfig`] and its builder, and turning it into checked connect options: the
//! prefix rule, the `postgres://` URL and the query keys sqlx would silently ignore.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use switchyard_core::adapter::{check_prefix, redact_url};
use switchyard_core::{Error, Result};

use crate::URL_SCHEMES;

/// Settings of the PostgreSQL backend.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database?sslmode=disable` (or `postgresql://…`).
    /// TLS from the URL: `sslmode=require` (encrypted, certificate not checked; with
    /// `sslrootcert` it is checked against that CA, as libpq does), `verify-ca`, `verify-full`
    /// (CA and host name), and `sslrootcert=/path/ca.pem` for a CA the webpki roots lack;
    /// `sslcert` and `sslkey` for a client certificate. Needs the `tls` feature.
    pub url: String,
    /// Prepended to every table name and to the notification channel, so several independent
    /// instances can share one database: 1 to 32 ASCII letters, digits or `_`, starting with a
    /// letter or `_` ([`PREFIX_RULE`](switchyard_core::adapter::PREFIX_RULE)).
    pub prefix: String,
    /// Connections in the pool (the listener holds one more of its own).
    pub max_connections: u32,
    /// Whether to `LISTEN` for wake-ups. Turn it off behind PgBouncer in transaction mode
    /// (which cannot hold a `LISTEN`); workers then rely on polling alone.
    pub listen: bool,
    /// Largest payload, in bytes of its JSON encoding, accepted by `enqueue`.
    pub max_payload_bytes: usize,
    /// How long an operation waits for a free (or new) connection before failing with
    /// `Unavailable`.
    pub acquire_timeout: Duration,
    /// Whether the worker's hot path (claim, heartbeat, complete, rescue) waits for its commit
    /// to be flushed to disk. Off by default: those commits return before the WAL flush, which
    /// takes fsync latency off every claim and completion. A database crash may then forget the
    /// last few hundred milliseconds of them, so a job may run again (delivery is at-least-once
    /// anyway), but no job is ever lost: enqueue, cancel, retry and leadership always commit
    /// durably. Turn it on to make every write wait for the flush.
    pub synchronous_commit: bool,
}

impl PostgresConfig {
    /// Defaults for `url`: prefix `switchyard_`, 10 connections, listening on, 1 MiB payloads,
    /// 10 s acquire timeout, asynchronous commit on the worker's hot path.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "switchyard_".to_string(),
            max_connections: 10,
            listen: true,
            max_payload_bytes: 1024 * 1024,
            acquire_timeout: Duration::from_secs(10),
            synchronous_commit: false,
        }
    }

    /// Sets the table prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the pool size.
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Turns `LISTEN` wake-ups on or off.
    pub fn with_listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// Sets the payload limit.
    pub fn with_max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }

    /// Makes the worker's hot path wait for durable commits (see
    /// [`synchronous_commit`](Self::synchronous_commit)).
    pub fn with_synchronous_commit(mut self, yes: bool) -> Self {
        self.synchronous_commit = yes;
        self
    }

    /// Sets the acquire timeout.
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Checks the prefix and parses the URL: the connect options of the pool (before the
    /// application name is set). Every error is a `Config` error naming the key.
    pub(crate) fn connect_options(&self) -> Result<PgConnectOptions> {
        check_prefix(&self.prefix)?;
        parse_url(&self.url)
    }
}

/// The query keys of a PostgreSQL URL that sqlx understands (`PgConnectOptions::from_str`),
/// besides `options[name]`.
const PG_URL_KEYS: [&str; 18] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// Parses a `postgres://` / `postgresql://` URL into connect options.
fn parse_url(url: &str) -> Result<PgConnectOptions> {
    let bad = |why: &str| {
        Error::config(format!(
            "key `storage`: `{}` is not a valid PostgreSQL URL ({why}); accepted: \
             postgres://user:password@host:port/database?sslmode=disable or \
             postgresql://user:password@host:port/database?sslmode=verify-full&sslrootcert=ca.pem",
            redact_url(url)
        ))
    };
    let scheme = url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    if !URL_SCHEMES.contains(&scheme.as_str()) {
        return Err(bad("the scheme must be postgres:// or postgresql://"));
    }
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    // sqlx only logs a warning for a query key it does not know, so a misspelt `sslmode` or a
    // `?prefix=` meant for the `prefix` setting would pass silently.
    for (k, _) in parsed.query_pairs() {
        let known =
            PG_URL_KEYS.contains(&k.as_ref()) || (k.starts_with("options[") && k.ends_with(']'));
        if !known {
            return Err(bad(&format!(
                "query key `{k}` is not one sqlx reads (it would be ignored): remove it; \
                 accepted: {}, options[name]",
                PG_URL_KEYS.join(", ")
            )));
        }
    }
    for (k, v) in parsed.query_pairs() {
        check_file_key(url, &k, &v)?;
    }
    // libpq's `sslrootcert=system` (the system's CAs, with verify-full) is not sqlx's: sqlx
    // would read it as a file name. The built-in roots are always trusted, so it is dropped,
    // and verify-full is checked for or made the mode, as libpq does.
    let system = parsed
        .query_pairs()
        .any(|(k, v)| is_root_key(&k) && v == "system");
    let options = if system {
        let mut stripped = parsed.clone();
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(k, v)| !(is_root_key(k) && v == "system"))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        stripped.query_pairs_mut().clear().extend_pairs(kept);
        PgConnectOptions::from_str(stripped.as_str())
    } else {
        PgConnectOptions::from_str(url)
    }
    .map_err(|e| bad("its options are not understood").with_source(e))?;
    let options = if system {
        root_cert_system(url, &parsed, options)?
    } else {
        options
    };
    tls_mode(url, &parsed, options)
}

fn is_root_key(key: &str) -> bool {
    matches!(key, "sslrootcert" | "ssl-root-cert" | "ssl-ca")
}

/// `sslrootcert=system` wants `sslmode=verify-full`, the default it brings in libpq; a weaker
/// mode is refused, as libpq refuses it.
fn root_cert_system(
    url: &str,
    parsed: &url::Url,
    options: PgConnectOptions,
) -> Result<PgConnectOptions> {
    use sqlx::postgres::PgSslMode;
    let mode_given = parsed
        .query_pairs()
        .any(|(k, _)| matches!(&*k, "sslmode" | "ssl-mode"))
        || std::env::var_os("PGSSLMODE").is_some();
    match options.get_ssl_mode() {
        PgSslMode::VerifyFull => Ok(options),
        _ if !mode_given => Ok(options.ssl_mode(PgSslMode::VerifyFull)),
        _ => Err(Error::config(format!(
            "key `storage`: `{}`: `sslrootcert=system` checks the server against the trusted \
             roots and its host name, so it needs sslmode=verify-full (as with libpq); \
             accepted: sslmode=verify-full or no sslmode with it, or \
             `sslrootcert=/path/ca.pem` with another mode",
            redact_url(url)
        ))),
    }
}

/// The query keys that name a file (a CA, a client certificate, its key).
const PG_FILE_KEYS: [&str; 7] = [
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
];

/// A file named by `sslrootcert`, `sslcert` or `sslkey` must be there: sqlx would only find
/// out at connect time, as an I/O error that does not say which key it came from.
fn check_file_key(url: &str, key: &str, value: &str) -> Result<()> {
    // sqlx also takes a PEM document itself in place of a path; `system` is libpq's word
    // for the trusted roots.
    if !PG_FILE_KEYS.contains(&key)
        || value.starts_with("-----BEGIN")
        || (is_root_key(key) && value == "system")
    {
        return Ok(());
    }
    if std::path::Path::new(value).is_file() {
        return Ok(());
    }
    Err(Error::config(format!(
        "key `storage`: `{}`: query key `{key}` names `{value}`, which is not a file; accepted: \
         the path of a PEM file ({})",
        redact_url(url),
        if key.contains("key") {
            "the client certificate's private key"
        } else if key.contains("root") || key == "ssl-ca" {
            "the CA certificate(s) that signed the server's certificate"
        } else {
            "the client certificate"
        }
    )))
}

/// Whether the URL (or `PGSSLROOTCERT`) names a CA file.
fn names_root_cert(parsed: &url::Url) -> bool {
    parsed
        .query_pairs()
        .any(|(k, v)| is_root_key(&k) && v != "system")
        || std::env::var_os("PGSSLROOTCERT").is_some()
}

/// The TLS side of the options. With TLS compiled in, `sslmode=require` with a CA file checks
/// the certificate against it (`verify-ca`), as libpq does; sqlx alone would ignore the file.
#[cfg(feature = "tls")]
fn tls_mode(_url: &str, parsed: &url::Url, options: PgConnectOptions) -> Result<PgConnectOptions> {
    use sqlx::postgres::PgSslMode;
    if matches!(options.get_ssl_mode(), PgSslMode::Require) && names_root_cert(parsed) {
        return Ok(options.ssl_mode(PgSslMode::VerifyCa));
    }
    Ok(options)
}

/// Without TLS compiled in, a URL that requires TLS is refused here, naming the feature,
/// rather than at connect time.
#[cfg(not(feature = "tls"))]
fn tls_mode(url: &str, parsed: &url::Url, options: PgConnectOptions) -> Result<PgConnectOptions> {
    use sqlx::postgres::PgSslMode;
    let _ = names_root_cert(parsed);
    match options.get_ssl_mode() {
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => {
            Err(Error::config(format!(
                "key `storage`: `{}` requires TLS, but switchyard-postgres was built without its \
                 `tls` feature (the `postgres` feature of `switchyard` turns it on); accepted \
                 here: sslmode=disable, allow or prefer",
                redact_url(url)
            )))
        }
        _ => Ok(options),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::ErrorKind;

    /// The URL's password never reaches a message (`redact_url` itself is tested in core,
    /// with these URLs among others).
    #[test]
    fn redacts_passwords() {
        let e =
            parse_url("postgres://h/db?user=app&password=hunter2&connect_timeout=5").unwrap_err();
        assert!(e.message().contains("connect_timeout"), "{e}");
        assert!(!e.message().contains("hunter2"), "{e}");
        assert!(e.message().contains("password=***"), "{e}");
    }

    #[test]
    fn bad_urls_name_the_key_and_the_forms() {
        for url in ["mysql://h/db", "postgres//h", "", "postgres://u:pw@[::1/db"] {
            let e = parse_url(url).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{url}");
            assert!(e.message().contains("key `storage`"), "{e}");
            assert!(e.message().contains("postgresql://"), "{e}");
            assert!(!e.message().contains("pw@"), "{e}");
        }
        assert!(parse_url("postgresql://postgres@127.0.0.1:5432/test?sslmode=disable").is_ok());
    }

    /// A query key sqlx would ignore (with only a log line) is an error naming it.
    #[test]
    fn unknown_query_keys_are_errors() {
        for (url, key) in [
            ("postgres://h/db?prefix=jobs", "`prefix`"),
            (
                "postgres://h/db?sslmode=disable&ssl_mode=require",
                "`ssl_mode`",
            ),
        ] {
            let e = parse_url(url).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{url}");
            assert!(e.message().contains(key), "{url}: {e}");
            assert!(e.message().contains("sslmode"), "{e}");
        }
        for url in [
            "postgres://u:pw@h:5432/db?sslmode=disable&application_name=app",
            "postgres://h/db?options[statement_timeout]=5s&statement-cache-capacity=10",
        ] {
            assert!(parse_url(url).is_ok(), "{url}");
        }
    }

    /// A CA, certificate or key file that is not there is refused when the URL is read, naming
    /// the key; a PEM document in its place is left to sqlx.
    #[test]
    fn tls_files_must_exist() {
        let e = parse_url("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("`sslrootcert`"), "{e}");
        assert!(e.message().contains("/nonexistent/ca.pem"), "{e}");
        assert!(e.message().contains("CA certificate"), "{e}");
        let e = parse_url("postgres://h/db?sslkey=/nonexistent/k.pem").unwrap_err();
        assert!(e.message().contains("private key"), "{e}");
    }

    /// With TLS compiled in, every `sslmode` parses, and `require` with a CA file verifies the
    /// certificate against it, as libpq does.
    #[cfg(feature = "tls")]
    #[test]
    fn require_with_a_ca_file_verifies_it() {
        use sqlx::postgres::PgSslMode;
        let dir = std::env::temp_dir().join(format!("pg-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "not checked here").unwrap();
        let url = format!(
            "postgres://h/db?sslmode=require&sslrootcert={}",
            ca.display()
        );
        let mode = |url: &str| parse_url(url).unwrap().get_ssl_mode();
        assert!(matches!(mode(&url), PgSslMode::VerifyCa));
        assert!(matches!(
            mode("postgres://h/db?sslmode=require"),
            PgSslMode::Require
        ));
        let full = format!(
            "postgres://h/db?sslmode=verify-full&sslrootcert={}",
            ca.display()
        );
        assert!(matches!(mode(&full), PgSslMode::VerifyFull));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// libpq's `sslrootcert=system` is the built-in roots with verify-full (the mode it
    /// brings); a weaker mode with it is refused, as libpq refuses it.
    #[test]
    fn root_cert_system_means_verify_full() {
        use sqlx::postgres::PgSslMode;
        let mode = |url: &str| parse_url(url).map(|o| o.get_ssl_mode());
        assert!(matches!(
            mode("postgres://h/db?sslrootcert=system"),
            Ok(PgSslMode::VerifyFull)
        ));
        assert!(matches!(
            mode("postgres://h/db?sslmode=verify-full&sslrootcert=system&application_name=a"),
            Ok(PgSslMode::VerifyFull)
        ));
        let e = parse_url("postgres://u:pw@h/db?sslmode=require&sslrootcert=system").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("sslmode=verify-full"), "{e}");
        assert!(!e.message().contains("pw@"), "{e}");
    }

    /// The backend applies the one prefix rule of `switchyard_core::adapter::check_prefix`.
    #[test]
    fn bad_prefix_is_a_config_error() {
        let config = PostgresConfig::new("postgres://h/db").with_prefix("bad-prefix");
        assert_eq!(
            config.connect_options().unwrap_err().kind(),
            ErrorKind::Config
        );
        assert!(PostgresConfig::new("postgres://h/db")
            .connect_options()
            .is_ok());
    }
}
