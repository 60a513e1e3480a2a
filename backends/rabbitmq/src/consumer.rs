//! The consumer of one broker queue on its own channel, with the deliveries it holds
//! unsettled, and the acks and nacks that settle them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::join_all;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::Channel;

/// A consumer on one broker queue, on its own channel.
pub(crate) struct QueueConsumer {
    /// Unique within the owning queue; the first part of every receipt.
    pub id: u64,
    /// The broker queue it consumes.
    pub broker_queue: String,
    pub channel: Channel,
    pub stream: tokio::sync::Mutex<lapin::Consumer>,
    /// Delivery tags received and not yet acked or nacked, with when they arrived.
    pub unsettled: Mutex<HashMap<u64, Instant>>,
    /// Set when the broker cancelled the consumer (its queue was deleted): its stream ends
    /// while its channel stays open.
    pub cancelled: std::sync::atomic::AtomicBool,
}

impl QueueConsumer {
    /// Whether its channel is open and the broker has not cancelled it.
    pub fn alive(&self) -> bool {
        self.channel.status().connected()
            && !self.cancelled.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Notes that the broker cancelled this consumer (its stream ended).
    pub fn cancel(&self) {
        if !self
            .cancelled
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            tracing::warn!(
                queue = %self.broker_queue,
                consumer = self.id,
                "RabbitMQ cancelled the consumer (was the queue deleted?); declaring and consuming again"
            );
        }
    }

    /// Removes `tag` from the unsettled set; `false` when it was already settled.
    pub fn take(&self, tag: u64) -> bool {
        self.unsettled
            .lock()
            .expect("poisoned")
            .remove(&tag)
            .is_some()
    }
}

/// Acks these deliveries (already taken from their consumers' unsettled sets), all at once. A
/// channel that closed under us is no error: its messages come back and are skipped then.
pub(crate) async fn ack_all(acks: Vec<(Arc<QueueConsumer>, u64)>, what: &str) {
    let calls = acks
        .iter()
        .map(|(consumer, tag)| consumer.channel.basic_ack(*tag, BasicAckOptions::default()));
    for r in join_all(calls).await {
        if let Err(e) = r {
            tracing::debug!(error = %e, "{what} on a closing channel skipped");
        }
    }
}

/// Gives a delivery back to the broker if it is still held on a live channel.
pub(crate) async fn requeue(consumer: Arc<QueueConsumer>, tag: u64) {
    if consumer.alive() && consumer.take(tag) {
        let options = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        if let Err(e) = consumer.channel.basic_nack(tag, options).await {
            tracing::debug!(error = %e, "nack on a closing channel skipped");
        }
    }
}
