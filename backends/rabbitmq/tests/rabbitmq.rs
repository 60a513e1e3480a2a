//! RabbitMQ-specific tests: every delivery is acked after a drain; the broker closes the
//! connection (`rabbitmqctl close_connection`) while messages are held or while a worker
//! drains 500 jobs, and nothing is lost, nothing stuck.
//! Needs the broker at `SWITCHYARD_TEST_AMQP_URL` and `rabbitmqctl` on the PATH (tests skip
//! with a message when it is missing).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::{JobState, NewJob, Registry};
use switchyard_conformance::harness::{start_worker, Probe, TestWorkerConfig};
use switchyard_conformance::{random_prefix, wait_for, Backend};
use switchyard_core::{JobContext, Queue, QueueMessage, Storage};
use switchyard_rabbitmq::{RabbitConfig, RabbitQueue};
use switchyard_sqlite::{SqliteConfig, SqliteStorage};

fn amqp_url() -> String {
    std::env::var("SWITCHYARD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

async fn rabbit(prefix: &str) -> RabbitQueue {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let config = RabbitConfig::new(amqp_url())
        .with_prefix(prefix)
        .with_queue_expires(Duration::from_secs(300))
        .with_connection_name(format!("switchyard-test {prefix}"));
    RabbitQueue::connect(config)
        .await
        .expect("connect to RabbitMQ")
}

/// A queue that settles deliveries held for half a second early (a "long job" in a test).
async fn settling_fast(prefix: &str) -> RabbitQueue {
    let _ = rabbit(prefix).await;
    let config = RabbitConfig::new(amqp_url())
        .with_prefix(prefix)
        .with_queue_expires(Duration::from_secs(300))
        .with_settle_after(Duration::from_millis(500));
    RabbitQueue::connect(config).await.unwrap()
}

fn have_rabbitmqctl() -> bool {
    let ok = Command::new("rabbitmqctl")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: rabbitmqctl is not available to close connections from the broker");
    }
    ok
}

/// Broker-side ids (Erlang pids, what `close_connection` takes on RabbitMQ 3.10) of the connections whose client-provided name is `connection_name`.
async fn connections_named(connection_name: &str) -> Vec<String> {
    let wanted = connection_name.to_string();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("rabbitmqctl")
            .args([
                "list_connections",
                "--quiet",
                "--no-table-headers",
                "pid",
                "client_properties",
            ])
            .output()
            .expect("rabbitmqctl list_connections");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&format!("\"{wanted}\"")))
            .filter_map(|l| l.split('\t').next().map(str::to_string))
            .collect()
    })
    .await
    .unwrap()
}

/// Closes, from the broker side, every connection named `connection_name`. Returns how many.
async fn close_connections(connection_name: &str) -> usize {
    let names = connections_named(connection_name).await;
    for name in &names {
        let name = name.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("rabbitmqctl")
                .args([
                    "close_connection",
                    &name,
                    "switchyard test: broker-side close",
                ])
                .output()
                .expect("rabbitmqctl close_connection")
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "rabbitmqctl close_connection failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    names.len()
}

async fn sqlite(prefix: &str) -> Arc<dyn Storage> {
    let dir = std::env::temp_dir().join("switchyard-conformance");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{prefix}rabbitmq-drain.db"));
    let config = SqliteConfig::new(format!("sqlite://{}", path.display())).with_prefix(prefix);
    let storage = SqliteStorage::connect(config).await.expect("open sqlite");
    storage.migrate().await.expect("migrate");
    Arc::new(storage)
}

/// A message received and held when the broker closes the connection comes back on the new
/// connection; acking the old receipt is a harmless no-op; calls recover by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_message_comes_back_after_broker_closes_connection() {
    if !have_rabbitmqctl() {
        return;
    }
    let prefix = random_prefix();
    let queue = rabbit(&prefix).await;
    let name = queue.config().connection_name();
    let q = "held".to_string();
    queue.setup(std::slice::from_ref(&q)).await.unwrap();
    let m = QueueMessage {
        job_id: uuid::Uuid::now_v7(),
        queue: q.clone(),
        priority: 0,
        delay: Duration::ZERO,
    };
    queue.publish(std::slice::from_ref(&m)).await.unwrap();
    let first = queue
        .receive(&q, 10, Duration::from_secs(5), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        close_connections(&name).await,
        1,
        "our connection was not found"
    );
    // Receive again until the message is back (calls fail with Unavailable meanwhile).
    let start = Instant::now();
    let again = loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the held message never came back"
        );
        match queue
            .receive(&q, 10, Duration::from_secs(1), Duration::from_secs(30))
            .await
        {
            Ok(d) if !d.is_empty() => break d,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.kind(), switchyard_core::ErrorKind::Unavailable, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].job_id, m.job_id);
    assert_ne!(
        again[0].receipt, first[0].receipt,
        "a receipt must name its channel"
    );
    // The stale receipt is skipped; the fresh one is acked; nothing comes back.
    queue
        .ack(&first)
        .await
        .expect("ack of a dead channel's receipt");
    queue.ack(&again).await.expect("ack");
    let rest = queue
        .receive(&q, 10, Duration::from_secs(2), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(rest.is_empty(), "an acked message came back: {rest:?}");
    queue.delete_queues(&[q]).await.unwrap();
}

/// 500 jobs drain through a worker while the broker closes the connection twice: every job ends
/// `completed` and ran at least once; none is stuck in `running` or `available`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_survives_broker_closing_the_connection() {
    if !have_rabbitmqctl() {
        return;
    }
    let prefix = random_prefix();
    let storage = sqlite(&prefix).await;
    let queue = rabbit(&prefix).await;
    let conn_name = queue.config().connection_name();
    let queue: Arc<RabbitQueue> = Arc::new(queue);
    let backend = Backend::with_queue(storage.clone(), queue.clone());
    let q = "drain".to_string();
    let n = 500;
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| NewJob::new("drain", json!({ "i": i })).with_queue(&q))
        .collect();
    let ids: Vec<_> = jobs.iter().map(|j| j.id).collect();
    storage.enqueue(jobs).await.unwrap();

    let probe = Probe::default();
    let p = probe.clone();
    let registry = Registry::new().register_fn("drain", move |_, ctx: JobContext| {
        let p = p.clone();
        async move {
            p.record(ctx.id, ctx.attempt);
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(None)
        }
    });
    let mut cfg = TestWorkerConfig::new(&q);
    cfg.concurrency = 4;
    cfg.lease = Duration::from_secs(5);
    cfg.heartbeat = Duration::from_millis(500);
    let worker = start_worker(&backend, registry, cfg).await;

    let mut closed = 0;
    // 500 jobs of 100 ms on 4 slots take 12.5 s at least: both closes land mid-drain, even
    // with `rabbitmqctl` slow on a loaded machine.
    for at in [50, 200] {
        wait_for("jobs to run", Duration::from_secs(60), || async {
            (probe.count() >= at).then_some(())
        })
        .await;
        closed += close_connections(&conn_name).await;
        assert!(
            probe.count() < n,
            "the drain ended before the broker closed the connection"
        );
    }
    assert!(
        closed >= 2,
        "the broker closed {closed} connections, expected 2"
    );

    let all_done = wait_for("every job to complete", Duration::from_secs(90), || {
        let storage = storage.clone();
        let ids = ids.clone();
        async move {
            let mut done = 0;
            for id in &ids {
                if storage.get(*id).await.unwrap().unwrap().state == JobState::Completed {
                    done += 1;
                }
            }
            (done == ids.len()).then_some(())
        }
    });
    all_done.await;
    // The queue reconnected by itself to finish the drain.
    assert!(
        !connections_named(&conn_name).await.is_empty(),
        "no connection after the drain"
    );
    worker.stop().await;

    let per = probe.per_job();
    assert_eq!(per.len(), n, "some job never ran");
    for id in &ids {
        let j = storage.get(*id).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::Completed, "job {id} ended {:?}", j.state);
        assert!(per[id] >= 1);
    }
    let reruns = per.values().filter(|&&c| c > 1).count();
    eprintln!(
        "drain with 2 broker-side closes: {n} jobs completed, {} runs, {reruns} jobs ran twice",
        probe.count()
    );
    queue.delete_queues(&[q]).await.unwrap();
}

/// After a drain without failures every delivery has been acked (the worker acks in the
/// background while it records the next completions, and waits for those acks when it
/// stops): once the connection is closed, which returns whatever was left unacked, the queue
/// is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_delivery_is_acked_after_a_drain() {
    let prefix = random_prefix();
    let storage = sqlite(&prefix).await;
    let queue: Arc<RabbitQueue> = Arc::new(rabbit(&prefix).await);
    let backend = Backend::with_queue(storage.clone(), queue.clone());
    let q = "acked".to_string();
    let n = 300;
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| NewJob::new("acked", json!({ "i": i })).with_queue(&q))
        .collect();
    storage.enqueue(jobs).await.unwrap();
    let probe = Probe::default();
    let p = probe.clone();
    let registry = Registry::new().register_fn("acked", move |_, ctx: JobContext| {
        p.record(ctx.id, ctx.attempt);
        async { Ok(None) }
    });
    let mut cfg = TestWorkerConfig::new(&q);
    cfg.concurrency = 8;
    let worker = start_worker(&backend, registry, cfg).await;
    wait_for("every job to complete", Duration::from_secs(60), || {
        let storage = storage.clone();
        async move {
            let counts = storage.counts().await.unwrap();
            let done = counts
                .iter()
                .filter_map(|c| c.counts.get(&JobState::Completed))
                .sum::<u64>();
            (done == n as u64).then_some(())
        }
    })
    .await;
    worker.stop().await;
    assert_eq!(probe.count(), n, "a job ran twice or never");

    queue.close().await;
    let fresh = rabbit(&prefix).await;
    let left = fresh
        .receive(&q, 100, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "{} deliveries were never acked",
        left.len()
    );
    fresh.delete_queues(&[q]).await.unwrap();
    storage.destroy().await.unwrap();
}

/// A delivery held past `settle_after` (a long job) is acked early by `extend`, so the broker's
/// `consumer_timeout` never closes its channel; the job's later ack is a no-op, and the message
/// does not come back when the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn extend_settles_long_held_deliveries_early() {
    let queue = settling_fast(&random_prefix()).await;
    let q = "long".to_string();
    queue.setup(std::slice::from_ref(&q)).await.unwrap();
    let m = QueueMessage {
        job_id: uuid::Uuid::now_v7(),
        queue: q.clone(),
        priority: 0,
        delay: Duration::ZERO,
    };
    queue.publish(std::slice::from_ref(&m)).await.unwrap();
    let d = queue
        .receive(&q, 1, Duration::from_secs(5), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(d.len(), 1);
    // Too young: still held.
    queue.extend(&d, Duration::from_secs(30)).await.unwrap();
    queue.close().await;
    let back = queue
        .receive(&q, 1, Duration::from_secs(5), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        back.len(),
        1,
        "an unsettled delivery must come back when its connection closes"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    queue.extend(&back, Duration::from_secs(30)).await.unwrap();
    queue.close().await;
    let none = queue
        .receive(&q, 1, Duration::from_secs(2), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        none.is_empty(),
        "a delivery settled early came back: {none:?}"
    );
    queue
        .ack(&back)
        .await
        .expect("the job's own ack after early settling");
    queue.delete_queues(&[q]).await.unwrap();
}

fn message(q: &str) -> QueueMessage {
    QueueMessage {
        job_id: uuid::Uuid::now_v7(),
        queue: q.to_string(),
        priority: 0,
        delay: Duration::ZERO,
    }
}

/// Receives until `n` deliveries arrived (panics after 20 s).
async fn receive_all(queue: &RabbitQueue, q: &str, n: usize) -> Vec<switchyard_core::Delivery> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "only {} of {n} arrived",
            got.len()
        );
        got.extend(
            queue
                .receive(q, n, Duration::from_secs(1), Duration::from_secs(30))
                .await
                .unwrap(),
        );
    }
    got
}

/// A bundle's message is acked only once every job it names is acked: jobs left unacked come
/// back when the connection closes, with their bundle mates and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unacked_bundle_members_come_back_when_the_connection_closes() {
    use switchyard_core::bundle::split_receipt;
    let prefix = random_prefix();
    let queue = rabbit(&prefix).await;
    let q = "bundles".to_string();
    queue.setup(std::slice::from_ref(&q)).await.unwrap();
    let messages: Vec<QueueMessage> = (0..30).map(|_| message(&q)).collect();
    queue.publish(&messages).await.unwrap();
    let got = receive_all(&queue, &q, 30).await;
    assert!(
        got.iter().all(|d| split_receipt(&d.receipt).1.is_some()),
        "30 jobs in one publish travel in bundles"
    );
    let (lost, acked): (Vec<_>, Vec<_>) =
        got.into_iter().partition(|d| d.job_id.as_u128() % 5 == 0);
    queue.ack(&acked).await.unwrap();
    let open: std::collections::HashSet<String> = lost
        .iter()
        .map(|d| split_receipt(&d.receipt).0.to_string())
        .collect();
    let mates: std::collections::HashSet<uuid::Uuid> = acked
        .iter()
        .chain(&lost)
        .filter(|d| open.contains(split_receipt(&d.receipt).0))
        .map(|d| d.job_id)
        .collect();
    queue.close().await;
    let back = if lost.is_empty() {
        Vec::new()
    } else {
        receive_all(&queue, &q, mates.len()).await
    };
    let back_ids: std::collections::HashSet<uuid::Uuid> = back.iter().map(|d| d.job_id).collect();
    assert_eq!(back_ids, mates, "exactly the unfinished bundles come back");
    assert!(lost.iter().all(|d| back_ids.contains(&d.job_id)));
    queue.ack(&back).await.unwrap();
    queue.close().await;
    let none = queue
        .receive(&q, 100, Duration::from_secs(2), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(none.is_empty(), "acked bundles came back: {}", none.len());
    queue.delete_queues(&[q]).await.unwrap();
}

/// A long job's bundle is acked early by `extend`; its mates not yet acked are published
/// again first, so none is lost when the bundle's message is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn early_settling_a_bundle_publishes_its_open_mates_again() {
    use switchyard_core::bundle::split_receipt;
    let queue = settling_fast(&random_prefix()).await;
    let q = "long-bundle".to_string();
    queue.setup(std::slice::from_ref(&q)).await.unwrap();
    let messages: Vec<QueueMessage> = (0..30).map(|_| message(&q)).collect();
    queue.publish(&messages).await.unwrap();
    let got = receive_all(&queue, &q, 30).await;
    // One bundle: its first member is acked, its second is the long job, the rest wait.
    let broker = split_receipt(&got[0].receipt).0.to_string();
    let bundle: Vec<_> = got
        .iter()
        .filter(|d| split_receipt(&d.receipt).0 == broker)
        .cloned()
        .collect();
    assert!(bundle.len() >= 3, "bundles of 3 ids for a publish of 30");
    let others: Vec<_> = got
        .iter()
        .filter(|d| split_receipt(&d.receipt).0 != broker)
        .cloned()
        .collect();
    queue.ack(&others).await.unwrap();
    queue.ack(&bundle[..1]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    queue
        .extend(&bundle[1..2], Duration::from_secs(30))
        .await
        .unwrap();
    // The bundle's message is acked now; its open members but the long job (kept by its
    // Storage lease) arrive as new messages.
    let again = receive_all(&queue, &q, bundle.len() - 2).await;
    let want: std::collections::HashSet<_> = bundle[2..].iter().map(|d| d.job_id).collect();
    let again_ids: std::collections::HashSet<_> = again.iter().map(|d| d.job_id).collect();
    assert_eq!(again_ids, want);
    queue.ack(&again).await.unwrap();
    queue.ack(&bundle[1..]).await.expect("late acks are no-ops");
    queue.close().await;
    let none = queue
        .receive(&q, 100, Duration::from_secs(2), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        none.is_empty(),
        "a settled message came back: {}",
        none.len()
    );
    queue.delete_queues(&[q]).await.unwrap();
}

/// Queue arguments cannot change after declaration: a second declaration with another
/// `x-max-priority` is a `Config` error naming the queue, not a broken connection.
/// `x-consumer-timeout` is accepted (RabbitMQ 3.12+ honours it, older brokers ignore it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_arguments_are_checked() {
    let prefix = random_prefix();
    let first = rabbit(&prefix).await;
    let q = "args".to_string();
    first.setup(std::slice::from_ref(&q)).await.unwrap();
    let other = RabbitQueue::connect(
        RabbitConfig::new(amqp_url())
            .with_prefix(&prefix)
            .with_queue_expires(Duration::from_secs(300))
            .with_max_priority(5),
    )
    .await
    .unwrap();
    let e = other.setup(std::slice::from_ref(&q)).await.unwrap_err();
    assert_eq!(e.kind(), switchyard_core::ErrorKind::Config, "{e}");
    assert!(e.message().contains(&format!("{prefix}args")), "{e}");
    // The connection is still usable.
    other.setup(&["fresh".to_string()]).await.unwrap();
    let timeout = RabbitQueue::connect(
        RabbitConfig::new(amqp_url())
            .with_prefix(format!("{prefix}ct_"))
            .with_queue_expires(Duration::from_secs(300))
            .with_consumer_timeout(Duration::from_secs(3 * 3600)),
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

/// A broker queue deleted while a worker consumes it (by an operator, or `destroy` from
/// another handle) cancels the consumer; the next receives declare the queue and consume it
/// again, so what is published afterwards arrives (before, the dead consumer was kept and every
/// receive waited for nothing until the process restarted).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_queue_is_consumed_again() {
    let prefix = random_prefix();
    let queue = rabbit(&prefix).await;
    let msg = |job_id| QueueMessage {
        job_id,
        queue: "q".into(),
        priority: 0,
        delay: Duration::ZERO,
    };
    queue.publish(&[msg(uuid::Uuid::now_v7())]).await.unwrap();
    let got = receive_all(&queue, "q", 1).await;
    queue.ack(&got).await.unwrap();
    // Another handle deletes the broker queue under the consumer.
    let other = rabbit(&prefix).await;
    other.publish(&[msg(uuid::Uuid::now_v7())]).await.unwrap();
    other.destroy().await.unwrap();

    let id = uuid::Uuid::now_v7();
    let start = Instant::now();
    let mut published = false;
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the message published after the queue was deleted never arrived"
        );
        if !published {
            published = queue.publish(&[msg(id)]).await.is_ok();
            continue;
        }
        if let Ok(d) = queue
            .receive("q", 10, Duration::from_millis(500), Duration::from_secs(30))
            .await
        {
            if d.iter().any(|d| d.job_id == id) {
                queue.ack(&d).await.unwrap();
                break;
            }
        }
    }
    queue.destroy().await.unwrap();
}
