//! Helpers the queue cases share: timing bounds, building messages, and receive loops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_core::{Delivery, Queue, QueueMessage};
use uuid::Uuid;

/// Longest any case waits for a message that should arrive.
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

/// Lease for receives that the case settles itself.
pub(crate) const LONG_LEASE: Duration = Duration::from_secs(60);

/// Timing tolerance for "not before" assertions (clock and timer granularity).
pub(crate) const EARLY: Duration = Duration::from_millis(250);

pub(crate) fn message(queue: &str, delay: Duration) -> QueueMessage {
    QueueMessage {
        job_id: Uuid::now_v7(),
        queue: queue.to_string(),
        priority: 0,
        delay,
    }
}

pub(crate) async fn setup(q: &Arc<dyn Queue>, names: &[&str]) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    q.setup(&names).await.expect("Queue::setup");
}

/// Receives until `want` deliveries have arrived or `deadline` passed; acks each batch when
/// `ack` is set. Checks that no receive returns more than the batch size.
pub(crate) async fn receive_n(
    q: &Arc<dyn Queue>,
    name: &str,
    want: usize,
    lease: Duration,
    deadline: Duration,
    ack: bool,
) -> Vec<Delivery> {
    let max = q.capabilities().max_batch.max(1);
    receive_up_to(q, name, want, max, lease, deadline, ack).await
}

/// Receives with `max` until `want` deliveries have arrived or `deadline` passed; acks each
/// batch when `ack` is set. Checks that no receive returns more than `max`.
pub(crate) async fn receive_up_to(
    q: &Arc<dyn Queue>,
    name: &str,
    want: usize,
    max: usize,
    lease: Duration,
    deadline: Duration,
    ack: bool,
) -> Vec<Delivery> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < want && start.elapsed() < deadline {
        let batch = q
            .receive(name, max, Duration::from_secs(1), lease)
            .await
            .expect("Queue::receive");
        assert!(
            batch.len() <= max,
            "receive returned {} deliveries, above the asked maximum {max}",
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
pub(crate) async fn receive_one(
    q: &Arc<dyn Queue>,
    name: &str,
    lease: Duration,
) -> (Delivery, Instant) {
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
pub(crate) async fn assert_nothing_for(
    q: &Arc<dyn Queue>,
    name: &str,
    window: Duration,
    what: &str,
) {
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
