//! Embedding: blocking job bodies never block the event loop (seed 000), typed jobs store their
//! output, and `run_until` drains on the caller's own shutdown future (seed 003).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard::{
    BlockingJob, Config, EnqueueOptions, JobContext, JobError, JobState, Registry, Switchyard,
};

#[derive(Serialize, Deserialize)]
struct Checksum {
    bytes: usize,
}

impl BlockingJob for Checksum {
    const KIND: &'static str = "checksum";
    type Output = u64;
    fn run(self, _ctx: JobContext) -> Result<u64, JobError> {
        // A synchronous body that holds its thread, as CPU-bound or legacy code does.
        std::thread::sleep(Duration::from_millis(300));
        Ok((0..self.bytes as u64).sum())
    }
}

async fn connect(dir: &tempfile::TempDir) -> Switchyard {
    let mut c = Config {
        storage: format!("sqlite://{}/embed.db", dir.path().display()),
        ..Config::default()
    };
    c.worker.poll_interval_ms = 50;
    Switchyard::connect(c).await.unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn blocking_jobs_do_not_block_the_event_loop() {
    let dir = tempfile::tempdir().unwrap();
    let sy = connect(&dir).await;
    let client = sy.client();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            client
                .enqueue_blocking(Checksum { bytes: 10 + i }, EnqueueOptions::new())
                .await
                .unwrap(),
        );
    }
    // One thread runs everything async here: if a blocking body ran on it, this ticker would
    // stall for the whole 300 ms of each job.
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            t.fetch_add(1, Ordering::SeqCst);
        }
    });
    let running = sy
        .start(Registry::new().register_blocking::<Checksum>())
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut ticks_while_running = 0;
    loop {
        let mut done = 0;
        let mut any_running = false;
        for id in &ids {
            let j = client.get(*id).await.unwrap().unwrap();
            done += usize::from(j.state == JobState::Completed);
            any_running |= j.state == JobState::Running;
        }
        if any_running {
            let before = ticks.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            ticks_while_running += ticks.load(Ordering::SeqCst) - before;
        }
        if done == ids.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "blocking jobs did not finish"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.stop().await;
    ticker.abort();
    assert!(
        ticks_while_running >= 2,
        "the event loop stalled while blocking jobs ran"
    );
    let j = client.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(j.result, Some(serde_json::json!(45)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_drains_on_the_callers_future() {
    let dir = tempfile::tempdir().unwrap();
    let sy = connect(&dir).await;
    let finished = Arc::new(AtomicUsize::new(0));
    let f = finished.clone();
    let registry = Registry::new().register_fn("slow", move |_, _| {
        let f = f.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            f.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        }
    });
    let client = sy.client();
    let id = client
        .enqueue_raw(vec![switchyard::NewJob::new("slow", serde_json::json!({}))])
        .await
        .unwrap()[0]
        .id();
    let c2 = client.clone();
    // The "server" asks to stop as soon as the job is running; the worker must finish it.
    let stop = async move {
        loop {
            let j = c2.get(id).await.unwrap().unwrap();
            if j.state == JobState::Running {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), sy.run_until(registry, stop))
        .await
        .expect("run_until returned")
        .unwrap();
    assert_eq!(finished.load(Ordering::SeqCst), 1);
    assert_eq!(
        client.get(id).await.unwrap().unwrap().state,
        JobState::Completed
    );
}
