//! Behaviour checks around a new version, decided here as pure functions of
//! the repository, the ledger's records and an eval report; the reconciler
//! runs the suites ([`crate::eval::run_suites`]) and does what is decided.
//!
//! ```text
//!  an environment runs a new version whole (a new Deployment)
//!        │ suites_after_apply: its verify.suites, every suite for an eval
//!        │ environment, and what downstream promotions' evals ask of it
//!        ▼
//!  run_suites ─► records (one EvalRun per suite, by digest) ─► ledger
//!        │
//!        ▼ verify.suites failed?
//!  response: alert verification-failed; with onFailure: rollback, pin the
//!  environment at rollback_target and alert rolled-back
//! ```
//!
//! An eval environment's gateways are reset before each suite (Struere's
//! model: its state is recreated from the fixtures on every sync); no other
//! environment's runtime state is ever touched: resetting production would
//! erase its audit log.

use crate::{
    config::{
        Digest, Environment, Repository,
        model::{EnvironmentKind, OnFailure},
    },
    eval::EvalReport,
    ledger::{DeployedPack, Deployment, EvalFailure, EvalRun, Millis},
};
use std::collections::{BTreeMap, BTreeSet};

/// The suites to run against `env` once it runs a new version whole.
pub fn suites_after_apply(repo: &Repository, env: &Environment) -> Vec<String> {
    let mut suites: BTreeSet<&str> = BTreeSet::new();
    if env.spec.kind == EnvironmentKind::Eval {
        suites.extend(repo.suites.keys().map(String::as_str));
    }
    if let Some(verify) = &env.spec.verify {
        suites.extend(verify.suites.iter().map(String::as_str));
    }
    for downstream in repo.environments.values() {
        if let Some(promotion) = &downstream.spec.promotion
            && promotion.from == env.slug
        {
            suites.extend(promotion.evals.iter().map(String::as_str));
        }
    }
    suites
        .into_iter()
        .filter(|s| repo.suites.contains_key(*s))
        .map(str::to_owned)
        .collect()
}

/// Whether gateways are reset before each suite: only in eval environments.
pub fn resets(env: &Environment) -> bool {
    env.spec.kind == EnvironmentKind::Eval
}

/// What a version is, for the records of the suites run against it.
pub struct Version<'a> {
    pub environment: &'a str,
    pub revision: &'a str,
    pub digest: &'a Digest,
    pub packs: &'a [DeployedPack],
}

/// One record per suite, over every gateway it ran on.
pub fn records(report: &EvalReport, version: &Version<'_>, at: Millis) -> Vec<EvalRun> {
    let mut by_suite: BTreeMap<&str, EvalRun> = BTreeMap::new();
    for run in &report.runs {
        let record = by_suite.entry(&run.suite).or_insert_with(|| EvalRun {
            environment: version.environment.to_owned(),
            suite: run.suite.clone(),
            revision: version.revision.to_owned(),
            digest: version.digest.clone(),
            packs: version.packs.to_vec(),
            passed: 0,
            failed: 0,
            failures: Vec::new(),
            at,
        });
        for case in &run.cases {
            if case.passed {
                record.passed += 1;
                continue;
            }
            record.failed += 1;
            record.failures.push(EvalFailure {
                gateway: run.gateway.clone(),
                case: case.name.clone(),
                reason: reason(case),
            });
        }
    }
    by_suite.into_values().map(|r| r.capped()).collect()
}

fn reason(case: &crate::eval::CaseRun) -> String {
    if let Some(error) = &case.error {
        return error.clone();
    }
    let differences: Vec<String> = case
        .differences
        .iter()
        .take(3)
        .map(ToString::to_string)
        .collect();
    differences.join("; ")
}

/// What to do after the suites an environment verifies with ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Nothing to verify, or everything passed.
    Passed,
    /// Alert `verification-failed`, keep the version.
    Alert { failed: String },
    /// Alert, pin the environment at `to` and alert `rolled-back`.
    Rollback { failed: String, to: Deployment },
    /// Alert: a rollback was asked for, but no earlier version qualifies.
    NoTarget { failed: String },
}

/// Decides the response to `runs` (this version's records, from
/// [`records`]) for `env`. `deployments` are the environment's, newest
/// first (the new version among them); `history` its earlier eval runs.
pub fn respond(
    env: &Environment,
    runs: &[EvalRun],
    deployments: &[Deployment],
    history: &[EvalRun],
) -> Response {
    let Some(verify) = &env.spec.verify else {
        return Response::Passed;
    };
    if env.spec.kind == EnvironmentKind::Eval {
        // NB: an eval environment records, never reacts.
        return Response::Passed;
    }
    let failing: Vec<&EvalRun> = runs
        .iter()
        .filter(|r| verify.suites.contains(&r.suite) && r.failed > 0)
        .collect();
    if failing.is_empty() {
        return Response::Passed;
    }
    let failed = describe(&failing);
    match verify.on_failure {
        OnFailure::Alert => Response::Alert { failed },
        OnFailure::Rollback => {
            let current = runs.first().map(|r| &r.digest);
            match rollback_target(deployments, history, &verify.suites, current) {
                Some(to) => Response::Rollback {
                    failed,
                    to: to.clone(),
                },
                None => Response::NoTarget { failed },
            }
        }
    }
}

/// `suite pii: 2 of 3 cases failed (gw-1: a card is redacted: outcome: …)`.
pub fn describe(failing: &[&EvalRun]) -> String {
    failing
        .iter()
        .map(|run| {
            let first = run
                .failures
                .first()
                .map(|f| format!(" ({}: {}: {})", f.gateway, f.case, f.reason))
                .unwrap_or_default();
            format!(
                "suite {}: {} of {} cases failed{first}",
                run.suite,
                run.failed,
                run.passed + run.failed
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The version to go back to: the newest earlier deployment whose every
/// verify suite passed at its digest; when no earlier version was ever
/// checked, the newest earlier one (it ran whole and nothing says it
/// failed). A version a suite failed on is never a target.
pub fn rollback_target<'a>(
    deployments: &'a [Deployment],
    history: &[EvalRun],
    suites: &[String],
    current: Option<&Digest>,
) -> Option<&'a Deployment> {
    let earlier: Vec<&Deployment> = deployments
        .iter()
        .filter(|d| Some(&d.digest) != current)
        .collect();
    let verdict = |digest: &Digest, suite: &str| {
        // Newest first: the newest run of the suite at that digest decides.
        history
            .iter()
            .find(|r| r.digest == *digest && r.suite == suite)
            .map(|r| r.failed == 0)
    };
    let passed = earlier
        .iter()
        .copied()
        .find(|d| suites.iter().all(|s| verdict(&d.digest, s) == Some(true)));
    if passed.is_some() {
        return passed;
    }
    let never_checked = earlier
        .iter()
        .all(|d| suites.iter().all(|s| verdict(&d.digest, s).is_none()));
    if never_checked {
        earlier.first().copied()
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
