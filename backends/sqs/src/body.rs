//! The message body on the wire: job ids and their Switchyard queue as JSON, never a payload.

use serde::{Deserialize, Serialize};
use switchyard_core::JobId;

/// The message body: job ids and their Switchyard queue, never a payload. One job is written
/// `job_id`, a bundle `job_ids` (see `switchyard_core::adapter::bundle`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Body {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    job_id: Option<JobId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    job_ids: Vec<JobId>,
    queue: String,
}

impl Body {
    /// The body of a message naming `ids` of `queue`.
    pub(crate) fn new(ids: &[JobId], queue: &str) -> Self {
        match ids {
            [one] => Body {
                job_id: Some(*one),
                job_ids: Vec::new(),
                queue: queue.to_string(),
            },
            many => Body {
                job_id: None,
                job_ids: many.to_vec(),
                queue: queue.to_string(),
            },
        }
    }

    /// Every id the body names; empty for a body that names none.
    pub(crate) fn ids(self) -> Vec<JobId> {
        self.job_id.into_iter().chain(self.job_ids).collect()
    }
}
