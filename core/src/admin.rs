//! What an operator's tools ask a backend about an instance without changing it: the schema
//! under its prefix ([`SchemaStatus`], from [`Storage::schema`](crate::Storage::schema)), what
//! `migrate` would apply ([`PendingMigration`], from
//! [`Storage::pending_migrations`](crate::Storage::pending_migrations)), and the backend's own
//! health checks ([`HealthCheck`], from
//! [`Storage::health_checks`](crate::Storage::health_checks) and
//! [`Queue::health_checks`](crate::Queue::health_checks)) that `switchyard doctor` prints.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The schema an instance has under its prefix, as [`Storage::schema`](crate::Storage::schema)
/// finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaStatus {
    /// The latest schema version applied under the prefix; `None` when the prefix was never
    /// migrated (or was destroyed since).
    pub applied: Option<i64>,
    /// The version `migrate` of this build brings an instance to.
    pub expected: i64,
}

/// How an instance's schema compares with this build's ([`SchemaStatus::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaState {
    /// Nothing under the prefix: never migrated, or destroyed.
    Missing,
    /// Migrated by an older build: `migrate` upgrades it.
    Behind,
    /// At this build's version.
    Current,
    /// Migrated by a newer build, whose data this build may misread.
    Ahead,
}

impl SchemaStatus {
    /// A status for an instance at `applied` (`None`: no schema) where this build expects
    /// `expected`.
    pub fn new(applied: Option<i64>, expected: i64) -> Self {
        Self { applied, expected }
    }

    /// Missing, behind, current or ahead of this build.
    pub fn state(&self) -> SchemaState {
        match self.applied {
            None => SchemaState::Missing,
            Some(v) if v < self.expected => SchemaState::Behind,
            Some(v) if v == self.expected => SchemaState::Current,
            Some(_) => SchemaState::Ahead,
        }
    }

    /// Whether anything of the instance exists (any applied version).
    pub fn is_migrated(&self) -> bool {
        self.applied.is_some()
    }
}

/// One migration that `migrate` would apply, as
/// [`Storage::pending_migrations`](crate::Storage::pending_migrations) lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingMigration {
    /// Its schema version (applied in ascending order).
    pub version: i64,
    /// What it runs, in order: SQL statements rendered for the prefix on SQL backends, one
    /// line per step on others (Redis: which keys change and how).
    pub steps: Vec<String>,
}

/// The outcome of one [`HealthCheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Fine.
    Ok,
    /// Works, but something puts jobs at risk or will need attention.
    Warn,
    /// Broken: Switchyard cannot work like this.
    Fail,
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "fail",
        })
    }
}

/// One line of `switchyard doctor`: what was checked, how it went, and the detail an operator
/// acts on. Details never contain a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// A short stable name (`redis persistence`, `clock skew`, `broker queue default`).
    pub name: String,
    /// How it went.
    pub status: CheckStatus,
    /// What was found, and for a warning or failure what to do.
    pub detail: String,
}

impl HealthCheck {
    /// A check with this outcome.
    pub fn new(name: impl Into<String>, status: CheckStatus, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status,
            detail: detail.into(),
        }
    }

    /// A passed check.
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, CheckStatus::Ok, detail)
    }

    /// A warning.
    pub fn warn(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, CheckStatus::Warn, detail)
    }

    /// A failure.
    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, CheckStatus::Fail, detail)
    }
}

/// The clock difference above which [`clock_skew_check`] warns: leases, delays and cron times
/// are the storage's clock, while timeouts and backoff are the worker's, so a large skew shifts
/// retries and makes leases look expired early or late.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(2);

/// The `clock skew` check of a backend whose server said `server_now` between the local
/// instants `sent` and `received`: the server's time is compared with the middle of the round
/// trip, and a difference above [`MAX_CLOCK_SKEW`] (beyond half the round trip) is a warning.
pub fn clock_skew_check(
    server_now: DateTime<Utc>,
    sent: DateTime<Utc>,
    received: DateTime<Utc>,
) -> HealthCheck {
    let half_trip = (received - sent) / 2;
    let local = sent + half_trip;
    let skew = server_now - local;
    let ms = skew.num_milliseconds();
    let slack = half_trip.num_milliseconds().unsigned_abs();
    let limit = MAX_CLOCK_SKEW.as_millis() as u64 + slack;
    let detail = format!(
        "server clock is {} ms {} this host's (round trip {} ms)",
        ms.unsigned_abs(),
        if ms >= 0 { "ahead of" } else { "behind" },
        (received - sent).num_milliseconds()
    );
    if ms.unsigned_abs() > limit {
        HealthCheck::warn(
            "clock skew",
            format!(
                "{detail}; more than {} s shifts lease expiry, delays and retries: sync both \
                 clocks with NTP",
                MAX_CLOCK_SKEW.as_secs()
            ),
        )
    } else {
        HealthCheck::ok("clock skew", detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_states() {
        assert_eq!(SchemaStatus::new(None, 2).state(), SchemaState::Missing);
        assert_eq!(SchemaStatus::new(Some(1), 2).state(), SchemaState::Behind);
        assert_eq!(SchemaStatus::new(Some(2), 2).state(), SchemaState::Current);
        assert_eq!(SchemaStatus::new(Some(3), 2).state(), SchemaState::Ahead);
        assert!(!SchemaStatus::new(None, 2).is_migrated());
    }

    #[test]
    fn clock_skew_warns_past_the_threshold() {
        let t = Utc::now();
        let ms = chrono::Duration::milliseconds;
        let c = clock_skew_check(t + ms(5), t, t + ms(10));
        assert_eq!(c.status, CheckStatus::Ok, "{}", c.detail);
        let c = clock_skew_check(t + ms(10_000), t, t + ms(10));
        assert_eq!(c.status, CheckStatus::Warn, "{}", c.detail);
        assert!(c.detail.contains("ahead of"), "{}", c.detail);
        let c = clock_skew_check(t - ms(3_000), t, t + ms(10));
        assert_eq!(c.status, CheckStatus::Warn, "{}", c.detail);
        assert!(c.detail.contains("behind"), "{}", c.detail);
    }
}
