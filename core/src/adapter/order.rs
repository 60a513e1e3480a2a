//! Claim order, written once: the order every storage returns claimed jobs in, and the order
//! the worker starts them in.

use std::cmp::Ordering;

use crate::job::{JobId, JobRecord};
use crate::storage::ClaimRequest;

/// The claim order of the `Storage` contract: higher `priority` first, then earlier `run_at`,
/// then smaller id (ids are UUID v7, so older first).
pub fn claim_order(a: &JobRecord, b: &JobRecord) -> Ordering {
    b.priority
        .cmp(&a.priority)
        .then(a.run_at.cmp(&b.run_at))
        .then(a.id.cmp(&b.id))
}

/// Sorts claimed jobs into [`claim_order`]: for a backend whose claim statement returns rows in
/// no set order (SQL `RETURNING`, a claim made in chunks).
pub fn sort_claimed(jobs: &mut [JobRecord]) {
    jobs.sort_by(claim_order);
}

/// `Storage::claim_ids` in chunks: the ids split into runs of at most `max`, each with `req`
/// limited to its run's length, for a backend that claims one chunk per statement.
pub fn claim_id_chunks<'a>(
    ids: &'a [JobId],
    req: &'a ClaimRequest,
    max: usize,
) -> impl Iterator<Item = (ClaimRequest, &'a [JobId])> + 'a {
    ids.chunks(max.max(1)).map(move |chunk| {
        let mut r = req.clone();
        r.limit = chunk.len();
        (r, chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobId, JobState};
    use chrono::{DateTime, Duration, Utc};

    fn job(priority: i16, run_at_secs: i64, id: u128) -> JobRecord {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        JobRecord {
            id: JobId::from_u128(id),
            kind: "k".into(),
            queue: "q".into(),
            payload: serde_json::Value::Null,
            state: JobState::Available,
            priority,
            attempt: 0,
            max_attempts: 1,
            run_at: now + Duration::seconds(run_at_secs),
            created_at: now,
            started_at: None,
            finished_at: None,
            lease_expires_at: None,
            lease_token: None,
            worker_id: None,
            errors: Vec::new(),
            result: None,
            unique_key: None,
            cancel_requested: false,
            timeout_ms: None,
            tags: Vec::new(),
        }
    }

    #[test]
    fn priority_then_run_at_then_id() {
        let mut jobs = vec![job(0, 5, 1), job(1, 9, 2), job(0, 5, 0), job(0, 1, 3)];
        sort_claimed(&mut jobs);
        let ids: Vec<u128> = jobs.iter().map(|j| j.id.as_u128()).collect();
        assert_eq!(ids, vec![2, 3, 0, 1]);
    }
}
