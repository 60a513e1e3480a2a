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

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    since: Instant,
}

/// Ids given back to the broker: publish `messages`, then settle `receipts` (acking the broker
/// messages this returns).
#[derive(Debug, Default)]
pub struct GiveBack {
    /// One message per id to publish again.
    pub messages: Vec<QueueMessage>,
    /// The deliveries to settle once `messages` are published.
    pub receipts: Vec<String>,
}

impl GiveBack {
    /// Nothing to give back.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

/// The receiving side of bundles, one per adapter instance: which members of each received
/// message are still unsettled, and the surplus deliveries waiting for the next receive.
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

    /// Closes the bundle `receipt` belongs to before all its members are settled (a broker
    /// that must ack early): returns its broker receipt and one message per unsettled member,
    /// to publish again before the ack. `None` for a message naming one job or a closed bundle.
    pub fn close(&self, receipt: &str, queue: &str) -> Option<(String, Vec<QueueMessage>)> {
        let (broker, member) = split_receipt(receipt);
        member?;
        let open = self.state.lock().expect("poisoned").open.remove(broker)?;
        let messages = open
            .ids
            .into_iter()
            .flatten()
            .map(|id| message(id, queue, open.priority, Duration::ZERO))
            .collect();
        Some((broker.to_string(), messages))
    }

    /// The message that gives back one delivery after `delay`.
    pub fn give_back_one(&self, delivery: &Delivery, delay: Duration) -> QueueMessage {
        let priority = self.priority_of(&delivery.receipt);
        message(delivery.job_id, &delivery.queue, priority, delay)
    }

    fn priority_of(&self, receipt: &str) -> i16 {
        let (broker, _) = split_receipt(receipt);
        self.state
            .lock()
            .expect("poisoned")
            .open
            .get(broker)
            .map_or(0, |o| o.priority)
    }

    /// Keeps deliveries that a receive could not hand out, for the next receive of `queue`.
    pub fn hold(&self, queue: &str, deliveries: Vec<Delivery>) {
        if deliveries.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut state = self.state.lock().expect("poisoned");
        let held = state.surplus.entry(queue.to_string()).or_default();
        held.extend(deliveries.into_iter().map(|delivery| Held {
            delivery,
            since: now,
        }));
    }

    /// Takes up to `max` held deliveries of `queue`, oldest first; held ones older than
    /// `max_age` are not handed out but returned in the [`GiveBack`] (their broker message may
    /// be delivered again by now, e.g. after an SQS visibility timeout).
    pub fn take_held(
        &self,
        queue: &str,
        max: usize,
        max_age: Option<Duration>,
    ) -> (Vec<Delivery>, GiveBack) {
        let mut state = self.state.lock().expect("poisoned");
        let State { open, surplus } = &mut *state;
        let mut out = Vec::new();
        let mut give = GiveBack::default();
        let Some(held) = surplus.get_mut(queue) else {
            return (out, give);
        };
        while out.len() < max {
            let Some(h) = held.pop_front() else { break };
            if max_age.is_some_and(|age| h.since.elapsed() > age) {
                let priority = open
                    .get(split_receipt(&h.delivery.receipt).0)
                    .map_or(0, |o| o.priority);
                give.messages
                    .push(message(h.delivery.job_id, queue, priority, Duration::ZERO));
                give.receipts.push(h.delivery.receipt);
            } else {
                out.push(h.delivery);
            }
        }
        (out, give)
    }

    /// Takes every held delivery of every queue, to give back (see
    /// [`Queue::release`](crate::Queue::release)).
    pub fn take_all_held(&self) -> GiveBack {
        let mut state = self.state.lock().expect("poisoned");
        let State { open, surplus } = &mut *state;
        let mut give = GiveBack::default();
        for (queue, held) in surplus.drain() {
            for h in held {
                let priority = open
                    .get(split_receipt(&h.delivery.receipt).0)
                    .map_or(0, |o| o.priority);
                give.messages
                    .push(message(h.delivery.job_id, &queue, priority, Duration::ZERO));
                give.receipts.push(h.delivery.receipt);
            }
        }
        give
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
mod tests {
    use super::*;
    use uuid::Uuid;

    fn msgs(n: usize, queue: &str) -> Vec<QueueMessage> {
        (0..n)
            .map(|_| message(Uuid::now_v7(), queue, 0, Duration::ZERO))
            .collect()
    }

    #[test]
    fn small_publishes_stay_one_id_per_message() {
        let m = msgs(10, "q");
        let b = pack(&m, 10, |m| m.queue.clone());
        assert_eq!(b.len(), 10);
        assert!(b.iter().all(|b| b.job_ids.len() == 1));
    }

    #[test]
    fn large_publishes_pack_up_to_the_cap_in_order() {
        let m = msgs(25, "q");
        let b = pack(&m, 10, |m| m.queue.clone());
        // ceil(25 / 10) = 3 ids per message.
        assert_eq!(b.len(), 9);
        assert_eq!(b[0].job_ids, vec![m[0].job_id, m[1].job_id, m[2].job_id]);
        let flat: Vec<JobId> = b.iter().flat_map(|b| b.job_ids.clone()).collect();
        assert_eq!(flat, m.iter().map(|m| m.job_id).collect::<Vec<_>>());

        let m = msgs(500, "q");
        let b = pack(&m, 10, |m| m.queue.clone());
        assert_eq!(b.len(), 50);
        assert!(b.iter().all(|b| b.job_ids.len() == 10));
        let b = pack(&m, 1, |m| m.queue.clone());
        assert_eq!(b.len(), 500, "a cap of one turns packing off");
    }

    #[test]
    fn keys_never_share_a_bundle() {
        let mut m = msgs(30, "a");
        m.extend(msgs(30, "b"));
        m[5].priority = 3;
        let b = pack(&m, 10, |m| (m.queue.clone(), m.priority));
        for bundle in &b {
            let members: Vec<&QueueMessage> = m
                .iter()
                .filter(|x| bundle.job_ids.contains(&x.job_id))
                .collect();
            assert!(members
                .iter()
                .all(|x| x.queue == bundle.queue && x.priority == bundle.priority));
        }
        assert_eq!(b.iter().map(|b| b.job_ids.len()).sum::<usize>(), 60);
    }

    #[test]
    fn bodies_round_trip_and_reject_junk() {
        let ids = vec![Uuid::now_v7(), Uuid::nil(), Uuid::new_v4()];
        assert_eq!(decode_ids(&encode_ids(&ids)), Some(ids.clone()));
        assert_eq!(decode_ids(&encode_ids(&ids[..1])), Some(ids[..1].to_vec()));
        assert_eq!(decode_ids(""), None);
        assert_eq!(decode_ids("hello"), None);
        assert_eq!(decode_ids(&format!("{},x", ids[0])), None);
    }

    #[test]
    fn a_bundle_is_acked_once_every_member_is_settled() {
        let b = Bundles::default();
        let ids = vec![Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
        let d = b.open("q", "rh-1".into(), ids.clone(), 0);
        assert_eq!(d.len(), 3);
        let receipts: std::collections::HashSet<&str> =
            d.iter().map(|d| d.receipt.as_str()).collect();
        assert_eq!(receipts.len(), 3, "member receipts are distinct");
        assert!(b.is_member(&d[0].receipt));
        assert_eq!(b.settle(&d[1].receipt), None);
        assert_eq!(b.settle(&d[1].receipt), None, "settling twice counts once");
        assert_eq!(b.settle(&d[0].receipt), None);
        assert_eq!(b.settle(&d[2].receipt).as_deref(), Some("rh-1"));
        assert!(!b.is_member(&d[0].receipt));
        assert_eq!(
            b.settle(&d[2].receipt),
            None,
            "a closed bundle acks nothing"
        );

        let single = b.open("q", "rh-2".into(), vec![ids[0]], 0);
        assert_eq!(single[0].receipt, "rh-2");
        assert_eq!(b.settle("rh-2").as_deref(), Some("rh-2"));
    }

    #[test]
    fn closing_early_gives_back_the_unsettled_members() {
        let b = Bundles::default();
        let ids = vec![Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
        let d = b.open("q", "7:42".into(), ids.clone(), 4);
        b.settle(&d[0].receipt);
        let (broker, again) = b.close(&d[1].receipt, "q").expect("open bundle");
        assert_eq!(broker, "7:42");
        assert_eq!(
            again.iter().map(|m| m.job_id).collect::<Vec<_>>(),
            ids[1..].to_vec()
        );
        assert!(again.iter().all(|m| m.priority == 4 && m.queue == "q"));
        assert_eq!(b.settle(&d[2].receipt), None);
    }

    #[test]
    fn surplus_is_handed_out_in_order_and_aged_out() {
        let b = Bundles::default();
        let ids: Vec<JobId> = (0..5).map(|_| Uuid::now_v7()).collect();
        let mut d = b.open("q", "r".into(), ids.clone(), 0);
        let rest = d.split_off(2);
        b.hold("q", rest);
        let (got, give) = b.take_held("q", 2, None);
        assert!(give.is_empty());
        assert_eq!(got.iter().map(|d| d.job_id).collect::<Vec<_>>(), ids[2..4]);
        let (got, give) = b.take_held("other", 5, None);
        assert!(got.is_empty() && give.is_empty());
        let (got, give) = b.take_held("q", 5, Some(Duration::ZERO));
        assert!(got.is_empty());
        assert_eq!(give.messages.len(), 1);
        assert_eq!(give.messages[0].job_id, ids[4]);
        assert_eq!(give.receipts, vec![d[0].receipt.replace(" 0", " 4")]);

        b.hold("q", vec![d.pop().unwrap()]);
        let all = b.take_all_held();
        assert_eq!(all.messages.len(), 1);
        assert!(b.take_all_held().is_empty());
    }
}
