//! The toolkit for adapter authors; job code never needs this module.
//!
//! Everything here is shared by the backend crates, so that each rule (the claim order, the
//! prefix rule, URL redaction, new-job validation, the migration runner, the bookkeeping of
//! bundled deliveries) exists once and every backend behaves alike. A new adapter starts from
//! these instead of copying a neighbour's version (see `docs/writing-an-adapter.md`).
//!
//! | module / item | for |
//! |---|---|
//! | [`bundle`] | broker queues that carry several job ids per message (SQS, RabbitMQ) |
//! | [`WakeHub`] | waking idle workers in this process after an enqueue |
//! | [`run_migrations`], [`migration_statements`], [`pending_migrations`], [`latest_version`], [`prefixes_of_tables`] | SQL migration files with a `{prefix}` |
//! | [`validate_new_job`], [`validate_all`] | the checks every `Storage::enqueue` runs first |
//! | [`claim_order`], [`sort_claimed`], [`claim_id_chunks`] | the order claimed jobs are returned and started in; `claim_ids` in chunks |
//! | [`check_prefix`], [`redact_url`] | configuration: the prefix rule, URLs in messages |
//! | [`completion_statuses`], [`requeued_any`], [`lease_statuses`] | answering `Storage::complete` and `heartbeat` |
//! | `tls_problem`, `TlsProblem` (feature `tls`) | what a failed TLS handshake means, for error messages |

pub mod bundle;
mod flow;
mod migrate;
mod order;
mod outcome;
#[cfg(feature = "tls")]
mod tls;
mod url;
mod validate;

pub use flow::{ClaimPlan, FlowCache, FlowSnapshot, LimitedQueue, FLOW_REFRESH};
pub use migrate::{
    latest_version, migration_statements, pending_migrations, prefixes_of_tables, run_migrations,
    Migration, MigrationTable, MigrationTarget,
};
pub use order::{claim_id_chunks, claim_order, sort_claimed};
pub use outcome::{applied_if, completion_statuses, lease_statuses, requeued_any};
#[cfg(feature = "tls")]
pub use tls::{tls_problem, TlsProblem};
pub use url::{check_prefix, redact_url, MAX_PREFIX_LEN, PREFIX_RULE};
pub use validate::{validate_all, validate_new_job};
// Part of the contract (`Storage::subscribe` returns a subscription); here for the adapters
// that build one.
pub use crate::wake::{WakeHub, WakeSubscription};
