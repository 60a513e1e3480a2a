//! A frozen worker (a real process stopped with SIGSTOP) keeps its connection open and its
//! prefetched deliveries unacked, and the broker keeps pushing it messages while it has
//! prefetch room: the job it was running, rescued and published again, and new jobs. They
//! reach a live worker either way: the live worker, hearing nothing from the queue for a lease,
//! claims the due jobs straight from storage; and the broker closes the frozen connection for
//! missed heartbeats, which the adapter asks for every 5 s (the broker's own 60 s took about
//! three minutes). The second case freezes a worker that asked for the broker's heartbeat, so
//! only the first path can hand off in time.
//!
//! The frozen worker is this test binary started again as a child process running only the
//! ignored test [`frozen_worker_child`], on the same PostgreSQL storage and broker queue.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::maintenance::{self, MaintenanceConfig};
use switchyard::{JobState, NewJob, Registry, Shutdown, Worker};
use switchyard_conformance::{fixtures, random_prefix, wait_for};
use switchyard_core::{JobContext, Queue, Storage};
use switchyard_rabbitmq::RabbitQueue;

use crate::support::{queue_config, rabbit};

/// The environment variable that makes [`frozen_worker_child`] run (the case's prefix).
const CHILD_ENV: &str = "SWITCHYARD_FROZEN_WORKER_PREFIX";
/// The AMQP heartbeat the child asks for, in seconds (unset: the adapter's default).
const CHILD_HEARTBEAT_ENV: &str = "SWITCHYARD_FROZEN_WORKER_HEARTBEAT";
/// The Switchyard queue of the case.
const Q: &str = "frozen";
/// The worker id of the child, as stored on the jobs it claims.
const CHILD_ID: &str = "frozen-child";
/// The lease of both workers.
const LEASE: Duration = Duration::from_secs(2);
/// How long the hand-off may take: well above the claim from storage (about a lease plus a
/// receive wait, some 6 s) and the adapter's heartbeat drop (10 to 15 s with its 5 s heartbeat),
/// and far below the broker's own (two to three minutes at 60 s).
const HAND_OFF: Duration = Duration::from_secs(45);
/// Jobs enqueued while the child is frozen.
const BEHIND: usize = 10;

/// The job kinds: `hold` runs for an hour on its first attempt (the frozen worker's) and ends
/// at once on a later one; `quick` ends at once.
fn registry() -> Registry {
    Registry::new()
        .register_fn("hold", |_, ctx: JobContext| async move {
            if ctx.attempt == 1 {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Ok(None)
        })
        .register_fn("quick", |_, _| async { Ok(None) })
}

fn worker(storage: Arc<dyn Storage>, queue: Arc<RabbitQueue>, id: &str) -> Worker {
    Worker::new(storage, registry())
        .external_queue(queue)
        .queues([Q])
        .concurrency(4)
        .lease(LEASE)
        .heartbeat(Duration::from_millis(300))
        .poll_interval(Duration::from_millis(100))
        .worker_id(id)
}

/// The frozen worker's process: a worker on the case's storage and queue, until killed. Only
/// runs when [`a_frozen_workers_jobs_reach_a_live_worker`] starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the worker process that a_frozen_workers_jobs_reach_a_live_worker starts and freezes"]
async fn frozen_worker_child() {
    let Ok(prefix) = std::env::var(CHILD_ENV) else {
        return;
    };
    let storage = fixtures::postgres(&prefix).await;
    let mut config =
        queue_config(&prefix).with_connection_name(format!("switchyard-test {prefix} child"));
    if let Ok(secs) = std::env::var(CHILD_HEARTBEAT_ENV) {
        config = config.with_heartbeat(Duration::from_secs(secs.parse().expect("seconds")));
    }
    let queue = Arc::new(RabbitQueue::connect(config).await.expect("connect"));
    let _worker = worker(storage, queue, CHILD_ID).start();
    std::future::pending::<()>().await;
}

/// The child process, resumed and killed when dropped (also when the test fails).
struct FrozenChild(Child);

impl FrozenChild {
    fn start(prefix: &str, heartbeat: Option<Duration>) -> Self {
        let exe = std::env::current_exe().expect("the test binary");
        let mut command = Command::new(exe);
        command
            .args([
                "frozen_worker::frozen_worker_child",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_ENV, prefix)
            .env_remove(CHILD_HEARTBEAT_ENV)
            .stdout(Stdio::null());
        if let Some(h) = heartbeat {
            command.env(CHILD_HEARTBEAT_ENV, h.as_secs().to_string());
        }
        Self(command.spawn().expect("start the child worker"))
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }
}

impl Drop for FrozenChild {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A worker process frozen while it runs a job: the job is rescued and run by another worker,
/// and so are the jobs enqueued after the freeze (which the broker pushed to the frozen
/// consumer while it had prefetch room), within [`HAND_OFF`].
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_workers_jobs_reach_a_live_worker() {
    frozen_worker_case(None).await;
}

/// As above, with a frozen worker that asked for the broker's heartbeat (60 s: the broker
/// closes its connection only after two to three minutes): the live worker claims the jobs
/// from storage once the queue has been silent for a lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_workers_jobs_reach_a_live_worker_before_the_broker_drops_it() {
    frozen_worker_case(Some(Duration::ZERO)).await;
}

/// Freezes a child worker (asking for `heartbeat`, or the adapter's default) while it runs a
/// job, enqueues [`BEHIND`] more, and checks that a live worker completes them all within
/// [`HAND_OFF`].
async fn frozen_worker_case(heartbeat: Option<Duration>) {
    let prefix = random_prefix();
    let storage = fixtures::postgres(&prefix).await;
    let queue = Arc::new(rabbit(&prefix).await);
    queue.setup(&[Q.to_string()]).await.unwrap();
    let plugins = Shutdown::new();
    let dispatcher = tokio::spawn(switchyard::dispatcher::run(
        storage.clone(),
        queue.clone(),
        switchyard::dispatcher::DispatcherConfig {
            poll_interval: Duration::from_millis(50),
            ..Default::default()
        },
        plugins.clone(),
    ));
    let held = NewJob::new("hold", json!(null)).with_queue(Q);
    let held_id = held.id;
    storage.enqueue(vec![held]).await.unwrap();

    let child = FrozenChild::start(&prefix, heartbeat);
    wait_for(
        "the child worker to start the job",
        Duration::from_secs(30),
        || async {
            let j = storage.get(held_id).await.unwrap().unwrap();
            (j.state == JobState::Running && j.worker_id.as_deref() == Some(CHILD_ID)).then_some(())
        },
    )
    .await;
    child.signal("-STOP");
    let frozen = Instant::now();

    // Jobs behind it, published while the frozen consumer is the only one.
    let behind: Vec<NewJob> = (0..BEHIND)
        .map(|i| NewJob::new("quick", json!({ "i": i })).with_queue(Q))
        .collect();
    let mut ids: Vec<_> = behind.iter().map(|j| j.id).collect();
    for job in behind {
        storage.enqueue(vec![job]).await.unwrap();
    }
    wait_for(
        "the dispatcher to publish them",
        Duration::from_secs(10),
        || async {
            let far = chrono::Utc::now() - chrono::Duration::days(1);
            let due = storage
                .due_for_dispatch(chrono::Utc::now(), far, 100)
                .await
                .unwrap();
            due.is_empty().then_some(())
        },
    )
    .await;

    // The live worker, with the rescuer.
    let live = worker(storage.clone(), queue.clone(), "live").start();
    let rescuer = tokio::spawn(maintenance::run(
        storage.clone(),
        MaintenanceConfig {
            rescue_interval: Duration::from_millis(200),
            pruner: false,
            leader_ttl: MaintenanceConfig::leader_ttl_for(LEASE),
            ..MaintenanceConfig::default()
        },
        plugins.clone(),
    ));
    ids.push(held_id);
    let left = |storage: Arc<dyn Storage>, ids: Vec<switchyard_core::JobId>| async move {
        let mut left = Vec::new();
        for id in ids {
            let j = storage.get(id).await.unwrap().unwrap();
            if j.state != JobState::Completed {
                left.push((id, j.state, j.worker_id));
            }
        }
        left
    };
    loop {
        let left = left(storage.clone(), ids.clone()).await;
        if left.is_empty() {
            break;
        }
        assert!(
            frozen.elapsed() < HAND_OFF,
            "{} of {} jobs not completed {HAND_OFF:?} after the worker froze: {left:?}",
            left.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "every job completed {:?} after the freeze",
        frozen.elapsed()
    );
    let j = storage.get(held_id).await.unwrap().unwrap();
    assert_eq!(j.worker_id, None);
    assert!(j.attempt >= 2, "the held job ran again: {j:?}");

    drop(child);
    live.stop().await;
    plugins.graceful();
    dispatcher.await.unwrap();
    rescuer.await.unwrap();
    switchyard_conformance::destroyed("storage", storage.destroy().await);
    switchyard_conformance::destroyed("queue", queue.destroy().await);
}

/// The adapter's own heartbeat (5 s): the broker closes the connection of a frozen worker
/// within 30 s (with the broker's 60 s it took two to three minutes), which puts the
/// deliveries it held back in the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_closes_a_frozen_workers_connection_within_seconds() {
    if !crate::connection_loss::have_rabbitmqctl() {
        return;
    }
    let prefix = random_prefix();
    let storage = fixtures::postgres(&prefix).await;
    let name = format!("switchyard-test {prefix} child");
    let child = FrozenChild::start(&prefix, None);
    wait_for(
        "the child worker's connection",
        Duration::from_secs(30),
        || async {
            (!crate::connection_loss::connections_named(&name)
                .await
                .is_empty())
            .then_some(())
        },
    )
    .await;
    child.signal("-STOP");
    let frozen = Instant::now();
    wait_for(
        "the broker to close the frozen worker's connection (missed heartbeats)",
        Duration::from_secs(30),
        || async {
            crate::connection_loss::connections_named(&name)
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "the broker closed it {:?} after the freeze",
        frozen.elapsed()
    );
    drop(child);
    switchyard_conformance::destroyed("storage", storage.destroy().await);
}
