//! The key layout of one storage instance ([`Keys`]): every key starts with `{prefix}:`, the
//! braces a Redis Cluster hash tag that keeps all of an instance's keys in one slot; every
//! script gets that start as its first argument. `docs/redis.md` lists the keys.

use redis::{Script, ScriptInvocation};
use switchyard_core::JobState;

/// Most ids the storage sends in one round trip (a pipeline or one script call), so a large
/// `claim_ids`, `mark_dispatched`, `list` or migration never blocks the server for long.
pub(crate) const CHUNK: usize = 1000;

/// The names of one instance's keys, built from its prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `{prefix}:` — every key starts with it.
    p: String,
}

impl Keys {
    /// The keys of the instance with this (checked) prefix.
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            p: format!("{{{prefix}}}:"),
        }
    }

    /// The start of every key, `{prefix}:`.
    pub(crate) fn prefix(&self) -> &str {
        &self.p
    }

    /// The key `{prefix}:<name>` (`leases`, `finlog`, `unique`, `queues`, `meta`, `wake`, …).
    pub(crate) fn k(&self, name: &str) -> String {
        format!("{}{name}", self.p)
    }

    /// The hash of job `id`.
    pub(crate) fn job(&self, id: &str) -> String {
        format!("{}job:{id}", self.p)
    }

    /// The per-queue index of the jobs of `queue` in `state` (running jobs have none: the
    /// lease set lists them).
    pub(crate) fn state(&self, queue: &str, state: JobState) -> String {
        format!("{}s:{queue}:{}", self.p, state.as_str())
    }

    /// A call of `script` with the key prefix as its first argument (the scripts build job
    /// keys from it).
    pub(crate) fn invocation<'a>(&self, script: &'a Script) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        inv.arg(&self.p);
        inv
    }
}
