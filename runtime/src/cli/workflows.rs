//! `switchyard workflows list|show|cancel|retry`: workflows and the states of their steps.
//! `show` draws the graph: the steps in dependency order, each with its state and the steps it
//! waits for. With `--json`, each prints one JSON value (the records as the storage returns
//! them, or what a change did).

use std::collections::{BTreeMap, HashMap};

use clap::Subcommand;
use serde_json::json;
use switchyard_core::{Error, Result, WorkflowRecord};

use super::output;
use super::Outcome;
use crate::client::Client;

/// The `workflows` subcommands.
#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// List workflows, newest first, with their state and step counts.
    List {
        /// How many, 1 to 1000.
        #[arg(long, default_value_t = 50, allow_negative_numbers = true)]
        limit: i64,
    },
    /// Show one workflow: its steps in dependency order, each with its state and dependencies.
    Show {
        /// Workflow id.
        id: String,
    },
    /// Cancel a workflow: steps not started never run, running ones are asked to stop.
    Cancel {
        /// Workflow id.
        id: String,
    },
    /// Run a workflow's failed and cancelled steps (and their dependents) again; completed
    /// steps keep their outputs.
    Retry {
        /// Workflow id.
        id: String,
    },
}

/// A workflow id from the command line.
pub(crate) fn workflow_id(id: &str) -> Result<uuid::Uuid> {
    id.parse().map_err(|_| {
        Error::invalid(format!(
            "`{id}` is not a workflow id; accepted: a UUID such as \
             0192f0c1-7b1e-7c3a-9f00-3c2b1a0d9e8f"
        ))
    })
}

/// Runs one `workflows` subcommand.
pub(super) async fn run(client: &Client, command: &WorkflowsCommand) -> Result<Outcome> {
    match command {
        WorkflowsCommand::List { limit } => {
            if !(1..=1000).contains(limit) {
                return Err(Error::invalid(format!(
                    "--limit {limit} is out of range; accepted: 1 to 1000"
                )));
            }
            list(client, *limit as usize).await
        }
        WorkflowsCommand::Show { id } => show(client, workflow_id(id)?).await,
        WorkflowsCommand::Cancel { id } => {
            let id = workflow_id(id)?;
            let r = client.cancel_workflow(id).await?;
            if output::json() {
                output::json_line(&json!({
                    "id": id, "cancelled": r.cancelled, "requested": r.requested,
                    "changed": r.cancelled + r.requested > 0,
                }))?;
            } else {
                output::line(format!(
                    "workflow {id}: {} step(s) cancelled, {} running step(s) asked to stop",
                    r.cancelled, r.requested
                ))?;
            }
            Ok(if r.cancelled + r.requested > 0 {
                Outcome::Done
            } else {
                Outcome::NothingChanged
            })
        }
        WorkflowsCommand::Retry { id } => {
            let id = workflow_id(id)?;
            let n = client.retry_workflow(id).await?;
            if output::json() {
                output::json_line(&json!({ "id": id, "reset": n, "changed": n > 0 }))?;
            } else {
                output::line(format!("workflow {id}: {n} step(s) run again"))?;
            }
            Ok(if n > 0 {
                Outcome::Done
            } else {
                Outcome::NothingChanged
            })
        }
    }
}

fn counts_text(w: &WorkflowRecord) -> String {
    w.counts()
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn list(client: &Client, limit: usize) -> Result<Outcome> {
    let all = client.list_workflows(limit).await?;
    if output::json() {
        output::json_line(&all)?;
        return Ok(Outcome::Done);
    }
    if all.is_empty() {
        output::line("no workflows")?;
        return Ok(Outcome::Done);
    }
    output::line(format!(
        "{} {} {} {}",
        output::pad("ID", 36),
        output::pad("STATE", 9),
        output::pad("NAME", 20),
        "STEPS"
    ))?;
    for w in &all {
        output::line(format!(
            "{} {} {} {} ({})",
            output::pad(w.id, 36),
            output::pad(w.state, 9),
            output::pad(&w.name, 20),
            w.steps.len(),
            counts_text(w)
        ))?;
    }
    Ok(Outcome::Done)
}

/// The steps' levels: 0 for a step without dependencies, else one more than its deepest one.
pub(crate) fn levels(w: &WorkflowRecord) -> BTreeMap<usize, Vec<usize>> {
    let index: HashMap<&str, usize> = w
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut level: Vec<Option<usize>> = vec![None; w.steps.len()];
    fn depth(
        i: usize,
        w: &WorkflowRecord,
        index: &HashMap<&str, usize>,
        level: &mut Vec<Option<usize>>,
        guard: usize,
    ) -> usize {
        if let Some(l) = level[i] {
            return l;
        }
        if guard > w.steps.len() {
            return 0; // a cycle cannot be stored; stay finite anyway
        }
        let l = w.steps[i]
            .deps
            .iter()
            .filter_map(|d| index.get(d.as_str()))
            .map(|&j| depth(j, w, index, level, guard + 1) + 1)
            .max()
            .unwrap_or(0);
        level[i] = Some(l);
        l
    }
    let mut out: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..w.steps.len() {
        let l = depth(i, w, &index, &mut level, 0);
        out.entry(l).or_default().push(i);
    }
    out
}

/// The text of `show`: a header, then one line per step, grouped by level.
pub(crate) fn render(w: &WorkflowRecord) -> String {
    let mut s = format!(
        "workflow {} `{}`: {}{} ({} steps: {})\n",
        w.id,
        w.name,
        w.state,
        if w.cancelled {
            ", cancelled by a user"
        } else {
            ""
        },
        w.steps.len(),
        counts_text(w)
    );
    for (level, steps) in levels(w) {
        s.push_str(&format!("level {level}\n"));
        for &i in &steps {
            let st = &w.steps[i];
            let deps = if st.deps.is_empty() {
                String::new()
            } else {
                format!(" <- {}", st.deps.join(", "))
            };
            let policy = match st.on_dep_failure {
                switchyard_core::DepFailure::Cancel => String::new(),
                p => format!(" [on dependency failure: {p}]"),
            };
            s.push_str(&format!(
                "  [{}] {} ({}, job {}){deps}{policy}\n",
                st.state, st.name, st.kind, st.job_id
            ));
        }
    }
    s
}

async fn show(client: &Client, id: uuid::Uuid) -> Result<Outcome> {
    let w = client
        .get_workflow(id)
        .await?
        .ok_or_else(|| Error::not_found(format!("no workflow with id {id}")))?;
    if output::json() {
        output::json_line(&w)?;
    } else {
        output::line(render(&w).trim_end())?;
    }
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{DepFailure, JobState, WorkflowState, WorkflowStepInfo};

    fn step(name: &str, state: JobState, deps: &[&str]) -> WorkflowStepInfo {
        WorkflowStepInfo {
            name: name.into(),
            job_id: uuid::Uuid::nil(),
            kind: "k".into(),
            state,
            deps: deps.iter().map(|d| d.to_string()).collect(),
            on_dep_failure: DepFailure::Cancel,
        }
    }

    #[test]
    fn draws_levels_with_states() {
        let w = WorkflowRecord {
            id: uuid::Uuid::nil(),
            name: "report".into(),
            created_at: chrono::Utc::now(),
            state: WorkflowState::Running,
            cancelled: false,
            steps: vec![
                step("report", JobState::Blocked, &["a", "b"]),
                step("a", JobState::Completed, &[]),
                step("b", JobState::Running, &[]),
            ],
        };
        let text = render(&w);
        let a = text.find("[completed] a").expect(&text);
        let r = text.find("[blocked] report (k, job").expect(&text);
        assert!(a < r, "dependencies come first:\n{text}");
        assert!(text.contains("<- a, b"), "{text}");
        assert!(text.contains("level 1"), "{text}");
    }

    #[test]
    fn refuses_a_bad_id() {
        let e = workflow_id("nope").unwrap_err();
        assert!(e.to_string().contains("not a workflow id"), "{e}");
    }
}
