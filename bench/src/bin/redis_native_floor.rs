//! Run with: `cargo run --release -p switchyard-bench --bin redis_native_floor`
//!
//! Diagnostic: what the Redis storage's per-job bookkeeping costs as plain pipelined commands,
//! without Lua and without atomicity — a floor no correct implementation of the same records
//! can beat, to read beside `redis_raw_ceiling`. Enqueue writes each job's hash (the fields
//! of schema 3, see docs/redis.md) and `LPUSH`es its id. Then `--concurrency` tasks (16) on
//! one multiplexed connection drain `--batch` jobs (16) per claim, in the round trips the
//! storage's scripts would need if Redis could run them natively:
//!
//! 1. pop: `LPOP ready B`;
//! 2. claim: per job `HMGET` of the 11 fields a claim reads and `HSET` of the 6 it writes;
//!    `ZADD` of the lease set and `ZREM` from the `available` index, one variadic call each;
//! 3. complete: per job `HMGET` of the 3 fields the fence reads, `HSET` of state and
//!    `finished_at`, `EXPIRE`; `ZREM` from the lease set, `ZADD` to the `completed` index,
//!    `RPUSH` to the finish log and `INCRBY` of a done counter, one call each.
//!
//! `--lean` measures the least bookkeeping the Redis issue's requirements leave, in a model
//! Switchyard does not use: the ready list's entries carry the record a worker needs (no read
//! at claim), a running job is its lease alone (a lease-set entry and a token in one hash,
//! both written variadically, no write to the job's hash at claim), and a completion reads the
//! tokens in one `HMGET`, then per job writes the hash once and sets its expiry; the indexes and
//! the finish log as above.
//!
//! Prints drain jobs/s and Redis CPU per job (`INFO cpu`) for each run and the median.
//! Arguments (all optional): `--lean`, `--jobs N` (10,000), `--concurrency C` (16), `--batch B`
//! (16), `--runs R` (3). Reads `SWITCHYARD_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).

use std::time::Instant;

use redis::aio::ConnectionManager;
use switchyard_bench::args::DrainArgs;
use switchyard_bench::cpu::redis_cpu;
use switchyard_bench::{flag, median, services};

/// The claim's field reads, in the order claim.lua asks for them.
const CLAIM_FIELDS: [&str; 11] = [
    "state",
    "attempt",
    "queue",
    "priority",
    "max_attempts",
    "run_at",
    "errors",
    "result",
    "unique_key",
    "cancel_requested",
    "spec",
];

/// Keys of one run, all under one hash tag.
struct Keys {
    prefix: String,
    ready: String,
    leases: String,
    available: String,
    completed: String,
    finlog: String,
    done: String,
    /// The lean layout's running jobs' tokens (a hash: id → token).
    tokens: String,
}

impl Keys {
    fn new(run: usize) -> Self {
        let p = format!("{{native-floor-{}-{run}}}:", std::process::id());
        Keys {
            ready: format!("{p}ready"),
            leases: format!("{p}leases"),
            available: format!("{p}s:bench:available"),
            completed: format!("{p}s:bench:completed"),
            finlog: format!("{p}finlog"),
            done: format!("{p}done"),
            tokens: format!("{p}tokens"),
            prefix: p,
        }
    }

    fn job(&self, id: &str) -> String {
        format!("{}job:{id}", self.prefix)
    }
}

/// Takes up to `batch` entries from the ready list (`LPOP` with a count; none when empty).
async fn pop(c: &mut ConnectionManager, k: &Keys, batch: usize) -> redis::RedisResult<Vec<String>> {
    let entries: Option<Vec<String>> = redis::cmd("LPOP")
        .arg(&k.ready)
        .arg(batch)
        .query_async(c)
        .await?;
    Ok(entries.unwrap_or_default())
}

/// A completion batch's writes beside each job's own: out of the lease set, into the
/// `completed` index and the finish log, and the done counter.
fn finish_writes<S: AsRef<str>>(
    p: &mut redis::Pipeline,
    k: &Keys,
    ids: &[S],
    token: &str,
    now: &str,
) {
    let zrem = p.cmd("ZREM").arg(&k.leases);
    for id in ids {
        zrem.arg(format!("{}|{token}", id.as_ref()));
    }
    zrem.ignore();
    let zadd = p.cmd("ZADD").arg(&k.completed);
    for id in ids {
        zadd.arg(0).arg(id.as_ref());
    }
    zadd.ignore();
    let rpush = p.cmd("RPUSH").arg(&k.finlog);
    for id in ids {
        rpush.arg(format!("{now}|completed|{}|bench", id.as_ref()));
    }
    rpush.ignore();
    p.cmd("INCRBY").arg(&k.done).arg(ids.len()).ignore();
}

async fn enqueue(
    c: &mut ConnectionManager,
    k: &Keys,
    jobs: usize,
    lean: bool,
) -> redis::RedisResult<()> {
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            let id = format!("{:032x}", *i as u128 + 1);
            let spec = format!("bench\u{0}1764430000000\u{0}\u{0}[]\u{0}{{\"n\":{i}}}");
            pipe.cmd("HSET")
                .arg(k.job(&id))
                .arg(&[
                    ("state", "available"),
                    ("attempt", "0"),
                    ("queue", "bench"),
                    ("priority", "0"),
                    ("max_attempts", "25"),
                    ("run_at", "1764430000000"),
                    ("errors", "[]"),
                    ("result", ""),
                    ("cancel_requested", ""),
                    ("lease_token", ""),
                    ("lease_expires_at", ""),
                    ("worker_id", ""),
                    ("dispatched_at", ""),
                    ("spec", spec.as_str()),
                ])
                .ignore();
            pipe.cmd("ZADD").arg(&k.available).arg(0).arg(&id).ignore();
            if lean {
                pipe.cmd("RPUSH")
                    .arg(&k.ready)
                    .arg(format!("{id}\u{0}{spec}"))
                    .ignore();
            } else {
                pipe.cmd("RPUSH").arg(&k.ready).arg(&id).ignore();
            }
        }
        let () = pipe.query_async(c).await?;
    }
    Ok(())
}

/// The clock the pipelined drains write (one fixed value).
const NOW: &str = "1764430000123";
/// The lease expiry the pipelined drains write.
const EXP: &str = "1764430030123";
/// The lease token the pipelined drains write.
const TOKEN: &str = "0123456789abcdef0123456789ab0001";

/// A completed job's own writes: its state and `finished_at`, and its expiry.
fn mark_completed(p: &mut redis::Pipeline, key: &str) {
    p.cmd("HSET")
        .arg(key)
        .arg(&[("state", "completed"), ("finished_at", NOW)])
        .ignore();
    p.cmd("EXPIRE").arg(key).arg(86_400).ignore();
}

/// One drain task of the pipelined layouts: pops `batch` ready entries at a time until the
/// list is empty, and claims and completes each batch as the layout does (`lean` or not).
async fn drain_task(
    mut c: ConnectionManager,
    k: std::sync::Arc<Keys>,
    batch: usize,
    lean: bool,
) -> redis::RedisResult<()> {
    loop {
        let entries = pop(&mut c, &k, batch).await?;
        if entries.is_empty() {
            return Ok(());
        }
        if lean {
            claim_complete_lean(&mut c, &k, &entries).await?;
        } else {
            claim_complete(&mut c, &k, &entries).await?;
        }
    }
}

/// The lean model's claim and completion of popped `entries`: the ready list's entries carry
/// what a worker needs, the running state is the lease alone, and each job's hash is written
/// once, when it finishes.
async fn claim_complete_lean(
    c: &mut ConnectionManager,
    k: &Keys,
    entries: &[String],
) -> redis::RedisResult<()> {
    let ids: Vec<&str> = entries
        .iter()
        .map(|e| e.split_once('\u{0}').map_or(e.as_str(), |(id, _)| id))
        .collect();
    let mut claim = redis::pipe();
    let zadd = claim.cmd("ZADD").arg(&k.leases);
    for id in &ids {
        zadd.arg(EXP).arg(format!("{id}|{TOKEN}"));
    }
    zadd.ignore();
    let hset = claim.cmd("HSET").arg(&k.tokens);
    for id in &ids {
        hset.arg(id).arg(TOKEN);
    }
    hset.ignore();
    let () = claim.query_async(c).await?;

    let mut complete = redis::pipe();
    complete.cmd("HMGET").arg(&k.tokens).arg(&ids);
    for id in &ids {
        let key = k.job(id);
        mark_completed(&mut complete, &key);
    }
    complete.cmd("HDEL").arg(&k.tokens).arg(&ids).ignore();
    complete.cmd("ZREM").arg(&k.available).arg(&ids).ignore();
    finish_writes(&mut complete, k, &ids, TOKEN, NOW);
    let (fences,): (Vec<Option<String>>,) = complete.query_async(c).await?;
    assert!(
        fences.iter().all(|t| t.as_deref() == Some(TOKEN)),
        "every fence reads its token"
    );
    Ok(())
}

/// The lean model's claim as one script (see `drain_task_lean_lua`). KEYS: ready, leases,
/// tokens. ARGV: limit, lease expiry, token base. Returns the popped entries; the `i`th job's
/// token is the base followed by `i`.
const LEAN_CLAIM: &str = r#"
local r = redis.call('LPOP', KEYS[1], ARGV[1])
if not r then return {} end
local z, h = {}, {}
for i, e in ipairs(r) do
  local id = string.sub(e, 1, string.find(e, '\0', 1, true) - 1)
  local tok = ARGV[3] .. i
  z[#z + 1] = ARGV[2]; z[#z + 1] = id .. '|' .. tok
  h[#h + 1] = id; h[#h + 1] = tok
end
redis.call('ZADD', KEYS[2], unpack(z))
redis.call('HSET', KEYS[3], unpack(h))
return r
"#;

/// The lean model's completion as one script, each job fenced by its token. KEYS: tokens,
/// leases, available index, completed index, finish log, done counter. ARGV: job key prefix,
/// ttl, then id and token per job. Returns 1 (applied) or 0 (stale) per job.
const LEAN_COMPLETE: &str = r#"
local ids, toks = {}, {}
for i = 3, #ARGV, 2 do ids[#ids + 1] = ARGV[i]; toks[#toks + 1] = ARGV[i + 1] end
local cur = redis.call('HMGET', KEYS[1], unpack(ids))
local now = redis.call('TIME')[1]
local ok, zl, zc, fl, out = {}, {}, {}, {}, {}
for i, id in ipairs(ids) do
  if cur[i] == toks[i] then
    local key = ARGV[1] .. id
    redis.call('HSET', key, 'state', 'completed', 'finished_at', now)
    redis.call('EXPIRE', key, ARGV[2])
    ok[#ok + 1] = id
    zl[#zl + 1] = id .. '|' .. toks[i]
    zc[#zc + 1] = '0'; zc[#zc + 1] = id
    fl[#fl + 1] = now .. '|completed|' .. id .. '|bench'
    out[i] = 1
  else
    out[i] = 0
  end
end
if #ok > 0 then
  redis.call('HDEL', KEYS[1], unpack(ok))
  redis.call('ZREM', KEYS[2], unpack(zl))
  redis.call('ZREM', KEYS[3], unpack(ok))
  redis.call('ZADD', KEYS[4], unpack(zc))
  redis.call('RPUSH', KEYS[5], unpack(fl))
  redis.call('INCRBY', KEYS[6], tostring(#ok))
end
return out
"#;

/// The lean model with its claim and completion as atomic scripts, as a real implementation
/// would need them (a completion must be refused once its lease is gone).
async fn drain_task_lean_lua(
    mut c: ConnectionManager,
    k: std::sync::Arc<Keys>,
    batch: usize,
) -> redis::RedisResult<()> {
    let claim = redis::Script::new(LEAN_CLAIM);
    let complete = redis::Script::new(LEAN_COMPLETE);
    let base = "0123456789abcdef0123456789ab";
    loop {
        let entries: Vec<String> = claim
            .key(&k.ready)
            .key(&k.leases)
            .key(&k.tokens)
            .arg(batch)
            .arg("1764430030123")
            .arg(base)
            .invoke_async(&mut c)
            .await?;
        if entries.is_empty() {
            return Ok(());
        }
        let mut inv = complete.prepare_invoke();
        inv.key(&k.tokens)
            .key(&k.leases)
            .key(&k.available)
            .key(&k.completed)
            .key(&k.finlog)
            .key(&k.done)
            .arg(format!("{}job:", k.prefix))
            .arg(86_400);
        for (i, e) in entries.iter().enumerate() {
            let id = e.split_once('\u{0}').map_or(e.as_str(), |(id, _)| id);
            inv.arg(id).arg(format!("{base}{}", i + 1));
        }
        let applied: Vec<i64> = inv.invoke_async(&mut c).await?;
        assert!(applied.iter().all(|a| *a == 1), "every completion applies");
    }
}

/// The schema-3 layout's claim and completion of popped `ids`, in the storage scripts' round
/// trips.
async fn claim_complete(
    c: &mut ConnectionManager,
    k: &Keys,
    ids: &[String],
) -> redis::RedisResult<()> {
    let mut claim = redis::pipe();
    for id in ids {
        let key = k.job(id);
        claim.cmd("HMGET").arg(&key).arg(&CLAIM_FIELDS[..]);
        claim
            .cmd("HSET")
            .arg(&key)
            .arg(&[
                ("state", "running"),
                ("attempt", "1"),
                ("lease_token", TOKEN),
                ("lease_expires_at", EXP),
                ("started_at", NOW),
                ("worker_id", "floor"),
            ])
            .ignore();
    }
    let zadd = claim.cmd("ZADD").arg(&k.leases);
    for id in ids {
        zadd.arg(EXP).arg(format!("{id}|{TOKEN}"));
    }
    zadd.ignore();
    claim.cmd("ZREM").arg(&k.available).arg(ids).ignore();
    let records: Vec<Vec<Option<Vec<u8>>>> = claim.query_async(c).await?;
    assert_eq!(records.len(), ids.len(), "one record per claimed job");

    let mut complete = redis::pipe();
    for id in ids {
        let key = k.job(id);
        complete
            .cmd("HMGET")
            .arg(&key)
            .arg(&["state", "lease_token", "queue"]);
        mark_completed(&mut complete, &key);
    }
    finish_writes(&mut complete, k, ids, TOKEN, NOW);
    let fences: Vec<Vec<Option<String>>> = complete.query_async(c).await?;
    assert!(
        fences
            .iter()
            .all(|f| f.first().and_then(|s| s.as_deref()) == Some("running")),
        "every fence reads a running job"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> redis::RedisResult<()> {
    let a = DrainArgs::read();
    let (jobs, concurrency, batch, runs) = (a.jobs, a.concurrency, a.batch, a.runs);
    let lean_lua = flag("--lean-lua");
    let lean = lean_lua || flag("--lean");
    let conn = services::redis_connection().await?;
    let mut figures = Vec::new();
    for run in 1..=runs {
        let mut c = conn.clone();
        let k = std::sync::Arc::new(Keys::new(run));
        enqueue(&mut c, &k, jobs, lean).await?;
        let cpu0 = redis_cpu(&mut c).await?;
        let start = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                if lean_lua {
                    tokio::spawn(drain_task_lean_lua(conn.clone(), k.clone(), batch))
                } else {
                    tokio::spawn(drain_task(conn.clone(), k.clone(), batch, lean))
                }
            })
            .collect();
        for t in tasks {
            t.await.expect("drain task panicked")?;
        }
        let drain = start.elapsed();
        let cpu = redis_cpu(&mut c).await? - cpu0;
        let counted: usize = redis::cmd("GET").arg(&k.done).query_async(&mut c).await?;
        assert_eq!(counted, jobs, "every job drained exactly once");
        let rate = jobs as f64 / drain.as_secs_f64();
        println!(
            "run {run}: drain {rate:.0} jobs/s, Redis CPU {:.1} µs/job ({jobs} jobs, \
             concurrency {concurrency}, batch {batch})",
            cpu * 1e6 / jobs as f64
        );
        figures.push(rate);
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", k.prefix))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await?;
            if !keys.is_empty() {
                let () = redis::cmd("UNLINK").arg(&keys).query_async(&mut c).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    println!(
        "native floor{} (median of {runs}): drain {:.0} jobs/s",
        if lean_lua {
            ", lean in Lua"
        } else if lean {
            ", lean"
        } else {
            ""
        },
        median(figures)
    );
    Ok(())
}
