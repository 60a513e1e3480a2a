//! Unit tests of bundle packing and the `Bundles` bookkeeping.

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
    let receipts: std::collections::HashSet<&str> = d.iter().map(|d| d.receipt.as_str()).collect();
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
    let ids = vec![
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    ];
    let d = b.open("q", "7:42".into(), ids.clone(), 4);
    b.settle(&d[0].receipt);
    let again = b
        .unsettled(&d[1].receipt, "q", ids[1])
        .expect("open bundle");
    assert_eq!(
        again.iter().map(|m| m.job_id).collect::<Vec<_>>(),
        ids[2..].to_vec(),
        "the settled member and the excepted one are left out"
    );
    assert!(again.iter().all(|m| m.priority == 4 && m.queue == "q"));
    assert!(b.is_member(&d[1].receipt), "peeking keeps the bundle open");
    assert_eq!(b.close(&d[1].receipt).as_deref(), Some("7:42"));
    assert_eq!(b.close(&d[1].receipt), None);
    assert_eq!(b.settle(&d[2].receipt), None);
    assert_eq!(b.unsettled(&d[2].receipt, "q", ids[2]), None);
}

#[test]
fn surplus_is_handed_out_in_order_and_aged_out() {
    let b = Bundles::default();
    let ids: Vec<JobId> = (0..5).map(|_| Uuid::now_v7()).collect();
    let mut d = b.open("q", "r".into(), ids.clone(), 7);
    let rest = d.split_off(2);
    b.hold(rest);
    assert_eq!(b.held("q"), 3);
    assert!(b.take_aged("q", Duration::from_secs(60)).is_empty());
    let got = b.take_held("q", 2);
    assert_eq!(got.iter().map(|d| d.job_id).collect::<Vec<_>>(), ids[2..4]);
    assert!(b.take_held("other", 5).is_empty());
    std::thread::sleep(Duration::from_millis(2));
    let aged = b.take_aged("q", Duration::from_millis(1));
    assert_eq!(aged.messages.len(), 1);
    assert_eq!(aged.messages[0].job_id, ids[4]);
    assert_eq!(
        aged.messages[0].priority, 7,
        "the bundle's priority is kept"
    );
    assert_eq!(aged.deliveries[0].receipt, "r 4");
    assert_eq!(b.held("q"), 0);

    // A failed give-back is held again, then released with everything else.
    b.hold(aged.deliveries);
    let all = b.take_all_held();
    assert_eq!(all.messages.len(), 1);
    assert_eq!(all.messages[0].priority, 7);
    assert!(b.take_all_held().is_empty());
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn give_back_publishes_then_settles() {
    let b = Bundles::default();
    let ids: Vec<JobId> = (0..3).map(|_| Uuid::now_v7()).collect();
    let d = b.open("q", "r".into(), ids.clone(), 2);
    let back = b.give_back_one(d[1].clone(), Duration::from_secs(3));
    let published = Mutex::new(Vec::new());
    let settled = Mutex::new(Vec::new());
    block_on(b.give_back(
        back,
        |m| async {
            published.lock().unwrap().extend(m);
            Ok(())
        },
        |ds| async {
            settled.lock().unwrap().extend(ds);
            Ok(())
        },
    ))
    .unwrap();
    let published = published.into_inner().unwrap();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].job_id, ids[1]);
    assert_eq!(published[0].priority, 2, "the bundle's priority is kept");
    assert_eq!(published[0].delay, Duration::from_secs(3));
    let settled = settled.into_inner().unwrap();
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].receipt, "r 1");
    assert_eq!(b.held("q"), 0);

    // Nothing to give back: neither is called.
    block_on(b.give_back(
        GiveBack::default(),
        |_| async { panic!("nothing to publish") },
        |_| async { panic!("nothing to settle") },
    ))
    .unwrap();
}

#[test]
fn a_failed_give_back_holds_the_deliveries_again() {
    let b = Bundles::default();
    let ids: Vec<JobId> = (0..2).map(|_| Uuid::now_v7()).collect();
    let d = b.open("q", "r".into(), ids.clone(), 0);
    let back = b.give_back_one(d[0].clone(), Duration::ZERO);
    let e = block_on(b.give_back(
        back,
        |_| async { Err(crate::error::Error::invalid("broker down")) },
        |_| async { panic!("not settled after a failed publish") },
    ))
    .unwrap_err();
    assert_eq!(e.message(), "broker down");
    assert_eq!(b.held("q"), 1);
    assert_eq!(b.take_held("q", 5)[0].job_id, ids[0]);
    assert!(b.is_member(&d[0].receipt), "its bundle stays open");
}

#[test]
fn a_receive_hands_out_held_then_fresh_and_holds_the_rest() {
    let b = Bundles::default();
    let ids: Vec<JobId> = (0..6).map(|_| Uuid::now_v7()).collect();
    let mut d = b.open("q", "r".into(), ids.clone(), 0);
    let fresh = d.split_off(2);
    b.hold(d);
    let out = b.hand_out("q", 3, fresh);
    assert_eq!(
        out.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        ids[..3],
        "held first, then fresh, `max` in all"
    );
    assert_eq!(b.held("q"), 3, "the fresh ones that did not fit are held");
    let out = b.hand_out("q", 10, Vec::new());
    assert_eq!(out.iter().map(|d| d.job_id).collect::<Vec<_>>(), ids[3..]);
    assert!(b.hand_out("q", 10, Vec::new()).is_empty());
}

#[test]
fn used_queues_are_destroyed_then_forgotten() {
    let used = UsedQueues::default();
    used.note("b");
    used.note("a");
    used.note("b");
    assert_eq!(used.names(), ["a", "b"]);
    let e = block_on(used.destroy(|names| async move {
        assert_eq!(names, ["a", "b"]);
        Err(crate::error::Error::invalid("cannot delete"))
    }))
    .unwrap_err();
    assert_eq!(e.message(), "cannot delete");
    assert_eq!(used.names(), ["a", "b"], "a failed destroy can be repeated");
    let deleted = Mutex::new(Vec::new());
    block_on(used.destroy(|names| async {
        deleted.lock().unwrap().extend(names);
        Ok(())
    }))
    .unwrap();
    assert_eq!(deleted.into_inner().unwrap(), ["a", "b"]);
    assert!(used.names().is_empty());
}
