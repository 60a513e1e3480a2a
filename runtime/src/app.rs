//! [`Switchyard`]: storage, queue, client, workers and plugins composed from a [`Config`].

use std::future::Future;
use std::sync::Arc;

use switchyard_core::{Error, Queue, Result, Schedule, ScheduleDef, Storage};
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
    /// Schedules declared in code ([`Switchyard::schedule`]), upserted at start with those of
    /// `[schedules.*]`.
    schedules: Vec<ScheduleDef>,
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

    /// Connects like [`connect`](Self::connect) but creates nothing: no migration whatever
    /// `auto_migrate` says, no new SQLite file (a missing one is `NotFound`), a short first
    /// connection timeout, and no write on connecting. For tools that look at or change an
    /// existing instance; follow with [`require_schema`](Self::require_schema) to refuse a
    /// prefix that was never migrated.
    pub async fn connect_existing(config: Config) -> Result<Self> {
        config.validate()?;
        let storage = crate::connect::connect_storage_existing(&config).await?;
        let queue = crate::connect::connect_queue(&config).await?;
        Self::from_parts(config, storage, queue)
    }

    /// Checks that the storage holds this build's schema under the configured prefix:
    /// `NotFound` when it holds none ("no Switchyard schema under prefix …; run
    /// `switchyard migrate`"), `Config` when it is older (run `migrate`) or newer (upgrade
    /// Switchyard). A storage that cannot tell ([`Storage::schema`] unsupported) passes.
    pub async fn require_schema(&self) -> Result<()> {
        use switchyard_core::{ErrorKind, SchemaState};
        let status = match self.storage.schema().await {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::Unsupported => return Ok(()),
            Err(e) => return Err(e),
        };
        let at = self.describe_instance();
        match status.state() {
            SchemaState::Current => Ok(()),
            SchemaState::Missing => Err(Error::not_found(format!(
                "no Switchyard schema under prefix `{}` in {at}{}; run `switchyard migrate` to \
                 create it (or check the prefix and the storage URL)",
                self.config.prefix,
                self.other_prefixes().await
            ))),
            SchemaState::Behind => Err(Error::config(format!(
                "the schema under prefix `{}` in {at} is version {}, older than this build's {}; \
                 run `switchyard migrate` to upgrade it",
                self.config.prefix,
                status.applied.unwrap_or_default(),
                status.expected
            ))),
            SchemaState::Ahead => Err(Error::config(format!(
                "the schema under prefix `{}` in {at} is version {}, newer than this build's {}; \
                 upgrade Switchyard",
                self.config.prefix,
                status.applied.unwrap_or_default(),
                status.expected
            ))),
        }
    }

    /// For a prefix without a schema: ` (prefixes with a schema there: a_, b_; did you mean
    /// `b_`?)` from [`Storage::prefixes`], or nothing when there are none or the storage
    /// cannot tell.
    pub(crate) async fn other_prefixes(&self) -> String {
        let Ok(mut found) = self.storage.prefixes().await else {
            return String::new();
        };
        let own = &self.config.prefix;
        found.retain(|p| p != own);
        if found.is_empty() {
            return String::new();
        }
        let closest = found
            .iter()
            .map(|p| (strsim::jaro_winkler(own, p), p))
            .filter(|(score, _)| *score >= 0.7)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, p)| format!("; did you mean `{p}`?"))
            .unwrap_or_default();
        let shown: Vec<String> = found.iter().take(10).map(|p| format!("`{p}`")).collect();
        let more = if found.len() > 10 { ", …" } else { "" };
        format!(
            " (prefixes with a schema there: {}{more}{closest})",
            shown.join(", ")
        )
    }

    /// `<storage name> at <URL without password>`, for messages.
    pub(crate) fn describe_instance(&self) -> String {
        format!(
            "{} at `{}`",
            self.storage.name(),
            switchyard_core::adapter::redact_url(&self.config.storage)
        )
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
            schedules: Vec::new(),
        })
    }

    /// A builder: configuration plus schedules declared in code, connected at the end.
    pub fn builder() -> SwitchyardBuilder {
        SwitchyardBuilder::default()
    }

    /// Declares a schedule in code (see `docs/cron.md`). It is checked here (a bad expression
    /// or time zone is refused, naming the field and the accepted forms) and upserted by id at
    /// [`start`](Switchyard::start), with those of `[schedules.*]`.
    pub fn schedule(mut self, def: ScheduleDef) -> Result<Self> {
        Schedule::new(def.clone())?;
        if self.schedules.iter().any(|d| d.id == def.id) {
            return Err(Error::invalid(format!(
                "schedule `{}` is declared twice; accepted: one definition per id",
                def.id
            )));
        }
        self.schedules.push(def);
        Ok(self)
    }

    /// The schedules this instance declares: `[schedules.*]` then those added in code.
    pub fn declared_schedules(&self) -> Result<Vec<ScheduleDef>> {
        let mut defs = crate::cron::defs_from_config(&self.config.schedules)?;
        defs.extend(self.schedules.iter().cloned());
        Ok(defs)
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
        let schedules = self.declared_schedules()?;
        if self.config.cron.enabled || !schedules.is_empty() {
            tasks.spawn(crate::cron::run_plugin(
                self.storage.clone(),
                schedules,
                self.config.cron.clone(),
                shutdown.clone(),
            ));
        }
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

/// Builds a [`Switchyard`]: [`config`](SwitchyardBuilder::config) (default: `switchyard.toml`
/// and the environment), [`schedule`](SwitchyardBuilder::schedule)s declared in code, then
/// [`connect`](SwitchyardBuilder::connect).
#[derive(Debug, Default)]
pub struct SwitchyardBuilder {
    config: Option<Config>,
    schedules: Vec<ScheduleDef>,
}

impl SwitchyardBuilder {
    /// The configuration to connect with.
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Declares a schedule (checked at [`connect`](SwitchyardBuilder::connect)).
    pub fn schedule(mut self, def: ScheduleDef) -> Self {
        self.schedules.push(def);
        self
    }

    /// Checks the schedules, then connects as [`Switchyard::connect`] does.
    pub async fn connect(self) -> Result<Switchyard> {
        for def in &self.schedules {
            Schedule::new(def.clone())?;
        }
        let config = match self.config {
            Some(c) => c,
            None => Config::load()?,
        };
        let mut sy = Switchyard::connect(config).await?;
        for def in self.schedules {
            sy = sy.schedule(def)?;
        }
        Ok(sy)
    }
}
