//! The external-queue path of a fetcher: receiving deliveries, claiming the jobs they name in
//! storage (`Storage::claim_ids`), and settling the deliveries whose job cannot be claimed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use switchyard_core::{Delivery, JobId, JobRecord, Queue};

use super::state::Inner;

/// External queue path: receive deliveries, claim their jobs in storage, settle the rest.
pub(super) async fn receive_and_claim(
    inner: &Arc<Inner>,
    queue: &Arc<dyn Queue>,
    name: &str,
    want: usize,
) -> switchyard_core::Result<Vec<(JobRecord, Option<Delivery>)>> {
    // One queue: a long poll (interrupted by shutdown), at most a lease long so that a silent
    // queue is noticed (below). Several: take turns at the poll pace.
    let wait = if inner.config.queues.len() == 1 {
        Duration::from_secs(20).min(inner.config.lease.max(Duration::from_secs(1)))
    } else {
        inner.config.poll_interval.min(Duration::from_secs(20))
    };
    let per_call = inner.receive_batch();
    let lease = inner.config.lease;
    let mut deliveries = tokio::select! {
        d = queue.receive(name, want, wait, lease) => d?,
        _ = inner.shutdown.graceful_requested() => return Ok(Vec::new()),
    };
    // A broker that hands out fewer than `want` messages per call (SQS: 10) and just filled
    // one is asked again at once, several calls side by side and none waiting, so that one
    // claim in storage covers them all. (Only the first call may wait: a waiting call that
    // found nothing would hold back what the others received.) Bundles may fill `want` in one
    // call.
    if deliveries.len() >= per_call && deliveries.len() < want {
        let left = want - deliveries.len();
        let more = (0..left.div_ceil(per_call)).map(|i| {
            let max = (left - i * per_call).min(per_call);
            queue.receive(name, max, Duration::ZERO, lease)
        });
        for r in futures::future::join_all(more).await {
            match r {
                Ok(d) => deliveries.extend(d),
                Err(e) => {
                    tracing::debug!(error = %e, "an extra receive failed; claiming what came")
                }
            }
        }
    }
    if deliveries.is_empty() {
        return claim_unreached(inner, name, want).await;
    }
    inner.delivered(name);
    let ids: Vec<JobId> = deliveries.iter().map(|d| d.job_id).collect();
    let t_claim = std::time::Instant::now();
    let claimed = match inner
        .storage
        .claim_ids(&ids, &inner.claim_request(ids.len()))
        .await
    {
        Ok(c) => c,
        Err(e) => {
            // Give the messages back at once; nothing was claimed.
            for d in &deliveries {
                let _ = queue.nack(d, Duration::ZERO).await;
            }
            return Err(e);
        }
    };
    tracing::trace!(
        received = ids.len(),
        claimed = claimed.len(),
        us = t_claim.elapsed().as_micros() as u64,
        "claimed deliveries"
    );
    let mut by_id: HashMap<JobId, Delivery> = HashMap::new();
    for d in deliveries {
        // Two messages for one job: the extra one is a duplicate publish.
        if let Some(dup) = by_id.insert(d.job_id, d) {
            let _ = queue.ack(&[dup]).await;
        }
    }
    let mut out = Vec::with_capacity(claimed.len());
    for job in claimed {
        let d = by_id.remove(&job.id);
        out.push((job, d));
    }
    // Deliveries whose job could not be claimed: finished, running elsewhere, unknown (ack and
    // forget: storage is the source of truth) or not yet due (give back until it is).
    let mut stale = Vec::new();
    // A paused queue's deliveries are given back at the poll pace (no attempt used, no hot
    // redelivery loop); read the pauses only when something was left unclaimed.
    let paused: Vec<String> = if by_id.is_empty() {
        Vec::new()
    } else {
        match inner.storage.queue_flows().await {
            Ok(flows) => flows
                .into_iter()
                .filter(|f| f.paused)
                .map(|f| f.queue)
                .collect(),
            Err(_) => Vec::new(),
        }
    };
    for (id, d) in by_id {
        match inner.storage.get(id).await {
            Ok(Some(job)) if job.state.is_pending() && job.run_at > Utc::now() => {
                let wait = (job.run_at - Utc::now()).to_std().unwrap_or_default();
                let _ = queue.nack(&d, wait).await;
            }
            Ok(Some(job)) if job.state.is_pending() && paused.contains(&job.queue) => {
                let _ = queue.nack(&d, inner.config.poll_interval).await;
            }
            Ok(Some(job)) if job.state.is_pending() => {
                let _ = queue.nack(&d, Duration::from_millis(100)).await;
            }
            Ok(_) => stale.push(d),
            Err(_) => {
                let _ = queue.nack(&d, Duration::from_secs(1)).await;
            }
        }
    }
    if !stale.is_empty() {
        let _ = queue.ack(&stale).await;
    }
    Ok(out)
}

/// A queue from which no delivery has reached this worker for a lease, while it had free slots:
/// jobs of that queue that are due in storage now are claimed there directly, without a
/// delivery. Their messages are held elsewhere — by a consumer that is frozen (stopped, paused,
/// cut off) and that the broker still thinks alive, which keeps its unacked deliveries and on
/// RabbitMQ even receives the rescued jobs' new messages while its prefetch has room — or were
/// lost. So a hand-off never waits for the broker to notice a dead consumer. When such a
/// message comes back, its claim fails and it is acked as stale, as any duplicate. (A job that
/// is merely on its way through the broker may be claimed here first: the claim is atomic, so
/// one of the two wins and the other delivery is stale.)
async fn claim_unreached(
    inner: &Arc<Inner>,
    name: &str,
    want: usize,
) -> switchyard_core::Result<Vec<(JobRecord, Option<Delivery>)>> {
    if inner.shutdown.is_graceful() || inner.silent_for(name) < inner.config.lease {
        return Ok(Vec::new());
    }
    let mut req = inner.claim_request(want);
    req.queues = vec![name.to_string()];
    let jobs = inner.storage.claim(&req).await?;
    if !jobs.is_empty() {
        tracing::info!(
            queue = name,
            jobs = jobs.len(),
            "claimed due jobs straight from storage: no delivery reached this idle worker for a \
             lease (their messages are held by a stalled consumer, or were lost)"
        );
    }
    Ok(jobs.into_iter().map(|j| (j, None)).collect())
}
