//! Retry backoff: exponential with jitter.

use std::time::Duration;

/// Exponential backoff with jitter: attempt `n` (1-based) waits
/// `min(base * 2^(n-1), max)`, scaled by a random factor in `[1 - jitter, 1 + jitter]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Wait after the first failure.
    pub base: Duration,
    /// Longest wait.
    pub max: Duration,
    /// Relative jitter, 0.0 to 1.0.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(3600),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The wait before the attempt after failed attempt `attempt` (1-based), without jitter.
    pub fn nominal(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        self.base
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The wait, with jitter applied.
    pub fn delay(&self, attempt: u32) -> Duration {
        let nominal = self.nominal(attempt).as_secs_f64();
        let j = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - j + 2.0 * j * fastrand::f64();
        Duration::from_secs_f64(nominal * factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_caps() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            jitter: 0.0,
        };
        assert_eq!(b.nominal(1), Duration::from_millis(100));
        assert_eq!(b.nominal(2), Duration::from_millis(200));
        assert_eq!(b.nominal(4), Duration::from_millis(800));
        assert_eq!(b.nominal(5), Duration::from_secs(1));
        assert_eq!(b.nominal(200), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let b = Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(100),
            jitter: 0.2,
        };
        for _ in 0..1000 {
            let d = b.delay(1).as_secs_f64();
            assert!((8.0..=12.0).contains(&d), "{d}");
        }
    }
}
