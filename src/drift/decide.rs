//! The drift rule, once: from what one gateway runs and what the ledger
//! says Sluice verified there, whether it is in sync, not yet updated or
//! drifted, and what to do about it. A pure function, used by the
//! reconciler (each gateway of a pass or a scan) and by `sluice drift`, so
//! the two never disagree.
//!
//! ```text
//!   live ─┐
//!   desired ─┤
//!   record, deployment ─┼──► decide() ──► Decision { found, act }
//!   drift policy, trigger ─┤
//!   gate ─┘
//! ```

use crate::{
    config::{Digest, model::DriftPolicy},
    ledger::{GatewayRecord, GatewayState, Trigger},
};
use serde::Serialize;

/// What is known about one gateway when it has just been read.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// What the revision renders for it.
    pub desired: &'a Digest,
    /// What it reports running (`None`: nothing).
    pub live: Option<&'a Digest>,
    /// The ledger's record of it, if any.
    pub record: Option<&'a GatewayRecord>,
    /// The digest its environment last ran whole (the newest deployment).
    pub deployment: Option<&'a Digest>,
    /// The environment's `drift.policy`.
    pub policy: DriftPolicy,
    /// What started the read.
    pub trigger: Trigger,
    /// The promotion gate holds the desired version back.
    pub gated: bool,
}

/// What a gateway was found running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Found {
    /// The desired version.
    InSync,
    /// Nothing (restarted empty, or never configured): not drift.
    Empty,
    /// A version Sluice has not verified there yet (a change not applied
    /// yet, or a gateway it never applied to): not drift.
    Pending,
    /// Something other than the version Sluice verified there.
    Drifted,
}

/// What to do with the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Leave it as it runs: in sync, or drifted under `detect` or `alert`.
    Keep,
    /// Leave it: the promotion gate holds the desired version back.
    Hold,
    /// Apply the desired version, recording this trigger.
    Apply(Trigger),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub found: Found,
    pub act: Act,
}

/// Whether Sluice verified `desired` on this gateway: its record says it
/// was verified there (in sync, or drifted since). A record whose state a
/// failed read overwrote still counts when the whole environment last ran
/// `desired`; a gateway with no record was never verified (a new one is
/// pushed, not called drifted).
fn verified(facts: &Facts<'_>) -> bool {
    let desired = facts.desired;
    facts.record.is_some_and(|record| {
        record.desired_digest.as_ref() == Some(desired)
            && (matches!(
                record.state,
                GatewayState::InSync | GatewayState::Pinned | GatewayState::Drifted
            ) || facts.deployment == Some(desired))
    })
}

pub fn decide(facts: &Facts<'_>) -> Decision {
    let found = match facts.live {
        Some(live) if live == facts.desired => Found::InSync,
        None => Found::Empty,
        Some(_) if verified(facts) => Found::Drifted,
        Some(_) => Found::Pending,
    };
    let act = match found {
        Found::InSync => Act::Keep,
        _ if facts.gated => Act::Hold,
        // NB: someone asked for this sync: put it back whatever the policy,
        // and record that it was asked for.
        Found::Drifted if facts.trigger == Trigger::Manual => Act::Apply(Trigger::Manual),
        Found::Drifted if facts.policy == DriftPolicy::Heal => Act::Apply(Trigger::Drift),
        Found::Drifted => Act::Keep,
        Found::Empty | Found::Pending => Act::Apply(facts.trigger),
    };
    Decision { found, act }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(desired: &Digest, state: GatewayState) -> GatewayRecord {
        GatewayRecord {
            environment: "production".into(),
            gateway: "gw".into(),
            desired_digest: Some(desired.clone()),
            desired_revision: None,
            observed_digest: None,
            state,
            changed_at: 0,
            updated_at: 0,
            error: None,
        }
    }

    type Row<'a> = (
        Option<&'a Digest>,
        Option<&'a GatewayRecord>,
        Option<&'a Digest>,
        DriftPolicy,
        Trigger,
        bool,
        Found,
        Act,
    );

    #[test]
    fn the_drift_rule() {
        use {Act::*, DriftPolicy::*, Found::*, GatewayState as S, Trigger::*};
        let desired = Digest::of(b"desired");
        let older = Digest::of(b"older");
        let edited = Digest::of(b"edited");
        let verified = record(&desired, S::InSync);
        let drifted = record(&desired, S::Drifted);
        let failed_read = record(&desired, S::Failed);
        let not_yet = record(&desired, S::Pending);
        let before = record(&older, S::InSync);
        let here = Some(&desired);
        // (live, record, deployment, policy, trigger, gated) → (found, act)
        #[rustfmt::skip]
        let table: Vec<Row<'_>> = vec![
            // It runs the desired version: nothing to do, whatever else.
            (Some(&desired), Some(&verified), here, Heal, Poll, false, InSync, Keep),
            (Some(&desired), None, None, Detect, Manual, true, InSync, Keep),
            // Runs nothing: pushed, never drift.
            (None, Some(&verified), here, Detect, Poll, false, Empty, Apply(Poll)),
            (None, None, None, Heal, Startup, false, Empty, Apply(Startup)),
            // No record: never verified here, so not drift (a new gateway,
            // or `sluice drift` without a ledger).
            (Some(&edited), None, None, Heal, Poll, false, Pending, Apply(Poll)),
            (Some(&edited), None, here, Heal, Drift, false, Pending, Apply(Drift)),
            // The record is of an older version: a change not applied yet.
            (Some(&older), Some(&before), None, Heal, Webhook, false, Pending, Apply(Webhook)),
            // Applied, not verified yet: not drift.
            (Some(&edited), Some(&not_yet), None, Heal, Poll, false, Pending, Apply(Poll)),
            // Verified here, now something else: drift, handled per policy.
            (Some(&edited), Some(&verified), None, Detect, Poll, false, Drifted, Keep),
            (Some(&edited), Some(&verified), None, Alert, Drift, false, Drifted, Keep),
            (Some(&edited), Some(&drifted), None, Alert, Poll, false, Drifted, Keep),
            (Some(&edited), Some(&verified), None, Heal, Poll, false, Drifted, Apply(Drift)),
            (Some(&edited), Some(&drifted), None, Heal, Startup, false, Drifted, Apply(Drift)),
            // A manual sync puts it back whatever the policy, as manual.
            (Some(&edited), Some(&verified), None, Detect, Manual, false, Drifted, Apply(Manual)),
            (Some(&edited), Some(&verified), None, Heal, Manual, false, Drifted, Apply(Manual)),
            // A failed read overwrote the record's state: the environment's
            // last deployment still says Sluice verified this version.
            (Some(&edited), Some(&failed_read), here, Detect, Drift, false, Drifted, Keep),
            (Some(&edited), Some(&failed_read), None, Detect, Drift, false, Pending, Apply(Drift)),
            // The gate holds the new version back: nothing is applied.
            (Some(&older), Some(&before), None, Heal, Poll, true, Pending, Hold),
            (None, None, None, Heal, Manual, true, Empty, Hold),
            (Some(&edited), Some(&verified), None, Heal, Drift, true, Drifted, Hold),
        ];
        for (i, (live, record, deployment, policy, trigger, gated, found, act)) in
            table.into_iter().enumerate()
        {
            let facts = Facts {
                desired: &desired,
                live,
                record,
                deployment,
                policy,
                trigger,
                gated,
            };
            assert_eq!(
                decide(&facts),
                Decision { found, act },
                "row {i}: {facts:?}"
            );
        }
    }
}
