//! An `Environment`'s status, built from what one reconcile observed: pure,
//! no I/O (the controller writes the result with server-side apply).
//!
//! ```text
//!   previous status ─┐
//!   Observed {       ├──► build() ──► EnvironmentStatus
//!     suspended | blocked | validation | pass report }
//! ```
//!
//! Conditions keep their `lastTransitionTime` while their status holds;
//! per-gateway entries keep theirs while state and observed digest hold;
//! `history` gains a record when a pass applied or failed, newest first,
//! bounded at [`HISTORY_LIMIT`](super::crd::HISTORY_LIMIT).

use super::crd::{
    ApplyRecord, EnvironmentStatus, GatewayStatus, condition, push_history, set_condition,
};
use crate::{
    config::Digest,
    ledger::{GatewayState, Outcome, Trigger},
    reconcile::{
        EnvironmentReport, GatewayReport,
        status::{short_digest, version},
    },
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition reasons (CamelCase, as Kubernetes wants them).
pub mod reason {
    pub const RECONCILED: &str = "Reconciled";
    pub const SUSPENDED: &str = "Suspended";
    pub const VALID: &str = "Valid";
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
    pub const GATEWAY_NAME_CLASH: &str = "GatewayNameClash";
    pub const ALL_IN_SYNC: &str = "AllInSync";
    pub const PROGRESSING: &str = "Progressing";
    pub const APPLY_FAILED: &str = "ApplyFailed";
    pub const DRIFTED: &str = "Drifted";
    pub const HEALED: &str = "Healed";
    pub const NO_DRIFT: &str = "NoDrift";
    pub const GATED: &str = "Gated";
    pub const LEDGER_UNWRITABLE: &str = "LedgerUnwritable";
    pub const NOT_GATED: &str = "NotGated";
}

/// Whether the revision passed validation.
#[derive(Debug, Clone, PartialEq)]
pub enum Validation {
    /// Not known this time (nothing was fetched): the condition is left as it was.
    Unknown,
    Valid,
    Invalid {
        reason: &'static str,
        message: String,
    },
}

/// One pass's report on the environment, and what started it.
#[derive(Debug, Clone, Copy)]
pub struct PassReport<'a> {
    pub revision: &'a str,
    pub trigger: Trigger,
    pub report: &'a EnvironmentReport,
    pub started: &'a Time,
}

/// What one reconcile of an `Environment` observed.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub generation: Option<i64>,
    pub now: Time,
    /// `spec.suspend` is set: nothing was applied.
    pub suspended: bool,
    /// Something stopped the reconcile before a pass (repository missing,
    /// fetch failed, ...): `(reason, message)` for `Ready`.
    pub blocked: Option<(&'static str, String)>,
    pub validation: Validation,
    /// The pass over the head, or over the last good revision when the head
    /// is invalid.
    pub pass: Option<PassReport<'a>>,
    /// The `sluice.dev/requestedAt` value this reconcile answered.
    pub handled_request: Option<String>,
}

impl<'a> Observed<'a> {
    pub fn new(generation: Option<i64>, now: Time) -> Self {
        Observed {
            generation,
            now,
            suspended: false,
            blocked: None,
            validation: Validation::Unknown,
            pass: None,
            handled_request: None,
        }
    }
}

/// The status after `observed`, from the `previous` one.
pub fn build(previous: &EnvironmentStatus, observed: &Observed<'_>) -> EnvironmentStatus {
    let mut status = previous.clone();
    status.observed_generation = observed.generation;
    if let Some(request) = &observed.handled_request {
        status.last_handled_reconcile_at = Some(request.clone());
    }
    let condition = |type_: &str, ok: bool, reason: &str, message: String| Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: observed.generation,
        last_transition_time: observed.now.clone(),
    };
    let conditions = &mut status.conditions;
    match &observed.validation {
        Validation::Unknown => {}
        Validation::Valid => set_condition(
            conditions,
            condition(
                condition::VALIDATED,
                true,
                reason::VALID,
                "the repository passed validation".into(),
            ),
        ),
        Validation::Invalid { reason, message } => set_condition(
            conditions,
            condition(condition::VALIDATED, false, reason, message.clone()),
        ),
    }
    let mut not_ready: Option<(&str, String)> = None;
    if let Some(pass) = &observed.pass {
        let report = pass.report;
        let total = report.gateways.len();
        let in_sync = report.in_sync();
        let digest = report.gateways.first().map(|g| &g.desired);
        status.desired_revision = Some(pass.revision.to_owned());
        status.desired_digest = digest.map(Digest::to_string);
        status.desired_version = Some(version(digest, Some(pass.revision)));
        status.gateways_in_sync = Some(format!("{in_sync}/{total}"));
        status.gateways = report
            .gateways
            .iter()
            .map(|g| gateway_status(&previous.gateways, g, &observed.now))
            .collect();
        let names = |state: GatewayState| -> Vec<&str> {
            report
                .gateways
                .iter()
                .filter(|g| g.state == state)
                .map(|g| g.gateway.as_str())
                .collect()
        };
        // NB: a gateway held back because the ledger cannot record its
        // attempt reports `pending` with why: the ledger failing, not it.
        let failed: Vec<&str> = report
            .gateways
            .iter()
            .filter(|g| g.error.is_some() && g.state != GatewayState::Pending)
            .map(|g| g.gateway.as_str())
            .collect();
        let held: Vec<&str> = report
            .gateways
            .iter()
            .filter(|g| g.error.is_some() && g.state == GatewayState::Pending)
            .map(|g| g.gateway.as_str())
            .collect();
        let drifted = names(GatewayState::Drifted);
        let gated = names(GatewayState::Gated);
        let healed: Vec<&str> = report
            .gateways
            .iter()
            .filter(|g| g.drift.is_some() && g.state.settled())
            .map(|g| g.gateway.as_str())
            .collect();
        let synced = (
            in_sync == total,
            if in_sync == total {
                (
                    reason::ALL_IN_SYNC,
                    format!("{in_sync}/{total} gateways run {}", short_digest(digest)),
                )
            } else if !failed.is_empty() {
                (
                    reason::APPLY_FAILED,
                    format!("{in_sync}/{total} in sync; failed: {}", failed.join(", ")),
                )
            } else if !held.is_empty() {
                (
                    reason::LEDGER_UNWRITABLE,
                    format!(
                        "{in_sync}/{total} in sync; not applied while the ledger cannot write: {}",
                        held.join(", ")
                    ),
                )
            } else if !drifted.is_empty() {
                (
                    reason::DRIFTED,
                    format!("{in_sync}/{total} in sync; drifted: {}", drifted.join(", ")),
                )
            } else if !gated.is_empty() {
                (
                    reason::GATED,
                    format!("{in_sync}/{total} in sync; gated: {}", gated.join(", ")),
                )
            } else {
                (
                    reason::PROGRESSING,
                    format!("{in_sync}/{total} gateways in sync"),
                )
            },
        );
        let (synced_ok, (synced_reason, synced_message)) = synced;
        set_condition(
            conditions,
            condition(
                condition::SYNCED,
                synced_ok,
                synced_reason,
                synced_message.clone(),
            ),
        );
        if !synced_ok {
            not_ready = Some((synced_reason, synced_message));
        }
        set_condition(
            conditions,
            if !drifted.is_empty() {
                condition(
                    condition::DRIFTED,
                    true,
                    reason::DRIFTED,
                    format!(
                        "runs something else than Sluice verified: {}",
                        drifted.join(", ")
                    ),
                )
            } else if !healed.is_empty() {
                condition(
                    condition::DRIFTED,
                    false,
                    reason::HEALED,
                    format!("drift put back (policy heal): {}", healed.join(", ")),
                )
            } else {
                condition(
                    condition::DRIFTED,
                    false,
                    reason::NO_DRIFT,
                    "every gateway runs what Sluice verified there".into(),
                )
            },
        );
        let gate = report.gateways.iter().find_map(|g| g.gated.clone());
        set_condition(
            conditions,
            match gate {
                Some(why) => condition(condition::GATED, true, reason::GATED, why),
                None => condition(
                    condition::GATED,
                    false,
                    reason::NOT_GATED,
                    "no promotion gate holds the version back".into(),
                ),
            },
        );
        if let Some(record) = apply_record(pass, &observed.now) {
            push_history(&mut status.history, record);
        }
    }
    // Ready: the first thing that keeps the environment from it, in the
    // order they are reached.
    let ready = if observed.suspended {
        Some((
            reason::SUSPENDED,
            "spec.suspend is set: nothing is applied".to_owned(),
        ))
    } else if let Some((reason, message)) = &observed.blocked {
        Some((*reason, message.clone()))
    } else if let Validation::Invalid { reason, message } = &observed.validation {
        Some((*reason, message.clone()))
    } else if observed.pass.is_none() {
        Some((reason::PROGRESSING, "not reconciled yet".to_owned()))
    } else {
        not_ready
    };
    let ready = match ready {
        Some((reason, message)) => condition(condition::READY, false, reason, message),
        None => condition(
            condition::READY,
            true,
            reason::RECONCILED,
            format!(
                "every gateway runs {}",
                status.desired_version.as_deref().unwrap_or("-")
            ),
        ),
    };
    set_condition(&mut status.conditions, ready);
    status.conditions.sort_by_key(|c| {
        condition::ALL
            .iter()
            .position(|t| *t == c.type_)
            .unwrap_or(usize::MAX)
    });
    status
}

/// One gateway's entry; `lastTransitionTime` moves only when its state or
/// observed digest does.
fn gateway_status(previous: &[GatewayStatus], report: &GatewayReport, now: &Time) -> GatewayStatus {
    let observed_digest = report.observed.as_ref().map(|d| d.to_string());
    let unchanged = previous
        .iter()
        .find(|p| p.name == report.gateway)
        .filter(|p| p.state == report.state && p.observed_digest == observed_digest);
    let message = report
        .error
        .clone()
        .or_else(|| report.gated.clone())
        .or_else(|| report.pinned.clone())
        .or_else(|| match (&report.drift, report.state) {
            (Some(_), GatewayState::Drifted) => {
                Some("hand edit: runs something else than Sluice verified".into())
            }
            (Some(_), GatewayState::InSync | GatewayState::Pinned) => {
                Some("drift put back (policy heal)".into())
            }
            _ => None,
        });
    GatewayStatus {
        name: report.gateway.clone(),
        state: report.state,
        desired_digest: Some(report.desired.to_string()),
        observed_digest,
        last_transition_time: Some(
            unchanged
                .and_then(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone()),
        ),
        message,
    }
}

/// The history record of a pass that applied to (or failed on) a gateway;
/// `None` when every gateway already ran the version (or was left alone).
fn apply_record(pass: &PassReport<'_>, now: &Time) -> Option<ApplyRecord> {
    let gateways = &pass.report.gateways;
    let applied: Vec<&GatewayReport> = gateways.iter().filter(|g| g.applied).collect();
    let failed: Vec<&GatewayReport> = gateways.iter().filter(|g| g.error.is_some()).collect();
    if applied.is_empty() && failed.is_empty() {
        return None;
    }
    let digest = gateways.first()?.desired.to_string();
    let healed = applied.iter().any(|g| g.drift.is_some());
    let trigger = if healed && pass.trigger != Trigger::Manual {
        Trigger::Drift
    } else {
        pass.trigger
    };
    let message = if failed.is_empty() {
        None
    } else {
        Some(
            failed
                .iter()
                .map(|g| format!("{}: {}", g.gateway, g.error.as_deref().unwrap_or("failed")))
                .collect::<Vec<_>>()
                .join("; "),
        )
    };
    Some(ApplyRecord {
        revision: pass.revision.to_owned(),
        digest,
        trigger,
        outcome: if failed.is_empty() {
            Outcome::Applied
        } else {
            Outcome::Failed
        },
        started_at: pass.started.clone(),
        finished_at: Some(now.clone()),
        message,
    })
}

#[cfg(test)]
mod tests;
