//! How a job body runs: the [`Executor`] trait, with a Tokio executor for async bodies and a
//! blocking executor for synchronous ones (which must never block the event loop).

use std::any::Any;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::FutureExt;

use crate::context::{JobError, JobErrorKind};

/// What a job body produces: an optional JSON result stored on the job.
pub type JobOutput = Result<Option<serde_json::Value>, JobError>;

/// A job body ready to run, with its payload already decoded.
pub enum JobBody {
    /// An async body, polled on the Tokio runtime.
    Async(BoxFuture<'static, JobOutput>),
    /// A synchronous body, run on a thread of the blocking pool.
    Blocking(Box<dyn FnOnce() -> JobOutput + Send + 'static>),
}

impl std::fmt::Debug for JobBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobBody::Async(_) => f.write_str("JobBody::Async"),
            JobBody::Blocking(_) => f.write_str("JobBody::Blocking"),
        }
    }
}

/// Runs one attempt of a job body.
///
/// # Contract
/// * `execute` resolves with the body's output once the body has finished.
/// * A panic in the body is caught and returned as a [`JobError`] of kind
///   [`JobErrorKind::Panic`]; it never unwinds into the worker.
/// * Timeouts and cancellation are the worker's business: it drops the future returned by
///   `execute` and fires the job's cancellation token. A blocking body cannot be interrupted;
///   its thread runs on, but its result is ignored.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Runs `body` and returns its output.
    async fn execute(&self, body: JobBody) -> JobOutput;
}

/// Polls async bodies on the Tokio runtime (in the worker's job task) and runs synchronous ones
/// with `spawn_blocking`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioExecutor;

/// Runs every body on the blocking pool, async ones with `Handle::block_on`. For job bodies that
/// are async in signature but do heavy CPU work.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockingExecutor;

fn panic_message(p: Box<dyn Any + Send>) -> JobError {
    let msg = if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    };
    JobError::of_kind(JobErrorKind::Panic, format!("job panicked: {msg}"), true)
}

fn join_error(e: tokio::task::JoinError) -> JobError {
    if e.is_panic() {
        panic_message(e.into_panic())
    } else {
        JobError::of_kind(JobErrorKind::Cancelled, "job task was aborted", true)
    }
}

#[async_trait]
impl Executor for TokioExecutor {
    async fn execute(&self, body: JobBody) -> JobOutput {
        match body {
            // Polled in place (the worker already runs each job in its own task); dropping this
            // future (timeout, hard shutdown) drops the body.
            JobBody::Async(fut) => std::panic::AssertUnwindSafe(fut)
                .catch_unwind()
                .await
                .unwrap_or_else(|p| Err(panic_message(p))),
            JobBody::Blocking(f) => tokio::task::spawn_blocking(f)
                .await
                .unwrap_or_else(|e| Err(join_error(e))),
        }
    }
}

#[async_trait]
impl Executor for BlockingExecutor {
    async fn execute(&self, body: JobBody) -> JobOutput {
        match body {
            JobBody::Async(fut) => {
                let handle = tokio::runtime::Handle::current();
                tokio::task::spawn_blocking(move || {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        handle.block_on(fut.boxed())
                    }))
                    .unwrap_or_else(|p| Err(panic_message(p)))
                })
                .await
                .unwrap_or_else(|e| Err(join_error(e)))
            }
            JobBody::Blocking(f) => tokio::task::spawn_blocking(f)
                .await
                .unwrap_or_else(|e| Err(join_error(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn panics_become_errors() {
        let out = TokioExecutor
            .execute(JobBody::Async(Box::pin(async { panic!("boom") })))
            .await;
        let err = out.unwrap_err();
        assert_eq!(err.kind(), JobErrorKind::Panic);
        assert!(err.message().contains("boom"));

        let out = TokioExecutor
            .execute(JobBody::Blocking(Box::new(|| panic!("sync boom"))))
            .await;
        assert!(out.unwrap_err().message().contains("sync boom"));
    }

    #[tokio::test]
    async fn blocking_executor_runs_async_bodies() {
        let out = BlockingExecutor
            .execute(JobBody::Async(Box::pin(async {
                Ok(Some(serde_json::json!(7)))
            })))
            .await;
        assert_eq!(out.unwrap(), Some(serde_json::json!(7)));
    }
}
