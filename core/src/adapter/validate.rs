//! New-job validation: the checks every `Storage::enqueue` runs before it stores a batch, so
//! each backend refuses the same jobs with the same messages.

use crate::capability::StorageCapabilities;
use crate::error::{Error, ErrorKind, Result};
use crate::job::NewJob;

/// Checks a job before a backend stores it: non-empty kind and queue, no NUL character in the
/// kind, queue, unique key or tags, at least one attempt, and a payload within the storage's
/// limit. Every `Storage::enqueue` calls it, so an oversized payload is rejected at enqueue
/// with a message that names the limit.
pub fn validate_new_job(job: &NewJob, caps: &StorageCapabilities) -> Result<()> {
    if job.kind.trim().is_empty() {
        return Err(Error::invalid(format!(
            "job {} has an empty kind; a kind is the name a handler is registered under",
            job.id
        )));
    }
    if job.queue.trim().is_empty() || job.queue.len() > 128 {
        return Err(Error::invalid(format!(
            "job {} has queue `{}`; a queue name is 1 to 128 characters",
            job.id, job.queue
        )));
    }
    // A NUL character is refused in every name-like field: PostgreSQL's text cannot store one,
    // and the Redis storage uses it as a separator, so every backend refuses it alike.
    let named = [
        ("kind", Some(job.kind.as_str())),
        ("queue", Some(job.queue.as_str())),
        ("unique key", job.unique_key.as_deref()),
    ];
    let tags = job.tags.iter().map(|t| ("tag", Some(t.as_str())));
    for (what, value) in named.into_iter().chain(tags) {
        if value.is_some_and(|v| v.contains('\0')) {
            return Err(Error::invalid(format!(
                "job {} has a {what} containing a NUL character (\\0); any other Unicode \
                 character is accepted",
                job.id
            )));
        }
    }
    if job.max_attempts == 0 {
        return Err(Error::invalid(format!(
            "job {} has max_attempts 0; it must be at least 1",
            job.id
        )));
    }
    let size = serde_json::to_vec(&job.payload)?.len();
    if size > caps.max_payload_bytes {
        return Err(Error::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "payload of job {} (kind `{}`) is {size} bytes; the limit is {} bytes \
                 (setting `max_payload_bytes`)",
                job.id, job.kind, caps.max_payload_bytes
            ),
        ));
    }
    Ok(())
}

/// Checks every job of a batch with [`validate_new_job`] before any is stored: the first bad
/// job refuses the whole batch, so an enqueue never stores half of it.
pub fn validate_all(jobs: &[NewJob], caps: &StorageCapabilities) -> Result<()> {
    jobs.iter().try_for_each(|job| validate_new_job(job, caps))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> StorageCapabilities {
        StorageCapabilities::full()
    }

    #[test]
    fn one_bad_job_refuses_the_batch() {
        let good = NewJob::new("k", serde_json::json!({}));
        let mut bad = NewJob::new("k", serde_json::json!({}));
        bad.max_attempts = 0;
        validate_all(std::slice::from_ref(&good), &caps()).unwrap();
        let e = validate_all(&[good, bad], &caps()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("max_attempts 0"), "{e}");
    }

    #[test]
    fn names_the_payload_limit() {
        let caps = caps().with_max_payload_bytes(8);
        let job = NewJob::new("k", serde_json::json!({"a": "0123456789"}));
        let e = validate_new_job(&job, &caps).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PayloadTooLarge);
        assert!(e.message().contains("the limit is 8 bytes"), "{e}");
    }
}
