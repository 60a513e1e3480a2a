//! Run with: cargo run --release -p switchyard-redis --example redis_raw_ceiling
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

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> redis::RedisResult<()> {
    let url = std::env::var("SWITCHYARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let jobs = arg("--jobs", 10_000);
    let concurrency = arg("--concurrency", 16);
    let batch = arg("--batch", 16).max(1);
    let runs = arg("--runs", 3).max(1);
    let client = redis::Client::open(url.as_str())?;
    let conn = ConnectionManager::new(client).await?;
    let p = format!("{{raw-ceiling-{}}}:", std::process::id());
    let (pending, processing, done) = (
        format!("{p}pending"),
        format!("{p}processing"),
        format!("{p}done"),
    );
    let mut figures = Vec::new();
    for run in 1..=runs {
        let mut c = conn.clone();
        let () = redis::cmd("DEL")
            .arg(&pending)
            .arg(&processing)
            .arg(&done)
            .query_async(&mut c)
            .await?;
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
    let mut c = conn.clone();
    let () = redis::cmd("DEL")
        .arg(&pending)
        .arg(&processing)
        .arg(&done)
        .query_async(&mut c)
        .await?;
    figures.sort_by(f64::total_cmp);
    println!(
        "raw ceiling (median of {runs}): drain {:.0} jobs/s",
        figures[figures.len() / 2]
    );
    Ok(())
}
