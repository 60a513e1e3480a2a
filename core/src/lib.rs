//! # switchyard-core
//!
//! The integration point of Switchyard: the job model, its states, and the three traits a
//! backend implements.
//!
//! * [`Storage`] keeps durable job records and every state change of a job (enqueue, claim with
//!   a lease, heartbeat, complete, rescue, cancel, retry, list, prune, leadership). Every storage
//!   also delivers its own jobs (`queue = "storage"`), by claiming runnable rows in batches.
//! * [`Queue`] delivers job *ids* (never payloads) to workers through an external broker (SQS,
//!   RabbitMQ). Storage stays the source of truth: a delivery is only a hint that a job may be
//!   claimed, and every claim is fenced in Storage, so a duplicate delivery is harmless.
//! * [`Executor`] runs one attempt of a job body (on the Tokio runtime, or on the blocking pool).
//!
//! Job code never names a backend type: it sees [`JobContext`] and returns a [`JobError`].
//! Backends declare what they can do through [`StorageCapabilities`] and [`QueueCapabilities`];
//! the runtime and the conformance suite read them instead of guessing.
//!
//! The crate root holds the contract. The helpers that adapters share (bundles,
//! migrations, validation, claim order, the prefix rule) live one level down, in [`adapter`].

pub mod adapter;
mod admin;
mod capability;
mod clock;
mod context;
mod error;
mod executor;
pub mod flow;
mod job;
mod queue;
pub mod schedule;
mod state;
mod storage;
mod wake;
pub mod workflow;

pub use admin::{
    clock_skew_check, CheckStatus, HealthCheck, PendingMigration, SchemaState, SchemaStatus,
    MAX_CLOCK_SKEW,
};
pub use capability::{QueueCapabilities, StorageCapabilities};
pub use clock::{system_clock, Clock, SharedClock, SystemClock, TestClock};
pub use context::{JobContext, JobError, JobErrorKind};
pub use error::{Error, ErrorKind, Result};
pub use executor::{BlockingExecutor, Executor, JobBody, JobOutput, TokioExecutor};
pub use flow::{BulkReport, BulkRequest, Partition, QueueFlow, RateLimit};
pub use job::{
    AttemptError, JobId, JobRecord, JobState, NewJob, DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
};
pub use queue::{Delivery, Queue, QueueMessage};
pub use schedule::{
    CatchUp, FireOutcome, JobTemplate, Overlap, Schedule, ScheduleDef, ScheduleFire, ScheduleRecord,
};
pub use state::{StateMap, StateType};
pub use storage::{
    CancelOutcome, ClaimRequest, Completion, CompletionStatus, DispatchItem, EnqueueOutcome,
    JobFilter, LeaseRef, LeaseStatus, ListOrder, Outcome, QueueCounts, RescueReport, RetryOutcome,
    Storage,
};

// Kept at the root for adapters written before `adapter` existed.
pub use adapter::bundle;
pub use adapter::{migration_statements, validate_new_job};
pub use wake::{WakeHub, WakeSubscription};
pub use workflow::{
    DepFailure, StepOutputs, WorkflowCancelReport, WorkflowDef, WorkflowId, WorkflowRecord,
    WorkflowState, WorkflowStep, WorkflowStepInfo,
};

/// Re-exported so that adapters implement the traits with the same macro version.
pub use async_trait::async_trait;
