//! Run with: `cargo run --release -p switchyard-bench --bin workflow_bench [-- --chain 1000 --leaves 10000 --concurrency 16]`
//!
//! Workflows on each storage (SQLite in a temporary file, PostgreSQL and Redis on the test
//! servers; `--only sqlite|postgres|redis` picks one): a chain of `--chain` steps and a
//! fan-out/fan-in of `--leaves` leaves joined by one step, each run to completion by one worker
//! of `--concurrency` slots with no-op steps. Prints each workflow's wall time and the release
//! latency — from the storage's `finished_at` of a step's last dependency to the dependent's
//! `started_at` (both the storage's clock) — as p50/p99/max over the chain's links, and the
//! join's for the fan-in. The target is a p99 under 50 ms on every storage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::{
    Config, JobContext, JobState, NewJob, Registry, Storage, Worker, WorkflowDef, WorkflowId,
    WorkflowState, WorkflowStep,
};
use switchyard_bench::args::arg;
use switchyard_bench::services;

fn only() -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned())
}

fn step(name: String, q: &str) -> WorkflowStep {
    WorkflowStep::new(name, NewJob::new("noop", json!(null)).with_queue(q))
}

async fn run_to_end(
    storage: &Arc<dyn Storage>,
    def: WorkflowDef,
    timeout: Duration,
) -> Result<(WorkflowId, Duration), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let id = storage.enqueue_workflow(def).await?;
    loop {
        let w = storage.get_workflow(id).await?.ok_or("workflow vanished")?;
        if w.state != WorkflowState::Running {
            if w.state != WorkflowState::Completed {
                return Err(format!("workflow ended {}", w.state).into());
            }
            return Ok((id, t.elapsed()));
        }
        if t.elapsed() > timeout {
            return Err(
                format!("workflow not finished after {timeout:?}: {:?}", w.counts()).into(),
            );
        }
        // Not too often: reading a 10,000-step workflow is work the storage shares with the run.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn bench(name: &str, url: String) -> Result<(), Box<dyn std::error::Error>> {
    let prefix = format!(
        "wfb{}_",
        uuid::Uuid::now_v7().simple().to_string()[..8].to_owned()
    );
    let config = Config {
        storage: url,
        prefix,
        ..Config::default()
    };
    let storage = switchyard::connect::connect_storage(&config).await?;
    storage.migrate().await?;
    let q = "wf_bench";
    let registry = Registry::new().register_fn("noop", |_, _ctx: JobContext| async { Ok(None) });
    let worker = Worker::new(storage.clone(), registry)
        .queues([q.to_string()])
        .concurrency(arg("--concurrency", 16))
        .poll_interval(Duration::from_millis(200))
        .start();

    // A chain: step i waits for step i - 1.
    let n = arg("--chain", 1000).max(2);
    let mut chain = WorkflowDef::new("chain");
    for i in 0..n {
        let s = step(format!("s{i}"), q);
        chain = chain.step(if i == 0 {
            s
        } else {
            s.after([format!("s{}", i - 1)])
        });
    }
    let ids: Vec<_> = chain.steps.iter().map(|s| s.job.id).collect();
    let (_, took) = run_to_end(&storage, chain, Duration::from_secs(600)).await?;
    let mut lat = Vec::with_capacity(n);
    let mut prev = storage.get(ids[0]).await?.ok_or("missing step")?;
    for id in &ids[1..] {
        let j = storage.get(*id).await?.ok_or("missing step")?;
        if let (Some(f), Some(s)) = (prev.finished_at, j.started_at) {
            lat.push((s - f).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
        prev = j;
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name}: chain of {n}: {:.2} s ({:.0} steps/s); release latency ms p50 {:.2} p99 {:.2} max {:.2} {}",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
        if pct(&lat, 0.99) < 50.0 { "(p99 < 50 ms: ok)" } else { "(p99 >= 50 ms: OVER TARGET)" }
    );

    // Fan-out / fan-in: `leaves` independent steps, one join.
    let leaves = arg("--leaves", 10_000).max(1);
    let mut fan = WorkflowDef::new("fan");
    let names: Vec<String> = (0..leaves).map(|i| format!("l{i}")).collect();
    for l in &names {
        fan = fan.step(step(l.clone(), q));
    }
    fan = fan.step(step("join".into(), q).after(names.iter().cloned()));
    let leaf_ids: Vec<_> = fan.steps[..leaves].iter().map(|s| s.job.id).collect();
    let join_id = fan.steps[leaves].job.id;
    let (_, took) = run_to_end(&storage, fan, Duration::from_secs(1200)).await?;
    let mut last = None;
    for id in leaf_ids {
        let j = storage.get(id).await?.ok_or("missing leaf")?;
        last = last.max(j.finished_at);
    }
    let join = storage.get(join_id).await?.ok_or("missing join")?;
    assert_eq!(join.state, JobState::Completed);
    let join_lat = match (last, join.started_at) {
        (Some(f), Some(s)) => (s - f).num_microseconds().unwrap_or(0) as f64 / 1000.0,
        _ => f64::NAN,
    };
    println!(
        "{name}: fan-out/fan-in of {leaves} leaves: {:.2} s ({:.0} steps/s); join release latency {:.2} ms",
        took.as_secs_f64(),
        (leaves + 1) as f64 / took.as_secs_f64(),
        join_lat
    );
    worker.stop().await;
    if let Err(e) = storage.destroy().await {
        eprintln!("{name}: could not destroy the bench instance: {e}");
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("switchyard-wf-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let targets = [
        ("sqlite", format!("sqlite://{}/bench.db", dir.display())),
        ("postgres", services::postgres_url()),
        ("redis", services::redis_url()),
    ];
    let only = only();
    let mut failed = false;
    for (name, url) in targets {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        if let Err(e) = bench(name, url).await {
            eprintln!("{name}: {e}");
            failed = true;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if failed {
        std::process::exit(1);
    }
}
