//! The commands on the whole instance: `migrate`, `prune`, `queues`, `doctor`, `worker` and
//! `bench`.

use std::time::Duration;

use switchyard_core::{Error, Result};

use super::output;

use crate::app::Switchyard;
use crate::bench::BenchArgs;
use crate::client::Client;
use crate::config::Config;
use crate::registry::Registry;

/// `switchyard migrate`; with `--json` `{"migrated":"<storage>"}`.
pub(super) async fn migrate(sy: &Switchyard) -> Result<()> {
    sy.migrate().await?;
    let name = sy.storage().name();
    if output::json() {
        return output::json_line(&serde_json::json!({ "migrated": name }));
    }
    output::line(format!("migrated {name}"))
}

/// `switchyard prune`: deletes finished jobs older than `older_than`; with `--json`
/// `{"deleted":N}`.
pub(super) async fn prune(client: &Client, older_than: Duration) -> Result<()> {
    // At most MAX_SECS (checked when parsed), so always a date.
    let before = chrono::Utc::now() - chrono::Duration::from_std(older_than).unwrap_or_default();
    let n = client.prune(before).await?;
    if output::json() {
        return output::json_line(&serde_json::json!({ "deleted": n }));
    }
    output::line(format!("deleted {n} finished jobs"))
}

/// `switchyard doctor`: the backends, their capabilities, and whether the storage answers.
pub(super) async fn doctor(sy: &Switchyard) -> Result<()> {
    if output::json() {
        let counts = sy.client().counts().await?;
        return output::json_line(&serde_json::json!({
            "storage": sy.storage().name(),
            "queue": sy.queue().map(|q| q.name()),
            "reachable": true,
            "queues_with_jobs": counts.len(),
        }));
    }
    println!("storage: {} ({})", sy.config().storage, sy.storage().name());
    println!("capabilities: {:?}", sy.storage().capabilities());
    match sy.queue() {
        Some(q) => println!("queue: {} {:?}", q.name(), q.capabilities()),
        None => println!("queue: the storage's own"),
    }
    let counts = sy.client().counts().await?;
    println!("reachable: yes ({} queues with jobs)", counts.len());
    Ok(())
}

/// `switchyard worker`: runs `registry` until a signal (only in a binary built with
/// `main_with`).
pub(super) async fn worker(sy: &Switchyard, registry: Option<Registry>) -> Result<()> {
    let Some(registry) = registry else {
        return Err(Error::config(
            "`worker` needs your job types: build your own binary that calls \
             `switchyard::cli::main_with(Some(registry))`",
        ));
    };
    tracing::info!(kinds = ?registry.kinds(), "worker starting");
    sy.run_with_signals(registry).await
}

/// `switchyard bench`: the benchmark workload on the configured backends.
pub(super) async fn bench(config: &Config, args: &BenchArgs) -> Result<()> {
    crate::bench::run(config, args).await
}
