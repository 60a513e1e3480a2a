//! The schedules area (cron) on Redis: the hash `{prefix}:schedule:<id>` per schedule (fields
//! `def` JSON, `paused`, `cursor` ms, `last_fired` ms, `last_job`, `version`) and the set
//! `{prefix}:schedules` of ids; each write is one Lua script, and the firing step runs the
//! enqueue script's body inside the script that checks the version and advances the cursor.

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, TimeZone, Utc};
use redis::Script;
use switchyard_core::adapter::validate_all;
use switchyard_core::schedule::{FireOutcome, Overlap, ScheduleFire, ScheduleRecord};
use switchyard_core::{EnqueueOutcome, Error, Result, StorageCapabilities, WakeHub};
use uuid::Uuid;

use crate::connection::{self, Conn};
use crate::keys::Keys;
use crate::record::{enqueue_args, millis};

const PRELUDE: &str = include_str!("lua/prelude.lua");

struct ScheduleScripts {
    put: Script,
    remove: Script,
    fire: Script,
}

static SCRIPTS: LazyLock<ScheduleScripts> = LazyLock::new(|| ScheduleScripts {
    put: Script::new(&format!(
        "{PRELUDE}\n{}",
        include_str!("lua/schedules/put.lua")
    )),
    remove: Script::new(&format!(
        "{PRELUDE}\n{}",
        include_str!("lua/schedules/remove.lua")
    )),
    fire: Script::new(&format!(
        "{PRELUDE}\nlocal function enqueue_jobs()\n{}\nend\n{}",
        include_str!("lua/enqueue.lua"),
        include_str!("lua/schedules/fire.lua")
    )),
});

fn from_ms(ms: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| Error::corrupt(format!("a schedule time `{ms}` is out of range")))
}

fn decode(id: &str, flat: Vec<String>) -> Result<Option<ScheduleRecord>> {
    if flat.is_empty() {
        return Ok(None);
    }
    let mut def = None;
    let (mut paused, mut cursor, mut last_fired, mut last_job, mut version) =
        (false, 0i64, None, None, 0u64);
    let bad = |f: &str| Error::corrupt(format!("schedule `{id}` has a bad `{f}` field"));
    for pair in flat.chunks(2) {
        let (k, v) = (
            pair[0].as_str(),
            pair.get(1).map(String::as_str).unwrap_or(""),
        );
        match k {
            "def" => {
                def = Some(serde_json::from_str(v).map_err(|e| {
                    Error::corrupt(format!("schedule `{id}`: definition does not parse: {e}"))
                })?)
            }
            "paused" => paused = v == "1",
            "cursor" => cursor = v.parse().map_err(|_| bad("cursor"))?,
            "last_fired" if !v.is_empty() => {
                last_fired = Some(from_ms(v.parse().map_err(|_| bad("last_fired"))?)?)
            }
            "last_job" if !v.is_empty() => {
                last_job = Some(Uuid::parse_str(v).map_err(|_| bad("last_job"))?)
            }
            "version" => version = v.parse().map_err(|_| bad("version"))?,
            _ => {}
        }
    }
    let Some(def) = def else {
        // A hash left half-written by hand, or removed while read.
        return Ok(None);
    };
    Ok(Some(ScheduleRecord {
        def,
        paused,
        cursor: from_ms(cursor)?,
        last_fired,
        last_job,
        version,
    }))
}

pub(crate) async fn now(conn: &Arc<Conn>) -> Result<DateTime<Utc>> {
    let (secs, micros): (i64, i64) =
        connection::retrying(conn, "read the clock", |mut c| async move {
            redis::cmd("TIME").query_async(&mut c).await
        })
        .await?;
    Utc.timestamp_opt(secs, (micros * 1000) as u32)
        .single()
        .ok_or_else(|| Error::corrupt("Redis TIME is out of range"))
}

pub(crate) async fn get(conn: &Arc<Conn>, keys: &Keys, id: &str) -> Result<Option<ScheduleRecord>> {
    let key = keys.k(&format!("schedule:{id}"));
    let flat: Vec<String> = connection::retrying(conn, "get schedule", |mut c| {
        let key = key.clone();
        async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await }
    })
    .await?;
    decode(id, flat)
}

pub(crate) async fn list(conn: &Arc<Conn>, keys: &Keys) -> Result<Vec<ScheduleRecord>> {
    let set = keys.k("schedules");
    let mut ids: Vec<String> = connection::retrying(conn, "list schedules", |mut c| {
        let set = set.clone();
        async move { redis::cmd("SMEMBERS").arg(set).query_async(&mut c).await }
    })
    .await?;
    ids.sort();
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let flats: Vec<Vec<String>> = connection::retrying(conn, "list schedules", |mut c| {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("HGETALL").arg(keys.k(&format!("schedule:{id}")));
            }
            async move { pipe.query_async(&mut c).await }
        })
        .await?;
        for (id, flat) in chunk.iter().zip(flats) {
            if let Some(r) = decode(id, flat)? {
                out.push(r);
            }
        }
    }
    Ok(out)
}

pub(crate) async fn put(
    conn: &Arc<Conn>,
    keys: &Keys,
    r: &ScheduleRecord,
    expected: Option<u64>,
) -> Result<bool> {
    let def = serde_json::to_string(&r.def)?;
    let mut inv = keys.invocation(&SCRIPTS.put);
    inv.arg(&r.def.id)
        .arg(expected.map(|v| v.to_string()).unwrap_or_default())
        .arg(def)
        .arg(if r.paused { "1" } else { "0" })
        .arg(millis(r.cursor))
        .arg(
            r.last_fired
                .map(|t| millis(t).to_string())
                .unwrap_or_default(),
        )
        .arg(r.last_job.map(|j| j.to_string()).unwrap_or_default());
    let mut c = conn.get();
    let done: i64 = inv
        .invoke_async(&mut c)
        .await
        .map_err(|e| conn.error("write schedule", e))?;
    Ok(done == 1)
}

pub(crate) async fn remove(conn: &Arc<Conn>, keys: &Keys, id: &str) -> Result<bool> {
    let mut inv = keys.invocation(&SCRIPTS.remove);
    inv.arg(id);
    let mut c = conn.get();
    let done: i64 = inv
        .invoke_async(&mut c)
        .await
        .map_err(|e| conn.error("remove schedule", e))?;
    Ok(done == 1)
}

pub(crate) async fn fire(
    conn: &Arc<Conn>,
    keys: &Keys,
    caps: &StorageCapabilities,
    wake: &WakeHub,
    f: &ScheduleFire,
) -> Result<FireOutcome> {
    validate_all(&f.jobs, caps)?;
    let mut inv = keys.invocation(&SCRIPTS.fire);
    inv.key(keys.k("unique"))
        .key(keys.k("queues"))
        .key(keys.k(&format!("schedule:{}", f.id)));
    for a in enqueue_args(&f.jobs)? {
        inv.arg(a);
    }
    inv.arg(&f.id)
        .arg(f.version.to_string())
        .arg(millis(f.cursor))
        .arg(
            f.fired_for
                .map(|t| millis(t).to_string())
                .unwrap_or_default(),
        )
        .arg(match f.overlap {
            Overlap::Allow => "allow",
            Overlap::Skip => "skip",
            Overlap::BufferOne => "buffer_one",
        });
    // Not retried: a retry after a lost reply would find the version bumped (a conflict),
    // which is what the caller should see then anyway (read again).
    let mut c = conn.get();
    let (held, rows): (i64, Vec<(i64, String)>) = inv
        .invoke_async(&mut c)
        .await
        .map_err(|e| conn.error("fire schedule", e))?;
    if held < 0 {
        return Ok(FireOutcome::Conflict);
    }
    let mut jobs = Vec::with_capacity(rows.len());
    for (job, (inserted, id)) in f.jobs.iter().zip(rows) {
        let id = Uuid::parse_str(&id)
            .map_err(|e| Error::corrupt(format!("Redis fire returned a bad id `{id}`: {e}")))?;
        if inserted == 1 || id == job.id {
            jobs.push(EnqueueOutcome::Inserted(job.id));
        } else {
            jobs.push(EnqueueOutcome::Duplicate(id));
        }
    }
    if jobs
        .iter()
        .any(|o| matches!(o, EnqueueOutcome::Inserted(_)))
    {
        wake.notify();
    }
    Ok(FireOutcome::Fired {
        jobs,
        held_back: held == 1,
    })
}
