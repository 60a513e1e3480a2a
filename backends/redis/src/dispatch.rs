//! The outbox view for the dispatcher, which publishes jobs to an external queue:
//! [`due_for_dispatch`] (pending jobs due by a horizon and not published lately) and
//! [`mark_dispatched`].

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use redis::Script;
use switchyard_core::{DispatchItem, JobId, JobState, Result};
use uuid::Uuid;

use crate::admin;
use crate::connection::{retrying, Conn};
use crate::keys::{Keys, CHUNK};
use crate::record::{from_millis, millis};

/// Pending jobs due by `horizon` whose last publication (if any) was before `stale_before`,
/// at most `limit`, by `run_at` then id (`Storage::due_for_dispatch`). Candidates are the
/// front of every ready set and the schedule up to the horizon; their hashes decide.
pub(crate) async fn due_for_dispatch(
    conn: &Arc<Conn>,
    keys: &Keys,
    horizon: DateTime<Utc>,
    stale_before: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<DispatchItem>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // Candidates: the front of every ready set and the schedule up to the horizon.
    let queues = admin::queues(conn, keys).await?;
    let scan = (limit * 4).max(100);
    let lists: Vec<Vec<String>> = retrying(conn, "find jobs to dispatch", |mut c| {
        let mut pipe = redis::pipe();
        for q in &queues {
            pipe.cmd("ZRANGE")
                .arg(keys.k(&format!("ready:{q}")))
                .arg(0)
                .arg(scan - 1);
            pipe.cmd("ZRANGEBYSCORE")
                .arg(keys.k(&format!("sched:{q}")))
                .arg("-inf")
                .arg(millis(horizon))
                .arg("LIMIT")
                .arg(0)
                .arg(scan);
        }
        async move { pipe.query_async(&mut c).await }
    })
    .await?;
    let mut seen = HashSet::new();
    let ids: Vec<String> = lists
        .into_iter()
        .flatten()
        .map(|m| match m.split_once('|') {
            Some((_, id)) => id.to_string(),
            None => m,
        })
        .filter(|id| seen.insert(id.clone()))
        .collect();
    let stale = millis(stale_before);
    let mut items = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<Vec<Option<String>>> = retrying(conn, "find jobs to dispatch", |mut c| {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("HMGET").arg(keys.job(id)).arg(&[
                    "state",
                    "queue",
                    "priority",
                    "run_at",
                    "dispatched_at",
                ]);
            }
            async move { pipe.query_async(&mut c).await }
        })
        .await?;
        for (id, f) in chunk.iter().zip(rows) {
            let get = |i: usize| f.get(i).cloned().flatten();
            let pending = get(0)
                .and_then(|s| s.parse::<JobState>().ok())
                .is_some_and(JobState::is_pending);
            let run_at = get(3).and_then(|s| s.parse::<i64>().ok());
            let dispatched = get(4).and_then(|s| s.parse::<i64>().ok());
            let (Some(queue), Some(run_at), Ok(id)) = (get(1), run_at, Uuid::parse_str(id)) else {
                continue;
            };
            if pending && run_at <= millis(horizon) && dispatched.is_none_or(|d| d < stale) {
                items.push(DispatchItem {
                    id,
                    queue,
                    priority: get(2).and_then(|s| s.parse().ok()).unwrap_or(0),
                    run_at: from_millis(run_at),
                });
            }
        }
    }
    items.sort_by(|a, b| a.run_at.cmp(&b.run_at).then(a.id.cmp(&b.id)));
    items.truncate(limit);
    Ok(items)
}

/// Records that the jobs `ids` were published now, with `script` (`lua/dispatched.lua`).
pub(crate) async fn mark_dispatched(
    conn: &Arc<Conn>,
    keys: &Keys,
    script: &Script,
    ids: &[JobId],
) -> Result<()> {
    for chunk in ids.chunks(CHUNK) {
        retrying(conn, "mark dispatched", |mut c| {
            let mut inv = keys.invocation(script);
            for id in chunk {
                inv.arg(id.to_string());
            }
            async move { inv.invoke_async::<i64>(&mut c).await }
        })
        .await?;
    }
    Ok(())
}
