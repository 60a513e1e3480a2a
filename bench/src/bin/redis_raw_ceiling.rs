//! Run with: cargo run --release -p switchyard-bench --bin redis_raw_ceiling
//!
//! The raw ceiling of the `redis` crate on this machine for a reliable queue, to compare the
//! Redis backend's W2 drain with: pipelined `LPUSH` of 10,000 ids, then 16 concurrent tasks on
//! one multiplexed connection drain them, each round trip moving a batch of ids to a
//! processing list (`LMOVE`, the reliable-fetch primitive), and the next one marking them done
//! (`LREM` from the processing list + `INCR` of a done counter). No job records, no leases, no
//! states: only the moves a queue cannot do without.
//!
//! Arguments (all optional): `--jobs N` (10,000), `--concurrency C` (16), `--batch B` (16),
//! `--runs R` (3). Reads `SWITCHYARD_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).

use std::time::Instant;

use redis::aio::ConnectionManager;
use switchyard_bench::args::DrainArgs;
use switchyard_bench::{median, services};

/// Deletes the run's keys (`DEL`).
async fn delete(c: &mut ConnectionManager, keys: [&String; 3]) -> redis::RedisResult<()> {
    redis::cmd("DEL").arg(&keys[..]).query_async(c).await
}

#[tokio::main]
async fn main() -> redis::RedisResult<()> {
    let a = DrainArgs::read();
    let (jobs, concurrency, batch, runs) = (a.jobs, a.concurrency, a.batch, a.runs);
    let conn = services::redis_connection().await?;
    let p = format!("{{raw-ceiling-{}}}:", std::process::id());
    let (pending, processing, done) = (
        format!("{p}pending"),
        format!("{p}processing"),
        format!("{p}done"),
    );
    let mut figures = Vec::new();
    for run in 1..=runs {
        let mut c = conn.clone();
        delete(&mut c, [&pending, &processing, &done]).await?;
        // Enqueue: pipelined LPUSH, 1,000 per round trip.
        let start = Instant::now();
        for chunk in (0..jobs).collect::<Vec<_>>().chunks(1000) {
            let mut pipe = redis::pipe();
            for i in chunk {
                pipe.cmd("LPUSH")
                    .arg(&pending)
                    .arg(format!("job-{i}"))
                    .ignore();
            }
            let () = pipe.query_async(&mut c).await?;
        }
        let enqueue = start.elapsed();

        // Drain: C tasks, each a batch of LMOVE, then LREM + INCR for that batch.
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let mut c = conn.clone();
            let (pending, processing, done) = (pending.clone(), processing.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let mut pipe = redis::pipe();
                    for _ in 0..batch {
                        pipe.cmd("LMOVE")
                            .arg(&pending)
                            .arg(&processing)
                            .arg("RIGHT")
                            .arg("LEFT");
                    }
                    let ids: Vec<Option<String>> = pipe.query_async(&mut c).await?;
                    let ids: Vec<String> = ids.into_iter().flatten().collect();
                    if ids.is_empty() {
                        return Ok::<_, redis::RedisError>(());
                    }
                    let mut pipe = redis::pipe();
                    for id in &ids {
                        pipe.cmd("LREM").arg(&processing).arg(1).arg(id).ignore();
                    }
                    pipe.cmd("INCRBY").arg(&done).arg(ids.len()).ignore();
                    let () = pipe.query_async(&mut c).await?;
                }
            }));
        }
        for t in tasks {
            t.await.expect("drain task panicked")?;
        }
        let drain = start.elapsed();
        let counted: usize = redis::cmd("GET").arg(&done).query_async(&mut c).await?;
        assert_eq!(counted, jobs, "every id drained exactly once");
        let rate = jobs as f64 / drain.as_secs_f64();
        println!(
            "run {run}: enqueue {:.0} jobs/s, drain {rate:.0} jobs/s ({jobs} jobs, concurrency \
             {concurrency}, batch {batch})",
            jobs as f64 / enqueue.as_secs_f64()
        );
        figures.push(rate);
    }
    delete(&mut conn.clone(), [&pending, &processing, &done]).await?;
    println!(
        "raw ceiling (median of {runs}): drain {:.0} jobs/s",
        median(figures)
    );
    Ok(())
}
