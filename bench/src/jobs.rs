//! The jobs, claims and completions the drain programs (`storage_loop`, `redis_storage_loop`,
//! `runtime_ceiling`) send: all of kind and queue `bench`, with a no-op outcome.

use std::time::Duration;

use switchyard_core::{ClaimRequest, Completion, JobRecord, NewJob, Outcome};

/// `n` jobs of kind `bench` on queue `bench`, the `i`th with payload `{"n": i}`, and with
/// `pad: Some(p)` also `"pad"`: a string of `p` bytes.
pub fn bench_jobs(n: usize, pad: Option<usize>) -> Vec<NewJob> {
    (0..n)
        .map(|i| {
            let payload = match pad {
                None => serde_json::json!({ "n": i }),
                Some(p) => serde_json::json!({ "n": i, "pad": "x".repeat(p) }),
            };
            NewJob::new("bench", payload).with_queue("bench")
        })
        .collect()
}

/// A claim of up to `batch` jobs from queue `bench` as worker `loop`, leased for 30 s.
pub fn loop_claim(batch: usize) -> ClaimRequest {
    ClaimRequest {
        queues: vec!["bench".into()],
        limit: batch,
        worker_id: "loop".into(),
        lease: Duration::from_secs(30),
    }
}

/// A success without a result for each claimed job, fenced by its lease token.
pub fn succeeded(claimed: &[JobRecord]) -> Vec<Completion> {
    claimed
        .iter()
        .map(|j| Completion {
            id: j.id,
            token: j.lease_token.expect("a claimed job has a token"),
            outcome: Outcome::Succeeded { result: None },
        })
        .collect()
}
