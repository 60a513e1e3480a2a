//! The AMQP connection and its channels: a publisher channel in confirm mode, one consumer
//! channel per Switchyard queue, the set of broker queues declared on it, and the
//! [`Connector`] that opens a new connection (with backoff) when the current one is lost.
//!
//! A [`Link`] is never repaired: when its connection dies the next call opens a new one.
//! Every consumer channel gets a number unique within its `RabbitQueue`, carried in each
//! receipt, so an ack never reaches a channel other than the one that delivered.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};
use switchyard_core::{Error, ErrorKind, Result};

use crate::config::RabbitConfig;
use crate::consumer::QueueConsumer;
use crate::error::{connect_err, unavailable};

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

impl Link {
    /// Connects, opens the publisher channel and puts it in confirm mode.
    pub async fn open(
        config: &RabbitConfig,
        uri: lapin::uri::AMQPUri,
        generation: u64,
    ) -> Result<Link> {
        let props =
            ConnectionProperties::default().with_connection_name(config.connection_name().into());
        let tls = lapin::tcp::OwnedTLSConfig {
            identity: None,
            cert_chain: config.ca_pem()?,
        };
        let connection = Connection::connect_uri_with_config(uri, props, tls)
            .await
            .map_err(|e| connect_err(&config.url, e))?;
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

    /// Whether `broker_queue` exists, and how many ready messages it holds (a passive
    /// declaration, on a channel of its own since a missing queue closes it): `None` when it
    /// does not exist. Never creates it.
    pub async fn inspect(&self, broker_queue: &str) -> Result<Option<u32>> {
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(|e| unavailable("cannot open a channel", e))?;
        let declared = channel
            .queue_declare(
                broker_queue,
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(q) => {
                let _ = channel.close(200, "inspected").await;
                Ok(Some(q.message_count()))
            }
            Err(lapin::Error::ProtocolError(e)) if e.get_id() == 404 => Ok(None),
            Err(e) => Err(unavailable(
                &format!("cannot inspect queue `{broker_queue}`"),
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

/// The current connection of a `RabbitQueue`, opened again by the next call after it is lost,
/// with backoff between failed attempts; and the numbers of its links and consumers.
pub(crate) struct Connector {
    uri: lapin::uri::AMQPUri,
    slot: tokio::sync::Mutex<Slot>,
    generations: Generations,
}

/// The current connection, or when the next attempt to open one may start.
#[derive(Default)]
struct Slot {
    link: Option<Arc<Link>>,
    failures: u32,
    next_attempt: Option<Instant>,
}

impl Connector {
    /// A connector for `uri`; connects on the first [`link`](Self::link).
    pub fn new(uri: lapin::uri::AMQPUri) -> Self {
        Self {
            uri,
            slot: tokio::sync::Mutex::new(Slot::default()),
            generations: Generations::default(),
        }
    }

    /// A number unique within this connector (for a consumer).
    pub fn next_id(&self) -> u64 {
        self.generations.next()
    }

    /// The live connection, opening one if there is none and the backoff allows.
    pub async fn link(&self, config: &RabbitConfig) -> Result<Arc<Link>> {
        let mut slot = self.slot.lock().await;
        if let Some(link) = &slot.link {
            if link.alive() {
                return Ok(link.clone());
            }
            tracing::warn!(
                generation = link.generation,
                "RabbitMQ connection lost; reconnecting"
            );
            slot.link = None;
        }
        if let Some(next) = slot.next_attempt {
            let now = Instant::now();
            if now < next {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "RabbitMQ is unreachable; next connection attempt in {:?}",
                        next - now
                    ),
                ));
            }
        }
        let generation = self.generations.next();
        let opened = tokio::time::timeout(
            config.connect_timeout,
            Link::open(config, self.uri.clone(), generation),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "RabbitMQ: no connection within {:?}",
                    config.connect_timeout
                ),
            ))
        });
        match opened {
            Ok(link) => {
                if slot.failures > 0 {
                    tracing::info!(generation, "RabbitMQ connection re-established");
                }
                slot.failures = 0;
                slot.next_attempt = None;
                let link = Arc::new(link);
                slot.link = Some(link.clone());
                Ok(link)
            }
            Err(e) => {
                slot.failures += 1;
                let backoff = Duration::from_millis(100)
                    .saturating_mul(1 << slot.failures.min(10))
                    .min(config.reconnect_backoff_max);
                slot.next_attempt = Some(Instant::now() + backoff);
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot connect to RabbitMQ");
                Err(e)
            }
        }
    }

    /// The live connection if there is one; never connects.
    pub async fn current(&self) -> Option<Arc<Link>> {
        let slot = self.slot.lock().await;
        slot.link.as_ref().filter(|l| l.alive()).cloned()
    }

    /// Closes the connection (unacked deliveries go back to their queues); the next
    /// [`link`](Self::link) connects again.
    pub async fn close(&self) {
        let link = self.slot.lock().await.link.take();
        if let Some(link) = link {
            link.close().await;
        }
    }
}
