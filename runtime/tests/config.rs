//! Configuration: layering, and errors that name the bad key and what is accepted.

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use switchyard::{Config, ErrorKind};

fn from_toml(toml: &str) -> switchyard::Result<Config> {
    Config::from_figment(
        Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml)),
    )
}

#[test]
fn no_config_means_embedded_sqlite() {
    let c = from_toml("").unwrap();
    assert_eq!(c.storage, "sqlite://switchyard.db");
    assert_eq!(c.queue, "storage");
    assert!(c.queues.contains_key("default"));
}

#[test]
fn toml_values_are_read() {
    let c = from_toml(
        r#"
        storage = "sqlite://jobs.db"
        prefix = "billing_"
        [worker]
        concurrency = 4
        [queues.email]
        concurrency = 2
        "#,
    )
    .unwrap();
    assert_eq!(c.prefix, "billing_");
    assert_eq!(c.worker_config("email").concurrency, 2);
    assert_eq!(c.worker_config("default").concurrency, 4);
}

#[test]
fn unknown_key_is_named_with_the_accepted_ones() {
    let err = from_toml("storag = \"sqlite://x.db\"").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let msg = err.to_string();
    assert!(msg.contains("storag"), "{msg}");
    assert!(
        msg.contains("storage") && msg.contains("queue"),
        "lists accepted keys: {msg}"
    );
}

#[test]
fn unknown_nested_key_is_named() {
    let err = from_toml("[worker]\nconcurency = 3").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("concurency") && msg.contains("concurrency"),
        "{msg}"
    );
}

#[test]
fn wrong_type_names_the_key() {
    let err = from_toml("[worker]\nconcurrency = \"lots\"").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("worker.concurrency"), "{msg}");
}

#[test]
fn bad_storage_url_lists_accepted_schemes() {
    let err = from_toml("storage = \"mysql://localhost/db\"").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let msg = err.to_string();
    assert!(
        msg.contains("key `storage`") && msg.contains("mysql://localhost/db"),
        "{msg}"
    );
    assert!(
        msg.contains("sqlite://") && msg.contains("postgres://"),
        "{msg}"
    );
    let err = from_toml("storage = \"just words\"").unwrap_err();
    assert!(err.to_string().contains("key `storage`"));
}

#[test]
fn bad_queue_lists_accepted_forms() {
    let err = from_toml("queue = \"kafka://broker\"").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("key `queue`")
            && msg.contains("storage")
            && msg.contains("sqs://")
            && msg.contains("redis://"),
        "{msg}"
    );
}

#[test]
fn nonsense_values_are_refused() {
    let err = from_toml("[worker]\nconcurrency = 0").unwrap_err();
    assert!(err.to_string().contains("worker.concurrency"));
    let err = from_toml("[worker]\nlease_secs = 5.0\nheartbeat_secs = 10.0").unwrap_err();
    assert!(err.to_string().contains("worker.heartbeat_secs"));
    for n in [0, 101] {
        let err = from_toml(&format!("[dispatcher]\nids_per_message = {n}")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("dispatcher.ids_per_message") && msg.contains("1 to 100"),
            "{msg}"
        );
    }
    assert!(from_toml("[dispatcher]\nids_per_message = 1").is_ok());
    let err = from_toml("prefix = \"bad-prefix!\"");
    // The prefix is checked by the backend when connecting.
    assert!(err.is_ok());
}

/// The Redis storage's expiry of finished jobs follows the pruner's retention unless set, and
/// may not undercut it.
#[test]
fn redis_finished_ttl_follows_the_retention() {
    use std::time::Duration;
    let day = 24 * 3600;
    let c = from_toml("").unwrap();
    assert_eq!(c.redis_finished_ttl(), Duration::from_secs(8 * day));
    let c = from_toml("[pruner]\nretention_secs = 2592000").unwrap();
    assert_eq!(c.redis_finished_ttl(), Duration::from_secs(31 * day));
    let c = from_toml("[redis]\nfinished_ttl_secs = 0").unwrap();
    assert_eq!(c.redis_finished_ttl(), Duration::ZERO);
    let c = from_toml("[redis]\nfinished_ttl_secs = 864000").unwrap();
    assert_eq!(c.redis_finished_ttl(), Duration::from_secs(10 * day));
    // The retention bounds the expiry only where both apply: Redis storage, pruner on.
    assert!(
        from_toml("[pruner]\nretention_secs = 2592000\n[redis]\nfinished_ttl_secs = 864000")
            .is_ok()
    );
    assert!(from_toml(
        "storage = \"redis://h\"\n[pruner]\nenabled = false\nretention_secs = 2592000\n\
         [redis]\nfinished_ttl_secs = 864000"
    )
    .is_ok());
    let err = from_toml(
        "storage = \"redis://h\"\n[pruner]\nretention_secs = 2592000\n\
         [redis]\nfinished_ttl_secs = 864000",
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("redis.finished_ttl_secs") && msg.contains("pruner.retention_secs"),
        "{msg}"
    );
    let err = from_toml("[redis]\nfinished_tll_secs = 1").unwrap_err();
    assert!(err.to_string().contains("finished_ttl_secs"), "{err}");
    let err = from_toml("[redis]\nfinished_ttl_secs = 1e15").unwrap_err();
    assert!(
        err.to_string().contains("beyond what Redis can expire"),
        "{err}"
    );
    // A retention meant as "keep" (the longest accepted) means no expiry rather than one
    // Redis would refuse; a longer one is refused, naming the key.
    let c = from_toml("[pruner]\nretention_secs = 1e12").unwrap();
    assert_eq!(c.redis_finished_ttl(), Duration::ZERO);
    let err = from_toml("[pruner]\nretention_secs = 1e18").unwrap_err();
    assert!(
        err.to_string().contains("pruner.retention_secs") && err.to_string().contains("1e12"),
        "{err}"
    );
}

/// Durations past the bound (where `now` plus or minus them is no longer a date) are refused
/// with the key named, instead of wrapping to 0 (a pruner deleting every finished job) or
/// panicking.
#[test]
fn durations_past_the_bound_are_refused() {
    for key in [
        "[pruner]\nretention_secs",
        "[pruner]\ninterval_secs",
        "[worker]\nlease_secs",
        "[dispatcher]\nredispatch_after_secs",
    ] {
        let err = from_toml(&format!("{key} = 1e16")).unwrap_err();
        let name = key.replace("[", "").replace("]\n", ".");
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(
            err.to_string().contains(&name) && err.to_string().contains("from 0 to 1e12"),
            "{err}"
        );
    }
}

/// Configured queues are the queues a process works: the `default` queue is added only when
/// none is configured (a process built for `email` must not take `default` jobs it cannot run).
#[test]
#[allow(clippy::result_large_err)] // figment's Jail API returns its own large error type.
fn configured_queues_replace_the_default_one() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("switchyard.toml", "[queues.email]\nconcurrency = 2")?;
        let c = Config::load().map_err(|e| e.to_string())?;
        assert_eq!(c.queues.keys().collect::<Vec<_>>(), vec!["email"]);
        jail.set_env("SWITCHYARD_QUEUES__REPORTS__CONCURRENCY", "1");
        let c = Config::load().map_err(|e| e.to_string())?;
        assert_eq!(
            c.queues.keys().collect::<Vec<_>>(),
            vec!["email", "reports"]
        );
        jail.create_file("switchyard.toml", "")?;
        jail.clear_env();
        let c = Config::load().map_err(|e| e.to_string())?;
        assert_eq!(c.queues.keys().collect::<Vec<_>>(), vec!["default"]);
        Ok(())
    });
}

/// `SWITCHYARD_CONFIG` names the file `Config::load` reads (as it does for the CLI); a path
/// that is not a file is an error naming it.
#[test]
#[allow(clippy::result_large_err)] // figment's Jail API returns its own large error type.
fn switchyard_config_names_the_file_to_load() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("switchyard.toml", "storage = \"sqlite://here.db\"")?;
        jail.create_file("elsewhere.toml", "storage = \"sqlite://elsewhere.db\"")?;
        jail.set_env("SWITCHYARD_CONFIG", "elsewhere.toml");
        let c = Config::load().map_err(|e| e.to_string())?;
        assert_eq!(c.storage, "sqlite://elsewhere.db");
        jail.set_env("SWITCHYARD_CONFIG", "missing.toml");
        let err = Config::load().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(
            err.to_string().contains("SWITCHYARD_CONFIG")
                && err.to_string().contains("missing.toml"),
            "{err}"
        );
        Ok(())
    });
}

/// `sqlite://` or `sqlite:` alone names no file (SQLite would open a private temporary database
/// per connection, and stored jobs would vanish): refused, naming `storage`.
#[tokio::test]
async fn a_sqlite_url_without_a_path_is_refused() {
    for url in ["sqlite://", "sqlite:", "sqlite://?mode=rwc"] {
        let c = Config {
            storage: url.into(),
            ..Config::default()
        };
        let err = switchyard::Switchyard::connect(c).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{url}: {err}");
        assert!(
            err.to_string().contains("key `storage`")
                && err.to_string().contains("sqlite::memory:"),
            "{url}: {err}"
        );
    }
}

#[tokio::test]
async fn bad_prefix_is_refused_at_connect() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config {
        storage: format!("sqlite://{}/x.db", dir.path().display()),
        prefix: "bad-prefix!".into(),
        ..Config::default()
    };
    let err = switchyard::Switchyard::connect(c).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("prefix"), "{err}");
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail API returns its own large error type.
fn env_overrides_file() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "switchyard.toml",
            "storage = \"sqlite://file.db\"\n[worker]\nconcurrency = 3",
        )?;
        jail.set_env("SWITCHYARD_STORAGE", "sqlite://env.db");
        jail.set_env("SWITCHYARD_WORKER__CONCURRENCY", "7");
        jail.set_env(
            "SWITCHYARD_TEST_ONLY_SETTING",
            "ignored: test settings are not config",
        );
        let c = Config::load().map_err(|e| e.to_string())?;
        assert_eq!(c.storage, "sqlite://env.db");
        assert_eq!(c.worker.concurrency, 7);
        jail.set_env("SWITCHYARD_WORKR__CONCURRENCY", "7");
        let err = Config::load().unwrap_err().to_string();
        assert!(err.contains("workr"), "{err}");
        Ok(())
    });
}

/// One prefix rule for every backend: a prefix refused on one is refused on all with the same
/// words, and one accepted on one is accepted on all, so changing the URL never breaks a move.
#[cfg(feature = "full")]
#[tokio::test]
async fn every_backend_applies_one_prefix_rule() {
    use switchyard::connect::{connect_queue, connect_storage};
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}/x.db", dir.path().display());
    let postgres = std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into());
    let redis = std::env::var("SWITCHYARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let storages = [sqlite.clone(), postgres, redis.clone()];
    let queues = [
        "sqs://127.0.0.1:4577".to_string(),
        "amqp://guest:guest@127.0.0.1:5672/%2f".to_string(),
        redis,
    ];
    for prefix in ["my-app", "", "1app", "a.b"] {
        let mut messages = Vec::new();
        for storage in &storages {
            let c = Config {
                storage: storage.clone(),
                prefix: prefix.into(),
                ..Config::default()
            };
            let e = connect_storage(&c).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{storage} {prefix:?}: {e}");
            messages.push(e.message().to_string());
        }
        for queue in &queues {
            let c = Config {
                storage: sqlite.clone(),
                queue: queue.clone(),
                prefix: prefix.into(),
                ..Config::default()
            };
            let e = match connect_queue(&c).await {
                Err(e) => e,
                Ok(_) => panic!("{queue} accepted prefix {prefix:?}"),
            };
            assert_eq!(e.kind(), ErrorKind::Config, "{queue} {prefix:?}: {e}");
            messages.push(e.message().to_string());
        }
        assert!(
            messages.iter().all(|m| m == &messages[0]),
            "{prefix:?}: {messages:#?}"
        );
        assert!(
            messages[0].contains(switchyard_core::adapter::PREFIX_RULE),
            "{}",
            messages[0]
        );
    }
}

/// An unknown key gets the closest known key ("did you mean"), its section's accepted keys in
/// single backticks (no "expected `one of `…``" nesting), and "configuration" said once.
#[test]
fn unknown_key_suggests_the_closest_known_one() {
    for (toml, meant) in [
        (
            "[worker]\nconcurency = 4",
            "did you mean `worker.concurrency`?",
        ),
        ("retention = 5", "did you mean `pruner.retention_secs`?"),
        ("stroage = \"sqlite://x.db\"", "did you mean `storage`?"),
        (
            "[queues.email]\nconcurency = 4",
            "did you mean `queues.email.concurrency`?",
        ),
    ] {
        let err = from_toml(toml).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let msg = err.to_string();
        assert!(msg.contains(meant), "{toml}: {msg}");
        assert!(!msg.contains("``") && !msg.contains("`one of"), "{msg}");
        assert!(!msg.contains("invalid configuration"), "{msg}");
        assert_eq!(msg.matches("configuration").count(), 1, "{msg}");
    }
    let msg = from_toml("[worker]\nconcurency = 4")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("accepted in `[worker]`: `concurrency`, `lease_secs`"),
        "{msg}"
    );
    // Nothing close: no guess, only what is accepted.
    let msg = from_toml("zzzzqqq = 1").unwrap_err().to_string();
    assert!(
        !msg.contains("did you mean") && msg.contains("accepted at the top level: `storage`"),
        "{msg}"
    );
}

/// `*_secs` keys take humantime durations as well as numbers; a bad one names the key and
/// what is accepted.
#[test]
fn seconds_keys_accept_durations() {
    let c = from_toml(
        r#"
        [worker]
        lease_secs = "1m"
        heartbeat_secs = 15
        [pruner]
        retention_secs = "7d"
        [dispatcher]
        max_native_delay_secs = "15m"
        "#,
    )
    .unwrap();
    assert_eq!(c.worker.lease_secs, 60.0);
    assert_eq!(c.worker.heartbeat_secs, 15.0);
    assert_eq!(c.pruner.retention_secs, 7.0 * 86400.0);
    assert_eq!(c.dispatcher.max_native_delay_secs, Some(900.0));
    let msg = from_toml("[pruner]\nretention_secs = \"a week\"")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("pruner.retention_secs") && msg.contains("\"7d\""),
        "{msg}"
    );
}

/// Every `[rabbitmq]` key of docs/rabbitmq.md is read from `switchyard.toml` and reaches the
/// adapter's settings; unset keys keep the adapter's defaults.
#[cfg(feature = "rabbitmq")]
#[test]
fn the_rabbitmq_section_reaches_the_adapter() {
    use std::time::Duration;
    let c = from_toml(
        r#"
        queue = "amqp://guest:guest@127.0.0.1:5672/%2f"
        prefix = "billing_"
        [dispatcher]
        ids_per_message = 4
        [rabbitmq]
        prefetch = 64
        max_priority = 5
        heartbeat_secs = 3
        connect_timeout_secs = 2.5
        reconnect_backoff_max_secs = 8
        settle_after_secs = 120
        nack_hold_max_secs = 1.5
        queue_expires_secs = 300
        consumer_timeout_secs = 3600
        connection_name = "billing workers"
        "#,
    )
    .unwrap();
    let r = switchyard::connect::rabbit_config(&c);
    assert_eq!(r.url, "amqp://guest:guest@127.0.0.1:5672/%2f");
    assert_eq!(r.prefix, "billing_");
    assert_eq!(r.ids_per_message, 4);
    assert_eq!(r.prefetch, Some(64));
    assert_eq!(r.max_priority, 5);
    assert_eq!(r.heartbeat, Duration::from_secs(3));
    assert_eq!(r.connect_timeout, Duration::from_millis(2500));
    assert_eq!(r.reconnect_backoff_max, Duration::from_secs(8));
    assert_eq!(r.settle_after, Duration::from_secs(120));
    assert_eq!(r.nack_hold_max, Duration::from_millis(1500));
    assert_eq!(r.queue_expires, Some(Duration::from_secs(300)));
    assert_eq!(r.consumer_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(r.connection_name(), "billing workers");

    let defaults = switchyard::rabbitmq::RabbitConfig::new(&c.queue).with_prefix("billing_");
    let unset = switchyard::connect::rabbit_config(
        &from_toml("queue = \"amqp://h/%2f\"\nprefix = \"billing_\"").unwrap(),
    );
    assert_eq!(
        unset,
        switchyard::rabbitmq::RabbitConfig {
            url: "amqp://h/%2f".into(),
            ..defaults
        }
    );
    assert_eq!(unset.heartbeat, switchyard::rabbitmq::DEFAULT_HEARTBEAT);
}

/// `[rabbitmq]` refuses unknown keys and out-of-range values, naming the key and what it
/// accepts.
#[test]
fn the_rabbitmq_section_refuses_bad_keys_and_values() {
    let err = from_toml("[rabbitmq]\nprefetchs = 10").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let msg = err.to_string();
    assert!(
        msg.contains("prefetchs") && msg.contains("prefetch") && msg.contains("settle_after_secs"),
        "{msg}"
    );
    for (toml, key, accepted) in [
        ("prefetch = 0", "rabbitmq.prefetch", "1 to 65535"),
        ("prefetch = 70000", "rabbitmq.prefetch", "1 to 65535"),
        ("max_priority = 256", "rabbitmq.max_priority", "0 to 255"),
        (
            "heartbeat_secs = 65536",
            "rabbitmq.heartbeat_secs",
            "0 to 65535",
        ),
        (
            "settle_after_secs = -1",
            "rabbitmq.settle_after_secs",
            "accepted",
        ),
        (
            "connect_timeout_secs = 1e300",
            "rabbitmq.connect_timeout_secs",
            "accepted",
        ),
        (
            "queue_expires_secs = 0",
            "rabbitmq.queue_expires_secs",
            "0.001 to",
        ),
        (
            "consumer_timeout_secs = 3e6",
            "rabbitmq.consumer_timeout_secs",
            "0.001 to",
        ),
        (
            "connection_name = \"\"",
            "rabbitmq.connection_name",
            "1 to 255 bytes",
        ),
    ] {
        let err = from_toml(&format!("[rabbitmq]\n{toml}")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{toml}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("`{key}`")) && msg.contains(accepted),
            "{toml}: {msg}"
        );
    }
    let err = from_toml("[rabbitmq]\nmax_priority = \"ten\"").unwrap_err();
    assert!(err.to_string().contains("rabbitmq.max_priority"), "{err}");
}
