//! Run with: `cargo run --release -p switchyard-bench --bin cron_lateness -- [--storage URL]
//! [--seconds N] [--schedules K] [--drain N] [--json]`
//!
//! The cron benchmark (`docs/cron.md`). **Lateness**: one every-second schedule fired by the
//! process's scheduler for `--seconds` (default 20) into an idle worker; lateness is the job's
//! start minus its scheduled instant (both by the storage's clock), reported as p50/p99 in
//! milliseconds (target p99 < 1 s). **Cost**: W2 (drain `--drain` queued no-op jobs, default
//! 10,000, concurrency 16, 0 skips it) with the scheduler running, once with no schedules and
//! once with `--schedules` (default 1,000) idle schedules registered (`@daily`, so the
//! scheduler reads them every tick but fires none). Each part uses a fresh prefix (a fresh
//! file for SQLite), destroyed after it. Default storage: a SQLite file in the temp directory.

use std::time::{Duration, Instant};

use switchyard::{
    Config, JobFilter, JobState, JobTemplate, NewJob, Registry, ScheduleDef, Switchyard,
};

struct Args {
    storage: Option<String>,
    seconds: u64,
    schedules: usize,
    drain: usize,
    json: bool,
}

fn args() -> Args {
    let mut a = Args {
        storage: None,
        seconds: 20,
        schedules: 1000,
        drain: 10_000,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match flag.as_str() {
            "--storage" => a.storage = Some(value("--storage")),
            "--seconds" => a.seconds = value("--seconds").parse().expect("--seconds: a number"),
            "--schedules" => {
                a.schedules = value("--schedules").parse().expect("--schedules: a number")
            }
            "--drain" => a.drain = value("--drain").parse().expect("--drain: a number"),
            "--json" => a.json = true,
            other => panic!(
                "unknown argument `{other}`; accepted: --storage URL, --seconds N, \
                 --schedules K, --drain N, --json"
            ),
        }
    }
    a
}

fn prefix() -> String {
    format!("cron{}_", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

async fn fresh(storage: &Option<String>) -> Switchyard {
    let prefix = prefix();
    let url = storage.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            std::env::temp_dir()
                .join(format!("switchyard-{prefix}.db"))
                .display()
        )
    });
    let mut config = Config {
        storage: url,
        prefix,
        ..Config::default()
    };
    config.worker.concurrency = 16;
    config.cron.poll_interval_ms = 1000;
    Switchyard::connect(config).await.expect("connect")
}

fn noop(kind: &str) -> Registry {
    Registry::new().register_fn(kind, |_, _| async { Ok(None) })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// W2 with `idle` schedules registered; jobs/s.
async fn drain(storage: &Option<String>, n: usize, idle: usize) -> f64 {
    let sy = fresh(storage).await;
    let defs: Vec<ScheduleDef> = (0..idle)
        .map(|i| {
            ScheduleDef::new(
                format!("idle-{i}"),
                "@daily",
                JobTemplate::new("idle", serde_json::json!({})),
            )
        })
        .collect();
    switchyard::cron::register(sy.storage().as_ref(), &defs)
        .await
        .expect("register");
    let jobs: Vec<NewJob> = (0..n)
        .map(|_| NewJob::new("bench", serde_json::json!({})))
        .collect();
    for chunk in jobs.chunks(1000) {
        sy.client()
            .enqueue_raw(chunk.to_vec())
            .await
            .expect("enqueue");
    }
    let t0 = Instant::now();
    let running = sy.start(noop("bench")).expect("start");
    loop {
        let done: u64 = sy
            .storage()
            .counts()
            .await
            .expect("counts")
            .iter()
            .filter_map(|c| c.counts.get(&JobState::Completed))
            .sum();
        if done as usize >= n {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(600), "W2 did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    running.stop().await;
    let _ = sy.storage().destroy().await;
    rate
}

#[tokio::main]
async fn main() {
    let a = args();
    // Lateness.
    let sy = fresh(&a.storage).await;
    let backend = sy.storage().name();
    let sy = sy
        .schedule(ScheduleDef::new(
            "lateness",
            "* * * * * *",
            JobTemplate::new("tick", serde_json::json!({})),
        ))
        .expect("schedule");
    let running = sy.start(noop("tick")).expect("start");
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    running.stop().await;
    let jobs = sy
        .storage()
        .list(&JobFilter {
            kind: Some("tick".into()),
            states: vec![JobState::Completed],
            limit: 1000,
            ..JobFilter::default()
        })
        .await
        .expect("list");
    let mut late: Vec<f64> = jobs
        .iter()
        .filter_map(switchyard::cron::lateness)
        .map(|d| d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0)
        .collect();
    late.sort_by(|x, y| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal));
    let _ = sy.storage().destroy().await;
    let (p50, p99) = (percentile(&late, 0.5), percentile(&late, 0.99));
    let (w2_without, w2_with) = if a.drain > 0 {
        (
            drain(&a.storage, a.drain, 0).await,
            drain(&a.storage, a.drain, a.schedules).await,
        )
    } else {
        (f64::NAN, f64::NAN)
    };
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "storage": backend,
                "ticks": late.len(),
                "lateness_p50_ms": p50,
                "lateness_p99_ms": p99,
                "w2_jobs": a.drain,
                "w2_jobs_per_s_without_schedules": w2_without,
                "w2_jobs_per_s_with_schedules": w2_with,
                "idle_schedules": a.schedules,
            })
        );
    } else {
        println!("storage {backend}: {} ticks", late.len());
        println!("lateness p50 {p50:.1} ms, p99 {p99:.1} ms (target p99 < 1000 ms)");
        if a.drain > 0 {
            println!(
                "W2 ({} jobs): {w2_without:.0} jobs/s without schedules, {w2_with:.0} jobs/s \
                 with {} idle schedules ({:+.1} %)",
                a.drain,
                a.schedules,
                (w2_with / w2_without - 1.0) * 100.0
            );
        }
    }
}
