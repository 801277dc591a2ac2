//! Drift: a gateway running something other than what Sluice verified there
//! (a hand edit, another tool, a restore from backup).
//!
//! The reconciler finds it when it reads a gateway back, in a pass or in the
//! periodic scan of an environment (`drift.interval`); what happens next is
//! the environment's `drift.policy`: `detect` records an episode, `alert`
//! also notifies, `heal` notifies and applies the desired state again. A
//! gateway that restarted empty is re-applied without being called drift.
//! This module holds what drift is made of: the comparison of the live
//! document with the desired one, the alerts, and their delivery.

pub mod decide;
pub mod notify;
pub mod preview;
pub mod scan;

pub use decide::{Decision, Facts, decide};

use crate::{
    config::{
        Digest,
        diff::{self, Change},
        model::AlertSpec,
    },
    gateway::{Desired, Gateway},
    ledger::Millis,
};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

/// What a drifted gateway runs, against what it should.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftReport {
    /// A new episode (not one already open for this gateway).
    pub new_episode: bool,
    /// Field by field, desired → live.
    pub changes: Vec<Change>,
    /// Unified text diff, desired as `a`, live as `b`.
    pub diff: String,
}

/// Most changes kept for one drifted gateway (ledger, alerts, output).
const MAX_CHANGES: usize = 200;
/// Longest text diff kept for one drifted gateway.
const MAX_DIFF_BYTES: usize = 64 << 10;

/// Reads the gateway's live document and compares it with the desired one.
/// A document that cannot be read is reported as a whole-document change.
pub async fn compare_live(driver: &dyn Gateway, desired: &Desired) -> (Vec<Change>, String) {
    let (wanted, live) = projections(driver, desired).await;
    // NB: comparing megabytes is CPU work: off the runtime's workers.
    tokio::task::spawn_blocking(move || compare(&wanted, &live))
        .await
        .unwrap_or_default()
}

/// The desired state as the driver projects it, and what the gateway runs
/// in that projection (`null` when it runs nothing; a string saying why
/// when it cannot be read).
pub async fn projections(driver: &dyn Gateway, desired: &Desired) -> (Value, Value) {
    let wanted = driver.projected(desired);
    let live = match driver.projection().await {
        Ok(Some(live)) => live,
        Ok(None) => Value::Null,
        Err(e) => Value::String(format!("<unreadable: {e}>")),
    };
    (wanted, live)
}

/// The changes from `desired` to `live` (at most [`MAX_CHANGES`]), and
/// their text diff (at most [`MAX_DIFF_BYTES`]).
pub fn compare(desired: &Value, live: &Value) -> (Vec<Change>, String) {
    compare_as(desired, live, "desired", "live")
}

/// The changes from `before` to `after`, bounded as [`compare`]'s, and
/// their text diff with `a` and `b` as its file names.
pub fn compare_as(before: &Value, after: &Value, a: &str, b: &str) -> (Vec<Change>, String) {
    let mut changes = diff::changes(before, after);
    changes.truncate(MAX_CHANGES);
    let mut text = diff::text(before, after, a, b);
    if cut(&mut text, MAX_DIFF_BYTES) {
        text.push_str("\n… (diff cut)\n");
    }
    (changes, text)
}

/// Shortens `text` to at most `max` bytes on a character boundary; says
/// whether it did.
pub(crate) fn cut(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let end = (0..=max)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    text.truncate(end);
    true
}

/// `text`, [`cut`] to at most `max` bytes.
pub(crate) fn shortened(mut text: String, max: usize) -> String {
    cut(&mut text, max);
    text
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertEvent {
    DriftDetected,
    DriftResolved,
    ApplyFailed,
    PromotionGated,
    /// Suites an environment verifies with failed against its new version.
    VerificationFailed,
    /// Sluice put the environment back on the last version that passed.
    RolledBack,
}

impl AlertEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::DriftDetected => "drift-detected",
            AlertEvent::DriftResolved => "drift-resolved",
            AlertEvent::ApplyFailed => "apply-failed",
            AlertEvent::PromotionGated => "promotion-gated",
            AlertEvent::VerificationFailed => "verification-failed",
            AlertEvent::RolledBack => "rolled-back",
        }
    }
}

/// Something people should hear about, with where to tell them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub event: AlertEvent,
    pub environment: String,
    pub gateway: String,
    pub revision: String,
    pub desired_version: String,
    pub live_version: Option<String>,
    pub changes: Vec<Change>,
    pub diff: String,
    /// How a drift ended (`healed`, `reverted`, `superseded`), or why an apply failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub at: Millis,
    #[serde(skip)]
    pub sinks: Arc<[AlertSpec]>,
}

impl Alert {
    /// `sha256:<12>@<8>` for a digest and the revision it came from.
    pub fn version(digest: &Digest, revision: &str) -> String {
        format!("{}@{}", digest.short(), crate::source::prefix(revision, 8))
    }
}

/// Where the reconciler hands alerts; delivery (and its retries) is the
/// sink's business and never holds up a pass.
pub trait Alerts: Send + Sync {
    fn send(&self, alert: Alert);
}

/// For runs that notify nobody (`sluice sync`, tests of other things).
pub struct NoAlerts;

impl Alerts for NoAlerts {
    fn send(&self, _alert: Alert) {}
}
