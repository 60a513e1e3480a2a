//! The [`Registry`]: job kind → handler, and the application state job bodies read. A worker
//! runs the kinds its registry knows; a job of any other kind fails with a message listing the
//! kinds it does know. A registry whose jobs need state it does not hold is refused at startup
//! ([`Registry::validate`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use serde_json::Value;
use switchyard_core::{
    Error, JobBody, JobContext, JobError, JobErrorKind, JobOutput, JobRecord, Result, StateMap,
    StateType,
};
use tokio_util::sync::CancellationToken;

use crate::job::{BlockingJob, Job};

type Handler = dyn Fn(Value, JobContext) -> std::result::Result<JobBody, JobError> + Send + Sync;

/// The job kinds a worker can run, and the application state their bodies read.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use switchyard::{Job, JobContext, JobError, Registry, StateType};
/// #[derive(Clone)]
/// struct AppState { greeting: String }
///
/// #[derive(Serialize, Deserialize)]
/// struct Greet { name: String }
///
/// impl Job for Greet {
///     const KIND: &'static str = "greet";
///     type Output = String;
///     fn required_state() -> Vec<StateType> { vec![StateType::of::<AppState>()] }
///     async fn run(self, ctx: JobContext) -> Result<String, JobError> {
///         Ok(format!("{}, {}", ctx.state::<AppState>()?.greeting, self.name))
///     }
/// }
///
/// let registry = Registry::new().register::<Greet>();
/// // Greet needs AppState: refused, naming the type.
/// let e = registry.validate().unwrap_err();
/// assert!(e.message().contains("AppState"));
/// let registry = registry.with_state(AppState { greeting: "hello".into() });
/// assert!(registry.validate().is_ok());
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<String, Arc<Handler>>,
    needs: BTreeMap<String, Vec<StateType>>,
    state: Arc<StateMap>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.handlers.keys().collect::<Vec<_>>())
            .field("state", &self.state)
            .finish()
    }
}

fn to_output<T: serde::Serialize>(out: std::result::Result<T, JobError>) -> JobOutput {
    let value = out?;
    let json = serde_json::to_value(value).map_err(|e| {
        JobError::permanent(format!(
            "the job's output could not be encoded as JSON: {e}"
        ))
    })?;
    Ok(if json.is_null() { None } else { Some(json) })
}

fn decode<T: serde::de::DeserializeOwned>(
    kind: &str,
    payload: Value,
) -> std::result::Result<T, JobError> {
    serde_json::from_value(payload).map_err(|e| {
        JobError::of_kind(
            JobErrorKind::Decode,
            format!(
                "payload does not decode into job kind `{kind}` ({}): {e}",
                std::any::type_name::<T>()
            ),
            false,
        )
    })
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an async job type under `J::KIND`.
    pub fn register<J: Job>(mut self) -> Self {
        let handler =
            move |payload: Value, ctx: JobContext| -> std::result::Result<JobBody, JobError> {
                let job: J = decode(J::KIND, payload)?;
                Ok(JobBody::Async(Box::pin(async move {
                    to_output(job.run(ctx).await)
                })))
            };
        self.handlers.insert(J::KIND.to_string(), Arc::new(handler));
        self.needs.insert(J::KIND.to_string(), J::required_state());
        self
    }

    /// Registers a synchronous job type under `J::KIND`; it runs on the blocking pool.
    pub fn register_blocking<J: BlockingJob>(mut self) -> Self {
        let handler =
            move |payload: Value, ctx: JobContext| -> std::result::Result<JobBody, JobError> {
                let job: J = decode(J::KIND, payload)?;
                Ok(JobBody::Blocking(Box::new(move || to_output(job.run(ctx)))))
            };
        self.handlers.insert(J::KIND.to_string(), Arc::new(handler));
        self.needs.insert(J::KIND.to_string(), J::required_state());
        self
    }

    /// Registers a handler for `kind` that takes the raw JSON payload. For dynamic kinds and
    /// tests.
    pub fn register_fn<F, Fut>(mut self, kind: impl Into<String>, f: F) -> Self
    where
        F: Fn(Value, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobOutput> + Send + 'static,
    {
        let handler =
            move |payload: Value, ctx: JobContext| -> std::result::Result<JobBody, JobError> {
                Ok(JobBody::Async(Box::pin(f(payload, ctx))))
            };
        let kind = kind.into();
        self.needs.remove(&kind);
        self.handlers.insert(kind, Arc::new(handler));
        self
    }

    /// Declares that the handler of `kind` reads the state `T` (for handlers registered with
    /// [`Registry::register_fn`]; typed jobs list theirs in `required_state`).
    pub fn require_state<T: Send + Sync + 'static>(mut self, kind: &str) -> Self {
        self.needs
            .entry(kind.to_string())
            .or_default()
            .push(StateType::of::<T>());
        self
    }

    /// Adds `value` as the application state of type `T`, which job bodies read with
    /// `ctx.state::<T>()`. One value per type (a later one replaces it); every job of a worker
    /// shares it, so put handles in it (a pool, an `Arc`), not per-job data.
    pub fn with_state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        Arc::make_mut(&mut self.state).insert(value);
        self
    }

    /// Adds an already shared value as the state of type `T`.
    pub fn with_shared_state<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        Arc::make_mut(&mut self.state).insert_arc(value);
        self
    }

    /// Adds `value` as the state of type `T` unless one is there already.
    pub(crate) fn with_default_state<T: Send + Sync + 'static>(
        self,
        value: impl FnOnce() -> T,
    ) -> Self {
        if self.state.contains::<T>() {
            self
        } else {
            self.with_state(value())
        }
    }

    /// The application state, shared by every job.
    pub fn state_map(&self) -> &Arc<StateMap> {
        &self.state
    }

    /// Checks that every state type a registered job lists in `required_state` is held. The
    /// error (kind `Config`) names each missing type and the kinds that need it.
    pub fn validate(&self) -> Result<()> {
        let mut missing: BTreeMap<&'static str, Vec<&str>> = BTreeMap::new();
        for (kind, needs) in &self.needs {
            for ty in needs {
                if !self.state.contains_type(ty) {
                    missing.entry(ty.name()).or_default().push(kind.as_str());
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let list = missing
            .iter()
            .map(|(ty, kinds)| {
                format!(
                    "`{ty}` (needed by job kind{} {})",
                    if kinds.len() == 1 { "" } else { "s" },
                    kinds
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        Err(Error::config(format!(
            "the registry lacks application state {list}; add it with \
             `Registry::with_state(value)` before starting; the registry holds: {}",
            if self.state.is_empty() {
                "(none)".to_string()
            } else {
                self.state.type_names().join(", ")
            }
        )))
    }

    /// Prepares one attempt of a claimed job: its context (with this registry's state and
    /// `cancel`), then its body ([`Registry::prepare`]). What the worker and
    /// `switchyard::testing` run.
    pub fn prepare_job(
        &self,
        job: &JobRecord,
        cancel: CancellationToken,
    ) -> std::result::Result<JobBody, JobError> {
        let ctx = JobContext::new(job, cancel).with_state_map(self.state.clone());
        self.prepare(&job.kind, job.payload.clone(), ctx)
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> Vec<&str> {
        self.handlers.keys().map(String::as_str).collect()
    }

    /// Whether `kind` is registered.
    pub fn contains(&self, kind: &str) -> bool {
        self.handlers.contains_key(kind)
    }

    /// Prepares the body of a job: decodes its payload for its kind's handler. An unknown kind
    /// or a payload that does not decode is a non-retryable error that says why.
    pub fn prepare(
        &self,
        kind: &str,
        payload: Value,
        ctx: JobContext,
    ) -> std::result::Result<JobBody, JobError> {
        match self.handlers.get(kind) {
            Some(h) => h(payload, ctx),
            None => Err(JobError::of_kind(
                JobErrorKind::UnknownKind,
                format!(
                    "unknown job kind `{kind}`: no handler is registered for it; this worker \
                     handles: {}",
                    if self.handlers.is_empty() {
                        "(none)".to_string()
                    } else {
                        self.kinds().join(", ")
                    }
                ),
                false,
            )),
        }
    }
}
