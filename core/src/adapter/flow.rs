//! The flow cache: each storage handle's copy of the stored [`QueueFlow`] records, refreshed
//! at most every [`FLOW_REFRESH`], so that a claim on a queue with no stored settings runs the
//! storage's usual claim unchanged, and a pause set by any process is honoured by every claim
//! within one worker poll.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::flow::{Partition, QueueFlow, RateLimit};
use crate::storage::ClaimRequest;

/// How old a handle's copy of the flow records may be before a claim reads them again: half
/// the worker's default poll interval (1 s), so a change is honoured within one poll.
pub const FLOW_REFRESH: Duration = Duration::from_millis(500);

/// The flow records as one claim sees them.
#[derive(Debug, Default, Clone)]
pub struct FlowSnapshot {
    flows: HashMap<String, QueueFlow>,
}

impl FlowSnapshot {
    /// A snapshot of these records.
    pub fn new(flows: impl IntoIterator<Item = QueueFlow>) -> Self {
        Self {
            flows: flows.into_iter().map(|f| (f.queue.clone(), f)).collect(),
        }
    }

    /// Whether no queue has stored settings (the claim runs unchanged).
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The stored settings of `queue`, if any.
    pub fn get(&self, queue: &str) -> Option<&QueueFlow> {
        self.flows.get(queue)
    }

    /// Whether `queue` is paused.
    pub fn is_paused(&self, queue: &str) -> bool {
        let now = chrono::Utc::now();
        self.flows.get(queue).is_some_and(|f| f.is_paused_at(now))
    }

    /// The request without its paused queues (borrowed unchanged when none is paused).
    pub fn unpaused<'a>(&self, req: &'a ClaimRequest) -> Cow<'a, ClaimRequest> {
        if self.is_empty() || !req.queues.iter().any(|q| self.is_paused(q)) {
            return Cow::Borrowed(req);
        }
        let mut r = req.clone();
        r.queues.retain(|q| !self.is_paused(q));
        Cow::Owned(r)
    }
}

/// A queue of a claim that has a concurrency limit: the storage claims its jobs with the
/// limit checked in the same atomic step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitedQueue {
    /// The queue.
    pub queue: String,
    /// At most this many running (valid lease) per partition, if set.
    pub concurrency: Option<u32>,
    /// At most this many attempt starts per sliding window per partition, if set.
    pub rate: Option<RateLimit>,
    /// What the limit counts per.
    pub partition: Partition,
}

/// How a storage runs one claim: its usual claim for `plain` (the queues with no limit, paused
/// ones dropped), and a limited claim for each of `limited`.
#[derive(Debug)]
pub struct ClaimPlan<'a> {
    /// The request for the unlimited, unpaused queues (borrowed unchanged when no queue of
    /// the request has stored settings).
    pub plain: Cow<'a, ClaimRequest>,
    /// The queues with a concurrency limit.
    pub limited: Vec<LimitedQueue>,
}

impl FlowSnapshot {
    /// Splits a claim into its plain part and its limited queues.
    pub fn plan<'a>(&self, req: &'a ClaimRequest) -> ClaimPlan<'a> {
        if self.is_empty() || !req.queues.iter().any(|q| self.flows.contains_key(q)) {
            return ClaimPlan {
                plain: Cow::Borrowed(req),
                limited: Vec::new(),
            };
        }
        let mut plain = req.clone();
        plain.queues.clear();
        let mut limited = Vec::new();
        let now = chrono::Utc::now();
        for q in &req.queues {
            match self.flows.get(q) {
                Some(f) if f.is_paused_at(now) => {}
                Some(f) if f.concurrency.is_some() || f.rate.is_some() => {
                    limited.push(LimitedQueue {
                        queue: q.clone(),
                        concurrency: f.concurrency,
                        rate: f.rate,
                        partition: f.partition.clone(),
                    })
                }
                _ => plain.queues.push(q.clone()),
            }
        }
        ClaimPlan {
            plain: Cow::Owned(plain),
            limited,
        }
    }
}

/// A storage handle's cached [`FlowSnapshot`].
#[derive(Debug, Default)]
pub struct FlowCache {
    state: Mutex<Option<(Instant, Arc<FlowSnapshot>)>>,
}

impl FlowCache {
    /// An empty cache (the first claim reads the records).
    pub fn new() -> Self {
        Self::default()
    }

    /// The snapshot, read again with `load` when older than [`FLOW_REFRESH`].
    pub async fn current<F, Fut>(&self, load: F) -> Result<Arc<FlowSnapshot>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<QueueFlow>>>,
    {
        if let Some((at, snap)) = self.state.lock().expect("poisoned").as_ref() {
            if at.elapsed() < FLOW_REFRESH {
                return Ok(snap.clone());
            }
        }
        let snap = Arc::new(FlowSnapshot::new(load().await?));
        *self.state.lock().expect("poisoned") = Some((Instant::now(), snap.clone()));
        Ok(snap)
    }

    /// Forgets the copy (after this handle changed a record), so the next claim reads it.
    pub fn invalidate(&self) {
        *self.state.lock().expect("poisoned") = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paused_queues_leave_the_request_and_the_copy_is_reused() {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(paused_queues_case());
    }

    async fn paused_queues_case() {
        let cache = FlowCache::new();
        let mut reads = 0;
        for _ in 0..3 {
            cache
                .current(|| {
                    reads += 1;
                    async {
                        Ok(vec![QueueFlow {
                            paused: true,
                            ..QueueFlow::new("b")
                        }])
                    }
                })
                .await
                .unwrap();
        }
        assert_eq!(reads, 1);
        let snap = cache.current(|| async { Ok(vec![]) }).await.unwrap();
        let req = ClaimRequest {
            queues: vec!["a".into(), "b".into()],
            limit: 1,
            worker_id: "w".into(),
            lease: Duration::from_secs(1),
        };
        assert_eq!(snap.unpaused(&req).queues, vec!["a".to_string()]);
        cache.invalidate();
        let snap = cache.current(|| async { Ok(vec![]) }).await.unwrap();
        assert!(matches!(snap.unpaused(&req), Cow::Borrowed(_)));
    }
}
