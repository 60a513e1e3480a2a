//! The quickstart's jobs, in a library so that `tests/jobs.rs` tests them with
//! `switchyard::testing` (`cargo test -p example-quickstart`).

use serde::{Deserialize, Serialize};
use switchyard::{Job, JobContext, JobContextExt, JobError, Registry, StateType};

/// Application state the jobs read: how to greet. In a real app this is where a database
/// pool or an HTTP client lives.
#[derive(Debug, Clone)]
pub struct Greeter {
    /// The word a greeting starts with.
    pub salutation: String,
}

/// Sends a greeting; returns what it sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Greet {
    /// Who to greet.
    pub name: String,
}

impl Job for Greet {
    const KIND: &'static str = "greet";
    type Output = String;

    fn required_state() -> Vec<StateType> {
        vec![StateType::of::<Greeter>()]
    }

    async fn run(self, ctx: JobContext) -> Result<String, JobError> {
        let greeter = ctx.state::<Greeter>()?;
        Ok(format!("{}, {}", greeter.salutation, self.name))
    }
}

/// Fails on its first attempt (say, a timeout from an API) and succeeds on the retry; then
/// enqueues a greeting for the customer as a follow-up job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flaky {
    /// The order it charges.
    pub order: u32,
}

impl Job for Flaky {
    const KIND: &'static str = "flaky";
    type Output = String;

    async fn run(self, ctx: JobContext) -> Result<String, JobError> {
        if ctx.attempt == 1 {
            return Err(JobError::retryable("payment API timed out"));
        }
        ctx.client()?
            .enqueue(Greet {
                name: format!("customer of order {}", self.order),
            })
            .await?;
        Ok(format!(
            "order {} charged on attempt {}",
            self.order, ctx.attempt
        ))
    }
}

/// The quickstart's job types, with the greeter they read.
pub fn registry(greeter: Greeter) -> Registry {
    Registry::new()
        .register::<Greet>()
        .register::<Flaky>()
        .with_state(greeter)
}
