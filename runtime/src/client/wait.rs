//! Waiting for a job and reading its result: [`Client::wait`], [`Client::result`] and
//! [`Client::wait_result`].
//!
//! Waiting polls the storage with a growing interval (10 ms doubling to at most 500 ms, never
//! past the deadline). The storage's wake subscription ([`Storage::subscribe`]) is no help
//! here: it signals new runnable work to idle workers, not finished jobs, and no backend
//! publishes finishes.
//!
//! [`Storage::subscribe`]: switchyard_core::Storage::subscribe

use std::time::Duration;

use serde::de::DeserializeOwned;
use switchyard_core::{Error, ErrorKind, JobId, JobRecord, JobState, Result};
use tokio::time::Instant;

use super::Client;
use crate::job::{BlockingJob, Job};

/// First pause between two looks at a job that has not finished.
const FIRST_POLL: Duration = Duration::from_millis(10);
/// Longest pause between two looks.
const MAX_POLL: Duration = Duration::from_millis(500);

impl Client {
    /// Waits until the job reaches a finished state (`completed`, `failed`, `cancelled` or
    /// `dropped`, see [`JobState::is_finished`]) and returns its record; look at `state`,
    /// `result` and `errors`. A job that is retried after a failed attempt is not finished:
    /// this waits through its retries.
    ///
    /// Errors: `NotFound` when there is no such job (or it was pruned); `Timeout` naming the
    /// id and the state it was last seen in when `timeout` passes first; storage errors as
    /// they come. Polls with backoff (10 ms up to 500 ms), so a short job is seen soon after it
    /// finishes and a long wait costs about two reads a second.
    pub async fn wait(&self, id: JobId, timeout: Duration) -> Result<JobRecord> {
        let deadline = Instant::now() + timeout;
        let mut pause = FIRST_POLL;
        let mut last_seen: Option<JobRecord> = None;
        loop {
            // A read that hangs (storage unreachable) is cut off at the deadline too.
            let read = tokio::time::timeout_at(deadline, self.get(id)).await;
            let job = match read {
                Ok(found) => found?.ok_or_else(|| not_found(id))?,
                Err(_elapsed) => return Err(timed_out(id, timeout, last_seen.as_ref())),
            };
            if job.state.is_finished() {
                return Ok(job);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(timed_out(id, timeout, Some(&job)));
            }
            last_seen = Some(job);
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// The typed output of a completed job of type `J` (`()` for a job that returns nothing),
    /// without waiting.
    ///
    /// Errors, each its own kind: `NotFound` (no such job); `InvalidInput` when the job is of
    /// another kind than `J::KIND`; `NotFinished` naming its state when it is pending or
    /// running; `JobFailed` naming its state and last error when it is `failed`, `cancelled`
    /// or `dropped`; `Corrupt` naming the kind and type when the stored result does not decode
    /// into `J::Output`.
    pub async fn result<J>(&self, id: JobId) -> Result<J::Output>
    where
        J: Job,
        J::Output: DeserializeOwned,
    {
        let job = self.get(id).await?.ok_or_else(|| not_found(id))?;
        decode_result::<J::Output>(&job, J::KIND)
    }

    /// [`result`](Self::result) for a [`BlockingJob`] type.
    pub async fn blocking_result<J>(&self, id: JobId) -> Result<J::Output>
    where
        J: BlockingJob,
        J::Output: DeserializeOwned,
    {
        let job = self.get(id).await?.ok_or_else(|| not_found(id))?;
        decode_result::<J::Output>(&job, J::KIND)
    }

    /// [`wait`](Self::wait), then [`result`](Self::result): the typed output once the job
    /// finished, with `result`'s errors for a job that did not complete and `wait`'s
    /// `Timeout`.
    pub async fn wait_result<J>(&self, id: JobId, timeout: Duration) -> Result<J::Output>
    where
        J: Job,
        J::Output: DeserializeOwned,
    {
        let job = self.wait(id, timeout).await?;
        decode_result::<J::Output>(&job, J::KIND)
    }
}

/// `wait`'s timeout, naming the job and the state it was last seen in.
fn timed_out(id: JobId, timeout: Duration, last_seen: Option<&JobRecord>) -> Error {
    let seen = match last_seen {
        Some(job) => format!(
            "it is `{}` (attempt {} of {})",
            job.state, job.attempt, job.max_attempts
        ),
        None => "the storage did not answer in time".to_string(),
    };
    Error::new(
        ErrorKind::Timeout,
        format!(
            "job {id} did not finish within {timeout:?}; {seen}; wait longer, or look at it \
             with `Client::get`"
        ),
    )
}

fn not_found(id: JobId) -> Error {
    Error::not_found(format!(
        "no job {id} (never enqueued, rolled back, or pruned after it finished)"
    ))
}

/// The output of `job`, a job of kind `kind`, decoded into `T`.
fn decode_result<T: DeserializeOwned>(job: &JobRecord, kind: &str) -> Result<T> {
    let id = job.id;
    if job.kind != kind {
        return Err(Error::invalid(format!(
            "job {id} is of kind `{}`, not `{kind}`; ask for the result with the job type whose \
             KIND is `{}`",
            job.kind, job.kind
        )));
    }
    match job.state {
        JobState::Completed => {}
        state if state.is_finished() => {
            let last = job
                .errors
                .last()
                .map(|e| {
                    format!(
                        "; last error (attempt {}, {}): {}",
                        e.attempt, e.kind, e.message
                    )
                })
                .unwrap_or_default();
            return Err(Error::new(
                ErrorKind::JobFailed,
                format!("job {id} (`{kind}`) has no result: it ended `{state}`{last}"),
            ));
        }
        state => {
            return Err(Error::new(
                ErrorKind::NotFinished,
                format!(
                    "job {id} (`{kind}`) has no result yet: it is `{state}`; wait for it with \
                     `Client::wait`"
                ),
            ));
        }
    }
    // A job whose output is `()` (or encodes as null) stores no result.
    let value = job.result.clone().unwrap_or(serde_json::Value::Null);
    serde_json::from_value(value).map_err(|e| {
        Error::corrupt(format!(
            "the result of job {id} (`{kind}`) does not decode into {}: {e}",
            std::any::type_name::<T>()
        ))
    })
}
