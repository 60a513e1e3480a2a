//! The commands on the whole instance: `migrate`, `prune`, `queues`, `doctor`, `worker` and
//! `bench`.

use switchyard_core::{Error, JobState, Result};

use crate::app::Switchyard;
use crate::bench::BenchArgs;
use crate::client::Client;
use crate::config::Config;
use crate::registry::Registry;

/// `switchyard migrate`.
pub(super) async fn migrate(sy: &Switchyard) -> Result<()> {
    sy.migrate().await?;
    println!("migrated {}", sy.storage().name());
    Ok(())
}

/// `switchyard prune`: deletes finished jobs older than `older_than` seconds.
pub(super) async fn prune(client: &Client, older_than: f64) -> Result<()> {
    let age = crate::config::secs("--older-than", older_than)?;
    // At most MAX_SECS, so always a date.
    let before = chrono::Utc::now() - chrono::Duration::from_std(age).unwrap_or_default();
    let n = client.prune(before).await?;
    println!("deleted {n} finished jobs");
    Ok(())
}

/// `switchyard queues`: a table of job counts per queue and state.
pub(super) async fn queues(client: &Client) -> Result<()> {
    let counts = client.counts().await?;
    print!("{:<20}", "queue");
    for s in JobState::ALL {
        print!("  {:>9}", s.as_str());
    }
    println!();
    for c in counts {
        print!("{:<20}", c.queue);
        for s in JobState::ALL {
            print!("  {:>9}", c.counts.get(&s).copied().unwrap_or(0));
        }
        println!();
    }
    Ok(())
}

/// `switchyard doctor`: the backends, their capabilities, and whether the storage answers.
pub(super) async fn doctor(sy: &Switchyard) -> Result<()> {
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
