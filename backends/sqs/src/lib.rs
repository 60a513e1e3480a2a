//! # switchyard-sqs
//!
//! Switchyard's [`Queue`](switchyard_core::Queue) on Amazon SQS through `aws-sdk-sqs`. It
//! composes with any [`Storage`](switchyard_core::Storage) (SQLite, PostgreSQL, Redis): Storage
//! keeps the job records and is the outbox, SQS delivers job ids. Messages carry a job id and
//! its queue, never a payload, so SQS's 256 KiB limit never reaches the user.
//!
//! * **Batches of ten** for `SendMessageBatch`, `ReceiveMessage`, `DeleteMessageBatch` and
//!   `ChangeMessageVisibilityBatch`; larger calls are cut into batches sent concurrently.
//! * **Long polling**: `receive` waits up to its `wait` (whole seconds, at most 20) for the
//!   first message.
//! * **Leases are visibility timeouts**: `receive` sets the worker's lease, the worker's
//!   heartbeats extend it (`extend`), up to SQS's 12-hour cap; `nack` sets it to the delay.
//! * **Native delay** up to 15 minutes (`DelaySeconds`); longer delays wait in Storage and the
//!   dispatcher publishes them when they come within the limit.
//! * **FIFO queues** optionally (`fifo = true`): `.fifo` names, a `MessageGroupId` per queue or
//!   per job ([`FifoGroup`]), no per-message delay.
//! * **Queue creation** by [`Queue::setup`](switchyard_core::Queue::setup) (`switchyard
//!   migrate`), and on first use of a queue that does not exist.
//! * **Emulators and regions**: `endpoint_url` and region configurable; with an endpoint and no
//!   AWS keys in the environment, dummy static credentials are used.
//!
//! ```no_run
//! # async fn f() -> switchyard_core::Result<()> {
//! use switchyard_sqs::{SqsConfig, SqsQueue};
//! let config = SqsConfig::from_url("sqs://127.0.0.1:4577")?.with_prefix("switchyard_");
//! let queue = SqsQueue::connect(config).await?;
//! # Ok(()) }
//! ```
//!
//! See `docs/sqs.md` for the URL forms, the `[sqs]` settings and how delays and visibility work.

mod batch;
mod body;
mod config;
mod connection;
mod error;
mod limits;
mod queue;

pub use config::{FifoGroup, SqsConfig, DEFAULT_REGION};
pub use limits::{MAX_BATCH, MAX_DELAY, MAX_VISIBILITY, MAX_WAIT};
pub use queue::SqsQueue;

/// URL schemes this backend accepts.
pub const URL_SCHEMES: &[&str] = &["sqs"];
