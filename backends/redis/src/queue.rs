//! [`RedisQueue`]: the `Queue` implementation, Redis as the external queue of any storage
//! (`queue = "redis://…"`, e.g. PostgreSQL as the record and Redis for delivery).
//!
//! Each Switchyard queue is three sorted sets under `{prefix}:mq:<queue>:` — `ready` (by
//! priority, then age), `delayed` (by due time) and `inflight` (received messages by the end
//! of their lease) — changed only by the Lua scripts in `lua/mq/`. A received message stays
//! in `inflight` until it is acked; when its lease ends unacked, the next receive on the queue
//! makes it ready again, so nothing is lost when a worker dies, its connection drops, or Redis
//! restarts with persistence on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::{Script, ScriptInvocation};
use switchyard_core::{
    async_trait, Delivery, Error, HealthCheck, Queue, QueueCapabilities, QueueMessage, Result,
    WakeHub,
};
use uuid::Uuid;

use crate::checks;
use crate::config::RedisConfig;
use crate::connection::{self, Conn};
use crate::listener::{self, Listener};

/// Most messages one receive hands out.
const MAX_BATCH: usize = 1000;
/// Longest a received message stays invisible (as on SQS); longer jobs extend their lease.
const MAX_LEASE: Duration = Duration::from_secs(12 * 3600);
/// Delays the queue holds itself; jobs due later wait in Storage until the dispatcher's horizon
/// reaches them, so cancelling or rescheduling them in Storage stays cheap.
const MAX_NATIVE_DELAY: Duration = Duration::from_secs(15 * 60);
/// How often an idle receive looks again while it waits: messages whose lease ended or whose
/// delay passed become ready without a wake-up.
const POLL: Duration = Duration::from_millis(100);

const PRELUDE: &str = include_str!("lua/mq/prelude.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

/// The queue scripts, compiled once per handle.
#[derive(Debug)]
struct Scripts {
    publish: Script,
    receive: Script,
    nack: Script,
    extend: Script,
}

/// Switchyard's external queue on Redis: ready, delayed and in-flight messages in sorted sets,
/// received messages leased (invisible until acked or their lease ends), priorities, delays
/// up to 15 minutes, wake-ups through Pub/Sub.
///
/// Cheap to clone: clones share one multiplexed connection, the scripts and the listener.
#[derive(Clone)]
pub struct RedisQueue {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Arc<Conn>,
    /// `{prefix}:mq:` — every key of the queue starts with it.
    p: String,
    scripts: Scripts,
    /// One hub per queue: the wake-up channel's messages name the queue that has a message
    /// ready, so idle receivers of other queues stay asleep.
    wakes: Arc<Mutex<HashMap<String, WakeHub>>>,
    wake_channel: String,
    /// Queues this handle set up, published to or received from (for `destroy`).
    used: Mutex<HashSet<String>>,
    _listener: Listener,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.inner.p)
            .finish_non_exhaustive()
    }
}

/// The receipts of `deliveries`, by queue.
fn receipts_by_queue(deliveries: &[Delivery]) -> BTreeMap<&str, Vec<&str>> {
    let mut by_queue: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for d in deliveries {
        by_queue
            .entry(d.queue.as_str())
            .or_default()
            .push(d.receipt.as_str());
    }
    by_queue
}

/// The job id inside a receipt (`<priority>|<job id>|<nonce>`).
fn job_id_of(receipt: &str) -> Result<Uuid> {
    receipt
        .split('|')
        .nth(1)
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| Error::corrupt(format!("bad Redis queue receipt `{receipt}`")))
}

impl RedisQueue {
    /// Connects to `config.url` (its `prefix` isolates instances; the storage-only fields are
    /// not used) and starts the wake-up listener.
    ///
    /// A malformed URL or prefix is a `Config` error naming the key; an unreachable server is
    /// `Unavailable`; a Redis Cluster node that does not hold the prefix's slot is a `Config`
    /// error naming the one that does. Later calls reconnect by themselves.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let (client, conn) = connection::open(&config, "queue").await?;
        let probe = format!("{{{}}}:mq:wake", config.prefix);
        checks::check_server(&conn.get(), &config, "queue", &probe).await?;
        let p = format!("{{{}}}:mq:", config.prefix);
        let wake_channel = format!("{p}wake");
        let wakes: Arc<Mutex<HashMap<String, WakeHub>>> = Arc::default();
        let (on_message, on_connect) = (wakes.clone(), wakes.clone());
        let listener = listener::spawn_with(
            client,
            wake_channel.clone(),
            move |queue| {
                if let Some(hub) = on_message.lock().expect("poisoned").get(queue) {
                    hub.notify();
                }
            },
            move || {
                for hub in on_connect.lock().expect("poisoned").values() {
                    hub.notify();
                }
            },
        );
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                scripts: Scripts {
                    publish: script(include_str!("lua/mq/publish.lua")),
                    receive: script(include_str!("lua/mq/receive.lua")),
                    nack: script(include_str!("lua/mq/nack.lua")),
                    extend: script(include_str!("lua/mq/extend.lua")),
                },
                wakes,
                wake_channel,
                used: Mutex::new(HashSet::new()),
                _listener: listener,
                p,
            }),
        })
    }

    /// A handle on the shared connection, for tests and tools.
    pub fn connection(&self) -> ConnectionManager {
        self.inner.conn.get()
    }

    /// The start of every key of this queue, `{prefix}:mq:`.
    pub fn key_prefix(&self) -> &str {
        &self.inner.p
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.get()
    }

    /// Maps a failed `what` to Switchyard's error (reconnecting first after `READONLY`).
    fn err(&self, what: &'static str) -> impl Fn(redis::RedisError) -> Error + '_ {
        move |e| self.inner.conn.error(what, e)
    }

    /// The wake-up hub of `queue`.
    fn wake(&self, queue: &str) -> WakeHub {
        self.inner
            .wakes
            .lock()
            .expect("poisoned")
            .entry(queue.to_string())
            .or_default()
            .clone()
    }

    fn use_queue(&self, queue: &str) {
        self.inner
            .used
            .lock()
            .expect("poisoned")
            .insert(queue.to_string());
    }

    /// A script call on `queue`'s three keys.
    fn invocation<'a>(&self, script: &'a Script, queue: &str) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for part in ["ready", "delayed", "inflight"] {
            inv.key(format!("{}{queue}:{part}", self.inner.p));
        }
        inv
    }

    /// Runs one idempotent call, trying again a few times while the connection is being
    /// re-established (see [`connection::retrying`]).
    async fn retrying<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        connection::retrying(&self.inner.conn, what, op).await
    }
}

#[async_trait]
impl Queue for RedisQueue {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn capabilities(&self) -> QueueCapabilities {
        QueueCapabilities::new(MAX_BATCH)
            .with_max_native_delay(Some(MAX_NATIVE_DELAY))
            .with_max_lease(Some(MAX_LEASE))
            .with_priorities(true)
    }

    /// Redis needs nothing created: the keys appear with their first message.
    async fn setup(&self, queues: &[String]) -> Result<()> {
        for q in queues {
            self.use_queue(q);
        }
        Ok(())
    }

    async fn publish(&self, messages: &[QueueMessage]) -> Result<()> {
        let mut by_queue: BTreeMap<&str, Vec<&QueueMessage>> = BTreeMap::new();
        for m in messages {
            if m.delay > MAX_NATIVE_DELAY {
                return Err(Error::invalid(format!(
                    "job {}: delay {:?} is above the Redis queue's limit of {MAX_NATIVE_DELAY:?}",
                    m.job_id, m.delay
                )));
            }
            by_queue.entry(m.queue.as_str()).or_default().push(m);
        }
        for (queue, list) in by_queue {
            self.use_queue(queue);
            for chunk in list.chunks(MAX_BATCH) {
                // Retried after a dropped connection: a message published twice is delivered
                // twice at most, and Storage fences the second claim.
                let _: i64 = self
                    .retrying("publish", |mut c| {
                        let mut inv = self.invocation(&self.inner.scripts.publish, queue);
                        inv.arg(&self.inner.wake_channel).arg(queue);
                        for m in chunk {
                            inv.arg(m.job_id.to_string())
                                .arg(m.priority)
                                .arg(m.delay.as_millis() as u64);
                        }
                        async move { inv.invoke_async(&mut c).await }
                    })
                    .await?;
            }
        }
        Ok(())
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
        lease: Duration,
    ) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = max.min(MAX_BATCH);
        let lease = lease.clamp(Duration::from_millis(1), MAX_LEASE);
        self.use_queue(queue);
        let start = Instant::now();
        let mut wake = self.wake(queue).subscribe();
        loop {
            let nonce = Uuid::new_v4().simple().to_string();
            // Not retried: if the reply is lost, the messages are in flight under receipts
            // nobody holds, and come back when their lease ends.
            let receipts: Vec<String> = self
                .invocation(&self.inner.scripts.receive, queue)
                .arg(max)
                .arg(lease.as_millis() as u64)
                .arg(&nonce)
                .invoke_async(&mut self.conn())
                .await
                .map_err(self.err("receive"))?;
            if !receipts.is_empty() {
                return receipts
                    .into_iter()
                    .map(|receipt| {
                        Ok(Delivery {
                            job_id: job_id_of(&receipt)?,
                            queue: queue.to_string(),
                            receipt,
                        })
                    })
                    .collect();
            }
            let left = wait.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            wake.wait(left.min(POLL)).await;
        }
    }

    async fn ack(&self, deliveries: &[Delivery]) -> Result<()> {
        for (queue, receipts) in receipts_by_queue(deliveries) {
            let key = format!("{}{queue}:inflight", self.inner.p);
            for chunk in receipts.chunks(MAX_BATCH) {
                // A receipt whose lease already ended is no longer there: nothing to do (the
                // message was handed out again, and Storage fences its second claim).
                let _: i64 = self
                    .retrying("ack", |mut c| {
                        let mut cmd = redis::cmd("ZREM");
                        cmd.arg(&key).arg(chunk);
                        async move { cmd.query_async(&mut c).await }
                    })
                    .await?;
            }
        }
        Ok(())
    }

    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<()> {
        let delay = delay.min(MAX_NATIVE_DELAY);
        let _: i64 = self
            .retrying("nack", |mut c| {
                let mut inv = self.invocation(&self.inner.scripts.nack, &delivery.queue);
                inv.arg(&delivery.receipt)
                    .arg(delay.as_millis() as u64)
                    .arg(&self.inner.wake_channel)
                    .arg(&delivery.queue);
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        Ok(())
    }

    async fn extend(&self, deliveries: &[Delivery], lease: Duration) -> Result<()> {
        let lease = lease.clamp(Duration::from_millis(1), MAX_LEASE);
        for (queue, receipts) in receipts_by_queue(deliveries) {
            for chunk in receipts.chunks(MAX_BATCH) {
                let _: i64 = self
                    .retrying("extend", |mut c| {
                        let mut inv = self.invocation(&self.inner.scripts.extend, queue);
                        inv.arg(lease.as_millis() as u64);
                        for r in chunk {
                            inv.arg(*r);
                        }
                        async move { inv.invoke_async(&mut c).await }
                    })
                    .await?;
            }
        }
        Ok(())
    }

    async fn destroy(&self) -> Result<()> {
        let queues: Vec<String> = self
            .inner
            .used
            .lock()
            .expect("poisoned")
            .iter()
            .cloned()
            .collect();
        self.destroy_queues(&queues).await
    }

    /// Redis needs no broker queue created: this reports the server's eviction policy and
    /// clock, and per queue how many messages are ready, delayed and in flight.
    async fn health_checks(&self, queues: &[String]) -> Vec<HealthCheck> {
        let mut checks = checks::health_checks(&self.conn(), false).await;
        for q in queues {
            let key = |part: &str| format!("{}{q}:{part}", self.inner.p);
            let mut pipe = redis::pipe();
            for part in ["ready", "delayed", "inflight"] {
                pipe.cmd("ZCARD").arg(key(part));
            }
            let counts: redis::RedisResult<(u64, u64, u64)> =
                pipe.query_async(&mut self.conn()).await;
            let check = format!("broker queue {q}");
            checks.push(match counts {
                Ok((r, d, i)) => HealthCheck::ok(
                    check,
                    format!(
                        "keys `{}*`: {r} ready, {d} delayed, {i} in flight (created with the \
                         first message)",
                        key("")
                    ),
                ),
                Err(e) => HealthCheck::fail(check, format!("cannot count its messages: {e}")),
            });
        }
        checks
    }

    async fn destroy_queues(&self, queues: &[String]) -> Result<()> {
        let keys: Vec<String> = queues
            .iter()
            .flat_map(|q| {
                ["ready", "delayed", "inflight"].map(|part| format!("{}{q}:{part}", self.inner.p))
            })
            .collect();
        for chunk in keys.chunks(MAX_BATCH) {
            let _: i64 = self
                .retrying("delete queue keys", |mut c| {
                    let mut cmd = redis::cmd("UNLINK");
                    cmd.arg(chunk);
                    async move { cmd.query_async(&mut c).await }
                })
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_name_their_job() {
        let id = Uuid::now_v7();
        assert_eq!(job_id_of(&format!("-3|{id}|abc1")).unwrap(), id);
        assert!(job_id_of("nonsense").is_err());
        assert!(job_id_of("0|not-a-uuid|x").is_err());
    }
}
