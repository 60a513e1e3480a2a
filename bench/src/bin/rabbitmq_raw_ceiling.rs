//! Run with: cargo run --release -p switchyard-bench --bin rabbitmq_raw_ceiling [-- MESSAGES]
//!
//! The raw ceiling of lapin alone on this broker, for `docs/benchmarks.md`: publish MESSAGES
//! (default 10,000) persistent 36-byte messages with publisher confirms (pipelined, 1,000
//! confirms outstanding), then consume them with manual acks (prefetch 100, 16 acks in flight),
//! then the whole cycle with both legs side by side on another queue. Three rounds; prints each
//! and the median. URL from `SWITCHYARD_TEST_AMQP_URL`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use switchyard_bench::{median, services};
use tokio::sync::Semaphore;

const WINDOW: usize = 1000;
const PREFETCH: u16 = 100;
const IN_FLIGHT: usize = 16;

#[tokio::main]
async fn main() -> Res<()> {
    let url = services::amqp_url();
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let (mut publishes, mut consumes, mut cycles) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=3 {
        let queue = format!("switchyard_raw_ceiling_{}_{round}", std::process::id());
        let (p, c, cy) = one_round(&conn, &queue, n).await?;
        println!(
            "round {round}: publish {p:.0} msg/s, consume+ack {c:.0} msg/s, cycle {cy:.0} msg/s"
        );
        publishes.push(p);
        consumes.push(c);
        cycles.push(cy);
    }
    println!(
        "median of 3 ({n} messages): publish {:.0} msg/s, consume+ack {:.0} msg/s, \
         cycle (publish + consume + ack side by side) {:.0} msg/s",
        median(publishes),
        median(consumes),
        median(cycles)
    );
    conn.close(200, "done").await?;
    Ok(())
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// One round on fresh durable queues: publish then consume, then both side by side (the cycle
/// every job of Switchyard's W2 goes through: its dispatcher publishes while the worker
/// consumes), timed until the last ack. Returns the three rates.
async fn one_round(conn: &Connection, queue: &str, n: usize) -> Res<(f64, f64, f64)> {
    let publisher = conn.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let cycle_queue = format!("{queue}_cycle");
    for q in [queue, cycle_queue.as_str()] {
        publisher
            .queue_declare(
                q,
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
    }
    let start = Instant::now();
    publish(&publisher, queue, n).await?;
    let publish_rate = n as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    consume(conn, queue, n).await?;
    let consume_rate = n as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let (published, consumed) = tokio::join!(
        publish(&publisher, &cycle_queue, n),
        consume(conn, &cycle_queue, n)
    );
    published?;
    consumed?;
    let cycle_rate = n as f64 / start.elapsed().as_secs_f64();
    for q in [queue, cycle_queue.as_str()] {
        publisher
            .queue_delete(q, QueueDeleteOptions::default())
            .await?;
    }
    publisher.close(200, "done").await?;
    Ok((publish_rate, consume_rate, cycle_rate))
}

/// Publishes `n` persistent messages, `WINDOW` confirms outstanding.
async fn publish(publisher: &lapin::Channel, queue: &str, n: usize) -> Res<()> {
    let body = uuid::Uuid::now_v7().to_string();
    let mut pending = Vec::with_capacity(WINDOW);
    for _ in 0..n {
        let confirm = publisher
            .basic_publish(
                "",
                queue,
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        pending.push(confirm);
        if pending.len() == WINDOW {
            for c in futures::future::join_all(pending.drain(..)).await {
                assert!(c?.is_ack(), "broker nacked a message");
            }
        }
    }
    for c in futures::future::join_all(pending.drain(..)).await {
        assert!(c?.is_ack(), "broker nacked a message");
    }
    Ok(())
}

/// Consumes and acks `n` messages on a channel of its own (prefetch `PREFETCH`, `IN_FLIGHT`
/// acks at once).
async fn consume(conn: &Connection, queue: &str, n: usize) -> Res<()> {
    let channel = conn.create_channel().await?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue,
            "raw-ceiling",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let acks = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await?
            .expect("consumer ended")?;
        let permit = acks.clone().acquire_owned().await?;
        tasks.push(tokio::spawn(async move {
            let r = delivery.ack(BasicAckOptions::default()).await;
            drop(permit);
            r
        }));
    }
    for t in tasks {
        t.await??;
    }
    channel.close(200, "done").await?;
    Ok(())
}
