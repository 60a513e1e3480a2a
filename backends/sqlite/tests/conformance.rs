//! The conformance suite on SQLite: one temporary database file per case.

use switchyard_conformance::{fixtures, random_prefix, Backend};

async fn backend() -> Backend {
    Backend::storage_only(fixtures::sqlite(&random_prefix()).await)
}

switchyard_conformance::conformance_suite!(backend);
