//! [`SqsQueue`]: the [`Queue`] trait on SQS with batches of ten, long polling and visibility
//! timeouts as leases.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use switchyard_core::{
    bundle::{self, Bundle, Bundles, GiveBack},
    Delivery, Error, ErrorKind, JobId, Queue, QueueCapabilities, QueueMessage, Result,
};

use crate::config::{FifoGroup, SqsConfig};

/// Most entries in one SQS batch call, and most messages one receive returns.
pub const MAX_BATCH: usize = 10;
/// Longest per-message delay SQS holds a message for (`DelaySeconds`).
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Longest visibility timeout SQS allows from a message's receipt.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// Longest long poll (`WaitTimeSeconds`).
pub const MAX_WAIT: Duration = Duration::from_secs(20);

/// Batch-entry error codes that mean "this receipt no longer names an in-flight message": the
/// message was deleted, or its visibility ran out and it was (or will be) delivered again.
const STALE_RECEIPT_CODES: &[&str] = &[
    "ReceiptHandleIsInvalid",
    "InvalidReceiptHandle",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
    "InvalidParameterValue",
];

/// The message body: job ids and their Switchyard queue, never a payload. One job is written
/// `job_id`, a bundle `job_ids` (see `switchyard_core::bundle`).
#[derive(Debug, Serialize, Deserialize)]
struct Body {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    job_id: Option<JobId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    job_ids: Vec<JobId>,
    queue: String,
}

impl Body {
    fn new(ids: &[JobId], queue: &str) -> Self {
        match ids {
            [one] => Body {
                job_id: Some(*one),
                job_ids: Vec::new(),
                queue: queue.to_string(),
            },
            many => Body {
                job_id: None,
                job_ids: many.to_vec(),
                queue: queue.to_string(),
            },
        }
    }

    /// Every id the body names; empty for a body that names none.
    fn ids(self) -> Vec<JobId> {
        self.job_id.into_iter().chain(self.job_ids).collect()
    }
}

/// A Switchyard [`Queue`] on Amazon SQS (or an SQS-compatible emulator).
///
/// Cheap to clone; clones share the client and the queue-URL cache.
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    config: Arc<SqsConfig>,
    urls: Arc<RwLock<HashMap<String, String>>>,
    bundles: Arc<Bundles>,
}

impl std::fmt::Debug for SqsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsQueue")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Whole seconds, rounded up (never deliver early), capped at `max`.
fn ceil_secs(d: Duration, max: Duration) -> i32 {
    let d = d.min(max);
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

fn sdk_error<E, R>(what: &str, e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let message = format!("SQS {what} failed: {}", DisplayErrorContext(&e));
    let kind = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ErrorKind::Unavailable
        }
        SdkError::ServiceError(s) => match s.err().code().unwrap_or_default() {
            "QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue" => ErrorKind::NotFound,
            "AccessDenied"
            | "AccessDeniedException"
            | "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "SignatureDoesNotMatch"
            | "InvalidSecurity"
            | "MissingAuthenticationToken" => ErrorKind::Config,
            "QueueNameExists" | "QueueAlreadyExists" => ErrorKind::Conflict,
            code if code.contains("Throttl")
                || code.contains("Unavailable")
                || code.contains("InternalError")
                || code.contains("InternalFailure")
                || code == "QueueDeletedRecently"
                || code == "RequestThrottled" =>
            {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Internal,
        },
        _ => ErrorKind::Internal,
    };
    Error::new(kind, message).with_source(e)
}

fn is_stale_receipt(code: &str) -> bool {
    STALE_RECEIPT_CODES.contains(&code)
}

impl SqsQueue {
    /// Builds the SQS client: the region from the config or the environment, the endpoint
    /// override if any, rustls over ring for HTTPS. Credentials come from the AWS default chain
    /// (environment, profile, web identity, ECS, instance metadata) — except that with an
    /// endpoint override and no `AWS_ACCESS_KEY_ID` in the environment, static dummy
    /// credentials are used (emulators accept any). Makes no request.
    pub async fn connect(config: SqsConfig) -> Result<Self> {
        use aws_config::{BehaviorVersion, Region};
        use aws_smithy_http_client::tls;

        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        // A stalled connection must not hang a worker's fetch loop: every attempt ends after
        // the longest long poll plus a margin.
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(MAX_WAIT + Duration::from_secs(10))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.resolved_region()))
            .timeout_config(timeouts)
            .http_client(http);
        if let Some(endpoint) = &config.endpoint_url {
            loader = loader.endpoint_url(endpoint);
            let env_keys = std::env::var("AWS_ACCESS_KEY_ID").is_ok_and(|v| !v.is_empty());
            if !env_keys {
                loader = loader.credentials_provider(aws_sdk_sqs::config::Credentials::new(
                    "switchyard",
                    "switchyard",
                    None,
                    None,
                    "switchyard-emulator",
                ));
            }
        }
        let shared = loader.load().await;
        let client = Client::new(&shared);
        Ok(Self {
            client,
            config: Arc::new(config),
            urls: Arc::new(RwLock::new(HashMap::new())),
            bundles: Arc::new(Bundles::default()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SqsConfig {
        &self.config
    }

    /// The underlying SDK client, for operations Switchyard does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The SQS queue URL of a Switchyard queue, creating the SQS queue if it does not exist.
    pub async fn queue_url(&self, queue: &str) -> Result<String> {
        if let Some(url) = self.urls.read().expect("poisoned").get(queue) {
            return Ok(url.clone());
        }
        let name = self.config.queue_name(queue);
        let url = match self.client.get_queue_url().queue_name(&name).send().await {
            Ok(out) => out.queue_url.unwrap_or_default(),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist()) =>
            {
                self.create(&name).await?
            }
            Err(e) => return Err(sdk_error("GetQueueUrl", e)),
        };
        if url.is_empty() {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("SQS returned no URL for queue `{name}`"),
            ));
        }
        self.urls
            .write()
            .expect("poisoned")
            .insert(queue.to_string(), url.clone());
        Ok(url)
    }

    /// `e`, after forgetting the cached `url` when `e` says its queue does not exist (deleted
    /// since it was looked up): the next call looks the queue up again, creating it.
    fn forget_if_missing(&self, url: &str, e: Error) -> Error {
        if e.kind() == ErrorKind::NotFound {
            tracing::warn!(
                url,
                "SQS queue no longer exists; it is created again on the next call"
            );
            self.urls.write().expect("poisoned").retain(|_, u| u != url);
        }
        e
    }

    async fn create(&self, name: &str) -> Result<String> {
        let retention = self
            .config
            .retention
            .clamp(Duration::from_secs(60), Duration::from_secs(14 * 24 * 3600));
        let mut req = self.client.create_queue().queue_name(name).attributes(
            QueueAttributeName::MessageRetentionPeriod,
            retention.as_secs().to_string(),
        );
        if self.config.fifo {
            req = req
                .attributes(QueueAttributeName::FifoQueue, "true")
                .attributes(QueueAttributeName::ContentBasedDeduplication, "false");
        }
        tracing::info!(queue = name, "creating SQS queue");
        let out = req
            .send()
            .await
            .map_err(|e| sdk_error(&format!("CreateQueue `{name}`"), e))?;
        Ok(out.queue_url.unwrap_or_default())
    }

    /// Runs `f` over `items` grouped by Switchyard queue and cut into batches of ten, at most
    /// `config.concurrency` calls at once.
    async fn batched<T, F, Fut>(&self, items: Vec<(String, T)>, f: F) -> Result<()>
    where
        T: Send,
        F: Fn(String, Vec<T>) -> Fut + Send + Sync,
        Fut: std::future::Future<Output = Result<()>> + Send,
    {
        let mut by_queue: Vec<(String, Vec<T>)> = Vec::new();
        for (queue, item) in items {
            match by_queue.iter_mut().find(|(q, _)| *q == queue) {
                Some((_, v)) => v.push(item),
                None => by_queue.push((queue, vec![item])),
            }
        }
        let mut calls = Vec::new();
        for (queue, list) in by_queue {
            let url = self.queue_url(&queue).await?;
            let mut list = list.into_iter().peekable();
            while list.peek().is_some() {
                let chunk: Vec<T> = list.by_ref().take(MAX_BATCH).collect();
                calls.push(f(url.clone(), chunk));
            }
        }
        stream::iter(calls)
            .buffer_unordered(self.config.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn send_batch(&self, url: String, chunk: Vec<Bundle>) -> Result<()> {
        let mut req = self.client.send_message_batch().queue_url(&url);
        for (i, m) in chunk.iter().enumerate() {
            let body = serde_json::to_string(&Body::new(&m.job_ids, &m.queue))?;
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body);
            if self.config.fifo {
                // FIFO queues take no per-message delay (the capabilities say so); a fresh
                // deduplication id per publish, because a job published again (retry, rescue)
                // within five minutes must not be swallowed.
                let group = match self.config.fifo_group {
                    FifoGroup::Queue => m.queue.clone(),
                    // One id per message in this mode (`publish` packs by job).
                    FifoGroup::Job => m.job_ids[0].to_string(),
                };
                entry = entry
                    .message_group_id(group)
                    .message_deduplication_id(uuid::Uuid::new_v4().simple().to_string());
            } else if !m.delay.is_zero() {
                entry = entry.delay_seconds(ceil_secs(m.delay, MAX_DELAY));
            }
            req = req.entries(entry.build().map_err(|e| {
                Error::new(ErrorKind::Internal, "building an SQS batch entry").with_source(e)
            })?);
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.forget_if_missing(&url, sdk_error("SendMessageBatch", e)))?;
        if !out.failed().is_empty() {
            let codes: Vec<String> = out
                .failed()
                .iter()
                .map(|f| format!("{}: {}", f.code(), f.message().unwrap_or_default()))
                .collect();
            let server = out.failed().iter().any(|f| !f.sender_fault());
            let kind = if server {
                ErrorKind::Unavailable
            } else {
                ErrorKind::Internal
            };
            return Err(Error::new(
                kind,
                format!(
                    "SQS accepted {} of {} messages; rejected: {}",
                    out.successful().len(),
                    chunk.len(),
                    codes.join("; ")
                ),
            ));
        }
        Ok(())
    }

    async fn delete_batch(&self, url: String, receipts: Vec<String>) -> Result<()> {
        let mut req = self.client.delete_message_batch().queue_url(&url);
        for (i, r) in receipts.iter().enumerate() {
            req = req.entries(
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .build()
                    .map_err(|e| {
                        Error::new(ErrorKind::Internal, "building an SQS batch entry")
                            .with_source(e)
                    })?,
            );
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.forget_if_missing(&url, sdk_error("DeleteMessageBatch", e)))?;
        batch_failures("DeleteMessageBatch", out.failed())
    }

    async fn visibility_batch(&self, url: String, receipts: Vec<String>, secs: i32) -> Result<()> {
        let mut req = self
            .client
            .change_message_visibility_batch()
            .queue_url(&url);
        for (i, r) in receipts.iter().enumerate() {
            req = req.entries(
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .visibility_timeout(secs)
                    .build()
                    .map_err(|e| {
                        Error::new(ErrorKind::Internal, "building an SQS batch entry")
                            .with_source(e)
                    })?,
            );
        }
        let out = req.send().await.map_err(|e| {
            self.forget_if_missing(&url, sdk_error("ChangeMessageVisibilityBatch", e))
        })?;
        batch_failures("ChangeMessageVisibilityBatch", out.failed())
    }
}

impl SqsQueue {
    /// Deletes the broker messages whose every member these deliveries settle.
    async fn settle_and_delete(
        &self,
        deliveries: impl Iterator<Item = (String, String)>,
    ) -> Result<()> {
        let items: Vec<(String, String)> = deliveries
            .filter_map(|(queue, receipt)| Some((queue, self.bundles.settle(&receipt)?)))
            .collect();
        if items.is_empty() {
            return Ok(());
        }
        self.batched(items, |url, chunk| self.delete_batch(url, chunk))
            .await
    }

    /// Publishes the given-back ids again, then settles their deliveries. If the publish
    /// fails, the deliveries are held again for the next receive.
    async fn give_back(&self, back: GiveBack) -> Result<()> {
        if back.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.publish(&back.messages).await {
            self.bundles.hold(back.deliveries);
            return Err(e);
        }
        self.settle_and_delete(back.deliveries.into_iter().map(|d| (d.queue, d.receipt)))
            .await
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

/// Failed entries of a delete or visibility batch: stale receipts are fine (that message is
/// already back in the queue, or gone), anything else is an error.
fn batch_failures(what: &str, failed: &[aws_sdk_sqs::types::BatchResultErrorEntry]) -> Result<()> {
    let mut errors = Vec::new();
    for f in failed {
        if is_stale_receipt(f.code()) {
            tracing::debug!(code = f.code(), "{what}: receipt no longer valid; ignored");
        } else {
            errors.push(format!("{}: {}", f.code(), f.message().unwrap_or_default()));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "SQS {what}: {} entries failed: {}",
                errors.len(),
                errors.join("; ")
            ),
        ))
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
            .with_max_native_delay((!self.config.fifo).then_some(MAX_DELAY))
            .with_max_lease(Some(MAX_VISIBILITY))
            .with_priorities(false)
    }

    async fn setup(&self, queues: &[String]) -> Result<()> {
        for q in queues {
            self.queue_url(q).await?;
        }
        Ok(())
    }

    /// Packs ids into bundles (per queue and delay second; per job for FIFO grouped by job)
    /// and sends them in batches of ten.
    async fn publish(&self, messages: &[QueueMessage]) -> Result<()> {
        let fifo = self.config.fifo;
        let by_job = fifo && self.config.fifo_group == FifoGroup::Job;
        let bundles = bundle::pack(messages, self.config.ids_per_message, |m| {
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
        self.batched(items, |url, chunk| self.send_batch(url, chunk))
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
        let url = match self.queue_url(queue).await {
            Ok(url) => url,
            Err(_) if held > 0 => return Ok(self.bundles.take_held(queue, max)),
            Err(e) => return Err(e),
        };
        let received = self
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
                let e = self.forget_if_missing(&url, sdk_error("ReceiveMessage", e));
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
                if let Err(e) = this.delete_batch(url, foreign).await {
                    tracing::warn!(error = %e, "deleting foreign messages failed");
                }
            });
        }
        let mut out = self.bundles.take_held(queue, max);
        let room = max - out.len();
        if fresh.len() > room {
            self.bundles.hold(fresh.split_off(room));
        }
        out.extend(fresh);
        Ok(out)
    }

    /// Deletes each message once every job it names is acked.
    async fn ack(&self, deliveries: &[Delivery]) -> Result<()> {
        self.settle_and_delete(
            deliveries
                .iter()
                .map(|d| (d.queue.clone(), d.receipt.clone())),
        )
        .await
    }

    async fn release(&self) -> Result<()> {
        self.give_back(self.bundles.take_all_held()).await
    }

    async fn destroy(&self) -> Result<()> {
        let urls: Vec<(String, String)> = self
            .urls
            .read()
            .expect("poisoned")
            .iter()
            .map(|(q, url)| (q.clone(), url.clone()))
            .collect();
        for (queue, url) in urls {
            match self.client.delete_queue().queue_url(&url).send().await {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_queue_does_not_exist()) => {}
                Err(e) => return Err(sdk_error("DeleteQueue", e)),
            }
            // Forgotten only once deleted, so a failed call can be repeated.
            self.urls.write().expect("poisoned").remove(&queue);
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
            if !self.config.fifo || delay.is_zero() {
                let back = self.bundles.give_back_one(delivery.clone(), delay);
                return self.give_back(back).await;
            }
            let back = self.bundles.give_back_one(delivery.clone(), Duration::ZERO);
            self.give_back_later(back, delay.min(Duration::from_secs(60)));
            return Ok(());
        }
        let url = self.queue_url(&delivery.queue).await?;
        let res = self
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
            Err(e) => Err(self.forget_if_missing(&url, sdk_error("ChangeMessageVisibility", e))),
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
        self.batched(items, |url, chunk| self.visibility_batch(url, chunk, secs))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up_and_cap() {
        assert_eq!(ceil_secs(Duration::ZERO, MAX_WAIT), 0);
        assert_eq!(ceil_secs(Duration::from_millis(100), MAX_WAIT), 1);
        assert_eq!(ceil_secs(Duration::from_millis(2000), MAX_WAIT), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001), MAX_WAIT), 3);
        assert_eq!(ceil_secs(Duration::from_secs(60), MAX_WAIT), 20);
        assert_eq!(
            ceil_secs(Duration::from_secs(86_400), MAX_VISIBILITY),
            43_200
        );
        assert_eq!(ceil_secs(Duration::from_secs(3_600), MAX_DELAY), 900);
    }

    #[test]
    fn public_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<SqsQueue>();
        check::<SqsConfig>();
    }
}
