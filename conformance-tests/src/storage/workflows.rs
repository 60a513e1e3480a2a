//! Workflows (WF1–WF11 of the workflow contract): ordering over random graphs, the join under
//! race, failure policies and the no-stuck invariant, fan-in and oversize outputs, cancel,
//! a crash between a step's return and its completion, validation, retention, retry and
//! appending steps. The cases that run workers go through the external queue and its
//! dispatcher when the backend has one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use switchyard::{
    DepFailure, ErrorKind, JobContext, JobError, JobState, Registry, WorkflowContextExt,
    WorkflowDef, WorkflowId, WorkflowState, WorkflowStep,
};
use switchyard_core::{Completion, CompletionStatus, Outcome, Storage};

use super::support::{claim, enqueue1, job, record, succeed, LONG};
use crate::harness::{start_worker, TestWorkerConfig};
use crate::support::queue_name;
use crate::{wait_for, Backend};

/// Per step name: when its handler started and when it returned.
type RunLog = HashMap<String, (Instant, Option<Instant>)>;

fn step(name: &str, q: &str, deps: &[&str]) -> WorkflowStep {
    WorkflowStep::new(name, job("wf_step", q, json!({ "name": name }))).after(deps.iter().copied())
}

fn failure(kind: &str) -> Outcome {
    Outcome::Failed {
        error: switchyard::AttemptError {
            attempt: 1,
            at: Utc::now(),
            kind: kind.to_string(),
            message: "boom".to_string(),
        },
    }
}

async fn state_of(s: &Arc<dyn Storage>, wf: WorkflowId, name: &str) -> JobState {
    let w = s.get_workflow(wf).await.unwrap().expect("workflow exists");
    w.step(name)
        .unwrap_or_else(|| panic!("no step `{name}`"))
        .state
}

fn id_of(def: &WorkflowDef, name: &str) -> switchyard::JobId {
    def.steps.iter().find(|s| s.name == name).unwrap().job.id
}

/// Waits until every step of `wf` is finished and returns the workflow.
async fn wait_finished(s: &Arc<dyn Storage>, wf: WorkflowId) -> switchyard::WorkflowRecord {
    wait_for("the workflow to finish", LONG, || async {
        let w = s.get_workflow(wf).await.unwrap().unwrap();
        (w.state != WorkflowState::Running).then_some(w)
    })
    .await
}

/// The no-stuck invariant: when no step of the workflow can run any more (none pending or
/// running), none is blocked either.
async fn assert_not_stuck(s: &Arc<dyn Storage>, wf: WorkflowId) {
    let w = s.get_workflow(wf).await.unwrap().unwrap();
    let live = w
        .steps
        .iter()
        .any(|st| st.state.is_pending() || st.state == JobState::Running);
    let blocked: Vec<&str> = w
        .steps
        .iter()
        .filter(|st| st.state == JobState::Blocked)
        .map(|st| st.name.as_str())
        .collect();
    assert!(
        live || blocked.is_empty(),
        "nothing of workflow {wf} can run, yet steps {blocked:?} stay blocked: {:?}",
        w.steps
    );
}

/// WF1: random graphs of up to 50 steps, run by two workers of four slots each: no step starts
/// before every dependency's handler returned, and every step completes. The seed is printed
/// (`SWITCHYARD_WF_SEED` replays one).
pub async fn workflow_random_dags_keep_order(b: Backend) {
    let seed = std::env::var("SWITCHYARD_WF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!(
        "workflow_random_dags_keep_order: seed {seed} (SWITCHYARD_WF_SEED={seed} replays it)"
    );
    let mut rng = fastrand::Rng::with_seed(seed);
    let q = queue_name();
    // name -> (start, end) of its handler.
    let log: Arc<Mutex<RunLog>> = Arc::default();
    let l = log.clone();
    let reg = Registry::new().register_fn("wf_step", move |payload, _ctx: JobContext| {
        let l = l.clone();
        async move {
            let name = payload["name"].as_str().unwrap_or_default().to_string();
            l.lock()
                .unwrap()
                .insert(name.clone(), (Instant::now(), None));
            let ms = payload["sleep"].as_u64().unwrap_or(0);
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            l.lock().unwrap().get_mut(&name).unwrap().1 = Some(Instant::now());
            Ok(Some(json!(name)))
        }
    });
    let mut defs = Vec::new();
    for g in 0..3 {
        let n = rng.usize(1..=50);
        let mut def = WorkflowDef::new(format!("random-{g}"));
        for i in 0..n {
            let name = format!("g{g}s{i}");
            let mut deps = Vec::new();
            for j in 0..i {
                // Sparse edges to earlier steps (always acyclic), shuffled below.
                if rng.f32() < 3.0 / (i as f32 + 1.0) && deps.len() < 4 {
                    deps.push(format!("g{g}s{j}"));
                }
            }
            let mut s = WorkflowStep::new(
                name.clone(),
                job(
                    "wf_step",
                    &q,
                    json!({ "name": name, "sleep": rng.u64(0..15) }),
                ),
            );
            s.deps = deps;
            def.steps.push(s);
        }
        rng.shuffle(&mut def.steps);
        defs.push(def);
    }
    let w1 = start_worker(&b, reg.clone(), TestWorkerConfig::new(&q)).await;
    let w2 = start_worker(&b, reg, TestWorkerConfig::new(&q)).await;
    let mut ids = Vec::new();
    for def in &defs {
        ids.push(
            b.storage
                .enqueue_workflow(def.clone())
                .await
                .expect("enqueue workflow"),
        );
    }
    for id in &ids {
        let w = wait_finished(&b.storage, *id).await;
        assert_eq!(
            w.state,
            WorkflowState::Completed,
            "seed {seed}: workflow {} ended {:?}",
            w.name,
            w.steps
        );
    }
    w1.stop().await;
    w2.stop().await;
    let log = log.lock().unwrap();
    for def in &defs {
        for s in &def.steps {
            let (start, _) = log[&s.name];
            for d in &s.deps {
                let (_, end) = log[d];
                let end = end.unwrap_or_else(|| panic!("seed {seed}: `{d}` never returned"));
                assert!(
                    start >= end,
                    "seed {seed}: step `{}` started before its dependency `{d}` returned",
                    s.name
                );
            }
        }
    }
}

/// WF3: two dependencies completed at the same instant (two concurrent `complete` calls)
/// release their join exactly once.
pub async fn workflow_join_released_once(b: Backend) {
    // One dependency done is not enough.
    let q = queue_name();
    let def = WorkflowDef::new("join-seq")
        .step(step("a", &q, &[]))
        .step(step("b", &q, &[]))
        .step(step("j", &q, &["a", "b"]));
    let wf = b.storage.enqueue_workflow(def.clone()).await.unwrap();
    let roots = claim(&b.storage, &q, 10, Duration::from_secs(30)).await;
    succeed(&b.storage, roots[0].id, roots[0].lease_token.unwrap()).await;
    assert_eq!(
        state_of(&b.storage, wf, "j").await,
        JobState::Blocked,
        "a join was released with one dependency left"
    );
    succeed(&b.storage, roots[1].id, roots[1].lease_token.unwrap()).await;
    assert_eq!(state_of(&b.storage, wf, "j").await, JobState::Available);
    for round in 0..5 {
        let q = queue_name();
        let def = WorkflowDef::new("join")
            .step(step("a", &q, &[]))
            .step(step("b", &q, &[]))
            .step(step("j", &q, &["a", "b"]));
        let wf = b.storage.enqueue_workflow(def.clone()).await.unwrap();
        assert_eq!(state_of(&b.storage, wf, "j").await, JobState::Blocked);
        let claimed = claim(&b.storage, &q, 10, Duration::from_secs(30)).await;
        assert_eq!(
            claimed.len(),
            2,
            "round {round}: only the two roots are claimable"
        );
        let (s1, s2) = (b.storage.clone(), b.storage.clone());
        let (c1, c2) = (claimed[0].clone(), claimed[1].clone());
        let done = |c: switchyard::JobRecord| Completion {
            id: c.id,
            token: c.lease_token.unwrap(),
            outcome: Outcome::Succeeded { result: None },
        };
        let (r1, r2) = tokio::join!(async move { s1.complete(&[done(c1)]).await }, async move {
            s2.complete(&[done(c2)]).await
        });
        assert_eq!(r1.unwrap(), vec![CompletionStatus::Applied]);
        assert_eq!(r2.unwrap(), vec![CompletionStatus::Applied]);
        // Released by the completions themselves: claimable at once, exactly once.
        assert_eq!(state_of(&b.storage, wf, "j").await, JobState::Available);
        let first = claim(&b.storage, &q, 10, Duration::from_secs(30)).await;
        assert_eq!(first.len(), 1, "round {round}: the join is claimable once");
        assert_eq!(first[0].id, id_of(&def, "j"));
        assert!(claim(&b.storage, &q, 10, Duration::from_secs(30))
            .await
            .is_empty());
        succeed(&b.storage, first[0].id, first[0].lease_token.unwrap()).await;
        assert_eq!(
            wait_finished(&b.storage, wf).await.state,
            WorkflowState::Completed
        );
    }
}

/// WF4: `cancel` (default) cancels every transitive dependent with a reason naming the
/// upstream step; `ignore` counts a failed dependency as done (but not one cancelled by the
/// cascade); `always` runs regardless; a dropped step (rescued with no attempt left) applies
/// the policies too; once nothing can run, nothing stays blocked.
pub async fn workflow_failure_policies(b: Backend) {
    let q = queue_name();
    let def = WorkflowDef::new("policies")
        .step(step("a", &q, &[]))
        .step(step("b", &q, &["a"]))
        .step(step("c", &q, &["b"]))
        .step(step("d", &q, &["a"]).on_dep_failure(DepFailure::Ignore))
        .step(step("e", &q, &["b"]).on_dep_failure(DepFailure::Ignore))
        .step(step("f", &q, &["b", "d"]).on_dep_failure(DepFailure::Always));
    let wf = b.storage.enqueue_workflow(def.clone()).await.unwrap();
    let a = claim(&b.storage, &q, 10, Duration::from_secs(30)).await;
    assert_eq!(a.len(), 1);
    record(
        &b.storage,
        a[0].id,
        a[0].lease_token.unwrap(),
        failure("error"),
    )
    .await;
    let st = |n: &'static str| {
        let s = b.storage.clone();
        async move { state_of(&s, wf, n).await }
    };
    assert_eq!(st("a").await, JobState::Failed);
    assert_eq!(st("b").await, JobState::Cancelled);
    assert_eq!(st("c").await, JobState::Cancelled, "cancel is transitive");
    assert_eq!(
        st("d").await,
        JobState::Available,
        "ignore: a failed dependency counts as done"
    );
    assert_eq!(
        st("e").await,
        JobState::Cancelled,
        "ignore does not ignore a cascaded cancel"
    );
    assert_eq!(st("f").await, JobState::Blocked, "always: waits for d");
    let b_job = b.storage.get(id_of(&def, "b")).await.unwrap().unwrap();
    let why = b_job.errors.last().expect("a cancelled dependent says why");
    assert_eq!(why.kind, "dependency_failed");
    assert!(
        why.message.contains("`a`"),
        "the reason names the upstream step: {}",
        why.message
    );
    assert!(b_job.finished_at.is_some());
    let c_job = b.storage.get(id_of(&def, "c")).await.unwrap().unwrap();
    assert!(c_job.errors.last().unwrap().message.contains("`b`"));
    let d = claim(&b.storage, &q, 10, Duration::from_secs(30)).await;
    assert_eq!(d.len(), 1);
    succeed(&b.storage, d[0].id, d[0].lease_token.unwrap()).await;
    assert_eq!(
        st("f").await,
        JobState::Available,
        "always runs after a cancelled dependency"
    );
    let f = claim(&b.storage, &q, 10, Duration::from_secs(30)).await;
    succeed(&b.storage, f[0].id, f[0].lease_token.unwrap()).await;
    let w = b.storage.get_workflow(wf).await.unwrap().unwrap();
    assert_eq!(w.state, WorkflowState::Failed);
    assert_not_stuck(&b.storage, wf).await;

    // A dropped step (its lease ran out on its last attempt) applies the policy too.
    let q2 = queue_name();
    let x = WorkflowStep::new("x", job("wf_step", &q2, json!({})).with_max_attempts(1));
    let def = WorkflowDef::new("dropped")
        .step(x)
        .step(step("y", &q2, &["x"]))
        .step(step("z", &q2, &["y"]).on_dep_failure(DepFailure::Always));
    let wf = b.storage.enqueue_workflow(def).await.unwrap();
    let x = claim(&b.storage, &q2, 10, Duration::from_millis(100)).await;
    assert_eq!(x.len(), 1);
    let report = b
        .storage
        .rescue_expired(Utc::now() + chrono::Duration::seconds(5), 100)
        .await
        .unwrap();
    assert!(report.dropped.contains(&x[0].id));
    assert_eq!(state_of(&b.storage, wf, "y").await, JobState::Cancelled);
    assert_eq!(state_of(&b.storage, wf, "z").await, JobState::Available);
    assert_not_stuck(&b.storage, wf).await;
    // A deep cascade: the root of a chain fails, every step below it ends cancelled.
    let depth: usize = std::env::var("SWITCHYARD_WF_DEPTH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let q4 = queue_name();
    let mut chain = WorkflowDef::new("deep");
    for i in 0..depth {
        let s = step(&format!("c{i}"), &q4, &[]);
        chain = chain.step(if i == 0 {
            s
        } else {
            s.after([format!("c{}", i - 1)])
        });
    }
    let wf = b.storage.enqueue_workflow(chain).await.unwrap();
    let root = claim(&b.storage, &q4, 10, Duration::from_secs(30)).await;
    assert_eq!(root.len(), 1);
    record(
        &b.storage,
        root[0].id,
        root[0].lease_token.unwrap(),
        failure("error"),
    )
    .await;
    let w = b.storage.get_workflow(wf).await.unwrap().unwrap();
    assert_eq!(
        w.counts().get(&JobState::Cancelled),
        Some(&(depth as u64 - 1))
    );
    assert_not_stuck(&b.storage, wf).await;
    // Cancelling a blocked step by hand releases through the same path.
    let q3 = queue_name();
    let def = WorkflowDef::new("manual")
        .step(step("m", &q3, &[]))
        .step(step("n", &q3, &["m"]))
        .step(step("o", &q3, &["n"]));
    let wf = b.storage.enqueue_workflow(def.clone()).await.unwrap();
    assert_eq!(
        b.storage.cancel(id_of(&def, "n")).await.unwrap(),
        switchyard::CancelOutcome::Cancelled,
        "a blocked step can be cancelled"
    );
    assert_eq!(state_of(&b.storage, wf, "o").await, JobState::Cancelled);
}

/// WF5: a step reads its dependencies' outputs by step name, typed; an output over the limit
/// fails the producing step with `output_too_large` (and cancels its dependents).
pub async fn workflow_fan_in_and_oversize_output(b: Backend) {
    let q = queue_name();
    let reg = Registry::new()
        .register_fn("fetch", |payload, _ctx: JobContext| async move {
            Ok(Some(json!({ "rows": payload["rows"] })))
        })
        .register_fn("report", |_payload, ctx: JobContext| async move {
            #[derive(serde::Deserialize)]
            struct Fetched {
                rows: u64,
            }
            let a: Fetched = ctx.output_of("fetch_a").await?;
            let b: Fetched = ctx.output_of("fetch_b").await?;
            if ctx.output_of::<Fetched>("nope").await.is_ok() {
                return Err(JobError::permanent("a non-dependency had an output"));
            }
            Ok(Some(json!(a.rows + b.rows)))
        })
        .register_fn("huge", |_payload, _ctx: JobContext| async move {
            Ok(Some(json!(
                "x".repeat(switchyard::workflow::MAX_STEP_OUTPUT_BYTES + 10)
            )))
        });
    let def = WorkflowDef::new("report")
        .step(WorkflowStep::new(
            "fetch_a",
            job("fetch", &q, json!({ "rows": 2 })),
        ))
        .step(WorkflowStep::new(
            "fetch_b",
            job("fetch", &q, json!({ "rows": 40 })),
        ))
        .step(
            WorkflowStep::new("report", job("report", &q, json!({}))).after(["fetch_a", "fetch_b"]),
        )
        .step(WorkflowStep::new(
            "big",
            job("huge", &q, json!({})).with_max_attempts(1),
        ))
        .step(WorkflowStep::new("after_big", job("report", &q, json!({}))).after(["big"]));
    let w = start_worker(&b, reg, TestWorkerConfig::new(&q)).await;
    let wf = b.storage.enqueue_workflow(def.clone()).await.unwrap();
    let done = wait_finished(&b.storage, wf).await;
    w.stop().await;
    let report = b.storage.get(id_of(&def, "report")).await.unwrap().unwrap();
    assert_eq!(report.state, JobState::Completed, "{:?}", report.errors);
    assert_eq!(report.result, Some(json!(42)));
    let outputs = b.storage.step_outputs(id_of(&def, "report")).await.unwrap();
    assert_eq!(outputs.get("fetch_a"), Some(&Some(json!({ "rows": 2 }))));
    assert_eq!(outputs.len(), 2);
    let big = b.storage.get(id_of(&def, "big")).await.unwrap().unwrap();
    assert_eq!(big.state, JobState::Failed);
    assert_eq!(big.errors.last().unwrap().kind, "output_too_large");
    assert_eq!(done.step("after_big").unwrap().state, JobState::Cancelled);
    let r = done.step("report").unwrap();
    assert_eq!(r.kind, "report");
    assert_eq!(r.deps, vec!["fetch_a".to_string(), "fetch_b".to_string()]);
    assert_eq!(r.job_id, id_of(&def, "report"));
    let listed = b.storage.list_workflows(10).await.unwrap();
    assert!(
        listed.iter().any(|w| w.id == wf && w.steps.len() == 5),
        "list_workflows finds it"
    );
    assert_eq!(done.state, WorkflowState::Failed);
}

/// WF6: cancelling a workflow cancels its steps that have not started (they never run),
/// requests the cancel of running ones, and releases nothing afterwards.
pub async fn workflow_cancel(b: Backend) {
    let q = queue_name();
    let def = WorkflowDef::new("cancel")
        .step(step("a", &q, &[]))
        .step(step("b", &q, &["a"]))
        .step(step("c", &q, &["b"]).on_dep_failure(DepFailure::Always));
    let wf = b.storage.enqueue_workflow(def.clone()).await.unwrap();
    let a = claim(&b.storage, &q, 10, Duration::from_secs(30)).await;
    assert_eq!(a.len(), 1);
    let report = b.storage.cancel_workflow(wf).await.unwrap();
    assert_eq!((report.cancelled, report.requested), (2, 1));
    let hb = b
        .storage
        .heartbeat(
            &[switchyard_core::LeaseRef {
                id: a[0].id,
                token: a[0].lease_token.unwrap(),
            }],
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        hb,
        vec![switchyard_core::LeaseStatus::Held {
            cancel_requested: true
        }]
    );
    succeed(&b.storage, a[0].id, a[0].lease_token.unwrap()).await;
    assert!(claim(&b.storage, &q, 10, Duration::from_secs(30))
        .await
        .is_empty());
    let w = b.storage.get_workflow(wf).await.unwrap().unwrap();
    assert_eq!(w.step("b").unwrap().state, JobState::Cancelled);
    assert_eq!(
        w.step("c").unwrap().state,
        JobState::Cancelled,
        "always does not outlive a cancel"
    );
    assert_eq!(w.state, WorkflowState::Cancelled);
    assert!(w.cancelled);
    let missing = b
        .storage
        .cancel_workflow(uuid::Uuid::now_v7())
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

/// WF7: a worker dies after a step's handler returned but before its completion was recorded:
/// the step runs again (at least once), the first attempt's late completion is stale, and the
/// dependent is released exactly once.
pub async fn workflow_crash_before_completion(b: Backend) {
    let q = queue_name();
    let def = WorkflowDef::new("crash")
        .step(step("a", &q, &[]))
        .step(step("j", &q, &["a"]));
    let wf = b.storage.enqueue_workflow(def.clone()).await.unwrap();
    let first = claim(&b.storage, &q, 10, Duration::from_millis(100)).await;
    assert_eq!(first.len(), 1);
    // The handler returned; the process died before `complete`. The rescuer takes it back.
    let report = b
        .storage
        .rescue_expired(Utc::now() + chrono::Duration::seconds(5), 100)
        .await
        .unwrap();
    assert_eq!(report.retried, vec![first[0].id]);
    assert_eq!(state_of(&b.storage, wf, "j").await, JobState::Blocked);
    let second = claim(&b.storage, &q, 10, Duration::from_secs(30)).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempt, 2);
    let late = b
        .storage
        .complete(&[Completion {
            id: first[0].id,
            token: first[0].lease_token.unwrap(),
            outcome: Outcome::Succeeded { result: None },
        }])
        .await
        .unwrap();
    assert_eq!(late, vec![CompletionStatus::Stale]);
    assert_eq!(state_of(&b.storage, wf, "j").await, JobState::Blocked);
    succeed(&b.storage, second[0].id, second[0].lease_token.unwrap()).await;
    let j = claim(&b.storage, &q, 10, Duration::from_secs(30)).await;
    assert_eq!(j.len(), 1, "the dependent is released once");
    assert_eq!(j[0].id, id_of(&def, "j"));
    assert!(claim(&b.storage, &q, 10, Duration::from_secs(30))
        .await
        .is_empty());
}

/// WF8: a cycle, an unknown dependency and a duplicate step name are named errors at insert,
/// and nothing of the workflow is stored.
pub async fn workflow_validation(b: Backend) {
    let q = queue_name();
    let cases = [
        (
            WorkflowDef::new("cycle")
                .step(step("a", &q, &["c"]))
                .step(step("b", &q, &["a"]))
                .step(step("c", &q, &["b"])),
            "dependency cycle",
        ),
        (
            WorkflowDef::new("unknown").step(step("a", &q, &["ghost"])),
            "unknown dependency `ghost`",
        ),
        (
            WorkflowDef::new("dup")
                .step(step("a", &q, &[]))
                .step(step("a", &q, &[])),
            "duplicate step name `a`",
        ),
    ];
    for (def, named) in cases {
        let e = b.storage.enqueue_workflow(def.clone()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains(named), "expected `{named}` in: {e}");
        assert!(b.storage.get_workflow(def.id).await.unwrap().is_none());
        for s in &def.steps {
            assert!(
                b.storage.get(s.job.id).await.unwrap().is_none(),
                "a step was stored"
            );
        }
    }
    assert!(claim(&b.storage, &q, 10, Duration::from_secs(30))
        .await
        .is_empty());
}

/// WF9: the pruner never deletes a step of a workflow that is still running; a finished
/// workflow goes as a unit.
pub async fn workflow_retention(b: Backend) {
    let q = queue_name();
    let def = WorkflowDef::new("retention")
        .step(step("a", &q, &[]))
        .step(step("b", &q, &["a"]));
    let wf = b.storage.enqueue_workflow(def.clone()).await.unwrap();
    let lone = enqueue1(&b.storage, job("wf_step", &q, json!({}))).await;
    let a = claim(&b.storage, &q, 1, Duration::from_secs(30)).await;
    let a = if a[0].id == lone {
        succeed(&b.storage, a[0].id, a[0].lease_token.unwrap()).await;
        claim(&b.storage, &q, 1, Duration::from_secs(30)).await
    } else {
        a
    };
    succeed(&b.storage, a[0].id, a[0].lease_token.unwrap()).await;
    let later = Utc::now() + chrono::Duration::hours(1);
    b.storage.prune(later, 1000).await.unwrap();
    assert!(
        b.storage.get(id_of(&def, "a")).await.unwrap().is_some(),
        "the pruner deleted a finished step of a running workflow"
    );
    assert!(b.storage.get_workflow(wf).await.unwrap().is_some());
    let rest = claim(&b.storage, &q, 10, Duration::from_secs(30)).await;
    for r in rest {
        succeed(&b.storage, r.id, r.lease_token.unwrap()).await;
    }
    assert_eq!(
        wait_finished(&b.storage, wf).await.state,
        WorkflowState::Completed
    );
    b.storage.prune(later, 1000).await.unwrap();
    assert!(
        b.storage.get_workflow(wf).await.unwrap().is_none(),
        "a finished workflow is pruned"
    );
    for s in &def.steps {
        assert!(
            b.storage.get(s.job.id).await.unwrap().is_none(),
            "pruned as a unit"
        );
    }
}

/// WF10: retrying a workflow re-runs its failed and cancelled steps (and through them their
/// dependents) and keeps completed steps and their outputs.
pub async fn workflow_retry(b: Backend) {
    let q = queue_name();
    let def = WorkflowDef::new("retry")
        .step(step("ok", &q, &[]))
        .step(step("bad", &q, &[]))
        .step(step("next", &q, &["bad", "ok"]));
    let wf = b.storage.enqueue_workflow(def.clone()).await.unwrap();
    let roots = claim(&b.storage, &q, 10, Duration::from_secs(30)).await;
    assert_eq!(roots.len(), 2);
    for r in &roots {
        let outcome = if r.id == id_of(&def, "ok") {
            Outcome::Succeeded {
                result: Some(json!("kept")),
            }
        } else {
            failure("error")
        };
        record(&b.storage, r.id, r.lease_token.unwrap(), outcome).await;
    }
    assert_eq!(state_of(&b.storage, wf, "next").await, JobState::Cancelled);
    assert_eq!(
        wait_finished(&b.storage, wf).await.state,
        WorkflowState::Failed
    );
    assert_eq!(b.storage.retry_workflow(wf).await.unwrap(), 2);
    assert_eq!(state_of(&b.storage, wf, "bad").await, JobState::Available);
    assert_eq!(state_of(&b.storage, wf, "next").await, JobState::Blocked);
    let ok = b.storage.get(id_of(&def, "ok")).await.unwrap().unwrap();
    assert_eq!(
        (ok.state, ok.result),
        (JobState::Completed, Some(json!("kept")))
    );
    let bad = claim(&b.storage, &q, 10, Duration::from_secs(30)).await;
    assert_eq!(bad.len(), 1);
    succeed(&b.storage, bad[0].id, bad[0].lease_token.unwrap()).await;
    let next = claim(&b.storage, &q, 10, Duration::from_secs(30)).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].id, id_of(&def, "next"));
    let outputs = b.storage.step_outputs(next[0].id).await.unwrap();
    assert_eq!(outputs.get("ok"), Some(&Some(json!("kept"))));
    succeed(&b.storage, next[0].id, next[0].lease_token.unwrap()).await;
    assert_eq!(
        wait_finished(&b.storage, wf).await.state,
        WorkflowState::Completed
    );
    let missing = b
        .storage
        .retry_workflow(uuid::Uuid::now_v7())
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

/// WF11: a running step appends steps to its own workflow: checked for cycles, unknown and
/// duplicate names; released by the existing steps as if inserted with the workflow.
pub async fn workflow_append_steps(b: Backend) {
    let q = queue_name();
    let def = WorkflowDef::new("append")
        .step(step("a", &q, &[]))
        .step(step("done", &q, &[]));
    let wf = b.storage.enqueue_workflow(def.clone()).await.unwrap();
    let first = claim(&b.storage, &q, 10, Duration::from_secs(30)).await;
    assert_eq!(first.len(), 2);
    let done = first.iter().find(|j| j.id == id_of(&def, "done")).unwrap();
    succeed(&b.storage, done.id, done.lease_token.unwrap()).await;
    let a = first.iter().find(|j| j.id == id_of(&def, "a")).unwrap();
    let e = b
        .storage
        .append_steps(wf, vec![step("p", &q, &["r"]), step("r", &q, &["p"])])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("dependency cycle"), "{e}");
    let e = b
        .storage
        .append_steps(wf, vec![step("a", &q, &[])])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("duplicate step name `a`"), "{e}");
    let e = b
        .storage
        .append_steps(wf, vec![step("x", &q, &["ghost"])])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unknown dependency `ghost`"), "{e}");
    assert_eq!(
        b.storage
            .get_workflow(wf)
            .await
            .unwrap()
            .unwrap()
            .steps
            .len(),
        2
    );
    let ids = b
        .storage
        .append_steps(
            wf,
            vec![
                step("y", &q, &["x"]),
                step("x", &q, &["a"]),
                step("now", &q, &["done"]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(state_of(&b.storage, wf, "x").await, JobState::Blocked);
    assert_eq!(state_of(&b.storage, wf, "y").await, JobState::Blocked);
    assert_eq!(
        state_of(&b.storage, wf, "now").await,
        JobState::Available,
        "a step whose dependencies completed is runnable at once"
    );
    succeed(&b.storage, a.id, a.lease_token.unwrap()).await;
    assert_eq!(state_of(&b.storage, wf, "x").await, JobState::Available);
    for _ in 0..3 {
        for j in claim(&b.storage, &q, 10, Duration::from_secs(30)).await {
            succeed(&b.storage, j.id, j.lease_token.unwrap()).await;
        }
    }
    let w = wait_finished(&b.storage, wf).await;
    assert_eq!(w.state, WorkflowState::Completed, "{:?}", w.steps);
    assert_eq!(w.step("y").unwrap().deps, vec!["x".to_string()]);
}

/// This file's cases, for [`conformance_suite!`](crate::conformance_suite): a new case is its
/// function above plus its name here. Calls `$then!` with `$args` followed by the names.
#[doc(hidden)]
#[macro_export]
macro_rules! storage_workflow_cases {
    ($then:ident!($($args:tt)*)) => {
        $crate::$then! { $($args)*
            workflow_random_dags_keep_order,
            workflow_join_released_once,
            workflow_failure_policies,
            workflow_fan_in_and_oversize_output,
            workflow_cancel,
            workflow_crash_before_completion,
            workflow_validation,
            workflow_retention,
            workflow_retry,
            workflow_append_steps,
        }
    };
}
