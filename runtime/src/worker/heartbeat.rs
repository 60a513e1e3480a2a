//! The heartbeater: renewing the leases of claimed jobs, relaying cancel requests and lost leases
//! to their attempts, stopping attempts whose lease ran out unrenewed, and extending their broker
//! messages' visibility.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use switchyard_core::{Delivery, LeaseRef, LeaseStatus};
use tokio_util::sync::CancellationToken;

use super::state::Inner;

/// Renews the leases of running jobs and relays cancel requests and lost leases to them.
///
/// While renewals fail (the storage unreachable), an attempt whose lease has run out since its
/// last renewal is stopped (its cancellation token fires): the rescuer may already have handed
/// the job to another worker, and two runs of one job at once are worse than one stopped run.
pub(super) async fn heartbeater(inner: Arc<Inner>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(inner.config.heartbeat) => {}
            _ = stop.cancelled() => return,
        }
        let (leases, deliveries): (Vec<LeaseRef>, Vec<Delivery>) = {
            let running = inner.running.lock().expect("poisoned");
            (
                running.keys().copied().collect(),
                running
                    .values()
                    .filter_map(|r| r.delivery.clone())
                    .collect(),
            )
        };
        if leases.is_empty() {
            continue;
        }
        let sent = std::time::Instant::now();
        // A renewal still unanswered after a lease renews nothing: it counts as failed.
        let renewal = tokio::time::timeout(
            inner.config.lease,
            inner.storage.heartbeat(&leases, inner.config.lease),
        )
        .await
        .unwrap_or_else(|_| {
            Err(switchyard_core::Error::new(
                switchyard_core::ErrorKind::Unavailable,
                "the renewal got no answer within a lease",
            ))
        });
        match renewal {
            Ok(statuses) => {
                let mut running = inner.running.lock().expect("poisoned");
                for (lease, status) in leases.iter().zip(statuses) {
                    let Some(r) = running.get_mut(lease) else {
                        continue;
                    };
                    match status {
                        LeaseStatus::Held { cancel_requested } => {
                            r.renewed = sent;
                            if cancel_requested {
                                if !r.user_cancel.swap(true, Ordering::SeqCst) {
                                    tracing::info!(id = %lease.id, "cancel requested: firing the job's cancellation token");
                                }
                                r.cancel.cancel();
                            }
                        }
                        // The attempt ended and its completion was recorded while this
                        // renewal was under way (recording clears the lease): nothing to stop.
                        // Were the lease really lost, the completer reports it as stale.
                        LeaseStatus::Lost if r.finished => {
                            tracing::trace!(id = %lease.id, "renewal found the lease of a finished attempt gone");
                        }
                        LeaseStatus::Lost => {
                            tracing::warn!(id = %lease.id, "lease lost: stopping the attempt");
                            r.cancel.cancel();
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed; leases may expire");
                let running = inner.running.lock().expect("poisoned");
                for (lease, r) in running.iter() {
                    if r.renewed.elapsed() >= inner.config.lease
                        && !r.cancel.is_cancelled()
                        && !r.finished
                    {
                        tracing::warn!(id = %lease.id, "lease ran out while the storage was unreachable: stopping the attempt (it may be rescued and run elsewhere)");
                        r.cancel.cancel();
                    }
                }
            }
        }
        if let (Some(queue), false) = (&inner.queue, deliveries.is_empty()) {
            if let Err(e) = queue.extend(&deliveries, inner.config.lease).await {
                tracing::warn!(error = %e, "extending message visibility failed");
            }
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    //! The race between a renewal and the completion being recorded, on a real SQLite storage:
    //! the attempt ends, its completion is recorded (which clears the lease), and a renewal
    //! that was already under way answers `Lost` while the completer has not yet dropped the
    //! job from the running map.

    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use switchyard_core::{ClaimRequest, NewJob, Storage, TokioExecutor};
    use tokio::sync::{mpsc, Semaphore};
    use tokio_util::sync::CancellationToken;

    use super::heartbeater;
    use crate::registry::Registry;
    use crate::shutdown::Shutdown;
    use crate::worker::state::{lease_of, Backlog, Inner, Running};
    use crate::worker::WorkerConfig;

    /// Collects formatted log lines.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Logs {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    // One thread: every task spawned here logs to the subscriber set below.
    #[tokio::test(flavor = "current_thread")]
    async fn a_finished_attempt_whose_completion_was_recorded_is_no_lost_lease() {
        let logs = Logs::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let dir = tempfile::tempdir().unwrap();
        let storage =
            switchyard_sqlite::SqliteStorage::connect(switchyard_sqlite::SqliteConfig::new(
                format!("sqlite://{}/race.db", dir.path().display()),
            ))
            .await
            .unwrap();
        storage.migrate().await.unwrap();
        let storage: Arc<dyn Storage> = Arc::new(storage);
        storage
            .enqueue(vec![NewJob::new("quick", serde_json::json!(null))])
            .await
            .unwrap();
        let config = WorkerConfig {
            heartbeat: Duration::from_millis(20),
            lease: Duration::from_secs(30),
            ..WorkerConfig::default()
        };
        let inner = Arc::new(Inner {
            storage: storage.clone(),
            queue: None,
            registry: Arc::new(Registry::new().register_fn("quick", |_, _| async { Ok(None) })),
            executor: Arc::new(TokioExecutor),
            config: config.clone(),
            running: Mutex::new(HashMap::new()),
            shutdown: Shutdown::new(),
            backlog: Backlog::default(),
            last_delivery: Mutex::new(HashMap::new()),
            clock: None,
        });
        let job = storage
            .claim(&ClaimRequest {
                queues: config.queues.clone(),
                limit: 1,
                worker_id: config.worker_id.clone(),
                lease: config.lease,
            })
            .await
            .unwrap()
            .pop()
            .expect("the job is claimed");
        // As the fetcher does: into the running map, then to the runner.
        inner.running.lock().unwrap().insert(
            lease_of(&job),
            Running {
                renewed: std::time::Instant::now(),
                cancel: CancellationToken::new(),
                user_cancel: Arc::new(AtomicBool::new(false)),
                delivery: None,
                finished: false,
            },
        );
        inner.backlog.added(1);
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let slot = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
        ready_tx.send((job, None, slot)).unwrap();
        drop(ready_tx);
        tokio::spawn(crate::worker::run::runner(inner.clone(), ready_rx, done_tx));
        let (completion, _, _) = done_rx.recv().await.expect("the attempt ends");
        // The completer records it; it has not yet removed the job from the running map
        // when the next renewal answers.
        storage.complete(&[completion]).await.unwrap();
        let stop = CancellationToken::new();
        let beats = tokio::spawn(heartbeater(inner.clone(), stop.clone()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !logs.text().contains("lease lost") && !logs.text().contains("finished attempt gone")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no renewal answered within 10 s; logs:\n{}",
                logs.text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        beats.await.unwrap();
        assert!(
            !logs.text().contains("lease lost"),
            "a finished attempt was reported as having lost its lease:\n{}",
            logs.text()
        );
    }
}
