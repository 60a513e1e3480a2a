//! TLS to Redis, from configuration alone: a private `redis-server` that speaks TLS only,
//! with a certificate the test makes with its own CA, runs a job for a `Switchyard` whose
//! storage is `rediss://…` with `redis.tls_ca_file`; an untrusted certificate, and a plain
//! port, are refused with errors that say so and what to set.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use switchyard::{Config, Registry, Switchyard};
use switchyard_conformance::{random_prefix, wait_for};
use switchyard_core::{ErrorKind, JobState, NewJob};

use crate::private_server::{PrivateRedis, ServerTls};
use crate::support::url;

/// A certificate authority made by the test, which signs server certificates.
struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A server certificate for `names` and its key, PEM.
    fn issue(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A TLS-only private server with a certificate from `ca` for 127.0.0.1.
async fn tls_server(ca: &TestCa) -> PrivateRedis {
    let (cert, key) = ca.issue(&["127.0.0.1", "localhost"]);
    let ca_pem = ca.cert.pem();
    PrivateRedis::start_tls(
        ServerTls {
            cert: &cert,
            key: &key,
            ca: &ca_pem,
        },
        &[],
    )
    .await
}

/// A configuration read from TOML, as a deployment writes it.
fn config(toml: &str) -> Config {
    Config::from_figment(
        Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml)),
    )
    .unwrap_or_else(|e| panic!("{toml}: {e}"))
}

fn ca_setting(path: &Path) -> String {
    format!("[redis]\ntls_ca_file = \"{}\"\n", path.display())
}

/// A job enqueued and run by a worker of a `Switchyard` built from `storage = "rediss://…"`
/// and `redis.tls_ca_file`, on a server with no plain port; the same settings open a
/// `rediss://` queue beside a SQLite storage.
#[tokio::test]
async fn a_job_runs_over_tls_with_the_configured_ca() {
    let ca = TestCa::new("switchyard test CA");
    let server = tls_server(&ca).await;
    let prefix = random_prefix();
    let toml = format!(
        "storage = \"{}\"\nprefix = \"{prefix}\"\n{}",
        server.url,
        ca_setting(&server.file("ca.pem"))
    );
    let sy = Switchyard::connect(config(&toml))
        .await
        .expect("connect over TLS with the test's CA");
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let registry = Registry::new().register_fn("tls_hello", move |_, _| {
        r.fetch_add(1, Ordering::SeqCst);
        async { Ok(None) }
    });
    let running = sy.start(registry).expect("the registry needs no state");
    let id = sy
        .client()
        .enqueue_raw(vec![NewJob::new("tls_hello", serde_json::json!({}))])
        .await
        .unwrap()[0]
        .id();
    let client = sy.client();
    wait_for(
        "the job to complete over TLS",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            async move {
                let job = client.get(id).await.unwrap()?;
                (job.state == JobState::Completed).then_some(())
            }
        },
    )
    .await;
    running.stop().await;
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    sy.storage().destroy().await.unwrap();

    // The same server as an external queue, with a SQLite storage beside it.
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "storage = \"sqlite://{}\"\nqueue = \"{}\"\nprefix = \"{prefix}\"\n{}",
        dir.path().join("jobs.db").display(),
        server.url,
        ca_setting(&server.file("ca.pem"))
    );
    let queue = switchyard::connect::connect_queue(&config(&toml))
        .await
        .expect("a rediss:// queue with the test's CA")
        .expect("an external queue");
    assert_eq!(queue.name(), "redis");
    queue.destroy().await.unwrap();
}

/// A certificate the client cannot trust (no CA setting: the built-in roots; or another CA's
/// file) is refused at once, not after the connection manager's retries: a `Config` error that
/// says the certificate is not trusted, names the URL without its password and the setting to
/// use. `redis.tls_insecure` (like `#insecure`) connects without checks.
#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let ca = TestCa::new("switchyard test CA");
    let server = tls_server(&ca).await;
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("other-ca.pem");
    std::fs::write(&other_ca, TestCa::new("another CA").cert.pem()).unwrap();
    let with_password = server.url.replace("rediss://", "rediss://:hunter2@");
    for extra in [String::new(), ca_setting(&other_ca)] {
        let toml = format!(
            "storage = \"{with_password}\"\nprefix = \"{}\"\n{extra}",
            random_prefix()
        );
        let started = Instant::now();
        let e = Switchyard::connect(config(&toml))
            .await
            .err()
            .unwrap_or_else(|| panic!("{toml} connected"));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refused at once, not retried: {:?}",
            started.elapsed()
        );
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(!e.is_retryable(), "{e}");
        let msg = e.message();
        assert!(msg.contains("certificate is not trusted"), "{msg}");
        assert!(msg.contains("redis.tls_ca_file"), "{msg}");
        assert!(msg.contains("rediss://:***@127.0.0.1"), "{msg}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    // No checks at all: encrypted, and connected.
    for toml in [
        format!(
            "storage = \"{}\"\nprefix = \"{}\"\n[redis]\ntls_insecure = true\n",
            server.url,
            random_prefix()
        ),
        format!(
            "storage = \"{}#insecure\"\nprefix = \"{}\"\n",
            server.url,
            random_prefix()
        ),
    ] {
        let sy = Switchyard::connect(config(&toml))
            .await
            .unwrap_or_else(|e| panic!("{toml}: {e}"));
        sy.storage().destroy().await.unwrap();
    }
}

/// `rediss://` pointed at a plain port says the server did not answer in TLS and what to use.
#[tokio::test]
async fn a_plain_port_is_named() {
    let plain = url().replace("redis://", "rediss://");
    let toml = format!("storage = \"{plain}\"\nprefix = \"{}\"\n", random_prefix());
    let e = Switchyard::connect(config(&toml))
        .await
        .expect_err("rediss:// to a plain port");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains("did not answer in TLS"), "{e}");
    assert!(e.message().contains("redis://"), "{e}");
}

/// The TLS settings without a `rediss://` URL are a configuration error naming the keys.
#[test]
fn tls_settings_need_a_rediss_url() {
    let toml = format!("storage = \"{}\"\n[redis]\ntls_insecure = true\n", url());
    let e = Config::from_figment(
        Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(&toml)),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("redis.tls_insecure"), "{e}");
    assert!(e.message().contains("rediss://"), "{e}");
}
