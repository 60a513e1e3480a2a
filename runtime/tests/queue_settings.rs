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
