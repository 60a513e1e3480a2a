//! TLS to PostgreSQL, from configuration alone: a private server (`initdb` in a temp dir,
//! `ssl = on`, a certificate the test makes with its own CA, only `hostssl` connections
//! allowed) runs a job for a `Switchyard` built from a `postgres://…?sslmode=verify-full&
//! sslrootcert=…` URL; a certificate the client cannot trust, and a server without TLS, are
//! refused with errors that say so and what to set.
//!
//! Needs PostgreSQL's server binaries (`initdb`, `pg_ctl` under /usr/lib/postgresql/*/bin, as
//! the test services install them). Run as root, the server runs as the `postgres` user
//! (`runuser`), since `initdb` refuses root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use sqlx::Row;
use switchyard::{Config, Registry, Switchyard};
use switchyard_conformance::{random_prefix, wait_for};
use switchyard_core::{ErrorKind, JobState, NewJob};

const LONG: Duration = Duration::from_secs(30);

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

    /// The CA certificate, PEM.
    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names` (host names or IP addresses) and its key, PEM.
    fn issue(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "switchyard test server");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A private PostgreSQL server on a free loopback port, its data directory in a temp dir;
/// stopped (immediate mode) on drop.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    port: u16,
}

/// The newest PostgreSQL server binaries' directory.
fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server binaries under /usr/lib/postgresql (installed with the test services)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .expect("initdb under /usr/lib/postgresql/*/bin (installed with the test services)")
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run `id -u`");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PrivatePostgres {
    /// `initdb`, then `ssl = on` with a certificate from `ca` for `localhost` (not for
    /// 127.0.0.1, so a wrong host name can be tested) and only `hostssl` connections over TCP, or (`tls: false`) `ssl = off` and plain ones.
    fn start(ca: &TestCa, tls: bool) -> Self {
        let bin = pg_bin();
        let as_postgres = is_root();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut server = Self {
            dir,
            bin,
            as_postgres,
            port: 0,
        };
        server.own();
        server.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        let (cert, key) = ca.issue(&["localhost"]);
        std::fs::write(data.join("server.crt"), cert).unwrap();
        let key_file = data.join("server.key");
        std::fs::write(&key_file, key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             ssl = {}\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
             fsync = off\nmax_connections = 40\n",
            server.dir.path().display(),
            if tls { "on" } else { "off" }
        );
        let mut pg_conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut pg_conf, conf.as_bytes()).unwrap();
        let hba = if tls {
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n"
        } else {
            "local all all trust\nhost all all 127.0.0.1/32 trust\n"
        };
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        server.own();
        // Another process may take the probed port first: pg_ctl then fails, and another
        // port is tried.
        let log = server.dir.path().join("log");
        for _ in 0..5 {
            let port = free_port();
            let started = server.try_run(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-l",
                    log.to_str().unwrap(),
                    "-o",
                    &format!("-p {port}"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            );
            if started {
                server.port = port;
                return server;
            }
            eprintln!(
                "postgres on port {port} did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!("the private PostgreSQL server did not start on any of 5 ports");
    }

    /// Gives the temp dir to the `postgres` user when the test runs as root.
    fn own(&self) {
        if self.as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(self.dir.path())
                .status()
                .expect("run chown");
            assert!(status.success(), "chown the temp dir to postgres");
        }
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.args(args);
        cmd
    }

    fn try_run(&self, tool: &str, args: &[&str]) -> bool {
        let out = self
            .command(tool, args)
            .output()
            .unwrap_or_else(|e| panic!("run {tool}: {e}"));
        if !out.status.success() {
            eprintln!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        assert!(self.try_run(tool, args), "{tool} failed");
    }

    /// A URL for this server with `query` (`sslmode=…`).
    fn url(&self, host: &str, query: &str) -> String {
        format!(
            "postgres://postgres:hunter2@{host}:{}/postgres?{query}",
            self.port
        )
    }

    /// Writes `pem` to a file in the temp dir and returns its path.
    fn file(&self, name: &str, pem: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.port != 0 {
            let data = self.dir.path().join("data");
            let _ = self
                .command(
                    "pg_ctl",
                    &[
                        "-D",
                        data.to_str().unwrap(),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ],
                )
                .output();
        }
    }
}

fn config(storage: String) -> Config {
    Config {
        storage,
        prefix: random_prefix(),
        ..Config::default()
    }
}

fn query(path: &Path) -> String {
    format!("sslmode=verify-full&sslrootcert={}", path.display())
}

/// A job enqueued and run by a worker of a `Switchyard` whose storage URL verifies the
/// server's certificate against the test's CA. The server accepts TLS connections only, and
/// `pg_stat_ssl` shows Switchyard's own connections (the pool and the listener) encrypted.
/// Without a CA file, `sslmode=require` still connects (encrypted, unchecked), and a plain
/// connection is refused by the server.
#[tokio::test]
async fn a_job_runs_over_verified_tls() {
    let ca = TestCa::new("switchyard test CA");
    let pg = PrivatePostgres::start(&ca, true);
    let ca_file = pg.file("ca.pem", &ca.pem());

    let sy = Switchyard::connect(config(pg.url("localhost", &query(&ca_file))))
        .await
        .expect("connect with sslmode=verify-full and the test's CA");
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
    wait_for("the job to complete over TLS", LONG, || {
        let client = client.clone();
        async move {
            let job = client.get(id).await.unwrap()?;
            (job.state == JobState::Completed).then_some(())
        }
    })
    .await;
    assert_eq!(ran.load(Ordering::SeqCst), 1);

    // Every connection Switchyard holds (application name `switchyard …`) is encrypted.
    let check = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url("localhost", &query(&ca_file)))
        .await
        .expect("a verifying connection by host name");
    let row = sqlx::query(
        "SELECT count(*) FILTER (WHERE s.ssl) AS tls, count(*) AS all \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name LIKE 'switchyard%'",
    )
    .fetch_one(&check)
    .await
    .unwrap();
    let (tls, all): (i64, i64) = (row.get("tls"), row.get("all"));
    assert!(all >= 2, "the pool and the listener are connected: {all}");
    assert_eq!(tls, all, "every Switchyard connection uses TLS");
    check.close().await;
    running.stop().await;
    sy.storage().destroy().await.unwrap();

    // Encrypted without checking the certificate.
    let sy = Switchyard::connect(config(pg.url("127.0.0.1", "sslmode=require")))
        .await
        .expect("sslmode=require connects without a CA file");
    sy.storage().destroy().await.unwrap();

    // The server takes TLS connections only, so the job above did run over TLS.
    let e = Switchyard::connect(config(pg.url("127.0.0.1", "sslmode=disable")))
        .await
        .expect_err("a plain connection is refused");
    assert!(e.to_string().contains("no encryption"), "{e}");
}

/// A certificate signed by a CA other than the one named by `sslrootcert` (and, with no CA
/// file or libpq's `sslrootcert=system`, by none of the built-in roots) is refused: a `Config` error that says the certificate
/// is not trusted, names the URL without its password, and says what to set.
#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused() {
    let ca = TestCa::new("switchyard test CA");
    let pg = PrivatePostgres::start(&ca, true);
    let other = pg.file("other-ca.pem", &TestCa::new("another CA").pem());
    for url in [
        pg.url("localhost", &query(&other)),
        pg.url("localhost", "sslmode=verify-full"),
        pg.url("localhost", "sslmode=verify-ca"),
        pg.url("localhost", "sslrootcert=system"),
    ] {
        let e = Switchyard::connect(config(url.clone()))
            .await
            .err()
            .unwrap_or_else(|| panic!("{url} connected"));
        assert_eq!(e.kind(), ErrorKind::Config, "{url}: {e}");
        assert!(!e.is_retryable(), "{e}");
        let msg = e.message();
        assert!(msg.contains("certificate is not trusted"), "{msg}");
        assert!(msg.contains("sslrootcert="), "{msg}");
        assert!(msg.contains("postgres:***@localhost"), "{msg}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    // The right CA, but the certificate names `localhost`, not 127.0.0.1: the error says
    // so. sqlx 0.8.6 checks the name under verify-ca too (it misses rustls' newer
    // name-mismatch error), so verify-ca is refused the same way; by the certificate's name,
    // verify-ca connects.
    let ca_file = pg.file("ca.pem", &ca.pem());
    let verify_ca = format!("sslmode=verify-ca&sslrootcert={}", ca_file.display());
    for url in [
        pg.url("127.0.0.1", &query(&ca_file)),
        pg.url("127.0.0.1", &verify_ca),
    ] {
        let e = Switchyard::connect(config(url.clone()))
            .await
            .err()
            .unwrap_or_else(|| panic!("{url} connected"));
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.message().contains("not valid for this host name"), "{e}");
        assert!(e.message().contains("sslmode=require"), "{e}");
    }
    let ok = Switchyard::connect(config(pg.url("localhost", &verify_ca)))
        .await
        .expect("verify-ca with the right CA and name");
    ok.storage().destroy().await.unwrap();
}

/// `sslmode=require` against a server with `ssl = off` says the server does not accept TLS
/// and what to change.
#[tokio::test]
async fn a_server_without_tls_is_named() {
    let ca = TestCa::new("switchyard test CA");
    let pg = PrivatePostgres::start(&ca, false);
    let e = Switchyard::connect(config(pg.url("127.0.0.1", "sslmode=require")))
        .await
        .expect_err("sslmode=require on a server without TLS");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains("does not accept TLS"), "{e}");
    assert!(e.message().contains("sslmode=disable"), "{e}");
    // The same server takes the plain connection the error suggests.
    let sy = Switchyard::connect(config(pg.url("127.0.0.1", "sslmode=disable")))
        .await
        .expect("plain connection");
    sy.storage().destroy().await.unwrap();
}
