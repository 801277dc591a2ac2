//! The ledger: which version runs where, and every attempt to put it there.
//! The reconciler writes through the [`Ledger`] trait; standalone mode keeps
//! it in an embedded SQLite file ([`SqliteLedger`]), the Kubernetes mode in
//! memory ([`MemoryLedger`]) written through to custom-resource status.
//!
//! An attempt is written as started before the gateway is asked and finished
//! after the answer is verified, so a crash leaves a visible unfinished
//! record, which the next start resolves by reading the gateway.

#[cfg(test)]
pub(crate) mod conformance;
mod memory;
mod sqlite;

pub use memory::{EVAL_RUNS_KEPT, EnvironmentRecord, MemoryLedger};
pub use sqlite::SqliteLedger;

use crate::config::{Digest, Finding, Severity};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Milliseconds since the Unix epoch. The ledger never reads a clock itself:
/// callers pass times in, so tests can inject them.
pub type Millis = i64;

/// Errors from reading or writing the ledger.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot open the ledger at {path}: {message}")]
    Open { path: String, message: String },
    #[error("ledger schema version {found} is newer than this Sluice understands ({known})")]
    TooNew { found: i64, known: i64 },
    #[error("ledger query failed while {doing}: {message}")]
    Query {
        doing: &'static str,
        message: String,
    },
    #[error("no attempt {0} in the ledger")]
    NoSuchAttempt(i64),
}

/// A revision the reconciler saw, and whether it was valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRecord {
    pub commit: String,
    #[serde(with = "crate::clock::json")]
    pub seen_at: Millis,
    pub valid: bool,
    /// Number of error findings.
    pub errors: usize,
    /// The findings (as `sluice validate -o json` lists them).
    pub findings: Vec<RecordedFinding>,
}

/// A finding as the ledger keeps it: [`Finding`]'s fields, owned, so it
/// reads back. Its JSON is `sluice validate -o json`'s, so rows written
/// before it was typed read as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedFinding {
    pub severity: Severity,
    pub rule: String,
    pub file: String,
    #[serde(default)]
    pub line: Option<u32>,
    #[serde(default)]
    pub column: Option<u32>,
    #[serde(default)]
    pub pointer: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl From<&Finding> for RecordedFinding {
    fn from(finding: &Finding) -> Self {
        RecordedFinding {
            severity: finding.severity,
            rule: finding.rule.to_owned(),
            file: finding.file.clone(),
            line: finding.line,
            column: finding.column,
            pointer: finding.pointer.clone(),
            message: finding.message.clone(),
            hint: finding.hint.clone(),
        }
    }
}

impl RecordedFinding {
    /// `file:line`, or the file alone.
    pub fn location(&self) -> String {
        match self.line {
            Some(line) => format!("{}:{line}", self.file),
            None => self.file.clone(),
        }
    }
}

/// What started a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    Startup,
    Poll,
    Webhook,
    Manual,
    Drift,
    /// Sluice put a failed verification back on the last version that passed.
    Rollback,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Poll => "poll",
            Trigger::Webhook => "webhook",
            Trigger::Manual => "manual",
            Trigger::Drift => "drift",
            Trigger::Rollback => "rollback",
        }
    }

    pub fn parse(text: &str) -> Option<Trigger> {
        [
            Trigger::Startup,
            Trigger::Poll,
            Trigger::Webhook,
            Trigger::Manual,
            Trigger::Drift,
            Trigger::Rollback,
        ]
        .into_iter()
        .find(|t| t.as_str() == text)
    }
}

/// How a drift episode ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Resolution {
    /// Sluice put the desired version back (policy heal, or a sync).
    Healed,
    /// The gateway came back to it by other hands.
    Reverted,
    /// A new version was applied over it.
    Superseded,
    /// The gateway left the repository.
    Removed,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Healed => "healed",
            Resolution::Reverted => "reverted",
            Resolution::Superseded => "superseded",
            Resolution::Removed => "removed",
        }
    }

    pub fn parse(text: &str) -> Option<Resolution> {
        [
            Resolution::Healed,
            Resolution::Reverted,
            Resolution::Superseded,
            Resolution::Removed,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The gateway swapped to the version and reported its digest.
    Applied,
    /// The gateway already ran it.
    Unchanged,
    /// The gateway refused or could not be reached, after retries.
    Failed,
    /// Sluice stopped (shutdown or crash) before the answer was verified.
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        [
            Outcome::Applied,
            Outcome::Unchanged,
            Outcome::Failed,
            Outcome::Interrupted,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

pub type AttemptId = i64;

/// The start of an apply attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptStart {
    pub environment: String,
    pub gateway: String,
    pub revision: String,
    pub digest: Digest,
    pub trigger: Trigger,
    #[serde(with = "crate::clock::json")]
    pub started_at: Millis,
}

/// The end of an apply attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptFinish {
    pub id: AttemptId,
    pub finished_at: Millis,
    pub outcome: Outcome,
    pub error: Option<String>,
}

/// Writes that go to the store together (one transaction where it has them).
#[derive(Debug, Default)]
pub struct WriteBatch {
    pub starts: Vec<AttemptStart>,
    pub finishes: Vec<AttemptFinish>,
    pub records: Vec<GatewayRecord>,
}

/// What a batch did: each start's id (or why it was not recorded) in
/// order, and each finish's result.
#[derive(Debug)]
pub struct BatchResult {
    pub started: Vec<Result<AttemptId, LedgerError>>,
    pub finished: Vec<Result<(), LedgerError>>,
}

/// An attempt as recorded: finished or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub id: AttemptId,
    #[serde(flatten)]
    pub start: AttemptStart,
    #[serde(with = "crate::clock::json::option")]
    pub finished_at: Option<Millis>,
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
}

/// Where a page of history ends: attempts come ordered by (start, id),
/// newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor {
    pub started_at: Millis,
    pub id: AttemptId,
}

impl HistoryCursor {
    /// The cursor after `attempt`.
    pub fn after(attempt: &Attempt) -> HistoryCursor {
        HistoryCursor {
            started_at: attempt.start.started_at,
            id: attempt.id,
        }
    }

    /// A `before=` query value (the API's and the dashboard's): absent, or
    /// a cursor.
    #[allow(clippy::result_unit_err)]
    pub fn from_query(value: Option<&str>) -> Result<Option<HistoryCursor>, ()> {
        value.map(str::parse).transpose()
    }

    /// Whether `attempt` comes after the cursor (is older).
    pub fn precedes(&self, attempt: &Attempt) -> bool {
        (attempt.start.started_at, attempt.id) < (self.started_at, self.id)
    }
}

impl std::fmt::Display for HistoryCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.started_at, self.id)
    }
}

impl std::str::FromStr for HistoryCursor {
    type Err = ();

    /// `STARTED.ID`, as [`Display`](std::fmt::Display) writes it; STARTED
    /// may also be the RFC 3339 `startedAt` an attempt's JSON carries.
    fn from_str(text: &str) -> Result<Self, ()> {
        let (started_at, id) = text.rsplit_once('.').ok_or(())?;
        Ok(HistoryCursor {
            started_at: started_at
                .parse()
                .ok()
                .or_else(|| crate::clock::parse_rfc3339(started_at))
                .ok_or(())?,
            id: id.parse().map_err(|_| ())?,
        })
    }
}

/// Where a gateway stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GatewayState {
    InSync,
    Drifted,
    Pending,
    Applying,
    Failed,
    Unreachable,
    Gated,
    /// Runs its environment's pinned version, verified; the head's version
    /// is held back until the pin ends.
    Pinned,
}

impl GatewayState {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayState::InSync => "in-sync",
            GatewayState::Drifted => "drifted",
            GatewayState::Pending => "pending",
            GatewayState::Applying => "applying",
            GatewayState::Failed => "failed",
            GatewayState::Unreachable => "unreachable",
            GatewayState::Gated => "gated",
            GatewayState::Pinned => "pinned",
        }
    }

    /// Runs what it should: the desired version, or the pin's.
    pub fn settled(self) -> bool {
        matches!(self, GatewayState::InSync | GatewayState::Pinned)
    }

    pub const ALL: [GatewayState; 8] = [
        GatewayState::InSync,
        GatewayState::Drifted,
        GatewayState::Pending,
        GatewayState::Applying,
        GatewayState::Failed,
        GatewayState::Unreachable,
        GatewayState::Gated,
        GatewayState::Pinned,
    ];

    pub fn parse(text: &str) -> Option<GatewayState> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// The current desired and observed state of one gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRecord {
    pub environment: String,
    pub gateway: String,
    pub desired_digest: Option<Digest>,
    pub desired_revision: Option<String>,
    pub observed_digest: Option<Digest>,
    pub state: GatewayState,
    /// When the state or the observed digest last changed.
    #[serde(with = "crate::clock::json")]
    pub changed_at: Millis,
    /// When the record was last written.
    #[serde(with = "crate::clock::json")]
    pub updated_at: Millis,
    pub error: Option<String>,
}

/// A version an environment ran whole: every gateway verified at `digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub environment: String,
    pub revision: String,
    pub digest: Digest,
    /// The packs of that version.
    pub packs: Vec<DeployedPack>,
    #[serde(with = "crate::clock::json")]
    pub verified_at: Millis,
}

/// A pack of a deployed version: what a promotion gate compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployedPack {
    pub name: String,
    pub version: String,
    pub digest: Digest,
    /// What promotion compares across environments (the shared base pack).
    pub source: String,
}

impl From<&crate::config::render::PackDigest> for DeployedPack {
    fn from(pack: &crate::config::render::PackDigest) -> Self {
        DeployedPack {
            name: pack.name.clone(),
            version: pack.version.clone(),
            digest: pack.digest.clone(),
            source: pack.source.to_string(),
        }
    }
}

/// A gateway found running something other than what Sluice verified there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftEpisode {
    pub environment: String,
    pub gateway: String,
    /// The revision whose render the gateway should run.
    pub revision: String,
    pub desired_digest: Digest,
    /// `None` when the live config could not be read as a digest.
    pub live_digest: Option<Digest>,
    /// The field-level changes (see `config::diff`).
    pub changes: Vec<crate::config::diff::Change>,
    #[serde(with = "crate::clock::json")]
    pub onset_at: Millis,
    #[serde(with = "crate::clock::json::option")]
    pub resolved_at: Option<Millis>,
    /// How it ended.
    pub resolution: Option<Resolution>,
}

/// How a pin ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PinEnd {
    /// Someone unpinned it (`sluice unpin`, the API, `spec.pin` removed).
    Unpinned,
    /// The followed branch's head renders the pinned digest: nothing is
    /// held back any more.
    CaughtUp,
    /// Another pin took its place.
    Replaced,
}

impl PinEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            PinEnd::Unpinned => "unpinned",
            PinEnd::CaughtUp => "caught-up",
            PinEnd::Replaced => "replaced",
        }
    }

    pub fn parse(text: &str) -> Option<PinEnd> {
        [PinEnd::Unpinned, PinEnd::CaughtUp, PinEnd::Replaced]
            .into_iter()
            .find(|e| e.as_str() == text)
    }
}

/// An environment held at a version it ran whole: while the pin is in
/// place, the reconciler applies the pinned version, not the head's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pin {
    pub environment: String,
    /// The version held (a [`Deployment`]'s digest).
    pub digest: Digest,
    /// The revision that version is rendered from.
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who pinned: an API token's name, the OS user, `kubernetes`, or
    /// `sluice` when Sluice pins itself.
    pub by: String,
    #[serde(with = "crate::clock::json")]
    pub at: Millis,
    /// When the branch's head first rendered something else for the
    /// environment (the pin started holding it back); only a pin that held
    /// ends by itself when the head renders its digest again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "crate::clock::json::option")]
    pub held_since: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(with = "crate::clock::json::option")]
    pub ended_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<PinEnd>,
}

impl Pin {
    /// Still in place.
    pub fn active(&self) -> bool {
        self.ended_at.is_none()
    }

    /// This pin, ended.
    pub fn ended(mut self, at: Millis, by: &str, how: PinEnd) -> Pin {
        self.ended_at = Some(at);
        self.ended_by = Some(by.to_owned());
        self.end_reason = Some(how);
        self
    }
}

/// Failures an eval run keeps, at most.
pub const EVAL_FAILURES_KEPT: usize = 50;

/// One case of a suite that failed on one gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalFailure {
    pub gateway: String,
    pub case: String,
    pub reason: String,
}

/// A suite run against an environment's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalRun {
    pub environment: String,
    pub suite: String,
    pub revision: String,
    /// The environment's version the suite ran against.
    pub digest: Digest,
    /// That version's packs: what an eval gate compares (by name + source).
    pub packs: Vec<DeployedPack>,
    pub passed: u32,
    pub failed: u32,
    /// At most [`EVAL_FAILURES_KEPT`] (`failed` still counts them all).
    pub failures: Vec<EvalFailure>,
    #[serde(with = "crate::clock::json")]
    pub at: Millis,
}

impl EvalRun {
    /// The run as every store keeps it: failures capped.
    pub fn capped(&self) -> EvalRun {
        let mut run = self.clone();
        run.failures.truncate(EVAL_FAILURES_KEPT);
        run
    }
}

/// The store the reconciler keeps its memory in.
pub trait Ledger: Send + Sync {
    fn record_revision(&self, revision: &RevisionRecord) -> Result<(), LedgerError>;
    /// The revision recorded most recently, valid or not (a commit seen
    /// again, as after a reset, is the newest again).
    fn last_revision(&self) -> Result<Option<RevisionRecord>, LedgerError>;
    /// Writes an attempt as started; returns its id.
    fn start_attempt(&self, start: &AttemptStart) -> Result<AttemptId, LedgerError>;
    /// Finishes an attempt; finishing one twice is an error, never a second record.
    fn finish_attempt(
        &self,
        id: AttemptId,
        finished_at: Millis,
        outcome: Outcome,
        error: Option<&str>,
    ) -> Result<(), LedgerError>;
    /// Starts, finishes and gateway records in one transaction: when it
    /// fails, none of it is written.
    fn write(&self, batch: &WriteBatch) -> Result<BatchResult, LedgerError>;
    /// Attempts started and never finished (a crash or kill mid-apply).
    fn unfinished_attempts(&self) -> Result<Vec<Attempt>, LedgerError>;
    /// An environment's attempts, newest first.
    fn history(
        &self,
        environment: &str,
        gateway: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Attempt>, LedgerError> {
        self.history_page(environment, gateway, None, limit)
    }
    /// A page of an environment's attempts, newest first: those older than
    /// `before` (the last one of the previous page), so paging costs the
    /// same on page 1 and page 1,000 and no row is skipped or repeated
    /// while new attempts arrive.
    fn history_page(
        &self,
        environment: &str,
        gateway: Option<&str>,
        before: Option<HistoryCursor>,
        limit: usize,
    ) -> Result<Vec<Attempt>, LedgerError>;
    fn upsert_gateway(&self, record: &GatewayRecord) -> Result<(), LedgerError>;
    /// Several records at once (one transaction where the store has them).
    fn upsert_gateways(&self, records: &[GatewayRecord]) -> Result<(), LedgerError> {
        records.iter().try_for_each(|r| self.upsert_gateway(r))
    }
    /// Forgets gateways that are no longer in the repository, by
    /// (environment, gateway).
    fn remove_gateways(&self, gone: &[(String, String)]) -> Result<(), LedgerError>;
    /// Every gateway's record (of one environment, or all), by environment then gateway.
    fn gateways(&self, environment: Option<&str>) -> Result<Vec<GatewayRecord>, LedgerError>;
    /// Records that an environment runs `deployment.digest` on every gateway;
    /// a no-op (false) when that is already its newest deployment.
    fn record_deployment(&self, deployment: &Deployment) -> Result<bool, LedgerError>;
    /// An environment's deployments, newest first.
    fn deployments(&self, environment: &str, limit: usize) -> Result<Vec<Deployment>, LedgerError>;
    /// Opens a drift episode for its gateway; when one is already open, it
    /// is updated with what the gateway runs now and `false` is returned.
    fn open_drift(&self, episode: &DriftEpisode) -> Result<bool, LedgerError>;
    /// Closes a gateway's open episode; returns it, if there was one.
    fn resolve_drift(
        &self,
        environment: &str,
        gateway: &str,
        at: Millis,
        resolution: Resolution,
    ) -> Result<Option<DriftEpisode>, LedgerError>;
    /// Drift episodes (open only, or all), newest first.
    fn drift_episodes(
        &self,
        environment: Option<&str>,
        open_only: bool,
        limit: usize,
    ) -> Result<Vec<DriftEpisode>, LedgerError>;
    /// Makes `pin` its environment's pin; a pin already in place is ended
    /// (`replaced`, by `pin.by` at `pin.at`) and returned.
    fn pin(&self, pin: &Pin) -> Result<Option<Pin>, LedgerError>;
    /// Ends an environment's pin; returns it ended, if there was one.
    fn unpin(
        &self,
        environment: &str,
        at: Millis,
        by: &str,
        how: PinEnd,
    ) -> Result<Option<Pin>, LedgerError>;
    /// Marks an environment's pin in place as holding the head back since
    /// `since` (kept when already set).
    fn pin_holds(&self, environment: &str, since: Millis) -> Result<(), LedgerError>;
    /// The pins in place (of one environment, or all), by environment.
    fn pins(&self, environment: Option<&str>) -> Result<Vec<Pin>, LedgerError>;
    /// An environment's pins, ended ones too, newest first.
    fn pin_history(&self, environment: &str, limit: usize) -> Result<Vec<Pin>, LedgerError>;
    /// Records a suite's run (failures capped at [`EVAL_FAILURES_KEPT`]).
    fn record_eval_run(&self, run: &EvalRun) -> Result<(), LedgerError>;
    /// An environment's eval runs (of one suite, or all), newest first.
    fn eval_runs(
        &self,
        environment: &str,
        suite: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EvalRun>, LedgerError>;
    /// Deletes finished attempts and revisions older than each environment's
    /// retention (and drift episodes, deployments, ended pins and eval runs,
    /// keeping what is current); returns how many rows went.
    fn prune(
        &self,
        now: Millis,
        retention: &dyn Fn(&str) -> Duration,
    ) -> Result<usize, LedgerError>;
}

/// Whether the ledger takes writes, as the reconciler last found it: for
/// readiness, status and metrics. A write that fails marks it failing (with
/// why); the next one that succeeds clears it, so a freed disk is noticed by
/// the first write after it.
#[derive(Debug, Default)]
pub struct WriteHealth {
    failing: std::sync::Mutex<Option<String>>,
    failures: std::sync::atomic::AtomicU64,
}

impl WriteHealth {
    pub fn succeeded(&self) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(error) = failing.take() {
            tracing::info!(was = %error, "the ledger takes writes again");
        }
    }

    pub fn failed(&self, error: &LedgerError) {
        self.failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing.is_none() {
            tracing::error!(error = %error, "the ledger cannot write: no gateway is changed until it can");
        }
        *failing = Some(error.to_string());
    }

    /// Why the last write failed, while writes fail.
    pub fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Writes that failed since the start.
    pub fn failures(&self) -> u64 {
        self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Default retention: production environments keep a year, others 90 days.
pub fn default_retention(is_production: bool) -> Duration {
    let days = if is_production { 365 } else { 90 };
    Duration::from_secs(days * 86_400)
}
