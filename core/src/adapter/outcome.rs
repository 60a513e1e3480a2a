//! Completion-status helpers: how a backend that learns which `(id, token)` pairs its
//! statement applied turns that into the per-completion answer `Storage::complete` returns.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::job::JobId;
use crate::storage::{Completion, CompletionStatus, LeaseRef, LeaseStatus, Outcome};

/// One status per completion, in the order given: [`CompletionStatus::Applied`] where
/// `applied` holds the completion's `(id, token)`, else [`CompletionStatus::Stale`] (the
/// attempt no longer holds the job, so nothing changed).
pub fn completion_statuses(
    completions: &[Completion],
    applied: &HashSet<(JobId, Uuid)>,
) -> Vec<CompletionStatus> {
    completions
        .iter()
        .map(|c| applied_if(applied.contains(&(c.id, c.token))))
        .collect()
}

/// [`CompletionStatus::Applied`] if `yes`, else [`CompletionStatus::Stale`]: for backends whose
/// script answers a flag per completion.
pub fn applied_if(yes: bool) -> CompletionStatus {
    if yes {
        CompletionStatus::Applied
    } else {
        CompletionStatus::Stale
    }
}

/// Whether an applied completion put a job back to be claimed again (an abort or a release),
/// so the storage should wake workers: the rare paths, off the success hot path.
pub fn requeued_any(completions: &[Completion], statuses: &[CompletionStatus]) -> bool {
    completions.iter().zip(statuses).any(|(c, s)| {
        *s == CompletionStatus::Applied
            && matches!(c.outcome, Outcome::Aborted { .. } | Outcome::Released)
    })
}

/// One status per lease, in the order given, for `Storage::heartbeat`: `Held` (with the job's
/// cancel flag) where `renewed` holds the lease's `(id, token)`, else `Lost`.
pub fn lease_statuses(
    leases: &[LeaseRef],
    renewed: &HashMap<(JobId, Uuid), bool>,
) -> Vec<LeaseStatus> {
    leases
        .iter()
        .map(|l| match renewed.get(&(l.id, l.token)) {
            Some(&cancel_requested) => LeaseStatus::Held { cancel_requested },
            None => LeaseStatus::Lost,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(outcome: Outcome) -> Completion {
        Completion {
            id: Uuid::now_v7(),
            token: Uuid::new_v4(),
            outcome,
        }
    }

    #[test]
    fn statuses_follow_the_applied_pairs() {
        let a = completion(Outcome::Succeeded { result: None });
        let b = completion(Outcome::Released);
        let applied: HashSet<_> = [(a.id, a.token)].into();
        let cs = [a, b];
        let st = completion_statuses(&cs, &applied);
        assert_eq!(st, vec![CompletionStatus::Applied, CompletionStatus::Stale]);
        assert!(!requeued_any(&cs, &st), "the release was stale");
        let st = vec![CompletionStatus::Applied; 2];
        assert!(requeued_any(&cs, &st));
    }

    #[test]
    fn lease_statuses_follow_the_renewed_pairs() {
        let held = LeaseRef {
            id: Uuid::now_v7(),
            token: Uuid::new_v4(),
        };
        let lost = LeaseRef {
            id: held.id,
            token: Uuid::new_v4(),
        };
        let renewed: HashMap<_, _> = [((held.id, held.token), true)].into();
        assert_eq!(
            lease_statuses(&[held, lost], &renewed),
            vec![
                LeaseStatus::Held {
                    cancel_requested: true
                },
                LeaseStatus::Lost
            ]
        );
    }
}
