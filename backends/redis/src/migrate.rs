//! The schema of an instance's keys: [`migrate`] (loads the scripts, then brings keys of an
//! older schema version up to [`SCHEMA_VERSION`] step by step, the Lua steps in
//! `lua/migrate/`) and [`destroy`] (deletes every key of the instance).

use std::sync::Arc;

use redis::Script;
use switchyard_core::{Error, JobState, PendingMigration, Result, SchemaStatus};

use crate::admin;
use crate::connection::Conn;
use crate::keys::{Keys, CHUNK};
use crate::scripts::Scripts;

/// The schema version written by `migrate`. Version 2 dropped the per-queue `running` state
/// indexes (the lease set lists running jobs) and replaced the `finished` sorted set with the
/// `finlog` list. Version 3 names each lease in the lease set as `<id>|<token>` instead of
/// the bare id.
const SCHEMA_VERSION: u32 = 3;

/// One step of the version 1 → 2 migration: moves up to a thousand members of the `finished`
/// sorted set to the end of the finish log; returns how many moved.
const MIGRATE_FINISHED_STEP: &str = include_str!("lua/migrate/finished_step.lua");

/// The version 2 → 3 migration: names each lease of the lease set by job id and token.
const MIGRATE_LEASES: &str = include_str!("lua/migrate/leases.lua");

/// Loads every script and migrates the keys under `keys` to [`SCHEMA_VERSION`]
/// (`Storage::migrate`). Keys of a newer version are a `Config` error: this build would
/// misread them.
pub(crate) async fn migrate(conn: &Arc<Conn>, keys: &Keys, scripts: &Scripts) -> Result<()> {
    let mut c = conn.get();
    for script in scripts.all() {
        script
            .load_async(&mut c)
            .await
            .map_err(|e| conn.error("load scripts", e))?;
    }
    let meta = keys.k("meta");
    let current: Option<u32> = redis::cmd("HGET")
        .arg(&meta)
        .arg("schema")
        .query_async(&mut c)
        .await
        .map_err(|e| conn.error("read schema version", e))?;
    if let Some(v) = current.filter(|v| *v > SCHEMA_VERSION) {
        return Err(Error::config(format!(
            "Redis keys under `{}` have schema version {v}, newer than this build's \
             {SCHEMA_VERSION}; upgrade switchyard-redis",
            keys.prefix()
        )));
    }
    if current == Some(1) {
        // Version 2 keeps finished jobs in a finish log (a list) instead of a sorted set:
        // the entries move over in finishing order, a thousand per atomic step.
        let step = Script::new(MIGRATE_FINISHED_STEP);
        loop {
            let moved: i64 = step
                .key(keys.k("finished"))
                .key(keys.k("finlog"))
                .invoke_async(&mut c)
                .await
                .map_err(|e| conn.error("move finished jobs to the finish log", e))?;
            if moved == 0 {
                break;
            }
        }
        // Version 2 lists running jobs by the lease set alone: the per-queue `running`
        // indexes of version 1 are dropped.
        let stale: Vec<String> = admin::queues(conn, keys)
            .await?
            .iter()
            .map(|q| keys.state(q, JobState::Running))
            .collect();
        for chunk in stale.chunks(CHUNK) {
            let _: i64 = redis::cmd("UNLINK")
                .arg(chunk)
                .query_async(&mut c)
                .await
                .map_err(|e| conn.error("drop the version 1 running indexes", e))?;
        }
    }
    if matches!(current, Some(1 | 2)) {
        // Version 3 names each lease by job id and token.
        let _: i64 = Script::new(MIGRATE_LEASES)
            .key(keys.k("leases"))
            .arg(keys.prefix())
            .invoke_async(&mut c)
            .await
            .map_err(|e| conn.error("name the lease set's leases by token", e))?;
    }
    let () = redis::cmd("HSET")
        .arg(&meta)
        .arg("schema")
        .arg(SCHEMA_VERSION)
        .query_async(&mut c)
        .await
        .map_err(|e| conn.error("write schema version", e))?;
    Ok(())
}

/// The schema version recorded in `{prefix}:meta`, `None` when the key (or its field) is
/// missing. Only reads.
async fn current(conn: &Arc<Conn>, keys: &Keys) -> Result<Option<u32>> {
    redis::cmd("HGET")
        .arg(keys.k("meta"))
        .arg("schema")
        .query_async(&mut conn.get())
        .await
        .map_err(|e| conn.error("read schema version", e))
}

/// `Storage::schema`: the version in `{prefix}:meta`; `None` when there is no such key.
pub(crate) async fn schema(conn: &Arc<Conn>, keys: &Keys) -> Result<SchemaStatus> {
    Ok(SchemaStatus::new(
        current(conn, keys).await?.map(i64::from),
        i64::from(SCHEMA_VERSION),
    ))
}

/// `Storage::pending_migrations`: what [`migrate`] would change now, one line per step.
pub(crate) async fn pending(
    conn: &Arc<Conn>,
    keys: &Keys,
    scripts: &Scripts,
) -> Result<Vec<PendingMigration>> {
    let meta = keys.k("meta");
    let record = |v: u32| format!("HSET {meta} schema {v}");
    let current = current(conn, keys).await?;
    let mut out = Vec::new();
    match current {
        Some(v) if v >= SCHEMA_VERSION => {}
        None => out.push(PendingMigration {
            version: i64::from(SCHEMA_VERSION),
            steps: vec![
                format!(
                    "SCRIPT LOAD the {} Lua scripts of the storage",
                    scripts.all().len()
                ),
                format!(
                    "{} (a new instance: no other key is written)",
                    record(SCHEMA_VERSION)
                ),
            ],
        }),
        Some(v) => {
            if v == 1 {
                out.push(PendingMigration {
                    version: 2,
                    steps: vec![
                        format!(
                            "move every member of {} to the end of the list {}, a thousand \
                             per step",
                            keys.k("finished"),
                            keys.k("finlog")
                        ),
                        format!(
                            "UNLINK the per-queue running indexes {}",
                            keys.state("<queue>", JobState::Running)
                        ),
                    ],
                });
            }
            out.push(PendingMigration {
                version: 3,
                steps: vec![
                    format!(
                        "rename each member of {} to <id>|<lease token>",
                        keys.k("leases")
                    ),
                    record(SCHEMA_VERSION),
                ],
            });
        }
    }
    Ok(out)
}

/// How many keys `prefixes` looks at, at most (a thousand per `SCAN` call).
const PREFIX_SCAN_LIMIT: usize = 200_000;

/// `Storage::prefixes`: the instances whose `{prefix}:meta` holds a schema version, found by
/// scanning for `{*}:meta` (at most [`PREFIX_SCAN_LIMIT`] keys looked at).
pub(crate) async fn prefixes(conn: &Arc<Conn>) -> Result<Vec<String>> {
    let mut c = conn.get();
    let mut found = std::collections::BTreeSet::new();
    let mut cursor: u64 = 0;
    let mut seen = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("{*}:meta")
            .arg("COUNT")
            .arg(CHUNK)
            .query_async(&mut c)
            .await
            .map_err(|e| conn.error("scan for instances", e))?;
        for k in keys {
            if let Some(p) = k.strip_prefix('{').and_then(|k| k.strip_suffix("}:meta")) {
                if switchyard_core::adapter::check_prefix(p).is_ok() {
                    found.insert(p.to_string());
                }
            }
        }
        seen += CHUNK;
        if next == 0 || seen >= PREFIX_SCAN_LIMIT {
            return Ok(found.into_iter().collect());
        }
        cursor = next;
    }
}

/// Deletes every key of the instance (`Storage::destroy`).
pub(crate) async fn destroy(conn: &Arc<Conn>, keys: &Keys) -> Result<()> {
    // Every key of the instance starts with `{prefix}:` (prefixes are letters, digits and
    // `_`, none of them special in a pattern, so it matches nothing else).
    let pattern = format!("{}*", keys.prefix());
    let mut c = conn.get();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await
            .map_err(|e| conn.error("scan keys to destroy", e))?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut c)
                .await
                .map_err(|e| conn.error("unlink keys", e))?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
