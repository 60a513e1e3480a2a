//! The traits job code implements: [`Job`] for async bodies, [`BlockingJob`] for synchronous
//! ones, and the per-enqueue [`EnqueueOptions`].
//!
//! A job reads application state (a pool, an HTTP client, the [`Client`](crate::Client)) with
//! `ctx.state::<T>()` and lists the types it reads in [`Job::required_state`], so a worker
//! without one refuses to start instead of failing jobs later; see `docs/jobs.md`.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use switchyard_core::{Clock, JobContext, JobError, NewJob, StateType};

/// A job type: its fields are its arguments (stored as JSON), `KIND` names its handler, and
/// `run` is its body. The output, when not `()`, is stored as the job's result.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use switchyard::{Job, JobContext, JobError};
///
/// #[derive(Serialize, Deserialize)]
/// struct SendEmail { to: String }
///
/// impl Job for SendEmail {
///     const KIND: &'static str = "send_email";
///     type Output = ();
///     async fn run(self, _ctx: JobContext) -> Result<(), JobError> {
///         println!("sending to {}", self.to);
///         Ok(())
///     }
/// }
/// ```
pub trait Job: Serialize + DeserializeOwned + Send + 'static {
    /// The kind name the handler is registered under. Stable across deploys.
    const KIND: &'static str;
    /// The job's output, stored as its result (`()` stores nothing).
    type Output: Serialize + Send + 'static;

    /// Default options for jobs of this type; `EnqueueOptions` given at enqueue override them.
    fn options(&self) -> EnqueueOptions {
        EnqueueOptions::default()
    }

    /// The application state types the body reads with `ctx.state::<T>()` (default: none).
    /// A worker, [`Switchyard::start`](crate::Switchyard::start) or a test harness whose
    /// registry lacks one of them refuses to start with an error naming the type, so
    /// `ctx.state::<T>()` of a listed type always finds it. The runtime's
    /// [`Client`](crate::Client) is always there and need not be listed.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use switchyard::{Job, JobContext, JobError, StateType};
    /// struct Mailer { from: String }
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Welcome { to: String }
    ///
    /// impl Job for Welcome {
    ///     const KIND: &'static str = "welcome";
    ///     type Output = String;
    ///     fn required_state() -> Vec<StateType> {
    ///         vec![StateType::of::<Mailer>()]
    ///     }
    ///     async fn run(self, ctx: JobContext) -> Result<String, JobError> {
    ///         let mailer = ctx.state::<Mailer>()?;
    ///         Ok(format!("{} -> {}", mailer.from, self.to))
    ///     }
    /// }
    /// ```
    fn required_state() -> Vec<StateType> {
        Vec::new()
    }

    /// The job body. Look at `ctx.cancelled()` in long loops: cancellation is co-operative.
    fn run(self, ctx: JobContext) -> impl Future<Output = Result<Self::Output, JobError>> + Send;
}

/// A job type with a synchronous body; it runs on the blocking thread pool, never on the event
/// loop.
pub trait BlockingJob: Serialize + DeserializeOwned + Send + 'static {
    /// The kind name the handler is registered under.
    const KIND: &'static str;
    /// The job's output, stored as its result.
    type Output: Serialize + Send + 'static;

    /// Default options for jobs of this type.
    fn options(&self) -> EnqueueOptions {
        EnqueueOptions::default()
    }

    /// The application state types the body reads (see [`Job::required_state`]).
    fn required_state() -> Vec<StateType> {
        Vec::new()
    }

    /// The job body.
    fn run(self, ctx: JobContext) -> Result<Self::Output, JobError>;
}

/// Options of one enqueue. Unset fields keep the job type's defaults, then Switchyard's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnqueueOptions {
    /// The queue (default `default`).
    pub queue: Option<String>,
    /// Higher runs first (default 0).
    pub priority: Option<i16>,
    /// Attempts before failing for good (default 20).
    pub max_attempts: Option<u32>,
    /// Not before this instant.
    pub run_at: Option<DateTime<Utc>>,
    /// Not before this long after the enqueue, by the client's clock (ignored when `run_at`
    /// is set).
    pub delay: Option<Duration>,
    /// While a live job has this key, enqueueing returns its id instead.
    pub unique_key: Option<String>,
    /// Per-attempt timeout.
    pub timeout: Option<Duration>,
    /// Labels.
    pub tags: Vec<String>,
}

impl EnqueueOptions {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }
    /// Sets the priority.
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = Some(priority);
        self
    }
    /// Sets the maximum attempts.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }
    /// Runs no earlier than `delay` after the enqueue. The time is taken when the job is
    /// enqueued, from the client's clock (a test's `TestClock` in `switchyard::testing`).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self.run_at = None;
        self
    }
    /// Runs no earlier than `at`.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self.delay = None;
        self
    }
    /// Sets the unique key.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }
    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// `self` with unset fields taken from `defaults` (a time, `run_at` or `delay`, counts as
    /// one field).
    pub fn or(self, defaults: EnqueueOptions) -> Self {
        let (run_at, delay) = if self.run_at.is_some() || self.delay.is_some() {
            (self.run_at, self.delay)
        } else {
            (defaults.run_at, defaults.delay)
        };
        Self {
            queue: self.queue.or(defaults.queue),
            priority: self.priority.or(defaults.priority),
            max_attempts: self.max_attempts.or(defaults.max_attempts),
            run_at,
            delay,
            unique_key: self.unique_key.or(defaults.unique_key),
            timeout: self.timeout.or(defaults.timeout),
            tags: if self.tags.is_empty() {
                defaults.tags
            } else {
                self.tags
            },
        }
    }

    /// Turns a relative `delay` into a `run_at` from `clock`'s now.
    pub fn resolve_delay(mut self, clock: &dyn Clock) -> Self {
        if let (None, Some(d)) = (self.run_at, self.delay.take()) {
            let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
            self.run_at = Some(
                clock
                    .now()
                    .checked_add_signed(d)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
            );
        }
        self
    }

    /// Applies these options to a new job (a `delay` still relative counts from the system
    /// clock's now).
    pub fn apply(self, mut job: NewJob) -> NewJob {
        let this = self.resolve_delay(&switchyard_core::SystemClock);
        if let Some(q) = this.queue {
            job.queue = q;
        }
        if let Some(p) = this.priority {
            job.priority = p;
        }
        if let Some(m) = this.max_attempts {
            job.max_attempts = m;
        }
        job.run_at = this.run_at.or(job.run_at);
        job.unique_key = this.unique_key.or(job.unique_key);
        if let Some(t) = this.timeout {
            job.timeout_ms = Some(t.as_millis() as u64);
        }
        job.tags.extend(this.tags);
        job
    }
}

/// The examples of `docs/jobs.md`, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/jobs.md")]
pub struct JobsGuide;

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::TestClock;

    #[test]
    fn a_delay_counts_from_the_clock_it_is_resolved_with() {
        let clock = TestClock::new();
        let opts = EnqueueOptions::new()
            .delay(Duration::from_secs(30))
            .resolve_delay(&clock);
        assert_eq!(
            opts.run_at,
            Some(clock.now() + chrono::Duration::seconds(30))
        );
        assert_eq!(opts.delay, None);
        // The last of `delay` and `run_at` wins.
        let at = clock.now() + chrono::Duration::days(1);
        let opts = EnqueueOptions::new()
            .delay(Duration::from_secs(5))
            .run_at(at);
        assert_eq!(opts.resolve_delay(&clock).run_at, Some(at));
        // A time given at enqueue overrides the type's default time, either kind.
        let mine = EnqueueOptions::new().delay(Duration::from_secs(1));
        let merged = mine.or(EnqueueOptions::new().run_at(at));
        assert_eq!(merged.run_at, None);
        assert_eq!(merged.delay, Some(Duration::from_secs(1)));
        let merged = EnqueueOptions::new().or(EnqueueOptions::new().delay(Duration::from_secs(2)));
        assert_eq!(merged.delay, Some(Duration::from_secs(2)));
        // A huge delay saturates instead of overflowing.
        let far = EnqueueOptions::new()
            .delay(Duration::MAX)
            .resolve_delay(&clock);
        assert_eq!(far.run_at, Some(DateTime::<Utc>::MAX_UTC));
    }
}
