//! SQS over https from configuration alone: a TLS-terminating proxy made by the test (its
//! certificate signed by the test's own CA) in front of the emulator is the endpoint
//! `https://localhost:<port>`; a job runs through it when `sqs.tls_ca_file` names the CA, and
//! without it the endpoint's certificate is refused with an error that says so. Needs fauxqs
//! at `SWITCHYARD_TEST_SQS_ENDPOINT` (default `http://127.0.0.1:4577`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use switchyard::{Config, Registry, Switchyard};
use switchyard_conformance::{random_prefix, wait_for};
use switchyard_core::{ErrorKind, JobState, NewJob};
use tokio::net::{TcpListener, TcpStream};

/// The emulator's `host:port`.
fn upstream() -> String {
    let endpoint = std::env::var("SWITCHYARD_TEST_SQS_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:4577".into());
    let url = url::Url::parse(&endpoint).expect("SWITCHYARD_TEST_SQS_ENDPOINT is a URL");
    format!(
        "{}:{}",
        url.host_str().expect("a host"),
        url.port_or_known_default().expect("a port")
    )
}

/// A CA made by the test, and a certificate it signed for `localhost`: (CA PEM, server
/// certificate DER, server key DER).
fn test_pki() -> (String, Vec<u8>, Vec<u8>) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "switchyard test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), server.der().to_vec(), server_key.serialize_der())
}

/// Accepts TLS on a free loopback port with `cert`/`key` and forwards each connection's bytes
/// to the emulator; runs until the test ends. Returns the port.
async fn tls_proxy(cert: Vec<u8>, key: Vec<u8>) -> u16 {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = upstream();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                // A refused handshake (the client does not trust the certificate) ends here.
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

fn config(toml: &str) -> Config {
    Config::from_figment(
        Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml)),
    )
    .unwrap_or_else(|e| panic!("{toml}: {e}"))
}

/// A job runs through an SQS queue reached over https, the endpoint's CA named by
/// `sqs.tls_ca_file`; without the setting the system's CAs do not know the certificate, and
/// the error says it is not trusted and which setting to use; an https endpoint on a plain
/// HTTP port is named as such.
#[tokio::test]
async fn a_job_runs_through_an_https_endpoint_with_the_configured_ca() {
    let (ca_pem, cert, key) = test_pki();
    let port = tls_proxy(cert, key).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let prefix = random_prefix();
    let base = format!(
        "storage = \"sqlite://{}\"\nqueue = \"sqs://\"\nprefix = \"{prefix}\"\n\
         [sqs]\nregion = \"us-east-1\"\nendpoint_url = \"https://localhost:{port}\"\n",
        dir.path().join("jobs.db").display()
    );

    let e = Switchyard::connect(config(&base))
        .await
        .expect_err("the system's CAs do not know the test's CA");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains("certificate is not trusted"), "{e}");
    assert!(e.message().contains("sqs.tls_ca_file"), "{e}");

    // The emulator's own port speaks plain HTTP: an https:// endpoint there is named.
    let plain = base.replace(
        &format!("https://localhost:{port}"),
        &format!("https://{}", upstream()),
    );
    let e = Switchyard::connect(config(&plain))
        .await
        .expect_err("https to a plain HTTP port");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains("did not answer in TLS"), "{e}");
    assert!(e.message().contains("http://"), "{e}");

    let toml = format!("{base}tls_ca_file = \"{}\"\n", ca_file.display());
    let sy = Switchyard::connect(config(&toml))
        .await
        .expect("connect over https with the test's CA");
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let registry = Registry::new().register_fn("https_hello", move |_, _| {
        r.fetch_add(1, Ordering::SeqCst);
        async { Ok(None) }
    });
    let running = sy.start(registry).expect("the registry needs no state");
    let id = sy
        .client()
        .enqueue_raw(vec![NewJob::new("https_hello", serde_json::json!({}))])
        .await
        .unwrap()[0]
        .id();
    let client = sy.client();
    wait_for(
        "the job to run through SQS over https",
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
    sy.queue().unwrap().destroy().await.unwrap();
    sy.storage().destroy().await.unwrap();
}
