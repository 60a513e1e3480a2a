//! `switchyard bench`: the workload of `shared/bench/WORKLOAD.md` against the configured
//! backend. W1 enqueues N jobs (batch API and one at a time), W2 drains N queued no-op jobs
//! with one worker at concurrency C, W3 measures enqueue-to-start latency of jobs enqueued
//! one at a time, 10 ms apart, to an idle worker. Each run uses fresh tables/keys (a random
//! prefix; for the default SQLite, a fresh file), destroyed after it, and the median of the
//! runs is reported.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use switchyard_core::{JobState, NewJob, Result};

use crate::config::Config;
use crate::dispatcher::DispatcherConfig;
use crate::registry::Registry;
use crate::shutdown::Shutdown;
use crate::worker::Worker;

/// Arguments of `switchyard bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Jobs per workload (W1, W2).
    #[arg(long, default_value_t = 10_000)]
    pub jobs: usize,
    /// Worker concurrency for W2 and W3.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Runs; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Jobs enqueued one at a time for W3 (0 skips W3).
    #[arg(long, default_value_t = 500)]
    pub latency_jobs: usize,
    /// W2 under a global rate limit of this many attempt starts per second on the bench
    /// queue (stored before W2 starts; 0: no limit). With a limit, W2 measures how much of it
    /// the drain sustains.
    #[arg(long, default_value_t = 0)]
    pub rate_limit: u32,
    /// Print one JSON object instead of a table (set from the global `--json` flag).
    #[arg(skip)]
    pub json: bool,
}

/// Figures of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunFigures {
    /// W1, batch API.
    pub enqueue_batch_jobs_per_s: f64,
    /// W1, one at a time.
    pub enqueue_single_jobs_per_s: f64,
    /// W2.
    pub drain_jobs_per_s: f64,
    /// W3 median.
    pub latency_p50_ms: f64,
    /// W3 99th percentile.
    pub latency_p99_ms: f64,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// Storage backend name.
    pub storage: String,
    /// Queue (`storage` or the broker's name).
    pub queue: String,
    /// Jobs per workload.
    pub jobs: usize,
    /// Worker concurrency.
    pub concurrency: usize,
    /// W2's global rate limit, attempt starts per second (absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_s: Option<u32>,
    /// `/proc/loadavg` before the first run.
    pub load_average: String,
    /// Medians over the runs.
    #[serde(flatten)]
    pub median: RunFigures,
    /// Every run.
    pub runs: Vec<RunFigures>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}

/// A fresh, isolated copy of the configured backend for one workload.
struct Fresh {
    sy: crate::Switchyard,
    /// The SQLite file made for it, if any.
    file: Option<std::path::PathBuf>,
}

impl Fresh {
    async fn new(config: &Config, tag: &str) -> Result<Self> {
        let mut c = config.clone();
        let suffix: String = (0..6)
            .map(|_| fastrand::alphanumeric().to_ascii_lowercase())
            .collect();
        c.prefix = format!("bench_{suffix}_");
        let mut file = None;
        if c.storage == crate::config::DEFAULT_STORAGE || c.storage == "sqlite::bench" {
            let dir = std::env::temp_dir().join("switchyard-bench");
            std::fs::create_dir_all(&dir).map_err(|e| {
                switchyard_core::Error::config(format!("cannot create {}: {e}", dir.display()))
            })?;
            let path = dir.join(format!("{tag}-{suffix}.db"));
            c.storage = format!("sqlite://{}", path.display());
            file = Some(path);
        }
        c.queues = [("bench".to_string(), crate::config::QueueSection::default())].into();
        c.auto_migrate = true;
        let sy = crate::Switchyard::connect(c).await?;
        Ok(Self { sy, file })
    }

    /// Removes what the workload stored, so runs do not pile up data on the servers (which
    /// would slow later runs down). A failure leaves the data behind with a warning; the
    /// figures stand.
    async fn dispose(self) {
        if let Err(e) = self.sy.storage().destroy().await {
            tracing::warn!(error = %e, prefix = %self.sy.config().prefix, "bench data left in storage");
        }
        if let Some(queue) = self.sy.queue() {
            if let Err(e) = queue.destroy().await {
                tracing::warn!(error = %e, prefix = %self.sy.config().prefix, "bench broker queues left");
            }
        }
        if let Some(path) = self.file {
            for ext in ["", "-wal", "-shm"] {
                let mut p = path.clone().into_os_string();
                p.push(ext);
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

fn bench_job(i: usize) -> NewJob {
    NewJob::new("bench", serde_json::json!({ "n": i })).with_queue("bench")
}

/// Starts a worker (and a dispatcher for an external queue) on queue `bench`.
fn start(
    sy: &crate::Switchyard,
    registry: Registry,
    concurrency: usize,
) -> (Shutdown, Vec<tokio::task::JoinHandle<()>>) {
    let shutdown = Shutdown::new();
    let mut cfg = sy.config().worker_config("bench");
    cfg.concurrency = concurrency;
    let mut worker = Worker::new(sy.storage().clone(), registry).config(cfg);
    let mut tasks = Vec::new();
    if let Some(q) = sy.queue() {
        worker = worker.external_queue(q.clone());
        tasks.push(tokio::spawn(crate::dispatcher::run(
            sy.storage().clone(),
            q.clone(),
            DispatcherConfig {
                poll_interval: Duration::from_millis(50),
                ..sy.config().dispatcher_config()
            },
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(worker.run(shutdown.clone())));
    (shutdown, tasks)
}

async fn stop(shutdown: Shutdown, tasks: Vec<tokio::task::JoinHandle<()>>) {
    shutdown.graceful();
    for t in tasks {
        let _ = t.await;
    }
}

async fn one_run(config: &Config, args: &BenchArgs) -> Result<RunFigures> {
    let n = args.jobs;
    let mut fig = RunFigures::default();

    // W1, one at a time.
    let w1 = Fresh::new(config, "w1single").await?;
    let client = w1.sy.client();
    let t0 = Instant::now();
    for i in 0..n {
        client.enqueue_raw(vec![bench_job(i)]).await?;
    }
    fig.enqueue_single_jobs_per_s = n as f64 / t0.elapsed().as_secs_f64();
    w1.dispose().await;

    // W1, batch API; these jobs are W2's queue.
    let w2 = Fresh::new(config, "w2").await?;
    let sy = &w2.sy;
    let client = sy.client();
    let jobs: Vec<NewJob> = (0..n).map(bench_job).collect();
    let t0 = Instant::now();
    for chunk in jobs.chunks(1000) {
        client.enqueue_raw(chunk.to_vec()).await?;
    }
    fig.enqueue_batch_jobs_per_s = n as f64 / t0.elapsed().as_secs_f64();

    // W2: drain with one worker, no-op handler, until every job is recorded completed.
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let registry = Registry::new().register_fn("bench", move |_, _| {
        r.fetch_add(1, Ordering::Relaxed);
        async { Ok(None) }
    });
    if args.rate_limit > 0 {
        sy.storage()
            .set_queue_flow(&switchyard_core::QueueFlow {
                rate: Some(switchyard_core::RateLimit {
                    limit: args.rate_limit,
                    period_ms: 1000,
                }),
                ..switchyard_core::QueueFlow::new("bench")
            })
            .await?;
    }
    let t0 = Instant::now();
    let (shutdown, tasks) = start(sy, registry, args.concurrency);
    let deadline = Duration::from_secs(600);
    loop {
        if ran.load(Ordering::Relaxed) >= n {
            let completed: u64 = client
                .counts()
                .await?
                .iter()
                .filter_map(|c| c.counts.get(&JobState::Completed))
                .sum();
            if completed as usize >= n {
                break;
            }
        }
        if t0.elapsed() > deadline {
            return Err(switchyard_core::Error::new(
                switchyard_core::ErrorKind::Internal,
                format!("W2 did not finish within {deadline:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    fig.drain_jobs_per_s = n as f64 / t0.elapsed().as_secs_f64();
    stop(shutdown, tasks).await;
    w2.dispose().await;

    // W3: latency to an idle worker.
    if args.latency_jobs > 0 {
        let w3 = Fresh::new(config, "w3").await?;
        let client = w3.sy.client();
        let lat = Arc::new(Mutex::new(Vec::with_capacity(args.latency_jobs)));
        let l = lat.clone();
        let base = Instant::now();
        let registry = Registry::new().register_fn("bench", move |payload, _| {
            let started = base.elapsed().as_micros() as u64;
            let sent = payload["t"].as_u64().unwrap_or(started);
            l.lock()
                .expect("poisoned")
                .push(started.saturating_sub(sent) as f64 / 1000.0);
            async { Ok(None) }
        });
        let (shutdown, tasks) = start(&w3.sy, registry, args.concurrency);
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in 0..args.latency_jobs {
            let t = base.elapsed().as_micros() as u64;
            let job = NewJob::new("bench", serde_json::json!({ "t": t })).with_queue("bench");
            client.enqueue_raw(vec![job]).await?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let t0 = Instant::now();
        while lat.lock().expect("poisoned").len() < args.latency_jobs
            && t0.elapsed() < Duration::from_secs(60)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop(shutdown, tasks).await;
        w3.dispose().await;
        let mut v = lat.lock().expect("poisoned").clone();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        if !v.is_empty() {
            fig.latency_p50_ms = v[v.len() / 2];
            fig.latency_p99_ms = v[((v.len() as f64) * 0.99) as usize].min(v[v.len() - 1]);
        }
    }
    Ok(fig)
}

/// Runs the workload `args.runs` times and prints the median.
pub async fn run(config: &Config, args: &BenchArgs) -> Result<()> {
    let load = load_average();
    let mut runs = Vec::new();
    let mut storage_name = String::new();
    let mut queue_name = "storage".to_string();
    for i in 0..args.runs.max(1) {
        if !args.json {
            eprintln!("run {} of {}…", i + 1, args.runs.max(1));
        }
        let fig = one_run(config, args).await?;
        if !args.json {
            eprintln!(
                "  W1 batch {:.0} jobs/s, W1 single {:.0} jobs/s, W2 drain {:.0} jobs/s, \
                 W3 p50 {:.2} ms, p99 {:.2} ms",
                fig.enqueue_batch_jobs_per_s,
                fig.enqueue_single_jobs_per_s,
                fig.drain_jobs_per_s,
                fig.latency_p50_ms,
                fig.latency_p99_ms
            );
        }
        runs.push(fig);
    }
    if let Ok(probe) = Fresh::new(config, "probe").await {
        storage_name = probe.sy.storage().name().to_string();
        if let Some(q) = probe.sy.queue() {
            queue_name = q.name().to_string();
        }
        probe.dispose().await;
    }
    let pick = |f: fn(&RunFigures) -> f64| median(runs.iter().map(f).collect());
    let report = BenchReport {
        storage: storage_name,
        queue: queue_name,
        jobs: args.jobs,
        concurrency: args.concurrency,
        rate_limit_per_s: (args.rate_limit > 0).then_some(args.rate_limit),
        load_average: load,
        median: RunFigures {
            enqueue_batch_jobs_per_s: pick(|r| r.enqueue_batch_jobs_per_s),
            enqueue_single_jobs_per_s: pick(|r| r.enqueue_single_jobs_per_s),
            drain_jobs_per_s: pick(|r| r.drain_jobs_per_s),
            latency_p50_ms: pick(|r| r.latency_p50_ms),
            latency_p99_ms: pick(|r| r.latency_p99_ms),
        },
        runs,
    };
    use crate::cli::output::line;
    if args.json {
        return line(serde_json::to_string_pretty(&report)?);
    }
    let m = &report.median;
    line(format!(
        "storage {} / queue {} — {} jobs, concurrency {}, load {} (median of {} runs)",
        report.storage,
        report.queue,
        report.jobs,
        report.concurrency,
        report.load_average,
        report.runs.len()
    ))?;
    line(format!(
        "W1 enqueue, batch       {:>10.0} jobs/s",
        m.enqueue_batch_jobs_per_s
    ))?;
    line(format!(
        "W1 enqueue, one by one  {:>10.0} jobs/s",
        m.enqueue_single_jobs_per_s
    ))?;
    line(format!(
        "W2 drain                {:>10.0} jobs/s",
        m.drain_jobs_per_s
    ))?;
    line(format!(
        "W3 latency p50 / p99    {:>7.2} / {:.2} ms",
        m.latency_p50_ms, m.latency_p99_ms
    ))
}
