//! What travels on the wire besides job ids: a receipt names the consumer channel that
//! delivered (`<consumer id>:<delivery tag>`), and job priorities map onto AMQP's
//! `0..=x-max-priority`.

use switchyard_core::{Error, Result};

/// A receipt: `"<consumer id>:<delivery tag>"`.
pub(crate) fn receipt(consumer: u64, tag: u64) -> String {
    format!("{consumer}:{tag}")
}

/// The consumer id and delivery tag of a [`receipt`]; `Invalid` for anything else.
pub(crate) fn parse_receipt(receipt: &str) -> Result<(u64, u64)> {
    receipt
        .split_once(':')
        .and_then(|(c, t)| Some((c.parse().ok()?, t.parse().ok()?)))
        .ok_or_else(|| {
            Error::invalid(format!(
                "`{receipt}` is not a RabbitMQ receipt (expected `<consumer>:<delivery tag>`)"
            ))
        })
}

/// AMQP priority back to a job priority (what [`amqp_priority`] maps onto it; negative
/// priorities come back as -1).
pub(crate) fn job_priority(amqp: u8) -> i16 {
    i16::from(amqp) - 1
}

/// Job priority to AMQP priority: negative → 0, `p >= 0` → `p + 1`, capped at `max`.
pub(crate) fn amqp_priority(priority: i16, max: u8) -> u8 {
    if priority < 0 {
        0
    } else {
        (i32::from(priority) + 1).min(i32::from(max)) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_map_onto_the_broker_range() {
        assert_eq!(amqp_priority(-3, 10), 0);
        assert_eq!(amqp_priority(0, 10), 1);
        assert_eq!(amqp_priority(5, 10), 6);
        assert_eq!(amqp_priority(9, 10), 10);
        assert_eq!(amqp_priority(i16::MAX, 10), 10);
        assert_eq!(amqp_priority(3, 0), 0);
    }

    #[test]
    fn receipts_round_trip() {
        assert_eq!(parse_receipt(&receipt(3, 99)).unwrap(), (3, 99));
        assert!(parse_receipt("nope").is_err());
    }
}
