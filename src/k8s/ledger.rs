//! The ledger in Kubernetes mode: a [`MemoryLedger`] written through to each
//! `Environment`'s `status.ledger`, so drift detection, promotion gates and
//! `sluice rollback` work when the controller's pod (and its disk) is gone.
//!
//! ```text
//!   Reconciler ──► StatusLedger (Ledger) ──► MemoryLedger (working copy)
//!                       │ before an apply: its start      ▲ adopt(): read back once
//!                       │ after a pass: flush()           │ per Environment
//!                       ▼                                 │
//!        Environment status.ledger (field manager sluice-ledger)
//! ```
//!
//! An attempt is in the status before its gateway is asked: a write with
//! starts is persisted before it returns, so a controller killed mid-apply
//! leaves an unfinished attempt the next leader resolves. Everything else
//! (finishes, gateway records, deployments, drift) is written by [`flush`]
//! at the end of the environment's reconcile, and only when it changed.
//!
//! One controller keeps one record per environment directory: two
//! `Environment`s naming the same `environments/<slug>` are refused
//! ([`StatusLedger::adopt`]).
//!
//! [`flush`]: StatusLedger::flush

use super::{
    Environment,
    crd::{
        LedgerAttempt, LedgerDeployment, LedgerDriftEpisode, LedgerEvalFailure, LedgerEvalRun,
        LedgerGateway, LedgerPack, LedgerPin, LedgerStatus,
    },
};
use crate::config::diff::Change;
use crate::drift::shortened;
use crate::ledger::{
    Attempt, AttemptId, AttemptStart, BatchResult, Deployment, DriftEpisode, EnvironmentRecord,
    EvalFailure, EvalRun, GatewayRecord, HistoryCursor, Ledger, LedgerError, MemoryLedger, Millis,
    Outcome, Pin, PinEnd, Resolution, RevisionRecord, WriteBatch,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

/// The field manager of `status.ledger` (the rest of the status is the
/// controller's own, so neither write removes the other's fields).
pub const FIELD_MANAGER: &str = "sluice-ledger";
/// Drift changes longer than this are not kept in the status (an open
/// episode per gateway must fit in one object's status).
const CHANGES_KEPT: usize = 2 * 1024;
/// Longest error text kept per gateway or attempt.
const ERROR_KEPT: usize = 1024;
/// Most bytes `status.ledger` may take (as JSON): well inside the API
/// server's 1.5 MiB per object, with room for the rest of the status.
pub const STATUS_BUDGET: usize = 512 * 1024;
/// History kept when the record must shrink to fit [`STATUS_BUDGET`].
const SHRUNK_HISTORY: usize = 5;

/// An `Environment` object, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl ObjectKey {
    pub fn of(env: &Environment) -> Self {
        ObjectKey {
            namespace: env.namespace().unwrap_or_default(),
            name: env.name_any(),
        }
    }
}

/// The environment slug an `Environment` reconciles: the last part of its path.
pub fn slug_of(env: &Environment) -> &str {
    let path = env.spec.path.trim_end_matches('/');
    path.rsplit('/').next().unwrap_or(path)
}

/// Where the records are written, and the last status written per slug.
struct Writer {
    client: Client,
    runtime: tokio::runtime::Handle,
    written: Mutex<HashMap<String, LedgerStatus>>,
    /// One write at a time per environment, so an older copy never lands last.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The ledger kept in `Environment` status; see the module documentation.
pub struct StatusLedger {
    memory: MemoryLedger,
    objects: Mutex<HashMap<String, ObjectKey>>,
    /// Environments read back with attempts a previous controller left
    /// unfinished, until their first pass resolves them.
    unresolved: Mutex<HashSet<String>>,
    writer: Option<Writer>,
}

impl StatusLedger {
    /// A ledger that writes through to the API server (the controller's).
    pub fn new(client: Client, runtime: tokio::runtime::Handle) -> Self {
        StatusLedger {
            memory: MemoryLedger::new(),
            objects: Mutex::default(),
            unresolved: Mutex::default(),
            writer: Some(Writer {
                client,
                runtime,
                written: Mutex::default(),
                locks: Mutex::default(),
            }),
        }
    }

    /// The records of every `Environment` in `namespace` (or all), read
    /// once, never written: what `sluice status|history|rollback --cluster`
    /// read.
    pub async fn read(client: &Client, namespace: Option<&str>) -> Result<Self, kube::Error> {
        let api: Api<Environment> = match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let ledger = StatusLedger {
            memory: MemoryLedger::new(),
            objects: Mutex::default(),
            unresolved: Mutex::default(),
            writer: None,
        };
        let environments = api.list(&ListParams::default()).await?.items;
        for env in &environments {
            if let Err(other) = ledger.bind(env) {
                tracing::warn!(environment = %ObjectKey::of(env), other = %other, "two Environments name the same directory; reading the first");
            }
        }
        // NB: the newest revision seen is not kept in status; what most
        // Environments should run stands for it (all of them, normally).
        let desired = environments
            .iter()
            .filter_map(|e| e.status.as_ref()?.desired_revision.clone());
        if let Some(revision) = most_common(desired) {
            let _ = ledger.memory.record_revision(&RevisionRecord {
                commit: revision,
                seen_at: 0,
                valid: true,
                errors: 0,
                findings: Vec::new(),
            });
        }
        Ok(ledger)
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, HashMap<String, ObjectKey>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds `env`'s slug to it and restores its record from its status,
    /// the first time only: afterwards this process's copy is the newer.
    /// `Err` names the other `Environment` that already has the slug.
    fn bind(&self, env: &Environment) -> Result<(), ObjectKey> {
        let key = ObjectKey::of(env);
        let slug = slug_of(env).to_owned();
        let mut objects = self.objects();
        match objects.get(&slug) {
            Some(bound) if *bound == key => return Ok(()),
            Some(bound) => return Err(bound.clone()),
            None => {}
        }
        let status = env.status.as_ref().and_then(|s| s.ledger.clone());
        if let Some(status) = &status {
            let record = record_of(&slug, status);
            if record.attempts.iter().any(|a| a.outcome.is_none()) {
                let mut unresolved = self.unresolved.lock().unwrap_or_else(|e| e.into_inner());
                unresolved.insert(slug.clone());
            }
            self.memory.restore(&slug, record);
        }
        if let Some(writer) = &self.writer {
            let mut written = writer.written.lock().unwrap_or_else(|e| e.into_inner());
            written.insert(slug.clone(), status.unwrap_or_default());
        }
        objects.insert(slug, key);
        Ok(())
    }

    /// Makes `env` the `Environment` whose status keeps its slug's record,
    /// reading the record back from the API server the first time (a
    /// previous leader may have written since the watch's copy).
    pub async fn adopt(&self, env: &Environment) -> Result<(), AdoptError> {
        let key = ObjectKey::of(env);
        let bound = self.objects().get(slug_of(env)).cloned();
        match bound {
            Some(bound) if bound == key => {
                return self.reconcile_with(slug_of(env), env).await;
            }
            Some(bound) if self.exists(&bound).await? => {
                return Err(AdoptError::Taken {
                    slug: slug_of(env).to_owned(),
                    other: bound,
                });
            }
            // The other was deleted: its record passes to this one.
            Some(_) => {
                self.objects().remove(slug_of(env));
            }
            None => {}
        }
        let fresh = match &self.writer {
            Some(writer) => {
                let api: Api<Environment> = Api::namespaced(writer.client.clone(), &key.namespace);
                api.get_status(&key.name)
                    .await
                    .map_err(|source| AdoptError::Read {
                        key: key.clone(),
                        source: Box::new(source),
                    })?
            }
            None => env.clone(),
        };
        self.bind(&fresh).map_err(|other| AdoptError::Taken {
            slug: slug_of(env).to_owned(),
            other,
        })
    }

    /// When `env`'s status says something else than this process last
    /// wrote (cleared by hand, the object made again under its name, or an
    /// apply a previous leader started after this one read the record):
    /// takes in the unfinished attempts it does not know, to be resolved
    /// by the next pass, and forgets the last write, so the next flush
    /// writes the whole record back. Nothing another writer recorded is lost.
    async fn reconcile_with(&self, slug: &str, env: &Environment) -> Result<(), AdoptError> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        let shown = |env: &Environment| {
            env.status
                .as_ref()
                .and_then(|s| s.ledger.clone())
                .unwrap_or_default()
        };
        let differs = |shown: &LedgerStatus| {
            let written = writer.written.lock().unwrap_or_else(|e| e.into_inner());
            written.get(slug) != Some(shown)
        };
        if !differs(&shown(env)) {
            return Ok(());
        }
        // NB: the watch's copy may predate this process's own last write.
        let key = ObjectKey::of(env);
        let api: Api<Environment> = Api::namespaced(writer.client.clone(), &key.namespace);
        let fresh = api
            .get_status(&key.name)
            .await
            .map_err(|source| AdoptError::Read {
                key: key.clone(),
                source: Box::new(source),
            })?;
        let shown = shown(&fresh);
        if !differs(&shown) {
            return Ok(());
        }
        writer
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(slug);
        let known = self.memory.environment(slug).attempts;
        let foreign: Vec<Attempt> = record_of(slug, &shown)
            .attempts
            .into_iter()
            .filter(|a| a.outcome.is_none())
            .filter(|a| !known.iter().any(|k| k.start == a.start))
            .collect();
        if !foreign.is_empty() {
            self.memory.add_attempts(slug, foreign);
            let mut unresolved = self.unresolved.lock().unwrap_or_else(|e| e.into_inner());
            unresolved.insert(slug.to_owned());
        }
        Ok(())
    }

    /// Whether `slug` was read back with unfinished attempts that nobody
    /// has resolved yet; answers `true` once.
    pub fn take_unresolved(&self, slug: &str) -> bool {
        let mut unresolved = self.unresolved.lock().unwrap_or_else(|e| e.into_inner());
        unresolved.remove(slug)
    }

    /// Whether the `Environment` `key` still exists.
    async fn exists(&self, key: &ObjectKey) -> Result<bool, AdoptError> {
        let Some(writer) = &self.writer else {
            return Ok(true);
        };
        let api: Api<Environment> = Api::namespaced(writer.client.clone(), &key.namespace);
        match api.get_metadata_opt(&key.name).await {
            Ok(found) => Ok(found.is_some()),
            Err(source) => Err(AdoptError::Read {
                key: key.clone(),
                source: Box::new(source),
            }),
        }
    }

    /// Whether this process keeps `slug`'s record (its copy is the newest).
    pub fn keeps(&self, slug: &str) -> bool {
        self.objects().contains_key(slug)
    }

    /// Reads an environment this controller does not own (another shard's,
    /// a promotion's upstream) from its current status.
    pub fn observe(&self, env: &Environment) {
        let slug = slug_of(env);
        // NB: under the lock, so an adoption cannot slip in between.
        let objects = self.objects();
        if objects.contains_key(slug) {
            return;
        }
        if let Some(status) = env.status.as_ref().and_then(|s| s.ledger.as_ref()) {
            self.memory.restore(slug, record_of(slug, status));
        }
    }

    /// `slug`'s record as the status shows it.
    pub fn status(&self, slug: &str) -> LedgerStatus {
        status_of(&self.memory.environment(slug))
    }

    /// Writes `slug`'s record into its `Environment`'s status when it
    /// changed since the last write.
    pub async fn flush(&self, slug: &str) -> Result<(), FlushError> {
        let (Some(writer), Some(key)) = (&self.writer, self.objects().get(slug).cloned()) else {
            return Ok(());
        };
        let lock = {
            let mut locks = writer.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(slug.to_owned()).or_default().clone()
        };
        let _one_at_a_time = lock.lock().await;
        let status =
            fit(self.status(slug), STATUS_BUDGET).map_err(|bytes| FlushError::TooLarge {
                key: key.clone(),
                slug: slug.to_owned(),
                bytes,
            })?;
        let unchanged = {
            let written = writer.written.lock().unwrap_or_else(|e| e.into_inner());
            written.get(slug) == Some(&status)
        };
        if unchanged {
            return Ok(());
        }
        let api: Api<Environment> = Api::namespaced(writer.client.clone(), &key.namespace);
        let patch = serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Environment",
            "status": { "ledger": status },
        });
        api.patch_status(
            &key.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| FlushError::Write {
            key: key.clone(),
            source: Box::new(source),
        })?;
        let mut written = writer.written.lock().unwrap_or_else(|e| e.into_inner());
        written.insert(slug.to_owned(), status);
        Ok(())
    }

    /// Writes the environments of `starts` before their applies go out;
    /// returns the environments that could not be written, and why (one
    /// environment's failure is not another's). Called from the
    /// reconciler's ledger thread, never a runtime thread.
    fn persist_starts(&self, starts: &[AttemptStart]) -> HashMap<String, LedgerError> {
        let mut slugs: Vec<&str> = starts.iter().map(|s| s.environment.as_str()).collect();
        slugs.sort_unstable();
        slugs.dedup();
        let Some(writer) = &self.writer else {
            return HashMap::new();
        };
        let failed = |message: String| LedgerError::Query {
            doing: "writing attempts into the Environment's status",
            message,
        };
        let mut failures = HashMap::new();
        for slug in slugs {
            let Some(key) = self.objects().get(slug).cloned() else {
                let why = format!("no Environment keeps the record of environments/{slug}");
                failures.insert(slug.to_owned(), failed(why));
                continue;
            };
            if tokio::runtime::Handle::try_current().is_ok() {
                // NB: blocking a runtime thread on the runtime could deadlock.
                let why = format!("Environment {key}: written from an async runtime thread");
                failures.insert(slug.to_owned(), failed(why));
                continue;
            }
            if let Err(e) = writer.runtime.block_on(self.flush(slug)) {
                failures.insert(slug.to_owned(), failed(e.to_string()));
            }
        }
        failures
    }
}

/// Why a record could not be written into its `Environment`'s status.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error(
        "the ledger of environments/{slug} needs {bytes} bytes, more than the {STATUS_BUDGET} an Environment's status may take (Environment {key}); split its gateways across environments"
    )]
    TooLarge {
        key: ObjectKey,
        slug: String,
        bytes: usize,
    },
    #[error("cannot write the ledger into the status of Environment {key}: {source}")]
    Write {
        key: ObjectKey,
        source: Box<kube::Error>,
    },
}

/// Why an `Environment` cannot keep its record.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error(
        "Environment {other} already reconciles environments/{slug}; one controller keeps one record per environment directory (split them with --watch-namespace or --shard)"
    )]
    Taken { slug: String, other: ObjectKey },
    #[error("cannot read the status of Environment {key}: {source}")]
    Read {
        key: ObjectKey,
        source: Box<kube::Error>,
    },
}

impl Ledger for StatusLedger {
    fn record_revision(&self, revision: &RevisionRecord) -> Result<(), LedgerError> {
        self.memory.record_revision(revision)
    }

    fn last_revision(&self) -> Result<Option<RevisionRecord>, LedgerError> {
        self.memory.last_revision()
    }

    fn start_attempt(&self, start: &AttemptStart) -> Result<AttemptId, LedgerError> {
        let started = self.write(&WriteBatch {
            starts: vec![start.clone()],
            ..Default::default()
        })?;
        started.started.into_iter().next().unwrap_or_else(|| {
            Err(LedgerError::Query {
                doing: "starting an attempt",
                message: "no attempt was started".into(),
            })
        })
    }

    fn finish_attempt(
        &self,
        id: AttemptId,
        finished_at: Millis,
        outcome: Outcome,
        error: Option<&str>,
    ) -> Result<(), LedgerError> {
        self.memory.finish_attempt(id, finished_at, outcome, error)
    }

    /// The starts are in the status when this returns; when they cannot
    /// be written, they are taken back and each answers the error, so no
    /// apply goes out unrecorded.
    fn write(&self, batch: &WriteBatch) -> Result<BatchResult, LedgerError> {
        let mut result = self.memory.write_batch(batch);
        if batch.starts.is_empty() {
            return Ok(result);
        }
        let failures = self.persist_starts(&batch.starts);
        if failures.is_empty() {
            return Ok(result);
        }
        let mut forgotten = Vec::new();
        for (start, started) in batch.starts.iter().zip(&mut result.started) {
            if let (Some(error), Ok(id)) = (failures.get(&start.environment), &started) {
                forgotten.push(*id);
                *started = Err(error.clone());
            }
        }
        self.memory.forget_attempts(&forgotten);
        Ok(result)
    }

    fn unfinished_attempts(&self) -> Result<Vec<Attempt>, LedgerError> {
        self.memory.unfinished_attempts()
    }

    fn history_page(
        &self,
        environment: &str,
        gateway: Option<&str>,
        before: Option<HistoryCursor>,
        limit: usize,
    ) -> Result<Vec<Attempt>, LedgerError> {
        self.memory
            .history_page(environment, gateway, before, limit)
    }

    fn upsert_gateway(&self, record: &GatewayRecord) -> Result<(), LedgerError> {
        self.memory.upsert_gateway(record)
    }

    fn remove_gateways(&self, gone: &[(String, String)]) -> Result<(), LedgerError> {
        self.memory.remove_gateways(gone)
    }

    fn gateways(&self, environment: Option<&str>) -> Result<Vec<GatewayRecord>, LedgerError> {
        self.memory.gateways(environment)
    }

    fn record_deployment(&self, deployment: &Deployment) -> Result<bool, LedgerError> {
        self.memory.record_deployment(deployment)
    }

    fn deployments(&self, environment: &str, limit: usize) -> Result<Vec<Deployment>, LedgerError> {
        self.memory.deployments(environment, limit)
    }

    fn open_drift(&self, episode: &DriftEpisode) -> Result<bool, LedgerError> {
        self.memory.open_drift(episode)
    }

    fn resolve_drift(
        &self,
        environment: &str,
        gateway: &str,
        at: Millis,
        resolution: Resolution,
    ) -> Result<Option<DriftEpisode>, LedgerError> {
        self.memory
            .resolve_drift(environment, gateway, at, resolution)
    }

    fn drift_episodes(
        &self,
        environment: Option<&str>,
        open_only: bool,
        limit: usize,
    ) -> Result<Vec<DriftEpisode>, LedgerError> {
        self.memory.drift_episodes(environment, open_only, limit)
    }

    fn pin(&self, pin: &Pin) -> Result<Option<Pin>, LedgerError> {
        self.memory.pin(pin)
    }

    fn unpin(
        &self,
        environment: &str,
        at: Millis,
        by: &str,
        how: PinEnd,
    ) -> Result<Option<Pin>, LedgerError> {
        self.memory.unpin(environment, at, by, how)
    }

    fn pin_holds(&self, environment: &str, since: Millis) -> Result<(), LedgerError> {
        self.memory.pin_holds(environment, since)
    }

    fn pins(&self, environment: Option<&str>) -> Result<Vec<Pin>, LedgerError> {
        self.memory.pins(environment)
    }

    fn pin_history(&self, environment: &str, limit: usize) -> Result<Vec<Pin>, LedgerError> {
        self.memory.pin_history(environment, limit)
    }

    fn record_eval_run(&self, run: &EvalRun) -> Result<(), LedgerError> {
        self.memory.record_eval_run(run)
    }

    fn eval_runs(
        &self,
        environment: &str,
        suite: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EvalRun>, LedgerError> {
        self.memory.eval_runs(environment, suite, limit)
    }

    fn prune(
        &self,
        now: Millis,
        retention: &dyn Fn(&str) -> Duration,
    ) -> Result<usize, LedgerError> {
        self.memory.prune(now, retention)
    }
}

/// The value met most often (the first of equals), if any.
fn most_common(values: impl Iterator<Item = String>) -> Option<String> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for value in values {
        match counts.iter_mut().find(|(v, _)| *v == value) {
            Some((_, count)) => *count += 1,
            None => counts.push((value, 1)),
        }
    }
    let best = counts.iter().map(|(_, count)| *count).max()?;
    counts
        .into_iter()
        .find(|(_, count)| *count == best)
        .map(|(v, _)| v)
}

/// `status` within `budget` bytes of JSON: first without drift changes,
/// then with only the newest finished attempts and resolved episodes.
/// Gateway records, unfinished attempts, open episodes and deployments are
/// never dropped; `Err` gives the size when even they do not fit.
pub fn fit(mut status: LedgerStatus, budget: usize) -> Result<LedgerStatus, usize> {
    let size = |status: &LedgerStatus| serde_json::to_vec(status).map_or(usize::MAX, |v| v.len());
    if size(&status) <= budget {
        return Ok(status);
    }
    for episode in &mut status.drift_episodes {
        episode.changes = "[]".into();
    }
    for run in &mut status.eval_runs {
        run.failures.truncate(SHRUNK_HISTORY);
    }
    if size(&status) <= budget {
        return Ok(status);
    }
    let mut finished = 0;
    status.attempts.retain(|a| {
        finished += usize::from(a.outcome.is_some());
        a.outcome.is_none() || finished <= SHRUNK_HISTORY
    });
    let mut resolved = 0;
    status.drift_episodes.retain(|e| {
        resolved += usize::from(e.resolved_at.is_some());
        e.resolved_at.is_none() || resolved <= SHRUNK_HISTORY
    });
    match size(&status) {
        bytes if bytes <= budget => Ok(status),
        bytes => Err(bytes),
    }
}

/// Milliseconds as RFC 3339 text (`2026-11-23T09:00:00.123Z`).
fn time_text(at: Millis) -> String {
    crate::clock::rfc3339_millis(at)
}

/// RFC 3339 text as milliseconds; unreadable text (a hand edit) reads as 0.
fn millis(text: &str) -> Millis {
    crate::clock::parse_rfc3339(text).unwrap_or_default()
}

/// An episode's changes as the status keeps them: JSON text, dropped
/// (`[]`) past [`CHANGES_KEPT`] bytes so one wide drift cannot fill the
/// object.
fn changes_text(changes: &[Change]) -> String {
    let text = serde_json::to_string(changes).unwrap_or_else(|_| "[]".into());
    if text.len() > CHANGES_KEPT {
        "[]".into()
    } else {
        text
    }
}

/// The changes read back; text that is not what Sluice writes (a hand
/// edit) reads as none: the episode itself stays.
fn changes_of(text: &str) -> Vec<Change> {
    serde_json::from_str(text).unwrap_or_default()
}

/// A record as the status writes it: newest first.
pub fn status_of(record: &EnvironmentRecord) -> LedgerStatus {
    LedgerStatus {
        gateways: record
            .gateways
            .values()
            .map(|g| LedgerGateway {
                name: g.gateway.clone(),
                state: g.state,
                desired_digest: g.desired_digest.clone(),
                desired_revision: g.desired_revision.clone(),
                observed_digest: g.observed_digest.clone(),
                changed_at: time_text(g.changed_at),
                error: g.error.clone().map(|e| shortened(e, ERROR_KEPT)),
            })
            .collect(),
        attempts: record
            .attempts
            .iter()
            .rev()
            .map(|a| LedgerAttempt {
                gateway: a.start.gateway.clone(),
                revision: a.start.revision.clone(),
                digest: a.start.digest.clone(),
                trigger: a.start.trigger,
                started_at: time_text(a.start.started_at),
                finished_at: a.finished_at.map(time_text),
                outcome: a.outcome,
                error: a.error.clone().map(|e| shortened(e, ERROR_KEPT)),
            })
            .collect(),
        deployments: record
            .deployments
            .iter()
            .rev()
            .map(|d| LedgerDeployment {
                revision: d.revision.clone(),
                digest: d.digest.clone(),
                packs: d.packs.iter().map(LedgerPack::from).collect(),
                verified_at: time_text(d.verified_at),
            })
            .collect(),
        drift_episodes: record
            .episodes
            .iter()
            .rev()
            .map(|e| LedgerDriftEpisode {
                gateway: e.gateway.clone(),
                revision: e.revision.clone(),
                desired_digest: e.desired_digest.clone(),
                live_digest: e.live_digest.clone(),
                changes: changes_text(&e.changes),
                onset_at: time_text(e.onset_at),
                resolved_at: e.resolved_at.map(time_text),
                resolution: e.resolution,
            })
            .collect(),
        pins: record
            .pins
            .iter()
            .rev()
            .map(|p| LedgerPin {
                digest: p.digest.clone(),
                revision: p.revision.clone(),
                reason: p.reason.clone(),
                by: p.by.clone(),
                at: time_text(p.at),
                held_since: p.held_since.map(time_text),
                ended_at: p.ended_at.map(time_text),
                ended_by: p.ended_by.clone(),
                end_reason: p.end_reason,
            })
            .collect(),
        eval_runs: record
            .eval_runs
            .iter()
            .rev()
            .map(|r| LedgerEvalRun {
                suite: r.suite.clone(),
                revision: r.revision.clone(),
                digest: r.digest.clone(),
                packs: r.packs.iter().map(LedgerPack::from).collect(),
                passed: r.passed,
                failed: r.failed,
                failures: r
                    .failures
                    .iter()
                    .map(|f| LedgerEvalFailure {
                        gateway: f.gateway.clone(),
                        case: f.case.clone(),
                        reason: shortened(f.reason.clone(), ERROR_KEPT),
                    })
                    .collect(),
                at: time_text(r.at),
            })
            .collect(),
    }
}

/// A status read back as environment `slug`'s record (oldest first).
pub fn record_of(slug: &str, status: &LedgerStatus) -> EnvironmentRecord {
    EnvironmentRecord {
        gateways: status
            .gateways
            .iter()
            .map(|g| {
                let record = GatewayRecord {
                    environment: slug.to_owned(),
                    gateway: g.name.clone(),
                    desired_digest: g.desired_digest.clone(),
                    desired_revision: g.desired_revision.clone(),
                    observed_digest: g.observed_digest.clone(),
                    state: g.state,
                    changed_at: millis(&g.changed_at),
                    updated_at: millis(&g.changed_at),
                    error: g.error.clone(),
                };
                (g.name.clone(), record)
            })
            .collect(),
        attempts: status
            .attempts
            .iter()
            .rev()
            .map(|a| Attempt {
                id: 0,
                start: AttemptStart {
                    environment: slug.to_owned(),
                    gateway: a.gateway.clone(),
                    revision: a.revision.clone(),
                    digest: a.digest.clone(),
                    trigger: a.trigger,
                    started_at: millis(&a.started_at),
                },
                finished_at: a.finished_at.as_deref().map(millis),
                outcome: a.outcome,
                error: a.error.clone(),
            })
            .collect(),
        deployments: status
            .deployments
            .iter()
            .rev()
            .map(|d| Deployment {
                environment: slug.to_owned(),
                revision: d.revision.clone(),
                digest: d.digest.clone(),
                packs: d
                    .packs
                    .iter()
                    .map(crate::ledger::DeployedPack::from)
                    .collect(),
                verified_at: millis(&d.verified_at),
            })
            .collect(),
        episodes: status
            .drift_episodes
            .iter()
            .rev()
            .map(|e| DriftEpisode {
                environment: slug.to_owned(),
                gateway: e.gateway.clone(),
                revision: e.revision.clone(),
                desired_digest: e.desired_digest.clone(),
                live_digest: e.live_digest.clone(),
                changes: changes_of(&e.changes),
                onset_at: millis(&e.onset_at),
                resolved_at: e.resolved_at.as_deref().map(millis),
                resolution: e.resolution,
            })
            .collect(),
        pins: status
            .pins
            .iter()
            .rev()
            .map(|p| Pin {
                environment: slug.to_owned(),
                digest: p.digest.clone(),
                revision: p.revision.clone(),
                reason: p.reason.clone(),
                by: p.by.clone(),
                at: millis(&p.at),
                held_since: p.held_since.as_deref().map(millis),
                ended_at: p.ended_at.as_deref().map(millis),
                ended_by: p.ended_by.clone(),
                end_reason: p.end_reason,
            })
            .collect(),
        eval_runs: status
            .eval_runs
            .iter()
            .rev()
            .map(|r| EvalRun {
                environment: slug.to_owned(),
                suite: r.suite.clone(),
                revision: r.revision.clone(),
                digest: r.digest.clone(),
                packs: r
                    .packs
                    .iter()
                    .map(crate::ledger::DeployedPack::from)
                    .collect(),
                passed: r.passed,
                failed: r.failed,
                failures: r
                    .failures
                    .iter()
                    .map(|f| EvalFailure {
                        gateway: f.gateway.clone(),
                        case: f.case.clone(),
                        reason: f.reason.clone(),
                    })
                    .collect(),
                at: millis(&r.at),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;
