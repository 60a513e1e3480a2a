//! SQS's service limits that the queue keeps to, and durations in SQS's whole seconds.

use std::time::Duration;

/// Most entries in one SQS batch call, and most messages one receive returns.
pub const MAX_BATCH: usize = 10;
/// Longest per-message delay SQS holds a message for (`DelaySeconds`).
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Longest visibility timeout SQS allows from a message's receipt.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// Longest long poll (`WaitTimeSeconds`).
pub const MAX_WAIT: Duration = Duration::from_secs(20);

/// Whole seconds, rounded up (never deliver early), capped at `max`.
pub(crate) fn ceil_secs(d: Duration, max: Duration) -> i32 {
    let d = d.min(max);
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up_and_cap() {
        assert_eq!(ceil_secs(Duration::ZERO, MAX_WAIT), 0);
        assert_eq!(ceil_secs(Duration::from_millis(100), MAX_WAIT), 1);
        assert_eq!(ceil_secs(Duration::from_millis(2000), MAX_WAIT), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001), MAX_WAIT), 3);
        assert_eq!(ceil_secs(Duration::from_secs(60), MAX_WAIT), 20);
        assert_eq!(
            ceil_secs(Duration::from_secs(86_400), MAX_VISIBILITY),
            43_200
        );
        assert_eq!(ceil_secs(Duration::from_secs(3_600), MAX_DELAY), 900);
    }
}
