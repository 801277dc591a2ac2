//! Promotion gates: an environment with `promotion: {from: U, soak: D}`
//! applies a pack version only once the ledger shows U running that same
//! pack digest — verified on every gateway and free of drift — for at least
//! D, and, with `evals: [S…]`, only once each suite S passed upstream
//! against gateways running that same pack content. A pure function of the
//! ledger's records and the time, so tests drive it with an injected clock.

use crate::{
    config::{Environment, render::PackDigest},
    ledger::{Deployment, DriftEpisode, EvalRun, Ledger, LedgerError, Millis},
};
use serde::Serialize;
use std::time::Duration;

/// What the upstream environment's records say.
pub struct Upstream<'a> {
    pub environment: &'a str,
    /// Newest first.
    pub deployments: &'a [Deployment],
    /// Its drift episodes, open or resolved.
    pub drift: &'a [DriftEpisode],
    /// Suites that must have passed there (`promotion.evals`).
    pub evals: &'a [String],
    /// Its eval runs, newest first.
    pub eval_runs: &'a [EvalRun],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "missing", rename_all = "kebab-case")]
pub enum Missing {
    /// Upstream does not run this digest now.
    NotUpstream,
    /// Upstream has a gateway drifting: nothing soaks meanwhile.
    UpstreamDrifting,
    /// Upstream runs it, not yet for long enough.
    Soaking { remaining_ms: u64 },
    /// Suites that have not run upstream against this pack content.
    EvalsPending { suites: Vec<String> },
    /// A suite's newest run upstream against this pack content failed.
    EvalsFailed {
        suite: String,
        failed: u32,
        cases: Vec<String>,
    },
}

/// A pack the gate holds back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Waiting {
    pub pack: String,
    pub version: String,
    pub digest: String,
    #[serde(flatten)]
    pub missing: Missing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Open,
    Held(Vec<Waiting>),
}

impl Gate {
    /// For people: which packs wait, on what, and how long.
    pub fn reason(&self, upstream: &str, soak: Duration) -> Option<String> {
        let Gate::Held(waiting) = self else {
            return None;
        };
        let parts: Vec<String> = waiting
            .iter()
            .map(|w| {
                let why = match &w.missing {
                    Missing::NotUpstream => format!("{upstream} does not run it"),
                    Missing::UpstreamDrifting => format!("{upstream} is drifting"),
                    Missing::Soaking { remaining_ms } => format!(
                        "soaking in {upstream}, {} of {} to go",
                        human(Duration::from_millis(*remaining_ms)),
                        human(soak)
                    ),
                    Missing::EvalsPending { suites } => {
                        format!("suites not yet run in {upstream}: {}", suites.join(", "))
                    }
                    Missing::EvalsFailed {
                        suite,
                        failed,
                        cases,
                    } => format!(
                        "suite {suite} failed in {upstream} ({failed} failed: {})",
                        cases.join(", ")
                    ),
                };
                format!("{} {} ({}): {why}", w.pack, w.version, short(&w.digest))
            })
            .collect();
        Some(format!("gated: {}", parts.join("; ")))
    }
}

/// Upstream deployments and drift episodes a gate looks at, at most.
const GATE_HISTORY: usize = 1_000;

/// An environment's gate as the ledger has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub gate: Gate,
    pub upstream: String,
    pub soak: Duration,
}

/// Reads what `env`'s gate looks at from the ledger and [`check`]s
/// `desired` (its packs at the version it should run); `None` when the
/// environment has no gate (no promotion, or one with neither soak nor
/// evals). The reconciler and the dashboard both ask this.
pub fn evaluate(
    ledger: &dyn Ledger,
    env: &Environment,
    desired: &[PackDigest],
    now: Millis,
) -> Result<Option<Evaluation>, LedgerError> {
    let Some(promotion) = &env.spec.promotion else {
        return Ok(None);
    };
    let soak = promotion.soak.as_ref().and_then(|s| s.parse());
    if soak.is_none() && promotion.evals.is_empty() {
        return Ok(None);
    }
    let soak = soak.unwrap_or(Duration::ZERO);
    let ran = ledger.deployments(&env.slug, GATE_HISTORY)?;
    let eval_runs = if promotion.evals.is_empty() {
        Vec::new()
    } else {
        ledger.eval_runs(&promotion.from, None, GATE_HISTORY)?
    };
    // Every open episode upstream, and the recent resolved ones (a soak
    // restarts from the last).
    let mut drift = ledger.drift_episodes(Some(&promotion.from), true, usize::MAX)?;
    drift.extend(
        ledger
            .drift_episodes(Some(&promotion.from), false, GATE_HISTORY)?
            .into_iter()
            .filter(|e| e.resolved_at.is_some()),
    );
    let upstream = Upstream {
        environment: &promotion.from,
        deployments: &ledger.deployments(&promotion.from, GATE_HISTORY)?,
        drift: &drift,
        evals: &promotion.evals,
        eval_runs: &eval_runs,
    };
    Ok(Some(Evaluation {
        gate: check(desired, &ran, &upstream, soak, now),
        upstream: promotion.from.clone(),
        soak,
    }))
}

/// Decides whether `desired` may be applied. Only packs the environment
/// never ran (in any of its deployments, `ran`) are gated: a rollback to a
/// version it ran before is not held back.
pub fn check(
    desired: &[PackDigest],
    ran: &[Deployment],
    upstream: &Upstream<'_>,
    soak: Duration,
    now: Millis,
) -> Gate {
    let running_packs: Vec<(String, String)> = ran.iter().flat_map(packs_of).collect();
    let drifting = upstream.drift.iter().any(|e| e.resolved_at.is_none());
    let waiting: Vec<Waiting> = desired
        .iter()
        .filter(|pack| !running_packs.contains(&(pack.name.clone(), pack.source.to_string())))
        .filter_map(|pack| {
            let missing = missing(pack, upstream, drifting, soak, now)?;
            Some(Waiting {
                pack: pack.name.clone(),
                version: pack.version.clone(),
                digest: pack.source.to_string(),
                missing,
            })
        })
        .collect();
    if waiting.is_empty() {
        Gate::Open
    } else {
        Gate::Held(waiting)
    }
}

fn missing(
    pack: &PackDigest,
    upstream: &Upstream<'_>,
    drifting: bool,
    soak: Duration,
    now: Millis,
) -> Option<Missing> {
    let key = (pack.name.clone(), pack.source.to_string());
    // Since when upstream has run it without a break.
    let since = upstream
        .deployments
        .iter()
        .take_while(|d| packs_of(d).contains(&key))
        .last()
        .map(|d| d.verified_at);
    let Some(since) = since else {
        return Some(Missing::NotUpstream);
    };
    if drifting {
        return Some(Missing::UpstreamDrifting);
    }
    if let Some(missing) = evals_missing(&key, upstream) {
        return Some(missing);
    }
    // Drift upstream during the soak restarts it from when it ended.
    let clean_since = upstream
        .drift
        .iter()
        .filter_map(|e| e.resolved_at)
        .filter(|resolved| *resolved > since)
        .max()
        .unwrap_or(since);
    let soaked = u64::try_from(now - clean_since).unwrap_or(0);
    let needed = u64::try_from(soak.as_millis()).unwrap_or(u64::MAX);
    (soaked < needed).then(|| Missing::Soaking {
        remaining_ms: needed - soaked,
    })
}

/// The first suite of `evals` whose newest run upstream against this pack
/// content did not pass, or those that never ran against it.
fn evals_missing(key: &(String, String), upstream: &Upstream<'_>) -> Option<Missing> {
    let mut pending = Vec::new();
    for suite in upstream.evals {
        // Newest first: the newest run against this content decides.
        let newest = upstream.eval_runs.iter().find(|run| {
            run.suite == *suite
                && run
                    .packs
                    .iter()
                    .any(|p| p.name == key.0 && p.source == key.1)
        });
        match newest {
            None => pending.push(suite.clone()),
            Some(run) if run.failed > 0 => {
                let mut cases: Vec<String> = run.failures.iter().map(|f| f.case.clone()).collect();
                cases.dedup();
                return Some(Missing::EvalsFailed {
                    suite: suite.clone(),
                    failed: run.failed,
                    cases,
                });
            }
            Some(_) => {}
        }
    }
    (!pending.is_empty()).then_some(Missing::EvalsPending { suites: pending })
}

fn packs_of(deployment: &Deployment) -> Vec<(String, String)> {
    deployment
        .packs
        .iter()
        .map(|p| (p.name.clone(), p.source.clone()))
        .collect()
}

use crate::config::render::short_digest as short;

/// `12m`, `1h05m`: a soak's length or what is left of it.
pub fn human(duration: Duration) -> String {
    let minutes = duration.as_secs().div_ceil(60);
    match minutes {
        0..60 => format!("{minutes}m"),
        _ => format!("{}h{:02}m", minutes / 60, minutes % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Digest;

    const HOUR: Millis = 3_600_000;
    const SOAK: Duration = Duration::from_secs(3600);

    fn pack(name: &str, body: &str) -> PackDigest {
        let digest = Digest::of(body.as_bytes());
        PackDigest {
            name: name.into(),
            version: "1.0.0".into(),
            source: digest.clone(),
            digest,
        }
    }

    fn deployment(packs: &[&PackDigest], at: Millis) -> Deployment {
        Deployment {
            environment: "staging".into(),
            revision: "r".into(),
            digest: format!("sha256:{at}").into(),
            packs: packs.iter().map(|p| (*p).into()).collect(),
            verified_at: at,
        }
    }

    fn episode(onset: Millis, resolved: Option<Millis>) -> DriftEpisode {
        DriftEpisode {
            environment: "staging".into(),
            gateway: "s-1".into(),
            revision: "r".into(),
            desired_digest: "d".into(),
            live_digest: None,
            changes: Vec::new(),
            onset_at: onset,
            resolved_at: resolved,
            resolution: None,
        }
    }

    fn gate(
        desired: &[PackDigest],
        running: Option<Deployment>,
        deployments: &[Deployment],
        drift: &[DriftEpisode],
        now: Millis,
    ) -> Gate {
        let upstream = Upstream {
            environment: "staging",
            deployments,
            drift,
            evals: &[],
            eval_runs: &[],
        };
        check(desired, running.as_slice(), &upstream, SOAK, now)
    }

    #[test]
    fn a_pack_waits_for_the_soak_then_passes() {
        let new = pack("support", "v2");
        let upstream = [deployment(&[&new], 10 * HOUR)];
        let held = gate(
            std::slice::from_ref(&new),
            None,
            &upstream,
            &[],
            10 * HOUR + HOUR / 4,
        );
        let Gate::Held(waiting) = &held else {
            panic!("{held:?}")
        };
        assert_eq!(
            waiting[0].missing,
            Missing::Soaking {
                remaining_ms: (3 * HOUR / 4) as u64
            }
        );
        assert!(
            held.reason("staging", SOAK)
                .unwrap()
                .contains("45m of 1h00m to go")
        );
        assert_eq!(gate(&[new], None, &upstream, &[], 11 * HOUR), Gate::Open);
    }

    fn eval_run(suite: &str, packs: &[&PackDigest], failed: &[&str], at: Millis) -> EvalRun {
        EvalRun {
            environment: "staging".into(),
            suite: suite.into(),
            revision: "r".into(),
            digest: format!("sha256:{at}").into(),
            packs: packs.iter().map(|p| (*p).into()).collect(),
            passed: 3,
            failed: failed.len() as u32,
            failures: failed
                .iter()
                .map(|case| crate::ledger::EvalFailure {
                    gateway: "s-1".into(),
                    case: (*case).into(),
                    reason: "outcome: expected redacted, found allowed".into(),
                })
                .collect(),
            at,
        }
    }

    fn eval_gate(desired: &PackDigest, runs: &[EvalRun], soak: Duration) -> Gate {
        let deployments = [deployment(&[desired], 10 * HOUR)];
        let suites = ["pii".to_owned(), "injection".to_owned()];
        let upstream = Upstream {
            environment: "staging",
            deployments: &deployments,
            drift: &[],
            evals: &suites,
            eval_runs: runs,
        };
        check(
            std::slice::from_ref(desired),
            &[],
            &upstream,
            soak,
            10 * HOUR,
        )
    }

    #[test]
    fn an_eval_gate_holds_until_every_suite_passed_against_the_same_pack_content() {
        let new = pack("baseline", "v2");
        let other = pack("baseline", "v1");
        let zero = Duration::ZERO;
        // Nothing ran yet; a run against other content does not count.
        let held = eval_gate(&new, &[eval_run("pii", &[&other], &[], 9 * HOUR)], zero);
        let Gate::Held(waiting) = &held else {
            panic!("{held:?}")
        };
        assert_eq!(
            waiting[0].missing,
            Missing::EvalsPending {
                suites: vec!["pii".into(), "injection".into()]
            }
        );
        assert!(
            held.reason("staging", zero)
                .unwrap()
                .contains("suites not yet run in staging: pii, injection"),
            "{held:?}"
        );
        // One failed: the reason names its cases.
        let runs = [
            eval_run("injection", &[&new], &[], 9 * HOUR),
            eval_run("pii", &[&new], &["a card is redacted"], 9 * HOUR),
        ];
        let held = eval_gate(&new, &runs, zero);
        assert!(
            held.reason("staging", zero)
                .unwrap()
                .contains("suite pii failed in staging (1 failed: a card is redacted)"),
            "{held:?}"
        );
        // The newest run of each suite decides: a fix that passes opens it.
        let mut fixed = vec![eval_run("pii", &[&new], &[], 9 * HOUR + 1)];
        fixed.extend(runs);
        assert_eq!(eval_gate(&new, &fixed, zero), Gate::Open);
        // Suites passed, the soak still applies.
        assert!(matches!(
            eval_gate(&new, &fixed, SOAK),
            Gate::Held(w) if matches!(w[0].missing, Missing::Soaking { .. })
        ));
    }

    #[test]
    fn only_packs_that_change_are_gated() {
        let same = pack("baseline", "v1");
        let changed = pack("support", "v2");
        let running = deployment(&[&same, &pack("support", "v1")], 0);
        let upstream = [deployment(&[&same, &changed], 10 * HOUR)];
        let Gate::Held(waiting) = gate(
            &[same, changed],
            Some(running.clone()),
            &upstream,
            &[],
            10 * HOUR,
        ) else {
            panic!("held")
        };
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].pack, "support");
    }

    #[test]
    fn a_version_the_environment_ran_before_is_not_held() {
        let old = pack("support", "v1");
        let history = [
            deployment(&[&pack("support", "v2")], 20 * HOUR),
            deployment(&[&old], 10 * HOUR),
        ];
        let upstream = Upstream {
            environment: "staging",
            deployments: &[],
            drift: &[],
            evals: &[],
            eval_runs: &[],
        };
        assert_eq!(
            check(&[old], &history, &upstream, SOAK, 30 * HOUR),
            Gate::Open
        );
    }

    #[test]
    fn a_digest_upstream_no_longer_runs_is_not_promotable() {
        let old = pack("support", "v1");
        let upstream = [
            deployment(&[&pack("support", "v2")], 20 * HOUR),
            deployment(&[&old], 10 * HOUR),
        ];
        let Gate::Held(waiting) = gate(&[old], None, &upstream, &[], 30 * HOUR) else {
            panic!("held")
        };
        assert_eq!(waiting[0].missing, Missing::NotUpstream);
    }

    #[test]
    fn the_soak_counts_from_the_first_of_a_run_of_deployments() {
        let new = pack("support", "v2");
        let other = pack("models", "a");
        // Two deployments both carrying the pack: the soak began at the older.
        let upstream = [
            deployment(&[&new, &pack("models", "b")], 10 * HOUR + HOUR / 2),
            deployment(&[&new, &other], 10 * HOUR),
        ];
        assert_eq!(gate(&[new], None, &upstream, &[], 11 * HOUR), Gate::Open);
    }

    #[test]
    fn upstream_drift_holds_and_restarts_the_soak() {
        let new = pack("support", "v2");
        let upstream = [deployment(&[&new], 10 * HOUR)];
        let open_drift = [episode(10 * HOUR + 1, None)];
        let Gate::Held(waiting) = gate(
            std::slice::from_ref(&new),
            None,
            &upstream,
            &open_drift,
            12 * HOUR,
        ) else {
            panic!("held")
        };
        assert_eq!(waiting[0].missing, Missing::UpstreamDrifting);
        let healed = [episode(10 * HOUR + 1, Some(11 * HOUR))];
        assert!(matches!(
            gate(
                std::slice::from_ref(&new),
                None,
                &upstream,
                &healed,
                11 * HOUR + HOUR / 2
            ),
            Gate::Held(_)
        ));
        assert_eq!(
            gate(&[new], None, &upstream, &healed, 12 * HOUR),
            Gate::Open
        );
    }
}
