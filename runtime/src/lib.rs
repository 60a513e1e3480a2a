//! # Switchyard
//!
//! Background jobs for Rust with pluggable backends: enqueue work now or later, run it on
//! workers with retries, watch and control it, and move between SQLite, PostgreSQL, Redis,
//! SQS and RabbitMQ by changing a URL — never job code.
//!
//! | feature    | what                                                  | default |
//! |------------|-------------------------------------------------------|---------|
//! | `sqlite`   | SQLite storage + queue (embedded); `testing`          | yes     |
//! | `postgres` | PostgreSQL storage + queue, TLS (`sslmode=…`)         | no      |
//! | `redis`    | Redis storage + queue, TLS (`rediss://`)              | no      |
//! | `sqs`      | Amazon SQS queue (https)                              | no      |
//! | `rabbitmq` | RabbitMQ queue, TLS (`amqps://`)                      | no      |
//! | `cli`      | the `switchyard` binary, `cli::main_with`, `bench`    | no      |
//! | `full`     | all of the above                                      | no      |
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use switchyard::{Job, JobContext, JobError, Registry, Switchyard};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Hello { name: String }
//!
//! impl Job for Hello {
//!     const KIND: &'static str = "hello";
//!     type Output = String;
//!     async fn run(self, _ctx: JobContext) -> Result<String, JobError> {
//!         Ok(format!("hello, {}", self.name))
//!     }
//! }
//!
//! # async fn demo() -> switchyard::Result<()> {
//! let sy = Switchyard::from_env().await?; // no config: ./switchyard.db
//! sy.client().enqueue(Hello { name: "world".into() }).await?;
//! sy.run_until(Registry::new().register::<Hello>(), async {
//!     tokio::signal::ctrl_c().await.ok();
//! }).await?;
//! # Ok(()) }
//! ```

pub mod app;
pub mod backoff;
#[cfg(feature = "cli")]
pub mod bench;
#[cfg(feature = "cli")]
pub mod cli;
pub mod client;
pub mod config;
pub mod connect;
pub mod context;
pub mod cron;
pub mod dispatcher;
mod flow;
pub mod job;
pub mod maintenance;
pub mod registry;
mod schemes;
pub mod shutdown;
#[cfg(feature = "sqlite")]
pub mod testing;
pub mod worker;
pub mod workflow;

pub use app::{Running, Switchyard, SwitchyardBuilder};
pub use backoff::Backoff;
pub use client::{Client, TxEnqueue};
pub use config::Config;
pub use context::JobContextExt;
pub use job::{BlockingJob, EnqueueOptions, Job};
pub use registry::Registry;
pub use shutdown::Shutdown;
pub use switchyard_core::{
    AttemptError, BlockingExecutor, CancelOutcome, Error, ErrorKind, Executor, JobContext,
    JobError, JobErrorKind, JobFilter, JobId, JobRecord, JobState, ListOrder, NewJob, Queue,
    QueueCounts, Result, RetryOutcome, Storage, TokioExecutor,
};
pub use switchyard_core::{CatchUp, JobTemplate, Overlap, ScheduleDef};
pub use switchyard_core::{Clock, SharedClock, StateMap, StateType, SystemClock, TestClock};
pub use switchyard_core::{
    DepFailure, StepOutputs, WorkflowCancelReport, WorkflowDef, WorkflowId, WorkflowRecord,
    WorkflowState, WorkflowStep, WorkflowStepInfo,
};
pub use worker::{Worker, WorkerConfig, WorkerHandle};
pub use workflow::WorkflowContextExt;

/// The sqlx Switchyard is built with (features `postgres`, `sqlite`): the transactions
/// [`Client::enqueue_tx`] joins are `sqlx::Transaction`s of this version.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use sqlx;

/// The core crate, for adapter authors.
pub use switchyard_core as core;

/// The SQLite backend (feature `sqlite`).
#[cfg(feature = "sqlite")]
pub use switchyard_sqlite as sqlite;

/// The PostgreSQL backend (feature `postgres`), e.g. for `postgres::PostgresStorage::enqueue_in`.
#[cfg(feature = "postgres")]
pub use switchyard_postgres as postgres;

/// The Redis backend (feature `redis`).
#[cfg(feature = "redis")]
pub use switchyard_redis as redis;

/// The Amazon SQS queue (feature `sqs`).
#[cfg(feature = "sqs")]
pub use switchyard_sqs as sqs;

/// The RabbitMQ queue (feature `rabbitmq`).
#[cfg(feature = "rabbitmq")]
pub use switchyard_rabbitmq as rabbitmq;
