//! Storage as the outbox of an external queue: the dispatcher's view of due jobs.

use chrono::Utc;
use serde_json::json;
use switchyard::JobState;
use switchyard_core::{ClaimRequest, Completion, CompletionStatus, JobId, Outcome};

use super::support::{claim_req, enqueue1, job, LONG};
use crate::support::queue_name;
use crate::Backend;

/// The job ids of dispatch items, in their order.
fn ids_of(items: &[switchyard_core::DispatchItem]) -> Vec<JobId> {
    items.iter().map(|d| d.id).collect()
}

/// Storage as the outbox of an external queue (seed 004): the dispatcher's view of due jobs,
/// its mark, the lost-message backstop, and the claim of delivered ids.
pub async fn outbox_dispatch_view(b: Backend) {
    let s = &b.storage;
    let (qx, qy) = (queue_name(), queue_name());
    let now = Utc::now();
    let a = job("k", &qx, json!({}));
    let later = job("k", &qy, json!({}))
        .with_priority(3)
        .with_run_at(now + chrono::Duration::seconds(5));
    let far = job("k", &qx, json!({})).with_run_at(now + chrono::Duration::hours(1));
    s.enqueue(vec![a.clone(), later.clone(), far.clone()])
        .await
        .unwrap();
    let horizon = now + chrono::Duration::seconds(30);
    let stale = now - chrono::Duration::minutes(5);
    let due = s.due_for_dispatch(horizon, stale, 10).await.unwrap();
    assert_eq!(
        ids_of(&due),
        vec![a.id, later.id],
        "due within the horizon, earliest first; the far one waits in storage"
    );
    assert_eq!((due[1].queue.as_str(), due[1].priority), (qy.as_str(), 3));
    // Looking does not mark; taking does, once, in the same order.
    let taken = ids_of(&s.take_for_dispatch(horizon, stale, 10).await.unwrap());
    assert_eq!(taken, vec![a.id, later.id], "taken earliest first");
    assert!(s
        .take_for_dispatch(horizon, stale, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .due_for_dispatch(horizon, stale, 10)
        .await
        .unwrap()
        .is_empty());
    // Published long enough ago and still pending: its message may be lost, publish again,
    // ordered with never-published jobs by due time (neither kind starves the other).
    let lost = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(
        s.due_for_dispatch(horizon, lost, 10).await.unwrap().len(),
        2
    );
    let newer = job("k", &qx, json!({})).with_run_at(now + chrono::Duration::seconds(10));
    enqueue1(s, newer.clone()).await;
    let retaken = ids_of(&s.take_for_dispatch(horizon, lost, 10).await.unwrap());
    assert_eq!(retaken, vec![a.id, later.id, newer.id]);
    let lost = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(
        s.take_for_dispatch(horizon, lost, 1).await.unwrap().len(),
        1,
        "the limit holds"
    );
    // `mark_dispatched` ignores unknown ids.
    s.mark_dispatched(&[far.id, uuid::Uuid::now_v7()])
        .await
        .unwrap();
    let far_horizon = now + chrono::Duration::hours(2);
    assert!(s
        .due_for_dispatch(far_horizon, stale, 10)
        .await
        .unwrap()
        .is_empty());
    // A delivered id is claimed only when runnable; a retry makes it due for dispatch again.
    let req = ClaimRequest {
        queues: vec![qx.clone(), qy.clone()],
        ..claim_req(&qx, 10, LONG)
    };
    let claimed = s.claim_ids(&[later.id, a.id, far.id], &req).await.unwrap();
    assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), vec![a.id]);
    assert_eq!(
        (claimed[0].state, claimed[0].attempt),
        (JobState::Running, 1)
    );
    let error = switchyard_core::AttemptError {
        attempt: 1,
        at: Utc::now(),
        kind: "error".into(),
        message: "boom".into(),
    };
    let done = s
        .complete(&[Completion {
            id: a.id,
            token: claimed[0].lease_token.expect("token"),
            outcome: Outcome::Retry {
                error,
                run_at: Utc::now(),
            },
        }])
        .await
        .unwrap();
    assert_eq!(done, vec![CompletionStatus::Applied]);
    let due = s.due_for_dispatch(horizon, stale, 10).await.unwrap();
    assert_eq!(ids_of(&due), vec![a.id]);
}

/// This file's cases, for [`conformance_suite!`](crate::conformance_suite): a new case is its
/// function above plus its name here. Calls `$then!` with `$args` followed by the names.
#[doc(hidden)]
#[macro_export]
macro_rules! storage_outbox_cases {
    ($then:ident!($($args:tt)*)) => {
        $crate::$then! { $($args)*
            outbox_dispatch_view,
        }
    };
}
