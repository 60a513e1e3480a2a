//! A worker's settings: [`WorkerConfig`] and its defaults, including the default worker id.

use std::time::Duration;

use uuid::Uuid;

use crate::backoff::Backoff;

/// Settings of one worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Queues to take jobs from.
    pub queues: Vec<String>,
    /// Jobs run at once.
    pub concurrency: usize,
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// How often running jobs' leases are renewed (and cancel requests picked up).
    pub heartbeat: Duration,
    /// Longest idle wait between claims when no wake-up arrives.
    pub poll_interval: Duration,
    /// How long a graceful shutdown waits for running jobs before aborting them.
    pub shutdown_timeout: Duration,
    /// Retry backoff.
    pub backoff: Backoff,
    /// This worker's id, stored on the jobs it runs.
    pub worker_id: String,
    /// Most completions recorded in one storage call.
    pub completion_batch: usize,
    /// Claims in flight at once. Two hide a claim's round trip behind the previous batch; jobs
    /// claimed and not yet started can reach `fetchers × concurrency` (use 1 for long jobs
    /// shared by many workers). With a concurrency of 1 there is always one.
    pub fetchers: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            queues: vec![switchyard_core::DEFAULT_QUEUE.to_string()],
            concurrency: 10,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
            backoff: Backoff::default(),
            worker_id: default_worker_id(),
            completion_batch: 500,
            fetchers: 2,
        }
    }
}

/// `hostname-pid-random`, unique per worker.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_string());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &Uuid::new_v4().simple().to_string()[..6]
    )
}
