//! TLS (`amqps://`) in the stock build, from configuration alone: a private RabbitMQ node with a
//! TLS listener only (a certificate from a CA the test makes) runs a job for a `Switchyard`
//! whose queue is `amqps://…?cacertfile=…`, and refuses a client that does not trust its
//! certificate with an error that says so; `amqps://` pointed at the test broker's plain port
//! says the broker did not answer in TLS and which port to use.
//!
//! The private node needs RabbitMQ's server scripts (`/usr/lib/rabbitmq/bin/rabbitmq-server`,
//! installed with the test services); it runs in a temp dir with its own node name, ports,
//! configuration and no plugins, and is stopped when the test ends.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use switchyard::{Config, Registry, Switchyard};
use switchyard_conformance::{random_prefix, wait_for};
use switchyard_core::{ErrorKind, JobState, NewJob};

/// The test broker's host and plain port, from `SWITCHYARD_TEST_AMQP_URL`.
fn plain_authority() -> String {
    let url = std::env::var("SWITCHYARD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    rest.split_once('/').map_or(rest, |(a, _)| a).to_string()
}

fn config(storage_dir: &Path, queue: String) -> Config {
    Config {
        storage: format!("sqlite://{}", storage_dir.join("jobs.db").display()),
        queue,
        prefix: random_prefix(),
        ..Config::default()
    }
}

/// `queue = "amqps://…"` passes the configuration's checks (with `?cacertfile=` too), and
/// connecting it to a plain AMQP port is a `Config` error naming the URL without its password,
/// what went wrong and the TLS port.
#[tokio::test]
async fn amqps_is_accepted_and_a_plain_port_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, TestCa::new("switchyard test CA").cert.pem()).unwrap();
    let authority = plain_authority();
    for queue in [
        format!("amqps://{authority}/%2f"),
        format!("amqps://{authority}/%2f?cacertfile={}", ca.display()),
    ] {
        let config = config(dir.path(), queue.clone());
        config.validate().expect("amqps:// is a supported queue");
        let e = switchyard::connect::connect_queue(&config)
            .await
            .err()
            .unwrap_or_else(|| panic!("{queue} connected to a plain port"));
        assert_eq!(e.kind(), ErrorKind::Config, "{queue}: {e}");
        let msg = e.message();
        assert!(msg.contains("did not answer in TLS"), "{msg}");
        assert!(msg.contains("5671"), "{msg}");
        if let Some((user, _)) = authority
            .split_once('@')
            .and_then(|(u, _)| u.split_once(':'))
        {
            assert!(msg.contains(&format!("{user}:***@")), "{msg}");
        }
    }
}

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private RabbitMQ node listening on TLS only, in a temp dir; its process group is ended
/// on drop.
struct PrivateBroker {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivateBroker {
    /// Starts the node with `ca`'s certificate for `localhost` and 127.0.0.1 (it asks clients
    /// for none). Returns once the port accepts connections; the caller waits for AMQP.
    fn start(ca: &TestCa) -> Self {
        let script = ["/usr/lib/rabbitmq/bin/rabbitmq-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect("RabbitMQ's /usr/lib/rabbitmq/bin/rabbitmq-server (installed with the test services)");
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
        std::fs::write(path("server.pem"), cert).unwrap();
        std::fs::write(path("server.key"), key).unwrap();
        std::fs::write(path("ca.pem"), ca.cert.pem()).unwrap();
        std::fs::write(path("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(path("env.conf"), "").unwrap();
        let port = free_port();
        std::fs::write(
            path("rabbitmq.conf"),
            format!(
                "listeners.tcp = none\nlisteners.ssl.default = 127.0.0.1:{port}\n\
                 ssl_options.cacertfile = {}\nssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\nssl_options.verify = verify_none\n\
                 ssl_options.fail_if_no_peer_cert = false\n",
                path("ca.pem").display(),
                path("server.pem").display(),
                path("server.key").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(path("broker.log")).unwrap();
        let node = format!(
            "sytls{}_{}@localhost",
            std::process::id(),
            fastrand_suffix()
        );
        let child = Command::new(script)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("RABBITMQ_CONF_ENV_FILE", path("env.conf"))
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_CONFIG_FILE", path("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start rabbitmq-server");
        let mut broker = Self { child, dir, port };
        let started = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return broker;
            }
            if let Some(status) = broker.child.try_wait().unwrap() {
                panic!("rabbitmq-server exited ({status}): {}", broker.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the private RabbitMQ node did not listen within 120 s: {}",
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// `amqps://guest:guest@127.0.0.1:<port>/%2f` with `query`.
    fn url(&self, query: &str) -> String {
        format!("amqps://guest:guest@127.0.0.1:{}/%2f{query}", self.port)
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                // The shell script has exited; end what may be left of its group.
                let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// A few random letters for the node name.
fn fastrand_suffix() -> String {
    random_prefix().trim_end_matches('_').to_string()
}

/// A job runs through an `amqps://` queue whose CA comes from the URL's `cacertfile`, on a
/// node with no plain listener; without the CA the broker's certificate is refused with a
/// `Config` error that says it is not trusted and names `cacertfile`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_over_amqps_on_a_private_tls_broker() {
    let ca = TestCa::new("switchyard test CA");
    let broker = PrivateBroker::start(&ca);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = broker.dir.path().join("ca.pem");
    let url = broker.url(&format!("?cacertfile={}", ca_file.display()));

    // The listener is up before the broker finishes booting: wait until AMQP answers.
    let config = config(dir.path(), url.clone());
    let queue = wait_for(
        "the private broker to accept AMQP over TLS",
        Duration::from_secs(60),
        || {
            let config = config.clone();
            async move {
                switchyard::connect::connect_queue(&config)
                    .await
                    .ok()
                    .flatten()
            }
        },
    )
    .await;
    queue.destroy().await.unwrap();

    let e = switchyard::connect::connect_queue(&self::config(dir.path(), broker.url("")))
        .await
        .expect_err("the system's CAs do not know the test's CA");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains("certificate is not trusted"), "{e}");
    assert!(e.message().contains("cacertfile"), "{e}");
    assert!(e.message().contains("guest:***@127.0.0.1"), "{e}");

    let sy = Switchyard::connect(config)
        .await
        .expect("connect over amqps with the test's CA");
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let registry = Registry::new().register_fn("amqps_hello", move |_, _| {
        r.fetch_add(1, Ordering::SeqCst);
        async { Ok(None) }
    });
    let running = sy.start(registry).expect("the registry needs no state");
    let id = sy
        .client()
        .enqueue_raw(vec![NewJob::new("amqps_hello", serde_json::json!({}))])
        .await
        .unwrap()[0]
        .id();
    let client = sy.client();
    wait_for(
        "the job to run through amqps",
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
}
