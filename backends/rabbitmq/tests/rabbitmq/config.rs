//! Configuration: queue arguments checked against the declared queue, bad URLs and prefixes,
//! and a broker that is not there.

use std::time::Duration;

use switchyard_conformance::random_prefix;
use switchyard_core::Queue;
use switchyard_rabbitmq::{RabbitConfig, RabbitQueue};

use crate::support::{queue_config, rabbit};

/// Queue arguments cannot change after declaration: a second declaration with another
/// `x-max-priority` is a `Config` error naming the queue, not a broken connection.
/// `x-consumer-timeout` is accepted (RabbitMQ 3.12+ honours it, older brokers ignore it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_arguments_are_checked() {
    let prefix = random_prefix();
    let first = rabbit(&prefix).await;
    let q = "args".to_string();
    first.setup(std::slice::from_ref(&q)).await.unwrap();
    let other = RabbitQueue::connect(queue_config(&prefix).with_max_priority(5))
        .await
        .unwrap();
    let e = other.setup(std::slice::from_ref(&q)).await.unwrap_err();
    assert_eq!(e.kind(), switchyard_core::ErrorKind::Config, "{e}");
    assert!(e.message().contains(&format!("{prefix}args")), "{e}");
    // The connection is still usable.
    other.setup(&["fresh".to_string()]).await.unwrap();
    let timeout = RabbitQueue::connect(
        queue_config(&format!("{prefix}ct_")).with_consumer_timeout(Duration::from_secs(3 * 3600)),
    )
    .await
    .unwrap();
    timeout.setup(std::slice::from_ref(&q)).await.unwrap();
    first.delete_queues(std::slice::from_ref(&q)).await.unwrap();
    other.delete_queues(&["fresh".to_string()]).await.unwrap();
    timeout.delete_queues(&[q]).await.unwrap();
}

/// A wrong URL or prefix is a `Config` error naming what is accepted; a broker that is not
/// there is `Unavailable`.
#[tokio::test]
async fn bad_config_and_missing_broker() {
    let e = RabbitQueue::connect(
        RabbitConfig::new("amqp://guest:secret@127.0.0.1:5672/%2f").with_prefix("amq.x"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), switchyard_core::ErrorKind::Config, "{e}");
    let e = RabbitQueue::connect(RabbitConfig::new("redis://127.0.0.1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), switchyard_core::ErrorKind::Config, "{e}");
    assert!(e.message().contains("amqp://"), "{e}");
    let e = RabbitQueue::connect(RabbitConfig::new("amqp://guest:guest@127.0.0.1:1/%2f"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), switchyard_core::ErrorKind::Unavailable, "{e}");
}

/// A password the broker refuses is a `Config` error that says the login was refused and
/// hides the password: trying again cannot help, so it must not look like a broker that is
/// down (`Unavailable`, which workers retry for ever).
#[tokio::test]
async fn a_refused_login_is_a_config_error() {
    let url = std::env::var("SWITCHYARD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let (scheme, rest) = url.split_once("://").expect("an amqp URL");
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let wrong = format!("{scheme}://guest:not-the-password@{host}");
    let e = RabbitQueue::connect(RabbitConfig::new(&wrong).with_prefix(random_prefix()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), switchyard_core::ErrorKind::Config, "{e}");
    assert!(e.message().contains("refused the login"), "{e}");
    assert!(!e.to_string().contains("not-the-password"), "{e}");
}
