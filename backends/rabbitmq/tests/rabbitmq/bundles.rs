//! Bundles: a bundle's message is acked only once every job it names is acked, and settling a
//! bundle early publishes its open mates again.

use std::time::Duration;

use switchyard_conformance::random_prefix;
use switchyard_core::Queue;

use crate::support::{assert_nothing_arrives, publish_new, rabbit, receive_all, settling_fast};

/// A bundle's message is acked only once every job it names is acked: jobs left unacked come
/// back when the connection closes, with their bundle mates and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unacked_bundle_members_come_back_when_the_connection_closes() {
    use switchyard_core::bundle::split_receipt;
    let prefix = random_prefix();
    let queue = rabbit(&prefix).await;
    let q = "bundles".to_string();
    publish_new(&queue, &q, 30).await;
    let got = receive_all(&queue, &q, 30).await;
    assert!(
        got.iter().all(|d| split_receipt(&d.receipt).1.is_some()),
        "30 jobs in one publish travel in bundles"
    );
    let (lost, acked): (Vec<_>, Vec<_>) =
        got.into_iter().partition(|d| d.job_id.as_u128() % 5 == 0);
    queue.ack(&acked).await.unwrap();
    let open: std::collections::HashSet<String> = lost
        .iter()
        .map(|d| split_receipt(&d.receipt).0.to_string())
        .collect();
    let mates: std::collections::HashSet<uuid::Uuid> = acked
        .iter()
        .chain(&lost)
        .filter(|d| open.contains(split_receipt(&d.receipt).0))
        .map(|d| d.job_id)
        .collect();
    queue.close().await;
    let back = if lost.is_empty() {
        Vec::new()
    } else {
        receive_all(&queue, &q, mates.len()).await
    };
    let back_ids: std::collections::HashSet<uuid::Uuid> = back.iter().map(|d| d.job_id).collect();
    assert_eq!(back_ids, mates, "exactly the unfinished bundles come back");
    assert!(lost.iter().all(|d| back_ids.contains(&d.job_id)));
    queue.ack(&back).await.unwrap();
    queue.close().await;
    assert_nothing_arrives(&queue, &q, 100, "acked bundles came back").await;
    queue.delete_queues(&[q]).await.unwrap();
}

/// A long job's bundle is acked early by `extend`; its mates not yet acked are published
/// again first, so none is lost when the bundle's message is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn early_settling_a_bundle_publishes_its_open_mates_again() {
    use switchyard_core::bundle::split_receipt;
    let queue = settling_fast(&random_prefix()).await;
    let q = "long-bundle".to_string();
    publish_new(&queue, &q, 30).await;
    let got = receive_all(&queue, &q, 30).await;
    // One bundle: its first member is acked, its second is the long job, the rest wait.
    let broker = split_receipt(&got[0].receipt).0.to_string();
    let bundle: Vec<_> = got
        .iter()
        .filter(|d| split_receipt(&d.receipt).0 == broker)
        .cloned()
        .collect();
    assert!(bundle.len() >= 3, "bundles of 3 ids for a publish of 30");
    let others: Vec<_> = got
        .iter()
        .filter(|d| split_receipt(&d.receipt).0 != broker)
        .cloned()
        .collect();
    queue.ack(&others).await.unwrap();
    queue.ack(&bundle[..1]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    queue
        .extend(&bundle[1..2], Duration::from_secs(30))
        .await
        .unwrap();
    // The bundle's message is acked now; its open members but the long job (kept by its
    // Storage lease) arrive as new messages.
    let again = receive_all(&queue, &q, bundle.len() - 2).await;
    let want: std::collections::HashSet<_> = bundle[2..].iter().map(|d| d.job_id).collect();
    let again_ids: std::collections::HashSet<_> = again.iter().map(|d| d.job_id).collect();
    assert_eq!(again_ids, want);
    queue.ack(&again).await.unwrap();
    queue.ack(&bundle[1..]).await.expect("late acks are no-ops");
    queue.close().await;
    assert_nothing_arrives(&queue, &q, 100, "a settled message came back").await;
    queue.delete_queues(&[q]).await.unwrap();
}
