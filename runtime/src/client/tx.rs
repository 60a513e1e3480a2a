//! Transactional enqueue: typed jobs written inside the caller's own sqlx transaction, so they
//! exist if and only if it commits ([`Client::enqueue_tx`] and its siblings), on a client of a
//! PostgreSQL or SQLite storage — however it was built (`Switchyard::connect` from a config
//! URL included). [`TxEnqueue`] names the connection types accepted; the concrete storage is
//! found behind `Arc<dyn Storage>` with [`Storage::as_any`].

use std::future::Future;
use std::pin::Pin;

use switchyard_core::{EnqueueOutcome, Error, ErrorKind, JobId, NewJob, Result, Storage};

use super::{new_job, Client};
use crate::job::{BlockingJob, EnqueueOptions, Job};

/// The future [`TxEnqueue::enqueue_in`] returns.
pub type TxFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<EnqueueOutcome>>> + Send + 'a>>;

mod sealed {
    pub trait Sealed {}
}

/// A connection or transaction a [`Client`] can enqueue on, joining whatever transaction is
/// open on it:
///
/// | type | feature | storage it needs |
/// |---|---|---|
/// | `sqlx::Transaction<'_, sqlx::Postgres>`, `sqlx::PgConnection` | `postgres` | `postgres` |
/// | `sqlx::Transaction<'_, sqlx::Sqlite>`, `sqlx::SqliteConnection` | `sqlite` | `sqlite` |
///
/// Your sqlx must be the version Switchyard uses (0.8), so that these are the same types.
/// Sealed: the backends implement it.
pub trait TxEnqueue: sealed::Sealed + Send {
    /// Stores `jobs` on this connection through `storage` (which must be the backend this
    /// connection type belongs to), as [`Storage::enqueue`] would, and returns one outcome per
    /// job. `Unsupported` when `storage` is another backend.
    fn enqueue_in<'a>(&'a mut self, storage: &'a dyn Storage, jobs: Vec<NewJob>) -> TxFuture<'a>;
}

/// The error for a connection of `given` (a backend name) on a client whose storage cannot
/// take it.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn wrong_storage(storage: &dyn Storage, given: &str) -> Error {
    let name = storage.name();
    let msg = if matches!(name, "postgres" | "sqlite") && name != given {
        format!(
            "transactional enqueue got a {given} connection, but this client's storage is `{name}`; \
             open the transaction on the {name} database (`Client::{name}_pool`)"
        )
    } else if storage.capabilities().transactional_enqueue {
        format!(
            "the `{name}` storage declares transactional enqueue, but `Client::enqueue_tx` \
             joins only the transactions of the `postgres` and `sqlite` storages (given: a \
             {given} connection); use that storage's own API"
        )
    } else {
        format!(
            "the `{name}` storage cannot enqueue inside your transaction; transactional enqueue \
             needs the `postgres` storage (with a PostgreSQL transaction) or the `sqlite` \
             storage (with a SQLite transaction). With `{name}`, enqueue with `Client::enqueue` \
             after your commit"
        )
    };
    Error::new(ErrorKind::Unsupported, msg)
}

/// `TxEnqueue` for a connection type and its transaction, handing the jobs to the concrete
/// storage's `enqueue_in` (a transaction derefs to its connection).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
macro_rules! tx_enqueue {
    ($($ty:ty),+) => {$(
        impl sealed::Sealed for $ty {}
        impl TxEnqueue for $ty {
            fn enqueue_in<'a>(
                &'a mut self,
                storage: &'a dyn Storage,
                jobs: Vec<NewJob>,
            ) -> TxFuture<'a> {
                Box::pin(async move { self::storage(storage)?.enqueue_in(self, jobs).await })
            }
        }
    )+};
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use switchyard_postgres::PostgresStorage;

    pub(super) fn storage(storage: &dyn Storage) -> Result<&PostgresStorage> {
        storage
            .as_any()
            .and_then(|a| a.downcast_ref::<PostgresStorage>())
            .ok_or_else(|| wrong_storage(storage, "postgres"))
    }

    tx_enqueue!(sqlx::PgConnection, sqlx::Transaction<'_, sqlx::Postgres>);
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use switchyard_sqlite::SqliteStorage;

    pub(super) fn storage(storage: &dyn Storage) -> Result<&SqliteStorage> {
        storage
            .as_any()
            .and_then(|a| a.downcast_ref::<SqliteStorage>())
            .ok_or_else(|| wrong_storage(storage, "sqlite"))
    }

    tx_enqueue!(sqlx::SqliteConnection, sqlx::Transaction<'_, sqlx::Sqlite>);
}

/// Transactional enqueue (PostgreSQL and SQLite storages).
///
/// ```no_run
/// # #[cfg(feature = "postgres")]
/// # async fn demo(sy: switchyard::Switchyard) -> Result<(), Box<dyn std::error::Error>> {
/// # #[derive(serde::Serialize, serde::Deserialize)] struct SendReceipt { order: i64 }
/// # impl switchyard::Job for SendReceipt {
/// #     const KIND: &'static str = "send_receipt"; type Output = ();
/// #     async fn run(self, _: switchyard::JobContext) -> Result<(), switchyard::JobError> { Ok(()) }
/// # }
/// let client = sy.client();
/// let pool = client.postgres_pool()?; // or your own pool on the same database
/// let mut tx = pool.begin().await?;
/// sqlx::query("INSERT INTO orders (id) VALUES (42)").execute(&mut *tx).await?;
/// let id = client.enqueue_tx(&mut tx, SendReceipt { order: 42 }).await?;
/// tx.commit().await?; // the job exists from here on; after a rollback it never did
/// # let _ = id; Ok(()) }
/// ```
impl Client {
    /// Enqueues a job inside the transaction open on `tx`, with its type's default options:
    /// the job exists if and only if that transaction commits. Returns its id (or, for a
    /// unique key held by a live job, that job's id — the look-up sees what `tx` sees).
    ///
    /// `tx` is a PostgreSQL or SQLite transaction (or plain connection, see [`TxEnqueue`]) on
    /// the database of this client's storage, from [`postgres_pool`](Self::postgres_pool) /
    /// [`sqlite_pool`](Self::sqlite_pool) or the application's own pool; the tables are found
    /// by the storage's prefix. Validation and unique keys behave as in
    /// [`enqueue`](Self::enqueue). Errors: `Unsupported` naming the storage when it is not
    /// the one the connection belongs to (Redis, say); an error inside the transaction
    /// usually aborts it (PostgreSQL), so roll back.
    ///
    /// Delivery after commit: PostgreSQL wakes listening workers at commit (`NOTIFY` is
    /// transactional), SQLite wakes this process's workers at once and their claim waits for
    /// the commit; other processes poll. With an external queue (SQS, RabbitMQ, Redis) the
    /// dispatcher publishes the committed job from the outbox as any other.
    pub async fn enqueue_tx<J: Job, C: TxEnqueue + ?Sized>(
        &self,
        tx: &mut C,
        job: J,
    ) -> Result<JobId> {
        self.enqueue_tx_with(tx, job, EnqueueOptions::default())
            .await
    }

    /// [`enqueue_tx`](Self::enqueue_tx) with options (unset ones keep the type's defaults).
    pub async fn enqueue_tx_with<J: Job, C: TxEnqueue + ?Sized>(
        &self,
        tx: &mut C,
        job: J,
        opts: EnqueueOptions,
    ) -> Result<JobId> {
        let opts = opts.or(job.options());
        let new = new_job(J::KIND, &job, opts)?;
        self.enqueue_tx_one(tx, new).await
    }

    /// [`enqueue_tx`](Self::enqueue_tx) of a blocking job, with options.
    pub async fn enqueue_blocking_tx<J: BlockingJob, C: TxEnqueue + ?Sized>(
        &self,
        tx: &mut C,
        job: J,
        opts: EnqueueOptions,
    ) -> Result<JobId> {
        let opts = opts.or(job.options());
        let new = new_job(J::KIND, &job, opts)?;
        self.enqueue_tx_one(tx, new).await
    }

    /// Enqueues many jobs of one type inside the transaction on `tx`; returns their ids in
    /// input order.
    pub async fn enqueue_many_tx<J: Job, C: TxEnqueue + ?Sized>(
        &self,
        tx: &mut C,
        jobs: impl IntoIterator<Item = J>,
        opts: EnqueueOptions,
    ) -> Result<Vec<JobId>> {
        let news = jobs
            .into_iter()
            .map(|j| new_job(J::KIND, &j, opts.clone().or(j.options())))
            .collect::<Result<Vec<_>>>()?;
        Ok(self
            .enqueue_raw_tx(tx, news)
            .await?
            .into_iter()
            .map(EnqueueOutcome::id)
            .collect())
    }

    /// Enqueues prepared jobs (any kind, raw JSON payloads) inside the transaction on `tx`.
    pub async fn enqueue_raw_tx<C: TxEnqueue + ?Sized>(
        &self,
        tx: &mut C,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<EnqueueOutcome>> {
        tx.enqueue_in(self.storage.as_ref(), jobs).await
    }

    async fn enqueue_tx_one<C: TxEnqueue + ?Sized>(
        &self,
        tx: &mut C,
        job: NewJob,
    ) -> Result<JobId> {
        self.enqueue_raw_tx(tx, vec![job])
            .await?
            .into_iter()
            .next()
            .map(EnqueueOutcome::id)
            .ok_or_else(|| Error::new(ErrorKind::Internal, "enqueue returned nothing"))
    }

    /// The PostgreSQL storage's connection pool (a cheap clone), to open the transactions
    /// [`enqueue_tx`](Self::enqueue_tx) joins. `Unsupported`, naming the storage, when the
    /// storage is not PostgreSQL.
    #[cfg(feature = "postgres")]
    pub fn postgres_pool(&self) -> Result<sqlx::PgPool> {
        let storage = self.storage.as_ref();
        postgres::storage(storage)
            .map(|s| s.pool().clone())
            .map_err(|_| pool_error(storage, "postgres"))
    }

    /// The SQLite storage's writer pool (a cheap clone; its one connection is the storage's
    /// only writer), to open the transactions [`enqueue_tx`](Self::enqueue_tx) joins. While
    /// such a transaction is open this process's other writes (claims, heartbeats,
    /// completions, `Client::enqueue`) wait for it: keep it short, and do not call the client
    /// from inside it except through `enqueue_tx`. `Unsupported`, naming the storage, when
    /// the storage is not SQLite.
    #[cfg(feature = "sqlite")]
    pub fn sqlite_pool(&self) -> Result<sqlx::SqlitePool> {
        let storage = self.storage.as_ref();
        sqlite::storage(storage)
            .map(|s| s.pool().clone())
            .map_err(|_| pool_error(storage, "sqlite"))
    }
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn pool_error(storage: &dyn Storage, wanted: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!(
            "`Client::{wanted}_pool`: this client's storage is `{}`, not `{wanted}`; accepted: \
             `{wanted}_pool` on a {wanted} storage (`postgres_pool` for postgres, `sqlite_pool` \
             for sqlite)",
            storage.name()
        ),
    )
}
