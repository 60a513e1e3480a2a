//! Run with: cargo run --release -p switchyard-bench --bin sqs_raw_ceiling
//!
//! The raw ceiling of `aws-sdk-sqs` against the SQS endpoint on this machine (fauxqs from
//! `scripts/fauxqs/start.sh`), to compare the SQS queue's W2 drain with: `SendMessageBatch` of
//! 10,000 small messages (10 per call, several calls in flight), then 16 concurrent loops of
//! `ReceiveMessage` (10) + `DeleteMessageBatch` until every message is deleted. No storage, no
//! job records: only the SQS calls a queue cannot do without. Each run uses a fresh queue,
//! deleted afterwards. Then the whole cycle, the legs side by side as in Switchyard's W2 (whose
//! dispatcher publishes while the worker drains): sending and draining start together on
//! another fresh queue, timed until the last delete.
//!
//! Arguments (all optional): `--jobs N` (10,000), `--send-concurrency S` (8), `--concurrency C`
//! (16), `--runs R` (3). Reads `SWITCHYARD_TEST_SQS_ENDPOINT` (default `http://127.0.0.1:4577`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;
use futures::stream::{self, StreamExt};
use switchyard_bench::{arg, median, services};
use switchyard_sqs::{SqsConfig, SqsQueue};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn send_all(client: &Client, url: &str, jobs: usize, concurrency: usize) -> Res<()> {
    let calls = (0..jobs).step_by(10).map(|start| {
        let client = client.clone();
        let url = url.to_string();
        async move {
            let mut req = client.send_message_batch().queue_url(url);
            for (i, n) in (start..(start + 10).min(jobs)).enumerate() {
                req = req.entries(
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(format!("{{\"n\":{n}}}"))
                        .build()?,
                );
            }
            let out = req.send().await?;
            if !out.failed().is_empty() {
                return Err(format!("{} sends failed", out.failed().len()).into());
            }
            Res::Ok(())
        }
    });
    let results: Vec<Res<()>> = stream::iter(calls)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// Drains `jobs` messages; returns the time until the last one was deleted (tasks still in an
/// empty long poll at that moment do not count).
async fn drain(client: &Client, url: &str, jobs: usize, concurrency: usize) -> Res<Duration> {
    let start = Instant::now();
    let finished = Arc::new(std::sync::Mutex::new(None::<Duration>));
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, url, done, finished) = (
            client.clone(),
            url.to_string(),
            done.clone(),
            finished.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while done.load(Ordering::Relaxed) < jobs {
                if Instant::now() > deadline {
                    return Res::Err("drain took over 300 s".into());
                }
                let out = client
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .visibility_timeout(60)
                    .send()
                    .await?;
                let messages = out.messages.unwrap_or_default();
                if messages.is_empty() {
                    continue;
                }
                let mut req = client.delete_message_batch().queue_url(&url);
                for (i, m) in messages.iter().enumerate() {
                    req = req.entries(
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                            .build()?,
                    );
                }
                let out = req.send().await?;
                let n = out.successful().len();
                if done.fetch_add(n, Ordering::Relaxed) + n >= jobs {
                    finished.lock().unwrap().get_or_insert(start.elapsed());
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let took = finished.lock().unwrap().unwrap_or_else(|| start.elapsed());
    Ok(took)
}

#[tokio::main]
async fn main() -> Res<()> {
    let endpoint = services::sqs_endpoint();
    let jobs = arg("--jobs", 10_000);
    let send_concurrency = arg("--send-concurrency", 8);
    let concurrency = arg("--concurrency", 16);
    let runs = arg("--runs", 3).max(1);
    let config = SqsConfig::from_url("sqs://")?
        .with_endpoint_url(Some(endpoint.clone()))
        .with_region(Some("us-east-1".into()));
    let client = SqsQueue::connect(config).await?.client().clone();
    println!(
        "aws-sdk-sqs raw ceiling against {endpoint}: {jobs} messages, send concurrency \
         {send_concurrency}, drain concurrency {concurrency}, {runs} runs"
    );
    let (mut sends, mut drains, mut cycles) = (Vec::new(), Vec::new(), Vec::new());
    let fresh_queue = |name: String| {
        let client = client.clone();
        async move {
            Res::Ok(
                client
                    .create_queue()
                    .queue_name(name)
                    .send()
                    .await?
                    .queue_url
                    .unwrap_or_default(),
            )
        }
    };
    for run in 1..=runs {
        let url = fresh_queue(format!("raw-ceiling-{}-{run}", std::process::id())).await?;
        let t = Instant::now();
        send_all(&client, &url, jobs, send_concurrency).await?;
        let send = jobs as f64 / t.elapsed().as_secs_f64();
        let took = drain(&client, &url, jobs, concurrency).await?;
        let dr = jobs as f64 / took.as_secs_f64();
        client.delete_queue().queue_url(&url).send().await?;

        let url = fresh_queue(format!("raw-cycle-{}-{run}", std::process::id())).await?;
        let (sent, took) = tokio::join!(
            send_all(&client, &url, jobs, send_concurrency),
            drain(&client, &url, jobs, concurrency)
        );
        sent?;
        let cycle = jobs as f64 / took?.as_secs_f64();
        client.delete_queue().queue_url(&url).send().await?;
        println!("run {run}: send {send:.0} msg/s, drain {dr:.0} msg/s, cycle {cycle:.0} msg/s");
        sends.push(send);
        drains.push(dr);
        cycles.push(cycle);
    }
    println!(
        "median: send {:.0} msg/s, drain (receive + delete) {:.0} msg/s, \
         cycle (send + receive + delete side by side) {:.0} msg/s",
        median(sends),
        median(drains),
        median(cycles)
    );
    Ok(())
}
