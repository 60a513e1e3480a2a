//! [`JobContextExt`]: what the runtime adds to a job's context — the [`Client`], for enqueueing
//! follow-up jobs from a job body.

use switchyard_core::{JobContext, JobError};

use crate::client::Client;

/// Runtime methods on [`JobContext`]. Import it (`use switchyard::JobContextExt;`) to call
/// `ctx.client()`.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// use switchyard::{Job, JobContext, JobContextExt, JobError};
///
/// #[derive(Serialize, Deserialize)]
/// struct Charge { order: u32 }
///
/// #[derive(Serialize, Deserialize)]
/// struct SendReceipt { order: u32 }
///
/// impl Job for Charge {
///     const KIND: &'static str = "charge";
///     type Output = ();
///     async fn run(self, ctx: JobContext) -> Result<(), JobError> {
///         // ... charge the card, then:
///         ctx.client()?.enqueue(SendReceipt { order: self.order }).await?;
///         Ok(())
///     }
/// }
/// # impl Job for SendReceipt {
/// #     const KIND: &'static str = "send_receipt";
/// #     type Output = ();
/// #     async fn run(self, _ctx: JobContext) -> Result<(), JobError> { Ok(()) }
/// # }
/// ```
pub trait JobContextExt {
    /// The client of the worker running this job, on the same storage (and, in
    /// `switchyard::testing`, the same test clock and mode). Every context a worker,
    /// [`Switchyard::start`](crate::Switchyard::start) or a test harness builds has one; a
    /// context built by hand (`JobContext::for_test()`) has one only after
    /// `.with_state(client)`, and otherwise this is a non-retryable error saying so.
    fn client(&self) -> Result<&Client, JobError>;
}

impl JobContextExt for JobContext {
    fn client(&self) -> Result<&Client, JobError> {
        self.try_state::<Client>().ok_or_else(|| {
            JobError::permanent(
                "this job's context has no Client: contexts built by a worker, \
                 `Switchyard::start` or `switchyard::testing` carry one; a context built by \
                 hand needs `.with_state(client)`",
            )
        })
    }
}
