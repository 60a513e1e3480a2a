//! The conformance suite on PostgreSQL: every case gets its own random table prefix on the test
//! server (`SWITCHYARD_TEST_POSTGRES_URL`, default the loopback server, database `test`).

use switchyard_conformance::{fixtures, random_prefix, Backend};

async fn backend() -> Backend {
    Backend::storage_only(fixtures::postgres(&random_prefix()).await)
}

switchyard_conformance::conformance_suite!(backend);
