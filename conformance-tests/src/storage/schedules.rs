//! Schedules (cron): records, the atomic firing step, exactly once per (schedule, instant)
//! with several schedulers (killed mid-tick, host clocks off by ±30 s), the catch-up and
//! overlap policies, edits, pause/resume/remove, trigger, and bad input (CR1–CR8 of
//! `docs/cron.md`). Policy cases plan with a chosen "now" (the storage step takes no time of
//! its own), so they run at once; the concurrent cases use second-level schedules.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::json;
use switchyard::cron::Scheduler;
use switchyard::{JobFilter, JobRecord, Shutdown};
use switchyard_core::schedule::{self, unique_key, FireOutcome, Registered, ScheduleFire};
use switchyard_core::{
    CatchUp, Clock, ErrorKind, JobState, JobTemplate, Overlap, Schedule, ScheduleDef,
    ScheduleRecord, Storage,
};

use super::support::{claim, ok_registry, succeed, LONG};
use crate::harness::{start_worker, Probe, TestWorkerConfig};
use crate::support::queue_name;
use crate::{wait_for, Backend};

/// A host clock `offset` away from the real one.
#[derive(Debug)]
struct SkewedClock(TimeDelta);

impl Clock for SkewedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
}

fn def(id: &str, expr: &str, kind: &str, queue: &str) -> ScheduleDef {
    let mut job = JobTemplate::new(kind, json!({"from": id}));
    job.queue = queue.to_string();
    ScheduleDef::new(id, expr, job)
}

/// An instant a day ago, on a whole minute: policy cases plan around it.
fn base() -> DateTime<Utc> {
    let t = Utc::now().timestamp() - 86_400;
    Utc.timestamp_opt(t - t.rem_euclid(60), 0).unwrap()
}

/// Stores `def` with its cursor at `cursor` (as if it had fired up to there).
async fn put_at(s: &Arc<dyn Storage>, def: &ScheduleDef, cursor: DateTime<Utc>) -> ScheduleRecord {
    assert!(s
        .put_schedule(&ScheduleRecord::new(def.clone(), cursor), None)
        .await
        .expect("put schedule"));
    s.get_schedule(&def.id)
        .await
        .expect("get schedule")
        .expect("stored")
}

/// Evaluates schedule `id` at `now` from its stored record.
async fn fire_at(s: &Arc<dyn Storage>, id: &str, now: DateTime<Utc>) -> schedule::FireReport {
    let rec = s.get_schedule(id).await.unwrap().expect("schedule");
    let sched = Schedule::new(rec.def.clone()).unwrap();
    schedule::fire_due(s.as_ref(), &sched, &rec, now)
        .await
        .expect("fire_due")
}

/// Every job of `kind`, oldest first.
async fn jobs_of(s: &Arc<dyn Storage>, kind: &str) -> Vec<JobRecord> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .list(&JobFilter {
                kind: Some(kind.to_string()),
                order: switchyard::ListOrder::Asc,
                limit: 1000,
                after,
                ..JobFilter::default()
            })
            .await
            .expect("list");
        let n = page.len();
        after = page.last().map(|j| j.id);
        out.extend(page);
        if n < 1000 {
            return out;
        }
    }
}

/// The instants the jobs of `kind` were fired for (from their keys), checked to be distinct.
async fn instants_of(s: &Arc<dyn Storage>, id: &str, kind: &str) -> Vec<DateTime<Utc>> {
    let jobs = jobs_of(s, kind).await;
    let mut seen = BTreeSet::new();
    for j in &jobs {
        let key = j.unique_key.as_deref().expect("a schedule's job has a key");
        let (sid, at) = schedule::instant_of_key(key).expect("key names the instant");
        assert_eq!(sid, id);
        assert!(
            seen.insert(at),
            "two jobs for instant {at} of schedule {id}"
        );
    }
    seen.into_iter().collect()
}

/// CR6 (records): registering inserts, re-registering the same definition changes nothing, a
/// changed template is an update that keeps the cursor, a changed expression moves the cursor
/// to now (no spurious fire), writes are compare-and-set, and remove deletes.
pub async fn schedules_register_and_edit(b: Backend) {
    let s = &b.storage;
    let (q, kind) = (queue_name(), queue_name());
    let d = def("nightly", "0 0 3 * * *", &kind, &q);
    let before = s.storage_now().await.unwrap();
    assert_eq!(
        schedule::register(s.as_ref(), std::slice::from_ref(&d))
            .await
            .unwrap(),
        vec![Registered::Inserted]
    );
    let rec = s.get_schedule("nightly").await.unwrap().expect("stored");
    assert_eq!(rec.def, d, "the definition is stored as given");
    assert!(!rec.paused && rec.version >= 1 && rec.last_job.is_none());
    assert!(
        (rec.cursor - before).num_seconds().abs() <= 5,
        "the cursor starts at the storage's now"
    );
    assert_eq!(
        schedule::register(s.as_ref(), std::slice::from_ref(&d))
            .await
            .unwrap(),
        vec![Registered::Unchanged]
    );
    // A changed template: replaced, cursor kept.
    let mut d2 = d.clone();
    d2.job.payload = json!({"v": 2});
    let r = schedule::register(s.as_ref(), std::slice::from_ref(&d2))
        .await
        .unwrap();
    assert!(matches!(&r[0], Registered::Updated { previous } if **previous == d));
    let rec2 = s.get_schedule("nightly").await.unwrap().unwrap();
    assert_eq!((rec2.def.clone(), rec2.cursor), (d2.clone(), rec.cursor));
    assert!(rec2.version > rec.version);
    // A stale write loses.
    assert!(!s.put_schedule(&rec, Some(rec.version)).await.unwrap());
    assert!(
        !s.put_schedule(&rec, None).await.unwrap(),
        "insert of an existing id"
    );
    // Another expression: the cursor moves to now, so an old cursor fires nothing.
    let mut old = rec2.clone();
    old.cursor = before - TimeDelta::hours(30);
    assert!(s.put_schedule(&old, Some(rec2.version)).await.unwrap());
    let d3 = def("nightly", "*/5 * * * * *", &kind, &q);
    schedule::register(s.as_ref(), std::slice::from_ref(&d3))
        .await
        .unwrap();
    let rec3 = s.get_schedule("nightly").await.unwrap().unwrap();
    assert!(
        rec3.cursor >= before,
        "an edited expression moves the cursor to now"
    );
    let now = s.storage_now().await.unwrap();
    assert!(fire_at(s, "nightly", now).await.inserted.len() <= 1);
    // Other schedules are untouched by a registration that does not name them.
    let other = def("other", "@hourly", &kind, &q);
    schedule::register(s.as_ref(), std::slice::from_ref(&other))
        .await
        .unwrap();
    schedule::register(s.as_ref(), &[]).await.unwrap();
    let ids: Vec<String> = s
        .list_schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.def.id)
        .collect();
    assert_eq!(ids, ["nightly", "other"], "sorted by id; none removed");
    assert!(s.remove_schedule("nightly").await.unwrap());
    assert!(!s.remove_schedule("nightly").await.unwrap());
    assert!(s.get_schedule("nightly").await.unwrap().is_none());
}

/// CR8: a bad expression or time zone is refused at registration, naming the field and the
/// accepted forms, and nothing is stored.
pub async fn schedules_refuse_bad_input(b: Backend) {
    let s = &b.storage;
    let (q, kind) = (queue_name(), queue_name());
    for (d, field) in [
        (def("a", "every day", &kind, &q), "`expr`"),
        (def("b", "* * * * * * *", &kind, &q), "`expr`"),
        (def("c", "@every 0s", &kind, &q), "`expr`"),
        (
            def("d", "* * * * *", &kind, &q).with_tz("Europe/Pariss"),
            "`tz`",
        ),
        (def("bad id", "* * * * *", &kind, &q), "`id`"),
    ] {
        let good = def("good", "* * * * *", &kind, &q);
        let e = schedule::register(s.as_ref(), &[good, d.clone()])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        let msg = e.to_string();
        assert!(msg.contains(field) && msg.contains("accepted"), "{msg}");
    }
    assert!(
        s.list_schedules().await.unwrap().is_empty(),
        "a refused registration stores nothing, not even its valid schedules"
    );
}

/// CR1: several schedulers over many one-second ticks — two with host clocks 30 s off either
/// way, and two that are killed mid-tick over and over — produce exactly one job per instant,
/// with no gap and none fired before its instant by the storage's clock.
pub async fn schedules_fire_exactly_once_with_many_schedulers(b: Backend) {
    let s = &b.storage;
    let (q, kind) = (queue_name(), queue_name());
    schedule::register(s.as_ref(), &[def("every-second", "* * * * * *", &kind, &q)])
        .await
        .unwrap();
    let shutdown = Shutdown::new();
    let mut tasks = Vec::new();
    for skew in [-30, 30, 0, 7] {
        let sched = Scheduler::new(s.clone())
            .with_host_clock(Arc::new(SkewedClock(TimeDelta::seconds(skew))))
            .with_poll_interval(Duration::from_millis(200));
        tasks.push(tokio::spawn(sched.run(shutdown.clone())));
    }
    // Killed mid-tick: each tick is cut off after a random few milliseconds, at whatever
    // step it is in (reading, planning, inside the firing round trip).
    for _ in 0..2 {
        let (s, stop) = (s.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.is_graceful() {
                let mut sched = Scheduler::new(s.clone());
                let cut = Duration::from_millis(fastrand::u64(0..15));
                let _ = tokio::time::timeout(cut, sched.tick()).await;
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..40))).await;
            }
        }));
    }
    let start = s.storage_now().await.unwrap();
    tokio::time::sleep(Duration::from_millis(5500)).await;
    shutdown.graceful();
    for t in tasks {
        t.await.expect("scheduler task");
    }
    let end = s.storage_now().await.unwrap();
    let instants = instants_of(s, "every-second", &kind).await;
    assert!(
        instants.len() >= 4,
        "one job per second for ~5 s, got {}: {instants:?}",
        instants.len()
    );
    for w in instants.windows(2) {
        assert_eq!(
            (w[1] - w[0]).num_milliseconds(),
            1000,
            "a tick was lost between {} and {}",
            w[0],
            w[1]
        );
    }
    let last = *instants.last().unwrap();
    assert!(
        end - last <= TimeDelta::seconds(3),
        "firing went on to the end (last {last}, end {end})"
    );
    assert!(instants[0] > start - TimeDelta::seconds(2));
    for j in jobs_of(s, &kind).await {
        let (_, at) = schedule::instant_of_key(j.unique_key.as_deref().unwrap()).unwrap();
        assert!(
            j.created_at >= at - TimeDelta::milliseconds(5),
            "job for {at} inserted early, at {} (a skewed host clock planned it)",
            j.created_at
        );
        assert_eq!(j.run_at, at, "no jitter: the job runs at its instant");
    }
}

/// CR2: a scheduler that read the schedule and then died (before or during the firing step)
/// neither loses the tick nor blocks the next: another fires it once, and the dead one's
/// step, if it comes late, is refused as a conflict.
pub async fn schedules_crash_mid_tick_loses_nothing(b: Backend) {
    let s = &b.storage;
    let (q, kind) = (queue_name(), queue_name());
    let t0 = base();
    let d = def("tick", "*/10 * * * * *", &kind, &q);
    let rec = put_at(s, &d, t0).await;
    let sched = Schedule::new(d.clone()).unwrap();
    let now = t0 + TimeDelta::milliseconds(10_500);
    let plan = sched.plan(rec.cursor, now).expect("due");
    let late_step = ScheduleFire {
        id: d.id.clone(),
        version: rec.version,
        cursor: plan.cursor,
        fired_for: Some(plan.cursor),
        jobs: plan
            .fire
            .iter()
            .map(|&(t, m)| sched.job_for(t, m))
            .collect(),
        overlap: Overlap::Allow,
    };
    // The reader dies here. A step cut off in flight (its future dropped at once) applies
    // all or nothing.
    let _ = tokio::time::timeout(Duration::ZERO, s.fire_schedule(&late_step.clone())).await;
    let r = fire_at(s, "tick", now).await;
    let fired = instants_of(s, "tick", &kind).await;
    assert_eq!(
        fired,
        vec![t0 + TimeDelta::seconds(10)],
        "the tick fired exactly once ({r:?})"
    );
    // The dead scheduler's step arrives late: refused, nothing doubled.
    assert_eq!(
        s.fire_schedule(&late_step).await.unwrap(),
        FireOutcome::Conflict
    );
    // The next tick is not blocked.
    let r = fire_at(s, "tick", t0 + TimeDelta::milliseconds(20_300)).await;
    assert_eq!(r.inserted.len(), 1, "{r:?}");
    assert_eq!(instants_of(s, "tick", &kind).await.len(), 2);
    let rec = s.get_schedule("tick").await.unwrap().unwrap();
    assert_eq!(rec.cursor, t0 + TimeDelta::seconds(20));
    assert_eq!(rec.last_fired, Some(t0 + TimeDelta::seconds(20)));
    assert_eq!(rec.last_job, Some(r.inserted[0]));
}

/// CR3: five ten-second instants missed (every scheduler down): `none` inserts nothing,
/// `latest` one job for the latest, `all` every one within the window in order, at most
/// `max`; each marked as a catch-up; a second look inserts nothing more.
pub async fn schedules_catch_up_policies(b: Backend) {
    let s = &b.storage;
    let q = queue_name();
    let t0 = base();
    let now = t0 + TimeDelta::seconds(55);
    let all = |w: u64, m: u32| CatchUp::All {
        window_ms: w,
        max: m,
    };
    let t = |secs: i64| t0 + TimeDelta::seconds(secs);
    for (name, policy, expected) in [
        ("none", CatchUp::None, vec![]),
        ("latest", CatchUp::Latest, vec![t(50)]),
        (
            "all",
            all(60_000, 10),
            vec![t(10), t(20), t(30), t(40), t(50)],
        ),
        ("all-max", all(60_000, 3), vec![t(30), t(40), t(50)]),
        ("all-window", all(26_000, 10), vec![t(30), t(40), t(50)]),
    ] {
        let kind = queue_name();
        let d = def(name, "*/10 * * * * *", &kind, &q).with_catch_up(policy);
        put_at(s, &d, t0).await;
        let r = fire_at(s, name, now).await;
        assert_eq!(
            instants_of(s, name, &kind).await,
            expected,
            "catch_up {name}: {r:?}"
        );
        assert_eq!(
            r.skipped,
            5 - expected.len() as u64,
            "{name}: skipped counted"
        );
        for j in jobs_of(s, &kind).await {
            assert!(j.tags.iter().any(|t| t == "catch_up"), "{name}: marked");
        }
        let rec = s.get_schedule(name).await.unwrap().unwrap();
        assert_eq!(rec.cursor, t(50), "{name}: every missed instant settled");
        let again = fire_at(s, name, now).await;
        assert!(again.inserted.is_empty(), "{name}: nothing twice");
    }
}

/// CR4: with a job that outlives the period, `skip` inserts nothing while it is not finished,
/// `buffer_one` holds at most one pending job beside it, `allow` inserts every tick.
pub async fn schedules_overlap_policies(b: Backend) {
    let s = &b.storage;
    let t0 = base();
    let at = |ms: i64| t0 + TimeDelta::milliseconds(ms);
    for (name, policy, per_tick) in [
        ("allow", Overlap::Allow, [1usize, 1, 1, 1]),
        ("skip", Overlap::Skip, [1, 0, 0, 1]),
        ("buffer", Overlap::BufferOne, [1, 1, 0, 0]),
    ] {
        let (q, kind) = (queue_name(), queue_name());
        let d = def(name, "*/10 * * * * *", &kind, &q).with_overlap(policy);
        put_at(s, &d, t0).await;
        // Tick 1: a job, claimed at once and left running (it outlives the period).
        let r1 = fire_at(s, name, at(10_400)).await;
        let running = claim(s, &q, 1, LONG).await;
        assert_eq!(running.len(), 1, "{name}: the first job runs");
        let r2 = fire_at(s, name, at(20_400)).await;
        let r3 = fire_at(s, name, at(30_400)).await;
        // The long job finishes; under `skip` the next tick fires again.
        succeed(s, running[0].id, running[0].lease_token.unwrap()).await;
        let r4 = fire_at(s, name, at(40_400)).await;
        let got = [
            r1.inserted.len(),
            r2.inserted.len(),
            r3.inserted.len(),
            r4.inserted.len(),
        ];
        assert_eq!(got, per_tick, "overlap {name}: jobs per tick");
        for (r, n) in [&r2, &r3, &r4].into_iter().zip(&per_tick[1..]) {
            assert_eq!(r.held_back, 1 - n, "{name}: a tick held back is reported");
        }
        let pending = jobs_of(s, &kind)
            .await
            .into_iter()
            .filter(|j| j.state.is_pending())
            .count();
        let max_pending = match policy {
            Overlap::Allow => 3,
            _ => 1,
        };
        assert!(pending <= max_pending, "{name}: {pending} pending");
        let rec = s.get_schedule(name).await.unwrap().unwrap();
        assert_eq!(
            rec.cursor,
            t0 + TimeDelta::seconds(40),
            "{name}: every tick settled"
        );
    }
}

/// CR6: pause stops firing; resume applies the catch-up policy from where it stopped;
/// remove stops firing at once (a scheduler holding the old record gets a conflict).
pub async fn schedules_pause_resume_remove(b: Backend) {
    let s = &b.storage;
    let (q, kind) = (queue_name(), queue_name());
    let t0 = base();
    let at = |ms: i64| t0 + TimeDelta::milliseconds(ms);
    let d = def("p", "*/10 * * * * *", &kind, &q);
    put_at(s, &d, t0).await;
    assert_eq!(fire_at(s, "p", at(10_200)).await.inserted.len(), 1);
    assert!(schedule::set_paused(s.as_ref(), "p", true).await.unwrap());
    assert!(s.get_schedule("p").await.unwrap().unwrap().paused);
    for ms in [20_200, 30_200, 40_200] {
        assert!(fire_at(s, "p", at(ms)).await.inserted.is_empty(), "paused");
    }
    // A scheduler tick (storage time) does not fire a paused schedule either.
    Scheduler::new(s.clone()).tick().await.unwrap();
    assert_eq!(jobs_of(s, &kind).await.len(), 1);
    assert!(schedule::set_paused(s.as_ref(), "p", false).await.unwrap());
    let r = fire_at(s, "p", at(45_000)).await;
    assert_eq!(
        r.inserted.len(),
        1,
        "resumed: the latest missed instant catches up"
    );
    assert_eq!(
        instants_of(s, "p", &kind).await,
        vec![at(10_000), at(40_000)]
    );
    let stale = s.get_schedule("p").await.unwrap().unwrap();
    assert!(s.remove_schedule("p").await.unwrap());
    let sched = Schedule::new(stale.def.clone()).unwrap();
    let r = schedule::fire_due(s.as_ref(), &sched, &stale, at(50_200))
        .await
        .unwrap();
    assert!(r.conflict && r.inserted.is_empty(), "removed: {r:?}");
    assert!(!schedule::set_paused(s.as_ref(), "p", true).await.unwrap());
    assert_eq!(jobs_of(s, &kind).await.len(), 2);
}

/// CR10: trigger fires the next instant now, keyed for that instant, and the regular firing
/// does not insert it again.
pub async fn schedules_trigger_is_idempotent_with_firing(b: Backend) {
    let s = &b.storage;
    let (q, kind) = (queue_name(), queue_name());
    let t0 = base();
    let d = def("t", "*/10 * * * * *", &kind, &q);
    put_at(s, &d, t0).await;
    let out = schedule::trigger(s.as_ref(), "t")
        .await
        .unwrap()
        .expect("fired");
    let job = s.get(out.id()).await.unwrap().expect("job");
    let instant = t0 + TimeDelta::seconds(10);
    assert_eq!(
        job.unique_key.as_deref(),
        Some(unique_key("t", instant).as_str())
    );
    let r = fire_at(s, "t", instant + TimeDelta::milliseconds(300)).await;
    assert!(r.inserted.is_empty(), "already triggered: {r:?}");
    assert_eq!(instants_of(s, "t", &kind).await, vec![instant]);
    assert!(schedule::trigger(s.as_ref(), "missing")
        .await
        .unwrap()
        .is_none());
}

/// Schedules' jobs run on a worker like any other (through the external queue's dispatcher
/// when there is one), each soon after its instant.
pub async fn schedules_jobs_run_on_a_worker(b: Backend) {
    let s = &b.storage;
    let (q, kind) = (queue_name(), queue_name());
    schedule::register(s.as_ref(), &[def("run", "* * * * * *", &kind, &q)])
        .await
        .unwrap();
    let probe = Probe::default();
    let worker = start_worker(&b, ok_registry(&kind, &probe), TestWorkerConfig::new(&q)).await;
    let shutdown = Shutdown::new();
    let sched = tokio::spawn(
        Scheduler::new(s.clone())
            .with_poll_interval(Duration::from_millis(200))
            .run(shutdown.clone()),
    );
    wait_for(
        "three scheduled jobs to run",
        Duration::from_secs(20),
        || {
            let n = probe.count();
            async move { (n >= 3).then_some(()) }
        },
    )
    .await;
    shutdown.graceful();
    sched.await.unwrap();
    worker.stop().await;
    let done: Vec<JobRecord> = jobs_of(s, &kind)
        .await
        .into_iter()
        .filter(|j| j.state == JobState::Completed)
        .collect();
    assert!(done.len() >= 3);
    for j in &done {
        let late = switchyard::cron::lateness(j).expect("a started schedule job");
        assert!(
            late >= TimeDelta::zero() && late < TimeDelta::seconds(5),
            "job for {:?} started {late} after its instant",
            j.unique_key
        );
    }
}

/// This file's cases, for [`conformance_suite!`](crate::conformance_suite): a new case is its
/// function above plus its name here. Calls `$then!` with `$args` followed by the names.
#[doc(hidden)]
#[macro_export]
macro_rules! storage_schedule_cases {
    ($then:ident!($($args:tt)*)) => {
        $crate::$then! { $($args)*
            schedules_register_and_edit,
            schedules_refuse_bad_input,
            schedules_fire_exactly_once_with_many_schedulers,
            schedules_crash_mid_tick_loses_nothing,
            schedules_catch_up_policies,
            schedules_overlap_policies,
            schedules_pause_resume_remove,
            schedules_trigger_is_idempotent_with_firing,
            schedules_jobs_run_on_a_worker,
        }
    };
}
