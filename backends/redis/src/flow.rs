//! Flow control: the stored queue settings, one field per queue of the hash `{prefix}:flow`
//! (a JSON object), which claims read through the storage handle's
//! [`FlowCache`](switchyard_core::adapter::FlowCache).

use std::sync::{Arc, LazyLock};

use chrono::DateTime;
use serde::{Deserialize, Serialize};
use switchyard_core::{Error, Partition, QueueFlow, RateLimit, Result};

use crate::connection::{retrying, Conn};
use crate::keys::Keys;

/// One queue's record as stored in the hash (the queue is the field's name).
#[derive(Serialize, Deserialize)]
struct Stored {
    paused: bool,
    /// Unix milliseconds.
    #[serde(default)]
    paused_until: Option<i64>,
    #[serde(default)]
    concurrency: Option<u32>,
    #[serde(default)]
    rate: Option<RateLimit>,
    #[serde(default)]
    partition: Partition,
    /// Server time, Unix milliseconds.
    updated_at: i64,
}

/// `Storage::queue_flows`: every stored record, by queue name.
pub(crate) async fn load(conn: &Arc<Conn>, keys: &Keys) -> Result<Vec<QueueFlow>> {
    let key = keys.k("flow");
    let pairs: Vec<(String, String)> = retrying(conn, "read queue settings", |mut c| {
        let key = key.clone();
        async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await }
    })
    .await?;
    let mut out = pairs
        .into_iter()
        .map(|(queue, json)| {
            let s: Stored = serde_json::from_str(&json).map_err(|e| {
                Error::corrupt(format!(
                    "Redis queue settings of `{queue}` in {key} do not decode: {e}"
                ))
            })?;
            Ok(QueueFlow {
                queue,
                paused: s.paused,
                paused_until: s.paused_until.and_then(DateTime::from_timestamp_millis),
                concurrency: s.concurrency,
                rate: s.rate,
                partition: s.partition,
                updated_at: DateTime::from_timestamp_millis(s.updated_at),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    out.sort_by(|a, b| a.queue.cmp(&b.queue));
    Ok(out)
}

/// `Storage::set_queue_flow`: writes the record (or deletes it when it holds only defaults)
/// and wakes workers in every process, in one script that stamps `updated_at` with the
/// server's clock.
pub(crate) async fn store(conn: &Arc<Conn>, keys: &Keys, flow: &QueueFlow) -> Result<()> {
    // '' deletes the record; otherwise the JSON of `Stored` before its `updated_at` value.
    let head = if flow.is_default() {
        String::new()
    } else {
        let mut json = serde_json::to_string(&Stored {
            paused: flow.paused,
            paused_until: flow.paused_until.map(|t| t.timestamp_millis()),
            concurrency: flow.concurrency,
            rate: flow.rate,
            partition: flow.partition.clone(),
            updated_at: 0,
        })?;
        // `updated_at` is last: cut its value off, the script appends the server's time.
        json.truncate(json.len() - "0}".len());
        json
    };
    let (key, wake) = (keys.k("flow"), keys.k("wake"));
    let script = redis::Script::new(STORE);
    let _: i64 = retrying(conn, "store queue settings", |mut c| {
        let mut inv = script.prepare_invoke();
        inv.key(&key).key(&wake).arg(&flow.queue).arg(&head);
        async move { inv.invoke_async(&mut c).await }
    })
    .await?;
    Ok(())
}

/// KEYS: flow, wake. ARGV: queue, the record's JSON up to its `updated_at` value ('' deletes).
const STORE: &str = "
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  local t = redis.call('TIME')
  local ms = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ms .. '}')
end
redis.call('PUBLISH', KEYS[2], '')
return 1
";

/// `lua/claim_limited.lua`: the claim of a queue with a concurrency limit.
pub(crate) static CLAIM_LIMITED: LazyLock<redis::Script> =
    LazyLock::new(|| crate::scripts::with_prelude(include_str!("lua/claim_limited.lua")));

/// How many ready entries a limited claim looks at, past those of full partitions.
pub(crate) const LIMITED_SCAN: usize = 1000;
