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
//! | [`run_migrations`], [`migration_statements`] | SQL migration files with a `{prefix}` |
//! | [`validate_new_job`], [`validate_all`] | the checks every `Storage::enqueue` runs first |
//! | [`claim_order`], [`sort_claimed`], [`claim_id_chunks`] | the order claimed jobs are returned and started in; `claim_ids` in chunks |
//! | [`check_prefix`], [`redact_url`] | configuration: the prefix rule, URLs in messages |
//! | [`completion_statuses`], [`requeued_any`], [`lease_statuses`] | answering `Storage::complete` and `heartbeat` |

pub mod bundle;
mod flow;
mod migrate;
mod order;
mod outcome;
mod url;
mod validate;

pub use flow::{ClaimPlan, FlowCache, FlowSnapshot, LimitedQueue, FLOW_REFRESH};
pub use migrate::{
    migration_statements, run_migrations, Migration, MigrationTable, MigrationTarget,
};
pub use order::{claim_id_chunks, claim_order, sort_claimed};
pub use outcome::{applied_if, completion_statuses, lease_statuses, requeued_any};
pub use url::{check_prefix, redact_url, MAX_PREFIX_LEN, PREFIX_RULE};
pub use validate::{validate_all, validate_new_job};
// Part of the contract (`Storage::subscribe` returns a subscription); here for the adapters
// that build one.
pub use crate::wake::{WakeHub, WakeSubscription};
