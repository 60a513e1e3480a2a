//! [`SqsQueue`]: the [`Queue`] trait on SQS with batches of ten, long polling and visibility
//! timeouts as leases.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::Client;
use switchyard_core::{
    adapter::bundle::{self, Bundles, GiveBack},
    Delivery, HealthCheck, Queue, QueueCapabilities, QueueMessage, Result,
};

use crate::body::Body;
use crate::config::{FifoGroup, SqsConfig};
use crate::connection::Connection;
use crate::error::{is_stale_receipt, sdk_error};
use crate::limits::{ceil_secs, MAX_BATCH, MAX_DELAY, MAX_VISIBILITY, MAX_WAIT};

/// A Switchyard [`Queue`] on Amazon SQS (or an SQS-compatible emulator).
///
/// Cheap to clone; clones share the client and the queue-URL cache.
#[derive(Clone)]
pub struct SqsQueue {
    conn: Arc<Connection>,
    bundles: Arc<Bundles>,
}

impl std::fmt::Debug for SqsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsQueue")
            .field("config", &self.conn.config)
            .finish_non_exhaustive()
    }
}

impl SqsQueue {
    /// Checks the config (the instance prefix follows
    /// [`PREFIX_RULE`](switchyard_core::adapter::PREFIX_RULE), else a `Config` error) and
    /// builds the SQS client: the region from the config or the environment, the endpoint
    /// override if any, rustls over ring for HTTPS. Credentials come from the AWS default chain
    /// (environment, profile, web identity, ECS, instance metadata) — except that with an
    /// endpoint override and no `AWS_ACCESS_KEY_ID` in the environment, static dummy
    /// credentials are used (emulators accept any). Makes no request.
    pub async fn connect(config: SqsConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            conn: Arc::new(Connection::open(config).await?),
            bundles: Arc::new(Bundles::default()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SqsConfig {
        &self.conn.config
    }

    /// The underlying SDK client, for operations Switchyard does not wrap.
    pub fn client(&self) -> &Client {
        &self.conn.client
    }

    /// The SQS queue URL of a Switchyard queue, creating the SQS queue if it does not exist.
    pub async fn queue_url(&self, queue: &str) -> Result<String> {
        self.conn.queue_url(queue).await
    }

    /// Deletes the broker messages whose every member these deliveries settle.
    async fn settle_and_delete(&self, deliveries: &[Delivery]) -> Result<()> {
        let items: Vec<(String, String)> = deliveries
            .iter()
            .filter_map(|d| Some((d.queue.clone(), self.bundles.settle(&d.receipt)?)))
            .collect();
        if items.is_empty() {
            return Ok(());
        }
        self.conn
            .batched(items, |url, chunk| self.conn.delete_batch(url, chunk))
            .await
    }

    /// Sends the given-back ids again, then deletes what their deliveries settle (see
    /// [`Bundles::give_back`]).
    async fn give_back(&self, back: GiveBack) -> Result<()> {
        let publish = |m: Vec<QueueMessage>| async move { self.publish(&m).await };
        let delete = |d: Vec<Delivery>| async move { self.settle_and_delete(&d).await };
        self.bundles.give_back(back, publish, delete).await
    }

    /// Gives back in the background (a caller's cancelled future must not drop it).
    fn give_back_later(&self, back: GiveBack, after: Duration) {
        if back.is_empty() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Err(e) = this.give_back(back).await {
                tracing::warn!(error = %e, "publishing bundle members again failed; they are held for the next receive");
            }
        });
    }
}

#[async_trait]
impl Queue for SqsQueue {
    fn name(&self) -> &'static str {
        "sqs"
    }

    /// Standard queues: native delay up to 15 minutes, leases up to 12 hours, batches of ten, no
    /// priorities. FIFO queues take no per-message delay, so every delayed job waits in Storage.
    fn capabilities(&self) -> QueueCapabilities {
        QueueCapabilities::new(MAX_BATCH)
            .with_max_native_delay((!self.conn.config.fifo).then_some(MAX_DELAY))
            .with_max_lease(Some(MAX_VISIBILITY))
            .with_priorities(false)
    }

    async fn setup(&self, queues: &[String]) -> Result<()> {
        for q in queues {
            self.conn.queue_url(q).await?;
        }
        Ok(())
    }

    /// Packs ids into bundles (per queue and delay second; per job for FIFO grouped by job)
    /// and sends them in batches of ten.
    async fn publish(&self, messages: &[QueueMessage]) -> Result<()> {
        let fifo = self.conn.config.fifo;
        let by_job = fifo && self.conn.config.fifo_group == FifoGroup::Job;
        let bundles = bundle::pack(messages, self.conn.config.ids_per_message, |m| {
            (
                m.queue.clone(),
                by_job.then_some(m.job_id),
                if fifo {
                    0
                } else {
                    ceil_secs(m.delay, MAX_DELAY)
                },
            )
        });
        let items = bundles.into_iter().map(|b| (b.queue.clone(), b)).collect();
        self.conn
            .batched(items, |url, chunk| self.conn.send_batch(url, chunk))
            .await
    }

    /// Hands out ids left over from earlier bundles first (those held longer than half the
    /// visibility timeout are published again instead: their message may be visible again by
    /// then), then receives messages for the rest and keeps what does not fit in `max`. Held
    /// ids are taken only after the last `.await`, so a cancelled receive drops none.
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
        lease: Duration,
    ) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let visible = lease.min(MAX_VISIBILITY);
        self.give_back_later(self.bundles.take_aged(queue, visible / 2), Duration::ZERO);
        let held = self.bundles.held(queue);
        if held >= max {
            return Ok(self.bundles.take_held(queue, max));
        }
        let url = match self.conn.queue_url(queue).await {
            Ok(url) => url,
            Err(_) if held > 0 => return Ok(self.bundles.take_held(queue, max)),
            Err(e) => return Err(e),
        };
        let received = self
            .conn
            .client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages((max - held).min(MAX_BATCH) as i32)
            .wait_time_seconds(if held == 0 {
                ceil_secs(wait, MAX_WAIT)
            } else {
                0
            })
            .visibility_timeout(ceil_secs(lease, MAX_VISIBILITY))
            .send()
            .await;
        let received = match received {
            Ok(r) => r,
            Err(e) => {
                let e = self
                    .conn
                    .forget_if_missing(&url, sdk_error("ReceiveMessage", e));
                if held > 0 {
                    tracing::debug!(error = %e, "ReceiveMessage failed; handing out held deliveries");
                    return Ok(self.bundles.take_held(queue, max));
                }
                return Err(e);
            }
        };
        let mut fresh = Vec::new();
        let mut foreign = Vec::new();
        for m in received.messages.unwrap_or_default() {
            let Some(receipt) = m.receipt_handle else {
                continue;
            };
            let ids = m
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<Body>(b).ok())
                .map(Body::ids)
                .unwrap_or_default();
            if ids.is_empty() {
                tracing::warn!(
                    queue,
                    message_id = m.message_id.as_deref().unwrap_or_default(),
                    "deleting a message that is not a Switchyard job id"
                );
                foreign.push(receipt);
            } else {
                fresh.extend(self.bundles.open(queue, receipt, ids, 0));
            }
        }
        if !foreign.is_empty() {
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.conn.delete_batch(url, foreign).await {
                    tracing::warn!(error = %e, "deleting foreign messages failed");
                }
            });
        }
        Ok(self.bundles.hand_out(queue, max, fresh))
    }

    /// Deletes each message once every job it names is acked.
    async fn ack(&self, deliveries: &[Delivery]) -> Result<()> {
        self.settle_and_delete(deliveries).await
    }

    async fn release(&self) -> Result<()> {
        self.give_back(self.bundles.take_all_held()).await
    }

    async fn destroy_queues(&self, queues: &[String]) -> Result<()> {
        for q in queues {
            let (_, Some(url)) = self.conn.existing_url(q).await? else {
                continue;
            };
            match self.conn.client.delete_queue().queue_url(&url).send().await {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_queue_does_not_exist()) => {}
                Err(e) => return Err(sdk_error("DeleteQueue", e)),
            }
            self.conn.forget(q);
        }
        Ok(())
    }

    /// Per queue: whether its SQS queue exists (`GetQueueUrl`, which creates nothing) and
    /// its approximate number of visible and in-flight messages.
    async fn health_checks(&self, queues: &[String]) -> Vec<HealthCheck> {
        use aws_sdk_sqs::types::QueueAttributeName;
        let mut checks = Vec::new();
        for q in queues {
            let check = format!("broker queue {q}");
            let (name, url) = match self.conn.existing_url(q).await {
                Ok(found) => found,
                Err(e) => {
                    checks.push(HealthCheck::fail(check, e.to_string()));
                    continue;
                }
            };
            let Some(url) = url else {
                checks.push(HealthCheck::warn(
                    check,
                    format!(
                        "`{name}` does not exist; `switchyard migrate` creates it (and so does \
                         the first publish)"
                    ),
                ));
                continue;
            };
            let attrs = self
                .conn
                .client
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await;
            checks.push(match attrs {
                Ok(out) => {
                    let get = |a: QueueAttributeName| {
                        out.attributes()
                            .and_then(|m| m.get(&a))
                            .cloned()
                            .unwrap_or_else(|| "?".into())
                    };
                    HealthCheck::ok(
                        check,
                        format!(
                            "`{name}` exists, about {} visible and {} in-flight messages",
                            get(QueueAttributeName::ApproximateNumberOfMessages),
                            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                        ),
                    )
                }
                Err(e) => HealthCheck::fail(check, sdk_error("GetQueueAttributes", e).to_string()),
            });
        }
        checks
    }

    async fn destroy(&self) -> Result<()> {
        for (queue, url) in self.conn.cached_urls() {
            match self.conn.client.delete_queue().queue_url(&url).send().await {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_queue_does_not_exist()) => {}
                Err(e) => return Err(sdk_error("DeleteQueue", e)),
            }
            // Forgotten only once deleted, so a failed call can be repeated.
            self.conn.forget(&queue);
        }
        Ok(())
    }

    /// A message naming one job becomes visible again after `delay`. A bundle member is
    /// published again as a message of its own (with `DelaySeconds`, at most 15 minutes: a job
    /// due later is nacked again when it arrives; on a FIFO queue, which has no delay, after
    /// waiting up to a minute in this process) and then settled.
    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<()> {
        if bundle::split_receipt(&delivery.receipt).1.is_some() {
            if !self.bundles.is_member(&delivery.receipt) {
                return Ok(()); // its bundle was settled already
            }
            if !self.conn.config.fifo || delay.is_zero() {
                let back = self.bundles.give_back_one(delivery.clone(), delay);
                return self.give_back(back).await;
            }
            let back = self.bundles.give_back_one(delivery.clone(), Duration::ZERO);
            self.give_back_later(back, delay.min(Duration::from_secs(60)));
            return Ok(());
        }
        let url = self.conn.queue_url(&delivery.queue).await?;
        let res = self
            .conn
            .client
            .change_message_visibility()
            .queue_url(&url)
            .receipt_handle(&delivery.receipt)
            .visibility_timeout(ceil_secs(delay, MAX_VISIBILITY))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.code().is_some_and(is_stale_receipt) => Ok(()),
            Err(e) => Err(self
                .conn
                .forget_if_missing(&url, sdk_error("ChangeMessageVisibility", e))),
        }
    }

    async fn extend(&self, deliveries: &[Delivery], lease: Duration) -> Result<()> {
        let secs = ceil_secs(lease, MAX_VISIBILITY);
        // One entry per broker message, however many of its jobs run.
        let mut seen = std::collections::HashSet::new();
        let items = deliveries
            .iter()
            .map(|d| {
                (
                    d.queue.clone(),
                    bundle::split_receipt(&d.receipt).0.to_string(),
                )
            })
            .filter(|item| seen.insert(item.clone()))
            .collect();
        self.conn
            .batched(items, |url, chunk| {
                self.conn.visibility_batch(url, chunk, secs)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<SqsQueue>();
        check::<SqsConfig>();
    }
}
