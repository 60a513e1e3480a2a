//! Connection loss: the broker closes the connection (`rabbitmqctl close_connection`) while
//! messages are held or while a worker drains 500 jobs, or deletes the queue under a
//! consumer, and nothing is lost, nothing stuck.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::{JobState, NewJob, Registry};
use switchyard_conformance::harness::{start_worker, Probe, TestWorkerConfig};
use switchyard_conformance::{random_prefix, wait_for, Backend};
use switchyard_core::{JobContext, Queue, QueueMessage};
use switchyard_rabbitmq::RabbitQueue;

use crate::support::{assert_nothing_arrives, publish_new, rabbit, receive_all, sqlite};

pub(crate) fn have_rabbitmqctl() -> bool {
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
pub(crate) async fn connections_named(connection_name: &str) -> Vec<String> {
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
    let m = publish_new(&queue, &q, 1).await.remove(0);
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
    assert_nothing_arrives(&queue, &q, 10, "an acked message came back").await;
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
