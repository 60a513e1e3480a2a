//! Enqueue and read back: a job round-trips, batches, unknown ids, unique keys, and the input
//! every backend refuses at enqueue (oversized payloads, NUL characters).

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use switchyard::{ErrorKind, JobState, NewJob};
use switchyard_core::{EnqueueOutcome, JobId};

use super::support::{claim, enqueue1, job, succeed};
use crate::support::queue_name;
use crate::Backend;

/// One job round-trips with every field; UUID v7 ids; state `available`.
pub async fn enqueue_and_get(b: Backend) {
    let q = queue_name();
    let new = job("email", &q, json!({"to": "a@example.com", "n": 1}))
        .with_priority(3)
        .with_max_attempts(7)
        .with_timeout(Duration::from_secs(9))
        .with_tag("welcome");
    let id = enqueue1(&b.storage, new.clone()).await;
    assert_eq!(id, new.id);
    assert_eq!(id.get_version_num(), 7, "ids are UUID v7");
    let got = b.storage.get(id).await.unwrap().expect("job exists");
    assert_eq!(got.kind, "email");
    assert_eq!(got.queue, q);
    assert_eq!(got.payload, json!({"to": "a@example.com", "n": 1}));
    assert_eq!(got.priority, 3);
    assert_eq!(got.max_attempts, 7);
    assert_eq!(got.timeout_ms, Some(9000));
    assert_eq!(got.tags, vec!["welcome".to_string()]);
    assert_eq!(got.state, JobState::Available);
    assert_eq!(got.attempt, 0);
    assert!(got.errors.is_empty() && got.result.is_none() && got.lease_token.is_none());
    assert!((Utc::now() - got.created_at).num_seconds().abs() < 30);
}

/// A batch is stored whole, one outcome per job in order.
pub async fn enqueue_batch(b: Backend) {
    let q = queue_name();
    let jobs: Vec<NewJob> = (0..250)
        .map(|i| job("batch", &q, json!({"n": i})))
        .collect();
    let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
    let out = b.storage.enqueue(jobs).await.unwrap();
    assert_eq!(out.len(), 250);
    for (o, id) in out.iter().zip(&ids) {
        assert_eq!(*o, EnqueueOutcome::Inserted(*id));
    }
    let j = b.storage.get(ids[137]).await.unwrap().unwrap();
    assert_eq!(j.payload, json!({"n": 137}));
    let counts = b.storage.counts().await.unwrap();
    let c = counts.iter().find(|c| c.queue == q).expect("queue counted");
    assert_eq!(c.counts.get(&JobState::Available), Some(&250));
}

/// An unknown id is `None`, not an error.
pub async fn get_unknown_is_none(b: Backend) {
    assert!(b.storage.get(uuid::Uuid::now_v7()).await.unwrap().is_none());
}

/// A second enqueue with the key of a live job returns the first id; a finished job frees it.
pub async fn unique_key_returns_first(b: Backend) {
    let q = queue_name();
    let key = format!("report-{}", uuid::Uuid::now_v7());
    let first = enqueue1(
        &b.storage,
        job("r", &q, json!({"v": 1})).with_unique_key(&key),
    )
    .await;
    let dup = job("r", &q, json!({"v": 2})).with_unique_key(&key);
    let dup_id = dup.id;
    let out = b.storage.enqueue(vec![dup]).await.unwrap();
    assert_eq!(out, vec![EnqueueOutcome::Duplicate(first)]);
    assert!(
        b.storage.get(dup_id).await.unwrap().is_none(),
        "the duplicate was stored"
    );
    // Two with one key in one batch: the first wins.
    let key2 = format!("k2-{}", uuid::Uuid::now_v7());
    let a = job("r", &q, json!({})).with_unique_key(&key2);
    let a_id = a.id;
    let c = job("r", &q, json!({})).with_unique_key(&key2);
    let out = b.storage.enqueue(vec![a, c]).await.unwrap();
    assert_eq!(
        out,
        vec![
            EnqueueOutcome::Inserted(a_id),
            EnqueueOutcome::Duplicate(a_id)
        ]
    );
    // While running, still a duplicate; once completed, the key is free.
    let claimed = claim(&b.storage, &q, 10, Duration::from_secs(30)).await;
    let mine = claimed.iter().find(|j| j.id == first).expect("claimed");
    let out = b
        .storage
        .enqueue(vec![job("r", &q, json!({})).with_unique_key(&key)])
        .await
        .unwrap();
    assert_eq!(out, vec![EnqueueOutcome::Duplicate(first)]);
    succeed(&b.storage, first, mine.lease_token.unwrap()).await;
    let again = job("r", &q, json!({})).with_unique_key(&key);
    let again_id = again.id;
    let out = b.storage.enqueue(vec![again]).await.unwrap();
    assert_eq!(out, vec![EnqueueOutcome::Inserted(again_id)]);
}

/// An oversized payload is rejected at enqueue with the limit named, and nothing is stored.
pub async fn oversized_payload_rejected(b: Backend) {
    let q = queue_name();
    let limit = b.storage.capabilities().max_payload_bytes;
    let big = "x".repeat(limit + 1);
    let ok = job("x", &q, json!({}));
    let ok_id = ok.id;
    let err = b
        .storage
        .enqueue(vec![ok, job("x", &q, json!({ "blob": big }))])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
    assert!(err.to_string().contains(&limit.to_string()), "{err}");
    assert!(
        b.storage.get(ok_id).await.unwrap().is_none(),
        "a partial batch was stored"
    );
}

/// A NUL character in a kind, queue, unique key or tag is refused at enqueue with the field
/// named, alike on every backend, and nothing of the batch is stored.
pub async fn nul_in_names_rejected(b: Backend) {
    let q = queue_name();
    let bad = [
        ("kind", job("bad\0kind", &q, json!({}))),
        ("queue", job("x", &format!("{q}\0"), json!({}))),
        (
            "unique key",
            job("x", &q, json!({})).with_unique_key("a\0b"),
        ),
        ("tag", job("x", &q, json!({})).with_tag("t\0")),
    ];
    for (what, bad) in bad {
        let ok = job("x", &q, json!({}));
        let ok_id = ok.id;
        let err = b.storage.enqueue(vec![ok, bad]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
        assert!(
            err.to_string()
                .contains(&format!("{what} containing a NUL")),
            "{err}"
        );
        assert!(
            b.storage.get(ok_id).await.unwrap().is_none(),
            "{what}: a partial batch was stored"
        );
    }
}

/// This file's cases, for [`conformance_suite!`](crate::conformance_suite): a new case is its
/// function above plus its name here. Calls `$then!` with `$args` followed by the names.
#[doc(hidden)]
#[macro_export]
macro_rules! storage_enqueue_cases {
    ($then:ident!($($args:tt)*)) => {
        $crate::$then! { $($args)*
            enqueue_and_get,
            enqueue_batch,
            get_unknown_is_none,
            unique_key_returns_first,
            oversized_payload_rejected,
            nul_in_names_rejected,
        }
    };
}
