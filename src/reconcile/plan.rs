//! The planner: what to do with one gateway, from what it should run and
//! what it reports. A pure function.

use crate::{config::Digest, gateway::Live};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// It runs the desired digest: nothing to do.
    Keep,
    /// Apply, expecting the gateway still runs `expected` (`None`: nothing,
    /// e.g. new or restarted empty — not drift, just a push).
    Apply { expected: Option<Digest> },
}

pub fn plan(desired: &Digest, live: &Live) -> Action {
    match &live.digest {
        Some(running) if running == desired => Action::Keep,
        running => Action::Apply {
            expected: running.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(digest: Option<&Digest>) -> Live {
        Live {
            digest: digest.cloned(),
            generation: None,
        }
    }

    #[test]
    fn applies_only_where_digests_differ() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        assert_eq!(plan(&a, &live(Some(&a))), Action::Keep);
        assert_eq!(
            plan(&a, &live(Some(&b))),
            Action::Apply { expected: Some(b) }
        );
        assert_eq!(plan(&a, &live(None)), Action::Apply { expected: None });
    }
}
