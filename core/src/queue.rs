//! The [`Queue`] trait: delivery of job ids through an external broker (SQS, RabbitMQ, Redis).
//!
//! Messages carry a job id and its queue, never a payload: payloads live in Storage, so broker
//! size limits never reach the user. Storage is the outbox — the runtime's dispatcher publishes
//! due jobs and marks them dispatched — and a delivery is only a hint: the worker claims the job
//! in Storage, fenced by state and lease token, so a duplicate or late delivery is harmless.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::admin::HealthCheck;
use crate::capability::QueueCapabilities;
use crate::error::Result;
use crate::job::JobId;

/// A message to publish: which job, on which queue, with which priority and delay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueMessage {
    /// The job to run.
    pub job_id: JobId,
    /// The Switchyard queue (maps to a broker queue).
    pub queue: String,
    /// The job's priority, for brokers that support it.
    pub priority: i16,
    /// Deliver no earlier than this from now; never above `max_native_delay`.
    pub delay: Duration,
}

/// A received message. `receipt` is the broker's handle for acking it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The job the message names.
    pub job_id: JobId,
    /// The Switchyard queue it came from.
    pub queue: String,
    /// The broker's handle (SQS receipt handle, RabbitMQ delivery tag with its channel id).
    pub receipt: String,
}

/// Delivery of job ids to workers through a broker.
///
/// # Contract
/// * Delivery is at least once. A message that is received and neither acked nor nacked comes
///   back after its visibility/lease runs out or its channel closes.
/// * No method ever loses a message that was published and not acked.
/// * Errors are [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) while the broker is
///   unreachable; the adapter reconnects by itself on later calls.
#[async_trait]
pub trait Queue: Send + Sync + std::fmt::Debug + 'static {
    /// A short name for messages and metrics (`sqs`, `rabbitmq`, `redis`).
    fn name(&self) -> &'static str;

    /// What the broker supports.
    fn capabilities(&self) -> QueueCapabilities;

    /// Creates the broker queues for these Switchyard queues if they do not exist. Idempotent.
    async fn setup(&self, queues: &[String]) -> Result<()>;

    /// Publishes messages, any number per call: the adapter cuts them into broker batches and
    /// may pack several job ids into one broker message (see [`crate::adapter::bundle`]). Returns only
    /// when the broker has accepted every one of them (publisher confirms, SQS batch success);
    /// on error, none, some or all may have been accepted, and the caller publishes them again
    /// (duplicates are harmless).
    async fn publish(&self, messages: &[QueueMessage]) -> Result<()>;

    /// Receives up to `max` deliveries from `queue`, waiting up to `wait` for the first one.
    /// Returns an empty vector when none arrived in time. Received messages are invisible to
    /// other receivers for at least `lease`. A message that names several jobs (a bundle, see
    /// [`crate::adapter::bundle`]) gives one delivery per job, each with its own receipt; ids beyond
    /// `max` wait in the adapter for the next receive (or [`Queue::release`]).
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
        lease: Duration,
    ) -> Result<Vec<Delivery>>;

    /// Acknowledges deliveries: they are never delivered again (a bundle's message is deleted
    /// once every job it names is acked or given back). Acking a receipt from a dead
    /// connection is not an error: that message has already come back and will be delivered
    /// again, and the job's claim in Storage fences any second run.
    async fn ack(&self, deliveries: &[Delivery]) -> Result<()>;

    /// Gives a delivery back to be delivered again after `delay` (zero: at once). A member of
    /// a bundle is given back as a message of its own.
    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<()>;

    /// Keeps a received message invisible for another `lease` (SQS `ChangeMessageVisibility`).
    /// Brokers without visibility timeouts do nothing.
    async fn extend(&self, deliveries: &[Delivery], lease: Duration) -> Result<()>;

    /// Gives back deliveries received from the broker but not yet returned by `receive` (a
    /// message can name several jobs — see [`crate::adapter::bundle`] — so a receive may leave some of
    /// its ids waiting in the adapter). The worker calls it when it stops fetching, so no job
    /// waits in a stopped worker. The default has nothing to give back.
    async fn release(&self) -> Result<()> {
        Ok(())
    }

    /// Deletes, with any messages in them, the broker queues of these Switchyard queues (under
    /// the instance's prefix), whether or not this handle has used them; a queue that does not
    /// exist is skipped (`switchyard destroy`). Creates nothing. The default says the broker
    /// cannot (`ErrorKind::Unsupported`).
    async fn destroy_queues(&self, queues: &[String]) -> Result<()> {
        let _ = queues;
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!("the {} queue cannot destroy its broker queues", self.name()),
        ))
    }

    /// The broker's checks for `switchyard doctor`, for these Switchyard queues: whether each
    /// broker queue exists (and how many messages it holds), and anything about the broker
    /// that puts messages at risk. Only reads: a missing queue is reported, never created.
    /// Never fails: a check that cannot run is a warning or failure with the reason. The
    /// default has none.
    async fn health_checks(&self, queues: &[String]) -> Vec<HealthCheck> {
        let _ = queues;
        Vec::new()
    }

    /// Deletes, with any messages in them, the broker queues this handle has set up, published
    /// to or received from (all under the instance's prefix). For test suites and benchmarks
    /// that make throwaway instances, and for retiring one. The default says the broker
    /// cannot.
    async fn destroy(&self) -> Result<()> {
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!("the {} queue cannot destroy its broker queues", self.name()),
        ))
    }
}
