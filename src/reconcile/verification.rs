//! After a pass: the suites run against environments that now run a new
//! version whole, their results recorded by digest, and a failed
//! verification answered (see [`crate::verify`] for the decisions, all
//! pure; this is the part that talks to gateways, ledger and alerts).

use super::{EnvironmentReport, Pass, Progress, ReconcileError, Reconciler, pin};
use crate::{
    config::{Digest, Loaded, Repository},
    drift::{Alert, AlertEvent},
    eval::{RunOptions, Suite, run_suites},
    gateway::Gateway,
    ledger::{Deployment, Pin, Trigger},
    verify::{self, Response, Version},
};
use std::{collections::HashMap, sync::Arc};

/// Eval runs read to find the last version that passed.
const EVAL_HISTORY: usize = 1_000;
/// Deployments read to find a rollback target.
const DEPLOYMENT_HISTORY: usize = 100;

impl Reconciler {
    /// A pass, then, for every environment a failed verification pinned
    /// back, a second pass of that environment so the good version is
    /// applied now rather than at the next poll.
    pub(super) async fn reconcile_then_roll_back(
        &self,
        loaded: &Loaded,
        trigger: Trigger,
        only: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Pass, ReconcileError> {
        let mut pass = self.reconcile(loaded, trigger, only, progress).await?;
        let rolled_back =
            std::mem::take(&mut *self.rolled_back.lock().unwrap_or_else(|e| e.into_inner()));
        for environment in rolled_back {
            let again = self
                .reconcile(loaded, Trigger::Rollback, Some(&environment), progress)
                .await?;
            if let (
                Pass::Reconciled { environments, .. },
                Pass::Reconciled {
                    environments: redone,
                    ..
                },
            ) = (&mut pass, again)
            {
                replace(environments, redone);
            }
        }
        Ok(pass)
    }

    /// Runs the suites due after each new deployment and answers failures.
    pub(super) async fn verify(
        &self,
        repo: &Repository,
        deployed: &[Deployment],
        pinned: &HashMap<String, pin::Pinned>,
    ) {
        for deployment in deployed {
            let Some(env) = repo.environments.get(&deployment.environment) else {
                continue;
            };
            let suites = verify::suites_after_apply(repo, env);
            if suites.is_empty() {
                continue;
            }
            let gateways: Vec<(String, Arc<dyn Gateway>)> = env
                .gateways
                .iter()
                .filter_map(|spec| {
                    let driver = self.driver(&env.slug, spec).ok()?;
                    Some((spec.name().to_owned(), driver))
                })
                .collect();
            let chosen: Vec<&Suite> = suites
                .iter()
                .filter_map(|s| repo.suites.get(s))
                .map(|f| f.suite.as_ref())
                .collect();
            let options = RunOptions {
                reset: verify::resets(env),
                ..RunOptions::new(self.options.concurrency.max(1))
            };
            let report = run_suites(&gateways, &chosen, &repo.fixtures, options).await;
            let version = Version {
                environment: &env.slug,
                revision: &deployment.revision,
                digest: &deployment.digest,
                packs: &deployment.packs,
            };
            let records = verify::records(&report, &version, self.clock.now());
            for record in &records {
                if let Err(e) = self.written(self.ledger.record_eval_run(record)) {
                    tracing::error!(environment = %env.slug, suite = %record.suite, error = %e, "cannot record the eval run");
                }
                tracing::info!(
                    environment = %env.slug,
                    suite = %record.suite,
                    passed = record.passed,
                    failed = record.failed,
                    digest = %deployment.digest,
                    "suite ran"
                );
            }
            let history = self
                .ledger
                .eval_runs(&env.slug, None, EVAL_HISTORY)
                .unwrap_or_default();
            let deployments = self
                .ledger
                .deployments(&env.slug, DEPLOYMENT_HISTORY)
                .unwrap_or_default();
            let mut response = verify::respond(env, &records, &deployments, &history);
            // NB: a version a pin holds is already the fallback: a failure
            // there is said, never answered by pinning further back.
            if pinned.contains_key(&env.slug)
                && let Response::Rollback { failed, .. } = &response
            {
                response = Response::Alert {
                    failed: failed.clone(),
                };
            }
            self.respond(env, deployment, response);
        }
    }

    fn respond(
        &self,
        env: &crate::config::Environment,
        deployment: &Deployment,
        response: Response,
    ) {
        let sinks = super::EnvironmentPolicy::sinks_of(env);
        let alert = |event: AlertEvent, digest: &str, revision: &str, detail: String| {
            if sinks.is_empty() {
                return;
            }
            self.alerts.send(Alert {
                event,
                environment: env.slug.clone(),
                gateway: String::new(),
                revision: revision.to_owned(),
                desired_version: Digest::parse(digest)
                    .map_or_else(|| digest.to_owned(), |d| Alert::version(&d, revision)),
                live_version: None,
                changes: Vec::new(),
                diff: String::new(),
                detail: Some(detail),
                at: self.clock.now(),
                sinks: sinks.clone(),
            });
        };
        let (digest, revision) = (deployment.digest.as_str(), &deployment.revision);
        match response {
            Response::Passed => {}
            Response::Alert { failed } => {
                tracing::warn!(environment = %env.slug, digest, failed, "verification failed");
                alert(AlertEvent::VerificationFailed, digest, revision, failed);
            }
            Response::NoTarget { failed } => {
                tracing::error!(environment = %env.slug, digest, failed, "verification failed and no earlier version passed: nothing to roll back to");
                alert(
                    AlertEvent::VerificationFailed,
                    digest,
                    revision,
                    format!("{failed}; no earlier version passed, so it keeps running"),
                );
            }
            Response::Rollback { failed, to } => {
                tracing::warn!(environment = %env.slug, digest, failed, to = %to.digest, "verification failed; rolling back");
                alert(
                    AlertEvent::VerificationFailed,
                    digest,
                    revision,
                    failed.clone(),
                );
                let pin = Pin {
                    environment: env.slug.clone(),
                    digest: to.digest.clone(),
                    revision: to.revision.clone(),
                    reason: Some(format!(
                        "verification of {} failed: {failed}",
                        short(digest)
                    )),
                    by: "sluice".into(),
                    at: self.clock.now(),
                    held_since: None,
                    ended_at: None,
                    ended_by: None,
                    end_reason: None,
                };
                match self.written(self.ledger.pin(&pin)) {
                    Ok(_) => {
                        self.rolled_back
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(env.slug.clone());
                        alert(
                            AlertEvent::RolledBack,
                            to.digest.as_str(),
                            &to.revision,
                            format!(
                                "pinned at {} (from {}) after {failed}; unpin once the fix is merged",
                                to.digest.short(),
                                short(digest)
                            ),
                        );
                    }
                    Err(e) => {
                        tracing::error!(environment = %env.slug, error = %e, "cannot pin the environment back");
                    }
                }
            }
        }
    }
}

use crate::config::render::short_digest as short;

/// `redone`'s environments in place of theirs in `environments`.
fn replace(environments: &mut Vec<EnvironmentReport>, redone: Vec<EnvironmentReport>) {
    for report in redone {
        match environments
            .iter_mut()
            .find(|e| e.environment == report.environment)
        {
            Some(slot) => *slot = report,
            None => environments.push(report),
        }
    }
}
