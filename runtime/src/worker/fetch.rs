//! The fetchers: claiming jobs in batches, from the storage's own queue or (through
//! [`receive_and_claim`]) from an external one, registering each claimed job under its lease,
//! and handing them to the runner in claim order.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::receive::receive_and_claim;
use super::state::{lease_of, Inner, Ready, Running};

/// One fetcher: claims while not shutting down; returns when graceful shutdown is requested.
///
/// `claimed` bounds the jobs claimed and not yet finished to `(fetchers + 1) × concurrency`, so
/// a buffer of claimed jobs is ready whenever a run slot frees and several claims can be in
/// flight while earlier batches run. A fetcher claims only when at least `concurrency` claim
/// slots are free (or the worker is idle), so each claim is a real batch instead of one job
/// per freed slot. Claimed jobs enter the running map at once, so heartbeats keep the leases of
/// buffered jobs too; they go to the runner in priority order.
pub(super) async fn fetch_loop(
    inner: &Arc<Inner>,
    claimed_slots: &Arc<Semaphore>,
    ready: &mpsc::UnboundedSender<Ready>,
) {
    let concurrency = inner.config.concurrency;
    // A claim waits for room for `concurrency` jobs (an external queue that delivers fewer
    // messages per receive is asked several times per claim).
    let batch = concurrency as u32;
    let mut wake = inner.storage.subscribe();
    let mut rr = 0usize;
    let mut failures = 0u32;
    loop {
        // Claim only while the backlog of claimed jobs waiting to start is short.
        if !inner
            .backlog
            .wait_below(concurrency, inner.shutdown.graceful_requested())
            .await
        {
            return;
        }
        // Wait until a batch worth of claim slots is free, then take every free one.
        let first = tokio::select! {
            p = claimed_slots.clone().acquire_many_owned(batch) => p.expect("semaphore never closes"),
            _ = inner.shutdown.graceful_requested() => return,
        };
        let mut permits = vec![first];
        let extra = (claimed_slots.available_permits() as u32).min(batch);
        if extra > 0 {
            if let Ok(p) = claimed_slots.clone().try_acquire_many_owned(extra) {
                permits.push(p);
            }
        }
        let want = permits.iter().map(|p| p.num_permits()).sum::<usize>();
        let t_claim = std::time::Instant::now();
        let claimed = match &inner.queue {
            None => inner
                .storage
                .claim(&inner.claim_request(want))
                .await
                .map(|jobs| jobs.into_iter().map(|j| (j, None)).collect::<Vec<_>>()),
            Some(queue) => {
                let q = inner.config.queues[rr % inner.config.queues.len()].clone();
                rr += 1;
                receive_and_claim(inner, queue, &q, want).await
            }
        };
        let claimed = match claimed {
            Ok(c) => {
                failures = 0;
                c
            }
            Err(e) => {
                failures += 1;
                let wait = (inner.config.poll_interval * failures).min(Duration::from_secs(5));
                tracing::warn!(error = %e, retry_in = ?wait, "claim failed; the worker keeps polling");
                drop(permits);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = inner.shutdown.graceful_requested() => return,
                }
                continue;
            }
        };
        let got = claimed.len();
        tracing::trace!(
            want,
            got,
            us = t_claim.elapsed().as_micros() as u64,
            "claimed"
        );
        // One claim slot per claimed job travels with it; the rest go back.
        let mut claimed = claimed;
        // They start in the storage contract's claim order.
        claimed.sort_by(|(a, _), (b, _)| switchyard_core::adapter::claim_order(a, b));
        let mut free = merge(permits);
        inner.backlog.added(claimed.len());
        for (job, delivery) in claimed {
            let slot = free.split(1).expect("never claims more than free slots");
            inner.running.lock().expect("poisoned").insert(
                lease_of(&job),
                Running {
                    renewed: t_claim,
                    cancel: inner.shutdown.hard_token().child_token(),
                    user_cancel: Arc::new(AtomicBool::new(job.cancel_requested)),
                    delivery: delivery.clone(),
                    finished: false,
                },
            );
            let _ = ready.send((job, delivery, slot));
        }
        drop(free);
        if got < want && inner.queue.is_none() {
            // Idle: wait for a wake-up from the backend, the poll interval, or shutdown.
            tokio::select! {
                _ = wake.wait(inner.config.poll_interval) => {}
                _ = inner.shutdown.graceful_requested() => return,
            }
        }
    }
}

/// Merges permits of one semaphore into one.
fn merge(mut permits: Vec<OwnedSemaphorePermit>) -> OwnedSemaphorePermit {
    let mut first = permits.remove(0);
    for p in permits {
        first.merge(p);
    }
    first
}
