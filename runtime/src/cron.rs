//! The cron plugin: a leaderless [`Scheduler`] that fires the schedules stored in
//! [`Storage`], and the `[cron]` and `[schedules.<id>]` configuration sections.
//!
//! Every process with the plugin on runs a scheduler (no leader): each tick it reads the
//! storage's clock and the schedule records, and fires the due instants of each through
//! [`switchyard_core::schedule::fire_due`], whose storage step advances the cursor by
//! compare-and-set together with the insertion of the jobs keyed `cron:{id}:{instant}`. Two
//! schedulers that fire one schedule at once: one wins, the other sees a conflict and reads
//! again. A scheduler that dies mid-tick leaves all or nothing. It fires every stored schedule,
//! not only those its process declares, so a process that declares none still fires the
//! others' (and never removes them). See `docs/cron.md`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use switchyard_core::schedule::{self, Registered};
use switchyard_core::{
    system_clock, CatchUp, Error, JobTemplate, Overlap, Result, Schedule, ScheduleDef, SharedClock,
    Storage,
};

use crate::shutdown::Shutdown;

/// `[cron]`: the cron plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CronSection {
    /// Run a scheduler in this process (default true). Off: schedules declared here are
    /// still registered, and other processes fire them.
    pub enabled: bool,
    /// Longest sleep between two looks at the schedules, in milliseconds (edits, pauses and
    /// new schedules are seen within it); a scheduler also wakes at the next due instant.
    pub poll_interval_ms: u64,
}

impl Default for CronSection {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_interval_ms: 1000,
        }
    }
}

/// `[schedules.<id>]`: one schedule declared in configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSection {
    /// Cron expression (5 or 6 fields, an alias, or `@every <duration>`).
    pub expr: String,
    /// IANA time zone (default `UTC`).
    pub tz: Option<String>,
    /// Job kind.
    pub kind: String,
    /// Job queue (default `default`).
    pub queue: Option<String>,
    /// Job payload (a table; default empty).
    pub payload: Option<serde_json::Value>,
    /// Job priority.
    pub priority: Option<i16>,
    /// Job attempt limit.
    pub max_attempts: Option<u32>,
    /// Job timeout per attempt, a duration such as `"30s"`.
    pub timeout: Option<String>,
    /// Job tags.
    pub tags: Vec<String>,
    /// `allow` (default), `skip` or `buffer_one`.
    pub overlap: Option<String>,
    /// `none`, `latest` (default) or `all`.
    pub catch_up: Option<String>,
    /// With `catch_up = "all"`: how far back, a duration (default `"1h"`).
    pub catch_up_window: Option<String>,
    /// With `catch_up = "all"`: most jobs per evaluation (default 100).
    pub catch_up_max: Option<u32>,
    /// Delay each job's start by up to this, a duration such as `"10s"`.
    pub jitter: Option<String>,
}

fn duration(key: &str, raw: &str) -> Result<Duration> {
    humantime::parse_duration(raw).map_err(|e| {
        Error::config(format!(
            "key `{key}`: `{raw}` is not a duration ({e}); accepted: a duration such as \
             \"30s\", \"15m\" or \"1h\""
        ))
    })
}

impl ScheduleSection {
    /// The definition of schedule `id`, checked: a bad field is an error naming its key
    /// (`schedules.<id>.<field>`) and what it accepts.
    pub fn to_def(&self, id: &str) -> Result<ScheduleDef> {
        let key = |f: &str| format!("schedules.{id}.{f}");
        let mut job = JobTemplate::new(
            self.kind.clone(),
            self.payload.clone().unwrap_or(serde_json::json!({})),
        );
        if let Some(q) = &self.queue {
            job.queue = q.clone();
        }
        if let Some(p) = self.priority {
            job.priority = p;
        }
        if let Some(m) = self.max_attempts {
            job.max_attempts = m;
        }
        if let Some(t) = &self.timeout {
            job.timeout_ms = Some(duration(&key("timeout"), t)?.as_millis() as u64);
        }
        job.tags = self.tags.clone();
        let mut def = ScheduleDef::new(id, self.expr.clone(), job);
        if let Some(tz) = &self.tz {
            def.tz = tz.clone();
        }
        if let Some(o) = &self.overlap {
            def.overlap = o.parse().map_err(|_| {
                Error::config(format!(
                    "key `{}`: `{o}` is not a policy; accepted: {}",
                    key("overlap"),
                    Overlap::ACCEPTED
                ))
            })?;
        }
        def.catch_up = match self.catch_up.as_deref() {
            None | Some("latest") => CatchUp::Latest,
            Some("none") => CatchUp::None,
            Some("all") => CatchUp::All {
                window_ms: match &self.catch_up_window {
                    Some(w) => duration(&key("catch_up_window"), w)?.as_millis() as u64,
                    None => 3_600_000,
                },
                max: self.catch_up_max.unwrap_or(100),
            },
            Some(other) => {
                return Err(Error::config(format!(
                    "key `{}`: `{other}` is not a policy; accepted: `none`, `latest` or `all` \
                     (with `catch_up_window` and `catch_up_max`)",
                    key("catch_up")
                )))
            }
        };
        if let Some(j) = &self.jitter {
            def.jitter_ms = duration(&key("jitter"), j)?.as_millis() as u64;
        }
        Schedule::new(def.clone())
            .map_err(|e| Error::config(format!("key `schedules.{id}`: {}", e.message())))?;
        Ok(def)
    }
}

/// The definitions of `[schedules.*]`, checked.
pub fn defs_from_config(sections: &BTreeMap<String, ScheduleSection>) -> Result<Vec<ScheduleDef>> {
    sections.iter().map(|(id, s)| s.to_def(id)).collect()
}

/// Registers `defs` (see [`schedule::register`]) and logs, for each stored definition that
/// differed, the named warning `schedule_definition_conflict`: this instance's definition
/// replaced another's (two deployments disagree, or a deploy changed it). Returns what
/// happened to each.
pub async fn register(storage: &dyn Storage, defs: &[ScheduleDef]) -> Result<Vec<Registered>> {
    let out = schedule::register(storage, defs).await?;
    for (def, r) in defs.iter().zip(&out) {
        match r {
            Registered::Updated { previous } => tracing::warn!(
                warning = "schedule_definition_conflict",
                schedule = %def.id,
                stored = %serde_json::to_string(previous).unwrap_or_default(),
                declared = %serde_json::to_string(def).unwrap_or_default(),
                "schedule_definition_conflict: the stored definition of schedule `{}` differs \
                 from this instance's; this instance's replaces it",
                def.id
            ),
            Registered::Inserted => tracing::info!(schedule = %def.id, "schedule registered"),
            Registered::Unchanged => {}
        }
    }
    Ok(out)
}

/// What one [`Scheduler::tick`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// The storage's time the tick planned with.
    pub now: Option<DateTime<Utc>>,
    /// Jobs inserted.
    pub inserted: usize,
    /// Schedules another scheduler fired first (or that changed while read).
    pub conflicts: usize,
    /// The earliest next instant of any active schedule.
    pub next_due: Option<DateTime<Utc>>,
}

/// A leaderless scheduler over one storage. Run any number of them, in one process or many.
#[derive(Debug)]
pub struct Scheduler {
    storage: Arc<dyn Storage>,
    host_clock: SharedClock,
    poll: Duration,
    compiled: HashMap<String, Schedule>,
    /// Ids of stored definitions this build cannot use, already logged.
    invalid: std::collections::HashSet<String>,
}

impl Scheduler {
    /// A scheduler over `storage`, polling every second at most.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self {
            storage,
            host_clock: system_clock(),
            poll: Duration::from_secs(1),
            compiled: HashMap::new(),
            invalid: std::collections::HashSet::new(),
        }
    }

    /// The host's clock, used only to time the sleep until the next instant (measured
    /// against the storage's clock at each tick, so a skewed host clock changes nothing).
    pub fn with_host_clock(mut self, clock: SharedClock) -> Self {
        self.host_clock = clock;
        self
    }

    /// Longest sleep between ticks.
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll.max(Duration::from_millis(10));
        self
    }

    /// Fires what is due now, by the storage's clock. Errors of one schedule are logged and
    /// do not stop the others.
    pub async fn tick(&mut self) -> Result<TickReport> {
        let now = self.storage.storage_now().await?;
        let records = self.storage.list_schedules().await?;
        let mut report = TickReport {
            now: Some(now),
            ..TickReport::default()
        };
        self.compiled
            .retain(|id, _| records.iter().any(|r| &r.def.id == id));
        for record in &records {
            let stale = self
                .compiled
                .get(&record.def.id)
                .is_none_or(|s| s.def() != &record.def);
            if stale {
                match Schedule::new(record.def.clone()) {
                    Ok(s) => {
                        self.compiled.insert(record.def.id.clone(), s);
                    }
                    Err(e) => {
                        // Said once per definition, not every tick.
                        if self.invalid.insert(record.def.id.clone()) {
                            tracing::warn!(schedule = %record.def.id, error = %e, "stored schedule is not valid; skipped");
                        }
                        continue;
                    }
                }
            }
            let Some(schedule) = self.compiled.get(&record.def.id) else {
                continue;
            };
            if record.paused {
                continue;
            }
            match schedule::fire_due(self.storage.as_ref(), schedule, record, now).await {
                Ok(r) => {
                    report.inserted += r.inserted.len();
                    if r.conflict {
                        report.conflicts += 1;
                    }
                    if r.skipped > 0 {
                        tracing::info!(schedule = %record.def.id, skipped = r.skipped, "missed instants skipped by the catch-up policy");
                    }
                    let cursor = if r.conflict { record.cursor } else { now };
                    let next = schedule.next_after(cursor.max(record.cursor));
                    report.next_due = match (report.next_due, next) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                Err(e) => {
                    tracing::warn!(schedule = %record.def.id, error = %e, "firing the schedule failed")
                }
            }
        }
        Ok(report)
    }

    /// Ticks until `shutdown` is requested, waking at the next due instant (or after the poll
    /// interval, whichever is first).
    pub async fn run(mut self, shutdown: Shutdown) {
        loop {
            if shutdown.is_graceful() {
                return;
            }
            let sleep = match self.tick().await {
                Ok(r) => {
                    let host_now = self.host_clock.now();
                    match (r.now, r.next_due) {
                        (Some(storage_now), Some(next)) => {
                            // The host time at which the storage's clock reaches `next`.
                            let offset = storage_now - host_now;
                            let wake = next - offset;
                            (wake - self.host_clock.now())
                                .to_std()
                                .unwrap_or(Duration::ZERO)
                                .min(self.poll)
                        }
                        _ => self.poll,
                    }
                }
                Err(e) if e.kind() == switchyard_core::ErrorKind::Unsupported => {
                    tracing::info!(error = %e, "the storage keeps no schedules; the cron plugin stops");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler tick failed");
                    self.poll
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep + Duration::from_millis(1)) => {}
                _ = shutdown.graceful_requested() => return,
            }
        }
    }
}

/// Registers `defs` (retrying while the storage is unreachable) and then, when `run` is on,
/// runs a scheduler until `shutdown`. What [`Switchyard::start`](crate::Switchyard::start)
/// spawns.
pub async fn run_plugin(
    storage: Arc<dyn Storage>,
    defs: Vec<ScheduleDef>,
    config: CronSection,
    shutdown: Shutdown,
) {
    let poll = Duration::from_millis(config.poll_interval_ms.max(10));
    if !defs.is_empty() {
        loop {
            match register(storage.as_ref(), &defs).await {
                Ok(_) => break,
                Err(e) if e.kind() == switchyard_core::ErrorKind::Unavailable => {
                    tracing::warn!(error = %e, "registering schedules failed; retrying");
                }
                Err(e) => {
                    tracing::error!(error = %e, "registering schedules failed");
                    break;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.graceful_requested() => return,
            }
        }
    }
    if config.enabled {
        Scheduler::new(storage)
            .with_poll_interval(poll)
            .run(shutdown)
            .await;
    }
}

/// Lateness of a job: how long after its scheduled instant (named by its unique key) it
/// started, or `None` for a job that is not a schedule's or has not started.
pub fn lateness(job: &switchyard_core::JobRecord) -> Option<TimeDelta> {
    let (_, instant) = schedule::instant_of_key(job.unique_key.as_deref()?)?;
    Some(job.started_at? - instant)
}
