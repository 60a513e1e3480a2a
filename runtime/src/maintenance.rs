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
    /// Leadership lock time-to-live; renewed at a third of it. When its holder dies, nobody
    /// rescues until it runs out, so it should not outlast a lease: the configuration sets it
    /// with [`MaintenanceConfig::leader_ttl_for`].
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

/// The shortest leadership lock [`MaintenanceConfig::leader_ttl_for`] gives: renewed every
/// third of it, a shorter lock would cost a statement every few hundred milliseconds.
pub const MIN_LEADER_TTL: Duration = Duration::from_secs(1);

/// The longest leadership lock [`MaintenanceConfig::leader_ttl_for`] gives (the lock's lifetime
/// before it followed the lease).
pub const MAX_LEADER_TTL: Duration = Duration::from_secs(30);

impl MaintenanceConfig {
    /// The leadership lock's lifetime for workers whose leases last `lease`: the lease itself,
    /// within [`MIN_LEADER_TTL`] and [`MAX_LEADER_TTL`]. When the leader dies, the lock then
    /// runs out no later than the leases of the jobs it was running (and at most a second after
    /// a very short one), so another process wins it and rescues them one renewal tick after
    /// they expire, instead of waiting out a fixed 30 s lock: with a 2 s lease, the hand-off
    /// takes about 2 s plus the rescue tick rather than 35 s.
    pub fn leader_ttl_for(lease: Duration) -> Duration {
        lease.clamp(MIN_LEADER_TTL, MAX_LEADER_TTL)
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
    // When each plugin runs next (both at once when leadership is first won).
    let mut next_prune = tokio::time::Instant::now();
    let mut next_rescue = next_prune;
    // An interval too long to add to now means never (a MaintenanceConfig built in code is
    // not bounded like the configuration's keys): thirty years, which always fits.
    let after = |every: Duration| {
        let now = tokio::time::Instant::now();
        now.checked_add(every)
            .unwrap_or(now + Duration::from_secs(30 * 365 * 24 * 3600))
    };
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
            if config.rescuer && tokio::time::Instant::now() >= next_rescue {
                next_rescue = after(config.rescue_interval);
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
            if config.pruner && tokio::time::Instant::now() >= next_prune {
                next_prune = after(config.prune_interval);
                // The retention is at most `config::MAX_SECS`, so this is always a date.
                let before =
                    Utc::now() - chrono::Duration::from_std(config.retention).unwrap_or_default();
                if prune_all(storage.as_ref(), before, &config, &shutdown).await {
                    // Time ran out with more to delete: go on at the next tick.
                    next_prune = tokio::time::Instant::now();
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

/// Jobs one prune call deletes at most.
const PRUNE_BATCH: usize = 1000;

/// Deletes finished jobs older than `before`, batch after batch while batches come back full,
/// for at most a third of the leadership lock's lifetime (so the lock is renewed in time) and
/// until shutdown is requested: at one batch per interval, a busy system would finish jobs
/// faster than the pruner deletes them. Returns whether it stopped with more left to delete.
async fn prune_all(
    storage: &dyn Storage,
    before: chrono::DateTime<Utc>,
    config: &MaintenanceConfig,
    shutdown: &Shutdown,
) -> bool {
    let started = tokio::time::Instant::now();
    let mut deleted = 0;
    let more = loop {
        match storage.prune(before, PRUNE_BATCH).await {
            Ok(n) => {
                deleted += n;
                if n < PRUNE_BATCH as u64 {
                    break false;
                }
                if started.elapsed() >= config.leader_ttl / 3 || shutdown.is_graceful() {
                    break true;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "prune failed");
                break false;
            }
        }
    };
    if deleted > 0 {
        tracing::info!(deleted, "pruned finished jobs");
    }
    more
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lock follows the lease, within its bounds.
    #[test]
    fn the_leader_lock_lives_as_long_as_a_lease() {
        let s = Duration::from_secs;
        assert_eq!(MaintenanceConfig::leader_ttl_for(s(2)), s(2));
        assert_eq!(
            MaintenanceConfig::leader_ttl_for(Duration::from_millis(7500)),
            Duration::from_millis(7500)
        );
        assert_eq!(MaintenanceConfig::leader_ttl_for(s(30)), s(30));
        assert_eq!(MaintenanceConfig::leader_ttl_for(s(600)), MAX_LEADER_TTL);
        assert_eq!(
            MaintenanceConfig::leader_ttl_for(Duration::from_millis(200)),
            MIN_LEADER_TTL
        );
        assert_eq!(
            MaintenanceConfig::leader_ttl_for(Duration::ZERO),
            MIN_LEADER_TTL
        );
    }
}
