//! Workflows in the runtime: reading a dependency's output from a step
//! ([`WorkflowContextExt::output_of`]), and the [`Client`]'s workflow methods. The model and its
//! validation are `switchyard_core::workflow`; the release of dependents is the storage's.

use std::future::Future;

use serde::de::DeserializeOwned;
use switchyard_core::{
    JobContext, JobError, JobId, Result, StepOutputs, WorkflowCancelReport, WorkflowDef,
    WorkflowId, WorkflowRecord, WorkflowStep,
};

pub use switchyard_core::workflow::{
    DepFailure, WorkflowState, WorkflowStepInfo, DEPENDENCY_FAILED, MAX_STEP_OUTPUT_BYTES,
    OUTPUT_TOO_LARGE,
};

use crate::client::Client;
use crate::context::JobContextExt;

/// Fan-in for workflow steps. Import it (`use switchyard::WorkflowContextExt;`).
pub trait WorkflowContextExt {
    /// The output of this step's dependency named `step`, decoded as `T`. Errors (permanent):
    /// `step` is not a dependency of this step (the message lists the dependencies), the
    /// dependency has no output (it finished without one, or did not complete under an
    /// `ignore`/`always` policy — ask for `Option<T>` to accept that), or the output does not
    /// decode as `T`.
    fn output_of<T: DeserializeOwned>(
        &self,
        step: &str,
    ) -> impl Future<Output = std::result::Result<T, JobError>> + Send;

    /// Every dependency's output, by step name (fetched from the storage on each call).
    fn outputs(&self) -> impl Future<Output = std::result::Result<StepOutputs, JobError>> + Send;
}

impl WorkflowContextExt for JobContext {
    async fn output_of<T: DeserializeOwned>(&self, step: &str) -> std::result::Result<T, JobError> {
        let outputs = self.outputs().await?;
        let Some(value) = outputs.get(step) else {
            let names: Vec<&str> = outputs.keys().map(String::as_str).collect();
            return Err(JobError::permanent(format!(
                "`{step}` is not a dependency of this step; its dependencies are: [{}]",
                names.join(", ")
            )));
        };
        let value = value.clone().unwrap_or(serde_json::Value::Null);
        serde_json::from_value(value).map_err(|e| {
            JobError::permanent(format!(
                "the output of step `{step}` does not decode as {}: {e}",
                std::any::type_name::<T>()
            ))
        })
    }

    async fn outputs(&self) -> std::result::Result<StepOutputs, JobError> {
        let client = self.client()?;
        client
            .storage()
            .step_outputs(self.id)
            .await
            .map_err(|e| JobError::retryable(format!("cannot read the step's inputs: {e}")))
    }
}

impl Client {
    /// Inserts a workflow atomically (see `Storage::enqueue_workflow`).
    pub async fn enqueue_workflow(&self, workflow: WorkflowDef) -> Result<WorkflowId> {
        self.storage().enqueue_workflow(workflow).await
    }

    /// The workflow with this id.
    pub async fn get_workflow(&self, id: WorkflowId) -> Result<Option<WorkflowRecord>> {
        self.storage().get_workflow(id).await
    }

    /// Up to `limit` workflows, newest first.
    pub async fn list_workflows(&self, limit: usize) -> Result<Vec<WorkflowRecord>> {
        self.storage().list_workflows(limit).await
    }

    /// Cancels a workflow.
    pub async fn cancel_workflow(&self, id: WorkflowId) -> Result<WorkflowCancelReport> {
        self.storage().cancel_workflow(id).await
    }

    /// Re-runs a workflow's failed and cancelled steps and their dependents.
    pub async fn retry_workflow(&self, id: WorkflowId) -> Result<u64> {
        self.storage().retry_workflow(id).await
    }

    /// Adds steps to a workflow (from a running step, for example).
    pub async fn append_steps(
        &self,
        id: WorkflowId,
        steps: Vec<WorkflowStep>,
    ) -> Result<Vec<JobId>> {
        self.storage().append_steps(id, steps).await
    }
}

/// A workflow step named `name` running the typed job `job` (its kind, payload and default
/// options, as `Client::enqueue` would store it).
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use switchyard::{Job, JobContext, JobError, WorkflowDef};
/// # #[derive(Serialize, Deserialize)] struct Fetch { region: String }
/// # impl Job for Fetch { const KIND: &'static str = "fetch"; type Output = u64;
/// #   async fn run(self, _: JobContext) -> Result<u64, JobError> { Ok(1) } }
/// let wf = WorkflowDef::new("report")
///     .step(switchyard::workflow::step("eu", &Fetch { region: "eu".into() }).unwrap())
///     .step(switchyard::workflow::step("us", &Fetch { region: "us".into() }).unwrap());
/// assert!(wf.validate().is_ok());
/// ```
pub fn step<J: crate::Job>(name: impl Into<String>, job: &J) -> Result<WorkflowStep> {
    let payload = serde_json::to_value(job)?;
    let new = job
        .options()
        .apply(switchyard_core::NewJob::new(J::KIND, payload));
    Ok(WorkflowStep::new(name, new))
}

/// The outcome of a successful attempt whose output is too large to store as a step output:
/// `Some(message)` when `result` is over [`MAX_STEP_OUTPUT_BYTES`] of JSON.
pub(crate) fn oversize(result: &Option<serde_json::Value>) -> Option<String> {
    let v = result.as_ref()?;
    let n = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0);
    (n > MAX_STEP_OUTPUT_BYTES).then(|| {
        format!(
            "the job's output is {n} bytes of JSON, over the limit of {MAX_STEP_OUTPUT_BYTES} \
             bytes; store large data elsewhere and return a reference to it"
        )
    })
}
