//! Flow control kept in Storage: a queue's stored settings ([`QueueFlow`]: paused, paused
//! until, global concurrency and rate limits and their [`Partition`]), and bulk actions by
//! filter ([`BulkRequest`], [`BulkReport`]). Semantics: `docs/flow-control.md`.
//!
//! The storage methods are the `flow` area of [`Storage`]:
//! [`set_queue_flow`](crate::Storage::set_queue_flow),
//! [`queue_flows`](crate::Storage::queue_flows),
//! [`cancel_where`](crate::Storage::cancel_where) and
//! [`retry_where`](crate::Storage::retry_where).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::job::{JobId, JobState};
use crate::storage::{CancelOutcome, JobFilter, ListOrder, RetryOutcome, Storage};

/// The stored flow-control settings of one queue. A queue with no stored record has the
/// defaults (not paused, no limits), and its claims run the storage's usual statement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueFlow {
    /// The queue.
    pub queue: String,
    /// No job of the queue is claimed while set: pending jobs wait (`available` or
    /// `scheduled`, attempts untouched); running ones finish.
    pub paused: bool,
    /// Paused until this instant (set by a handler's
    /// [`JobError::rate_limited`](crate::JobError::rate_limited)); a past value means nothing.
    pub paused_until: Option<DateTime<Utc>>,
    /// Global concurrency limit: at most this many jobs of the queue (of each partition, see
    /// `partition`) running with a valid lease across every process. A slot is a lease: a
    /// killed worker's slots free when its leases expire. `None`: no limit.
    pub concurrency: Option<u32>,
    /// Global rate limit: at most `limit` attempt starts in any sliding window of `period`,
    /// across every process (per partition). `None`: no limit.
    pub rate: Option<RateLimit>,
    /// What `concurrency` and `rate` count per: the whole queue, or each job kind apart.
    pub partition: Partition,
    /// When the record was last written (the storage's clock); `None` on a record not read
    /// from Storage.
    pub updated_at: Option<DateTime<Utc>>,
}

impl QueueFlow {
    /// The defaults for `queue`: not paused.
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            ..Self::default()
        }
    }

    /// Whether the record holds nothing but the defaults (Storage need not keep it).
    pub fn is_default(&self) -> bool {
        !self.paused
            && self.concurrency.is_none()
            && self.rate.is_none()
            && self.paused_until.is_none_or(|t| t <= Utc::now())
    }

    /// Whether no job of the queue may be claimed at `now`: paused, or paused until later.
    pub fn is_paused_at(&self, now: DateTime<Utc>) -> bool {
        self.paused || self.paused_until.is_some_and(|t| t > now)
    }
}

/// A strict sliding-window rate limit: at most `limit` attempt starts in any interval of
/// `period_ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Attempt starts allowed per window (1 or more).
    pub limit: u32,
    /// The window, in milliseconds (1 ms to 1 day).
    pub period_ms: u64,
}

/// The longest rate-limit window, one day in milliseconds.
pub const MAX_RATE_PERIOD_MS: u64 = 86_400_000;

/// How a limit partitions a queue's jobs. Written `none`, `kind` or `payload.<field>` (in the
/// CLI, the configuration and the stored record).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Partition {
    /// One partition: the whole queue.
    #[default]
    None,
    /// One partition per job kind.
    Kind,
    /// One partition per value of this top-level field of the payload (a tenant, a customer,
    /// an API key); jobs without the field share the partition of the empty value. The name
    /// is 1 to 64 letters, digits, `_` or `-`.
    Payload(String),
}

impl Partition {
    /// The partition of a job of this kind and payload: `""` for [`Partition::None`], the
    /// kind, or the field's value (a string as it is, another value as its JSON text, absent
    /// or `null` as `""`).
    pub fn key_of(&self, kind: &str, payload: &serde_json::Value) -> String {
        match self {
            Partition::None => String::new(),
            Partition::Kind => kind.to_string(),
            Partition::Payload(f) => match payload.get(f) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
            },
        }
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Partition::None => f.write_str("none"),
            Partition::Kind => f.write_str("kind"),
            Partition::Payload(field) => write!(f, "payload.{field}"),
        }
    }
}

impl From<Partition> for String {
    fn from(p: Partition) -> String {
        p.to_string()
    }
}

impl TryFrom<String> for Partition {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl std::str::FromStr for Partition {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let accepted = "accepted: none, kind, payload.<field> (a field name of 1 to 64 letters, \
                        digits, `_` or `-`)";
        match s {
            "none" => Ok(Partition::None),
            "kind" => Ok(Partition::Kind),
            other => match other.strip_prefix("payload.") {
                Some(f)
                    if !f.is_empty()
                        && f.len() <= 64
                        && f.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
                {
                    Ok(Partition::Payload(f.to_string()))
                }
                _ => Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("partition `{other}` is not known; {accepted}"),
                )),
            },
        }
    }
}

/// Checks a record before it is stored: the queue is named. An empty name is
/// `InvalidInput`.
pub fn check_flow(flow: &QueueFlow) -> Result<()> {
    if flow.queue.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "queue settings need a queue name; got an empty one",
        ));
    }
    if let Some(r) = flow.rate {
        if r.limit == 0 || r.period_ms == 0 || r.period_ms > MAX_RATE_PERIOD_MS {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "queue `{}`: rate limit {} per {} ms is out of range; give a limit of 1 \
                     or more per 1 to {MAX_RATE_PERIOD_MS} ms",
                    flow.queue, r.limit, r.period_ms
                ),
            ));
        }
    }
    if flow.concurrency == Some(0) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "queue `{}`: a concurrency limit of 0 would hold every job; give 1 or more \
                 (or pause the queue)",
                flow.queue
            ),
        ));
    }
    Ok(())
}

/// The most jobs one bulk action may touch.
pub const MAX_BULK_BOUND: usize = 100_000;

/// A bulk action by filter: which jobs, at most how many, and whether to change them.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkRequest {
    /// The jobs: `states`, `queue`, `kind`, `created_after`, `created_before` are used
    /// (`after`, `limit` and `order` are not: jobs are taken oldest first). Empty `states`
    /// means every state the action applies to.
    pub filter: JobFilter,
    /// At most this many jobs are matched (1 ..= [`MAX_BULK_BOUND`]); the report says when
    /// more matched.
    pub bound: usize,
    /// Report what would be done, change nothing.
    pub dry_run: bool,
}

/// What a bulk action did (or, on a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkReport {
    /// The matched jobs, oldest first, at most the bound.
    pub ids: Vec<JobId>,
    /// How many of them changed (0 on a dry run). A job that changed state between the match
    /// and the action (finished, or claimed) is not counted.
    pub changed: u64,
    /// More jobs matched than the bound allowed; run the action again for the rest.
    pub truncated: bool,
    /// Nothing was changed.
    pub dry_run: bool,
}

/// States a bulk cancel applies to.
pub const CANCELLABLE: [JobState; 4] = [
    JobState::Scheduled,
    JobState::Available,
    JobState::Retrying,
    JobState::Running,
];

/// States a bulk retry applies to by default (`completed` only when asked for by name).
pub const RETRYABLE_BY_DEFAULT: [JobState; 3] =
    [JobState::Failed, JobState::Cancelled, JobState::Dropped];

/// States a bulk retry accepts.
pub const RETRYABLE: [JobState; 4] = [
    JobState::Failed,
    JobState::Cancelled,
    JobState::Dropped,
    JobState::Completed,
];

/// Which bulk action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    /// Cancel pending and running jobs.
    Cancel,
    /// Run finished jobs again.
    Retry,
}

impl BulkAction {
    fn name(self) -> &'static str {
        match self {
            BulkAction::Cancel => "cancel",
            BulkAction::Retry => "retry",
        }
    }

    fn accepted(self) -> &'static [JobState] {
        match self {
            BulkAction::Cancel => &CANCELLABLE,
            BulkAction::Retry => &RETRYABLE,
        }
    }

    fn default_states(self) -> &'static [JobState] {
        match self {
            BulkAction::Cancel => &CANCELLABLE,
            BulkAction::Retry => &RETRYABLE_BY_DEFAULT,
        }
    }
}

fn state_names(states: &[JobState]) -> String {
    states
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a bulk request and returns the filter it runs with (states defaulted, oldest
/// first). A bound of 0 or over [`MAX_BULK_BOUND`], or a state the action does not apply to,
/// is `InvalidInput` naming what is accepted.
pub fn check_bulk(action: BulkAction, req: &BulkRequest) -> Result<JobFilter> {
    if req.bound == 0 || req.bound > MAX_BULK_BOUND {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "bulk {}: bound {} is out of range; give 1 to {MAX_BULK_BOUND} jobs",
                action.name(),
                req.bound
            ),
        ));
    }
    let accepted = action.accepted();
    if let Some(bad) = req.filter.states.iter().find(|s| !accepted.contains(s)) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "bulk {}: state `{}` cannot be {}; accepted states: {}",
                action.name(),
                bad.as_str(),
                match action {
                    BulkAction::Cancel => "cancelled",
                    BulkAction::Retry => "retried",
                },
                state_names(accepted)
            ),
        ));
    }
    let mut filter = req.filter.clone();
    if filter.states.is_empty() {
        filter.states = action.default_states().to_vec();
    }
    filter.after = None;
    filter.order = ListOrder::Asc;
    Ok(filter)
}

/// The portable bulk action the `Storage` defaults use: pages through
/// [`list`](Storage::list) oldest first up to the bound, then (unless a dry run) cancels or
/// retries each matched job with [`cancel`](Storage::cancel) / [`retry`](Storage::retry),
/// each of which is atomic and checks the job's state again.
pub async fn bulk_by_listing<S: Storage + ?Sized>(
    storage: &S,
    action: BulkAction,
    req: &BulkRequest,
) -> Result<BulkReport> {
    let mut filter = check_bulk(action, req)?;
    let mut ids: Vec<JobId> = Vec::new();
    let mut truncated = false;
    loop {
        // One more than the bound, to tell whether more matched.
        let want = req.bound + 1 - ids.len();
        filter.limit = want.min(1000);
        let page = storage.list(&filter).await?;
        let full = page.len() == filter.limit;
        for job in &page {
            if ids.len() == req.bound {
                truncated = true;
                break;
            }
            ids.push(job.id);
        }
        if truncated || !full {
            break;
        }
        filter.after = page.last().map(|j| j.id);
    }
    let mut changed = 0;
    if !req.dry_run {
        for id in &ids {
            let did = match action {
                BulkAction::Cancel => matches!(
                    storage.cancel(*id).await?,
                    CancelOutcome::Cancelled | CancelOutcome::Requested
                ),
                BulkAction::Retry => storage.retry(*id).await? == RetryOutcome::Requeued,
            };
            if did {
                changed += 1;
            }
        }
    }
    Ok(BulkReport {
        ids,
        changed,
        truncated,
        dry_run: req.dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(states: Vec<JobState>, bound: usize) -> BulkRequest {
        BulkRequest {
            filter: JobFilter {
                states,
                ..JobFilter::default()
            },
            bound,
            dry_run: false,
        }
    }

    #[test]
    fn bulk_checks_name_what_is_accepted() {
        let e = check_bulk(BulkAction::Cancel, &req(vec![], 0)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("1 to 100000"), "{e}");
        let e = check_bulk(BulkAction::Cancel, &req(vec![JobState::Completed], 5)).unwrap_err();
        assert!(e.to_string().contains("`completed`"), "{e}");
        assert!(e.to_string().contains("scheduled, available"), "{e}");
        let e = check_bulk(BulkAction::Retry, &req(vec![JobState::Running], 5)).unwrap_err();
        assert!(e.to_string().contains("`running`"), "{e}");
        let f = check_bulk(BulkAction::Retry, &req(vec![], 5)).unwrap();
        assert_eq!(f.states, RETRYABLE_BY_DEFAULT.to_vec());
        assert_eq!(f.order, ListOrder::Asc);
    }

    #[test]
    fn a_default_flow_is_default() {
        let mut f = QueueFlow::new("q");
        assert!(f.is_default());
        f.paused = true;
        assert!(!f.is_default());
    }
}
