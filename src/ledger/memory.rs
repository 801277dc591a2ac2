//! The ledger in memory, one bounded record per environment.
//!
//! The Kubernetes mode keeps this as its working copy and writes each
//! environment's [`EnvironmentRecord`] into that `Environment`'s status (see
//! `k8s::ledger`); a new controller reads the records back with
//! [`MemoryLedger::restore`]. Because a status must stay small, a record keeps
//! only the newest history: [`ATTEMPTS_KEPT`] finished attempts,
//! [`DEPLOYMENTS_KEPT`] deployments and [`EPISODES_KEPT`] resolved drift
//! episodes. Unfinished attempts and open episodes are never dropped: they
//! are the evidence of a crash and of drift still going on.

use super::{
    Attempt, AttemptFinish, AttemptId, AttemptStart, BatchResult, Deployment, DriftEpisode,
    EvalRun, GatewayRecord, HistoryCursor, Ledger, LedgerError, Millis, Outcome, Pin, PinEnd,
    Resolution, RevisionRecord, WriteBatch,
};
use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

/// Finished attempts kept per environment.
pub const ATTEMPTS_KEPT: usize = 50;
/// Deployments kept per environment (what `sluice rollback` can go back to).
pub const DEPLOYMENTS_KEPT: usize = 20;
/// Resolved drift episodes kept per environment.
pub const EPISODES_KEPT: usize = 20;
/// Ended pins kept per environment (the one in place is never dropped).
pub const PINS_KEPT: usize = 10;
/// Eval runs kept per environment and suite.
pub const EVAL_RUNS_KEPT: usize = 5;

/// One environment's part of the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentRecord {
    /// By gateway name.
    pub gateways: BTreeMap<String, GatewayRecord>,
    /// Oldest first.
    pub attempts: Vec<Attempt>,
    /// Oldest first.
    pub deployments: Vec<Deployment>,
    /// Oldest first.
    pub episodes: Vec<DriftEpisode>,
    /// Oldest first; at most one in place (the last).
    pub pins: Vec<Pin>,
    /// Oldest first.
    pub eval_runs: Vec<EvalRun>,
}

impl EnvironmentRecord {
    /// Drops the oldest history past the bounds.
    fn trim(&mut self) {
        let finished = self.attempts.iter().filter(|a| a.outcome.is_some()).count();
        let mut excess = finished.saturating_sub(ATTEMPTS_KEPT);
        self.attempts.retain(|a| {
            let drop = excess > 0 && a.outcome.is_some();
            excess -= usize::from(drop);
            !drop
        });
        let excess = self.deployments.len().saturating_sub(DEPLOYMENTS_KEPT);
        self.deployments.drain(..excess);
        let resolved = self.episodes.iter().filter(|e| e.resolved_at.is_some());
        let mut excess = resolved.count().saturating_sub(EPISODES_KEPT);
        self.episodes.retain(|e| {
            let drop = excess > 0 && e.resolved_at.is_some();
            excess -= usize::from(drop);
            !drop
        });
        let ended = self.pins.iter().filter(|p| !p.active()).count();
        let mut excess = ended.saturating_sub(PINS_KEPT);
        self.pins.retain(|p| {
            let drop = excess > 0 && !p.active();
            excess -= usize::from(drop);
            !drop
        });
        // NB: newest first, so each suite keeps its newest runs.
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut runs = std::mem::take(&mut self.eval_runs);
        runs.reverse();
        runs.retain(|run| {
            let count = seen.entry(run.suite.clone()).or_default();
            *count += 1;
            *count <= EVAL_RUNS_KEPT
        });
        runs.reverse();
        self.eval_runs = runs;
    }
}

#[derive(Debug, Default)]
struct State {
    last_revision: Option<RevisionRecord>,
    next_attempt: AttemptId,
    environments: BTreeMap<String, EnvironmentRecord>,
}

impl State {
    fn environment(&mut self, slug: &str) -> &mut EnvironmentRecord {
        self.environments.entry(slug.to_owned()).or_default()
    }

    fn start(&mut self, start: &AttemptStart) -> AttemptId {
        self.next_attempt += 1;
        let id = self.next_attempt;
        self.environment(&start.environment).attempts.push(Attempt {
            id,
            start: start.clone(),
            finished_at: None,
            outcome: None,
            error: None,
        });
        id
    }

    fn finish(&mut self, finish: &AttemptFinish) -> Result<String, LedgerError> {
        let attempt = self
            .environments
            .iter_mut()
            .find_map(|(slug, env)| {
                let attempt = env.attempts.iter_mut().find(|a| a.id == finish.id)?;
                Some((slug.clone(), attempt))
            })
            .ok_or(LedgerError::NoSuchAttempt(finish.id))?;
        let (slug, attempt) = attempt;
        if let Some(outcome) = attempt.outcome {
            return Err(LedgerError::Query {
                doing: "finishing an attempt",
                message: format!(
                    "attempt {} was already finished (at {}, {})",
                    finish.id,
                    attempt.finished_at.unwrap_or_default(),
                    outcome.as_str()
                ),
            });
        }
        attempt.finished_at = Some(finish.finished_at);
        attempt.outcome = Some(finish.outcome);
        attempt.error = finish.error.clone();
        self.environment(&slug).trim();
        Ok(slug)
    }

    /// Attempts kept elsewhere, as environment `slug`'s, with this
    /// process's ids.
    fn take_in(&mut self, slug: &str, attempts: Vec<Attempt>) {
        for mut attempt in attempts {
            self.next_attempt += 1;
            attempt.id = self.next_attempt;
            attempt.start.environment = slug.to_owned();
            self.environment(slug).attempts.push(attempt);
        }
    }

    fn upsert(&mut self, record: &GatewayRecord) {
        self.environment(&record.environment)
            .gateways
            .insert(record.gateway.clone(), record.clone());
    }
}

/// The ledger in memory; see the module documentation.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    state: Mutex<State>,
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of environment `slug`'s record (empty when it has none).
    pub fn environment(&self, slug: &str) -> EnvironmentRecord {
        self.state()
            .environments
            .get(slug)
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces environment `slug`'s record with one read back from where it
    /// was kept. Its attempts get new ids (ids are this process's own).
    pub fn restore(&self, slug: &str, mut record: EnvironmentRecord) {
        let attempts = std::mem::take(&mut record.attempts);
        let mut state = self.state();
        state.environments.insert(slug.to_owned(), record);
        state.take_in(slug, attempts);
        state.environment(slug).trim();
    }

    /// Adds attempts recorded elsewhere to environment `slug`, with new ids.
    pub fn add_attempts(&self, slug: &str, attempts: Vec<Attempt>) {
        self.state().take_in(slug, attempts);
    }

    /// Takes back attempts whose start could not be kept where it must be.
    pub fn forget_attempts(&self, ids: &[AttemptId]) {
        let mut state = self.state();
        for env in state.environments.values_mut() {
            env.attempts.retain(|a| !ids.contains(&a.id));
        }
    }

    /// [`Ledger::write`], which never fails in memory.
    pub fn write_batch(&self, batch: &WriteBatch) -> BatchResult {
        let mut state = self.state();
        let started = batch.starts.iter().map(|s| Ok(state.start(s))).collect();
        let finished = batch
            .finishes
            .iter()
            .map(|f| state.finish(f).map(drop))
            .collect();
        for record in &batch.records {
            state.upsert(record);
        }
        BatchResult { started, finished }
    }
}

fn newest_first<T: Clone>(items: &[T], keep: impl Fn(&T) -> bool, limit: usize) -> Vec<T> {
    items
        .iter()
        .rev()
        .filter(|item| keep(item))
        .take(limit)
        .cloned()
        .collect()
}

impl Ledger for MemoryLedger {
    fn record_revision(&self, revision: &RevisionRecord) -> Result<(), LedgerError> {
        let mut state = self.state();
        // Like the SQLite ledger: a commit seen again keeps its first sighting.
        let seen_at = match &state.last_revision {
            Some(last) if last.commit == revision.commit => last.seen_at,
            _ => revision.seen_at,
        };
        state.last_revision = Some(RevisionRecord {
            seen_at,
            ..revision.clone()
        });
        Ok(())
    }

    fn last_revision(&self) -> Result<Option<RevisionRecord>, LedgerError> {
        Ok(self.state().last_revision.clone())
    }

    fn start_attempt(&self, start: &AttemptStart) -> Result<AttemptId, LedgerError> {
        Ok(self.state().start(start))
    }

    fn finish_attempt(
        &self,
        id: AttemptId,
        finished_at: Millis,
        outcome: Outcome,
        error: Option<&str>,
    ) -> Result<(), LedgerError> {
        self.state()
            .finish(&AttemptFinish {
                id,
                finished_at,
                outcome,
                error: error.map(str::to_owned),
            })
            .map(drop)
    }

    fn write(&self, batch: &WriteBatch) -> Result<BatchResult, LedgerError> {
        Ok(self.write_batch(batch))
    }

    fn unfinished_attempts(&self) -> Result<Vec<Attempt>, LedgerError> {
        let state = self.state();
        let mut unfinished: Vec<Attempt> = state
            .environments
            .values()
            .flat_map(|env| env.attempts.iter().filter(|a| a.outcome.is_none()))
            .cloned()
            .collect();
        unfinished.sort_by_key(|a| a.id);
        Ok(unfinished)
    }

    fn history_page(
        &self,
        environment: &str,
        gateway: Option<&str>,
        before: Option<HistoryCursor>,
        limit: usize,
    ) -> Result<Vec<Attempt>, LedgerError> {
        let state = self.state();
        let Some(env) = state.environments.get(environment) else {
            return Ok(Vec::new());
        };
        let mut attempts: Vec<Attempt> = env
            .attempts
            .iter()
            .filter(|a| gateway.is_none_or(|g| a.start.gateway == g))
            .filter(|a| before.is_none_or(|b| b.precedes(a)))
            .cloned()
            .collect();
        attempts.sort_by_key(|a| std::cmp::Reverse((a.start.started_at, a.id)));
        attempts.truncate(limit);
        Ok(attempts)
    }

    fn upsert_gateway(&self, record: &GatewayRecord) -> Result<(), LedgerError> {
        self.state().upsert(record);
        Ok(())
    }

    fn remove_gateways(&self, gone: &[(String, String)]) -> Result<(), LedgerError> {
        let mut state = self.state();
        for (environment, gateway) in gone {
            if let Some(env) = state.environments.get_mut(environment) {
                env.gateways.remove(gateway);
            }
        }
        Ok(())
    }

    fn gateways(&self, environment: Option<&str>) -> Result<Vec<GatewayRecord>, LedgerError> {
        let state = self.state();
        Ok(state
            .environments
            .iter()
            .filter(|(slug, _)| environment.is_none_or(|e| e == slug.as_str()))
            .flat_map(|(_, env)| env.gateways.values().cloned())
            .collect())
    }

    fn record_deployment(&self, deployment: &Deployment) -> Result<bool, LedgerError> {
        let mut state = self.state();
        let env = state.environment(&deployment.environment);
        if env.deployments.last().map(|d| &d.digest) == Some(&deployment.digest) {
            return Ok(false);
        }
        env.deployments.push(deployment.clone());
        env.trim();
        Ok(true)
    }

    fn deployments(&self, environment: &str, limit: usize) -> Result<Vec<Deployment>, LedgerError> {
        let state = self.state();
        Ok(state
            .environments
            .get(environment)
            .map(|env| newest_first(&env.deployments, |_| true, limit))
            .unwrap_or_default())
    }

    fn open_drift(&self, episode: &DriftEpisode) -> Result<bool, LedgerError> {
        let mut state = self.state();
        let env = state.environment(&episode.environment);
        let open = env
            .episodes
            .iter_mut()
            .find(|e| e.gateway == episode.gateway && e.resolved_at.is_none());
        if let Some(open) = open {
            open.live_digest = episode.live_digest.clone();
            open.changes = episode.changes.clone();
            return Ok(false);
        }
        env.episodes.push(DriftEpisode {
            resolved_at: None,
            resolution: None,
            ..episode.clone()
        });
        Ok(true)
    }

    fn resolve_drift(
        &self,
        environment: &str,
        gateway: &str,
        at: Millis,
        resolution: Resolution,
    ) -> Result<Option<DriftEpisode>, LedgerError> {
        let mut state = self.state();
        let Some(env) = state.environments.get_mut(environment) else {
            return Ok(None);
        };
        let Some(open) = env
            .episodes
            .iter_mut()
            .find(|e| e.gateway == gateway && e.resolved_at.is_none())
        else {
            return Ok(None);
        };
        open.resolved_at = Some(at);
        open.resolution = Some(resolution);
        let closed = open.clone();
        env.trim();
        Ok(Some(closed))
    }

    fn drift_episodes(
        &self,
        environment: Option<&str>,
        open_only: bool,
        limit: usize,
    ) -> Result<Vec<DriftEpisode>, LedgerError> {
        let state = self.state();
        let mut episodes: Vec<DriftEpisode> = state
            .environments
            .iter()
            .filter(|(slug, _)| environment.is_none_or(|e| e == slug.as_str()))
            .flat_map(|(_, env)| env.episodes.iter())
            .filter(|e| !open_only || e.resolved_at.is_none())
            .cloned()
            .collect();
        // Stable: within one onset, the later opened stays first (as SQLite's id order).
        episodes.reverse();
        episodes.sort_by_key(|e| std::cmp::Reverse(e.onset_at));
        episodes.truncate(limit);
        Ok(episodes)
    }

    fn pin(&self, pin: &Pin) -> Result<Option<Pin>, LedgerError> {
        let mut state = self.state();
        let env = state.environment(&pin.environment);
        let replaced = env.pins.iter_mut().find(|p| p.active()).map(|p| {
            *p = p.clone().ended(pin.at, &pin.by, PinEnd::Replaced);
            p.clone()
        });
        env.pins.push(Pin {
            held_since: None,
            ended_at: None,
            ended_by: None,
            end_reason: None,
            ..pin.clone()
        });
        env.trim();
        Ok(replaced)
    }

    fn unpin(
        &self,
        environment: &str,
        at: Millis,
        by: &str,
        how: PinEnd,
    ) -> Result<Option<Pin>, LedgerError> {
        let mut state = self.state();
        let Some(env) = state.environments.get_mut(environment) else {
            return Ok(None);
        };
        let ended = env.pins.iter_mut().find(|p| p.active()).map(|p| {
            *p = p.clone().ended(at, by, how);
            p.clone()
        });
        env.trim();
        Ok(ended)
    }

    fn pin_holds(&self, environment: &str, since: Millis) -> Result<(), LedgerError> {
        let mut state = self.state();
        if let Some(env) = state.environments.get_mut(environment)
            && let Some(pin) = env.pins.iter_mut().find(|p| p.active())
        {
            pin.held_since.get_or_insert(since);
        }
        Ok(())
    }

    fn pins(&self, environment: Option<&str>) -> Result<Vec<Pin>, LedgerError> {
        let state = self.state();
        Ok(state
            .environments
            .iter()
            .filter(|(slug, _)| environment.is_none_or(|e| e == slug.as_str()))
            .flat_map(|(_, env)| env.pins.iter().filter(|p| p.active()))
            .cloned()
            .collect())
    }

    fn pin_history(&self, environment: &str, limit: usize) -> Result<Vec<Pin>, LedgerError> {
        let state = self.state();
        Ok(state
            .environments
            .get(environment)
            .map(|env| newest_first(&env.pins, |_| true, limit))
            .unwrap_or_default())
    }

    fn record_eval_run(&self, run: &EvalRun) -> Result<(), LedgerError> {
        let mut state = self.state();
        let env = state.environment(&run.environment);
        env.eval_runs.push(run.capped());
        env.trim();
        Ok(())
    }

    fn eval_runs(
        &self,
        environment: &str,
        suite: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EvalRun>, LedgerError> {
        let state = self.state();
        let Some(env) = state.environments.get(environment) else {
            return Ok(Vec::new());
        };
        let mut runs = newest_first(
            &env.eval_runs,
            |r| suite.is_none_or(|s| s == r.suite),
            usize::MAX,
        );
        // Stable: within one time, the later recorded stays first.
        runs.sort_by_key(|r| std::cmp::Reverse(r.at));
        runs.truncate(limit);
        Ok(runs)
    }

    /// Unfinished attempts, open episodes, each environment's newest
    /// deployment, its pin in place and its newest run of each suite are
    /// kept, as in the SQLite ledger.
    fn prune(
        &self,
        now: Millis,
        retention: &dyn Fn(&str) -> Duration,
    ) -> Result<usize, LedgerError> {
        let mut state = self.state();
        let mut deleted = 0;
        for (slug, env) in &mut state.environments {
            let keep_ms = i64::try_from(retention(slug).as_millis()).unwrap_or(i64::MAX);
            let before = now.saturating_sub(keep_ms);
            let count = env.attempts.len()
                + env.deployments.len()
                + env.episodes.len()
                + env.pins.len()
                + env.eval_runs.len();
            env.attempts
                .retain(|a| a.finished_at.is_none_or(|at| at >= before));
            env.episodes
                .retain(|e| e.resolved_at.is_none_or(|at| at >= before));
            let newest = env.deployments.len().saturating_sub(1);
            let mut index = 0;
            env.deployments.retain(|d| {
                let keep = index == newest || d.verified_at >= before;
                index += 1;
                keep
            });
            env.pins
                .retain(|p| p.ended_at.is_none_or(|at| at >= before));
            let mut newest: std::collections::BTreeSet<String> = Default::default();
            let mut runs = std::mem::take(&mut env.eval_runs);
            runs.reverse();
            runs.retain(|r| newest.insert(r.suite.clone()) || r.at >= before);
            runs.reverse();
            env.eval_runs = runs;
            deleted += count
                - (env.attempts.len()
                    + env.deployments.len()
                    + env.episodes.len()
                    + env.pins.len()
                    + env.eval_runs.len());
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests;
