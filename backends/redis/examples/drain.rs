//! Run with: cargo run --release -p switchyard-redis --example drain
//!
//! W2 drain on the Redis backend (bench/WORKLOAD.md): 10,000 no-op jobs already queued, one
//! worker with concurrency 16; time from worker start until every job is completed. Prints
//! jobs/s per run and the median. Arguments: `--jobs N`, `--concurrency C`, `--runs R`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::{Registry, Worker};
use switchyard_core::{JobState, NewJob, Storage};
use switchyard_redis::{RedisConfig, RedisStorage};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> switchyard_core::Result<()> {
    let url = std::env::var("SWITCHYARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let jobs = arg("--jobs", 10_000);
    let concurrency = arg("--concurrency", 16);
    let runs = arg("--runs", 3).max(1);
    let mut figures = Vec::new();
    for run in 1..=runs {
        let prefix = format!("drain-{}-{run}", std::process::id());
        let storage = RedisStorage::connect(RedisConfig::new(&url).with_prefix(prefix)).await?;
        storage.migrate().await?;
        let start = Instant::now();
        for chunk in (0..jobs).collect::<Vec<_>>().chunks(1000) {
            let batch = chunk
                .iter()
                .map(|i| NewJob::new("noop", serde_json::json!({ "n": i })).with_queue("bench"))
                .collect();
            storage.enqueue(batch).await?;
        }
        let enqueue = start.elapsed();
        let registry = Registry::new().register_fn("noop", |_payload, _ctx| async { Ok(None) });
        let start = Instant::now();
        let handle = Worker::new(Arc::new(storage.clone()), registry)
            .queues(["bench"])
            .concurrency(concurrency)
            .start();
        loop {
            let counts = storage.counts().await?;
            let done = counts
                .iter()
                .filter_map(|c| c.counts.get(&JobState::Completed))
                .sum::<u64>();
            if done as usize >= jobs {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let drain = start.elapsed();
        handle.stop().await;
        let rate = jobs as f64 / drain.as_secs_f64();
        println!(
            "run {run}: enqueue (batches of 1,000) {:.0} jobs/s, drain {rate:.0} jobs/s",
            jobs as f64 / enqueue.as_secs_f64()
        );
        figures.push(rate);
        storage
            .prune(
                chrono::Utc::now() + chrono::Duration::seconds(60),
                1_000_000,
            )
            .await?;
    }
    figures.sort_by(f64::total_cmp);
    println!(
        "W2 drain (median of {runs}): {:.0} jobs/s",
        figures[figures.len() / 2]
    );
    Ok(())
}
