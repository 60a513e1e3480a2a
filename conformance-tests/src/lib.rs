//! # switchyard-conformance
//!
//! The contract every Switchyard adapter passes (SPEC §3), as `pub async fn` cases that take a
//! [`Backend`], plus the [`conformance_suite!`] macro that turns each case into one
//! `#[tokio::test]` in the adapter's own `tests/conformance.rs`:
//!
//! ```ignore
//! async fn backend() -> switchyard_conformance::Backend {
//!     let storage = MyStorage::connect(/* random prefix */).await.unwrap();
//!     storage.migrate().await.unwrap();
//!     switchyard_conformance::Backend::storage_only(std::sync::Arc::new(storage))
//! }
//! switchyard_conformance::conformance_suite!(backend);
//! ```
//!
//! Every case builds its own backend through the factory, and the factory isolates it with a
//! random table/key/queue prefix, so cases run in parallel against one server. A case that needs
//! a capability the adapter does not declare prints why and returns early.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use switchyard_core::{Queue, Storage};

pub mod fixtures;
pub mod harness;
pub mod queue;
pub mod storage;
mod support;

// The paths of the cases before they were split by area.
#[doc(hidden)]
pub use queue as queue_cases;
#[doc(hidden)]
pub use storage as cases;

/// What a case runs against: a storage, and optionally an external queue composed with it.
#[derive(Clone, Debug)]
pub struct Backend {
    /// The storage (migrated, isolated).
    pub storage: Arc<dyn Storage>,
    /// An external queue; `None` means the storage's own queue.
    pub queue: Option<Arc<dyn Queue>>,
    /// Shrinks the queue's native delay limit for the delay-past-the-limit case (SQS: 15 min
    /// in production, a few seconds in tests). `None`: the queue's own limit.
    pub max_native_delay: Option<Duration>,
}

impl Backend {
    /// A storage delivering its own jobs.
    pub fn storage_only(storage: Arc<dyn Storage>) -> Self {
        Self {
            storage,
            queue: None,
            max_native_delay: None,
        }
    }

    /// A storage composed with an external queue.
    pub fn with_queue(storage: Arc<dyn Storage>, queue: Arc<dyn Queue>) -> Self {
        Self {
            storage,
            queue: Some(queue),
            max_native_delay: None,
        }
    }
}

/// A random lowercase prefix such as `t3kq9z_`, for isolating one case's tables, keys and queues.
pub fn random_prefix() -> String {
    let mut s = String::from("t");
    for _ in 0..8 {
        let c = fastrand::alphanumeric().to_ascii_lowercase();
        s.push(c);
    }
    s.push('_');
    s
}

/// Destroys a case's storage instance and broker queues (what the suites do after each passing
/// case). A backend that cannot destroy (`ErrorKind::Unsupported`) is left as it is.
pub async fn cleanup(backend: &Backend) {
    destroyed("storage", backend.storage.destroy().await);
    if let Some(queue) = &backend.queue {
        destroyed("queue", queue.destroy().await);
    }
}

/// Panics on a failed `destroy`, except one the backend does not support.
pub fn destroyed(what: &str, result: switchyard_core::Result<()>) {
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == switchyard_core::ErrorKind::Unsupported => {
            eprintln!("{what} left in place: {e}");
        }
        Err(e) => panic!("destroying the case's {what} failed: {e}"),
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Instantiates every conformance case as a `#[tokio::test]` for one adapter. `$factory` is an
/// `async fn() -> Backend` that returns a fresh, migrated, isolated backend on each call; a
/// case that passes destroys its storage instance and broker queues afterwards
/// (`Storage::destroy`, `Queue::destroy`). The cases are those of [`storage`], listed at the end
/// of each area file.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::storage_cases! { conformance_suite!(@cases $factory;) }
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let backend = $factory().await;
                $crate::storage::$case(backend.clone()).await;
                // A passed case leaves nothing behind on the shared server (a failed one
                // keeps its data to look at).
                $crate::cleanup(&backend).await;
            }
        )*
    };
}

/// Instantiates every queue case as a `#[tokio::test]` for one queue adapter. `$factory` is an
/// `async fn() -> Arc<dyn Queue>` that returns a fresh adapter with a random queue-name prefix
/// on each call. Test names do not clash with [`conformance_suite!`]'s, so both can be used in
/// one file. The cases are those of [`queue`], listed at the end of each area file.
#[macro_export]
macro_rules! queue_conformance_suite {
    ($factory:path) => {
        $crate::queue_cases! { queue_conformance_suite!(@cases $factory;) }
    };
    (@cases $factory:path; $($case:ident $(($pair:ident))?),* $(,)?) => {
        $(
            $crate::queue_conformance_suite!(@case $factory; $case $(($pair))?);
        )*
    };
    // A case on one queue.
    (@case $factory:path; $case:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let queue = $factory().await;
            $crate::queue::$case(queue.clone()).await;
            $crate::destroyed("queue", queue.destroy().await);
        }
    };
    // A case on two queues of the adapter under different prefixes.
    (@case $factory:path; $case:ident(pair)) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let queue = $factory().await;
            let other = $factory().await;
            $crate::queue::$case(queue.clone(), other.clone()).await;
            $crate::destroyed("queue", queue.destroy().await);
            $crate::destroyed("queue", other.destroy().await);
        }
    };
}
