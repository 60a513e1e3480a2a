//! The leader-only pruner, against SQLite: a backlog of finished jobs larger than one prune
//! batch is deleted in one run, not one batch per interval.

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
