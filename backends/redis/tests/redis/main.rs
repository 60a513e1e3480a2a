//! Redis-specific tests, one test binary with a file per theme: the storage contract
//! exercised directly, schema migrations and damaged job hashes, bounded memory (expiry and
//! pruning), reliability under lost replies and killed connections, and server settings and
//! topologies (eviction, replicas, cluster, out of memory) on private servers.
//!
//! Needs a Redis server at `SWITCHYARD_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`), and
//! the `redis-server` and `redis-cli` binaries for the private servers.

mod contract;
mod memory;
mod private_server;
mod reliability;
mod schema;
mod server;
mod support;
mod tls;
