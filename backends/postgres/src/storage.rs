//! [`PostgresStorage`]: the handle users hold, and its `Storage` implementation, which hands
//! each method to the file of its area (`enqueue`, `admin`, `claim`, `lease`, `maintenance`,
//! `dispatch`, `migrate`), as the trait groups them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use sqlx::PgConnection;
use switchyard_core::adapter::{sort_claimed, FlowCache, WakeSubscription};
use switchyard_core::{
    async_trait, CancelOutcome, ClaimRequest, Completion, CompletionStatus, DispatchItem,
    EnqueueOutcome, HealthCheck, JobFilter, JobId, JobRecord, LeaseRef, LeaseStatus, NewJob,
    PendingMigration, QueueCounts, QueueFlow, RescueReport, Result, RetryOutcome, SchemaStatus,
    Storage, StorageCapabilities,
};

use crate::config::PostgresConfig;
use crate::connection::Db;
use crate::{
    admin, claim, dispatch, enqueue, flow, lease, maintenance, migrate, schedules, workflow,
};
use switchyard_core::schedule::{FireOutcome, ScheduleFire, ScheduleRecord};

/// Switchyard storage on one PostgreSQL database.
///
/// Cheap to clone: clones share the pool, the listener and the wake-ups. The listener stops
/// when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct PostgresStorage {
    db: Arc<Db>,
    /// This handle's copy of the stored queue settings (pauses), read by claims.
    flow: Arc<FlowCache>,
}

impl PostgresStorage {
    /// Connects to the database at `config.url` and, when `config.listen` is on, starts the
    /// wake-up listener. Does not migrate. Must be called inside a Tokio runtime.
    pub async fn connect(config: PostgresConfig) -> Result<Self> {
        Ok(Self {
            db: Arc::new(Db::open(config).await?),
            flow: Arc::new(FlowCache::new()),
        })
    }

    /// The table prefix.
    pub fn prefix(&self) -> &str {
        &self.db.prefix
    }

    /// The connection pool, for tests and tools.
    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// The `LISTEN`/`NOTIFY` channel of this instance (`{prefix}jobs`).
    pub fn channel(&self) -> &str {
        &self.db.sql.channel
    }

    /// Whether the wake-up listener is subscribed right now (always false with `listen = false`).
    pub fn listener_connected(&self) -> bool {
        self.db.listener_status.connected.load(Ordering::SeqCst)
    }

    /// How many times the wake-up listener has connected and subscribed (1 after start-up,
    /// more after each reconnection).
    pub fn listener_connects(&self) -> u64 {
        self.db.listener_status.connects.load(Ordering::SeqCst)
    }

    /// Enqueues jobs on the caller's own connection, typically inside the caller's
    /// transaction, so the jobs exist if and only if that transaction commits:
    ///
    /// ```no_run
    /// # async fn demo(storage: switchyard_postgres::PostgresStorage) -> Result<(), Box<dyn std::error::Error>> {
    /// use switchyard_core::NewJob;
    /// let mut tx = storage.pool().begin().await?; // or your own pool's transaction
    /// sqlx::query("INSERT INTO orders (id) VALUES (42)").execute(&mut *tx).await?;
    /// storage
    ///     .enqueue_in(&mut tx, vec![NewJob::new("send_receipt", serde_json::json!({"order": 42}))])
    ///     .await?;
    /// tx.commit().await?; // the job becomes visible to workers here, and only here
    /// # Ok(()) }
    /// ```
    ///
    /// Behaves like [`Storage::enqueue`] (validation, unique keys, outcomes). Workers listening
    /// on the channel are woken when the transaction commits (PostgreSQL delivers `NOTIFY` at
    /// commit, and drops it on rollback); with `listen = false` they find the jobs at their
    /// next poll. The connection may be any connection to the same database, e.g. a
    /// transaction from the application's own pool.
    pub async fn enqueue_in(
        &self,
        conn: &mut PgConnection,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<EnqueueOutcome>> {
        enqueue::enqueue_in(&self.db, conn, jobs).await
    }
}

#[async_trait]
impl Storage for PostgresStorage {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn capabilities(&self) -> StorageCapabilities {
        self.db.caps.clone()
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    // ---- Schema ----

    async fn migrate(&self) -> Result<()> {
        migrate::run(&self.db.pool, &self.db.prefix).await
    }

    async fn destroy(&self) -> Result<()> {
        migrate::drop_all(&self.db.pool, &self.db.prefix).await
    }

    async fn schema(&self) -> Result<SchemaStatus> {
        migrate::schema(&self.db.pool, &self.db.prefix).await
    }

    async fn pending_migrations(&self) -> Result<Vec<PendingMigration>> {
        migrate::pending(&self.db.pool, &self.db.prefix).await
    }

    async fn prefixes(&self) -> Result<Vec<String>> {
        migrate::prefixes(&self.db.pool).await
    }

    async fn health_checks(&self) -> Vec<HealthCheck> {
        maintenance::health_checks(&self.db).await
    }

    // ---- Records ----

    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>> {
        enqueue::enqueue(&self.db, jobs).await
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>> {
        admin::get(&self.db, id).await
    }

    async fn cancel(&self, id: JobId) -> Result<CancelOutcome> {
        admin::cancel(&self.db, id).await
    }

    async fn retry(&self, id: JobId) -> Result<RetryOutcome> {
        admin::retry(&self.db, id).await
    }

    // ---- Delivery ----

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<JobRecord>> {
        let flows = self.flow.current(|| flow::load(&self.db)).await?;
        let plan = flows.plan(req);
        if plan.limited.is_empty() {
            return claim::claim(&self.db, &plan.plain).await;
        }
        let mut out = claim::claim(&self.db, &plan.plain).await?;
        for lq in &plan.limited {
            let left = req.limit.saturating_sub(out.len());
            out.extend(flow::claim_limited(&self.db, lq, req, left, None).await?);
        }
        sort_claimed(&mut out);
        Ok(out)
    }

    async fn claim_ids(&self, ids: &[JobId], req: &ClaimRequest) -> Result<Vec<JobRecord>> {
        let flows = self.flow.current(|| flow::load(&self.db)).await?;
        let plan = flows.plan(req);
        if plan.limited.is_empty() {
            return claim::claim_ids(&self.db, ids, &plan.plain).await;
        }
        let mut out = claim::claim_ids(&self.db, ids, &plan.plain).await?;
        for lq in &plan.limited {
            let left = req.limit.saturating_sub(out.len());
            out.extend(flow::claim_limited(&self.db, lq, req, left, Some(ids)).await?);
        }
        sort_claimed(&mut out);
        Ok(out)
    }

    fn subscribe(&self) -> WakeSubscription {
        self.db.wake.subscribe()
    }

    // ---- Leases ----

    async fn heartbeat(&self, leases: &[LeaseRef], lease: Duration) -> Result<Vec<LeaseStatus>> {
        lease::heartbeat(&self.db, leases, lease).await
    }

    async fn complete(&self, completions: &[Completion]) -> Result<Vec<CompletionStatus>> {
        lease::complete(&self.db, completions).await
    }

    async fn rescue_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<RescueReport> {
        lease::rescue_expired(&self.db, now, limit).await
    }

    // ---- Admin ----

    async fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        admin::list(&self.db, filter).await
    }

    async fn counts(&self) -> Result<Vec<QueueCounts>> {
        admin::counts(&self.db).await
    }

    // ---- Maintenance ----

    async fn prune(&self, before: DateTime<Utc>, limit: usize) -> Result<u64> {
        maintenance::prune(&self.db, before, limit).await
    }

    async fn try_lead(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        maintenance::try_lead(&self.db, name, holder, ttl).await
    }

    async fn resign(&self, name: &str, holder: &str) -> Result<()> {
        maintenance::resign(&self.db, name, holder).await
    }

    // ---- Outbox ----

    async fn due_for_dispatch(
        &self,
        horizon: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DispatchItem>> {
        dispatch::due_for_dispatch(&self.db, horizon, stale_before, limit).await
    }

    async fn take_for_dispatch(
        &self,
        horizon: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DispatchItem>> {
        dispatch::take_for_dispatch(&self.db, horizon, stale_before, limit).await
    }

    async fn mark_dispatched(&self, ids: &[JobId]) -> Result<()> {
        dispatch::mark_dispatched(&self.db, ids).await
    }

    // ---- Schedules ----

    async fn storage_now(&self) -> Result<DateTime<Utc>> {
        schedules::now(&self.db).await
    }

    async fn list_schedules(&self) -> Result<Vec<ScheduleRecord>> {
        schedules::list(&self.db).await
    }

    async fn get_schedule(&self, id: &str) -> Result<Option<ScheduleRecord>> {
        schedules::get(&self.db, id).await
    }

    async fn put_schedule(&self, record: &ScheduleRecord, expected: Option<u64>) -> Result<bool> {
        schedules::put(&self.db, record, expected).await
    }

    async fn remove_schedule(&self, id: &str) -> Result<bool> {
        schedules::remove(&self.db, id).await
    }

    async fn fire_schedule(&self, fire: &ScheduleFire) -> Result<FireOutcome> {
        schedules::fire(&self.db, fire).await
    }

    // ---- Workflows ----

    async fn enqueue_workflow(
        &self,
        workflow: switchyard_core::WorkflowDef,
    ) -> Result<switchyard_core::WorkflowId> {
        workflow::enqueue_workflow(&self.db, workflow).await
    }

    async fn get_workflow(
        &self,
        id: switchyard_core::WorkflowId,
    ) -> Result<Option<switchyard_core::WorkflowRecord>> {
        workflow::get_workflow(&self.db, id).await
    }

    async fn list_workflows(&self, limit: usize) -> Result<Vec<switchyard_core::WorkflowRecord>> {
        workflow::list_workflows(&self.db, limit).await
    }

    async fn cancel_workflow(
        &self,
        id: switchyard_core::WorkflowId,
    ) -> Result<switchyard_core::WorkflowCancelReport> {
        workflow::cancel_workflow(&self.db, id).await
    }

    async fn retry_workflow(&self, id: switchyard_core::WorkflowId) -> Result<u64> {
        workflow::retry_workflow(&self.db, id).await
    }

    async fn append_steps(
        &self,
        id: switchyard_core::WorkflowId,
        steps: Vec<switchyard_core::WorkflowStep>,
    ) -> Result<Vec<JobId>> {
        workflow::append_steps(&self.db, id, steps).await
    }

    async fn step_outputs(&self, job: JobId) -> Result<switchyard_core::StepOutputs> {
        workflow::step_outputs(&self.db, job).await
    }

    // ---- Flow ----

    async fn set_queue_flow(&self, queue_flow: &QueueFlow) -> Result<()> {
        switchyard_core::flow::check_flow(queue_flow)?;
        flow::store(&self.db, queue_flow).await?;
        self.flow.invalidate();
        Ok(())
    }

    async fn queue_flows(&self) -> Result<Vec<QueueFlow>> {
        flow::load(&self.db).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<PostgresStorage>();
        check::<PostgresConfig>();
    }
}
