//! Administration: list and count, prune, leadership locks, and destroy.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use switchyard::{ErrorKind, JobFilter, JobState, ListOrder};
use switchyard_core::{JobId, SchemaState};

use super::support::{claim, enqueue1, job, succeed, LONG};
use crate::support::{queue_name, skip};
use crate::Backend;

/// List filters by state, queue, kind and time, pages without gaps or overlaps, both orders.
pub async fn list_filter_and_paginate(b: Backend) {
    if !b.storage.capabilities().can_list {
        return skip(
            "list_filter_and_paginate",
            "the storage does not declare `can_list`",
        );
    }
    let qa = queue_name();
    let qb = queue_name();
    let mut a_ids = Vec::new();
    for i in 0..15 {
        a_ids.push(enqueue1(&b.storage, job("alpha", &qa, json!({"i": i}))).await);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t_mid = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut b_ids = Vec::new();
    for i in 0..10 {
        b_ids.push(enqueue1(&b.storage, job("beta", &qb, json!({"i": i}))).await);
    }
    for id in &b_ids[..4] {
        b.storage.cancel(*id).await.unwrap();
    }
    let f = |states: Vec<JobState>, queue: Option<&str>, kind: Option<&str>| JobFilter {
        states,
        queue: queue.map(str::to_string),
        kind: kind.map(str::to_string),
        ..JobFilter::default()
    };
    let by_queue = b.storage.list(&f(vec![], Some(&qa), None)).await.unwrap();
    assert_eq!(by_queue.len(), 15);
    assert!(by_queue.iter().all(|j| j.queue == qa));
    let cancelled = b
        .storage
        .list(&f(vec![JobState::Cancelled], Some(&qb), None))
        .await
        .unwrap();
    let mut got: Vec<JobId> = cancelled.iter().map(|j| j.id).collect();
    got.sort();
    let mut want = b_ids[..4].to_vec();
    want.sort();
    assert_eq!(got, want);
    let beta_avail = b
        .storage
        .list(&f(vec![JobState::Available], None, Some("beta")))
        .await
        .unwrap();
    assert!(beta_avail.iter().filter(|j| j.queue == qb).count() == 6);
    // Time filter.
    let mut later = f(vec![], Some(&qa), None);
    later.created_after = Some(t_mid);
    assert!(b.storage.list(&later).await.unwrap().is_empty());
    let mut earlier = f(vec![], Some(&qa), None);
    earlier.created_before = Some(t_mid);
    assert_eq!(b.storage.list(&earlier).await.unwrap().len(), 15);
    // Pagination, oldest first, pages of 6: 6 + 6 + 3, in id order.
    for order in [ListOrder::Asc, ListOrder::Desc] {
        let mut page = f(vec![], Some(&qa), None);
        page.limit = 6;
        page.order = order;
        let mut seen = Vec::new();
        loop {
            let p = b.storage.list(&page).await.unwrap();
            assert!(p.len() <= 6);
            if p.is_empty() {
                break;
            }
            page.after = Some(p.last().unwrap().id);
            seen.extend(p.into_iter().map(|j| j.id));
        }
        let mut expected = a_ids.clone();
        expected.sort();
        if order == ListOrder::Desc {
            expected.reverse();
        }
        assert_eq!(seen, expected, "pagination in {order:?} order");
    }
}

/// Counts per state and queue.
pub async fn counts_by_state_and_queue(b: Backend) {
    let qa = queue_name();
    let qb = queue_name();
    for _ in 0..3 {
        enqueue1(&b.storage, job("x", &qa, json!({}))).await;
    }
    let c = enqueue1(&b.storage, job("x", &qa, json!({}))).await;
    b.storage.cancel(c).await.unwrap();
    enqueue1(
        &b.storage,
        job("x", &qb, json!({})).with_run_at(Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    claim(&b.storage, &qa, 1, Duration::from_secs(30)).await;
    let counts = b.storage.counts().await.unwrap();
    let a = counts.iter().find(|c| c.queue == qa).expect("queue a");
    assert_eq!(a.counts.get(&JobState::Available), Some(&2));
    assert_eq!(a.counts.get(&JobState::Running), Some(&1));
    assert_eq!(a.counts.get(&JobState::Cancelled), Some(&1));
    let bq = counts.iter().find(|c| c.queue == qb).expect("queue b");
    assert_eq!(bq.counts.get(&JobState::Scheduled), Some(&1));
    assert_eq!(bq.counts.values().sum::<u64>(), 1);
}

/// Prune deletes finished jobs older than the retention, and nothing else.
pub async fn prune_finished(b: Backend) {
    let q = queue_name();
    let done = enqueue1(&b.storage, job("x", &q, json!({}))).await;
    let cancelled = enqueue1(
        &b.storage,
        job("x", &q, json!({})).with_run_at(Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    let c = claim(&b.storage, &q, 1, Duration::from_secs(30)).await;
    succeed(&b.storage, done, c[0].lease_token.unwrap()).await;
    b.storage.cancel(cancelled).await.unwrap();
    let waiting = enqueue1(&b.storage, job("x", &q, json!({}))).await;
    let running = enqueue1(&b.storage, job("x", &q, json!({}))).await;
    claim(&b.storage, &q, 1, Duration::from_secs(30)).await;
    // Retention not reached: nothing goes.
    let past = Utc::now() - chrono::Duration::hours(1);
    assert_eq!(b.storage.prune(past, 100).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let n = b
        .storage
        .prune(Utc::now() + chrono::Duration::seconds(1), 100)
        .await
        .unwrap();
    assert!(n >= 2, "pruned {n}");
    assert!(b.storage.get(done).await.unwrap().is_none());
    assert!(b.storage.get(cancelled).await.unwrap().is_none());
    assert!(
        b.storage.get(waiting).await.unwrap().is_some(),
        "a pending job was pruned"
    );
    assert!(
        b.storage.get(running).await.unwrap().is_some(),
        "a running job was pruned"
    );
    let counts = b.storage.counts().await.unwrap();
    let cq = counts.iter().find(|c| c.queue == q).expect("queue");
    assert_eq!(cq.counts.values().sum::<u64>(), 2);
}

/// Exactly one holder owns a leadership lock; it expires when its holder stops renewing it.
pub async fn leadership_is_exclusive_and_expires(b: Backend) {
    let name = format!("lock-{}", uuid::Uuid::now_v7());
    let ttl = Duration::from_millis(600);
    assert!(b.storage.try_lead(&name, "a", ttl).await.unwrap());
    assert!(!b.storage.try_lead(&name, "b", ttl).await.unwrap());
    assert!(
        b.storage.try_lead(&name, "a", ttl).await.unwrap(),
        "the holder renews"
    );
    // Many contenders at once: exactly one wins a free lock.
    let free = format!("free-{}", uuid::Uuid::now_v7());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = b.storage.clone();
        let free = free.clone();
        tasks.push(tokio::spawn(async move {
            s.try_lead(&free, &format!("c{i}"), Duration::from_secs(30))
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
    // The holder dies: the lock is free after its ttl.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        b.storage.try_lead(&name, "b", ttl).await.unwrap(),
        "an expired lock is free"
    );
    assert!(!b.storage.try_lead(&name, "a", ttl).await.unwrap());
    b.storage.resign(&name, "b").await.unwrap();
    assert!(
        b.storage.try_lead(&name, "a", ttl).await.unwrap(),
        "a resigned lock is free"
    );
}

/// `destroy` removes everything of the instance: after it, `migrate` gives an empty instance
/// (no jobs, no counts, no held locks), and a second `destroy` is harmless.
pub async fn destroy_then_migrate_is_empty(b: Backend) {
    let s = &b.storage;
    let q = queue_name();
    let ids: Vec<JobId> = s
        .enqueue((0..3).map(|i| job("k", &q, json!({ "i": i }))).collect())
        .await
        .unwrap()
        .iter()
        .map(|o| o.id())
        .collect();
    let running = claim(s, &q, 1, LONG).await;
    assert_eq!(running.len(), 1);
    let lock = format!("lock-{}", uuid::Uuid::now_v7());
    assert!(s.try_lead(&lock, "a", LONG).await.unwrap());

    match s.destroy().await {
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            return skip(
                "destroy_then_migrate_is_empty",
                "the storage cannot destroy",
            );
        }
        r => r.expect("destroy"),
    }
    s.destroy().await.expect("destroy twice");
    s.migrate().await.expect("migrate after destroy");
    for id in &ids {
        assert!(s.get(*id).await.unwrap().is_none(), "job {id} survived");
    }
    assert!(s.counts().await.unwrap().is_empty(), "counts survived");
    let all = s.list(&JobFilter::default()).await.unwrap();
    assert!(all.is_empty(), "list still finds {} jobs", all.len());
    assert!(
        s.try_lead(&lock, "b", LONG).await.unwrap(),
        "the leadership lock survived"
    );
    // The instance works again.
    let id = enqueue1(s, job("k", &q, json!({}))).await;
    let again = claim(s, &q, 10, LONG).await;
    assert_eq!(again.iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);
}

/// `schema` tells a migrated instance (current) from one without a schema (after `destroy`,
/// as if the prefix were never used), and reading a prefix without a schema — `get`, `counts`,
/// `list` (which may fail), `schema`, `pending_migrations` (a dry run) — creates nothing:
/// it still has no schema afterwards. `pending_migrations` lists, in order, what `migrate`
/// then applies, up to the expected version, and nothing once migrated; `prefixes` lists the
/// instance while it has a schema.
pub async fn schema_status_follows_migrate_and_destroy(b: Backend) {
    let s = &b.storage;
    let status = match s.schema().await {
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            return skip(
                "schema_status_follows_migrate_and_destroy",
                "the storage cannot report its schema",
            );
        }
        r => r.expect("schema"),
    };
    assert_eq!(status.state(), SchemaState::Current, "{status:?}");
    assert_eq!(status.applied, Some(status.expected));
    let none = s.pending_migrations().await.expect("pending_migrations");
    assert!(none.is_empty(), "a migrated instance has pending {none:?}");
    // `prefixes` (where supported) lists this instance while it has a schema. Other cases
    // create and destroy instances meanwhile, so only what disappears with this one's
    // `destroy` (and comes back with its `migrate`) is checked.
    let listed = |r: switchyard::Result<Vec<String>>| match r {
        Err(e) if e.kind() == ErrorKind::Unsupported => None,
        r => {
            let found = r.expect("prefixes");
            for p in &found {
                switchyard_core::adapter::check_prefix(p).expect("a listed prefix is valid");
            }
            Some(found.into_iter().collect::<std::collections::BTreeSet<_>>())
        }
    };
    let with_it = listed(s.prefixes().await);
    match s.destroy().await {
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            return skip(
                "schema_status_follows_migrate_and_destroy",
                "the storage cannot destroy",
            );
        }
        r => r.expect("destroy"),
    }
    let without_it = listed(s.prefixes().await);
    if let (Some(with_it), Some(without_it)) = (&with_it, &without_it) {
        assert!(
            with_it.difference(without_it).next().is_some(),
            "no prefix disappeared from `prefixes` with `destroy`: {with_it:?} then {without_it:?}"
        );
    }
    let gone = s.schema().await.expect("schema after destroy");
    assert_eq!(gone.state(), SchemaState::Missing, "{gone:?}");
    assert_eq!(gone.expected, status.expected);
    // Reads of a prefix without a schema may fail, but must not create one.
    let _ = s.get(uuid::Uuid::now_v7()).await;
    let _ = s.counts().await;
    let _ = s.list(&JobFilter::default()).await;
    let pending = s.pending_migrations().await.expect("pending_migrations");
    assert!(!pending.is_empty(), "nothing pending on an empty prefix");
    assert!(
        pending.windows(2).all(|w| w[0].version < w[1].version),
        "pending migrations out of order: {pending:?}"
    );
    assert_eq!(pending.last().map(|m| m.version), Some(status.expected));
    assert!(pending.iter().all(|m| !m.steps.is_empty()), "{pending:?}");
    let still = s.schema().await.expect("schema");
    assert_eq!(
        still.applied, None,
        "reading an empty prefix (or a dry run) created a schema"
    );
    s.migrate().await.expect("migrate");
    if let (Some(without_it), Some(again)) = (&without_it, listed(s.prefixes().await)) {
        assert!(
            again.difference(without_it).next().is_some(),
            "no prefix appeared in `prefixes` with `migrate`: {without_it:?} then {again:?}"
        );
    }
    let back = s.schema().await.expect("schema after migrate");
    assert_eq!(back.state(), SchemaState::Current, "{back:?}");
    assert!(s.pending_migrations().await.unwrap().is_empty());
    let id = enqueue1(s, job("k", &queue_name(), json!({}))).await;
    assert!(
        s.get(id).await.unwrap().is_some(),
        "the migrated instance works"
    );
}

/// This file's cases, for [`conformance_suite!`](crate::conformance_suite): a new case is its
/// function above plus its name here. Calls `$then!` with `$args` followed by the names.
#[doc(hidden)]
#[macro_export]
macro_rules! storage_admin_cases {
    ($then:ident!($($args:tt)*)) => {
        $crate::$then! { $($args)*
            list_filter_and_paginate,
            counts_by_state_and_queue,
            prune_finished,
            leadership_is_exclusive_and_expires,
            destroy_then_migrate_is_empty,
            schema_status_follows_migrate_and_destroy,
        }
    };
}
