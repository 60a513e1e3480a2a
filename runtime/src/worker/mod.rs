//! The worker (seed 002): one fetcher claims jobs in batches up to the free capacity, a
//! semaphore bounds concurrency, a heartbeater renews leases and relays cancel requests, and a
//! completer records finished attempts in batches.
//!
//! Jobs come either from the storage's own queue (`Storage::claim`) or from an external
//! [`Queue`] whose deliveries name job ids that are then claimed in storage
//! (`Storage::claim_ids`), so every attempt is fenced by its lease token either way.
//!
//! One file per stage: `fetch.rs` claims (with `receive.rs` for an external queue), `run.rs`
//! runs attempts, `complete.rs` records them and `heartbeat.rs` renews leases. `state.rs` holds
//! what the stages share and `config.rs` the settings; this file builds the worker, spawns the
//! stages and runs the shutdown sequence.

mod complete;
mod config;
mod fetch;
mod heartbeat;
mod receive;
mod run;
mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_core::{Executor, Queue, Result, SharedClock, Storage, TokioExecutor};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use self::complete::completer;
pub use self::config::{default_worker_id, WorkerConfig};
use self::fetch::fetch_loop;
use self::heartbeat::heartbeater;
#[cfg(feature = "sqlite")]
#[cfg(feature = "sqlite")]
pub(crate) use self::run::attempt;
use self::run::runner;
use self::state::{AbortOnDrop, Backlog, Inner};
use crate::backoff::Backoff;
use crate::client::Client;
use crate::registry::Registry;
use crate::shutdown::Shutdown;

/// A worker, configured and not yet running. Start it with [`Worker::start`] or
/// [`Worker::run_until`].
pub struct Worker {
    storage: Arc<dyn Storage>,
    queue: Option<Arc<dyn Queue>>,
    registry: Registry,
    executor: Arc<dyn Executor>,
    config: WorkerConfig,
    clock: Option<SharedClock>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("storage", &self.storage.name())
            .field("queue", &self.queue.as_ref().map(|q| q.name()))
            .field("registry", &self.registry)
            .field("config", &self.config)
            .finish()
    }
}

impl Worker {
    /// A worker on `storage`'s own queue with default settings.
    pub fn new(storage: Arc<dyn Storage>, registry: Registry) -> Self {
        Self {
            storage,
            queue: None,
            registry,
            executor: Arc::new(TokioExecutor),
            config: WorkerConfig::default(),
            clock: None,
        }
    }

    /// Computes retry times from `clock` instead of the system clock (pair it with the same
    /// clock on the storage, as `switchyard::testing` does).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks that the registry holds every application state its jobs list in
    /// `required_state` ([`Registry::validate`]).
    pub fn validate(&self) -> Result<()> {
        self.registry.validate()
    }

    /// Starts the worker in the background after [`Worker::validate`]; a registry that lacks a
    /// state its jobs need is an error naming the type, and nothing starts.
    pub fn try_start(self) -> Result<WorkerHandle> {
        self.validate()?;
        Ok(self.start())
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Takes deliveries from an external queue instead of the storage's own.
    pub fn external_queue(mut self, queue: Arc<dyn Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Sets the queues.
    pub fn queues<I: IntoIterator<Item = S>, S: Into<String>>(mut self, queues: I) -> Self {
        self.config.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the concurrency (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self
    }

    /// Sets the lease.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// Sets the heartbeat interval.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.config.heartbeat = every;
        self
    }

    /// Sets the polling backstop interval.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.config.poll_interval = every;
        self
    }

    /// Sets the graceful shutdown timeout.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Sets the retry backoff.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Sets the executor (default: [`TokioExecutor`]).
    pub fn executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.executor = executor;
        self
    }

    /// Sets the worker id.
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.config.worker_id = id.into();
        self
    }

    /// Starts the worker in the background.
    ///
    /// # Panics
    /// When the registry lacks an application state its jobs list in `required_state`, with
    /// the message of [`Worker::validate`] (use [`Worker::try_start`] to get it as an error).
    pub fn start(self) -> WorkerHandle {
        if let Err(e) = self.validate() {
            panic!("the worker cannot start: {e}");
        }
        let shutdown = Shutdown::new();
        let task = tokio::spawn(self.run(shutdown.clone()));
        WorkerHandle { shutdown, task }
    }

    /// Runs until `signal` resolves, then shuts down gracefully (aborting after the shutdown
    /// timeout). Installs no signal handlers: pass [`crate::shutdown::signal()`] for that.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        let handle = self.start();
        signal.await;
        handle.stop().await;
    }

    /// Runs until `shutdown` is pulled and everything in flight is recorded.
    ///
    /// A registry that fails [`Worker::validate`] is logged as an error and the worker returns
    /// at once without claiming anything (its jobs stay stored); validate first to report it.
    pub async fn run(self, shutdown: Shutdown) {
        if let Err(e) = self.validate() {
            tracing::error!(error = %e, "the worker cannot start");
            return;
        }
        // Jobs reach the runtime's client as state (`ctx.client()`), unless the app put its own.
        let registry = {
            let storage = self.storage.clone();
            let clock = self.clock.clone();
            self.registry.with_default_state(move || {
                let client = Client::new(storage);
                match clock {
                    Some(c) => client.with_clock(c),
                    None => client,
                }
            })
        };
        let inner = Arc::new(Inner {
            storage: self.storage,
            queue: self.queue,
            registry: Arc::new(registry),
            executor: self.executor,
            config: self.config,
            clock: self.clock,
            running: Mutex::new(HashMap::new()),
            shutdown,
            backlog: Backlog::default(),
            last_delivery: Mutex::new(HashMap::new()),
        });
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let stop_heartbeat = CancellationToken::new();
        // Sub-tasks are aborted if this task is aborted (a simulated crash).
        let mut completer = AbortOnDrop(tokio::spawn(completer(inner.clone(), done_rx)));
        let mut heartbeater = AbortOnDrop(tokio::spawn(heartbeater(
            inner.clone(),
            stop_heartbeat.clone(),
        )));
        // Fetchers claim into an ordered buffer; the runner starts buffered jobs in that order
        // as run slots free up. Both stop at graceful shutdown; the runner then drains.
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        let mut runner = AbortOnDrop(tokio::spawn(runner(inner.clone(), ready_rx, done_tx)));
        let claimed = Arc::new(Semaphore::new(
            inner.config.concurrency * (inner.fetchers() + 1),
        ));
        let fetchers = (0..inner.fetchers())
            .map(|_| fetch_loop(&inner, &claimed, &ready_tx))
            .collect::<Vec<_>>();
        futures::future::join_all(fetchers).await;
        // Ids received in bundles and not yet handed out go back to the broker for others.
        if let Some(queue) = &inner.queue {
            if let Err(e) = queue.release().await {
                tracing::warn!(error = %e, "giving back undelivered bundle members failed; the adapter holds them for its next receive, and their messages come back after their visibility timeout or when the connection closes");
            }
        }
        // Fetching stopped: jobs in flight (running or buffered) get the shutdown timeout to
        // finish, then they are aborted and released.
        let _deadline = AbortOnDrop(tokio::spawn({
            let shutdown = inner.shutdown.clone();
            let timeout = inner.config.shutdown_timeout;
            async move {
                tokio::time::sleep(timeout).await;
                if !shutdown.is_hard() {
                    tracing::warn!("shutdown timeout passed: aborting running jobs");
                }
                shutdown.hard();
            }
        }));
        drop(ready_tx);
        let _ = (&mut runner.0).await;
        let _ = (&mut completer.0).await;
        stop_heartbeat.cancel();
        let _ = (&mut heartbeater.0).await;
        tracing::info!(worker = %inner.config.worker_id, "worker stopped");
    }
}

/// A running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// The worker's shutdown switch.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Graceful shutdown: stop fetching, let running jobs finish (up to the shutdown timeout,
    /// then abort and release them), record everything, return.
    pub async fn stop(self) {
        self.shutdown.graceful();
        let _ = self.task.await;
    }

    /// Hard shutdown: abort running jobs now, release them for re-delivery, return.
    pub async fn abort(self) {
        self.shutdown.hard();
        let _ = self.task.await;
    }

    /// Simulates a crash: the worker and its jobs vanish without recording anything. Their
    /// leases expire and the rescuer takes over. For tests.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Waits for the worker to stop by itself (after its shutdown switch is pulled).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}
