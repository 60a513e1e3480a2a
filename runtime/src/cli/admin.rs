//! The commands on the whole instance: `migrate` (and `--dry-run`), `destroy`, `prune`,
//! `queues`, `doctor`, `worker` and `bench`, and how every command connects: only `migrate`
//! and `worker` (with `auto_migrate`) create anything; every other command connects with
//! [`Switchyard::connect_existing`] and refuses a prefix that holds no schema.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_core::adapter::redact_url;
use switchyard_core::{
    CheckStatus, Error, ErrorKind, HealthCheck, Result, SchemaState, SchemaStatus,
};

use super::output::{self, pad};
use super::{Command, Outcome};
use crate::app::Switchyard;
use crate::bench::BenchArgs;
use crate::client::Client;
use crate::config::Config;
use crate::registry::Registry;

/// `<storage URL without password>` of `config`, for messages.
fn storage_url(config: &Config) -> String {
    redact_url(&config.storage)
}

/// Connects for `command`: `worker` as configured (migrating when `auto_migrate` is on),
/// every other command without creating anything; both then require this build's schema.
pub(super) async fn connect(command: &Command, config: Config) -> Result<Switchyard> {
    let sy = if matches!(command, Command::Worker) {
        Switchyard::connect(config).await?
    } else {
        open_existing(config).await?
    };
    sy.require_schema().await?;
    Ok(sy)
}

/// [`Switchyard::connect_existing`], with a missing SQLite file said as a missing schema.
async fn open_existing(config: Config) -> Result<Switchyard> {
    let prefix = config.prefix.clone();
    let url = storage_url(&config);
    Switchyard::connect_existing(config)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::not_found(format!(
                "no Switchyard schema under prefix `{prefix}` in `{url}`: {}; run \
                 `switchyard migrate` to create it (or check the storage URL)",
                e.message()
            )),
            _ => e,
        })
}

/// The Switchyard queues an instance has: the configured ones and those holding jobs.
async fn queue_names(sy: &Switchyard, migrated: bool) -> Vec<String> {
    let mut names: BTreeSet<String> = sy.config().queues.keys().cloned().collect();
    if migrated && sy.storage().capabilities().can_list {
        if let Ok(counts) = sy.storage().counts().await {
            names.extend(counts.into_iter().map(|c| c.queue));
        }
    }
    names.into_iter().collect()
}

/// The schema status, or `None` when the storage cannot tell.
async fn schema_of(sy: &Switchyard) -> Result<Option<SchemaStatus>> {
    match sy.storage().schema().await {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::Unsupported => Ok(None),
        Err(e) => Err(e),
    }
}

fn version_text(v: Option<i64>) -> String {
    v.map_or_else(|| "none (never migrated)".to_string(), |v| v.to_string())
}

/// `switchyard migrate`: creates or upgrades the schema and the broker queues, and says what
/// it applied. With `dry_run`, prints what it would run (SQL for the SQL backends) and
/// creates nothing.
pub(super) async fn migrate(mut config: Config, dry_run: bool) -> Result<Outcome> {
    if dry_run {
        migrate_dry_run(config).await?;
        return Ok(Outcome::Done);
    }
    config.auto_migrate = false;
    let sy = Switchyard::connect(config).await?;
    let pending = match sy.storage().pending_migrations().await {
        Ok(p) => Some(p),
        Err(e) if e.kind() == ErrorKind::Unsupported => None,
        Err(e) => return Err(e),
    };
    sy.migrate().await?;
    let at = sy.describe_instance();
    let prefix = &sy.config().prefix;
    let version = schema_of(&sy).await?.and_then(|s| s.applied);
    let applied: Option<Vec<i64>> = pending.map(|p| p.iter().map(|m| m.version).collect());
    let broker: Vec<String> = sy.config().queues.keys().cloned().collect();
    if output::json() {
        output::json_line(&json!({
            "migrated": sy.storage().name(),
            "prefix": prefix,
            "storage": storage_url(sy.config()),
            "applied": applied,
            "schema_version": version,
            "broker_queues": sy.queue().map(|_| &broker),
        }))?;
        return Ok(Outcome::Done);
    }
    let version = version
        .map(|v| format!("; schema version {v}"))
        .unwrap_or_default();
    match applied {
        Some(a) if a.is_empty() => output::line(format!(
            "prefix `{prefix}` on {at}: already migrated, nothing applied{version}"
        ))?,
        Some(a) => {
            let versions: Vec<String> = a.iter().map(i64::to_string).collect();
            output::line(format!(
                "migrated prefix `{prefix}` on {at}: applied version(s) {}{version}",
                versions.join(", ")
            ))?;
        }
        None => output::line(format!("migrated prefix `{prefix}` on {at}{version}"))?,
    }
    if let Some(q) = sy.queue() {
        output::line(format!(
            "set up {} broker queue(s): {}",
            q.name(),
            broker.join(", ")
        ))?;
    }
    Ok(Outcome::Done)
}

/// `switchyard migrate --dry-run`; with `--json` one object with the pending migrations.
async fn migrate_dry_run(config: Config) -> Result<()> {
    let url = storage_url(&config);
    let prefix = config.prefix.clone();
    let queue_names: Vec<String> = config.queues.keys().cloned().collect();
    let mut notes = Vec::new();
    let sy = match Switchyard::connect_existing(config.clone()).await {
        Ok(sy) => sy,
        // A SQLite file that does not exist yet: the plan of an empty database.
        Err(e) if e.kind() == ErrorKind::NotFound && config.storage.starts_with("sqlite:") => {
            notes.push(format!("{}; `switchyard migrate` creates it", e.message()));
            let mut empty = config;
            empty.storage = "sqlite::memory:".to_string();
            Switchyard::connect_existing(empty).await?
        }
        Err(e) => return Err(e),
    };
    let name = sy.storage().name();
    let status = schema_of(&sy).await?;
    let pending = sy.storage().pending_migrations().await?;
    if output::json() {
        return output::json_line(&json!({
            "dry_run": true,
            "prefix": prefix,
            "storage": url,
            "backend": name,
            "schema_version": status.and_then(|s| s.applied),
            "expected_version": status.map(|s| s.expected),
            "pending": pending,
            "broker_queues": sy.queue().map(|_| &queue_names),
            "notes": notes,
        }));
    }
    for n in &notes {
        output::line(format!("-- {n}"))?;
    }
    output::line(format!(
        "-- dry run: nothing is changed. Prefix `{prefix}` on {name} at `{url}`; schema \
         version {}; this build's {}",
        status.map_or_else(|| "unknown".to_string(), |s| version_text(s.applied)),
        status.map_or_else(|| "unknown".to_string(), |s| s.expected.to_string()),
    ))?;
    if pending.is_empty() {
        output::line("-- the schema is current: nothing to apply")?;
    }
    let sql = matches!(name, "sqlite" | "postgres");
    for m in &pending {
        output::line(format!("-- version {}", m.version))?;
        for step in &m.steps {
            if sql {
                output::line(format!("{step};"))?;
            } else {
                output::line(step)?;
            }
        }
    }
    if let Some(q) = sy.queue() {
        output::line(format!(
            "-- {} broker queues to set up (if missing): {}",
            q.name(),
            queue_names.join(", ")
        ))?;
    }
    Ok(())
}

/// `switchyard destroy`: deletes the instance's tables or keys and its broker queues, after
/// confirmation on a terminal (`--yes` for scripts; without it and without a terminal it
/// refuses).
pub(super) async fn destroy(config: Config, yes: bool) -> Result<Outcome> {
    let sy = open_existing(config).await?;
    let at = sy.describe_instance();
    let prefix = sy.config().prefix.clone();
    let status = schema_of(&sy).await?;
    let migrated = status.is_none_or(|s| s.is_migrated());
    let names = queue_names(&sy, migrated).await;
    if !migrated && sy.queue().is_none() {
        return Err(Error::not_found(format!(
            "nothing to destroy: no Switchyard schema under prefix `{prefix}` in {at}"
        )));
    }
    let mut what = vec![format!(
        "every job and table/key under prefix `{prefix}` in {at}"
    )];
    if let Some(q) = sy.queue() {
        what.push(format!(
            "the {} broker queues of {}, with their messages",
            q.name(),
            names.join(", ")
        ));
    }
    if !yes {
        confirm(&prefix, &what)?;
    }
    let mut storage_destroyed = false;
    if migrated {
        match sy.storage().destroy().await {
            Ok(()) => storage_destroyed = true,
            Err(e) if e.kind() == ErrorKind::Unsupported => eprintln!("{e}; storage left as is"),
            Err(e) => return Err(e),
        }
    }
    if let Some(q) = sy.queue() {
        q.destroy_queues(&names).await?;
    }
    if output::json() {
        output::json_line(&json!({
            "destroyed": prefix,
            "storage": storage_destroyed,
            "broker_queues": sy.queue().map(|_| &names),
        }))?;
        return Ok(Outcome::Done);
    }
    if storage_destroyed {
        output::line(format!("destroyed {}", what[0]))?;
    }
    if let Some(q) = sy.queue() {
        output::line(format!(
            "deleted the {} broker queues of {}",
            q.name(),
            names.join(", ")
        ))?;
    }
    Ok(Outcome::Done)
}

/// Asks on the terminal to type the prefix; refuses without a terminal.
fn confirm(prefix: &str, what: &[String]) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::invalid(format!(
            "`destroy` deletes {}; it asks for confirmation on a terminal, and standard input \
             is not one: pass --yes to destroy from a script",
            what.join(" and ")
        )));
    }
    let mut err = std::io::stderr();
    let _ = writeln!(err, "This deletes, irreversibly:");
    for w in what {
        let _ = writeln!(err, "  - {w}");
    }
    let _ = write!(err, "Type the prefix `{prefix}` to confirm: ");
    let _ = err.flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::invalid(format!("cannot read the confirmation: {e}")))?;
    if line.trim() != prefix {
        return Err(Error::invalid(format!(
            "not confirmed (typed `{}`, expected the prefix `{prefix}`); nothing was deleted",
            line.trim()
        )));
    }
    Ok(())
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

/// One doctor line, with the error kind a failure stands for (the command's exit).
struct Line {
    check: HealthCheck,
    kind: Option<ErrorKind>,
}

fn line(check: HealthCheck) -> Line {
    let kind = (check.status == CheckStatus::Fail).then_some(ErrorKind::Internal);
    Line { check, kind }
}

fn failed(name: &str, e: &Error) -> Line {
    Line {
        check: HealthCheck::fail(name, e.to_string()),
        kind: Some(e.kind()),
    }
}

/// `switchyard doctor`: a checklist (each check ok, warn or fail with its detail) of the
/// configuration, the storage (reachable, schema version, the backend's own checks such as
/// Redis persistence and eviction and the server's clock) and the broker (reachable, its
/// queues). Creates nothing and never prints a password. Fails (non-zero exit) when a check
/// fails.
pub(super) async fn doctor(config: Config) -> Result<Outcome> {
    let mut lines = Vec::new();
    let url = storage_url(&config);
    let queue_url = redact_url(&config.queue);
    lines.push(line(HealthCheck::ok(
        "config",
        format!(
            "prefix `{}`, storage `{url}`, queue `{queue_url}`, queues {}",
            config.prefix,
            config.queues.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    )));
    let started = Instant::now();
    let limit = crate::connect::EXISTING_CONNECT_TIMEOUT + std::time::Duration::from_secs(2);
    let storage = match tokio::time::timeout(
        limit,
        crate::connect::connect_storage_existing(&config),
    )
    .await
    {
        Ok(Ok(s)) => {
            lines.push(line(HealthCheck::ok(
                "storage",
                format!(
                    "{} at `{url}` answered in {} ms",
                    s.name(),
                    started.elapsed().as_millis()
                ),
            )));
            Some(s)
        }
        Ok(Err(e)) if e.kind() == ErrorKind::NotFound => {
            lines.push(failed(
                "storage",
                &Error::not_found(format!(
                    "{}; `switchyard migrate` creates the database file (in an existing \
                     directory)",
                    e.message()
                )),
            ));
            None
        }
        Ok(Err(e)) => {
            lines.push(failed("storage", &e));
            None
        }
        Err(_) => {
            lines.push(failed(
                "storage",
                &Error::new(
                    ErrorKind::Unavailable,
                    format!("`{url}` did not answer within {} s", limit.as_secs()),
                ),
            ));
            None
        }
    };
    let mut migrated = false;
    if let Some(s) = &storage {
        match s.schema().await {
            Ok(status) => {
                migrated = status.is_migrated();
                let v = version_text(status.applied);
                lines.push(match status.state() {
                    SchemaState::Current => line(HealthCheck::ok(
                        "schema",
                        format!("version {v} under prefix `{}` (current)", config.prefix),
                    )),
                    SchemaState::Behind => line(HealthCheck::warn(
                        "schema",
                        format!(
                            "version {v}, older than this build's {}: run `switchyard migrate`",
                            status.expected
                        ),
                    )),
                    SchemaState::Ahead => failed(
                        "schema",
                        &Error::config(format!(
                            "version {v}, newer than this build's {}: upgrade Switchyard",
                            status.expected
                        )),
                    ),
                    SchemaState::Missing => {
                        let others = match Switchyard::from_parts(config.clone(), s.clone(), None) {
                            Ok(sy) => sy.other_prefixes().await,
                            Err(_) => String::new(),
                        };
                        failed(
                            "schema",
                            &Error::not_found(format!(
                                "no Switchyard schema under prefix `{}`{others}; run \
                                 `switchyard migrate` (or check the prefix)",
                                config.prefix
                            )),
                        )
                    }
                });
            }
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                migrated = true;
                lines.push(line(HealthCheck::warn("schema", e.to_string())));
            }
            Err(e) => lines.push(failed("schema", &e)),
        }
        lines.extend(s.health_checks().await.into_iter().map(line));
    }
    let queue = if config.queue == "storage" {
        None
    } else {
        match crate::connect::connect_queue(&config).await {
            Ok(q) => {
                if let Some(q) = &q {
                    lines.push(line(HealthCheck::ok(
                        "queue",
                        format!("{} at `{queue_url}` answered", q.name()),
                    )));
                }
                q
            }
            Err(e) => {
                lines.push(failed("queue", &e));
                None
            }
        }
    };
    let mut names: BTreeSet<String> = config.queues.keys().cloned().collect();
    if let (Some(s), true) = (&storage, migrated) {
        if s.capabilities().can_list {
            match s.counts().await {
                Ok(counts) => {
                    let total: u64 = counts.iter().flat_map(|c| c.counts.values()).sum();
                    let pending: u64 = counts
                        .iter()
                        .flat_map(|c| c.counts.iter())
                        .filter(|(s, _)| !s.is_finished())
                        .map(|(_, n)| n)
                        .sum();
                    lines.push(line(HealthCheck::ok(
                        "jobs",
                        format!(
                            "{total} jobs on {} queues, {pending} not finished",
                            counts.len()
                        ),
                    )));
                    names.extend(counts.into_iter().map(|c| c.queue));
                }
                Err(e) => lines.push(failed("jobs", &e)),
            }
        }
    }
    if let Some(q) = &queue {
        let names: Vec<String> = names.into_iter().collect();
        lines.extend(q.health_checks(&names).await.into_iter().map(line));
    }
    if let (Some(s), Some(q)) = (&storage, &queue) {
        if let Err(e) = Switchyard::from_parts(config.clone(), s.clone(), Some(q.clone())) {
            lines.push(failed("combination", &e));
        }
    }
    print_doctor(&config, &lines)?;
    let failures: Vec<&Line> = lines
        .iter()
        .filter(|l| l.check.status == CheckStatus::Fail)
        .collect();
    match failures.first() {
        None => Ok(Outcome::Done),
        Some(first) => Err(Error::new(
            first.kind.unwrap_or(ErrorKind::Internal),
            format!(
                "doctor: {} of {} checks failed: {}",
                failures.len(),
                lines.len(),
                failures
                    .iter()
                    .map(|l| format!("{} ({})", l.check.name, l.check.detail))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )),
    }
}

fn print_doctor(config: &Config, lines: &[Line]) -> Result<()> {
    let ok = lines.iter().all(|l| l.check.status != CheckStatus::Fail);
    if output::json() {
        let checks: Vec<&HealthCheck> = lines.iter().map(|l| &l.check).collect();
        return output::json_line(&json!({
            "ok": ok,
            "prefix": config.prefix,
            "storage": storage_url(config),
            "queue": redact_url(&config.queue),
            "checks": checks,
        }));
    }
    let width = lines.iter().map(|l| l.check.name.len()).max().unwrap_or(0);
    for l in lines {
        output::line(format!(
            "{}  {}  {}",
            pad(l.check.status, 4),
            pad(&l.check.name, width),
            l.check.detail
        ))?;
    }
    let count = |s| lines.iter().filter(|l| l.check.status == s).count();
    output::line(format!(
        "{} ok, {} warnings, {} failed",
        count(CheckStatus::Ok),
        count(CheckStatus::Warn),
        count(CheckStatus::Fail)
    ))
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
    tracing::info!(
        kinds = ?registry.kinds(),
        storage = %sy.describe_instance(),
        prefix = %sy.config().prefix,
        "worker starting"
    );
    sy.run_with_signals(registry).await
}

/// `switchyard bench`: the benchmark workload on the configured backends.
pub(super) async fn bench(config: &Config, args: &BenchArgs) -> Result<()> {
    crate::bench::run(config, args).await
}
