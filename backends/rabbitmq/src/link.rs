//! One AMQP connection and its channels: a publisher channel in confirm mode, one consumer
//! channel per Switchyard queue, and the set of broker queues declared on it.
//!
//! A [`Link`] is never repaired: when its connection dies the queue opens a new one (see
//! `queue.rs`). Every consumer channel gets a number unique within its `RabbitQueue`, carried
//! in each receipt, so an ack never reaches a channel other than the one that delivered.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};
use switchyard_core::{Error, ErrorKind, Result};

use crate::config::RabbitConfig;

/// A live connection with its channels.
pub(crate) struct Link {
    /// Unique within the owning queue.
    pub generation: u64,
    connection: Connection,
    /// Confirm-mode channel for publishes.
    pub publisher: Channel,
    declared: Mutex<HashSet<String>>,
    /// Consumers by Switchyard queue.
    pub consumers: tokio::sync::Mutex<HashMap<String, Arc<QueueConsumer>>>,
}

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

/// An error from the broker while the connection or channel may be gone.
pub(crate) fn unavailable(what: &str, e: lapin::Error) -> Error {
    Error::unavailable(format!("RabbitMQ: {what}"), e)
}

impl Link {
    /// Connects, opens the publisher channel and puts it in confirm mode.
    pub async fn open(
        config: &RabbitConfig,
        uri: lapin::uri::AMQPUri,
        generation: u64,
    ) -> Result<Link> {
        let props =
            ConnectionProperties::default().with_connection_name(config.connection_name().into());
        let connection = Connection::connect_uri(uri, props)
            .await
            .map_err(|e| unavailable("cannot connect", e))?;
        connection.on_error(move |e| {
            tracing::warn!(error = %e, generation, "RabbitMQ connection failed; the next call reconnects");
        });
        let publisher = connection
            .create_channel()
            .await
            .map_err(|e| unavailable("cannot open a channel", e))?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| unavailable("cannot enable publisher confirms", e))?;
        Ok(Link {
            generation,
            connection,
            publisher,
            declared: Mutex::new(HashSet::new()),
            consumers: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Whether the connection and the publisher channel are usable.
    pub fn alive(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }

    /// Closes the connection (unacked deliveries go back to their queues).
    pub async fn close(&self) {
        if self.connection.status().connected() {
            let _ = self.connection.close(200, "switchyard: closing").await;
        }
    }

    /// Forgets that `broker_queue` was declared (it was deleted or expired).
    pub fn forget(&self, broker_queue: &str) {
        self.declared.lock().expect("poisoned").remove(broker_queue);
    }

    /// Declares `broker_queue` once per connection: durable, with the configured arguments.
    /// Uses a channel of its own, since a refused declaration closes its channel.
    pub async fn declare(&self, config: &RabbitConfig, broker_queue: &str) -> Result<()> {
        if self
            .declared
            .lock()
            .expect("poisoned")
            .contains(broker_queue)
        {
            return Ok(());
        }
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(|e| unavailable("cannot open a channel", e))?;
        let declared = channel
            .queue_declare(
                broker_queue,
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                queue_arguments(config),
            )
            .await;
        match declared {
            Ok(_) => {
                let _ = channel.close(200, "declared").await;
                self.declared
                    .lock()
                    .expect("poisoned")
                    .insert(broker_queue.to_string());
                Ok(())
            }
            Err(lapin::Error::ProtocolError(e)) if e.get_id() == 406 => Err(Error::new(
                ErrorKind::Config,
                format!(
                    "RabbitMQ queue `{broker_queue}` exists with other arguments than \
                     Switchyard's ({}); queue arguments cannot change after declaration: delete \
                     the queue or use another prefix",
                    describe_arguments(config)
                ),
            )
            .with_source(lapin::Error::ProtocolError(e))),
            Err(e) => Err(unavailable(
                &format!("cannot declare queue `{broker_queue}`"),
                e,
            )),
        }
    }

    /// Starts consuming `broker_queue` on a new channel with `prefetch` unacked deliveries.
    pub async fn consume(
        &self,
        config: &RabbitConfig,
        broker_queue: &str,
        prefetch: u16,
        id: u64,
    ) -> Result<QueueConsumer> {
        self.declare(config, broker_queue).await?;
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(|e| unavailable("cannot open a channel", e))?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| unavailable("cannot set the prefetch", e))?;
        let consumer = channel
            .basic_consume(
                broker_queue,
                &format!("switchyard-{id}"),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| unavailable(&format!("cannot consume queue `{broker_queue}`"), e))?;
        tracing::debug!(queue = broker_queue, prefetch, consumer = id, "consuming");
        Ok(QueueConsumer {
            id,
            broker_queue: broker_queue.to_string(),
            channel,
            stream: tokio::sync::Mutex::new(consumer),
            unsettled: Mutex::new(HashMap::new()),
            cancelled: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

fn queue_arguments(config: &RabbitConfig) -> FieldTable {
    let mut args = FieldTable::default();
    if config.max_priority > 0 {
        args.insert(
            "x-max-priority".into(),
            AMQPValue::LongInt(i32::from(config.max_priority)),
        );
    }
    if let Some(d) = config.queue_expires {
        args.insert("x-expires".into(), AMQPValue::LongInt(millis(d)));
    }
    if let Some(d) = config.consumer_timeout {
        args.insert("x-consumer-timeout".into(), AMQPValue::LongInt(millis(d)));
    }
    args
}

fn describe_arguments(config: &RabbitConfig) -> String {
    let mut parts = vec![format!("x-max-priority={}", config.max_priority)];
    if let Some(d) = config.queue_expires {
        parts.push(format!("x-expires={}", millis(d)));
    }
    if let Some(d) = config.consumer_timeout {
        parts.push(format!("x-consumer-timeout={}", millis(d)));
    }
    parts.join(", ")
}

fn millis(d: std::time::Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX).max(1)
}

/// Numbers for links and consumers, unique within one queue.
#[derive(Debug, Default)]
pub(crate) struct Generations(AtomicU64);

impl Generations {
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}
