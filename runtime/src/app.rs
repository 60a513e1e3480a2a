//! [`Switchyard`]: storage, queue, client, workers and plugins composed from a [`Config`].

use std::future::Future;
use std::sync::Arc;

use switchyard_core::{Error, Queue, Result, Storage};
use tokio::task::JoinSet;

use crate::client::Client;
use crate::config::Config;
use crate::registry::Registry;
use crate::shutdown::{install_signal_handlers, Shutdown};
use crate::worker::Worker;

/// A connected Switchyard instance.
#[derive(Debug, Clone)]
pub struct Switchyard {
    config: Config,
    storage: Arc<dyn Storage>,
    queue: Option<Arc<dyn Queue>>,
}

impl Switchyard {
    /// Connects with configuration from `switchyard.toml` and `SWITCHYARD_*` (or the embedded
    /// SQLite default when there is none).
    pub async fn from_env() -> Result<Self> {
        Self::connect(Config::load()?).await
    }

    /// Connects the configured storage and queue, checks that they fit together, and migrates
    /// when `auto_migrate` is on.
    pub async fn connect(config: Config) -> Result<Self> {
        config.validate()?;
        let storage = crate::connect::connect_storage(&config).await?;
        let queue = crate::connect::connect_queue(&config).await?;
        let this = Self::from_parts(config, storage, queue)?;
        if this.config.auto_migrate {
            this.migrate().await?;
        }
        Ok(this)
    }

    /// Composes already-connected parts; refuses combinations the backends cannot support.
    pub fn from_parts(
        config: Config,
        storage: Arc<dyn Storage>,
        queue: Option<Arc<dyn Queue>>,
    ) -> Result<Self> {
        if let Some(q) = &queue {
            let caps = q.capabilities();
            if let Some(max) = caps.max_lease {
                if config.worker.lease_secs > max.as_secs_f64() {
                    return Err(Error::config(format!(
                        "key `worker.lease_secs`: {} s is longer than the {} queue's maximum \
                         visibility of {} s; accepted: up to {}",
                        config.worker.lease_secs,
                        q.name(),
                        max.as_secs(),
                        max.as_secs()
                    )));
                }
            }
        }
        let scaps = storage.capabilities();
        if config.max_payload_bytes > scaps.max_payload_bytes {
            return Err(Error::config(format!(
                "key `max_payload_bytes`: {} is above what the {} storage accepts ({})",
                config.max_payload_bytes,
                storage.name(),
                scaps.max_payload_bytes
            )));
        }
        Ok(Self {
            config,
            storage,
            queue,
        })
    }

    /// Creates or upgrades the storage schema and the broker queues.
    pub async fn migrate(&self) -> Result<()> {
        self.storage.migrate().await?;
        if let Some(q) = &self.queue {
            let names: Vec<String> = self.config.queues.keys().cloned().collect();
            q.setup(&names).await?;
        }
        Ok(())
    }

    /// A client for enqueueing and inspecting jobs.
    pub fn client(&self) -> Client {
        Client::new(self.storage.clone())
    }

    /// The storage.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The external queue, if one is configured.
    pub fn queue(&self) -> Option<&Arc<dyn Queue>> {
        self.queue.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts one worker per configured queue, the maintenance plugins and (for an external
    /// queue) the dispatcher, in the background. Returns at once.
    ///
    /// Job bodies reach this instance's [`Client`] as `ctx.client()` (and any state the
    /// registry holds as `ctx.state::<T>()`). A registry that lacks a state one of its jobs
    /// lists in `required_state` is refused here, with an error naming the type; nothing
    /// starts.
    pub fn start(&self, registry: Registry) -> Result<Running> {
        registry.validate()?;
        let registry = registry.with_default_state(|| self.client());
        let shutdown = Shutdown::new();
        let mut tasks = JoinSet::new();
        let limits = self
            .config
            .queues
            .iter()
            .filter_map(|(name, q)| crate::flow::static_limits(name, q))
            .collect();
        tasks.spawn(crate::flow::apply_static_limits(
            self.storage.clone(),
            limits,
        ));
        for name in self.config.queues.keys() {
            let mut worker = Worker::new(self.storage.clone(), registry.clone())
                .config(self.config.worker_config(name));
            if let Some(q) = &self.queue {
                worker = worker.external_queue(q.clone());
            }
            tasks.spawn(worker.run(shutdown.clone()));
        }
        tasks.spawn(crate::maintenance::run(
            self.storage.clone(),
            self.config.maintenance_config(),
            shutdown.clone(),
        ));
        if let Some(q) = &self.queue {
            tasks.spawn(crate::dispatcher::run(
                self.storage.clone(),
                q.clone(),
                self.config.dispatcher_config(),
                shutdown.clone(),
            ));
        }
        Ok(Running { shutdown, tasks })
    }

    /// Runs workers and plugins until `signal` resolves, then shuts down gracefully. For
    /// embedding in a server (axum, tonic): no signal handlers are installed. Fails at once,
    /// before running anything, when [`Switchyard::start`] refuses the registry.
    pub async fn run_until(
        &self,
        registry: Registry,
        signal: impl Future<Output = ()>,
    ) -> Result<()> {
        let running = self.start(registry)?;
        signal.await;
        running.stop().await;
        Ok(())
    }

    /// Runs until SIGINT/SIGTERM: the first signal drains, the second aborts running jobs and
    /// releases them. Fails at once when [`Switchyard::start`] refuses the registry.
    pub async fn run_with_signals(&self, registry: Registry) -> Result<()> {
        let running = self.start(registry)?;
        install_signal_handlers(running.shutdown.clone());
        running.join().await;
        Ok(())
    }
}

/// Workers and plugins running in the background.
#[derive(Debug)]
pub struct Running {
    shutdown: Shutdown,
    tasks: JoinSet<()>,
}

impl Running {
    /// The shutdown switch.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Graceful shutdown, then waits for everything to stop.
    pub async fn stop(self) {
        self.shutdown.graceful();
        self.join().await;
    }

    /// Waits until everything stopped (after the shutdown switch was pulled).
    pub async fn join(mut self) {
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r {
                if e.is_panic() {
                    tracing::error!(error = %e, "a worker, dispatcher or maintenance task panicked; it stopped early");
                }
            }
        }
    }
}
