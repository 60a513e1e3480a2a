//! The queue contract for bundles (several job ids per broker message): each job delivered
//! once, a member given back alone, undelivered ids released, unacked members come back.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_core::{Delivery, JobId, Queue, QueueMessage};

use super::support::{
    assert_nothing_for, message, receive_one, receive_up_to, setup, DEADLINE, LONG_LEASE,
};
use crate::support::{queue_name, skip};

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
    let got = receive_up_to(&q, &name, messages.len(), 7, lease, DEADLINE, true).await;
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
    let mut got = receive_up_to(&q, &name, messages.len(), 100, lease, DEADLINE, false).await;
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
    let got = receive_up_to(&q, &name, rest.len(), 1000, LONG_LEASE, DEADLINE, true).await;
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
    let got = receive_up_to(&q, &name, messages.len(), 100, lease, DEADLINE, false).await;
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

/// This file's cases, for [`queue_conformance_suite!`](crate::queue_conformance_suite): a new
/// case is its function above plus its name here (`name(pair)` for a case that takes a second
/// queue under another prefix). Calls `$then!` with `$args` followed by the names.
#[doc(hidden)]
#[macro_export]
macro_rules! queue_bundle_cases {
    ($then:ident!($($args:tt)*)) => {
        $crate::$then! { $($args)*
            bundles_deliver_each_job_once,
            bundle_member_nack_comes_back_alone,
            release_gives_back_undelivered_ids,
            unacked_bundle_members_come_back,
        }
    };
}
