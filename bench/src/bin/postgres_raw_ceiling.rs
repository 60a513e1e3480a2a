//! Run with: `cargo run --release -p switchyard-bench --bin postgres_raw_ceiling [-- --jobs 10000 --tasks 16 --batch 10 --runs 3]`
//!
//! The raw ceiling of a PostgreSQL job queue on this machine: the fastest plain sqlx
//! `FOR UPDATE SKIP LOCKED` loop, with no scheduler around it, to compare Switchyard's drain
//! (`switchyard bench`) against. For each run it inserts `--jobs` rows into a scratch table with
//! one `UNNEST` statement, then drains them with `--tasks` concurrent tasks, each on its own
//! pooled connection, in two styles:
//!
//! * `delete`: claim and finish a batch in one statement,
//!   `DELETE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING …`;
//! * `update`: claim a batch with `UPDATE … RETURNING`, then finish it with one
//!   `UPDATE … WHERE id = ANY($1)` — the two round trips a real worker needs.
//!
//! Prints jobs/s per run and the median. Reads `SWITCHYARD_TEST_POSTGRES_URL` (default: the
//! loopback server, database `test`).

use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use switchyard_bench::args::strict_pairs;
use switchyard_bench::{median, services};
use uuid::Uuid;

const TABLE: &str = "switchyard_raw_ceiling";

struct Args {
    jobs: usize,
    tasks: usize,
    batch: i64,
    runs: usize,
}

fn args() -> Args {
    let mut a = Args {
        jobs: 10_000,
        tasks: 16,
        batch: 10,
        runs: 3,
    };
    for (flag, v) in strict_pairs(&["--jobs", "--tasks", "--batch", "--runs"]) {
        match flag.as_str() {
            "--jobs" => a.jobs = v,
            "--tasks" => a.tasks = v.max(1),
            "--batch" => a.batch = v.max(1) as i64,
            "--runs" => a.runs = v.max(1),
            _ => unreachable!("strict_pairs returns only the names it accepts"),
        }
    }
    a
}

async fn setup(pool: &PgPool) -> sqlx::Result<()> {
    for sql in [
        format!("DROP TABLE IF EXISTS {TABLE}"),
        // Same shape as a real job table (logged, like Switchyard's), minus the columns a
        // no-op drain never reads.
        format!(
            "CREATE TABLE {TABLE} (id uuid PRIMARY KEY, queue text NOT NULL, payload jsonb NOT NULL, \
             priority smallint NOT NULL DEFAULT 0, state text NOT NULL DEFAULT 'available', \
             attempt int NOT NULL DEFAULT 0, run_at timestamptz NOT NULL DEFAULT now(), \
             finished_at timestamptz) WITH (fillfactor = 85)"
        ),
        format!(
            "CREATE INDEX {TABLE}_runnable ON {TABLE} (queue, priority DESC, run_at, id) \
             WHERE state = 'available'"
        ),
    ] {
        sqlx::query(&sql).persistent(false).execute(pool).await?;
    }
    Ok(())
}

async fn fill(pool: &PgPool, jobs: usize) -> sqlx::Result<Duration> {
    sqlx::query(&format!("TRUNCATE {TABLE}"))
        .persistent(false)
        .execute(pool)
        .await?;
    let ids: Vec<Uuid> = (0..jobs).map(|_| Uuid::now_v7()).collect();
    let payloads: Vec<serde_json::Value> =
        (0..jobs).map(|i| serde_json::json!({ "n": i })).collect();
    let start = Instant::now();
    sqlx::query(&format!(
        "INSERT INTO {TABLE} (id, queue, payload) SELECT id, 'bench', payload \
         FROM unnest($1::uuid[], $2::jsonb[]) AS t(id, payload)"
    ))
    .bind(&ids)
    .bind(&payloads)
    .execute(pool)
    .await?;
    let took = start.elapsed();
    sqlx::query(&format!("VACUUM ANALYZE {TABLE}"))
        .persistent(false)
        .execute(pool)
        .await?;
    Ok(took)
}

async fn drain(pool: &PgPool, tasks: usize, batch: i64, style: &str) -> sqlx::Result<usize> {
    let claim_delete = format!(
        "DELETE FROM {TABLE} WHERE id IN (SELECT id FROM {TABLE} WHERE queue = 'bench' \
         AND state = 'available' ORDER BY priority DESC, run_at, id LIMIT $1 \
         FOR UPDATE SKIP LOCKED) RETURNING id, payload"
    );
    let claim_update = format!(
        "UPDATE {TABLE} t SET state = 'running', attempt = t.attempt + 1 FROM (SELECT id FROM \
         {TABLE} WHERE queue = 'bench' AND state = 'available' ORDER BY priority DESC, run_at, id \
         LIMIT $1 FOR UPDATE SKIP LOCKED) p WHERE t.id = p.id RETURNING t.id, t.payload"
    );
    let complete = format!(
        "UPDATE {TABLE} SET state = 'completed', finished_at = now() WHERE id = ANY($1::uuid[])"
    );
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let pool = pool.clone();
        let (claim_delete, claim_update, complete) =
            (claim_delete.clone(), claim_update.clone(), complete.clone());
        let delete = style == "delete";
        handles.push(tokio::spawn(async move {
            let mut done = 0usize;
            loop {
                let claimed: Vec<(Uuid, serde_json::Value)> = if delete {
                    sqlx::query_as(&claim_delete)
                        .bind(batch)
                        .fetch_all(&pool)
                        .await?
                } else {
                    sqlx::query_as(&claim_update)
                        .bind(batch)
                        .fetch_all(&pool)
                        .await?
                };
                if claimed.is_empty() {
                    return Ok::<usize, sqlx::Error>(done);
                }
                done += claimed.len();
                if !delete {
                    let ids: Vec<Uuid> = claimed.into_iter().map(|(id, _)| id).collect();
                    sqlx::query(&complete).bind(&ids).execute(&pool).await?;
                }
            }
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.expect("drain task panicked")?;
    }
    Ok(total)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args();
    let url = services::postgres_url();
    let pool = PgPoolOptions::new()
        .max_connections(a.tasks as u32 + 1)
        .test_before_acquire(false)
        .connect(&url)
        .await?;
    setup(&pool).await?;
    println!(
        "raw ceiling: {} jobs, {} tasks, batch {}, {} runs",
        a.jobs, a.tasks, a.batch, a.runs
    );
    for style in ["delete", "update"] {
        let mut rates = Vec::new();
        let mut insert_rates = Vec::new();
        for run in 1..=a.runs {
            let insert = fill(&pool, a.jobs).await?;
            let start = Instant::now();
            let n = drain(&pool, a.tasks, a.batch, style).await?;
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(n, a.jobs, "every job drained exactly once");
            let rate = n as f64 / secs;
            let insert_rate = a.jobs as f64 / insert.as_secs_f64();
            println!(
                "  {style:6} run {run}: drained {n} in {secs:.3} s = {rate:.0} jobs/s \
                 (UNNEST insert {insert_rate:.0} jobs/s)"
            );
            rates.push(rate);
            insert_rates.push(insert_rate);
        }
        println!(
            "{style:6} median: {:.0} jobs/s drain, {:.0} jobs/s insert",
            median(rates),
            median(insert_rates)
        );
    }
    sqlx::query(&format!("DROP TABLE IF EXISTS {TABLE}"))
        .persistent(false)
        .execute(&pool)
        .await?;
    Ok(())
}
