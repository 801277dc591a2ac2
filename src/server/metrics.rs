//! Prometheus metrics of a running `sluice run` or `sluice controller`,
//! fed from the passes the reconciler returns (it knows nothing of them).
//!
//! Series labelled by gateway are bounded by the configured gateways: a
//! gateway gone from the configuration (or its environment) loses its
//! series at the first pass that covers where it was.

use crate::{
    ledger::{GatewayState, Outcome, WriteHealth},
    reconcile::{EnvironmentReport, Pass},
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram, info::Info},
    registry::Registry,
};
use std::{
    collections::{BTreeSet, HashMap},
    sync::{Mutex, atomic::AtomicU64},
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub environment: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvironmentLabels {
    pub environment: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub environment: String,
    pub state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GatewayLabels {
    pub environment: String,
    pub gateway: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApplyLabels {
    pub environment: String,
    pub gateway: String,
    /// The attempt's outcome as the ledger records it (`applied`,
    /// `unchanged`, `failed`).
    pub outcome: String,
}

/// How a pass ends for an environment: every gateway settled, or not.
const PASS_OUTCOMES: [&str; 2] = ["converged", "partial"];

/// What a pass can end an attempt with (`interrupted` is only ever found
/// after a restart, never returned by a pass).
const APPLY_OUTCOMES: [Outcome; 3] = [Outcome::Applied, Outcome::Unchanged, Outcome::Failed];

fn seconds_buckets() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<OutcomeLabels, Counter>,
    pub reconcile_seconds: Family<EnvironmentLabels, Histogram, fn() -> Histogram>,
    pub gateways: Family<StateLabels, Gauge>,
    pub last_success: Gauge<f64, AtomicU64>,
    pub fetch_seconds: Histogram,
    pub fetch_errors: Counter,
    pub webhooks_rejected: Counter,
    pub invalid_revisions: Counter,
    pub drifted: Family<EnvironmentLabels, Gauge>,
    pub drift_episodes: Family<EnvironmentLabels, Counter>,
    pub ledger_write_errors: Counter,
    pub ledger_writable: Gauge,
    pub applies: Family<ApplyLabels, Counter>,
    pub apply_seconds: Family<GatewayLabels, Histogram, fn() -> Histogram>,
    /// Held while the ledger figures are brought up to date, so two scrapes
    /// at once do not both add the same failures.
    ledger_sync: std::sync::Mutex<()>,
    /// The gateways of each environment that have series, to remove those
    /// of a gateway gone from the configuration.
    labelled: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        registry.register(
            "build",
            "Sluice's version, the git commit it was built from and when",
            Info::new(vec![
                ("version", crate::version::VERSION),
                ("commit", crate::version::COMMIT),
                ("date", crate::version::DATE),
            ]),
        );
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconcile passes by environment and outcome (converged, partial, invalid)",
            reconciles.clone(),
        );
        let reconcile_seconds =
            Family::<EnvironmentLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                seconds_buckets,
            );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconcile passes by environment",
            reconcile_seconds.clone(),
        );
        let gateways = Family::<StateLabels, Gauge>::default();
        registry.register(
            "gateways",
            "Gateways by environment and state",
            gateways.clone(),
        );
        let last_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "last_successful_sync_timestamp_seconds",
            "When every gateway last converged (Unix seconds)",
            last_success.clone(),
        );
        let fetch_seconds = seconds_buckets();
        registry.register(
            "git_fetch_duration_seconds",
            "Duration of git fetches",
            fetch_seconds.clone(),
        );
        let fetch_errors = Counter::default();
        registry.register(
            "git_fetch_errors",
            "Failed git fetches",
            fetch_errors.clone(),
        );
        let webhooks_rejected = Counter::default();
        registry.register(
            "webhook_rejected",
            "Git webhook deliveries refused (bad or missing signature)",
            webhooks_rejected.clone(),
        );
        let invalid_revisions = Counter::default();
        registry.register(
            "invalid_revisions",
            "Passes over a revision that failed validation",
            invalid_revisions.clone(),
        );
        let drifted = Family::<EnvironmentLabels, Gauge>::default();
        registry.register(
            "drifted_gateways",
            "Gateways running something other than what Sluice verified there",
            drifted.clone(),
        );
        let drift_episodes = Family::<EnvironmentLabels, Counter>::default();
        registry.register(
            "drift_episodes",
            "Drift episodes opened, by environment",
            drift_episodes.clone(),
        );
        let ledger_write_errors = Counter::default();
        registry.register(
            "ledger_write_errors",
            "Ledger writes that failed (a full disk, an I/O error); no gateway is changed while they fail",
            ledger_write_errors.clone(),
        );
        let ledger_writable = Gauge::default();
        registry.register(
            "ledger_writable",
            "1 while the ledger takes writes, 0 while they fail",
            ledger_writable.clone(),
        );
        let applies = Family::<ApplyLabels, Counter>::default();
        registry.register(
            "gateway_applies",
            "Apply attempts by environment, gateway and outcome (applied, unchanged, failed), as the ledger records them",
            applies.clone(),
        );
        let apply_seconds =
            Family::<GatewayLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                seconds_buckets,
            );
        registry.register(
            "gateway_apply_duration_seconds",
            "Duration of apply attempts, from their start to the read-back that verified (or failed) them",
            apply_seconds.clone(),
        );
        Metrics {
            registry,
            applies,
            apply_seconds,
            labelled: Mutex::default(),
            ledger_write_errors,
            ledger_writable,
            ledger_sync: std::sync::Mutex::new(()),
            drifted,
            drift_episodes,
            reconciles,
            reconcile_seconds,
            gateways,
            last_success,
            fetch_seconds,
            fetch_errors,
            webhooks_rejected,
            invalid_revisions,
        }
    }
}

impl Metrics {
    /// Exposes what the alert notifier counts (it keeps the counters; these
    /// share them).
    pub fn register_alerts(&mut self, counters: &crate::drift::notify::AlertCounters) {
        self.registry.register(
            "alerts",
            "Alerts by environment, sink, event and what became of each, once per sink: \
             sent; failed (tried: refused, or still failing when its retry window ended); \
             dropped (never tried: a full queue, or a sink it may not or cannot post to)",
            counters.alerts.clone(),
        );
        self.registry.register(
            "alerts_failed_attempts",
            "Alert delivery tries that failed, by sink (each retry counts): a sink that is down shows here at once",
            counters.failed_attempts.clone(),
        );
    }

    /// Counts a finished pass over `only` (or every environment).
    pub fn observe(&self, pass: &Pass, only: Option<&str>, seconds: f64, now_seconds: f64) {
        let Pass::Reconciled { environments, .. } = pass else {
            self.invalid_revisions.inc();
            return;
        };
        for env in environments {
            let [converged, partial] = PASS_OUTCOMES;
            let outcome = if env.converged() { converged } else { partial };
            self.reconciles
                .get_or_create(&OutcomeLabels {
                    environment: env.environment.clone(),
                    outcome: outcome.into(),
                })
                .inc();
            self.reconcile_seconds
                .get_or_create(&EnvironmentLabels {
                    environment: env.environment.clone(),
                })
                .observe(seconds);
            let labels = EnvironmentLabels {
                environment: env.environment.clone(),
            };
            let drifted = env
                .gateways
                .iter()
                .filter(|g| g.state == GatewayState::Drifted);
            self.drifted
                .get_or_create(&labels)
                .set(drifted.count() as i64);
            let onsets = env
                .gateways
                .iter()
                .filter(|g| g.drift.as_ref().is_some_and(|d| d.new_episode));
            self.drift_episodes
                .get_or_create(&labels)
                .inc_by(onsets.count() as u64);
            for state in GatewayState::ALL {
                let count = env.gateways.iter().filter(|g| g.state == state).count();
                self.gateways
                    .get_or_create(&StateLabels {
                        environment: env.environment.clone(),
                        state: state.as_str().into(),
                    })
                    .set(count as i64);
            }
            for gateway in &env.gateways {
                let Some(attempt) = gateway.attempt else {
                    continue;
                };
                self.applies
                    .get_or_create(&ApplyLabels {
                        environment: env.environment.clone(),
                        gateway: gateway.gateway.clone(),
                        outcome: attempt.outcome.as_str().into(),
                    })
                    .inc();
                self.apply_seconds
                    .get_or_create(&GatewayLabels {
                        environment: env.environment.clone(),
                        gateway: gateway.gateway.clone(),
                    })
                    .observe(attempt.duration.as_secs_f64());
            }
        }
        self.forget_removed(environments, only);
        if pass.converged() {
            self.last_success.set(now_seconds);
        }
    }

    /// Removes the series of gateways gone from the configuration: those
    /// of an environment in the pass that its report no longer has, and,
    /// after a pass over every environment, those of environments it no
    /// longer has (with the environments' own series).
    fn forget_removed(&self, environments: &[EnvironmentReport], only: Option<&str>) {
        let mut labelled = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
        for env in environments {
            let now: BTreeSet<String> = env.gateways.iter().map(|g| g.gateway.clone()).collect();
            let before = labelled
                .insert(env.environment.clone(), now.clone())
                .unwrap_or_default();
            for gone in before.difference(&now) {
                self.forget_gateway(&env.environment, gone);
            }
        }
        if only.is_some() {
            return;
        }
        let present: BTreeSet<&str> = environments
            .iter()
            .map(|e| e.environment.as_str())
            .collect();
        labelled.retain(|environment, gateways| {
            if present.contains(environment.as_str()) {
                return true;
            }
            for gateway in gateways.iter() {
                self.forget_gateway(environment, gateway);
            }
            self.forget_environment(environment);
            false
        });
    }

    fn forget_gateway(&self, environment: &str, gateway: &str) {
        for outcome in APPLY_OUTCOMES {
            self.applies.remove(&ApplyLabels {
                environment: environment.to_owned(),
                gateway: gateway.to_owned(),
                outcome: outcome.as_str().into(),
            });
        }
        self.apply_seconds.remove(&GatewayLabels {
            environment: environment.to_owned(),
            gateway: gateway.to_owned(),
        });
    }

    fn forget_environment(&self, environment: &str) {
        let labels = EnvironmentLabels {
            environment: environment.to_owned(),
        };
        for outcome in PASS_OUTCOMES {
            self.reconciles.remove(&OutcomeLabels {
                environment: environment.to_owned(),
                outcome: outcome.into(),
            });
        }
        for state in GatewayState::ALL {
            self.gateways.remove(&StateLabels {
                environment: environment.to_owned(),
                state: state.as_str().into(),
            });
        }
        self.reconcile_seconds.remove(&labels);
        self.drifted.remove(&labels);
        self.drift_episodes.remove(&labels);
    }

    /// Brings the ledger's figures up to what `health` says.
    pub fn ledger(&self, health: &WriteHealth) {
        let _sync = self.ledger_sync.lock().unwrap_or_else(|e| e.into_inner());
        let seen = self.ledger_write_errors.get();
        self.ledger_write_errors
            .inc_by(health.failures().saturating_sub(seen));
        self.ledger_writable
            .set(i64::from(health.failing().is_none()));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Digest,
        reconcile::{Attempted, EnvironmentReport, GatewayReport},
    };
    use std::time::Duration;

    fn gateway(environment: &str, name: &str, outcome: Option<Outcome>) -> GatewayReport {
        let failed = outcome == Some(Outcome::Failed);
        GatewayReport {
            environment: environment.into(),
            gateway: name.into(),
            state: if failed {
                GatewayState::Unreachable
            } else {
                GatewayState::InSync
            },
            desired: Digest::of(b"policy"),
            observed: None,
            applied: outcome == Some(Outcome::Applied),
            error: failed.then(|| "gateway is unreachable".into()),
            drift: None,
            gated: None,
            pinned: None,
            attempt: outcome.map(|outcome| Attempted {
                outcome,
                duration: Duration::from_millis(30),
            }),
        }
    }

    fn pass(environments: Vec<(&str, Vec<GatewayReport>)>) -> Pass {
        Pass::Reconciled {
            revision: "9f8e7d6c".into(),
            environments: environments
                .into_iter()
                .map(|(environment, gateways)| EnvironmentReport {
                    environment: environment.into(),
                    gateways,
                })
                .collect(),
        }
    }

    /// The exposition's lines that start with `name` and carry `labels`.
    fn lines(metrics: &Metrics, name: &str, labels: &str) -> Vec<String> {
        metrics
            .render()
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(labels))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn build_info_carries_the_version_and_commit() {
        let text = Metrics::default().render();
        let line = format!(
            "sluice_build_info{{version=\"{}\",commit=\"{}\",date=\"{}\"}} 1",
            crate::version::VERSION,
            crate::version::COMMIT,
            crate::version::DATE
        );
        assert!(text.contains(&line), "{line} in {text}");
    }

    #[test]
    fn each_gateway_counts_its_attempts_by_outcome_with_their_durations() {
        let metrics = Metrics::default();
        let first = pass(vec![(
            "production",
            vec![
                gateway("production", "eu-1", Some(Outcome::Applied)),
                gateway("production", "us-1", Some(Outcome::Failed)),
                gateway("production", "edge", None),
            ],
        )]);
        metrics.observe(&first, None, 1.0, 0.0);
        metrics.observe(&first, None, 1.0, 0.0);
        let mut applies = lines(&metrics, "sluice_gateway_applies_total", "");
        applies.sort();
        assert_eq!(
            applies,
            [
                r#"sluice_gateway_applies_total{environment="production",gateway="eu-1",outcome="applied"} 2"#,
                r#"sluice_gateway_applies_total{environment="production",gateway="us-1",outcome="failed"} 2"#,
            ]
            .map(str::to_owned)
            .to_vec(),
            "none for a gateway without an attempt"
        );
        let count = r#"sluice_gateway_apply_duration_seconds_count{environment="production",gateway="eu-1"} 2"#;
        assert_eq!(lines(&metrics, count, ""), [count]);
        let sum = "sluice_gateway_apply_duration_seconds_sum{environment=\"production\",gateway=\"eu-1\"} 0.06";
        assert_eq!(lines(&metrics, sum, ""), [sum]);
    }

    #[test]
    fn a_gateway_or_environment_gone_from_the_configuration_loses_its_series() {
        let metrics = Metrics::default();
        metrics.observe(
            &pass(vec![
                (
                    "production",
                    vec![
                        gateway("production", "eu-1", Some(Outcome::Applied)),
                        gateway("production", "us-1", Some(Outcome::Applied)),
                    ],
                ),
                (
                    "staging",
                    vec![gateway("staging", "staging-1", Some(Outcome::Applied))],
                ),
            ]),
            None,
            1.0,
            0.0,
        );
        // A pass over production alone: us-1 was removed; staging stays.
        metrics.observe(
            &pass(vec![(
                "production",
                vec![gateway("production", "eu-1", None)],
            )]),
            Some("production"),
            1.0,
            0.0,
        );
        assert!(lines(&metrics, "sluice_gateway", "gateway=\"us-1\"").is_empty());
        assert_eq!(lines(&metrics, "sluice_gateway_applies", "eu-1").len(), 1);
        assert_eq!(
            lines(&metrics, "sluice_gateway_applies", "staging-1").len(),
            1
        );
        // A pass over every environment without staging: it is gone, whole.
        metrics.observe(
            &pass(vec![(
                "production",
                vec![gateway("production", "eu-1", None)],
            )]),
            None,
            1.0,
            0.0,
        );
        assert!(
            lines(&metrics, "sluice_", "environment=\"staging\"").is_empty(),
            "{}",
            metrics.render()
        );
        assert_eq!(lines(&metrics, "sluice_gateway_applies", "eu-1").len(), 1);
    }
}
