//! Run with: `cargo run --release -p switchyard-postgres --example postgres_drain [-- --jobs 10000 --concurrency 16 --runs 3]`
//!
//! Switchyard's own drain on PostgreSQL, to set beside `raw_ceiling` in the same sitting:
//! enqueue `--jobs` no-op jobs in one batch (W1), then time one worker with `--concurrency`
//! slots from start until every job is recorded `completed` (W2). Each run uses a fresh table
//! prefix, dropped afterwards. Reads `SWITCHYARD_TEST_POSTGRES_URL`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::{Registry, Worker};
use switchyard_core::{NewJob, Storage};
use switchyard_postgres::{PostgresConfig, PostgresStorage};

fn arg(name: &str, default: usize) -> usize {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (jobs, concurrency, runs) = (
        arg("--jobs", 10_000),
        arg("--concurrency", 16),
        arg("--runs", 3),
    );
    let url = std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into());
    println!("switchyard drain: {jobs} jobs, concurrency {concurrency}, {runs} runs");
    let (mut drains, mut enqueues) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let prefix = format!("bench{run}_{}_", std::process::id());
        let storage =
            PostgresStorage::connect(PostgresConfig::new(&url).with_prefix(&prefix)).await?;
        storage.migrate().await?;
        let batch: Vec<NewJob> = (0..jobs)
            .map(|i| NewJob::new("noop", serde_json::json!({ "n": i })).with_queue("bench"))
            .collect();
        let start = Instant::now();
        storage.enqueue(batch).await?;
        let enqueue_rate = jobs as f64 / start.elapsed().as_secs_f64();
        sqlx::query(&format!("VACUUM ANALYZE {prefix}jobs"))
            .execute(storage.pool())
            .await?;

        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let registry = Registry::new().register_fn("noop", move |_, _| {
            r.fetch_add(1, Ordering::Relaxed);
            async { Ok(None) }
        });
        let shared: Arc<dyn Storage> = Arc::new(storage.clone());
        let start = Instant::now();
        let worker = Worker::new(shared, registry)
            .queues(["bench"])
            .concurrency(concurrency)
            .start();
        let completed_sql = format!("SELECT count(*) FROM {prefix}jobs WHERE state = 'completed'");
        loop {
            if ran.load(Ordering::Relaxed) >= jobs {
                let done: i64 = sqlx::query_scalar(&completed_sql)
                    .fetch_one(storage.pool())
                    .await?;
                if done as usize >= jobs {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let secs = start.elapsed().as_secs_f64();
        worker.stop().await;
        let rate = jobs as f64 / secs;
        println!(
            "  run {run}: drained {jobs} in {secs:.3} s = {rate:.0} jobs/s (batch enqueue {enqueue_rate:.0} jobs/s)"
        );
        drains.push(rate);
        enqueues.push(enqueue_rate);
        for t in ["jobs", "leaders", "migrations"] {
            sqlx::query(&format!("DROP TABLE IF EXISTS {prefix}{t}"))
                .execute(storage.pool())
                .await?;
        }
    }
    println!(
        "median: {:.0} jobs/s drain, {:.0} jobs/s batch enqueue",
        median(drains),
        median(enqueues)
    );
    Ok(())
}
