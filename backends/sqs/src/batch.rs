//! The batch calls: items grouped by queue and cut into batches of ten, sent a few at a time
//! (`SendMessageBatch`, `DeleteMessageBatch`, `ChangeMessageVisibilityBatch`).

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    SendMessageBatchRequestEntry,
};
use futures::stream::{self, StreamExt, TryStreamExt};
use switchyard_core::{adapter::bundle::Bundle, Error, ErrorKind, Result};

use crate::body::Body;
use crate::config::FifoGroup;
use crate::connection::Connection;
use crate::error::{batch_failures, entry_error, sdk_error};
use crate::limits::{ceil_secs, MAX_BATCH, MAX_DELAY};

impl Connection {
    /// Runs `f` over `items` grouped by Switchyard queue and cut into batches of ten, at most
    /// `config.concurrency` calls at once.
    pub(crate) async fn batched<T, F, Fut>(&self, items: Vec<(String, T)>, f: F) -> Result<()>
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

    /// Sends one batch of bundles to the queue at `url`.
    pub(crate) async fn send_batch(&self, url: String, chunk: Vec<Bundle>) -> Result<()> {
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
            req = req.entries(entry.build().map_err(entry_error)?);
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

    /// Deletes one batch of messages of the queue at `url` by receipt.
    pub(crate) async fn delete_batch(&self, url: String, receipts: Vec<String>) -> Result<()> {
        let mut req = self.client.delete_message_batch().queue_url(&url);
        for (i, r) in receipts.iter().enumerate() {
            req = req.entries(
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .build()
                    .map_err(entry_error)?,
            );
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.forget_if_missing(&url, sdk_error("DeleteMessageBatch", e)))?;
        batch_failures("DeleteMessageBatch", out.failed())
    }

    /// Sets the visibility timeout of one batch of messages of the queue at `url` to `secs`.
    pub(crate) async fn visibility_batch(
        &self,
        url: String,
        receipts: Vec<String>,
        secs: i32,
    ) -> Result<()> {
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
                    .map_err(entry_error)?,
            );
        }
        let out = req.send().await.map_err(|e| {
            self.forget_if_missing(&url, sdk_error("ChangeMessageVisibilityBatch", e))
        })?;
        batch_failures("ChangeMessageVisibilityBatch", out.failed())
    }
}
