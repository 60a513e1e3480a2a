//! Test plumbing shared by the cases: a worker tuned for tests (short leases, fast polling),
//! with the dispatcher and rescuer when they apply, and a probe that records what handlers saw.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::dispatcher::DispatcherConfig;
use switchyard::maintenance::MaintenanceConfig;
use switchyard::{Backoff, JobId, JobRecord, JobState, Registry, Shutdown, Worker, WorkerHandle};
use switchyard_core::Storage;

use crate::Backend;

/// Settings of a test worker.
#[derive(Debug, Clone)]
pub struct TestWorkerConfig {
    /// Queue to work.
    pub queue: String,
    /// Concurrency.
    pub concurrency: usize,
    /// Lease.
    pub lease: Duration,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Graceful shutdown timeout.
    pub shutdown_timeout: Duration,
    /// Retry backoff.
    pub backoff: Backoff,
    /// Run the rescuer beside the worker.
    pub rescuer: bool,
}

impl TestWorkerConfig {
    /// Defaults for `queue`: concurrency 4, lease 2 s, heartbeat 300 ms, no jitter, 100 ms
    /// base backoff, rescuer on.
    pub fn new(queue: &str) -> Self {
        Self {
            queue: queue.to_string(),
            concurrency: 4,
            lease: Duration::from_secs(2),
            heartbeat: Duration::from_millis(300),
            shutdown_timeout: Duration::from_secs(10),
            backoff: Backoff {
                base: Duration::from_millis(100),
                max: Duration::from_secs(5),
                jitter: 0.0,
            },
            rescuer: true,
        }
    }
}

/// A worker plus the plugins it needs, all stopped together.
#[derive(Debug)]
pub struct TestWorker {
    /// The worker.
    pub handle: WorkerHandle,
    plugins: Shutdown,
    plugin_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TestWorker {
    /// Graceful stop of the worker, then the plugins.
    pub async fn stop(self) {
        self.handle.stop().await;
        Plugins {
            shutdown: self.plugins,
            tasks: self.plugin_tasks,
        }
        .stop()
        .await
    }

    /// Simulated crash of the worker; plugins keep running until `stop_plugins`.
    pub async fn kill(self) -> Plugins {
        self.handle.kill().await;
        Plugins {
            shutdown: self.plugins,
            tasks: self.plugin_tasks,
        }
    }
}

/// Plugins left running after a worker was killed.
#[derive(Debug)]
pub struct Plugins {
    shutdown: Shutdown,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Plugins {
    /// Stops them.
    pub async fn stop(self) {
        self.shutdown.graceful();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts a worker on `b` (through its external queue when it has one, with a dispatcher).
pub async fn start_worker(b: &Backend, registry: Registry, cfg: TestWorkerConfig) -> TestWorker {
    let mut worker = Worker::new(b.storage.clone(), registry)
        .queues([cfg.queue.clone()])
        .concurrency(cfg.concurrency)
        .lease(cfg.lease)
        .heartbeat(cfg.heartbeat)
        .poll_interval(Duration::from_millis(100))
        .shutdown_timeout(cfg.shutdown_timeout)
        .backoff(cfg.backoff);
    let plugins = Shutdown::new();
    let mut plugin_tasks = Vec::new();
    if let Some(q) = &b.queue {
        q.setup(std::slice::from_ref(&cfg.queue))
            .await
            .expect("queue setup");
        worker = worker.external_queue(q.clone());
        plugin_tasks.push(tokio::spawn(switchyard::dispatcher::run(
            b.storage.clone(),
            q.clone(),
            DispatcherConfig {
                poll_interval: Duration::from_millis(50),
                max_native_delay: b.max_native_delay,
                redispatch_after: Duration::from_secs(60),
                ..DispatcherConfig::default()
            },
            plugins.clone(),
        )));
    }
    if cfg.rescuer {
        plugin_tasks.push(tokio::spawn(switchyard::maintenance::run(
            b.storage.clone(),
            MaintenanceConfig {
                rescuer: true,
                rescue_interval: Duration::from_millis(100),
                pruner: false,
                leader_ttl: Duration::from_secs(3),
                ..MaintenanceConfig::default()
            },
            plugins.clone(),
        )));
    }
    TestWorker {
        handle: worker.start(),
        plugins,
        plugin_tasks,
    }
}

/// Records every handler invocation: which job, which attempt, when.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    inner: Arc<Mutex<Vec<(JobId, u32, Instant)>>>,
}

impl Probe {
    /// Records one invocation.
    pub fn record(&self, id: JobId, attempt: u32) {
        self.inner
            .lock()
            .unwrap()
            .push((id, attempt, Instant::now()));
    }

    /// Invocations so far.
    pub fn count(&self) -> usize {
        self.inner.lock().unwrap().len()
    }

    /// Invocations of one job.
    pub fn runs_of(&self, id: JobId) -> Vec<(u32, Instant)> {
        self.inner
            .lock()
            .unwrap()
            .iter()
            .filter(|(j, _, _)| *j == id)
            .map(|(_, a, t)| (*a, *t))
            .collect()
    }

    /// How many times each job ran.
    pub fn per_job(&self) -> HashMap<JobId, usize> {
        let mut m = HashMap::new();
        for (id, _, _) in self.inner.lock().unwrap().iter() {
            *m.entry(*id).or_insert(0) += 1;
        }
        m
    }

    /// Ids in the order they first ran.
    pub fn order(&self) -> Vec<JobId> {
        self.inner
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _, _)| *id)
            .collect()
    }
}

/// Waits until job `id` is in `state` (panics after `deadline`, showing the last state seen)
/// and returns it.
pub async fn wait_state(
    storage: &Arc<dyn Storage>,
    id: JobId,
    state: JobState,
    deadline: Duration,
) -> JobRecord {
    let start = Instant::now();
    loop {
        let job = storage.get(id).await.expect("get");
        match job {
            Some(j) if j.state == state => return j,
            other if start.elapsed() > deadline => panic!(
                "timed out after {deadline:?} waiting for job {id} to reach `{state}`; last seen: {:?}",
                other.map(|j| (j.state, j.attempt, j.errors))
            ),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
