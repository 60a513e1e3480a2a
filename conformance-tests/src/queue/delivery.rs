//! The queue contract for single messages: setup and long polling, publish, ack, the lease
//! (unacked messages come back, `nack`, `extend`), native delays, batches, ids only, destroy
//! and isolation.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_core::{JobId, Queue, QueueMessage};
use uuid::Uuid;

use super::support::{
    assert_nothing_for, message, receive_n, receive_one, setup, DEADLINE, EARLY, LONG_LEASE,
};
use crate::support::{queue_name, skip};

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

/// `destroy_queues` deletes the broker queues it names, messages and all, and no other; a
/// name whose broker queue does not exist is skipped. The broker's health checks find nothing
/// failed on a queue that exists.
pub async fn destroy_queues_deletes_only_those_named(q: Arc<dyn Queue>) {
    let (gone, kept, never) = (queue_name(), queue_name(), queue_name());
    setup(&q, &[&gone, &kept]).await;
    let doomed = message(&gone, Duration::ZERO);
    let survivor = message(&kept, Duration::ZERO);
    q.publish(&[doomed, survivor.clone()])
        .await
        .expect("publish");
    for c in q.health_checks(std::slice::from_ref(&kept)).await {
        assert_ne!(
            c.status,
            switchyard_core::CheckStatus::Fail,
            "a health check failed on an existing queue: {c:?}"
        );
    }
    match q.destroy_queues(&[gone.clone(), never.clone()]).await {
        Err(e) if e.kind() == switchyard_core::ErrorKind::Unsupported => {
            return skip(
                "destroy_queues_deletes_only_those_named",
                "the queue cannot destroy named queues",
            );
        }
        r => r.expect("destroy_queues"),
    }
    q.destroy_queues(std::slice::from_ref(&gone))
        .await
        .expect("destroying a destroyed queue again");
    let (d, _) = receive_one(&q, &kept, LONG_LEASE).await;
    assert_eq!(
        d.job_id, survivor.job_id,
        "the queue not named lost its message"
    );
    q.ack(std::slice::from_ref(&d)).await.expect("ack");
    setup(&q, &[&gone]).await;
    assert_nothing_for(
        &q,
        &gone,
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

/// This file's cases, for [`queue_conformance_suite!`](crate::queue_conformance_suite): a new
/// case is its function above plus its name here (`name(pair)` for a case that takes a second
/// queue under another prefix). Calls `$then!` with `$args` followed by the names.
#[doc(hidden)]
#[macro_export]
macro_rules! queue_delivery_cases {
    ($then:ident!($($args:tt)*)) => {
        $crate::$then! { $($args)*
            setup_idempotent_and_empty_receive_waits,
            publish_receive_ack,
            destroy_deletes_broker_queues,
            destroy_queues_deletes_only_those_named,
            unacked_comes_back_after_lease,
            nack_with_delay,
            extend_keeps_message_invisible,
            native_delay_honoured,
            batch_publish_beyond_batch_size,
            messages_carry_ids_only,
            broker_queues_are_isolated(pair),
        }
    };
}
