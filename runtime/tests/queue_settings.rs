//! `[queues.<name>]` overrides `[worker]` key by key (lease, heartbeat, shutdown timeout,
//! backoff); a bad override is refused naming the key and what is accepted.

use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use switchyard::{Config, ErrorKind};

fn from_toml(toml: &str) -> switchyard::Result<Config> {
    Config::from_figment(
        Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml)),
    )
}

#[test]
fn queue_settings_override_the_worker_defaults() {
    let c = from_toml(
        r#"
        [worker]
        lease_secs = 30
        heartbeat_secs = 10
        [queues.video]
        lease_secs = 600
        heartbeat_secs = 60
        shutdown_timeout_secs = 120
        backoff_base_ms = 5000
        backoff_max_secs = 3600
        backoff_jitter = 0.5
        [queues.email]
        "#,
    )
    .unwrap();
    let v = c.worker_config("video");
    assert_eq!(v.lease, Duration::from_secs(600));
    assert_eq!(v.heartbeat, Duration::from_secs(60));
    assert_eq!(v.shutdown_timeout, Duration::from_secs(120));
    assert_eq!(v.backoff.base, Duration::from_millis(5000));
    assert_eq!(v.backoff.max, Duration::from_secs(3600));
    assert_eq!(v.backoff.jitter, 0.5);
    let e = c.worker_config("email");
    assert_eq!(e.lease, Duration::from_secs(30));
    assert_eq!(e.heartbeat, Duration::from_secs(10));
}

#[test]
fn bad_queue_settings_name_the_key() {
    for (toml, key, says) in [
        (
            "[queues.video]\nheartbeat_secs = 40",
            "queues.video.heartbeat_secs",
            "below the lease of queue",
        ),
        (
            "[queues.video]\nbackoff_jitter = 2.0",
            "queues.video.backoff_jitter",
            "0.0 to 1.0",
        ),
        (
            "[queues.video]\nlease_secs = -1",
            "queues.video.lease_secs",
            "",
        ),
        ("[queues.video]\nlease = 5", "lease", "lease_secs"),
    ] {
        let e = from_toml(toml).expect_err(toml);
        assert_eq!(e.kind(), ErrorKind::Config, "{toml}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(key) && msg.contains(says), "{toml}: {msg}");
    }
}

#[test]
fn static_limits_are_checked() {
    let c = from_toml(
        "[queues.mail]\nglobal_concurrency = 3\nrate_limit = \"100/1s\"\npartition = \"kind\"",
    )
    .unwrap();
    assert_eq!(c.queues["mail"].global_concurrency, Some(3));
    for (toml, says) in [
        (
            "[queues.mail]\nglobal_concurrency = 0",
            "queues.mail.global_concurrency",
        ),
        ("[queues.mail]\nrate_limit = \"lots\"", "N/PERIOD"),
        ("[queues.mail]\nrate_limit = \"5/0s\"", "out of range"),
        (
            "[queues.mail]\npartition = \"tenant\"",
            "accepted: none, kind",
        ),
    ] {
        let e = from_toml(toml).expect_err(toml);
        assert_eq!(e.kind(), ErrorKind::Config, "{toml}: {e}");
        assert!(e.to_string().contains(says), "{toml}: {e}");
    }
}

/// Configured limits are stored at start when Storage has none; where Storage holds other
/// values, those stay (Storage wins).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_limits_are_stored_unless_storage_has_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("sqlite://{}/limits.db", dir.path().display());
    let config = from_toml(&format!(
        "storage = \"{storage}\"\n[queues.mail]\nglobal_concurrency = 3\nrate_limit = \"50/2s\""
    ))
    .unwrap();
    let sy = switchyard::Switchyard::connect(config.clone())
        .await
        .unwrap();
    let running = sy.start(switchyard::Registry::new()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let stored = loop {
        let flows = sy.storage().queue_flows().await.unwrap();
        if let Some(f) = flows.into_iter().find(|f| f.queue == "mail") {
            break f;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the limits were not stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stored.concurrency, Some(3));
    assert_eq!(
        stored.rate.map(|r| (r.limit, r.period_ms)),
        Some((50, 2000))
    );
    running.stop().await;

    // An operator changed it at run time; a restart with the old file keeps the change.
    let mut changed = stored.clone();
    changed.concurrency = Some(5);
    sy.storage().set_queue_flow(&changed).await.unwrap();
    let sy = switchyard::Switchyard::connect(config).await.unwrap();
    let running = sy.start(switchyard::Registry::new()).unwrap();
    running.stop().await;
    let flows = sy.storage().queue_flows().await.unwrap();
    let f = flows.into_iter().find(|f| f.queue == "mail").unwrap();
    assert_eq!(f.concurrency, Some(5), "the stored value was overwritten");
}
