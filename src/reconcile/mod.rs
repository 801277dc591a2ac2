//! The reconciler: one pass takes a loaded revision to every gateway.
//!
//! ```text
//! Loaded revision ──invalid──► ledger: revision + findings; nothing applied
//!        │ valid
//!        ▼
//!   render ──► per gateway, at most `concurrency` at once:
//!                drift::decide(live, desired, record, …) ──► in-sync | gated | drifted (left)
//!                   │ apply (pending, empty, or drifted and healed)
//!                   ▼
//!                ledger: attempt started ─► apply (retries, backoff, jitter)
//!                   ─► read back and verify ─► ledger: attempt finished
//! ```
//!
//! It knows nothing of where it runs: the ledger, the clock and the gateway
//! drivers come in through traits.

pub use crate::clock;
pub mod gate;
mod journal;
pub mod pin;
pub mod retry;
pub mod status;
mod verification;

pub use clock::{Clock, ManualClock, SystemClock};
pub use pin::Revisions;

use crate::{
    config::{
        Digest, Environment, Loaded, RenderedGateway, Repository,
        model::{self, AlertSpec, DriftPolicy, EnvironmentKind},
        render_all,
    },
    drift::{
        self, Alert, AlertEvent, Alerts, DriftReport, NoAlerts,
        decide::{Act, Found},
    },
    gateway::{self, Applied, Desired, DriverContext, Gateway, GatewayError, Live},
    ledger::{
        Attempt, AttemptFinish, AttemptId, AttemptStart, DeployedPack, Deployment, DriftEpisode,
        GatewayRecord, GatewayState, Ledger, LedgerError, Outcome, PinEnd, RecordedFinding,
        Resolution, RevisionRecord, Trigger,
    },
    promote::trailer::{self, Promotion},
    source::prefix,
};
use futures::StreamExt;
use retry::Backoff;
use serde::Serialize;
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};
use tracing::Instrument;

/// Errors that stop a whole pass (a gateway's failure never does).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// How a pass behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Gateways worked on at once.
    pub concurrency: usize,
    pub backoff: Backoff,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 32,
            backoff: Backoff::default(),
        }
    }
}

/// Progress of a pass, for progress bars; called from many tasks.
pub trait Progress: Send + Sync {
    fn environment(&self, _environment: &str, _gateways: usize) {}
    fn gateway_done(&self, _environment: &str, _gateway: &str, _state: GatewayState) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Where one gateway ended up after a pass.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayReport {
    pub environment: String,
    pub gateway: String,
    pub state: GatewayState,
    pub desired: Digest,
    pub observed: Option<Digest>,
    /// Whether this pass changed what the gateway runs.
    pub applied: bool,
    pub error: Option<String>,
    /// What the gateway ran instead, when it had drifted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftReport>,
    /// What the promotion gate waits for, when it holds the gateway back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gated: Option<String>,
    /// Who pinned the environment and what the head would apply, while a
    /// pin holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
    /// The attempt this pass recorded for the gateway, if it made one.
    #[serde(skip)]
    pub attempt: Option<Attempted>,
}

/// How an attempt of a pass ended and how long it took, from its start in
/// the ledger to its finish (for metrics; the ledger keeps the times).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attempted {
    pub outcome: Outcome,
    pub duration: std::time::Duration,
}

/// An attempt recorded as started, and when, so its finish can say how
/// long it took.
struct Begun {
    id: AttemptId,
    at: std::time::Instant,
}

/// One gateway's work in a pass.
#[derive(Clone, Copy)]
struct Job<'a> {
    rendered: &'a RenderedGateway,
    spec: &'a model::Gateway,
    previous: Option<&'a GatewayRecord>,
    policy: &'a EnvironmentPolicy,
    /// A drift episode is open for this gateway.
    drifting: bool,
    /// Its attempts left unfinished by a Sluice that stopped mid-apply:
    /// resolved by this pass's read of the gateway.
    unfinished: &'a [Attempt],
    /// Set once the ledger refused an attempt's start in this pass: no
    /// gateway is changed after that (issue: a full disk must not let
    /// applies out unrecorded).
    halt: &'a AtomicBool,
    /// The revision whose render `rendered` is (the pin's, when pinned).
    revision: &'a str,
    /// The environment's pin, while one holds it.
    pinned: Option<&'a pin::Pinned>,
}

impl Job<'_> {
    /// The revision renders this gateway a version other than its last.
    fn changes_version(&self) -> bool {
        self.previous
            .is_none_or(|p| p.desired_digest.as_ref() != Some(&self.rendered.digest))
    }

    /// The gateway's record while its new version waits to be applied.
    fn pending(&self, revision: &str, now: crate::ledger::Millis) -> GatewayRecord {
        let previous = self.previous;
        GatewayRecord {
            environment: self.rendered.environment.clone(),
            gateway: self.rendered.gateway.clone(),
            desired_digest: Some(self.rendered.digest.clone()),
            desired_revision: Some(revision.to_owned()),
            observed_digest: previous.and_then(|p| p.observed_digest.clone()),
            state: GatewayState::Pending,
            changed_at: match previous {
                Some(p) if p.state == GatewayState::Pending => p.changed_at,
                _ => now,
            },
            updated_at: now,
            error: None,
        }
    }
}

/// What an environment's settings say about drift and alerts.
struct EnvironmentPolicy {
    drift: DriftPolicy,
    /// Empty for `eval` environments, which never alert.
    sinks: Arc<[AlertSpec]>,
    /// Why the promotion gate holds this environment's new version back.
    held: Option<String>,
    /// The version every gateway of the environment was last verified at.
    verified: Option<Digest>,
}

impl EnvironmentPolicy {
    fn of(repo: &Repository, env: &Environment) -> Self {
        EnvironmentPolicy {
            drift: env.drift_policy(&repo.manifest),
            sinks: Self::sinks_of(env),
            held: None,
            verified: None,
        }
    }

    /// Where its alerts go: nowhere for an `eval` environment.
    fn sinks_of(env: &Environment) -> Arc<[AlertSpec]> {
        match env.spec.kind {
            EnvironmentKind::Eval => Arc::from(Vec::new()),
            EnvironmentKind::Standard => env.spec.alerts.clone().into(),
        }
    }

    fn alerts_on_drift(&self) -> bool {
        self.drift != DriftPolicy::Detect && !self.sinks.is_empty()
    }
}

/// One environment after a pass: honest about partial rollouts.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentReport {
    pub environment: String,
    pub gateways: Vec<GatewayReport>,
}

impl EnvironmentReport {
    pub fn in_sync(&self) -> usize {
        self.gateways.iter().filter(|g| g.state.settled()).count()
    }

    pub fn converged(&self) -> bool {
        self.in_sync() == self.gateways.len()
    }
}

/// What a pass did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Pass {
    /// The revision is invalid: nothing was applied, the last good version
    /// keeps running.
    ValidationFailed { revision: String, errors: usize },
    Reconciled {
        revision: String,
        environments: Vec<EnvironmentReport>,
    },
}

impl Pass {
    pub fn converged(&self) -> bool {
        match self {
            Pass::ValidationFailed { .. } => false,
            Pass::Reconciled { environments, .. } => environments.iter().all(|e| e.converged()),
        }
    }
}

/// Makes the driver of one gateway: [`gateway::connect`] unless a test
/// puts fakes in its place ([`Reconciler::with_connect`]).
pub type Connect = dyn Fn(&str, &model::Gateway, &DriverContext) -> Result<Arc<dyn Gateway>, GatewayError>
    + Send
    + Sync;

/// A driver and the spec it was made from.
type Cached = (model::Gateway, Arc<dyn Gateway>);

pub struct Reconciler {
    ledger: Arc<dyn Ledger>,
    clock: Arc<dyn Clock>,
    context: DriverContext,
    options: Options,
    connect: Arc<Connect>,
    /// One driver per (environment, gateway), with the spec it was made
    /// from: a changed spec (a rotated token's new name, a new URL)
    /// replaces it, and a gateway gone from the repository drops it.
    drivers: Mutex<HashMap<(String, String), Cached>>,
    generation: AtomicU64,
    journal: journal::Journal,
    alerts: Arc<dyn Alerts>,
    /// Loads pinned revisions; without it a pin to another revision holds.
    revisions: Option<Arc<dyn Revisions>>,
    /// Pinned revisions loaded, by commit (only those pinned now).
    pinned_loads: Mutex<HashMap<String, Arc<Loaded>>>,
    /// Environments a failed verification just pinned back, for the pass
    /// to apply at once.
    rolled_back: Mutex<Vec<String>>,
}

impl Reconciler {
    pub fn new(
        ledger: Arc<dyn Ledger>,
        clock: Arc<dyn Clock>,
        context: DriverContext,
        options: Options,
    ) -> Self {
        Reconciler {
            journal: journal::Journal::new(ledger.clone()),
            alerts: Arc::new(NoAlerts),
            ledger,
            clock,
            context,
            options,
            connect: Arc::new(gateway::connect),
            drivers: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            revisions: None,
            pinned_loads: Mutex::new(HashMap::new()),
            rolled_back: Mutex::new(Vec::new()),
        }
    }

    /// Loads pinned revisions with `revisions` (see [`pin`]).
    pub fn with_revisions(mut self, revisions: Arc<dyn Revisions>) -> Self {
        self.revisions = Some(revisions);
        self
    }

    /// Makes drivers with `connect` instead of [`gateway::connect`].
    pub fn with_connect(mut self, connect: Arc<Connect>) -> Self {
        self.connect = connect;
        self
    }

    /// Sends drift and failure alerts to `alerts` (by default, nowhere).
    pub fn with_alerts(mut self, alerts: Arc<dyn Alerts>) -> Self {
        self.alerts = alerts;
        self
    }

    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    /// Whether the ledger takes the reconciler's writes.
    pub fn ledger_health(&self) -> &Arc<crate::ledger::WriteHealth> {
        self.journal.health()
    }

    /// What the operator allows each environment (its drivers read secrets
    /// and reach URLs only within it).
    pub fn allowances(&self) -> &crate::config::Allowances {
        self.context.secrets.allowances()
    }

    /// Generations grow across restarts: they start from the clock, so a
    /// stale replica's older generation loses (`409`).
    fn next_generation(&self) -> u64 {
        let floor = self.clock.now().max(0) as u64;
        let mut current = self.generation.load(Ordering::SeqCst);
        loop {
            let next = floor.max(current + 1);
            match self.generation.compare_exchange(
                current,
                next,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return next,
                Err(seen) => current = seen,
            }
        }
    }

    /// The driver for a gateway, reused across passes while its spec is unchanged.
    fn driver(
        &self,
        environment: &str,
        spec: &model::Gateway,
    ) -> Result<Arc<dyn Gateway>, GatewayError> {
        let key = (environment.to_owned(), spec.name().to_owned());
        let mut drivers = self.drivers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((known, driver)) = drivers.get(&key)
            && known == spec
        {
            return Ok(driver.clone());
        }
        let driver = (self.connect)(environment, spec, &self.context)?;
        drivers.insert(key, (spec.clone(), driver.clone()));
        Ok(driver)
    }

    /// Drops the drivers of gateways in scope (`only`, or every
    /// environment) that `configured` no longer has.
    fn forget_drivers(&self, only: Option<&str>, configured: &HashSet<(&str, &str)>) {
        let mut drivers = self.drivers.lock().unwrap_or_else(|e| e.into_inner());
        drivers.retain(|(env, gateway), _| {
            only.is_some_and(|o| o != env) || configured.contains(&(env.as_str(), gateway.as_str()))
        });
    }

    /// One pass over a loaded revision (of every environment, or of `only`),
    /// recorded in the ledger as the newest revision seen.
    pub async fn pass(
        &self,
        loaded: &Loaded,
        trigger: Trigger,
        only: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Pass, ReconcileError> {
        let errors = loaded.findings.iter().filter(|f| f.is_error()).count();
        let failures = self.ledger_health().failures();
        self.written(self.ledger.record_revision(&RevisionRecord {
            commit: loaded.revision.to_string(),
            seen_at: self.clock.now(),
            valid: loaded.repository.is_some(),
            errors,
            findings: loaded.findings.iter().map(RecordedFinding::from).collect(),
        }))?;
        let pass = self
            .reconcile_then_roll_back(loaded, trigger, only, progress)
            .await;
        self.clean_pass(failures);
        pass
    }

    /// NB: the ledger counts as writable again only after a whole pass
    /// wrote everything: a full disk takes a small commit now and then
    /// while refusing larger ones, and readiness must not flap with them.
    fn clean_pass(&self, failures_before: u64) {
        if self.ledger_health().failures() == failures_before {
            self.ledger_health().succeeded();
        }
    }

    /// A pass that keeps an older, valid revision running (while the head is
    /// invalid) without recording it as the newest seen.
    pub async fn keep(
        &self,
        loaded: &Loaded,
        trigger: Trigger,
        only: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Pass, ReconcileError> {
        let failures = self.ledger_health().failures();
        let pass = self
            .reconcile_then_roll_back(loaded, trigger, only, progress)
            .await;
        self.clean_pass(failures);
        pass
    }

    async fn reconcile(
        &self,
        loaded: &Loaded,
        trigger: Trigger,
        only: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Pass, ReconcileError> {
        let revision = loaded.revision.to_string();
        let errors = loaded.findings.iter().filter(|f| f.is_error()).count();
        let Some(repo) = &loaded.repository else {
            tracing::warn!(
                revision,
                errors,
                "revision is invalid; nothing applied (see `sluice validate --rev {}`)",
                crate::source::prefix(&revision, 8)
            );
            return Ok(Pass::ValidationFailed { revision, errors });
        };
        let mut rendered = render_all(repo, only);
        tracing::debug!(gateways = rendered.len(), "rendered");
        let pinned = self.pinned(repo, &mut rendered, &revision, only).await?;
        let previous: HashMap<(String, String), GatewayRecord> = self
            .ledger
            .gateways(only)?
            .into_iter()
            .map(|r| ((r.environment.clone(), r.gateway.clone()), r))
            .collect();
        for env in repo
            .environments
            .values()
            .filter(|e| only.is_none_or(|o| o == e.slug))
        {
            progress.environment(&env.slug, env.gateways.len());
        }
        let promotion = loaded.message.as_deref().and_then(trailer::parse);
        let mut policies = HashMap::new();
        for env in repo.environments.values() {
            let mut policy = EnvironmentPolicy::of(repo, env);
            if let Some(pinned) = pinned.get(&env.slug) {
                // NB: a pin is a version the environment ran whole: no
                // promotion gate holds it back; one it cannot honour holds all.
                policy.held = pinned.problem.clone();
            } else if only.is_none_or(|o| o == env.slug) {
                let promoted = promotion.as_ref().filter(|p| p.to == env.slug);
                policy.held = self.gate(env, &rendered, &revision, &previous, &policy, promoted)?;
            }
            if only.is_none_or(|o| o == env.slug) {
                // NB: only the newest deployment on every pass; a gate reads
                // the history itself, and only where a soak is set.
                policy.verified = self
                    .ledger
                    .deployments(&env.slug, 1)?
                    .into_iter()
                    .next()
                    .map(|d| d.digest);
            }
            policies.insert(env.slug.as_str(), policy);
        }
        let drifting: HashSet<(String, String)> = self
            .ledger
            .drift_episodes(only, true, usize::MAX)?
            .into_iter()
            .map(|e| (e.environment, e.gateway))
            .collect();
        let halt = AtomicBool::new(false);
        let unfinished = self.unfinished(only).await?;
        let none: &[Attempt] = &[];
        let jobs: Vec<Job<'_>> = rendered
            .iter()
            .filter_map(|rendered| {
                let env = repo.environments.get(&rendered.environment)?;
                let spec = env.gateways.iter().find(|g| g.name() == rendered.gateway)?;
                let key = (rendered.environment.clone(), rendered.gateway.clone());
                let pin = pinned.get(&rendered.environment);
                Some(Job {
                    revision: pin.map_or(revision.as_str(), |p| p.pin.revision.as_str()),
                    pinned: pin,
                    rendered,
                    spec,
                    previous: previous.get(&key),
                    policy: policies.get(env.slug.as_str())?,
                    drifting: drifting.contains(&key),
                    halt: &halt,
                    unfinished: unfinished.get(&key).map_or(none, Vec::as_slice),
                })
            })
            .collect();
        let configured: HashSet<(&str, &str)> = rendered
            .iter()
            .map(|r| (r.environment.as_str(), r.gateway.as_str()))
            .collect();
        // NB: attempts of gateways this revision no longer has can only
        // have been interrupted: there is nothing left to read.
        for attempt in unfinished
            .iter()
            .filter(|((env, gw), _)| !configured.contains(&(env.as_str(), gw.as_str())))
            .flat_map(|(_, attempts)| attempts)
        {
            self.resolve(attempt, None);
        }
        // Status shows the version being rolled out, before it is applied.
        let now = self.clock.now();
        self.journal.records(
            jobs.iter()
                .filter(|j| j.policy.held.is_none() && j.changes_version())
                .map(|j| j.pending(j.revision, now))
                .collect(),
        );
        // NB: by index, so no closure's signature names a lifetime: rustc
        // cannot prove such a future `Send` for every lifetime, and the
        // Kubernetes controller needs the pass `Send`.
        let reports: Vec<GatewayReport> = futures::stream::iter(0..jobs.len())
            .map(|i| self.reconcile_gateway(jobs[i], trigger, progress))
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        self.journal.flush().await;
        // NB: a gateway removed from gateways.yaml (or its environment
        // removed) must not stay in status, failed, forever. `previous`
        // and `rendered` both cover only the environments in scope.
        self.forget_drivers(only, &configured);
        let gone: Vec<(String, String)> = previous
            .into_keys()
            .filter(|(env, gw)| !configured.contains(&(env.as_str(), gw.as_str())))
            .collect();
        if !gone.is_empty() {
            for (env, gateway) in &gone {
                self.written(self.ledger.resolve_drift(
                    env,
                    gateway,
                    self.clock.now(),
                    Resolution::Removed,
                ))?;
            }
            self.written(self.ledger.remove_gateways(&gone))?;
        }
        let environments = group(reports);
        let deployed = self.record_deployments(&environments, &rendered, &revision, &pinned);
        self.verify(repo, &deployed, &pinned).await;
        Ok(Pass::Reconciled {
            revision,
            environments,
        })
    }

    async fn reconcile_gateway(
        &self,
        job: Job<'_>,
        trigger: Trigger,
        progress: &dyn Progress,
    ) -> GatewayReport {
        let Job {
            rendered,
            spec,
            previous,
            policy,
            ..
        } = job;
        let desired = Desired {
            environment: rendered.environment.clone(),
            gateway: rendered.gateway.clone(),
            digest: rendered.digest.clone(),
            body: rendered.canonical.clone(),
            revision: job.revision.to_owned(),
        };
        // NB: the span carries the revision for what drivers log; the
        // environment and gateway are fields of each event about the
        // gateway, so they are there at any level (an info span is off
        // under the default `warn` of one-shot commands) and in JSON logs.
        let span = tracing::info_span!("gateway", revision = %prefix(job.revision, 8));
        let mut report = async {
            match self.driver(&desired.environment, spec) {
                Ok(driver) => {
                    self.converge(driver.as_ref(), &desired, trigger, &job)
                        .await
                }
                Err(error) => {
                    // NB: a gateway that cannot be reached at all cannot say
                    // how its unfinished attempts ended.
                    for attempt in job.unfinished {
                        self.resolve(attempt, None);
                    }
                    failure(&desired, None, &error)
                }
            }
        }
        .instrument(span)
        .await;
        if let Some(pinned) = job.pinned {
            if report.state == GatewayState::InSync {
                report.state = GatewayState::Pinned;
            }
            report.pinned = Some(pinned.message());
        }
        // NB: a gateway held back because the ledger cannot write is not a
        // gateway failing; the ledger's failure is reported once, by itself.
        if report.error.is_some()
            && report.state != GatewayState::Pending
            && previous.is_none_or(|p| p.state != report.state)
        {
            self.alert(
                policy,
                AlertEvent::ApplyFailed,
                &desired,
                &report,
                report.error.clone(),
            );
        }
        // NB: each record goes with its attempt's finish (the journal groups
        // them), so a kill mid-rollout leaves status saying what ran.
        self.journal
            .records(vec![self.record(&report, &desired, previous)]);
        progress.gateway_done(&report.environment, &report.gateway, report.state);
        report
    }

    /// Reads the gateway; applies when it differs (unless it drifted and the
    /// policy says to leave it), verifies.
    async fn converge(
        &self,
        driver: &dyn Gateway,
        desired: &Desired,
        trigger: Trigger,
        job: &Job<'_>,
    ) -> GatewayReport {
        let (previous, policy) = (job.previous, job.policy);
        // NB: a new version will almost surely be applied, so its attempt is
        // recorded while the gateway is read rather than after: the commit's
        // latency leaves the rollout's critical path. When nothing needs
        // doing after all, the attempt is finished as unchanged.
        let likely =
            policy.held.is_none() && !job.halt.load(Ordering::SeqCst) && job.changes_version();
        // NB: a drift scan checks what each gateway really serves; a
        // routine pass trusts the cheap read (every apply is verified).
        let read = || async {
            if trigger == Trigger::Drift {
                driver.verified().await
            } else {
                driver.live().await
            }
        };
        let (live, early) = if likely {
            let (live, attempt) = tokio::join!(
                self.retrying(read),
                self.begin(self.attempt_start(desired, trigger))
            );
            (live, Some(attempt))
        } else {
            (self.retrying(read).await, None)
        };
        for attempt in job.unfinished {
            self.resolve(attempt, live.as_ref().ok());
        }
        let live = match live {
            Ok(live) => live,
            Err(error) => {
                let mut report = failure(desired, None, &error);
                if let Some(Ok(begun)) = early {
                    report.attempt =
                        Some(self.settle(begun, Outcome::Failed, report.error.clone()));
                }
                return report;
            }
        };
        let was_drifted = job.drifting;
        let decision = drift::decide(&drift::Facts {
            desired: &desired.digest,
            live: live.digest.as_ref(),
            record: previous,
            deployment: policy.verified.as_ref(),
            policy: policy.drift,
            trigger,
            gated: policy.held.is_some(),
        });
        let trigger = match decision.act {
            Act::Apply(trigger) => trigger,
            left => {
                // NB: an attempt recorded early for a new version ends
                // unchanged when the gateway is left as it runs.
                let attempt = match early {
                    Some(Ok(begun)) => Some(self.settle(begun, Outcome::Unchanged, None)),
                    _ => None,
                };
                let mut report = match (decision.found, left) {
                    (Found::InSync, _) => {
                        let report =
                            report(desired, GatewayState::InSync, live.digest, false, None);
                        if was_drifted {
                            self.drift_ended(desired, &report, policy, Resolution::Reverted);
                        }
                        report
                    }
                    (_, Act::Hold) => {
                        let state = match job.pinned {
                            Some(_) => GatewayState::Pinned,
                            None => GatewayState::Gated,
                        };
                        let mut report = report(desired, state, live.digest, false, None);
                        report.gated = policy.held.clone();
                        report
                    }
                    // Drifted, and the policy says to leave it.
                    _ => {
                        let drift = self.drift_found(driver, desired, &live, policy).await;
                        let mut report =
                            report(desired, GatewayState::Drifted, live.digest, false, None);
                        report.drift = Some(drift);
                        report
                    }
                };
                report.attempt = attempt;
                return report;
            }
        };
        let drift = match decision.found {
            Found::Drifted => Some(self.drift_found(driver, desired, &live, policy).await),
            _ => None,
        };
        let expected = live.digest.clone();
        let mut report = self
            .apply_and_verify(driver, desired, trigger, &live, expected, early, job.halt)
            .await;
        if report.state == GatewayState::InSync && (was_drifted || drift.is_some()) {
            let how = if drift.is_some() {
                Resolution::Healed
            } else {
                Resolution::Superseded
            };
            self.drift_ended(desired, &report, policy, how);
        }
        report.drift = drift;
        report
    }

    /// The pins of the environments in scope, honoured: each pinned
    /// environment's gateways in `rendered` get the pinned version's render
    /// (checked against the pin's digest); a pin the head has caught up
    /// with ends. Returns the environments a pin holds.
    async fn pinned(
        &self,
        repo: &Repository,
        rendered: &mut [RenderedGateway],
        revision: &str,
        only: Option<&str>,
    ) -> Result<HashMap<String, pin::Pinned>, ReconcileError> {
        let mut held = HashMap::new();
        let mut loaded_now = HashSet::new();
        for pin in self.written(self.ledger.pins(only))? {
            // NB: an environment gone from the repository has no gateways
            // to hold; its pin stays in the ledger for when it is back.
            let Some(env) = repo.environments.get(&pin.environment) else {
                continue;
            };
            let (_, head, _) = crate::config::render::environment_version(repo, env);
            let loaded = if head == pin.digest {
                Err(String::new())
            } else {
                loaded_now.insert(pin.revision.clone());
                self.load_pinned(&pin.revision).await
            };
            let decision = pin::honour(&pin, &head, loaded.as_deref().map_err(String::as_str));
            let problem = match decision {
                pin::Honour::CaughtUp => {
                    tracing::info!(environment = %pin.environment, digest = %head.short(), "the head renders the pinned version: the pin ends (caught-up)");
                    self.written(self.ledger.unpin(
                        &pin.environment,
                        self.clock.now(),
                        "sluice",
                        PinEnd::CaughtUp,
                    ))?;
                    continue;
                }
                pin::Honour::Level => None,
                pin::Honour::Apply(version) => {
                    pin::substitute(rendered, &pin.environment, &version);
                    self.written(self.ledger.pin_holds(&pin.environment, self.clock.now()))?;
                    None
                }
                pin::Honour::Hold(why) => {
                    self.written(self.ledger.pin_holds(&pin.environment, self.clock.now()))?;
                    tracing::warn!(environment = %pin.environment, reason = %why, "pin cannot be honoured; holding");
                    Some(why)
                }
            };
            held.insert(
                pin.environment.clone(),
                pin::Pinned {
                    pin,
                    head,
                    head_revision: revision.to_owned(),
                    problem,
                },
            );
        }
        if only.is_none() {
            let mut loads = self.pinned_loads.lock().unwrap_or_else(|e| e.into_inner());
            loads.retain(|commit, _| loaded_now.contains(commit));
        }
        Ok(held)
    }

    /// The repository at a pinned commit, loaded once while it stays pinned.
    async fn load_pinned(&self, commit: &str) -> Result<Arc<Loaded>, String> {
        let cached = self
            .pinned_loads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(commit)
            .cloned();
        if let Some(loaded) = cached {
            return Ok(loaded);
        }
        let Some(revisions) = &self.revisions else {
            return Err("this Sluice cannot load other revisions".into());
        };
        let loaded = revisions.load(commit).await?;
        self.pinned_loads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(commit.to_owned(), loaded.clone());
        Ok(loaded)
    }

    /// Whether the environment's promotion gate holds its new version back,
    /// and why; says so (once, when it starts holding) to the alert sinks.
    fn gate(
        &self,
        env: &Environment,
        rendered: &[RenderedGateway],
        revision: &str,
        previous: &HashMap<(String, String), GatewayRecord>,
        policy: &EnvironmentPolicy,
        promoted: Option<&Promotion>,
    ) -> Result<Option<String>, ReconcileError> {
        let Some(first) = rendered.iter().find(|r| r.environment == env.slug) else {
            return Ok(None);
        };
        let Some(evaluation) =
            gate::evaluate(self.ledger.as_ref(), env, &first.packs, self.clock.now())?
        else {
            return Ok(None);
        };
        let (decision, soak) = (&evaluation.gate, evaluation.soak);
        // NB: the head's promotion trailer says where the change came from.
        let reason = decision
            .reason(&evaluation.upstream, soak)
            .map(|reason| match promoted {
                Some(p) => {
                    let source = p
                        .packs
                        .first()
                        .map_or("", |pack| prefix(&pack.source_revision, 8));
                    format!("{reason} (promoted from {}@{source})", p.from)
                }
                None => reason,
            });
        let already = previous
            .iter()
            .any(|((e, _), r)| *e == env.slug && r.state == GatewayState::Gated);
        if let Some(reason) = &reason
            && !already
            && !policy.sinks.is_empty()
        {
            tracing::info!(environment = %env.slug, reason, "promotion gated");
            let mut alert = self.alert_for(
                AlertEvent::PromotionGated,
                &Desired {
                    environment: env.slug.clone(),
                    gateway: String::new(),
                    digest: first.digest.clone(),
                    body: first.canonical.clone(),
                    revision: revision.to_owned(),
                },
                None,
            );
            alert.detail = Some(reason.clone());
            alert.sinks = policy.sinks.clone();
            self.alerts.send(alert);
        }
        Ok(reason)
    }

    /// Every open drift episode of an environment (at most one per gateway)
    /// and its recently resolved ones: what a gate needs.
    /// Records a drift episode (opening one only if none is open) and
    /// alerts on a new one.
    async fn drift_found(
        &self,
        driver: &dyn Gateway,
        desired: &Desired,
        live: &Live,
        policy: &EnvironmentPolicy,
    ) -> DriftReport {
        let (changes, diff) = drift::compare_live(driver, desired).await;
        let episode = DriftEpisode {
            environment: desired.environment.clone(),
            gateway: desired.gateway.clone(),
            revision: desired.revision.clone(),
            desired_digest: desired.digest.clone(),
            live_digest: live.digest.clone(),
            changes: changes.clone(),
            onset_at: self.clock.now(),
            resolved_at: None,
            resolution: None,
        };
        let new_episode = self
            .written(self.ledger.open_drift(&episode))
            .unwrap_or_else(|e| {
                tracing::error!(
                    environment = %desired.environment,
                    gateway = %desired.gateway,
                    error = %e,
                    "cannot record the drift episode"
                );
                false
            });
        let report = DriftReport {
            new_episode,
            changes,
            diff,
        };
        if new_episode {
            tracing::warn!(
                environment = %desired.environment,
                gateway = %desired.gateway,
                live = live.digest.as_ref().map_or("", |d| d.short()),
                changes = report.changes.len(),
                "drift: the gateway no longer runs what Sluice verified"
            );
            let mut alert =
                self.alert_for(AlertEvent::DriftDetected, desired, live.digest.as_ref());
            alert.changes = report.changes.clone();
            alert.diff = report.diff.clone();
            if policy.alerts_on_drift() {
                alert.sinks = policy.sinks.clone();
                self.alerts.send(alert);
            }
        }
        report
    }

    /// Closes the gateway's open drift episode, if any, and says so.
    fn drift_ended(
        &self,
        desired: &Desired,
        report: &GatewayReport,
        policy: &EnvironmentPolicy,
        how: Resolution,
    ) {
        let closed = self.written(self.ledger.resolve_drift(
            &desired.environment,
            &desired.gateway,
            self.clock.now(),
            how,
        ));
        match closed {
            Ok(Some(_)) => {
                tracing::info!(
                    environment = %desired.environment,
                    gateway = %desired.gateway,
                    resolution = how.as_str(),
                    "drift resolved"
                );
                if policy.alerts_on_drift() {
                    self.alert(
                        policy,
                        AlertEvent::DriftResolved,
                        desired,
                        report,
                        Some(how.as_str().into()),
                    );
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(
                environment = %desired.environment,
                gateway = %desired.gateway,
                error = %e,
                "cannot close the drift episode"
            ),
        }
    }

    fn alert_for(&self, event: AlertEvent, desired: &Desired, live: Option<&Digest>) -> Alert {
        Alert {
            event,
            environment: desired.environment.clone(),
            gateway: desired.gateway.clone(),
            revision: desired.revision.clone(),
            desired_version: Alert::version(&desired.digest, &desired.revision),
            live_version: live.map(|d| d.short().to_owned()),
            changes: Vec::new(),
            diff: String::new(),
            detail: None,
            at: self.clock.now(),
            sinks: Arc::from(Vec::new()),
        }
    }

    fn alert(
        &self,
        policy: &EnvironmentPolicy,
        event: AlertEvent,
        desired: &Desired,
        report: &GatewayReport,
        detail: Option<String>,
    ) {
        if policy.sinks.is_empty() {
            return;
        }
        let mut alert = self.alert_for(event, desired, report.observed.as_ref());
        alert.detail = detail;
        alert.sinks = policy.sinks.clone();
        self.alerts.send(alert);
    }

    /// Records the attempt, applies, reads back and verifies.
    #[allow(clippy::too_many_arguments)]
    async fn apply_and_verify(
        &self,
        driver: &dyn Gateway,
        desired: &Desired,
        trigger: Trigger,
        live: &Live,
        expected: Option<Digest>,
        early: Option<Result<Begun, LedgerError>>,
        halt: &AtomicBool,
    ) -> GatewayReport {
        let started = match early {
            Some(started) => started,
            None if halt.load(Ordering::SeqCst) => Err(self.ledger_refusal()),
            None => self.begin(self.attempt_start(desired, trigger)).await,
        };
        let begun = match started {
            Ok(begun) => begun,
            Err(e) => {
                // NB: no apply without its record: an unrecorded apply could
                // never be resolved after a crash, and the ledger would not
                // say what runs where. The rest of the pass applies nothing.
                halt.store(true, Ordering::SeqCst);
                tracing::warn!(
                    environment = %desired.environment,
                    gateway = %desired.gateway,
                    error = %e,
                    "not applied: the ledger cannot record the attempt"
                );
                return report(
                    desired,
                    GatewayState::Pending,
                    live.digest.clone(),
                    false,
                    Some(format!(
                        "not applied: the ledger cannot record the attempt ({e}); applies resume once it can"
                    )),
                );
            }
        };
        let result = self.apply(driver, desired, expected).await;
        let (outcome, mut report) = match result {
            Ok(applied) => match self.retrying(|| driver.verified()).await {
                Ok(after) if after.digest.as_ref() == Some(&desired.digest) => {
                    // NB: `Unchanged` after a retry whose first try swapped
                    // but lost its answer still changed the gateway.
                    let changed = matches!(applied, Applied::Swapped { .. })
                        || live.digest.as_ref() != Some(&desired.digest);
                    let outcome = if changed {
                        Outcome::Applied
                    } else {
                        Outcome::Unchanged
                    };
                    // NB: a change is news in a daemon's log; a gateway
                    // found running its version already is not.
                    if changed {
                        tracing::info!(
                            environment = %desired.environment,
                            gateway = %desired.gateway,
                            digest = %desired.digest.short(),
                            "applied and verified"
                        );
                    } else {
                        tracing::debug!(
                            environment = %desired.environment,
                            gateway = %desired.gateway,
                            digest = %desired.digest.short(),
                            "verified: already running"
                        );
                    }
                    (
                        outcome,
                        report(desired, GatewayState::InSync, after.digest, changed, None),
                    )
                }
                Ok(after) => {
                    let error = GatewayError::Mismatch {
                        applied: desired.digest.to_string(),
                        reported: after.digest.map_or("nothing".into(), |d| d.to_string()),
                    };
                    (Outcome::Failed, failure(desired, None, &error))
                }
                Err(error) => (Outcome::Failed, failure(desired, None, &error)),
            },
            Err(error) => (
                Outcome::Failed,
                failure(desired, live.digest.clone(), &error),
            ),
        };
        report.attempt = Some(self.settle(begun, outcome, report.error.clone()));
        report
    }

    /// A write made outside the journal, counted in the ledger's health.
    fn written<T>(&self, result: Result<T, LedgerError>) -> Result<T, LedgerError> {
        if let Err(e) = &result {
            self.ledger_health().failed(e);
        }
        result
    }

    /// Why a halted pass applies nothing more.
    fn ledger_refusal(&self) -> LedgerError {
        LedgerError::Query {
            doing: "starting an attempt",
            message: self
                .ledger_health()
                .failing()
                .unwrap_or_else(|| "an earlier write of this pass failed".into()),
        }
    }

    fn attempt_start(&self, desired: &Desired, trigger: Trigger) -> AttemptStart {
        AttemptStart {
            environment: desired.environment.clone(),
            gateway: desired.gateway.clone(),
            revision: desired.revision.clone(),
            digest: desired.digest.clone(),
            trigger,
            started_at: self.clock.now(),
        }
    }

    /// Records an attempt's start.
    async fn begin(&self, start: AttemptStart) -> Result<Begun, LedgerError> {
        let at = std::time::Instant::now();
        let id = self.journal.start(start).await?;
        Ok(Begun { id, at })
    }

    /// Finishes an attempt of this pass; says how it went, for its report.
    fn settle(&self, begun: Begun, outcome: Outcome, error: Option<String>) -> Attempted {
        self.finish(begun.id, outcome, error);
        Attempted {
            outcome,
            duration: begun.at.elapsed(),
        }
    }

    fn finish(&self, id: AttemptId, outcome: Outcome, error: Option<String>) {
        self.journal.finish(AttemptFinish {
            id,
            finished_at: self.clock.now(),
            outcome,
            error,
        });
    }

    /// Applies with retries: transient failures back off; a gateway that
    /// changed since it was read (`412`) is read again and the apply retried
    /// against what it now runs.
    async fn apply(
        &self,
        driver: &dyn Gateway,
        desired: &Desired,
        mut expected: Option<Digest>,
    ) -> Result<Applied, GatewayError> {
        let backoff = self.options.backoff;
        let mut retry = 0;
        loop {
            let generation = self.next_generation();
            let error = match driver.apply(desired, expected.as_ref(), generation).await {
                Ok(applied) => return Ok(applied),
                Err(error) => error,
            };
            retry += 1;
            if retry >= backoff.attempts {
                return Err(error);
            }
            match &error {
                GatewayError::Changed { .. } => {
                    tracing::warn!(
                        environment = %desired.environment,
                        gateway = %desired.gateway,
                        "gateway changed since it was read; reading it again"
                    );
                    expected = self.retrying(|| driver.live()).await?.digest;
                }
                e if e.is_transient() => {
                    let hint = match e {
                        GatewayError::Busy { retry_after } => *retry_after,
                        _ => None,
                    };
                    let wait = backoff.delay(retry, rand::random::<f64>(), hint);
                    tracing::debug!(
                        environment = %desired.environment,
                        gateway = %desired.gateway,
                        error = %e,
                        ?wait,
                        "retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                _ => return Err(error),
            }
        }
    }

    /// Runs a read with retries on transient failures.
    async fn retrying<F, Fut>(&self, mut read: F) -> Result<Live, GatewayError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Live, GatewayError>>,
    {
        let backoff = self.options.backoff;
        let mut retry = 0;
        loop {
            match read().await {
                Ok(live) => return Ok(live),
                Err(e) if e.is_transient() && retry + 1 < backoff.attempts => {
                    retry += 1;
                    tokio::time::sleep(backoff.delay(retry, rand::random::<f64>(), None)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn record(
        &self,
        report: &GatewayReport,
        desired: &Desired,
        previous: Option<&GatewayRecord>,
    ) -> GatewayRecord {
        let now = self.clock.now();
        let observed = report.observed.clone();
        let changed_at = match previous {
            Some(p) if p.state == report.state && p.observed_digest == observed => p.changed_at,
            _ => now,
        };
        GatewayRecord {
            environment: report.environment.clone(),
            gateway: report.gateway.clone(),
            desired_digest: Some(desired.digest.clone()),
            desired_revision: Some(desired.revision.clone()),
            observed_digest: observed,
            state: report.state,
            changed_at,
            updated_at: now,
            error: report
                .error
                .clone()
                .or_else(|| report.gated.clone())
                .or_else(|| report.pinned.clone()),
        }
    }

    /// Environments whose every gateway is verified at the desired version
    /// now run it whole: the versions rollback and promotion gates go by.
    fn record_deployments(
        &self,
        environments: &[EnvironmentReport],
        rendered: &[RenderedGateway],
        revision: &str,
        pinned: &HashMap<String, pin::Pinned>,
    ) -> Vec<Deployment> {
        let mut recorded = Vec::new();
        for env in environments.iter().filter(|e| e.converged()) {
            let revision = pinned
                .get(&env.environment)
                .map_or(revision, |p| p.pin.revision.as_str());
            let Some(first) = rendered.iter().find(|r| r.environment == env.environment) else {
                continue;
            };
            let deployment = Deployment {
                environment: env.environment.clone(),
                revision: revision.to_owned(),
                digest: first.digest.clone(),
                packs: first.packs.iter().map(DeployedPack::from).collect(),
                verified_at: self.clock.now(),
            };
            match self.written(self.ledger.record_deployment(&deployment)) {
                Ok(true) => recorded.push(deployment),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(environment = %env.environment, error = %e, "cannot record the deployment");
                }
            }
        }
        recorded
    }

    /// The attempts left unfinished (of `only`, or all), by gateway.
    async fn unfinished(
        &self,
        only: Option<&str>,
    ) -> Result<HashMap<(String, String), Vec<Attempt>>, ReconcileError> {
        // NB: finishes still queued are not unfinished.
        self.journal.flush().await;
        let mut by_gateway: HashMap<(String, String), Vec<Attempt>> = HashMap::new();
        for attempt in self.ledger.unfinished_attempts()? {
            if only.is_none_or(|o| o == attempt.start.environment) {
                let key = (
                    attempt.start.environment.clone(),
                    attempt.start.gateway.clone(),
                );
                by_gateway.entry(key).or_default().push(attempt);
            }
        }
        Ok(by_gateway)
    }

    /// Finishes an attempt a stopped Sluice left unfinished, by what its
    /// gateway runs now: applied if it runs the attempt's digest,
    /// interrupted otherwise (or when it cannot be read).
    fn resolve(&self, attempt: &Attempt, live: Option<&Live>) {
        let ran = live.and_then(|l| l.digest.as_ref());
        let (outcome, error) = if ran == Some(&attempt.start.digest) {
            (
                Outcome::Applied,
                "resolved after restart: the gateway runs this version",
            )
        } else {
            (
                Outcome::Interrupted,
                "interrupted: Sluice stopped before the apply was verified",
            )
        };
        tracing::warn!(
            environment = %attempt.start.environment,
            gateway = %attempt.start.gateway,
            attempt = attempt.id,
            outcome = outcome.as_str(),
            "resolved an unfinished attempt"
        );
        self.finish(attempt.id, outcome, Some(error.to_owned()));
    }

    /// Resolves every attempt left unfinished (of `only`, or all) now,
    /// reading each gateway, many at once: for a Sluice stopping in the
    /// middle of a pass, and for the controller adopting an Environment.
    /// (A pass resolves its gateways' attempts itself.) Returns how many.
    pub async fn resolve_unfinished(
        &self,
        repo: Option<&Repository>,
        only: Option<&str>,
    ) -> Result<usize, ReconcileError> {
        let unfinished: Vec<Attempt> = self
            .unfinished(only)
            .await?
            .into_values()
            .flatten()
            .collect();
        let reads = futures::stream::iter(0..unfinished.len())
            .map(|i| {
                let attempt = &unfinished[i];
                let spec = repo
                    .and_then(|r| r.environments.get(&attempt.start.environment))
                    .and_then(|e| {
                        e.gateways
                            .iter()
                            .find(|g| g.name() == attempt.start.gateway)
                    })
                    .cloned();
                async move {
                    let live = match spec.map(|s| self.driver(&attempt.start.environment, &s)) {
                        Some(Ok(driver)) => driver.live().await.ok(),
                        _ => None,
                    };
                    self.resolve(attempt, live.as_ref());
                }
            })
            .buffer_unordered(self.options.concurrency.max(1));
        reads.collect::<Vec<()>>().await;
        self.journal.flush().await;
        Ok(unfinished.len())
    }
}

fn report(
    desired: &Desired,
    state: GatewayState,
    observed: Option<Digest>,
    applied: bool,
    error: Option<String>,
) -> GatewayReport {
    GatewayReport {
        environment: desired.environment.clone(),
        gateway: desired.gateway.clone(),
        state,
        desired: desired.digest.clone(),
        observed,
        applied,
        error,
        drift: None,
        gated: None,
        pinned: None,
        attempt: None,
    }
}

fn failure(desired: &Desired, observed: Option<Digest>, error: &GatewayError) -> GatewayReport {
    let state = match error {
        GatewayError::Unreachable(_) | GatewayError::Timeout(_) => GatewayState::Unreachable,
        _ => GatewayState::Failed,
    };
    tracing::warn!(
        environment = %desired.environment,
        gateway = %desired.gateway,
        error = %error,
        state = state.as_str(),
        "gateway did not converge"
    );
    report(desired, state, observed, false, Some(error.to_string()))
}

/// Reports by environment, each environment's gateways by name.
fn group(mut reports: Vec<GatewayReport>) -> Vec<EnvironmentReport> {
    reports.sort_by(|a, b| (&a.environment, &a.gateway).cmp(&(&b.environment, &b.gateway)));
    let mut environments: Vec<EnvironmentReport> = Vec::new();
    for report in reports {
        match environments.last_mut() {
            Some(env) if env.environment == report.environment => env.gateways.push(report),
            _ => environments.push(EnvironmentReport {
                environment: report.environment.clone(),
                gateways: vec![report],
            }),
        }
    }
    environments
}

#[cfg(test)]
pub(crate) mod tests;
