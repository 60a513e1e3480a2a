//! # switchyard-rabbitmq
//!
//! Switchyard's [`Queue`](switchyard_core::Queue) on RabbitMQ through `lapin`: Storage keeps
//! the job records (SQLite, PostgreSQL or Redis), the broker delivers job ids.
//!
//! * **One durable queue per Switchyard queue**, named `{prefix}{queue}`, declared with
//!   `x-max-priority` so deliveries honour job priorities.
//! * **Publisher confirms**: `publish` returns once the broker has confirmed every message
//!   (pipelined: all are sent, then all confirms awaited); messages are persistent and
//!   mandatory, so a message to a vanished queue is an error, not a silent drop.
//! * **Manual acks**, one consumer per queue with a prefetch derived from the worker's
//!   concurrency. A receipt names the consumer channel that delivered it, so an ack for a
//!   delivery of a dead channel is skipped (the broker has re-queued it; the job's claim in
//!   Storage fences a second run).
//! * **Reconnection**: a lost connection is opened again by the next call, with backoff;
//!   queues and consumers are declared again. Calls during the outage fail with
//!   `Unavailable` and the worker and dispatcher retry.
//! * **A 5 s AMQP heartbeat**, asked for by the client: the broker closes a frozen worker's
//!   connection within seconds, so the deliveries it holds (and those pushed to it after it
//!   froze) go to live consumers instead of waiting minutes for the broker's 60 s default.
//! * **No native delay** (`max_native_delay: None`): delayed jobs wait in Storage and the
//!   dispatcher publishes them when due. **No visibility timeout** (`max_lease: None`): a
//!   delivery is held until acked or its channel closes; long jobs are acked early, before the
//!   broker's `consumer_timeout`, and stay protected by their Storage lease.
//!
//! See `docs/rabbitmq.md` for settings and the delivery, ack and reconnection story.

mod config;
mod connection;
mod consumer;
mod error;
mod publish;
mod queue;
mod wire;

pub use config::{RabbitConfig, DEFAULT_HEARTBEAT};
pub use queue::RabbitQueue;

/// URL schemes this backend accepts (`amqps` needs the `rustls` feature).
pub const URL_SCHEMES: &[&str] = &["amqp", "amqps"];

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<super::RabbitQueue>();
        assert_send_sync::<super::RabbitConfig>();
    }
}
