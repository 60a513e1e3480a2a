//! Workflows on Redis: every change is one Lua script (`lua/workflow/`, with the prelude).
//! The release of dependents is `wf_settle` in `lua/prelude.lua`, which `finish` calls for a
//! workflow step, so `complete`, `cancel` and `rescue_expired` release or cancel dependents in
//! the script that finishes the step.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, TimeZone, Utc};
use redis::Script;
use switchyard_core::workflow::validate_steps;
use switchyard_core::{
    validate_new_job, Error, ErrorKind, JobId, JobState, Result, StepOutputs, StorageCapabilities,
    WakeHub, WorkflowCancelReport, WorkflowDef, WorkflowId, WorkflowRecord, WorkflowState,
    WorkflowStep, WorkflowStepInfo,
};
use uuid::Uuid;

use crate::connection::{self, Conn};
use crate::keys::Keys;
use crate::record::{enqueue_args, millis};

const PRELUDE: &str = include_str!("lua/prelude.lua");

struct WfScripts {
    insert: Script,
    get: Script,
    cancel: Script,
    retry: Script,
    outputs: Script,
    prune: Script,
}

fn scripts() -> &'static WfScripts {
    static S: OnceLock<WfScripts> = OnceLock::new();
    S.get_or_init(|| {
        let s = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        WfScripts {
            insert: s(include_str!("lua/workflow/insert.lua")),
            get: s(include_str!("lua/workflow/get.lua")),
            cancel: s(include_str!("lua/workflow/cancel.lua")),
            retry: s(include_str!("lua/workflow/retry.lua")),
            outputs: s(include_str!("lua/workflow/outputs.lua")),
            prune: s(include_str!("lua/workflow/prune.lua")),
        }
    })
}

/// What the workflow operations need of the storage.
pub(crate) struct Ctx<'a> {
    pub conn: &'a Arc<Conn>,
    pub keys: &'a Keys,
    pub caps: &'a StorageCapabilities,
    pub wake: &'a WakeHub,
}

fn not_found(id: WorkflowId) -> Error {
    Error::not_found(format!("no workflow with id {id}"))
}

/// The script's arguments for `steps` in `order` (after the prefix, id, flag, name, count).
fn step_args(steps: &[WorkflowStep], order: &[usize]) -> Result<Vec<String>> {
    let mut args = Vec::with_capacity(order.len() * 13);
    for &i in order {
        let s = &steps[i];
        let job = enqueue_args(std::slice::from_ref(&s.job))?;
        args.extend(job.into_iter().skip(1));
        args.push(s.name.clone());
        args.push(s.on_dep_failure.as_str().to_string());
        args.push(serde_json::to_string(&s.deps)?);
    }
    Ok(args)
}

async fn insert(
    cx: &Ctx<'_>,
    id: WorkflowId,
    create: bool,
    name: &str,
    steps: &[WorkflowStep],
    order: &[usize],
) -> Result<()> {
    let args = step_args(steps, order)?;
    let r: Vec<String> = connection::retrying(cx.conn, "insert workflow", |mut c| {
        let mut inv = cx.keys.invocation(&scripts().insert);
        inv.arg(id.to_string())
            .arg(if create { "1" } else { "0" })
            .arg(name)
            .arg(order.len());
        for a in &args {
            inv.arg(a);
        }
        async move { inv.invoke_async(&mut c).await }
    })
    .await?;
    match r.first().map(String::as_str) {
        Some("ok") => {
            cx.wake.notify();
            Ok(())
        }
        // A retried call whose first reply was lost finds its own workflow.
        Some("exists") => Err(Error::new(
            ErrorKind::Conflict,
            format!("a workflow with id {id} exists already"),
        )),
        Some("not_found") => Err(not_found(id)),
        Some("cancelled") => Err(Error::new(
            ErrorKind::Conflict,
            format!("workflow {id} is cancelled; retry it before appending steps"),
        )),
        Some("duplicate") => Err(Error::invalid(format!(
            "duplicate step name `{}`: step names must be unique within a workflow",
            r.get(1).cloned().unwrap_or_default()
        ))),
        other => Err(Error::corrupt(format!(
            "Redis workflow insert answered {other:?}"
        ))),
    }
}

/// `Storage::enqueue_workflow`.
pub(crate) async fn enqueue_workflow(cx: &Ctx<'_>, wf: WorkflowDef) -> Result<WorkflowId> {
    let order = wf.validate()?;
    for s in &wf.steps {
        validate_new_job(&s.job, cx.caps)?;
    }
    insert(cx, wf.id, true, &wf.name, &wf.steps, &order).await?;
    Ok(wf.id)
}

/// `Storage::append_steps`: validated against the names stored now; the script checks again
/// that none was taken meanwhile.
pub(crate) async fn append_steps(
    cx: &Ctx<'_>,
    id: WorkflowId,
    steps: Vec<WorkflowStep>,
) -> Result<Vec<JobId>> {
    for s in &steps {
        validate_new_job(&s.job, cx.caps)?;
    }
    let current = get_workflow(cx, id).await?.ok_or_else(|| not_found(id))?;
    let existing: Vec<String> = current.steps.iter().map(|s| s.name.clone()).collect();
    let order = validate_steps(&existing, &steps)?;
    insert(cx, id, false, &current.name, &steps, &order).await?;
    Ok(steps.iter().map(|s| s.job.id).collect())
}

fn bad(what: &str, v: &str) -> Error {
    Error::corrupt(format!("Redis workflow has a bad {what} `{v}`"))
}

/// `Storage::get_workflow`.
pub(crate) async fn get_workflow(cx: &Ctx<'_>, id: WorkflowId) -> Result<Option<WorkflowRecord>> {
    let r: Vec<String> = connection::retrying(cx.conn, "get workflow", |mut c| {
        let mut inv = cx.keys.invocation(&scripts().get);
        inv.arg(id.to_string());
        async move { inv.invoke_async(&mut c).await }
    })
    .await?;
    if r.len() < 3 {
        return Ok(None);
    }
    let created: i64 = r[1].parse().map_err(|_| bad("created_at", &r[1]))?;
    let cancelled = !r[2].is_empty();
    let mut names: HashMap<&str, &str> = HashMap::new();
    for c in r[3..].chunks(6) {
        if c.len() == 6 {
            names.insert(&c[0], &c[1]);
        }
    }
    let mut steps = Vec::new();
    for c in r[3..].chunks(6) {
        if c.len() < 6 {
            break;
        }
        let mut deps: Vec<String> = c[5]
            .split(',')
            .filter(|d| !d.is_empty())
            .map(|d| names.get(d).copied().unwrap_or(d).to_string())
            .collect();
        deps.sort();
        steps.push(WorkflowStepInfo {
            name: c[1].clone(),
            job_id: Uuid::parse_str(&c[0]).map_err(|_| bad("step id", &c[0]))?,
            kind: c[4].clone(),
            state: c[2].parse::<JobState>()?,
            deps,
            on_dep_failure: c[3].parse()?,
        });
    }
    let created_at: DateTime<Utc> = Utc
        .timestamp_millis_opt(created)
        .single()
        .unwrap_or_default();
    Ok(Some(WorkflowRecord {
        id,
        name: r[0].clone(),
        created_at,
        state: WorkflowState::derive(steps.iter().map(|s| s.state), cancelled),
        cancelled,
        steps,
    }))
}

/// `Storage::list_workflows`: newest first.
pub(crate) async fn list_workflows(cx: &Ctx<'_>, limit: usize) -> Result<Vec<WorkflowRecord>> {
    let limit = match limit {
        0 => 100,
        n => n.min(1000),
    };
    let key = cx.keys.k("workflows");
    let ids: Vec<String> = connection::retrying(cx.conn, "list workflows", |mut c| {
        let key = key.clone();
        async move {
            redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(limit as i64 - 1)
                .arg("REV")
                .query_async(&mut c)
                .await
        }
    })
    .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let id = Uuid::parse_str(&id).map_err(|_| bad("id", &id))?;
        if let Some(w) = get_workflow(cx, id).await? {
            out.push(w);
        }
    }
    Ok(out)
}

/// `Storage::cancel_workflow`.
pub(crate) async fn cancel_workflow(cx: &Ctx<'_>, id: WorkflowId) -> Result<WorkflowCancelReport> {
    let mut inv = cx.keys.invocation(&scripts().cancel);
    inv.arg(id.to_string());
    let r: Vec<i64> = inv
        .invoke_async(&mut cx.conn.get())
        .await
        .map_err(|e| cx.conn.error("cancel workflow", e))?;
    match r.as_slice() {
        [c, q] => Ok(WorkflowCancelReport {
            cancelled: *c as u64,
            requested: *q as u64,
        }),
        _ => Err(not_found(id)),
    }
}

/// `Storage::retry_workflow`.
pub(crate) async fn retry_workflow(cx: &Ctx<'_>, id: WorkflowId) -> Result<u64> {
    let mut inv = cx.keys.invocation(&scripts().retry);
    inv.arg(id.to_string());
    let n: i64 = inv
        .invoke_async(&mut cx.conn.get())
        .await
        .map_err(|e| cx.conn.error("retry workflow", e))?;
    if n < 0 {
        return Err(not_found(id));
    }
    cx.wake.notify();
    Ok(n as u64)
}

/// `Storage::step_outputs`.
pub(crate) async fn step_outputs(cx: &Ctx<'_>, job: JobId) -> Result<StepOutputs> {
    let r: Vec<String> = connection::retrying(cx.conn, "step outputs", |mut c| {
        let mut inv = cx.keys.invocation(&scripts().outputs);
        inv.arg(job.to_string());
        async move { inv.invoke_async(&mut c).await }
    })
    .await?;
    let mut out = StepOutputs::new();
    for pair in r.chunks(2) {
        if let [name, v] = pair {
            let value = match v.strip_prefix('+') {
                Some(json) => Some(serde_json::from_str(json).map_err(|e| {
                    Error::corrupt(format!("step `{name}` has a bad stored output: {e}"))
                })?),
                None => None,
            };
            out.insert(name.clone(), value);
        }
    }
    Ok(out)
}

/// The pruner's share for workflows (whole workflows, about `limit` jobs).
pub(crate) async fn prune(cx: &Ctx<'_>, before: DateTime<Utc>, limit: usize) -> Result<u64> {
    if limit == 0 {
        return Ok(0);
    }
    connection::retrying(cx.conn, "prune workflows", |mut c| {
        let mut inv = cx.keys.invocation(&scripts().prune);
        inv.arg(millis(before)).arg(limit);
        async move { inv.invoke_async(&mut c).await }
    })
    .await
}
