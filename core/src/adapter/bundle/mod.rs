//! Bundles: several job ids in one broker message.
//!
//! A broker's cost is per message (an SQS request per ten messages, a RabbitMQ publish, confirm,
//! delivery and ack per message), not per job id. When a publish holds more messages for one
//! broker queue than one broker batch takes, [`pack`] puts several ids in each message, so a
//! backlog of 500 jobs travels as 50 messages of ten ids instead of 500 messages. A publish of
//! a few jobs (the common case when jobs trickle in) still sends one message per job, so
//! latency and the spread of jobs over workers are unchanged.
//!
//! On the receiving side, [`Bundles`] turns each message into one [`Delivery`] per job id and
//! keeps count: the broker message is acked only when every job it names is settled (acked, or
//! given back by publishing its id again). A receive returns at most the `max` deliveries
//! asked for; the ids left over from its messages wait in the adapter (the *surplus*) for the
//! next receive, and [`Queue::release`](crate::Queue::release) gives them back.
//!
//! Nothing is lost on a crash: an unacked message comes back (visibility timeout, closed
//! channel) with every id it names; the ones already finished fail their claim in Storage and
//! are acked then.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::job::JobId;
use crate::queue::{Delivery, QueueMessage};

/// Most job ids one message carries unless configured otherwise.
pub const DEFAULT_IDS_PER_MESSAGE: usize = 10;
/// The most a configuration may ask for.
pub const MAX_IDS_PER_MESSAGE: usize = 100;
/// A publish spreads each group over at least this many messages before it packs several ids
/// into one (one SQS batch), so small publishes stay one id per message.
pub const SPREAD: usize = 10;

/// One message to publish: the jobs it names and where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// The Switchyard queue.
    pub queue: String,
    /// The priority shared by every job in it.
    pub priority: i16,
    /// The longest delay of its jobs (a bundle is never delivered before any of them is due).
    pub delay: Duration,
    /// The jobs, in publish order.
    pub job_ids: Vec<JobId>,
}

/// Packs `messages` into bundles of at most `max_ids` ids. Messages with the same `key` (the
/// adapter's broker queue, priority, delay step, FIFO group…) may share a bundle; order within
/// a key is kept. A key with `n` messages gets bundles of `ceil(n / SPREAD)` ids, capped at
/// `max_ids`, so it needs at most [`SPREAD`] messages until it reaches the cap.
pub fn pack<K, F>(messages: &[QueueMessage], max_ids: usize, key: F) -> Vec<Bundle>
where
    K: Eq + Hash,
    F: Fn(&QueueMessage) -> K,
{
    let max_ids = max_ids.clamp(1, MAX_IDS_PER_MESSAGE);
    let mut index: HashMap<K, usize> = HashMap::new();
    let mut groups: Vec<Vec<&QueueMessage>> = Vec::new();
    for m in messages {
        let i = *index.entry(key(m)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[i].push(m);
    }
    let mut out = Vec::new();
    for group in groups {
        let size = group.len().div_ceil(SPREAD).clamp(1, max_ids);
        for chunk in group.chunks(size) {
            out.push(Bundle {
                queue: chunk[0].queue.clone(),
                priority: chunk[0].priority,
                delay: chunk.iter().map(|m| m.delay).max().unwrap_or_default(),
                job_ids: chunk.iter().map(|m| m.job_id).collect(),
            });
        }
    }
    out
}

/// Encodes ids as a message body: the ids separated by commas (one id: just the id).
pub fn encode_ids(ids: &[JobId]) -> String {
    let mut s = String::with_capacity(ids.len() * 37);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&id.to_string());
    }
    s
}

/// Decodes [`encode_ids`]; `None` unless every part is a UUID.
pub fn decode_ids(body: &str) -> Option<Vec<JobId>> {
    body.split(',')
        .map(|p| p.trim().parse::<JobId>().ok())
        .collect::<Option<Vec<_>>>()
        .filter(|ids| !ids.is_empty())
}

/// The receipt of member `index` of a message whose broker receipt is `broker`. Broker
/// receipts (SQS receipt handles, RabbitMQ `consumer:tag`) never hold a space.
fn member_receipt(broker: &str, index: usize) -> String {
    format!("{broker} {index}")
}

/// The broker receipt inside a delivery's receipt, and the member index if it is a bundle's.
pub fn split_receipt(receipt: &str) -> (&str, Option<usize>) {
    match receipt.rsplit_once(' ') {
        Some((broker, i)) => match i.parse() {
            Ok(i) => (broker, Some(i)),
            Err(_) => (receipt, None),
        },
        None => (receipt, None),
    }
}

/// A received message naming several jobs, not yet acked.
struct Open {
    /// The member ids; `None` once settled.
    ids: Vec<Option<JobId>>,
    left: usize,
    priority: i16,
}

/// A delivery received and not yet handed out by `receive`.
struct Held {
    delivery: Delivery,
    priority: i16,
    since: Instant,
}

/// Deliveries to give back: publish `messages` (one per delivery, same order), then settle
/// `deliveries` (acking the broker messages this completes). If the publish fails, put the
/// deliveries back with [`Bundles::hold`] so that they are neither lost nor left unsettled.
#[derive(Debug, Default)]
pub struct GiveBack {
    /// One message per delivery, to publish again.
    pub messages: Vec<QueueMessage>,
    /// The deliveries to settle once `messages` are published.
    pub deliveries: Vec<Delivery>,
}

impl GiveBack {
    /// Nothing to give back.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    fn push(&mut self, delivery: Delivery, priority: i16, delay: Duration) {
        self.messages
            .push(message(delivery.job_id, &delivery.queue, priority, delay));
        self.deliveries.push(delivery);
    }
}

/// The receiving side of bundles, one per adapter instance: which members of each received
/// message are still unsettled, and the surplus deliveries waiting for the next receive.
///
/// Nothing here awaits: an adapter takes from the surplus only after its last `.await` of a
/// receive, so a receive cancelled by the caller (a worker stopping) never drops held ids.
#[derive(Default)]
pub struct Bundles {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    open: HashMap<String, Open>,
    surplus: HashMap<String, VecDeque<Held>>,
}

impl std::fmt::Debug for Bundles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock().expect("poisoned");
        f.debug_struct("Bundles")
            .field("open", &state.open.len())
            .field(
                "surplus",
                &state.surplus.values().map(VecDeque::len).sum::<usize>(),
            )
            .finish()
    }
}

impl State {
    fn priority_of(&self, receipt: &str) -> i16 {
        self.open
            .get(split_receipt(receipt).0)
            .map_or(0, |o| o.priority)
    }
}

impl Bundles {
    /// The deliveries of one received message from `queue` that names `ids`. A message naming
    /// one job gives one delivery whose receipt is the broker's; a bundle gives one delivery
    /// per id, each with its own receipt, and is tracked until every one is settled.
    pub fn open(
        &self,
        queue: &str,
        broker: String,
        ids: Vec<JobId>,
        priority: i16,
    ) -> Vec<Delivery> {
        if ids.len() == 1 {
            return vec![Delivery {
                job_id: ids[0],
                queue: queue.to_string(),
                receipt: broker,
            }];
        }
        let out = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Delivery {
                job_id: *id,
                queue: queue.to_string(),
                receipt: member_receipt(&broker, i),
            })
            .collect();
        let open = Open {
            left: ids.len(),
            ids: ids.into_iter().map(Some).collect(),
            priority,
        };
        self.state
            .lock()
            .expect("poisoned")
            .open
            .insert(broker, open);
        out
    }

    /// Settles one delivery. Returns the broker receipt to ack when no member of its message
    /// is left unsettled (at once for a message naming one job); `None` while others are, or
    /// when this member was settled before or its bundle was closed early.
    pub fn settle(&self, receipt: &str) -> Option<String> {
        let (broker, member) = split_receipt(receipt);
        let Some(i) = member else {
            return Some(broker.to_string());
        };
        let mut state = self.state.lock().expect("poisoned");
        let open = state.open.get_mut(broker)?;
        // Settled before: counted once.
        open.ids.get_mut(i)?.take()?;
        open.left -= 1;
        if open.left == 0 {
            state.open.remove(broker);
            Some(broker.to_string())
        } else {
            None
        }
    }

    /// Whether `receipt` is a member of a bundle that is still open.
    pub fn is_member(&self, receipt: &str) -> bool {
        let (broker, member) = split_receipt(receipt);
        member.is_some()
            && self
                .state
                .lock()
                .expect("poisoned")
                .open
                .contains_key(broker)
    }

    /// The unsettled members of the bundle `receipt` belongs to, but `except`, as messages to
    /// publish again before the bundle is [closed](Self::close) early (a broker that must ack
    /// a long-held message). `None` for a message naming one job or a closed bundle.
    pub fn unsettled(
        &self,
        receipt: &str,
        queue: &str,
        except: JobId,
    ) -> Option<Vec<QueueMessage>> {
        let (broker, member) = split_receipt(receipt);
        member?;
        let state = self.state.lock().expect("poisoned");
        let open = state.open.get(broker)?;
        Some(
            open.ids
                .iter()
                .flatten()
                .filter(|id| **id != except)
                .map(|id| message(*id, queue, open.priority, Duration::ZERO))
                .collect(),
        )
    }

    /// Forgets the bundle `receipt` belongs to: its broker message is acked now (its unsettled
    /// members were published again), so later settles of its members ack nothing. Returns the
    /// broker receipt, or `None` if the bundle was closed already.
    pub fn close(&self, receipt: &str) -> Option<String> {
        let (broker, member) = split_receipt(receipt);
        member?;
        let mut state = self.state.lock().expect("poisoned");
        state.open.remove(broker).map(|_| broker.to_string())
    }

    /// The message that gives back one delivery after `delay` (with its bundle's priority).
    pub fn give_back_one(&self, delivery: Delivery, delay: Duration) -> GiveBack {
        let priority = self
            .state
            .lock()
            .expect("poisoned")
            .priority_of(&delivery.receipt);
        let mut back = GiveBack::default();
        back.push(delivery, priority, delay);
        back
    }

    /// Keeps deliveries that a receive could not hand out (or a failed give-back), for the
    /// next receive of their queue, oldest first.
    pub fn hold(&self, deliveries: Vec<Delivery>) {
        if deliveries.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut state = self.state.lock().expect("poisoned");
        for delivery in deliveries {
            let priority = state.priority_of(&delivery.receipt);
            state
                .surplus
                .entry(delivery.queue.clone())
                .or_default()
                .push_back(Held {
                    delivery,
                    priority,
                    since: now,
                });
        }
    }

    /// How many deliveries of `queue` are held.
    pub fn held(&self, queue: &str) -> usize {
        let state = self.state.lock().expect("poisoned");
        state.surplus.get(queue).map_or(0, VecDeque::len)
    }

    /// Takes up to `max` held deliveries of `queue`, oldest first.
    pub fn take_held(&self, queue: &str, max: usize) -> Vec<Delivery> {
        let mut state = self.state.lock().expect("poisoned");
        let Some(held) = state.surplus.get_mut(queue) else {
            return Vec::new();
        };
        let n = max.min(held.len());
        held.drain(..n).map(|h| h.delivery).collect()
    }

    /// Takes the held deliveries of `queue` older than `max_age`, to give back (their broker
    /// message may be delivered again by now, e.g. after an SQS visibility timeout).
    pub fn take_aged(&self, queue: &str, max_age: Duration) -> GiveBack {
        let mut state = self.state.lock().expect("poisoned");
        let mut back = GiveBack::default();
        let Some(held) = state.surplus.get_mut(queue) else {
            return back;
        };
        while held.front().is_some_and(|h| h.since.elapsed() > max_age) {
            let h = held.pop_front().expect("front checked");
            back.push(h.delivery, h.priority, Duration::ZERO);
        }
        back
    }

    /// Takes every held delivery of every queue, to give back (see
    /// [`Queue::release`](crate::Queue::release)).
    pub fn take_all_held(&self) -> GiveBack {
        let mut state = self.state.lock().expect("poisoned");
        let mut back = GiveBack::default();
        for (_, held) in state.surplus.drain() {
            for h in held {
                back.push(h.delivery, h.priority, Duration::ZERO);
            }
        }
        back
    }
}

impl Bundles {
    /// Gives `back` back to the broker: publishes its messages with `publish`, then settles
    /// its deliveries with `settle` (which acks or deletes the broker messages this
    /// completes). If the publish fails, the deliveries are [held](Self::hold) again for the
    /// next receive, `settle` is not called and the publish error is returned. An empty
    /// `back` calls neither.
    pub async fn give_back<P, PF, S, SF>(&self, back: GiveBack, publish: P, settle: S) -> Result<()>
    where
        P: FnOnce(Vec<QueueMessage>) -> PF,
        PF: Future<Output = Result<()>>,
        S: FnOnce(Vec<Delivery>) -> SF,
        SF: Future<Output = Result<()>>,
    {
        if back.is_empty() {
            return Ok(());
        }
        let GiveBack {
            messages,
            deliveries,
        } = back;
        if let Err(e) = publish(messages).await {
            self.hold(deliveries);
            return Err(e);
        }
        settle(deliveries).await
    }
}

impl Bundles {
    /// What a receive of `queue` returns: held deliveries first (oldest first), then `fresh`
    /// ones, at most `max` in all; the fresh ones that do not fit are [held](Self::hold) for
    /// the next receive. Call it after the receive's last `.await`, so that a cancelled
    /// receive drops nothing.
    pub fn hand_out(&self, queue: &str, max: usize, mut fresh: Vec<Delivery>) -> Vec<Delivery> {
        let mut out = self.take_held(queue, max);
        let room = max - out.len();
        if fresh.len() > room {
            self.hold(fresh.split_off(room));
        }
        out.extend(fresh);
        out
    }
}

/// The Switchyard queues one adapter handle has used (set up, published to, received from),
/// so that [`Queue::destroy`](crate::Queue::destroy) deletes the broker queues of those and
/// of no others.
#[derive(Debug, Default)]
pub struct UsedQueues {
    names: Mutex<BTreeSet<String>>,
}

impl UsedQueues {
    /// Notes that this handle uses `queue`.
    pub fn note(&self, queue: &str) {
        self.names
            .lock()
            .expect("poisoned")
            .insert(queue.to_string());
    }

    /// The queues used so far, in name order.
    pub fn names(&self) -> Vec<String> {
        self.names
            .lock()
            .expect("poisoned")
            .iter()
            .cloned()
            .collect()
    }

    /// Destroys the broker queues this handle used: calls `delete` with every queue noted so
    /// far, and forgets them all once it succeeds (a failed `delete` can be repeated).
    pub async fn destroy<F, Fut>(&self, delete: F) -> Result<()>
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        delete(self.names()).await?;
        self.names.lock().expect("poisoned").clear();
        Ok(())
    }
}

fn message(job_id: JobId, queue: &str, priority: i16, delay: Duration) -> QueueMessage {
    QueueMessage {
        job_id,
        queue: queue.to_string(),
        priority,
        delay,
    }
}

#[cfg(test)]
mod tests;
