//! Leader-only plugins: the rescuer (expired leases back to `available` or `dropped`) and the
//! pruner (finished jobs past retention deleted). Each process competes for one leadership
//! lock in storage; only its holder runs the plugins, and the lock expires when its holder
//! dies. Either plugin can be switched off (seed 003).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use switchyard_core::Storage;

use crate::shutdown::Shutdown;

/// Settings of the maintenance plugins.
#[derive(Debug, Clone)]
pub struct MaintenanceConfig {
    /// Run the rescuer.
    pub rescuer: bool,
    /// How often the rescuer looks for expired leases.
    pub rescue_interval: Duration,
    /// Run the pruner.
    pub pruner: bool,
    /// How often the pruner runs.
    pub prune_interval: Duration,
    /// Finished jobs older than this are deleted.
    pub retention: Duration,
    /// Leadership lock time-to-live; renewed at a third of it.
    pub leader_ttl: Duration,
    /// This process's name in the lock.
    pub holder: String,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            rescuer: true,
            rescue_interval: Duration::from_secs(5),
            pruner: true,
            prune_interval: Duration::from_secs(60),
            retention: Duration::from_secs(7 * 24 * 3600),
            leader_ttl: Duration::from_secs(30),
            holder: crate::worker::default_worker_id(),
        }
    }
}

/// The leadership lock's name.
pub const LEADER_LOCK: &str = "maintenance";

/// Runs the plugins until `shutdown` is requested, then resigns leadership.
pub async fn run(storage: Arc<dyn Storage>, config: MaintenanceConfig, shutdown: Shutdown) {
    if !config.rescuer && !config.pruner {
        return;
    }
    let tick = config
        .rescue_interval
        .min(config.leader_ttl / 3)
        .max(Duration::from_millis(10));
    let mut last_prune = tokio::time::Instant::now() - config.prune_interval;
    let mut last_rescue = tokio::time::Instant::now() - config.rescue_interval;
    loop {
        let leader = match storage
            .try_lead(LEADER_LOCK, &config.holder, config.leader_ttl)
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "leadership check failed");
                false
            }
        };
        if leader {
            if config.rescuer && last_rescue.elapsed() >= config.rescue_interval {
                last_rescue = tokio::time::Instant::now();
                match storage.rescue_expired(Utc::now(), 1000).await {
                    Ok(r) if !r.retried.is_empty() || !r.dropped.is_empty() => tracing::warn!(
                        retried = r.retried.len(),
                        dropped = r.dropped.len(),
                        "rescued jobs whose worker stopped renewing their lease"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "rescue failed"),
                }
            }
            if config.pruner && last_prune.elapsed() >= config.prune_interval {
                last_prune = tokio::time::Instant::now();
                let before =
                    Utc::now() - chrono::Duration::from_std(config.retention).unwrap_or_default();
                match storage.prune(before, 1000).await {
                    Ok(n) if n > 0 => tracing::info!(deleted = n, "pruned finished jobs"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "prune failed"),
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.graceful_requested() => break,
        }
    }
    let _ = storage.resign(LEADER_LOCK, &config.holder).await;
}
