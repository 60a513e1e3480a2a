//! The Lua scripts that make every state change atomic, each prefixed with `lua/prelude.lua`.

use redis::Script;

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// Every script of the backend, compiled once per storage (the SHA is computed here; Redis
/// loads a script on first use through `EVALSHA`, falling back to `EVAL` once).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub enqueue: Script,
    pub claim: Script,
    pub claim_ids: Script,
    pub heartbeat: Script,
    pub complete: Script,
    pub rescue: Script,
    pub cancel: Script,
    pub retry: Script,
    pub prune: Script,
    pub lead: Script,
    pub resign: Script,
    pub dispatched: Script,
}

pub(crate) fn with_prelude(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            enqueue: with_prelude(include_str!("lua/enqueue.lua")),
            claim: with_prelude(include_str!("lua/claim.lua")),
            claim_ids: with_prelude(include_str!("lua/claim_ids.lua")),
            heartbeat: with_prelude(include_str!("lua/heartbeat.lua")),
            complete: with_prelude(include_str!("lua/complete.lua")),
            rescue: with_prelude(include_str!("lua/rescue.lua")),
            cancel: with_prelude(include_str!("lua/cancel.lua")),
            retry: with_prelude(include_str!("lua/retry.lua")),
            prune: with_prelude(include_str!("lua/prune.lua")),
            lead: with_prelude(include_str!("lua/lead.lua")),
            resign: with_prelude(include_str!("lua/resign.lua")),
            dispatched: with_prelude(include_str!("lua/dispatched.lua")),
        }
    }

    /// All scripts, for loading them ahead of use.
    pub fn all(&self) -> [&Script; 12] {
        [
            &self.enqueue,
            &self.claim,
            &self.claim_ids,
            &self.heartbeat,
            &self.complete,
            &self.rescue,
            &self.cancel,
            &self.retry,
            &self.prune,
            &self.lead,
            &self.resign,
            &self.dispatched,
        ]
    }
}
