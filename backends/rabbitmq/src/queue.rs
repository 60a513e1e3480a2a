//! [`RabbitQueue`]: the [`Queue`] trait on RabbitMQ.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use lapin::options::BasicAckOptions;
use switchyard_core::{
    adapter::bundle::{self, Bundles, GiveBack, UsedQueues},
    async_trait, Delivery, Error, ErrorKind, HealthCheck, Queue, QueueCapabilities, QueueMessage,
    Result,
};

use crate::config::RabbitConfig;
use crate::connection::{Connector, Link};
use crate::consumer::{ack_all, requeue, QueueConsumer};
use crate::error::unavailable;
use crate::wire::{amqp_priority, job_priority, parse_receipt, receipt};

/// Most messages one publish, receive or ack handles.
const MAX_BATCH: usize = 1000;

/// Switchyard's [`Queue`] on RabbitMQ: durable queues, publisher confirms, manual acks.
///
/// Cheap to share behind an `Arc`; one AMQP connection per `RabbitQueue`, opened again by the
/// next call after it is lost (with backoff), with every consumer re-created on it.
#[derive(Clone)]
pub struct RabbitQueue {
    inner: Arc<Inner>,
}

struct Inner {
    config: RabbitConfig,
    connector: Connector,
    /// Prefetch per Switchyard queue once derived (the first `receive`'s `max`).
    prefetch: Mutex<HashMap<String, u16>>,
    /// Switchyard queues whose broker queue this handle declared (for `destroy`).
    used: UsedQueues,
    /// Received bundles not yet fully settled, and ids waiting for the next receive.
    bundles: Bundles,
}

impl std::fmt::Debug for RabbitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitQueue")
            .field("prefix", &self.inner.config.prefix)
            .field("connection_name", &self.inner.config.connection_name())
            .finish_non_exhaustive()
    }
}

impl RabbitQueue {
    /// Checks the config and connects (fails with `Unavailable` when the broker is down, with
    /// `Config` when the URL or prefix is wrong).
    pub async fn connect(config: RabbitConfig) -> Result<Self> {
        let uri = config.validate()?;
        let queue = Self {
            inner: Arc::new(Inner {
                config,
                connector: Connector::new(uri),
                prefetch: Mutex::new(HashMap::new()),
                used: UsedQueues::default(),
                bundles: Bundles::default(),
            }),
        };
        queue.link().await?;
        Ok(queue)
    }

    /// The settings.
    pub fn config(&self) -> &RabbitConfig {
        &self.inner.config
    }

    /// Closes the connection; deliveries not acked go back to their queues. A later call
    /// connects again.
    pub async fn close(&self) {
        self.inner.connector.close().await;
    }

    /// The broker queue of a Switchyard queue, remembered for [`Queue::destroy`].
    fn broker_queue(&self, queue: &str) -> Result<String> {
        let name = self.inner.config.broker_queue(queue)?;
        self.inner.used.note(queue);
        Ok(name)
    }

    /// Deletes the broker queues of these Switchyard queues, with their messages. For tests
    /// and tear-down.
    pub async fn delete_queues(&self, queues: &[String]) -> Result<()> {
        let link = self.link().await?;
        for q in queues {
            let name = self.inner.config.broker_queue(q)?;
            link.consumers.lock().await.remove(q);
            link.forget(&name);
            link.publisher
                .queue_delete(&name, lapin::options::QueueDeleteOptions::default())
                .await
                .map_err(|e| unavailable(&format!("cannot delete queue `{name}`"), e))?;
        }
        Ok(())
    }

    /// The live connection, opening one if there is none and the backoff allows.
    async fn link(&self) -> Result<Arc<Link>> {
        self.inner.connector.link(&self.inner.config).await
    }

    /// The live connection if there is one; never connects.
    async fn current(&self) -> Option<Arc<Link>> {
        self.inner.connector.current().await
    }

    /// The consumer of `queue` on `link`, started if missing or if its channel died.
    async fn consumer(&self, link: &Link, queue: &str, max: usize) -> Result<Arc<QueueConsumer>> {
        let mut consumers = link.consumers.lock().await;
        if let Some(c) = consumers.get(queue) {
            if c.alive() {
                return Ok(c.clone());
            }
            if c.cancelled.load(std::sync::atomic::Ordering::SeqCst) {
                // Its queue is gone: declare it again before consuming, and drop the channel.
                link.forget(&c.broker_queue);
                let _ = c.channel.close(200, "consumer cancelled").await;
            } else {
                tracing::warn!(
                    queue,
                    consumer = c.id,
                    "RabbitMQ consumer channel closed; consuming again"
                );
            }
            consumers.remove(queue);
        }
        let prefetch = match self.inner.config.prefetch {
            Some(p) => p,
            None => *self
                .inner
                .prefetch
                .lock()
                .expect("poisoned")
                .entry(queue.to_string())
                // The worker holds deliveries until their jobs' completions are recorded,
                // and keeps a buffer of claimed jobs beside the running ones: allow a few
                // receive batches in flight.
                .or_insert_with(|| u16::try_from(max.max(1) * 4).unwrap_or(u16::MAX)),
        };
        let name = self.broker_queue(queue)?;
        let id = self.inner.connector.next_id();
        let consumer = Arc::new(
            link.consume(&self.inner.config, &name, prefetch, id)
                .await?,
        );
        consumers.insert(queue.to_string(), consumer.clone());
        Ok(consumer)
    }

    /// The consumer that delivered `d`, if it is still the live one; `None` otherwise (its
    /// channel is gone, so the broker has put the message back already).
    /// `receipt` is a broker receipt (a bundle member's without its member number).
    async fn owner(&self, queue: &str, receipt: &str) -> Result<Option<(Arc<QueueConsumer>, u64)>> {
        let (id, tag) = parse_receipt(receipt)?;
        let Some(link) = self.current().await else {
            return Ok(None);
        };
        let consumers = link.consumers.lock().await;
        Ok(consumers
            .get(queue)
            .filter(|c| c.id == id && c.alive())
            .map(|c| (c.clone(), tag)))
    }
}

impl RabbitQueue {
    /// Acks the broker messages whose every member these deliveries settle. A receipt from a
    /// closed channel is skipped: the broker has put that message back already.
    async fn settle_and_ack(&self, deliveries: &[Delivery]) -> Result<()> {
        let mut acks = Vec::new();
        let mut bad = None;
        for d in deliveries {
            let Some(broker) = self.inner.bundles.settle(&d.receipt) else {
                continue;
            };
            // A malformed receipt is reported, after the good ones are acked.
            let (consumer, tag) = match self.owner(&d.queue, &broker).await {
                Ok(Some(owner)) => owner,
                Ok(None) => continue,
                Err(e) => {
                    bad.get_or_insert(e);
                    continue;
                }
            };
            if consumer.take(tag) {
                acks.push((consumer, tag));
            }
        }
        ack_all(acks, "ack").await;
        bad.map_or(Ok(()), Err)
    }

    /// Publishes the given-back ids again with confirms, then acks what their deliveries
    /// settle (see [`Bundles::give_back`]).
    async fn give_back(&self, back: GiveBack) -> Result<()> {
        let publish = |m: Vec<QueueMessage>| async move { self.publish(&m).await };
        let ack = |d: Vec<Delivery>| async move { self.settle_and_ack(&d).await };
        self.inner.bundles.give_back(back, publish, ack).await
    }
}

#[async_trait]
impl Queue for RabbitQueue {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    fn capabilities(&self) -> QueueCapabilities {
        QueueCapabilities::new(MAX_BATCH)
            .with_max_native_delay(None)
            .with_max_lease(None)
            .with_priorities(self.inner.config.max_priority > 0)
    }

    async fn setup(&self, queues: &[String]) -> Result<()> {
        let link = self.link().await?;
        for q in queues {
            let name = self.broker_queue(q)?;
            link.declare(&self.inner.config, &name).await?;
        }
        Ok(())
    }

    async fn publish(&self, messages: &[QueueMessage]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let link = self.link().await?;
        let config = &self.inner.config;
        let mut names = HashMap::new();
        for m in messages {
            if !names.contains_key(&m.queue) {
                let name = self.broker_queue(&m.queue)?;
                link.declare(config, &name).await?;
                names.insert(m.queue.clone(), name);
            }
        }
        // Several ids per message for a large publish (per queue and broker priority).
        let max = config.max_priority;
        let bundles = bundle::pack(messages, config.ids_per_message, |m| {
            (m.queue.clone(), amqp_priority(m.priority, max))
        });
        link.publish_confirmed(config, &names, &bundles).await
    }

    /// Hands out ids left over from earlier bundles first, then takes messages from the
    /// consumer until `max` ids are reached; the ids of the last message that do not fit wait
    /// for the next receive. Held ids are taken only after the last `.await`, so a cancelled
    /// receive drops none, and a receive that has some never waits behind another's poll.
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
        _lease: Duration,
    ) -> Result<Vec<Delivery>> {
        let max = max.clamp(1, MAX_BATCH);
        let bundles = &self.inner.bundles;
        let held = bundles.held(queue);
        if held >= max {
            return Ok(bundles.take_held(queue, max));
        }
        let consumer = match self.link().await {
            Ok(link) => self.consumer(&link, queue, max).await,
            Err(e) => Err(e),
        };
        let consumer = match consumer {
            Ok(c) => c,
            Err(_) if held > 0 => return Ok(bundles.take_held(queue, max)),
            Err(e) => return Err(e),
        };
        let mut stream = if held == 0 {
            consumer.stream.lock().await
        } else {
            match consumer.stream.try_lock() {
                Ok(stream) => stream,
                Err(_) => return Ok(bundles.take_held(queue, max)),
            }
        };
        let mut raw = Vec::new();
        if held == 0 {
            match tokio::time::timeout(wait, stream.next()).await {
                Err(_) => return Ok(Vec::new()),
                Ok(Some(Ok(d))) => raw.push(d),
                Ok(Some(Err(e))) => return Err(unavailable("consumer failed", e)),
                Ok(None) => {
                    consumer.cancel();
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        format!("RabbitMQ cancelled the consumer of queue `{queue}`"),
                    ));
                }
            }
        }
        // Ids in hand so far, roughly (a bundle counts as its comma count plus one).
        let ids_in =
            |d: &lapin::message::Delivery| d.data.iter().filter(|b| **b == b',').count() + 1;
        let mut ids = held + raw.iter().map(ids_in).sum::<usize>();
        while ids < max {
            match stream.next().now_or_never() {
                Some(Some(Ok(d))) => {
                    ids += ids_in(&d);
                    raw.push(d);
                }
                Some(None) => {
                    consumer.cancel();
                    break;
                }
                _ => break,
            }
        }
        drop(stream);
        let now = Instant::now();
        let mut fresh = Vec::with_capacity(ids);
        let mut poison = Vec::new();
        for d in raw {
            let parsed = std::str::from_utf8(&d.data)
                .ok()
                .and_then(bundle::decode_ids);
            match parsed {
                Some(job_ids) => {
                    consumer
                        .unsettled
                        .lock()
                        .expect("poisoned")
                        .insert(d.delivery_tag, now);
                    let priority = job_priority(d.properties.priority().unwrap_or(1));
                    fresh.extend(bundles.open(
                        queue,
                        receipt(consumer.id, d.delivery_tag),
                        job_ids,
                        priority,
                    ));
                }
                None => poison.push(d.delivery_tag),
            }
        }
        if !poison.is_empty() {
            let consumer = consumer.clone();
            let queue = queue.to_string();
            tokio::spawn(async move {
                for tag in poison {
                    tracing::warn!(queue, tag, "dropping a message that does not hold job ids");
                    let _ = consumer
                        .channel
                        .basic_ack(tag, BasicAckOptions::default())
                        .await;
                }
            });
        }
        Ok(bundles.hand_out(queue, max, fresh))
    }

    /// Acks each message once every job it names is acked.
    async fn ack(&self, deliveries: &[Delivery]) -> Result<()> {
        self.settle_and_ack(deliveries).await
    }

    async fn release(&self) -> Result<()> {
        self.give_back(self.inner.bundles.take_all_held()).await
    }

    async fn destroy_queues(&self, queues: &[String]) -> Result<()> {
        self.delete_queues(queues).await
    }

    /// Per queue: whether its broker queue exists (a passive declaration, which creates
    /// nothing) and how many ready messages it holds.
    async fn health_checks(&self, queues: &[String]) -> Vec<HealthCheck> {
        let link = match self.link().await {
            Ok(link) => link,
            Err(e) => return vec![HealthCheck::fail("rabbitmq", e.to_string())],
        };
        let mut checks = Vec::new();
        for q in queues {
            let check = format!("broker queue {q}");
            let name = match self.inner.config.broker_queue(q) {
                Ok(name) => name,
                Err(e) => {
                    checks.push(HealthCheck::fail(check, e.to_string()));
                    continue;
                }
            };
            checks.push(match link.inspect(&name).await {
                Ok(Some(n)) => {
                    HealthCheck::ok(check, format!("`{name}` exists, {n} ready messages"))
                }
                Ok(None) => HealthCheck::warn(
                    check,
                    format!(
                        "`{name}` does not exist; `switchyard migrate` creates it (and so does \
                         the first publish)"
                    ),
                ),
                Err(e) => HealthCheck::fail(check, e.to_string()),
            });
        }
        checks
    }

    async fn destroy(&self) -> Result<()> {
        self.inner
            .used
            .destroy(|used| async move { self.delete_queues(&used).await })
            .await
    }

    /// A message naming one job is given back after `delay` (held unacked for at most
    /// `nack_hold_max` meanwhile). A bundle member is published again as a message of its own
    /// after the same hold, and then settled.
    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<()> {
        let hold = delay.min(self.inner.config.nack_hold_max);
        if bundle::split_receipt(&delivery.receipt).1.is_some() {
            if !self.inner.bundles.is_member(&delivery.receipt) {
                return Ok(()); // its bundle was settled already
            }
            let back = self
                .inner
                .bundles
                .give_back_one(delivery.clone(), Duration::ZERO);
            if hold.is_zero() {
                return self.give_back(back).await;
            }
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(hold).await;
                if let Err(e) = this.give_back(back).await {
                    tracing::warn!(error = %e, "giving a bundle member back failed; it is held for the next receive");
                }
            });
            return Ok(());
        }
        let Some((consumer, tag)) = self.owner(&delivery.queue, &delivery.receipt).await? else {
            return Ok(());
        };
        if hold.is_zero() {
            requeue(consumer, tag).await;
        } else {
            // RabbitMQ has no per-message delay: hold the message (unacked, so it is never
            // lost) for a while, then give it back; the worker nacks it again until it is due.
            tokio::spawn(async move {
                tokio::time::sleep(hold).await;
                requeue(consumer, tag).await;
            });
        }
        Ok(())
    }

    async fn extend(&self, deliveries: &[Delivery], _lease: Duration) -> Result<()> {
        // No visibility timeout: a delivery is held until acked or its channel closes. But the
        // broker closes a channel holding a delivery past its `consumer_timeout`, so a long job's
        // delivery is acked early; its lease in Storage protects the job from then on. The
        // other jobs of a bundle acked early are published again first.
        let settle_after = self.inner.config.settle_after;
        let mut acks = Vec::new();
        for d in deliveries {
            let (broker, member) = bundle::split_receipt(&d.receipt);
            let Some((consumer, tag)) = self.owner(&d.queue, broker).await? else {
                continue;
            };
            let old = consumer
                .unsettled
                .lock()
                .expect("poisoned")
                .get(&tag)
                .is_some_and(|t| t.elapsed() >= settle_after);
            if !old {
                continue;
            }
            if member.is_some() {
                // Publish the bundle's other open ids first, then forget the bundle: a failed
                // publish leaves it open, to be tried again at the next heartbeat.
                let bundles = &self.inner.bundles;
                let Some(again) = bundles.unsettled(&d.receipt, &d.queue, d.job_id) else {
                    continue;
                };
                if let Err(e) = self.publish(&again).await {
                    tracing::warn!(error = %e, "cannot publish a long job's bundle mates again; trying at the next heartbeat");
                    continue;
                }
                if bundles.close(&d.receipt).is_none() {
                    continue;
                }
            }
            if consumer.take(tag) {
                tracing::info!(job = %d.job_id, "long job: acking its delivery early to stay within the broker's consumer_timeout; its Storage lease keeps it");
                acks.push((consumer, tag));
            }
        }
        ack_all(acks, "early ack").await;
        Ok(())
    }
}
