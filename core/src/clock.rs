//! Where "now" comes from: the [`Clock`] trait, the [`SystemClock`] every backend uses by
//! default, and the [`TestClock`] that tests move by hand, so that delays, backoff and leases
//! can be tested without waiting.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

/// A source of the current time. Backends that accept one (SQLite's
/// `SqliteConfig::with_clock`) read every "now" from it, and so do the worker's retry times
/// and the client's relative delays.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock ([`Utc::now`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock as a [`SharedClock`].
pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that stands still until it is moved: [`TestClock::advance`] and
/// [`TestClock::set`]. Clones share one time, so a test keeps a clone and hands another to the
/// storage and the worker.
///
/// ```
/// use std::time::Duration;
/// use switchyard_core::TestClock;
///
/// let clock = TestClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(90));
/// assert_eq!((clock.now() - start).num_seconds(), 90);
/// ```
#[derive(Clone)]
pub struct TestClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl TestClock {
    /// A clock standing at the current wall-clock time, truncated to the millisecond (the
    /// resolution storages keep), so that what a test computes from it compares exactly with
    /// what a storage returns.
    pub fn new() -> Self {
        let now = Utc::now();
        Self::at(
            now.duration_trunc(TimeDelta::milliseconds(1))
                .unwrap_or(now),
        )
    }

    /// A clock standing at `at`.
    pub fn at(at: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(at)),
        }
    }

    /// The time the clock stands at.
    pub fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = TimeDelta::from_std(by).unwrap_or(TimeDelta::MAX);
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now = now
            .checked_add_signed(by)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
    }

    /// Sets the clock to `at` (which may be earlier than now).
    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// This clock as a [`SharedClock`] (sharing its time).
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TestClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TestClock").field(&self.now()).finish()
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        TestClock::now(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_clock_moves_only_when_told_and_clones_share_it() {
        let clock = TestClock::new();
        let other = clock.clone();
        let start = clock.now();
        assert_eq!(start.timestamp_subsec_micros() % 1000, 0, "truncated to ms");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now(), start);
        other.advance(Duration::from_millis(1500));
        assert_eq!(clock.now() - start, TimeDelta::milliseconds(1500));
        clock.set(start);
        assert_eq!(other.now(), start);
        let shared = clock.shared();
        clock.advance(Duration::from_secs(1));
        assert_eq!(shared.now() - start, TimeDelta::seconds(1));
    }
}
