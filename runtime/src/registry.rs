//! The [`Registry`]: job kind → handler. A worker runs the kinds its registry knows; a job of
//! any other kind fails with a message listing the kinds it does know.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use serde_json::Value;
use switchyard_core::{JobBody, JobContext, JobError, JobErrorKind, JobOutput};

use crate::job::{BlockingJob, Job};

type Handler = dyn Fn(Value, JobContext) -> Result<JobBody, JobError> + Send + Sync;

/// The job kinds a worker can run.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<String, Arc<Handler>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn to_output<T: serde::Serialize>(out: Result<T, JobError>) -> JobOutput {
    let value = out?;
    let json = serde_json::to_value(value).map_err(|e| {
        JobError::permanent(format!(
            "the job's output could not be encoded as JSON: {e}"
        ))
    })?;
    Ok(if json.is_null() { None } else { Some(json) })
}

fn decode<T: serde::de::DeserializeOwned>(kind: &str, payload: Value) -> Result<T, JobError> {
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
        let handler = move |payload: Value, ctx: JobContext| -> Result<JobBody, JobError> {
            let job: J = decode(J::KIND, payload)?;
            Ok(JobBody::Async(Box::pin(async move {
                to_output(job.run(ctx).await)
            })))
        };
        self.handlers.insert(J::KIND.to_string(), Arc::new(handler));
        self
    }

    /// Registers a synchronous job type under `J::KIND`; it runs on the blocking pool.
    pub fn register_blocking<J: BlockingJob>(mut self) -> Self {
        let handler = move |payload: Value, ctx: JobContext| -> Result<JobBody, JobError> {
            let job: J = decode(J::KIND, payload)?;
            Ok(JobBody::Blocking(Box::new(move || to_output(job.run(ctx)))))
        };
        self.handlers.insert(J::KIND.to_string(), Arc::new(handler));
        self
    }

    /// Registers a handler for `kind` that takes the raw JSON payload. For dynamic kinds and
    /// tests.
    pub fn register_fn<F, Fut>(mut self, kind: impl Into<String>, f: F) -> Self
    where
        F: Fn(Value, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobOutput> + Send + 'static,
    {
        let handler = move |payload: Value, ctx: JobContext| -> Result<JobBody, JobError> {
            Ok(JobBody::Async(Box::pin(f(payload, ctx))))
        };
        self.handlers.insert(kind.into(), Arc::new(handler));
        self
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
    ) -> Result<JobBody, JobError> {
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
