//! Run with: `cargo run --release -p switchyard-bench --bin sqlite_raw_ceiling`
//!
//! The raw ceiling of sqlx on SQLite for the benchmark's drain (W2): the fastest plain
//! claim/complete loop on one file, with none of Switchyard's bookkeeping. 10,000 rows are
//! inserted in one transaction, then one writer loop claims 16 at a time
//! (`UPDATE … WHERE id IN (SELECT … LIMIT 16) RETURNING id`) and marks them done in one
//! statement — the same batch the worker's concurrency of 16 allows. Prints jobs/s for the
//! median of 3 runs.

use std::time::Instant;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::QueryBuilder;
use switchyard_bench::median;

const N: i64 = 10_000;
const BATCH: i64 = 16;

async fn run_once(path: &std::path::Path) -> f64 {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, payload TEXT NOT NULL, state TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("CREATE INDEX jobs_ready ON jobs (id) WHERE state = 'available'")
        .execute(&pool)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
        let mut qb = QueryBuilder::new("INSERT INTO jobs (payload, state) ");
        qb.push_values(chunk, |mut b, i| {
            b.push_bind(format!("{{\"n\":{i}}}")).push_bind("available");
        });
        qb.build().execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();

    let t0 = Instant::now();
    let mut done = 0;
    loop {
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE jobs SET state = 'running' WHERE id IN \
             (SELECT id FROM jobs WHERE state = 'available' ORDER BY id LIMIT ?) RETURNING id",
        )
        .bind(BATCH)
        .fetch_all(&pool)
        .await
        .unwrap();
        if ids.is_empty() {
            break;
        }
        let mut qb = QueryBuilder::new("UPDATE jobs SET state = 'completed' WHERE id IN (");
        let mut sep = qb.separated(", ");
        for id in &ids {
            sep.push_bind(*id);
        }
        qb.push(")");
        qb.build().execute(&pool).await.unwrap();
        done += ids.len() as i64;
    }
    assert_eq!(done, N);
    N as f64 / t0.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let path = std::env::temp_dir().join("switchyard-raw-ceiling.db");
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(run_once(&path).await);
    }
    runs.sort_by(f64::total_cmp);
    println!(
        "sqlite raw claim/complete loop (batch {BATCH}): {:.0} jobs/s (runs: {:?})",
        median(runs.clone()),
        runs.iter().map(|r| r.round()).collect::<Vec<_>>()
    );
}
