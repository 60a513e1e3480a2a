//! The heartbeater: renewing the leases of claimed jobs, relaying cancel requests and lost leases
//! to their attempts, stopping attempts whose lease ran out unrenewed, and extending their broker
//! messages' visibility.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use switchyard_core::{Delivery, LeaseRef, LeaseStatus};
use tokio_util::sync::CancellationToken;

use super::state::Inner;

/// Renews the leases of running jobs and relays cancel requests and lost leases to them.
///
/// While renewals fail (the storage unreachable), an attempt whose lease has run out since its
/// last renewal is stopped (its cancellation token fires): the rescuer may already have handed
/// the job to another worker, and two runs of one job at once are worse than one stopped run.
pub(super) async fn heartbeater(inner: Arc<Inner>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(inner.config.heartbeat) => {}
            _ = stop.cancelled() => return,
        }
        let (leases, deliveries): (Vec<LeaseRef>, Vec<Delivery>) = {
            let running = inner.running.lock().expect("poisoned");
            (
                running.keys().copied().collect(),
                running
                    .values()
                    .filter_map(|r| r.delivery.clone())
                    .collect(),
            )
        };
        if leases.is_empty() {
            continue;
        }
        let sent = std::time::Instant::now();
        // A renewal still unanswered after a lease renews nothing: it counts as failed.
        let renewal = tokio::time::timeout(
            inner.config.lease,
            inner.storage.heartbeat(&leases, inner.config.lease),
        )
        .await
        .unwrap_or_else(|_| {
            Err(switchyard_core::Error::new(
                switchyard_core::ErrorKind::Unavailable,
                "the renewal got no answer within a lease",
            ))
        });
        match renewal {
            Ok(statuses) => {
                let mut running = inner.running.lock().expect("poisoned");
                for (lease, status) in leases.iter().zip(statuses) {
                    let Some(r) = running.get_mut(lease) else {
                        continue;
                    };
                    match status {
                        LeaseStatus::Held { cancel_requested } => {
                            r.renewed = sent;
                            if cancel_requested {
                                if !r.user_cancel.swap(true, Ordering::SeqCst) {
                                    tracing::info!(id = %lease.id, "cancel requested: firing the job's cancellation token");
                                }
                                r.cancel.cancel();
                            }
                        }
                        LeaseStatus::Lost => {
                            tracing::warn!(id = %lease.id, "lease lost: stopping the attempt");
                            r.cancel.cancel();
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed; leases may expire");
                let running = inner.running.lock().expect("poisoned");
                for (lease, r) in running.iter() {
                    if r.renewed.elapsed() >= inner.config.lease && !r.cancel.is_cancelled() {
                        tracing::warn!(id = %lease.id, "lease ran out while the storage was unreachable: stopping the attempt (it may be rescued and run elsewhere)");
                        r.cancel.cancel();
                    }
                }
            }
        }
        if let (Some(queue), false) = (&inner.queue, deliveries.is_empty()) {
            if let Err(e) = queue.extend(&deliveries, inner.config.lease).await {
                tracing::warn!(error = %e, "extending message visibility failed");
            }
        }
    }
}
