//! Run with: `cargo run --release -p switchyard-bench --bin redis_storage_loop`
//!
//! Diagnostic: the Redis storage's own claim and complete scripts in a loop (no worker), to
//! separate the storage's cost from the worker's. Enqueues `--jobs` jobs (10,000), then
//! `--tasks` concurrent loops (4) each claim `--batch` jobs (16) and complete them, until the
//! queue is empty. Prints jobs/s and the CPU time Redis (`INFO cpu`) and this process spent
//! per job during the drain (and the part of it spent in scripts, from `INFO commandstats`;
//! the run resets those statistics). Reads `SWITCHYARD_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`). `--pad N` adds an N-byte string to each payload (payloads over
//! 64 bytes make job hashes hash tables instead of listpacks). With `SWITCHYARD_LOOP_PAUSE`
//! set, it waits for a line on standard input between enqueue and drain, so a profiler (e.g.
//! `callgrind_control -i on` on a Redis under `valgrind --tool=callgrind --instr-atstart=no`)
//! can cover the drain alone, as in docs/redis.md#performance.

use std::time::Instant;

use switchyard_bench::cpu::own_cpu;
use switchyard_bench::jobs::{bench_jobs, loop_claim, succeeded};
use switchyard_bench::{arg, services};
use switchyard_core::Storage;
use switchyard_redis::{RedisConfig, RedisStorage};

/// Redis' own CPU seconds (user + system) so far.
async fn redis_cpu(s: &RedisStorage) -> f64 {
    switchyard_bench::cpu::redis_cpu(&mut s.connection())
        .await
        .expect("INFO cpu")
}

/// Microseconds Redis spent inside scripts (`EVALSHA` in `INFO commandstats`) since the last
/// `CONFIG RESETSTAT`.
async fn script_usec(s: &RedisStorage) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut s.connection())
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .flat_map(|l| l.split(','))
        .filter_map(|kv| kv.strip_prefix("usec="))
        .filter_map(|v| v.parse::<f64>().ok())
        .sum()
}

#[tokio::main]
async fn main() {
    let url = services::redis_url();
    let n = arg("--jobs", 10_000);
    let tasks = arg("--tasks", 4);
    let batch = arg("--batch", 16);
    let s = RedisStorage::connect(
        RedisConfig::new(url).with_prefix(format!("loop_{}", std::process::id())),
    )
    .await
    .expect("connect");
    s.migrate().await.expect("migrate");
    let jobs = bench_jobs(n, Some(arg("--pad", 0)));
    for c in jobs.chunks(1000) {
        s.enqueue(c.to_vec()).await.expect("enqueue");
    }
    let req = loop_claim(batch);
    if std::env::var_os("SWITCHYARD_LOOP_PAUSE").is_some() {
        println!("enqueued; press enter to drain");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).expect("stdin");
    }
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut s.connection())
        .await
        .expect("CONFIG RESETSTAT");
    let (r0, c0) = (redis_cpu(&s).await, own_cpu());
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (s, req) = (s.clone(), req.clone());
        handles.push(tokio::spawn(async move {
            let mut done = 0;
            loop {
                let claimed = s.claim(&req).await.expect("claim");
                if claimed.is_empty() {
                    return done;
                }
                done += claimed.len();
                s.complete(&succeeded(&claimed)).await.expect("complete");
            }
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.expect("loop panicked");
    }
    let wall = t0.elapsed().as_secs_f64();
    let (r1, c1) = (redis_cpu(&s).await, own_cpu());
    let scripts = script_usec(&s).await;
    println!(
        "{total} jobs in {wall:.3} s = {:.0} jobs/s; Redis CPU {:.1} µs/job ({:.1} in scripts), \
         this process {:.1} µs/job",
        total as f64 / wall,
        (r1 - r0) * 1e6 / total as f64,
        scripts / total as f64,
        (c1 - c0) * 1e6 / total as f64,
    );
    s.destroy().await.expect("destroy");
}
