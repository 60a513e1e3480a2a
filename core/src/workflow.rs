//! Workflows: jobs that wait for other jobs. A [`WorkflowDef`] is a set of named steps (each an
//! ordinary [`NewJob`]) and the dependencies between them, a general directed acyclic graph.
//! It is inserted atomically by [`Storage::enqueue_workflow`](crate::Storage::enqueue_workflow):
//! a step without dependencies is runnable at once, the others are
//! [`blocked`](crate::JobState::Blocked) until the completion of their last dependency releases
//! them, in the same storage operation.
//!
//! This module holds the model and its validation ([`validate_steps`]), pure logic shared by
//! every backend.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::job::{JobId, JobState, NewJob};

/// A workflow's id (UUID v7).
pub type WorkflowId = Uuid;

/// Largest stored output of a workflow step, in bytes of JSON; a step whose result is larger
/// fails with the error kind [`OUTPUT_TOO_LARGE`].
pub const MAX_STEP_OUTPUT_BYTES: usize = 1024 * 1024;

/// The attempt-error kind of a step whose output is over [`MAX_STEP_OUTPUT_BYTES`].
pub const OUTPUT_TOO_LARGE: &str = "output_too_large";

/// The attempt-error kind recorded on a step cancelled because a dependency did not complete.
pub const DEPENDENCY_FAILED: &str = "dependency_failed";

/// Largest number of steps one workflow may have.
pub const MAX_WORKFLOW_STEPS: usize = 100_000;

/// What a step does when one of its dependencies ends without completing (`failed`,
/// `cancelled` or `dropped`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepFailure {
    /// The step is cancelled (with a `dependency_failed` error naming the upstream step), and
    /// so, through their own policies, are its dependents.
    #[default]
    Cancel,
    /// A dependency that failed, was cancelled or dropped counts as done, unless it was itself
    /// cancelled because of a failure further upstream (then this step is cancelled too).
    Ignore,
    /// The step runs once every dependency is finished, whatever their outcome (a finaliser).
    Always,
}

impl DepFailure {
    /// The name stored by backends.
    pub fn as_str(self) -> &'static str {
        match self {
            DepFailure::Cancel => "cancel",
            DepFailure::Ignore => "ignore",
            DepFailure::Always => "always",
        }
    }
}

impl fmt::Display for DepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DepFailure {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cancel" => Ok(DepFailure::Cancel),
            "ignore" => Ok(DepFailure::Ignore),
            "always" => Ok(DepFailure::Always),
            _ => Err(Error::invalid(format!(
                "unknown dependency failure policy `{s}`; accepted: cancel, ignore, always"
            ))),
        }
    }
}

/// One step of a workflow: a job, its name in the workflow and the steps it waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowStep {
    /// Unique within the workflow; dependents and `output_of` name the step by it.
    pub name: String,
    /// The job run for this step (any registered kind).
    pub job: NewJob,
    /// Names of the steps that must finish before this one starts.
    pub deps: Vec<String>,
    /// What happens when a dependency does not complete.
    pub on_dep_failure: DepFailure,
}

impl WorkflowStep {
    /// A step named `name` running `job`, without dependencies.
    pub fn new(name: impl Into<String>, job: NewJob) -> Self {
        Self {
            name: name.into(),
            job,
            deps: Vec::new(),
            on_dep_failure: DepFailure::Cancel,
        }
    }

    /// Adds dependencies by step name.
    pub fn after<I, S>(mut self, deps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.deps.extend(deps.into_iter().map(Into::into));
        self
    }

    /// Sets the failure policy.
    pub fn on_dep_failure(mut self, policy: DepFailure) -> Self {
        self.on_dep_failure = policy;
        self
    }
}

/// A workflow to insert: its id, a name for people, and its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowDef {
    /// Its id (UUID v7), chosen by the client.
    pub id: WorkflowId,
    /// A name for listings (need not be unique).
    pub name: String,
    /// The steps, in any order.
    pub steps: Vec<WorkflowStep>,
}

impl WorkflowDef {
    /// An empty workflow named `name` with a fresh id.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            id: Uuid::now_v7(),
            name: name.into(),
            steps: Vec::new(),
        }
    }

    /// Adds a step.
    pub fn step(mut self, step: WorkflowStep) -> Self {
        self.steps.push(step);
        self
    }

    /// Checks the graph (see [`validate_steps`]) and returns the steps' indices in a
    /// topological order (every step after its dependencies).
    pub fn validate(&self) -> Result<Vec<usize>> {
        if self.steps.is_empty() {
            return Err(Error::invalid(format!(
                "workflow `{}` has no steps; add at least one",
                self.name
            )));
        }
        validate_steps(&[], &self.steps)
    }
}

/// Validates `new` steps to add to a workflow whose steps are named `existing` (empty for a
/// new workflow) and returns the indices of `new` in a topological order.
///
/// Named errors (`ErrorKind::InvalidInput`), each naming the step(s): an empty step name, a
/// `duplicate step name`, an `unknown dependency`, a step that depends on itself, a
/// `dependency cycle` (with its path), a step with a `unique_key` (not supported for steps),
/// too many steps. Existing steps cannot depend on new ones, so a cycle can only run through
/// the new steps.
pub fn validate_steps(existing: &[String], new: &[WorkflowStep]) -> Result<Vec<usize>> {
    if existing.len() + new.len() > MAX_WORKFLOW_STEPS {
        return Err(Error::invalid(format!(
            "a workflow may have at most {MAX_WORKFLOW_STEPS} steps; this one would have {}",
            existing.len() + new.len()
        )));
    }
    let old: HashSet<&str> = existing.iter().map(String::as_str).collect();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, s) in new.iter().enumerate() {
        if s.name.trim().is_empty() {
            return Err(Error::invalid(format!(
                "workflow step #{i} has an empty name; every step needs a unique name"
            )));
        }
        if old.contains(s.name.as_str()) || index.insert(&s.name, i).is_some() {
            return Err(Error::invalid(format!(
                "duplicate step name `{}`: step names must be unique within a workflow",
                s.name
            )));
        }
        if s.job.unique_key.is_some() {
            return Err(Error::invalid(format!(
                "step `{}` has a unique_key; unique keys are not supported on workflow steps",
                s.name
            )));
        }
    }
    for s in new {
        let mut seen = HashSet::new();
        for d in &s.deps {
            if d == &s.name {
                return Err(Error::invalid(format!(
                    "dependency cycle: step `{}` depends on itself",
                    s.name
                )));
            }
            if !old.contains(d.as_str()) && !index.contains_key(d.as_str()) {
                let mut known: Vec<&str> =
                    old.iter().copied().chain(index.keys().copied()).collect();
                known.sort_unstable();
                return Err(Error::invalid(format!(
                    "unknown dependency `{d}` of step `{}`; the workflow's steps are: {}",
                    s.name,
                    known.join(", ")
                )));
            }
            if !seen.insert(d.as_str()) {
                return Err(Error::invalid(format!(
                    "step `{}` lists dependency `{d}` twice",
                    s.name
                )));
            }
        }
    }
    // Kahn's algorithm over the new steps (edges to existing steps are always satisfied).
    let mut indegree = vec![0usize; new.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); new.len()];
    for (i, s) in new.iter().enumerate() {
        for d in &s.deps {
            if let Some(&j) = index.get(d.as_str()) {
                indegree[i] += 1;
                dependents[j].push(i);
            }
        }
    }
    let mut ready: Vec<usize> = (0..new.len()).filter(|&i| indegree[i] == 0).collect();
    ready.reverse();
    let mut order = Vec::with_capacity(new.len());
    while let Some(i) = ready.pop() {
        order.push(i);
        for &k in &dependents[i] {
            indegree[k] -= 1;
            if indegree[k] == 0 {
                ready.push(k);
            }
        }
    }
    if order.len() < new.len() {
        return Err(Error::invalid(format!(
            "dependency cycle: {}",
            find_cycle(new, &index, &indegree)
        )));
    }
    Ok(order)
}

/// A path `a -> b -> … -> a` through the steps Kahn's algorithm could not order.
fn find_cycle(new: &[WorkflowStep], index: &HashMap<&str, usize>, indegree: &[usize]) -> String {
    // Every unordered step has an unordered dependency: walk them until one repeats.
    let start = indegree.iter().position(|&d| d > 0).unwrap_or(0);
    let mut path = vec![start];
    let mut pos: HashMap<usize, usize> = HashMap::from([(start, 0)]);
    let mut cur = start;
    loop {
        let next = new[cur]
            .deps
            .iter()
            .filter_map(|d| index.get(d.as_str()).copied())
            .find(|&j| indegree[j] > 0);
        let Some(next) = next else { break };
        if let Some(&p) = pos.get(&next) {
            // Each step of `path[p..]` depends on the one after it, and `cur` (the last) on
            // `next` (= `path[p]`): reversed, it reads in the direction work flows, dependency
            // first, and ends where it started.
            let mut names: Vec<&str> = path[p..].iter().map(|&i| new[i].name.as_str()).collect();
            names.reverse();
            names.push(new[cur].name.as_str());
            return names.join(" -> ");
        }
        pos.insert(next, path.len());
        path.push(next);
        cur = next;
    }
    new[start].name.clone()
}

/// The state a step starts in, given the states of its dependencies (`None`: a dependency
/// inserted in the same call, not finished yet) and its policy: the step's initial state, how
/// many dependencies it still waits for, and, when it starts cancelled, the dependency that
/// caused it with that dependency's state and whether that one was itself cancelled by the
/// cascade. Used by backends when appending steps to a running workflow.
pub fn initial_step_state(
    runnable: JobState,
    policy: DepFailure,
    deps: &[(String, Option<JobState>, bool)],
) -> (JobState, u32, Option<(String, JobState)>) {
    let mut waiting = 0u32;
    for (name, state, cascaded) in deps {
        match state {
            None => waiting += 1,
            Some(s) if !s.is_finished() => waiting += 1,
            Some(JobState::Completed) => {}
            Some(s) => {
                let satisfied = match policy {
                    DepFailure::Cancel => false,
                    DepFailure::Ignore => !cascaded,
                    DepFailure::Always => true,
                };
                if !satisfied {
                    return (JobState::Cancelled, 0, Some((name.clone(), *s)));
                }
            }
        }
    }
    if waiting > 0 {
        (JobState::Blocked, waiting, None)
    } else {
        (runnable, 0, None)
    }
}

/// Where a workflow is, derived from its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowState {
    /// Some step is not finished.
    Running,
    /// Every step completed.
    Completed,
    /// Every step is finished and some did not complete (failed, dropped, or cancelled by a
    /// dependency's failure).
    Failed,
    /// A user cancelled it; every step is finished.
    Cancelled,
}

impl WorkflowState {
    /// The lowercase name shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowState::Running => "running",
            WorkflowState::Completed => "completed",
            WorkflowState::Failed => "failed",
            WorkflowState::Cancelled => "cancelled",
        }
    }

    /// The state of a workflow whose steps are in `states`; `cancelled`: a user cancelled it.
    pub fn derive(states: impl IntoIterator<Item = JobState>, cancelled: bool) -> Self {
        let mut all_completed = true;
        for s in states {
            if !s.is_finished() {
                return WorkflowState::Running;
            }
            all_completed &= s == JobState::Completed;
        }
        if all_completed {
            WorkflowState::Completed
        } else if cancelled {
            WorkflowState::Cancelled
        } else {
            WorkflowState::Failed
        }
    }
}

impl fmt::Display for WorkflowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a stored workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowStepInfo {
    /// Its name in the workflow.
    pub name: String,
    /// Its job.
    pub job_id: JobId,
    /// The job's kind.
    pub kind: String,
    /// The job's state.
    pub state: JobState,
    /// Names of its dependencies.
    pub deps: Vec<String>,
    /// Its failure policy.
    pub on_dep_failure: DepFailure,
}

/// A stored workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRecord {
    /// Its id.
    pub id: WorkflowId,
    /// Its name.
    pub name: String,
    /// When it was inserted.
    pub created_at: DateTime<Utc>,
    /// Derived from its steps.
    pub state: WorkflowState,
    /// A user cancelled it (and has not retried it since).
    pub cancelled: bool,
    /// Its steps, in insertion order.
    pub steps: Vec<WorkflowStepInfo>,
}

impl WorkflowRecord {
    /// The step named `name`.
    pub fn step(&self, name: &str) -> Option<&WorkflowStepInfo> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Step counts per state.
    pub fn counts(&self) -> BTreeMap<JobState, u64> {
        let mut m = BTreeMap::new();
        for s in &self.steps {
            *m.entry(s.state).or_insert(0) += 1;
        }
        m
    }
}

/// What `cancel_workflow` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowCancelReport {
    /// Steps that had not started and are now `cancelled`.
    pub cancelled: u64,
    /// Running steps whose cancellation was requested (they end at their next heartbeat).
    pub requested: u64,
}

/// The outputs of a step's dependencies, by step name: `None` for a dependency that finished
/// without an output (or did not complete, under an `ignore`/`always` policy).
pub type StepOutputs = BTreeMap<String, Option<serde_json::Value>>;

/// Checks that `steps` (name → deps) with `order` from [`validate_steps`] is topological; for
/// tests.
#[doc(hidden)]
pub fn is_topological(steps: &[WorkflowStep], order: &[usize]) -> bool {
    let mut pos = HashMap::new();
    for (p, &i) in order.iter().enumerate() {
        pos.insert(steps[i].name.as_str(), p);
    }
    steps.iter().all(|s| {
        s.deps
            .iter()
            .all(|d| match (pos.get(d.as_str()), pos.get(s.name.as_str())) {
                (Some(a), Some(b)) => a < b,
                (None, Some(_)) => true,
                _ => false,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn step(name: &str, deps: &[&str]) -> WorkflowStep {
        WorkflowStep::new(name, NewJob::new("k", serde_json::json!(null)))
            .after(deps.iter().copied())
    }

    fn wf(steps: Vec<WorkflowStep>) -> WorkflowDef {
        WorkflowDef {
            steps,
            ..WorkflowDef::new("t")
        }
    }

    #[test]
    fn orders_a_diamond() {
        let w = wf(vec![
            step("d", &["b", "c"]),
            step("b", &["a"]),
            step("c", &["a"]),
            step("a", &[]),
        ]);
        let order = w.validate().unwrap();
        assert!(is_topological(&w.steps, &order));
        assert_eq!(order.len(), 4);
    }

    #[test]
    fn names_a_cycle() {
        let w = wf(vec![
            step("a", &["c"]),
            step("b", &["a"]),
            step("c", &["b"]),
            step("x", &[]),
        ]);
        let e = w.validate().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let m = e.to_string();
        assert!(m.contains("dependency cycle"), "{m}");
        let path = e.message().trim_start_matches("dependency cycle: ");
        let names: Vec<&str> = path.split(" -> ").collect();
        assert_eq!(names.len(), 4, "{m}");
        assert_eq!(names.first(), names.last(), "{m}");
        // Each name depends on the one before it (c -> a: a waits for c).
        let deps = HashMap::from([("a", "c"), ("b", "a"), ("c", "b")]);
        for w in names.windows(2) {
            assert_eq!(deps[w[1]], w[0], "{m}");
        }
        assert!(!m.contains('x'), "{m}");
        let e = wf(vec![step("a", &["a"])]).validate().unwrap_err();
        assert!(e.to_string().contains("depends on itself"), "{e}");
    }

    #[test]
    fn names_unknown_and_duplicate() {
        let e = wf(vec![step("a", &["zz"])]).validate().unwrap_err();
        assert!(e.to_string().contains("unknown dependency `zz`"), "{e}");
        let e = wf(vec![step("a", &[]), step("a", &[])])
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("duplicate step name `a`"), "{e}");
        let e = wf(vec![]).validate().unwrap_err();
        assert!(e.to_string().contains("no steps"), "{e}");
        let mut s = step("u", &[]);
        s.job.unique_key = Some("k".into());
        let e = wf(vec![s]).validate().unwrap_err();
        assert!(e.to_string().contains("unique_key"), "{e}");
    }

    #[test]
    fn appended_steps_see_existing_ones() {
        let existing = vec!["a".to_string()];
        assert!(validate_steps(&existing, &[step("b", &["a"])]).is_ok());
        let e = validate_steps(&existing, &[step("a", &[])]).unwrap_err();
        assert!(e.to_string().contains("duplicate step name"), "{e}");
        let e = validate_steps(&existing, &[step("b", &["c"]), step("c", &["b"])]).unwrap_err();
        assert!(e.to_string().contains("dependency cycle"), "{e}");
    }

    #[test]
    fn initial_states_follow_policies() {
        let failed = |c| vec![("a".to_string(), Some(JobState::Failed), c)];
        let (s, _, why) =
            initial_step_state(JobState::Available, DepFailure::Cancel, &failed(false));
        assert_eq!(s, JobState::Cancelled);
        assert_eq!(why.unwrap().0, "a");
        let (s, n, _) = initial_step_state(JobState::Available, DepFailure::Ignore, &failed(false));
        assert_eq!((s, n), (JobState::Available, 0));
        let (s, _, _) = initial_step_state(JobState::Available, DepFailure::Ignore, &failed(true));
        assert_eq!(s, JobState::Cancelled);
        let (s, _, _) = initial_step_state(JobState::Available, DepFailure::Always, &failed(true));
        assert_eq!(s, JobState::Available);
        let deps = vec![
            ("a".to_string(), Some(JobState::Completed), false),
            ("b".to_string(), Some(JobState::Running), false),
            ("c".to_string(), None, false),
        ];
        let (s, n, _) = initial_step_state(JobState::Available, DepFailure::Cancel, &deps);
        assert_eq!((s, n), (JobState::Blocked, 2));
    }

    #[test]
    fn derives_workflow_state() {
        use JobState::*;
        assert_eq!(
            WorkflowState::derive([Completed, Running], false),
            WorkflowState::Running
        );
        assert_eq!(
            WorkflowState::derive([Completed, Blocked], false),
            WorkflowState::Running
        );
        assert_eq!(
            WorkflowState::derive([Completed, Completed], false),
            WorkflowState::Completed
        );
        assert_eq!(
            WorkflowState::derive([Completed, Failed], false),
            WorkflowState::Failed
        );
        assert_eq!(
            WorkflowState::derive([Cancelled], true),
            WorkflowState::Cancelled
        );
        assert_eq!("always".parse::<DepFailure>().unwrap(), DepFailure::Always);
        assert!("x"
            .parse::<DepFailure>()
            .unwrap_err()
            .to_string()
            .contains("accepted"));
    }
}
