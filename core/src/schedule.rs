//! Schedules (cron): periodic jobs stored as records in [`Storage`](crate::Storage) and fired
//! by any number of schedulers, exactly once per (schedule, instant).
//!
//! This module holds the pure logic and the operations every scheduler, CLI and test shares:
//!
//! * [`ScheduleDef`], a schedule's definition (expression, time zone, job template, policies),
//!   and [`Schedule`], the definition checked and compiled ([`Schedule::new`] refuses a bad
//!   expression or time zone, naming the field and the accepted forms);
//! * [`Schedule::plan`], which instants are due between a cursor and "now" under the
//!   catch-up policy (DST rules are those of the `croner` crate: a local time that does not
//!   exist fires once at the transition, a repeated one fires once);
//! * [`fire_due`], [`register`], [`set_paused`], [`trigger`]: the plan applied through the
//!   Storage's schedule area, whose one atomic step
//!   ([`fire_schedule`](crate::Storage::fire_schedule)) advances the cursor by compare-and-set
//!   and inserts the jobs keyed `cron:{id}:{instant}` together.
//!
//! Times are the storage's ([`Storage::storage_now`](crate::Storage::storage_now)), never the
//! host's, so a host whose clock is off neither fires early nor twice.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::job::{JobId, NewJob, DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY, DEFAULT_QUEUE};
use crate::storage::{EnqueueOutcome, Storage};

/// An instant evaluated at most this long after it is "on time"; later, it was missed (the
/// catch-up policy decides) and its job is marked as a catch-up.
pub const ON_TIME: Duration = Duration::from_secs(2);

/// Most instants one evaluation looks at (a long-stopped second-level schedule under
/// `catch_up = all` with a huge window must not loop for ever).
const MAX_SCAN: usize = 10_000;

/// What a schedule does when a tick comes while a job it inserted earlier has not finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Insert a job every tick, whatever the earlier ones are doing (the default).
    #[default]
    Allow,
    /// Insert nothing while the schedule's last job is not finished (pending or running).
    Skip,
    /// Hold at most one pending job: insert nothing while the schedule's last job is still
    /// waiting to start; a running one does not hold the tick back.
    BufferOne,
}

impl Overlap {
    /// The accepted spellings, for error messages.
    pub const ACCEPTED: &'static str = "`allow`, `skip` or `buffer_one`";
}

impl FromStr for Overlap {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "allow" => Ok(Self::Allow),
            "skip" => Ok(Self::Skip),
            "buffer_one" => Ok(Self::BufferOne),
            other => Err(Error::invalid(format!(
                "schedule field `overlap`: `{other}` is not a policy; accepted: {}",
                Self::ACCEPTED
            ))),
        }
    }
}

/// Which missed instants (those more than [`ON_TIME`] old when a scheduler first looks at
/// them: every scheduler was down, or the schedule was paused) still get a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// None: a missed instant is skipped.
    None,
    /// Only the latest missed instant gets a job (the default).
    #[default]
    Latest,
    /// Every missed instant within `window_ms` of now gets a job, in order, at most `max` of
    /// them (the latest ones); older ones are skipped and counted.
    All {
        /// How far back, in milliseconds.
        window_ms: u64,
        /// Most jobs one evaluation inserts.
        max: u32,
    },
}

/// The job a schedule inserts at each instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobTemplate {
    /// The job kind.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// Its payload.
    pub payload: serde_json::Value,
    /// Its priority.
    pub priority: i16,
    /// Its attempt limit.
    pub max_attempts: u32,
    /// Its timeout per attempt, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Its tags.
    pub tags: Vec<String>,
}

impl Default for JobTemplate {
    fn default() -> Self {
        Self {
            kind: String::new(),
            queue: DEFAULT_QUEUE.into(),
            payload: serde_json::json!({}),
            priority: DEFAULT_PRIORITY,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout_ms: None,
            tags: Vec::new(),
        }
    }
}

impl JobTemplate {
    /// A template for `kind` with `payload`, other fields at their defaults.
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            kind: kind.into(),
            payload,
            ..Self::default()
        }
    }
}

/// A schedule's definition, as declared in code or in `switchyard.toml` and stored by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDef {
    /// Stable, user-given id: letters, digits, `_`, `-`, `.`; 1 to 100 characters.
    pub id: String,
    /// A cron expression of 5 fields (minute first) or 6 (second first), an alias (`@hourly`,
    /// `@daily`, `@weekly`, `@monthly`, `@yearly`), or `@every <duration>` (e.g. `@every 90s`,
    /// at least 1 s, counted from the Unix epoch).
    pub expr: String,
    /// IANA time zone the expression is read in (`Europe/Paris`); default `UTC`.
    #[serde(default = "utc")]
    pub tz: String,
    /// The job inserted at each instant.
    pub job: JobTemplate,
    /// Overlap policy.
    #[serde(default)]
    pub overlap: Overlap,
    /// Catch-up policy.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Each job's `run_at` is its instant plus a delay in `[0, jitter_ms)`, the same for
    /// every scheduler (derived from the id and instant).
    #[serde(default)]
    pub jitter_ms: u64,
}

fn utc() -> String {
    "UTC".into()
}

impl ScheduleDef {
    /// A definition with the default time zone (UTC) and policies.
    pub fn new(id: impl Into<String>, expr: impl Into<String>, job: JobTemplate) -> Self {
        Self {
            id: id.into(),
            expr: expr.into(),
            tz: utc(),
            job,
            overlap: Overlap::default(),
            catch_up: CatchUp::default(),
            jitter_ms: 0,
        }
    }

    /// Sets the time zone.
    pub fn with_tz(mut self, tz: impl Into<String>) -> Self {
        self.tz = tz.into();
        self
    }

    /// Sets the overlap policy.
    pub fn with_overlap(mut self, overlap: Overlap) -> Self {
        self.overlap = overlap;
        self
    }

    /// Sets the catch-up policy.
    pub fn with_catch_up(mut self, catch_up: CatchUp) -> Self {
        self.catch_up = catch_up;
        self
    }

    /// Sets the jitter.
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter_ms = jitter.as_millis() as u64;
        self
    }

    /// Whether `other` fires at other instants (expression or time zone differ).
    pub fn timing_differs(&self, other: &ScheduleDef) -> bool {
        self.expr.trim() != other.expr.trim() || self.tz != other.tz
    }
}

/// When a schedule fires.
#[derive(Debug, Clone)]
enum Timing {
    Cron(Box<Cron>),
    Every(TimeDelta),
}

/// A checked, compiled [`ScheduleDef`].
#[derive(Debug, Clone)]
pub struct Schedule {
    def: ScheduleDef,
    timing: Timing,
    tz: Tz,
}

/// The accepted forms of `expr`, for error messages.
pub const EXPR_FORMS: &str = "5 fields `min hour day-of-month month day-of-week`, 6 fields with \
     seconds first, an alias (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`), or \
     `@every <duration>` such as `@every 30s` (at least 1s)";

impl Schedule {
    /// Checks and compiles `def`: the id, the expression, the time zone, the job kind and the
    /// policies. The error names the field and what it accepts.
    pub fn new(def: ScheduleDef) -> Result<Self> {
        let id = &def.id;
        if id.is_empty()
            || id.len() > 100
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(Error::invalid(format!(
                "schedule field `id`: `{id}` is not accepted; accepted: 1 to 100 letters, \
                 digits, `_`, `-` or `.`"
            )));
        }
        let tz: Tz = def.tz.parse().map_err(|_| {
            Error::invalid(format!(
                "schedule `{id}` field `tz`: `{}` is not an IANA time zone; accepted: a name \
                 of the IANA database such as `UTC`, `Europe/Paris` or `America/New_York`",
                def.tz
            ))
        })?;
        let timing = parse_expr(&def.expr).map_err(|why| {
            Error::invalid(format!(
                "schedule `{id}` field `expr`: `{}` {why}; accepted: {EXPR_FORMS}",
                def.expr
            ))
        })?;
        if def.job.kind.trim().is_empty() {
            return Err(Error::invalid(format!(
                "schedule `{id}` field `job.kind`: empty; accepted: the kind of a registered job"
            )));
        }
        if def.job.queue.trim().is_empty() {
            return Err(Error::invalid(format!(
                "schedule `{id}` field `job.queue`: empty; accepted: a queue name"
            )));
        }
        if let CatchUp::All { window_ms, max } = def.catch_up {
            if window_ms < 1000 || max == 0 {
                return Err(Error::invalid(format!(
                    "schedule `{id}` field `catch_up`: `all` needs a window of at least 1s and \
                     a max of at least 1 (got {window_ms} ms, max {max})"
                )));
            }
        }
        Ok(Self { def, timing, tz })
    }

    /// The definition.
    pub fn def(&self) -> &ScheduleDef {
        &self.def
    }

    /// The first instant strictly after `t`, or `None` when the expression never matches
    /// again.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.timing {
            Timing::Every(step) => {
                let step_ms = step.num_milliseconds();
                let ms = t.timestamp_millis();
                let next = (ms.div_euclid(step_ms) + 1) * step_ms;
                Utc.timestamp_millis_opt(next).single()
            }
            Timing::Cron(cron) => {
                // Cron instants are whole seconds: start from `t`'s second.
                let base = whole_second(t).with_timezone(&self.tz);
                cron.find_next_occurrence(&base, false)
                    .ok()
                    .map(|d| d.with_timezone(&Utc))
            }
        }
    }

    /// The instants in `(after, until]`, in order, at most `limit`.
    pub fn instants(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = after;
        while out.len() < limit {
            match self.next_after(t) {
                Some(n) if n <= until => {
                    out.push(n);
                    t = n;
                }
                _ => break,
            }
        }
        out
    }

    /// Which instants in `(cursor, now]` get a job under the catch-up policy, and the cursor
    /// that settles them all. `None` when no instant is due (nothing to write).
    ///
    /// An instant more than [`ON_TIME`] before `now` was missed: `none` skips it, `latest`
    /// keeps only the latest instant, `all` keeps those within the window, the latest `max`.
    /// With an overlap policy other than `allow` only the last kept instant is kept (one job
    /// per evaluation at most).
    pub fn plan(&self, cursor: DateTime<Utc>, now: DateTime<Utc>) -> Option<Plan> {
        let first = self.next_after(cursor)?;
        if first > now {
            return None;
        }
        let on_time = now - TimeDelta::from_std(ON_TIME).unwrap_or_default();
        let missed = |t: DateTime<Utc>| t < on_time;
        let (mut kept, latest, skipped) = match self.def.catch_up {
            CatchUp::All { window_ms, max } => {
                let from = now - TimeDelta::milliseconds(window_ms as i64);
                let start = if cursor < from { from } else { cursor };
                // Instants before the window are skipped: count them (up to the scan limit).
                let before = if start > cursor {
                    self.instants(cursor, start, MAX_SCAN).len() as u64
                } else {
                    0
                };
                let all = self.instants(start, now, MAX_SCAN);
                let latest = *all.last().unwrap_or(&first);
                let keep_from = all.len().saturating_sub(max as usize);
                let skipped = before + keep_from as u64;
                (all[keep_from..].to_vec(), latest, skipped)
            }
            CatchUp::Latest | CatchUp::None => {
                let latest = self.latest_at_or_before(first, now);
                // The due instants before the latest (counted up to the scan limit).
                let skipped_before = if first < latest {
                    self.instants(cursor, latest, MAX_SCAN)
                        .len()
                        .saturating_sub(1) as u64
                } else {
                    0
                };
                let keep = self.def.catch_up == CatchUp::Latest || !missed(latest);
                let kept = if keep { vec![latest] } else { Vec::new() };
                let skipped = skipped_before + if keep { 0 } else { 1 };
                (kept, latest, skipped)
            }
        };
        if self.def.overlap != Overlap::Allow && kept.len() > 1 {
            kept = kept.split_off(kept.len() - 1);
        }
        Some(Plan {
            fire: kept.into_iter().map(|t| (t, missed(t))).collect(),
            cursor: latest,
            skipped,
        })
    }

    /// The last instant at or before `now`, given `first`, an instant at or before it.
    fn latest_at_or_before(&self, first: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        match &self.timing {
            Timing::Every(step) => {
                let step_ms = step.num_milliseconds();
                let ms = now.timestamp_millis().div_euclid(step_ms) * step_ms;
                Utc.timestamp_millis_opt(ms).single().unwrap_or(first)
            }
            Timing::Cron(cron) => cron
                .find_previous_occurrence(&whole_second(now).with_timezone(&self.tz), true)
                .ok()
                .map(|d| d.with_timezone(&Utc))
                .filter(|d| *d >= first && *d <= now)
                .unwrap_or_else(|| *self.instants(first, now, MAX_SCAN).last().unwrap_or(&first)),
        }
    }

    /// The job for `instant`: the template, keyed `cron:{id}:{instant}`, run at the instant
    /// plus the jitter, tagged `cron:{id}` (and `catch_up` when the instant was missed).
    pub fn job_for(&self, instant: DateTime<Utc>, catch_up: bool) -> NewJob {
        let t = &self.def.job;
        let mut job = NewJob::new(t.kind.clone(), t.payload.clone())
            .with_queue(t.queue.clone())
            .with_priority(t.priority)
            .with_max_attempts(t.max_attempts)
            .with_unique_key(unique_key(&self.def.id, instant))
            .with_run_at(instant + TimeDelta::milliseconds(self.jitter(instant) as i64));
        job.timeout_ms = t.timeout_ms;
        job.tags = t.tags.clone();
        job.tags.push(format!("cron:{}", self.def.id));
        if catch_up {
            job.tags.push("catch_up".into());
        }
        job
    }

    /// The jitter of `instant`, in milliseconds: a hash of the id and instant, below
    /// `jitter_ms`.
    fn jitter(&self, instant: DateTime<Utc>) -> u64 {
        if self.def.jitter_ms == 0 {
            return 0;
        }
        // FNV-1a: stable across processes and builds.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self
            .def
            .id
            .bytes()
            .chain(instant.timestamp_millis().to_le_bytes())
        {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h % self.def.jitter_ms
    }
}

/// `t` without its fraction of a second.
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.checked_sub_signed(TimeDelta::nanoseconds(t.timestamp_subsec_nanos() as i64))
        .unwrap_or(t)
}

/// The unique key of the job for (`id`, `instant`): `cron:{id}:{RFC 3339 instant}`.
pub fn unique_key(id: &str, instant: DateTime<Utc>) -> String {
    format!(
        "cron:{id}:{}",
        instant.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
}

/// The instant a job's unique key names, if it is a schedule's job.
pub fn instant_of_key(key: &str) -> Option<(&str, DateTime<Utc>)> {
    let rest = key.strip_prefix("cron:")?;
    // The id has no ':'; the instant does.
    let (id, at) = rest.split_once(':')?;
    DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|d| (id, d.with_timezone(&Utc)))
}

fn parse_expr(expr: &str) -> std::result::Result<Timing, String> {
    let e = expr.trim();
    if let Some(rest) = e.strip_prefix("@every") {
        let d = humantime_like(rest.trim())
            .ok_or_else(|| "has no valid duration after `@every`".to_string())?;
        if d < Duration::from_secs(1) {
            return Err("is shorter than 1s".into());
        }
        return TimeDelta::from_std(d)
            .map(Timing::Every)
            .map_err(|_| "is too long".to_string());
    }
    if e.starts_with('@')
        && ![
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@hourly",
        ]
        .iter()
        .any(|a| e.eq_ignore_ascii_case(a))
    {
        return Err("is not a known alias".into());
    }
    let fields = e.split_whitespace().count();
    if !e.starts_with('@') && !(5..=6).contains(&fields) {
        return Err(format!("has {fields} fields"));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build();
    parser
        .parse(e)
        .map(|c| Timing::Cron(Box::new(c)))
        .map_err(|err| format!("does not parse ({err})"))
}

/// `90s`, `5m`, `1h30m`, `2d`, `500ms`: integer parts with units ms, s, m, h, d.
fn humantime_like(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..unit_end].trim();
        rest = &rest[unit_end..];
        let ms = match unit {
            "ms" => 1,
            "s" | "sec" | "secs" => 1000,
            "m" | "min" | "mins" => 60_000,
            "h" | "hr" | "hour" | "hours" => 3_600_000,
            "d" | "day" | "days" => 86_400_000,
            _ => return None,
        };
        total += Duration::from_millis(n.checked_mul(ms)?);
    }
    Some(total)
}

/// What [`Schedule::plan`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The instants that get a job, in order, each with whether it was missed (a catch-up).
    pub fire: Vec<(DateTime<Utc>, bool)>,
    /// The new cursor: every instant at or before it is settled.
    pub cursor: DateTime<Utc>,
    /// Due instants that get no job (the catch-up policy skipped them).
    pub skipped: u64,
}

/// A schedule as stored: its definition and the state the schedulers keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// The definition.
    pub def: ScheduleDef,
    /// Paused: no scheduler fires it; resuming applies the catch-up policy from `cursor`.
    pub paused: bool,
    /// Every instant at or before it is settled (fired or skipped).
    pub cursor: DateTime<Utc>,
    /// The last instant that got a job.
    pub last_fired: Option<DateTime<Utc>>,
    /// The last job inserted (or found holding its key), for the overlap policy and listings.
    pub last_job: Option<JobId>,
    /// Bumped by every write; the compare-and-set token of the schedule's writes.
    pub version: u64,
}

impl ScheduleRecord {
    /// A new record for `def` with the cursor at `now` (its first instant is after `now`).
    pub fn new(def: ScheduleDef, now: DateTime<Utc>) -> Self {
        Self {
            def,
            paused: false,
            cursor: now,
            last_fired: None,
            last_job: None,
            version: 0,
        }
    }
}

/// One atomic firing step for [`Storage::fire_schedule`](crate::Storage::fire_schedule).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleFire {
    /// The schedule.
    pub id: String,
    /// Applies only if the stored record still has this version.
    pub version: u64,
    /// The new cursor.
    pub cursor: DateTime<Utc>,
    /// The instant of the last job in `jobs` (stored as `last_fired` when they go in).
    pub fired_for: Option<DateTime<Utc>>,
    /// The jobs, keyed `cron:{id}:{instant}`.
    pub jobs: Vec<NewJob>,
    /// `skip`: insert none while the record's `last_job` is live; `buffer_one`: none while it
    /// is pending; `allow`: no check.
    pub overlap: Overlap,
}

/// What [`Storage::fire_schedule`](crate::Storage::fire_schedule) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireOutcome {
    /// The record was gone or had another version: nothing changed (another scheduler fired,
    /// or the schedule was edited). Read it again.
    Conflict,
    /// The cursor advanced. `jobs`: one outcome per job (empty when the overlap policy held
    /// them back, `held_back` then true).
    Fired {
        /// Per job, in order.
        jobs: Vec<EnqueueOutcome>,
        /// The overlap policy held the jobs back.
        held_back: bool,
    },
}

/// What [`fire_due`] did for one schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FireReport {
    /// Jobs inserted.
    pub inserted: Vec<JobId>,
    /// Jobs not inserted because a live job held the key (a trigger made it).
    pub duplicates: usize,
    /// Instants skipped by the catch-up policy.
    pub skipped: u64,
    /// Instants held back by the overlap policy.
    pub held_back: usize,
    /// Another scheduler (or an edit) got there first; nothing done.
    pub conflict: bool,
}

/// Evaluates `record` at `now` (the storage's time) and, when instants are due, fires them in
/// one atomic [`fire_schedule`](crate::Storage::fire_schedule). Paused records do nothing.
pub async fn fire_due(
    storage: &dyn Storage,
    schedule: &Schedule,
    record: &ScheduleRecord,
    now: DateTime<Utc>,
) -> Result<FireReport> {
    if record.paused {
        return Ok(FireReport::default());
    }
    let Some(plan) = schedule.plan(record.cursor, now) else {
        return Ok(FireReport::default());
    };
    let jobs: Vec<NewJob> = plan
        .fire
        .iter()
        .map(|&(t, missed)| schedule.job_for(t, missed))
        .collect();
    let n = jobs.len();
    let outcome = storage
        .fire_schedule(&ScheduleFire {
            id: record.def.id.clone(),
            version: record.version,
            cursor: plan.cursor,
            fired_for: plan.fire.last().map(|&(t, _)| t),
            jobs,
            overlap: schedule.def.overlap,
        })
        .await?;
    let mut report = FireReport {
        skipped: plan.skipped,
        ..FireReport::default()
    };
    match outcome {
        FireOutcome::Conflict => report.conflict = true,
        FireOutcome::Fired { jobs, held_back } => {
            if held_back {
                report.held_back = n;
            }
            for o in jobs {
                match o {
                    EnqueueOutcome::Inserted(id) => report.inserted.push(id),
                    EnqueueOutcome::Duplicate(_) => report.duplicates += 1,
                }
            }
        }
    }
    Ok(report)
}

/// What [`register`] did with one definition.
#[derive(Debug, Clone, PartialEq)]
pub enum Registered {
    /// Stored for the first time.
    Inserted,
    /// Stored already with the same definition.
    Unchanged,
    /// Stored with another definition, now replaced; when the timing changed the cursor moved
    /// to now (no immediate fire for the new expression).
    Updated {
        /// The definition that was stored.
        previous: Box<ScheduleDef>,
    },
}

/// Upserts `defs` by id: checks all of them first (a bad one refuses the call before any
/// write, naming the field), then inserts the new, replaces the changed (moving the cursor to
/// now when the expression or time zone changed), and leaves paused flags and every schedule
/// not named alone.
pub async fn register(storage: &dyn Storage, defs: &[ScheduleDef]) -> Result<Vec<Registered>> {
    let mut seen = std::collections::HashSet::new();
    for def in defs {
        Schedule::new(def.clone())?;
        if !seen.insert(def.id.as_str()) {
            return Err(Error::invalid(format!(
                "schedule `{}` is declared twice; accepted: one definition per id",
                def.id
            )));
        }
    }
    let mut out = Vec::with_capacity(defs.len());
    for def in defs {
        out.push(upsert_one(storage, def).await?);
    }
    Ok(out)
}

async fn upsert_one(storage: &dyn Storage, def: &ScheduleDef) -> Result<Registered> {
    for _ in 0..20 {
        let now = storage.storage_now().await?;
        match storage.get_schedule(&def.id).await? {
            None => {
                if storage
                    .put_schedule(&ScheduleRecord::new(def.clone(), now), None)
                    .await?
                {
                    return Ok(Registered::Inserted);
                }
            }
            Some(rec) if rec.def == *def => return Ok(Registered::Unchanged),
            Some(rec) => {
                let mut next = rec.clone();
                if rec.def.timing_differs(def) {
                    next.cursor = now;
                }
                next.def = def.clone();
                if storage.put_schedule(&next, Some(rec.version)).await? {
                    return Ok(Registered::Updated {
                        previous: Box::new(rec.def),
                    });
                }
            }
        }
    }
    Err(Error::new(
        crate::ErrorKind::Conflict,
        format!(
            "schedule `{}` kept changing while it was registered",
            def.id
        ),
    ))
}

/// Pauses or resumes schedule `id`. Returns `false` when there is none.
pub async fn set_paused(storage: &dyn Storage, id: &str, paused: bool) -> Result<bool> {
    for _ in 0..20 {
        let Some(mut rec) = storage.get_schedule(id).await? else {
            return Ok(false);
        };
        if rec.paused == paused {
            return Ok(true);
        }
        let version = rec.version;
        rec.paused = paused;
        if storage.put_schedule(&rec, Some(version)).await? {
            return Ok(true);
        }
    }
    Err(Error::new(
        crate::ErrorKind::Conflict,
        format!("schedule `{id}` kept changing while it was paused or resumed"),
    ))
}

/// Fires schedule `id`'s next instant now: its job (keyed for that instant) runs at once and
/// the cursor moves past the instant, so the regular firing does not insert it again.
/// Returns the job's outcome, or `None` when there is no such schedule or it never fires
/// again.
pub async fn trigger(storage: &dyn Storage, id: &str) -> Result<Option<EnqueueOutcome>> {
    for _ in 0..20 {
        let Some(rec) = storage.get_schedule(id).await? else {
            return Ok(None);
        };
        let schedule = Schedule::new(rec.def.clone())?;
        let now = storage.storage_now().await?;
        let Some(next) = schedule.next_after(rec.cursor) else {
            return Ok(None);
        };
        let mut job = schedule.job_for(next, false);
        job.run_at = Some(now.min(job.run_at.unwrap_or(now)));
        let outcome = storage
            .fire_schedule(&ScheduleFire {
                id: id.to_string(),
                version: rec.version,
                cursor: next,
                fired_for: Some(next),
                jobs: vec![job],
                overlap: Overlap::Allow,
            })
            .await?;
        if let FireOutcome::Fired { jobs, .. } = outcome {
            return Ok(jobs.into_iter().next());
        }
    }
    Err(Error::new(
        crate::ErrorKind::Conflict,
        format!("schedule `{id}` kept changing while it was triggered"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(expr: &str, tz: &str) -> Schedule {
        Schedule::new(
            ScheduleDef::new("s", expr, JobTemplate::new("k", serde_json::json!({}))).with_tz(tz),
        )
        .unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn local(tz: &str, list: &[DateTime<Utc>]) -> Vec<String> {
        let tz: Tz = tz.parse().unwrap();
        list.iter()
            .map(|t| t.with_timezone(&tz).format("%m-%d %H:%M:%S %Z").to_string())
            .collect()
    }

    #[test]
    fn five_and_six_fields_aliases_and_every() {
        let s = sched("*/15 * * * *", "UTC");
        assert_eq!(
            s.next_after(at("2027-01-01T00:07:00.500Z")),
            Some(at("2027-01-01T00:15:00Z"))
        );
        let s = sched("*/2 * * * * *", "UTC");
        assert_eq!(
            s.next_after(at("2027-01-01T00:00:01.900Z")),
            Some(at("2027-01-01T00:00:02Z"))
        );
        let s = sched("@daily", "Europe/Paris");
        assert_eq!(
            s.next_after(at("2027-01-01T12:00:00Z")),
            Some(at("2027-01-01T23:00:00Z"))
        );
        let s = sched("@every 90s", "UTC");
        assert_eq!(
            s.next_after(at("1970-01-01T00:01:00Z")),
            Some(at("1970-01-01T00:01:30Z"))
        );
    }

    /// CR8: every bad field is refused, naming the field and the accepted forms.
    #[test]
    fn bad_input_names_the_field_and_the_forms() {
        let job = JobTemplate::new("k", serde_json::json!({}));
        for (expr, tz, field) in [
            ("* * *", "UTC", "`expr`"),
            ("61 * * * *", "UTC", "`expr`"),
            ("@sometimes", "UTC", "`expr`"),
            ("@every 0s", "UTC", "`expr`"),
            ("@every soon", "UTC", "`expr`"),
            ("* * * * * * *", "UTC", "`expr`"),
            ("* * * * *", "Mars/Olympus", "`tz`"),
            ("* * * * *", "", "`tz`"),
        ] {
            let e = Schedule::new(ScheduleDef::new("s", expr, job.clone()).with_tz(tz))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{expr} {tz}: {e}");
            assert!(e.contains("accepted"), "{e}");
        }
        let e = Schedule::new(ScheduleDef::new("a b", "* * * * *", job.clone()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`id`"), "{e}");
        let e = Schedule::new(ScheduleDef::new("s", "* * * * *", JobTemplate::default()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`job.kind`"), "{e}");
        let e = Schedule::new(ScheduleDef::new("s", "* * * * *", job).with_catch_up(
            CatchUp::All {
                window_ms: 10,
                max: 0,
            },
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("`catch_up`"), "{e}");
    }

    /// CR5: a local 09:00 stays 09:00 on both sides of a change; a 02:30 that does not exist
    /// fires once at the transition; a repeated 01:30 fires once.
    #[test]
    fn dst_new_york_2027() {
        // 2027-03-14 02:00 EST -> 03:00 EDT; 2027-11-07 02:00 EDT -> 01:00 EST.
        let nine = sched("0 9 * * *", "America/New_York");
        let got = nine.instants(at("2027-03-12T15:00:00Z"), at("2027-03-16T00:00:00Z"), 10);
        assert_eq!(
            local("America/New_York", &got),
            [
                "03-13 09:00:00 EST",
                "03-14 09:00:00 EDT",
                "03-15 09:00:00 EDT"
            ]
        );
        let gap = sched("30 2 * * *", "America/New_York");
        let got = gap.instants(at("2027-03-13T12:00:00Z"), at("2027-03-15T12:00:00Z"), 10);
        assert_eq!(
            local("America/New_York", &got),
            ["03-14 03:00:00 EDT", "03-15 02:30:00 EDT"],
            "the missing 02:30 fires once, at the transition"
        );
        let rep = sched("30 1 * * *", "America/New_York");
        let got = rep.instants(at("2027-11-06T12:00:00Z"), at("2027-11-08T12:00:00Z"), 10);
        assert_eq!(
            local("America/New_York", &got),
            ["11-07 01:30:00 EDT", "11-08 01:30:00 EST"],
            "the repeated 01:30 fires once (its first occurrence)"
        );
    }

    #[test]
    fn dst_paris_2027() {
        // 2027-03-28 02:00 CET -> 03:00 CEST; 2027-10-31 03:00 CEST -> 02:00 CET.
        let gap = sched("0 30 2 * * *", "Europe/Paris");
        let got = gap.instants(at("2027-03-27T12:00:00Z"), at("2027-03-29T12:00:00Z"), 10);
        assert_eq!(
            local("Europe/Paris", &got),
            ["03-28 03:00:00 CEST", "03-29 02:30:00 CEST"]
        );
        let rep = sched("0 30 2 * * *", "Europe/Paris");
        let got = rep.instants(at("2027-10-30T12:00:00Z"), at("2027-11-01T12:00:00Z"), 10);
        assert_eq!(
            local("Europe/Paris", &got),
            ["10-31 02:30:00 CEST", "11-01 02:30:00 CET"]
        );
        let nine = sched("0 9 * * *", "Europe/Paris");
        let got = nine.instants(at("2027-10-30T00:00:00Z"), at("2027-11-01T00:00:00Z"), 10);
        assert_eq!(
            local("Europe/Paris", &got),
            ["10-30 09:00:00 CEST", "10-31 09:00:00 CET"]
        );
    }

    /// CR3 as pure logic: five missed ten-second instants under each policy.
    #[test]
    fn catch_up_policies() {
        let job = JobTemplate::new("k", serde_json::json!({}));
        let base = ScheduleDef::new("s", "*/10 * * * * *", job);
        let cursor = at("2027-01-01T00:00:00Z");
        let now = at("2027-01-01T00:00:55Z");
        let plan = |c: CatchUp, o: Overlap| {
            Schedule::new(base.clone().with_catch_up(c).with_overlap(o))
                .unwrap()
                .plan(cursor, now)
                .unwrap()
        };
        let last = at("2027-01-01T00:00:50Z");
        let p = plan(CatchUp::None, Overlap::Allow);
        assert_eq!((p.fire.len(), p.cursor, p.skipped), (0, last, 5));
        let p = plan(CatchUp::Latest, Overlap::Allow);
        assert_eq!(p.fire, vec![(last, true)]);
        let all = |w, m| CatchUp::All {
            window_ms: w,
            max: m,
        };
        let p = plan(all(60_000, 10), Overlap::Allow);
        assert_eq!(p.fire.len(), 5);
        assert!(p.fire.windows(2).all(|w| w[0].0 < w[1].0));
        let p = plan(all(60_000, 3), Overlap::Allow);
        assert_eq!(
            (p.fire.len(), p.skipped, p.fire[0].0),
            (3, 2, at("2027-01-01T00:00:30Z"))
        );
        let p = plan(all(26_000, 10), Overlap::Allow);
        assert_eq!((p.fire.len(), p.skipped), (3, 2));
        let p = plan(all(60_000, 10), Overlap::Skip);
        assert_eq!(p.fire, vec![(last, true)]);
        // On time: not a catch-up, and `none` fires it.
        let p = Schedule::new(base.clone().with_catch_up(CatchUp::None))
            .unwrap()
            .plan(at("2027-01-01T00:00:45Z"), at("2027-01-01T00:00:50.300Z"))
            .unwrap();
        assert_eq!(p.fire, vec![(last, false)]);
        // Nothing due: nothing to write.
        assert!(Schedule::new(base)
            .unwrap()
            .plan(last, at("2027-01-01T00:00:59Z"))
            .is_none());
    }

    #[test]
    fn jobs_are_keyed_by_instant_and_jitter_is_stable() {
        let s = Schedule::new(
            ScheduleDef::new(
                "s",
                "* * * * * *",
                JobTemplate::new("k", serde_json::json!({})),
            )
            .with_jitter(Duration::from_secs(5)),
        )
        .unwrap();
        let t = at("2027-01-01T00:00:01Z");
        let (a, b) = (s.job_for(t, false), s.job_for(t, false));
        assert_eq!(
            a.unique_key.as_deref(),
            Some("cron:s:2027-01-01T00:00:01.000Z")
        );
        assert_eq!(a.run_at, b.run_at);
        assert!(a.run_at.unwrap() >= t && a.run_at.unwrap() < t + TimeDelta::seconds(5));
        assert_eq!(
            instant_of_key(a.unique_key.as_deref().unwrap()),
            Some(("s", t))
        );
    }
}
