//! The leader-only plugins, against SQLite: a backlog of finished jobs larger than one prune
//! batch is deleted in one run, not one batch per interval; and when the process that held
//! leadership dies, the leadership lock (which follows the lease) runs out soon enough for
//! another process to rescue a short-lease job in seconds, not after a fixed 30 s.

use std::time::Duration;

use switchyard::maintenance::{self, MaintenanceConfig};
use switchyard::{Config, JobState, NewJob, Shutdown, Switchyard};
use switchyard_core::{ClaimRequest, Completion, Outcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pruner_deletes_a_backlog_larger_than_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let sy = Switchyard::connect(Config {
        storage: format!("sqlite://{}/prune.db", dir.path().display()),
        ..Config::default()
    })
    .await
    .unwrap();
    let storage = sy.storage().clone();
    let n = 2500;
    storage
        .enqueue(
            (0..n)
                .map(|i| NewJob::new("k", serde_json::json!(i)))
                .collect(),
        )
        .await
        .unwrap();
    loop {
        let claimed = storage
            .claim(&ClaimRequest {
                queues: vec!["default".into()],
                limit: 500,
                worker_id: "test".into(),
                lease: Duration::from_secs(30),
            })
            .await
            .unwrap();
        if claimed.is_empty() {
            break;
        }
        let done: Vec<Completion> = claimed
            .iter()
            .map(|j| Completion {
                id: j.id,
                token: j.lease_token.unwrap(),
                outcome: Outcome::Succeeded { result: None },
            })
            .collect();
        storage.complete(&done).await.unwrap();
    }
    let completed = || async {
        sy.client()
            .counts()
            .await
            .unwrap()
            .iter()
            .filter_map(|c| c.counts.get(&JobState::Completed))
            .sum::<u64>()
    };
    assert_eq!(completed().await, n as u64);

    let shutdown = Shutdown::new();
    let task = tokio::spawn(maintenance::run(
        storage.clone(),
        MaintenanceConfig {
            rescuer: false,
            pruner: true,
            prune_interval: Duration::from_secs(3600),
            retention: Duration::ZERO,
            ..MaintenanceConfig::default()
        },
        shutdown.clone(),
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while completed().await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} finished jobs left: the pruner stopped after one batch",
            completed().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.graceful();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_leaders_short_lease_job_is_rescued_well_before_thirty_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        storage: format!("sqlite://{}/leader.db", dir.path().display()),
        ..Config::default()
    };
    config.worker.lease_secs = 2.0;
    config.worker.heartbeat_secs = 0.5;
    config.rescuer.interval_secs = 0.5;
    config.pruner.enabled = false;
    // The lock follows the configured lease.
    assert_eq!(
        config.maintenance_config().leader_ttl,
        MaintenanceConfig::leader_ttl_for(Duration::from_secs(2))
    );
    assert_eq!(
        config.maintenance_config().leader_ttl,
        Duration::from_secs(2)
    );
    let sy = Switchyard::connect(config.clone()).await.unwrap();
    let storage = sy.storage().clone();

    // Process A: leads maintenance and runs a job under a 2 s lease; then it dies (its tasks
    // vanish without resigning or renewing anything).
    let a = MaintenanceConfig {
        holder: "process-a".into(),
        ..config.maintenance_config()
    };
    let a_task = tokio::spawn(maintenance::run(storage.clone(), a, Shutdown::new()));
    let wait_until = |what: &'static str, secs: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        move || {
            assert!(
                std::time::Instant::now() < deadline,
                "{what} within {secs} s"
            );
        }
    };
    let check = wait_until("process A won leadership", 10);
    while storage
        .try_lead(maintenance::LEADER_LOCK, "probe", Duration::from_secs(1))
        .await
        .unwrap()
    {
        // The probe won it (A had not yet): give it back and wait for A.
        storage
            .resign(maintenance::LEADER_LOCK, "probe")
            .await
            .unwrap();
        check();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = sy
        .client()
        .enqueue_raw(vec![NewJob::new("k", serde_json::json!(null))])
        .await
        .unwrap()[0]
        .id();
    let claimed = storage
        .claim(&ClaimRequest {
            queues: vec!["default".into()],
            limit: 1,
            worker_id: "process-a".into(),
            lease: Duration::from_secs(2),
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    a_task.abort();
    let _ = a_task.await;
    let died = std::time::Instant::now();

    // Process B: its maintenance and a worker. The job runs again there.
    let shutdown = Shutdown::new();
    let b = MaintenanceConfig {
        holder: "process-b".into(),
        ..config.maintenance_config()
    };
    let b_task = tokio::spawn(maintenance::run(storage.clone(), b, shutdown.clone()));
    let worker = switchyard::Worker::new(
        storage.clone(),
        switchyard::Registry::new().register_fn("k", |_, _| async { Ok(None) }),
    )
    .config(config.worker_config("default"))
    .start();
    let check = wait_until(
        "the dead leader's job was rescued and completed elsewhere (the old fixed lock took 30 s)",
        15,
    );
    loop {
        let job = storage.get(id).await.unwrap().unwrap();
        if job.state == JobState::Completed {
            assert_eq!(job.attempt, 2, "{job:?}");
            break;
        }
        check();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = died.elapsed();
    assert!(took < Duration::from_secs(15), "hand-off took {took:?}");
    worker.stop().await;
    shutdown.graceful();
    b_task.await.unwrap();
}
