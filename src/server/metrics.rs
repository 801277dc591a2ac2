//! Prometheus metrics of a running `sluice run`.

use crate::{
    ledger::{GatewayState, WriteHealth},
    reconcile::Pass,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use std::sync::atomic::AtomicU64;

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
    /// Held while the ledger figures are brought up to date, so two scrapes
    /// at once do not both add the same failures.
    ledger_sync: std::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sluice");
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
        Metrics {
            registry,
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
            "alerts_sent",
            "Alert deliveries that a sink accepted (one per alert and sink)",
            counters.sent.clone(),
        );
        self.registry.register(
            "alerts_failed_attempts",
            "Alert delivery tries that failed (each retry counts)",
            counters.failed_attempts.clone(),
        );
        self.registry.register(
            "alerts_dropped",
            "Alert deliveries given up: a full queue, a refusal, or still failing after the retry window",
            counters.dropped.clone(),
        );
    }

    /// Counts a finished pass.
    pub fn observe(&self, pass: &Pass, seconds: f64, now_seconds: f64) {
        let Pass::Reconciled { environments, .. } = pass else {
            self.invalid_revisions.inc();
            return;
        };
        for env in environments {
            let outcome = if env.converged() {
                "converged"
            } else {
                "partial"
            };
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
        }
        if pass.converged() {
            self.last_success.set(now_seconds);
        }
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
