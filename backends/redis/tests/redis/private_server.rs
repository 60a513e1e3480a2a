//! Private Redis servers for settings the shared test server must not have: one
//! `redis-server` on a free loopback port (plain, or TLS only), or three made one Redis
//! Cluster.

use std::time::Duration;

use switchyard_conformance::wait_for;

/// A private Redis server (`redis-server` on a free loopback port, no persistence, in a temp
/// directory), killed on drop; for settings the shared test server must not have. Needs the
/// `redis-server` binary, which the test services install.
pub struct PrivateRedis {
    pub child: std::process::Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

/// What a TLS server is given: its certificate and key, and the CA the client trusts (PEM).
pub struct ServerTls<'a> {
    pub cert: &'a str,
    pub key: &'a str,
    pub ca: &'a str,
}

impl PrivateRedis {
    pub async fn start(args: &[&str]) -> Self {
        Self::start_with(args, None).await
    }

    /// A private server that speaks TLS only (`--port 0 --tls-port …`) with `tls`'s
    /// certificate, and asks clients for none (`--tls-auth-clients no`). Its `url` is
    /// `rediss://127.0.0.1:<port>`, and `ca.pem` in [`PrivateRedis::file`]'s directory holds
    /// `tls.ca`.
    pub async fn start_tls(tls: ServerTls<'_>, args: &[&str]) -> Self {
        Self::start_with(args, Some(tls)).await
    }

    /// The path of `name` in the server's temp dir.
    pub fn file(&self, name: &str) -> std::path::PathBuf {
        self._dir.path().join(name)
    }

    async fn start_with(args: &[&str], tls: Option<ServerTls<'_>>) -> Self {
        // Another process may take the probed port before redis-server binds it: then it
        // exits at once, and a new port is tried.
        for _ in 0..5 {
            // At most 55535: a cluster node also binds its port + 10000.
            let port = loop {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                if port <= 55535 {
                    break port;
                }
            };
            let dir = tempfile::tempdir().unwrap();
            let mut cmd = std::process::Command::new("redis-server");
            cmd.arg("--bind").arg("127.0.0.1");
            let (url, client) = match &tls {
                None => {
                    cmd.args(["--port", &port.to_string()]);
                    let url = format!("redis://127.0.0.1:{port}");
                    let client = redis::Client::open(url.as_str()).unwrap();
                    (url, client)
                }
                Some(tls) => {
                    let write = |name: &str, pem: &str| {
                        let path = dir.path().join(name);
                        std::fs::write(&path, pem).unwrap();
                        path
                    };
                    cmd.args(["--port", "0", "--tls-port", &port.to_string()])
                        .arg("--tls-cert-file")
                        .arg(write("server.crt", tls.cert))
                        .arg("--tls-key-file")
                        .arg(write("server.key", tls.key))
                        .arg("--tls-ca-cert-file")
                        .arg(write("ca.pem", tls.ca))
                        .args(["--tls-auth-clients", "no"]);
                    let url = format!("rediss://127.0.0.1:{port}");
                    let certs = redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(tls.ca.as_bytes().to_vec()),
                    };
                    let client = redis::Client::build_with_tls(url.as_str(), certs).unwrap();
                    (url, client)
                }
            };
            let child = cmd
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .args(args)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("start redis-server (installed with the test services)");
            // Owned from here, so a failed wait below still kills the process.
            let mut server = Self {
                child,
                url,
                _dir: dir,
            };
            let start = std::time::Instant::now();
            loop {
                if client.get_multiplexed_async_connection().await.is_ok() {
                    return server;
                }
                if let Some(status) = server.child.try_wait().unwrap() {
                    eprintln!("redis-server on port {port} exited ({status}); another port");
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "redis-server on port {port} did not start within 10 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("redis-server did not start on any of 5 ports");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three private `redis-server`s made one Redis Cluster (`redis-cli --cluster create`), each
/// holding a third of the slots.
pub async fn private_cluster() -> Vec<PrivateRedis> {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(
            PrivateRedis::start(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .await,
        );
    }
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| n.url.trim_start_matches("redis://").to_string())
        .collect();
    let out = std::process::Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("run redis-cli (installed with the test services)");
    assert!(out.status.success(), "cluster create: {out:?}");
    for n in &nodes {
        let client = redis::Client::open(n.url.as_str()).unwrap();
        wait_for("the cluster to be up", Duration::from_secs(20), move || {
            let client = client.clone();
            async move {
                let Ok(mut c) = client.get_multiplexed_async_connection().await else {
                    return None;
                };
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut c)
                    .await
                    .unwrap_or_default();
                info.contains("cluster_state:ok").then_some(())
            }
        })
        .await;
    }
    nodes
}
