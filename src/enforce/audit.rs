//! `audit-logger`: the record of one chat request. The gateway appends it
//! (one JSON line) for every request, whatever the outcome, when an enabled
//! pack's chain holds `audit-logger`.
//!
//! NB: a record keeps the model, outcome, mode, policies and actions, the
//! digest, the time and the request id, and only the *size* of the prompt
//! (messages, characters after redaction), never its text. An audit log is
//! a long-lived copy of traffic (`retention_days`), read by more people than
//! the traffic itself; a detector only finds the kinds it knows, so storing
//! even redacted text would keep whatever personal data it missed, and
//! `pci_mode` forbids logging a card number in any form. Lengths cannot leak.

use super::{Action, ChatRequest, Evaluation, Outcome};
use crate::config::model::Enforcement;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// RFC 3339, UTC, to the second.
    pub time: String,
    pub request_id: String,
    pub digest: String,
    pub model: String,
    pub outcome: Outcome,
    pub mode: Enforcement,
    /// Policies that acted, in chain order.
    pub policies: Vec<String>,
    pub actions: Vec<Action>,
    pub messages: usize,
    /// Characters of message text as screened (after redaction).
    pub prompt_chars: usize,
}

/// The record of `request`, evaluated as `evaluation`, at `time`.
pub fn record(
    request: &ChatRequest,
    evaluation: &Evaluation,
    digest: &str,
    request_id: &str,
    time: String,
) -> AuditRecord {
    let screened = evaluation.screened;
    AuditRecord {
        time,
        request_id: request_id.to_owned(),
        digest: digest.to_owned(),
        model: request.model.chars().take(200).collect(),
        outcome: evaluation.outcome,
        mode: evaluation.mode,
        policies: evaluation
            .policies()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        actions: evaluation.actions.clone(),
        messages: screened.messages,
        prompt_chars: screened.chars,
    }
}
