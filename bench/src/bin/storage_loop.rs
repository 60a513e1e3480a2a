//! Run with: `cargo run --release -p switchyard-bench --bin storage_loop`
//!
//! Diagnostic: the SQLite storage's own claim/complete statements in one tight loop (no
//! worker), to separate storage cost from worker overhead. The first argument is the claim
//! batch size (default 16).

use std::time::{Duration, Instant};

use switchyard_bench::jobs::{bench_jobs, loop_claim, succeeded};
use switchyard_core::Storage;
use switchyard_sqlite::{SqliteConfig, SqliteStorage};

#[tokio::main]
async fn main() {
    let path = std::env::temp_dir().join(format!("switchyard-loop-{}.db", std::process::id()));
    let s = SqliteStorage::connect(SqliteConfig::new(format!("sqlite://{}", path.display())))
        .await
        .unwrap();
    s.migrate().await.unwrap();
    let jobs = bench_jobs(10_000, None);
    for c in jobs.chunks(1000) {
        s.enqueue(c.to_vec()).await.unwrap();
    }
    let req = loop_claim(
        std::env::args()
            .nth(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(16),
    );
    let t0 = Instant::now();
    let (mut tc, mut tk) = (Duration::ZERO, Duration::ZERO);
    let mut n = 0;
    loop {
        let t = Instant::now();
        let claimed = s.claim(&req).await.unwrap();
        tc += t.elapsed();
        if claimed.is_empty() {
            break;
        }
        n += claimed.len();
        let done = succeeded(&claimed);
        let t = Instant::now();
        s.complete(&done).await.unwrap();
        tk += t.elapsed();
    }
    println!(
        "{n} jobs in {:?} = {:.0} jobs/s (claims {:?}, completes {:?})",
        t0.elapsed(),
        n as f64 / t0.elapsed().as_secs_f64(),
        tc,
        tk
    );
    let _ = std::fs::remove_file(path);
}
