//! The contract of the [`Queue`] trait alone (no storage, no worker), for broker adapters such
//! as SQS and RabbitMQ. Each case takes a fresh queue adapter from the adapter's own factory,
//! isolated by a random queue-name prefix, and uses queue names of its own, so cases run in
//! parallel against one broker.
//!
//! ```ignore
//! async fn queue() -> std::sync::Arc<dyn switchyard_core::Queue> {
//!     let prefix = switchyard_conformance::random_prefix();
//!     std::sync::Arc::new(MyQueue::connect(MyConfig::new(URL).with_prefix(prefix)).await.unwrap())
//! }
//! switchyard_conformance::queue_conformance_suite!(queue);
//! ```
//!
//! Timing cases use leases and delays of one to three seconds; brokers that round to whole
//! seconds (SQS) pass them. A case that needs a capability the adapter does not declare
//! (`max_lease: None`: no visibility timeout; `max_native_delay: None`) prints why and returns.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_core::{Delivery, JobId, Queue, QueueMessage};
use uuid::Uuid;

/// Longest any case waits for a message that should arrive.
const DEADLINE: Duration = Duration::from_secs(20);
/// Lease for receives that the case settles itself.
const LONG_LEASE: Duration = Duration::from_secs(60);
/// Timing tolerance for "not before" assertions (clock and timer granularity).
const EARLY: Duration = Duration::from_millis(250);

fn queue_name() -> String {
    format!("q{}", &crate::random_prefix()[1..9])
}

fn skip(case: &str, why: &str) {
    eprintln!("SKIPPED {case}: {why}");
}

fn message(queue: &str, delay: Duration) -> QueueMessage {
    QueueMessage {
        job_id: Uuid::now_v7(),
        queue: queue.to_string(),
        priority: 0,
        delay,
    }
}

async fn setup(q: &Arc<dyn Queue>, names: &[&str]) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    q.setup(&names).await.expect("Queue::setup");
}

/// Receives until `want` deliveries have arrived or `deadline` passed; acks each batch when
/// `ack` is set. Checks that no receive returns more than the batch size.
async fn receive_n(
    q: &Arc<dyn Queue>,
    name: &str,
    want: usize,
    lease: Duration,
    deadline: Duration,
    ack: bool,
) -> Vec<Delivery> {
    let max = q.capabilities().max_batch.max(1);
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < want && start.elapsed() < deadline {
        let batch = q
            .receive(name, max, Duration::from_secs(1), lease)
            .await
            .expect("Queue::receive");
        assert!(
            batch.len() <= max,
            "receive returned {} messages, above the asked maximum {max}",
            batch.len()
        );
        if ack && !batch.is_empty() {
            q.ack(&batch).await.expect("Queue::ack");
        }
        got.extend(batch);
    }
    got
}

/// Receives one message, panicking if none arrives within the deadline.
async fn receive_one(q: &Arc<dyn Queue>, name: &str, lease: Duration) -> (Delivery, Instant) {
    let start = Instant::now();
    loop {
        let mut batch = q
            .receive(name, 1, Duration::from_secs(1), lease)
            .await
            .expect("Queue::receive");
        assert!(batch.len() <= 1, "receive returned more than max = 1");
        if let Some(d) = batch.pop() {
            return (d, Instant::now());
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no message arrived on `{name}` within {DEADLINE:?}"
        );
    }
}

/// Asserts that nothing arrives on `name` during `window`.
async fn assert_nothing_for(q: &Arc<dyn Queue>, name: &str, window: Duration, what: &str) {
    let start = Instant::now();
    while start.elapsed() < window {
        let left = window.saturating_sub(start.elapsed());
        let wait = left.min(Duration::from_secs(1));
        let batch = q
            .receive(
                name,
                10.min(q.capabilities().max_batch.max(1)),
                wait,
                LONG_LEASE,
            )
            .await
            .expect("Queue::receive");
        assert!(
            batch.is_empty(),
            "{what}: got {:?} after {:?}",
            batch.iter().map(|d| d.job_id).collect::<Vec<_>>(),
            start.elapsed()
        );
    }
}

/// `setup` is idempotent, and a receive on an empty queue returns an empty vector after about
/// `wait` (long polling), not at once in a busy loop nor much later.
pub async fn setup_idempotent_and_empty_receive_waits(q: Arc<dyn Queue>) {
    let name = queue_name();
    setup(&q, &[&name]).await;
    setup(&q, &[&name]).await;
    let start = Instant::now();
    let got = q
        .receive(&name, 1, Duration::from_secs(1), LONG_LEASE)
        .await
        .expect("receive");
    let took = start.elapsed();
    assert!(got.is_empty(), "an empty queue delivered {got:?}");
    assert!(
        took < Duration::from_secs(8),
        "an empty receive with wait = 1 s took {took:?}"
    );
}

/// Publish → receive → ack: the delivery names the job and its queue, and an acked message is
/// never delivered again (not even after its lease would have run out).
pub async fn publish_receive_ack(q: Arc<dyn Queue>) {
    let name = queue_name();
    setup(&q, &[&name]).await;
    let m = message(&name, Duration::ZERO);
    q.publish(std::slice::from_ref(&m)).await.expect("publish");
    let lease = Duration::from_secs(1);
    let (d, _) = receive_one(&q, &name, lease).await;
    assert_eq!(d.job_id, m.job_id);
    assert_eq!(d.queue, name);
    assert!(!d.receipt.is_empty(), "a delivery needs a receipt");
    q.ack(std::slice::from_ref(&d)).await.expect("ack");
    assert_nothing_for(
        &q,
        &name,
        lease + Duration::from_secs(2),
        "an acked message came back",
    )
    .await;
}

/// `destroy` deletes the broker queues the handle used, messages and all: a queue used again
/// afterwards starts empty. (Real SQS refuses to re-create a queue name for 60 s after it was
/// deleted; the suite runs against the emulator.)
pub async fn destroy_deletes_broker_queues(q: Arc<dyn Queue>) {
    let name = queue_name();
    setup(&q, &[&name]).await;
    let messages: Vec<QueueMessage> = (0..3).map(|_| message(&name, Duration::ZERO)).collect();
    q.publish(&messages).await.expect("publish");
    match q.destroy().await {
        Err(e) if e.kind() == switchyard_core::ErrorKind::Unsupported => {
            return skip("destroy_deletes_broker_queues", "the queue cannot destroy");
        }
        r => r.expect("destroy"),
    }
    setup(&q, &[&name]).await;
    assert_nothing_for(
        &q,
        &name,
        Duration::from_secs(2),
        "a message outlived its destroyed queue",
    )
    .await;
}

/// A received message that is neither acked nor nacked stays invisible for its lease, then comes
/// back with the same job id.
pub async fn unacked_comes_back_after_lease(q: Arc<dyn Queue>) {
    if q.capabilities().max_lease.is_none() {
        return skip(
            "unacked_comes_back_after_lease",
            "the broker has no visibility timeout (max_lease: None): unacked messages come back when their channel closes, which the adapter's own tests cover",
        );
    }
    let name = queue_name();
    setup(&q, &[&name]).await;
    let m = message(&name, Duration::ZERO);
    q.publish(std::slice::from_ref(&m)).await.expect("publish");
    let lease = Duration::from_secs(2);
    let (first, at) = receive_one(&q, &name, lease).await;
    assert_eq!(first.job_id, m.job_id);
    let (again, back_at) = receive_one(&q, &name, LONG_LEASE).await;
    assert_eq!(again.job_id, m.job_id, "a different message came back");
    let invisible = back_at - at;
    assert!(
        invisible + EARLY >= lease,
        "the message came back after {invisible:?}, before its lease of {lease:?}"
    );
    q.ack(&[again]).await.expect("ack");
}

/// `nack` with a delay gives the message back no earlier than the delay; `nack` with zero gives
/// it back at once.
pub async fn nack_with_delay(q: Arc<dyn Queue>) {
    let name = queue_name();
    setup(&q, &[&name]).await;
    let m = message(&name, Duration::ZERO);
    q.publish(std::slice::from_ref(&m)).await.expect("publish");
    let (d, _) = receive_one(&q, &name, LONG_LEASE).await;
    let delay = Duration::from_secs(2);
    let nacked_at = Instant::now();
    q.nack(&d, delay).await.expect("nack");
    let (again, back_at) = receive_one(&q, &name, LONG_LEASE).await;
    assert_eq!(again.job_id, m.job_id);
    let waited = back_at - nacked_at;
    assert!(
        waited + EARLY >= delay,
        "nacked with {delay:?}, came back after {waited:?}"
    );
    assert!(
        waited < delay + Duration::from_secs(10),
        "nacked with {delay:?}, came back only after {waited:?}"
    );
    // Zero: at once.
    let nacked_at = Instant::now();
    q.nack(&again, Duration::ZERO).await.expect("nack 0");
    let (third, back_at) = receive_one(&q, &name, LONG_LEASE).await;
    assert_eq!(third.job_id, m.job_id);
    assert!(
        back_at - nacked_at < Duration::from_secs(5),
        "nack(0) came back only after {:?}",
        back_at - nacked_at
    );
    q.ack(&[third]).await.expect("ack");
}

/// `extend` keeps a received message invisible past its first lease; with a visibility timeout
/// it comes back once the extended lease runs out.
pub async fn extend_keeps_message_invisible(q: Arc<dyn Queue>) {
    let name = queue_name();
    setup(&q, &[&name]).await;
    let m = message(&name, Duration::ZERO);
    q.publish(std::slice::from_ref(&m)).await.expect("publish");
    let lease = Duration::from_secs(2);
    let (d, received_at) = receive_one(&q, &name, lease).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let extended_at = Instant::now();
    let extension = Duration::from_secs(4);
    q.extend(std::slice::from_ref(&d), extension)
        .await
        .expect("extend");
    // Well past the first lease (2 s after receive), before the extension ends (5 s).
    let until =
        (received_at + Duration::from_millis(3500)).saturating_duration_since(Instant::now());
    assert_nothing_for(&q, &name, until, "an extended message came back early").await;
    if q.capabilities().max_lease.is_none() {
        q.ack(&[d]).await.expect("ack");
        return;
    }
    let (again, back_at) = receive_one(&q, &name, LONG_LEASE).await;
    assert_eq!(again.job_id, m.job_id);
    let waited = back_at - extended_at;
    assert!(
        waited + EARLY >= extension,
        "extended by {extension:?}, came back after {waited:?}"
    );
    q.ack(&[again]).await.expect("ack");
}

/// A message published with a delay within the native limit is not delivered before it; one
/// published beside it without delay is delivered at once.
pub async fn native_delay_honoured(q: Arc<dyn Queue>) {
    let Some(limit) = q.capabilities().max_native_delay else {
        return skip(
            "native_delay_honoured",
            "the broker declares no native delay (max_native_delay: None); delayed jobs wait in storage",
        );
    };
    let name = queue_name();
    setup(&q, &[&name]).await;
    let delay = limit.min(Duration::from_secs(2));
    let late = message(&name, delay);
    let now = message(&name, Duration::ZERO);
    let published_at = Instant::now();
    q.publish(&[late.clone(), now.clone()])
        .await
        .expect("publish");
    let (first, _) = receive_one(&q, &name, LONG_LEASE).await;
    assert_eq!(first.job_id, now.job_id, "the delayed message came first");
    q.ack(&[first]).await.expect("ack");
    let (second, at) = receive_one(&q, &name, LONG_LEASE).await;
    assert_eq!(second.job_id, late.job_id);
    let waited = at - published_at;
    assert!(
        waited + EARLY >= delay,
        "published with delay {delay:?}, delivered after {waited:?}"
    );
    q.ack(&[second]).await.expect("ack");
}

/// One publish of 25 messages (more than one broker batch) delivers each exactly once when
/// every received batch is acked.
pub async fn batch_publish_beyond_batch_size(q: Arc<dyn Queue>) {
    let name = queue_name();
    setup(&q, &[&name]).await;
    let n = 25;
    let messages: Vec<QueueMessage> = (0..n).map(|_| message(&name, Duration::ZERO)).collect();
    q.publish(&messages).await.expect("publish 25");
    let got = receive_n(&q, &name, n, LONG_LEASE, DEADLINE, true).await;
    let ids: Vec<JobId> = got.iter().map(|d| d.job_id).collect();
    let unique: HashSet<JobId> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a message was delivered twice");
    let sent: HashSet<JobId> = messages.iter().map(|m| m.job_id).collect();
    assert_eq!(unique, sent, "received ids differ from published ids");
    assert!(got.iter().all(|d| d.queue == name));
    assert_nothing_for(
        &q,
        &name,
        Duration::from_secs(2),
        "an acked message came back",
    )
    .await;
}

/// Messages carry job ids only: each delivery names exactly the job and queue it was published
/// with (any UUID version, whatever the priority), with a distinct receipt.
pub async fn messages_carry_ids_only(q: Arc<dyn Queue>) {
    let name = queue_name();
    setup(&q, &[&name]).await;
    let messages = vec![
        QueueMessage {
            job_id: Uuid::new_v4(),
            queue: name.clone(),
            priority: 10,
            delay: Duration::ZERO,
        },
        QueueMessage {
            job_id: Uuid::now_v7(),
            queue: name.clone(),
            priority: -5,
            delay: Duration::ZERO,
        },
        QueueMessage {
            job_id: Uuid::nil(),
            queue: name.clone(),
            priority: 0,
            delay: Duration::ZERO,
        },
    ];
    q.publish(&messages).await.expect("publish");
    let got = receive_n(&q, &name, messages.len(), LONG_LEASE, DEADLINE, true).await;
    let mut ids: Vec<JobId> = got.iter().map(|d| d.job_id).collect();
    let mut want: Vec<JobId> = messages.iter().map(|m| m.job_id).collect();
    ids.sort();
    want.sort();
    assert_eq!(ids, want);
    assert!(got.iter().all(|d| d.queue == name));
    let receipts: HashSet<&str> = got.iter().map(|d| d.receipt.as_str()).collect();
    assert_eq!(receipts.len(), got.len(), "receipts must be distinct");
}

/// Queues are isolated: a message published to one queue is never received from another queue
/// of the same adapter, nor from the same queue name under another prefix (`other`).
pub async fn broker_queues_are_isolated(q: Arc<dyn Queue>, other: Arc<dyn Queue>) {
    let a = queue_name();
    let b = queue_name();
    setup(&q, &[&a, &b]).await;
    setup(&other, &[&a]).await;
    let m = message(&a, Duration::ZERO);
    q.publish(std::slice::from_ref(&m)).await.expect("publish");
    assert_nothing_for(
        &q,
        &b,
        Duration::from_secs(2),
        "queue b received queue a's message",
    )
    .await;
    assert_nothing_for(
        &other,
        &a,
        Duration::from_secs(1),
        "another prefix received this prefix's message",
    )
    .await;
    let (d, _) = receive_one(&q, &a, LONG_LEASE).await;
    assert_eq!(d.job_id, m.job_id);
    assert_eq!(d.queue, a);
    q.ack(&[d]).await.expect("ack");
}

/// Receives with `max` until `want` deliveries arrived or `deadline` passed, acking each batch.
async fn receive_acking(
    q: &Arc<dyn Queue>,
    name: &str,
    want: usize,
    max: usize,
    lease: Duration,
) -> Vec<Delivery> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < want && start.elapsed() < DEADLINE {
        let batch = q
            .receive(name, max, Duration::from_secs(1), lease)
            .await
            .expect("Queue::receive");
        assert!(
            batch.len() <= max,
            "receive returned {} deliveries, above the asked maximum {max}",
            batch.len()
        );
        if !batch.is_empty() {
            q.ack(&batch).await.expect("Queue::ack");
        }
        got.extend(batch);
    }
    got
}

/// A fresh queue with `n` messages published in one call (more than ten: bundles).
async fn published(q: &Arc<dyn Queue>, n: usize) -> (String, Vec<QueueMessage>) {
    let name = queue_name();
    setup(q, &[&name]).await;
    let messages: Vec<QueueMessage> = (0..n).map(|_| message(&name, Duration::ZERO)).collect();
    q.publish(&messages).await.expect("Queue::publish");
    (name, messages)
}

/// A lease that runs out within the case when the broker has visibility timeouts.
fn short_lease(q: &Arc<dyn Queue>) -> Duration {
    match q.capabilities().max_lease {
        Some(_) => Duration::from_secs(4),
        None => LONG_LEASE,
    }
}

/// Receives (asking for 100 at a time, not acking) until `want` deliveries arrived or the
/// deadline passed.
async fn receive_without_ack(
    q: &Arc<dyn Queue>,
    name: &str,
    want: usize,
    lease: Duration,
) -> Vec<Delivery> {
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < want && start.elapsed() < DEADLINE {
        got.extend(
            q.receive(name, 100, Duration::from_secs(1), lease)
                .await
                .expect("Queue::receive"),
        );
    }
    got
}

fn assert_exactly(got: &[Delivery], sent: &[QueueMessage], what: &str) {
    let ids: Vec<JobId> = got.iter().map(|d| d.job_id).collect();
    let unique: HashSet<JobId> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "{what}: a job was delivered twice");
    let want: HashSet<JobId> = sent.iter().map(|m| m.job_id).collect();
    assert_eq!(
        unique.len(),
        want.len(),
        "{what}: {} of {} jobs delivered",
        unique.len(),
        want.len()
    );
    assert_eq!(
        unique, want,
        "{what}: received ids differ from published ids"
    );
    let receipts: HashSet<&str> = got.iter().map(|d| d.receipt.as_str()).collect();
    assert_eq!(
        receipts.len(),
        got.len(),
        "{what}: receipts must be distinct"
    );
}

/// A large publish is packed several ids per message (bundles): receives of fewer ids than a
/// message holds hand out each job exactly once, with its own receipt, and once every job is
/// acked the broker messages are gone (with a visibility timeout, nothing comes back after it).
pub async fn bundles_deliver_each_job_once(q: Arc<dyn Queue>) {
    let (name, messages) = published(&q, 200).await;
    let lease = short_lease(&q);
    let got = receive_acking(&q, &name, messages.len(), 7, lease).await;
    assert_exactly(&got, &messages, "receives of 7");
    assert!(got.iter().all(|d| d.queue == name));
    assert_nothing_for(
        &q,
        &name,
        lease + Duration::from_secs(2),
        "an acked job came back",
    )
    .await;
}

/// A bundle member given back with `nack` comes back alone, while the bundle's other jobs,
/// acked, do not.
pub async fn bundle_member_nack_comes_back_alone(q: Arc<dyn Queue>) {
    let (name, messages) = published(&q, 30).await;
    let lease = short_lease(&q);
    let mut got = receive_without_ack(&q, &name, messages.len(), lease).await;
    assert_exactly(&got, &messages, "first delivery");
    let back = got.remove(13);
    q.ack(&got).await.expect("ack 29");
    q.nack(&back, Duration::ZERO).await.expect("nack one");
    let (again, _) = receive_one(&q, &name, LONG_LEASE).await;
    assert_eq!(again.job_id, back.job_id, "the nacked job comes back");
    q.ack(&[again]).await.expect("ack");
    assert_nothing_for(
        &q,
        &name,
        lease + Duration::from_secs(2),
        "an acked job came back",
    )
    .await;
}

/// Ids a receive could not hand out (beyond its `max`) are given back by `release`: the next
/// receives deliver every job not yet acked, exactly once.
pub async fn release_gives_back_undelivered_ids(q: Arc<dyn Queue>) {
    let (name, messages) = published(&q, 100).await;
    let first = loop {
        let batch = q
            .receive(&name, 5, Duration::from_secs(1), LONG_LEASE)
            .await
            .expect("receive 5");
        if !batch.is_empty() {
            break batch;
        }
    };
    assert!(first.len() <= 5);
    q.ack(&first).await.expect("ack");
    q.release().await.expect("release");
    let rest: Vec<QueueMessage> = messages
        .iter()
        .filter(|m| !first.iter().any(|d| d.job_id == m.job_id))
        .cloned()
        .collect();
    let got = receive_acking(&q, &name, rest.len(), 1000, LONG_LEASE).await;
    assert_exactly(&got, &rest, "after release");
    assert_nothing_for(&q, &name, Duration::from_secs(2), "a job came back twice").await;
}

/// A bundle's message is deleted only once every job it names is acked: when some are never
/// acked (their worker died), the message comes back after the lease and delivers them again
/// (with their bundle mates, whose claims Storage then fences). Brokers without a lease
/// (RabbitMQ) prove this in their own tests by closing the connection.
pub async fn unacked_bundle_members_come_back(q: Arc<dyn Queue>) {
    if q.capabilities().max_lease.is_none() {
        return skip(
            "unacked_bundle_members_come_back",
            "no visibility timeout (max_lease: None)",
        );
    }
    let (name, messages) = published(&q, 30).await;
    let lease = Duration::from_secs(3);
    let got = receive_without_ack(&q, &name, messages.len(), lease).await;
    assert_exactly(&got, &messages, "first delivery");
    let (lost, acked): (Vec<Delivery>, Vec<Delivery>) =
        got.into_iter()
            .enumerate()
            .fold((vec![], vec![]), |(mut l, mut a), (i, d)| {
                if i % 7 == 3 {
                    l.push(d)
                } else {
                    a.push(d)
                }
                (l, a)
            });
    q.ack(&acked).await.expect("ack");
    let mut missing: HashSet<JobId> = lost.iter().map(|d| d.job_id).collect();
    let start = Instant::now();
    while !missing.is_empty() && start.elapsed() < DEADLINE {
        let batch = q
            .receive(&name, 100, Duration::from_secs(1), LONG_LEASE)
            .await
            .expect("receive again");
        for d in &batch {
            missing.remove(&d.job_id);
        }
        if !batch.is_empty() {
            q.ack(&batch).await.expect("ack again");
        }
    }
    assert!(
        missing.is_empty(),
        "{} unacked jobs never came back: {missing:?}",
        missing.len()
    );
}

/// Instantiates every queue case as a `#[tokio::test]` for one queue adapter. `$factory` is an
/// `async fn() -> Arc<dyn Queue>` that returns a fresh adapter with a random queue-name prefix
/// on each call. Test names do not clash with [`conformance_suite!`](crate::conformance_suite)'s,
/// so both can be used in one file.
#[macro_export]
macro_rules! queue_conformance_suite {
    ($factory:path) => {
        $crate::queue_conformance_suite!(@cases $factory;
            setup_idempotent_and_empty_receive_waits,
            publish_receive_ack,
            unacked_comes_back_after_lease,
            nack_with_delay,
            extend_keeps_message_invisible,
            native_delay_honoured,
            batch_publish_beyond_batch_size,
            messages_carry_ids_only,
            destroy_deletes_broker_queues,
            bundles_deliver_each_job_once,
            bundle_member_nack_comes_back_alone,
            release_gives_back_undelivered_ids,
            unacked_bundle_members_come_back,
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn broker_queues_are_isolated() {
            let queue = $factory().await;
            let other = $factory().await;
            $crate::queue_cases::broker_queues_are_isolated(queue.clone(), other.clone()).await;
            $crate::destroyed("queue", queue.destroy().await);
            $crate::destroyed("queue", other.destroy().await);
        }
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let queue = $factory().await;
                $crate::queue_cases::$case(queue.clone()).await;
                $crate::destroyed("queue", queue.destroy().await);
            }
        )*
    };
}
