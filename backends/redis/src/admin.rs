//! Reading jobs for admin and listing: [`list`] (a k-way merge of the per-queue state
//! indexes, pages by id), [`counts`], and the helpers they and others share: [`get_many`],
//! [`running_jobs`] (read from the lease set), [`queues`].

use std::collections::BTreeMap;
use std::sync::Arc;

use switchyard_core::{JobFilter, JobRecord, JobState, ListOrder, QueueCounts, Result};

use crate::connection::{retrying, Conn};
use crate::keys::{Keys, CHUNK};
use crate::record::decode_flat;

/// The jobs `filter` selects, a page of them in id order (`Storage::list`).
pub(crate) async fn list(
    conn: &Arc<Conn>,
    keys: &Keys,
    filter: &JobFilter,
) -> Result<Vec<JobRecord>> {
    let page = filter.page_size();
    let queues = match &filter.queue {
        Some(q) => vec![q.clone()],
        None => queues(conn, keys).await?,
    };
    let states: Vec<JobState> = if filter.states.is_empty() {
        JobState::ALL.to_vec()
    } else {
        filter.states.clone()
    };
    let desc = filter.order == ListOrder::Desc;
    // Running jobs have no per-queue index: the lease set names them all (a few per
    // worker slot); those of the listed queues are read once and ordered here.
    let mut running: Vec<String> = Vec::new();
    if states.contains(&JobState::Running) {
        running = running_jobs(conn, keys)
            .await?
            .into_iter()
            .filter(|(_, q)| queues.contains(q))
            .map(|(id, _)| id)
            .collect();
        running.sort();
        if desc {
            running.reverse();
        }
    }
    let indexes: Vec<String> = queues
        .iter()
        .flat_map(|q| states.iter().map(move |s| (q, *s)))
        .filter(|(_, s)| *s != JobState::Running)
        .map(|(q, s)| keys.state(q, s))
        .collect();
    let batch = page.max(50);
    let mut cursor = filter.after.map(|id| id.to_string());
    let mut out = Vec::with_capacity(page);
    while !indexes.is_empty() || !running.is_empty() {
        // The next `batch` ids of every index past the cursor (each index is a
        // lexicographic sorted set of ids, and UUID v7 ids sort by creation).
        let mut lists: Vec<Vec<String>> = if indexes.is_empty() {
            Vec::new()
        } else {
            retrying(conn, "list", |mut c| {
                let mut pipe = redis::pipe();
                let start = match (&cursor, desc) {
                    (Some(c), _) => format!("({c}"),
                    (None, false) => "-".to_string(),
                    (None, true) => "+".to_string(),
                };
                for k in &indexes {
                    if desc {
                        pipe.cmd("ZREVRANGEBYLEX").arg(k).arg(&start).arg("-");
                    } else {
                        pipe.cmd("ZRANGEBYLEX").arg(k).arg(&start).arg("+");
                    }
                    pipe.arg("LIMIT").arg(0).arg(batch);
                }
                async move { pipe.query_async(&mut c).await }
            })
            .await?
        };
        if !running.is_empty() {
            let past = |id: &&String| match &cursor {
                None => true,
                Some(c) if desc => id.as_str() < c.as_str(),
                Some(c) => id.as_str() > c.as_str(),
            };
            lists.push(running.iter().filter(past).take(batch).cloned().collect());
        }
        // Merged order is complete only up to the nearest last id of a full list.
        let bound = lists
            .iter()
            .filter(|l| l.len() == batch)
            .filter_map(|l| l.last().cloned())
            .reduce(|a, b| if desc { a.max(b) } else { a.min(b) });
        let mut ids: Vec<String> = lists
            .into_iter()
            .flatten()
            .filter(|id| match &bound {
                None => true,
                Some(b) if desc => id >= b,
                Some(b) => id <= b,
            })
            .collect();
        ids.sort();
        ids.dedup();
        if desc {
            ids.reverse();
        }
        for r in get_many(conn, keys, &ids).await? {
            if matches(filter, &r) {
                out.push(r);
                if out.len() == page {
                    return Ok(out);
                }
            }
        }
        match bound {
            Some(b) => cursor = Some(b),
            None => break,
        }
    }
    Ok(out)
}

/// The number of jobs per queue and state, queues without jobs left out (`Storage::counts`).
pub(crate) async fn counts(conn: &Arc<Conn>, keys: &Keys) -> Result<Vec<QueueCounts>> {
    let queues = queues(conn, keys).await?;
    let mut by_queue: BTreeMap<String, BTreeMap<JobState, u64>> = BTreeMap::new();
    let indexed: Vec<JobState> = JobState::ALL
        .into_iter()
        .filter(|s| *s != JobState::Running)
        .collect();
    for chunk in queues.chunks(CHUNK / indexed.len()) {
        let n: Vec<u64> = retrying(conn, "count", |mut c| {
            let mut pipe = redis::pipe();
            for q in chunk {
                for s in &indexed {
                    pipe.cmd("ZCARD").arg(keys.state(q, *s));
                }
            }
            async move { pipe.query_async(&mut c).await }
        })
        .await?;
        for (q, per_state) in chunk.iter().zip(n.chunks(indexed.len())) {
            let counts = by_queue.entry(q.clone()).or_default();
            for (s, n) in indexed.iter().zip(per_state) {
                if *n > 0 {
                    counts.insert(*s, *n);
                }
            }
        }
    }
    for (_, q) in running_jobs(conn, keys).await? {
        *by_queue
            .entry(q)
            .or_default()
            .entry(JobState::Running)
            .or_default() += 1;
    }
    Ok(by_queue
        .into_iter()
        .filter(|(_, counts)| !counts.is_empty())
        .map(|(queue, counts)| QueueCounts { queue, counts })
        .collect())
}

/// The records of the jobs `ids`, in that order; ids whose hash is gone are skipped.
pub(crate) async fn get_many(
    conn: &Arc<Conn>,
    keys: &Keys,
    ids: &[String],
) -> Result<Vec<JobRecord>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<Vec<String>> = retrying(conn, "get jobs", |mut c| {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("HGETALL").arg(keys.job(id));
            }
            async move { pipe.query_async(&mut c).await }
        })
        .await?;
        for row in rows {
            // A hash that expired (finished_ttl) before the pruner ran is skipped.
            out.extend(decode_flat(row)?);
        }
    }
    Ok(out)
}

/// The running jobs as (id, queue): the lease set names them (running jobs have no
/// per-queue state index, see `reindex` in `lua/prelude.lua`), their hashes give their
/// queue. Stale lease entries (jobs no longer running, or running under another lease)
/// are left out.
pub(crate) async fn running_jobs(conn: &Arc<Conn>, keys: &Keys) -> Result<Vec<(String, String)>> {
    let leases = keys.k("leases");
    let members: Vec<String> = retrying(conn, "read the lease set", |mut c| {
        let leases = leases.clone();
        async move {
            redis::cmd("ZRANGE")
                .arg(leases)
                .arg(0)
                .arg(-1)
                .query_async(&mut c)
                .await
        }
    })
    .await?;
    // A member is `<id>|<token>` (see LEASES in `lua/prelude.lua`).
    let leases: Vec<(&str, &str)> = members
        .iter()
        .map(|m| m.split_once('|').unwrap_or((m, "")))
        .collect();
    let mut out = Vec::with_capacity(leases.len());
    for chunk in leases.chunks(CHUNK) {
        let rows: Vec<(Option<String>, Option<String>, Option<String>)> =
            retrying(conn, "read running jobs", |mut c| {
                let mut pipe = redis::pipe();
                for (id, _) in chunk {
                    pipe.cmd("HMGET")
                        .arg(keys.job(id))
                        .arg("state")
                        .arg("queue")
                        .arg("lease_token");
                }
                async move { pipe.query_async(&mut c).await }
            })
            .await?;
        for ((id, token), (state, queue, current)) in chunk.iter().zip(rows) {
            if let (Some("running"), Some(q)) = (state.as_deref(), queue) {
                if current.as_deref() == Some(*token) {
                    out.push((id.to_string(), q));
                }
            }
        }
    }
    Ok(out)
}

/// Every queue that has had a job, sorted.
pub(crate) async fn queues(conn: &Arc<Conn>, keys: &Keys) -> Result<Vec<String>> {
    let key = keys.k("queues");
    let mut queues: Vec<String> = retrying(conn, "list queues", |mut c| {
        let key = key.clone();
        async move { redis::cmd("SMEMBERS").arg(key).query_async(&mut c).await }
    })
    .await?;
    queues.sort();
    Ok(queues)
}

/// Whether `r` passes `filter` (the indexes select by queue and state; this checks all).
fn matches(filter: &JobFilter, r: &JobRecord) -> bool {
    (filter.states.is_empty() || filter.states.contains(&r.state))
        && filter.queue.as_ref().is_none_or(|q| &r.queue == q)
        && filter.kind.as_ref().is_none_or(|k| &r.kind == k)
        && filter.created_after.is_none_or(|t| r.created_at >= t)
        && filter.created_before.is_none_or(|t| r.created_at < t)
}
