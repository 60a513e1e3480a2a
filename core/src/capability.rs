//! What an adapter can do, declared rather than discovered at run time.

use std::time::Duration;

/// What a [`Storage`](crate::Storage) adapter supports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageCapabilities {
    /// Claims honour priority order within a queue.
    pub priorities: bool,
    /// `list` and `counts` are supported.
    pub can_list: bool,
    /// Jobs can be enqueued inside the user's own database transaction.
    pub transactional_enqueue: bool,
    /// Wake-ups reach workers in other processes (LISTEN/NOTIFY, blocking pops). When false,
    /// only workers in the enqueueing process are woken; others rely on polling.
    pub cross_process_wakeups: bool,
    /// Most jobs one `claim` may return.
    pub max_claim_batch: usize,
    /// Largest payload, in bytes of its JSON encoding, that `enqueue` accepts.
    pub max_payload_bytes: usize,
}

impl StorageCapabilities {
    /// Capabilities with every feature on, 1,000-job claims and a 1 MiB payload limit. Adapters
    /// start from this and switch off what they lack.
    pub fn full() -> Self {
        Self {
            priorities: true,
            can_list: true,
            transactional_enqueue: false,
            cross_process_wakeups: false,
            max_claim_batch: 1000,
            max_payload_bytes: 1024 * 1024,
        }
    }

    /// Sets the payload limit.
    pub fn with_max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }

    /// Sets transactional enqueue support.
    pub fn with_transactional_enqueue(mut self, yes: bool) -> Self {
        self.transactional_enqueue = yes;
        self
    }

    /// Sets cross-process wake-up support.
    pub fn with_cross_process_wakeups(mut self, yes: bool) -> Self {
        self.cross_process_wakeups = yes;
        self
    }
}

/// What a [`Queue`](crate::Queue) adapter supports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueCapabilities {
    /// Longest delay the broker holds a message for itself (SQS: 15 minutes). Longer delays
    /// wait in Storage and are dispatched when they come within this limit. `None`: no native
    /// delay; every delayed job waits in Storage.
    pub max_native_delay: Option<Duration>,
    /// Longest a received message stays invisible to others (SQS: 12 hours). `None`: no limit.
    pub max_lease: Option<Duration>,
    /// Deliveries honour priority.
    pub priorities: bool,
    /// Most messages one broker call publishes, receives or acks (SQS: 10). A message may name
    /// several jobs (see [`crate::adapter::bundle`]).
    pub max_batch: usize,
}

impl QueueCapabilities {
    /// No native delay, no lease limit, no priorities, `max_batch` messages per call. Adapters
    /// start from this and declare what their broker has (the struct is `#[non_exhaustive]`, so
    /// other crates cannot build it literally).
    pub fn new(max_batch: usize) -> Self {
        Self {
            max_native_delay: None,
            max_lease: None,
            priorities: false,
            max_batch,
        }
    }

    /// Sets the longest native delay (`None`: delayed jobs wait in Storage).
    pub fn with_max_native_delay(mut self, limit: Option<Duration>) -> Self {
        self.max_native_delay = limit;
        self
    }

    /// Sets the longest lease (`None`: no visibility timeout).
    pub fn with_max_lease(mut self, limit: Option<Duration>) -> Self {
        self.max_lease = limit;
        self
    }

    /// Sets priority support.
    pub fn with_priorities(mut self, yes: bool) -> Self {
        self.priorities = yes;
        self
    }
}
