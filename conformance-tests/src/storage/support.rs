//! Helpers the storage cases share: building jobs, claiming and recording in storage directly,
//! and a handler that records its runs.

use std::sync::Arc;
use std::time::Duration;

use switchyard::{JobContext, NewJob, Registry};
use switchyard_core::{
    ClaimRequest, Completion, CompletionStatus, JobId, JobRecord, Outcome, Storage,
};

use crate::harness::Probe;

pub(crate) const LONG: Duration = Duration::from_secs(20);

pub(crate) fn job(kind: &str, queue: &str, payload: serde_json::Value) -> NewJob {
    NewJob::new(kind, payload).with_queue(queue)
}

pub(crate) async fn enqueue1(s: &Arc<dyn Storage>, j: NewJob) -> JobId {
    s.enqueue(vec![j]).await.expect("enqueue")[0].id()
}

/// Claims up to `limit` jobs of `queue` directly in storage.
pub(crate) async fn claim(
    s: &Arc<dyn Storage>,
    queue: &str,
    limit: usize,
    lease: Duration,
) -> Vec<JobRecord> {
    s.claim(&claim_req(queue, limit, lease))
        .await
        .expect("claim")
}

/// Records a successful attempt with no result; panics unless it was applied.
pub(crate) async fn succeed(s: &Arc<dyn Storage>, id: JobId, token: uuid::Uuid) {
    record(s, id, token, Outcome::Succeeded { result: None }).await;
}

/// Records one attempt's outcome; panics unless it was applied.
pub(crate) async fn record(s: &Arc<dyn Storage>, id: JobId, token: uuid::Uuid, outcome: Outcome) {
    let done = s
        .complete(&[Completion { id, token, outcome }])
        .await
        .expect("complete");
    assert_eq!(done, vec![CompletionStatus::Applied], "job {id}");
}

pub(crate) fn claim_req(queue: &str, limit: usize, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        queues: vec![queue.to_string()],
        limit,
        worker_id: "conformance".to_string(),
        lease,
    }
}

/// A handler that records each run and succeeds.
pub(crate) fn ok_registry(kind: &str, probe: &Probe) -> Registry {
    let p = probe.clone();
    Registry::new().register_fn(kind, move |_payload, ctx: JobContext| {
        let p = p.clone();
        async move {
            p.record(ctx.id, ctx.attempt);
            Ok(None)
        }
    })
}
