//! Status building from reports, without I/O.

use super::*;
use crate::{
    config::Digest,
    drift::DriftReport,
    k8s::crd::{EnvironmentStatus, HISTORY_LIMIT, condition},
    reconcile::{EnvironmentReport, GatewayReport},
};
use k8s_openapi::jiff::Timestamp;

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + seconds).unwrap())
}

fn digest() -> Digest {
    Digest::of(b"policy")
}

fn gateway(name: &str, state: GatewayState, applied: bool) -> GatewayReport {
    GatewayReport {
        environment: "production".into(),
        gateway: name.into(),
        state,
        desired: digest(),
        observed: (state == GatewayState::InSync).then(digest),
        applied,
        error: None,
        drift: None,
        gated: None,
        pinned: None,
        attempt: None,
    }
}

fn report(gateways: Vec<GatewayReport>) -> EnvironmentReport {
    EnvironmentReport {
        environment: "production".into(),
        gateways,
    }
}

const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";

fn observe<'a>(report: &'a EnvironmentReport, started: &'a Time, now: Time) -> Observed<'a> {
    Observed {
        generation: Some(3),
        now,
        suspended: false,
        blocked: None,
        validation: Validation::Valid,
        pass: Some(PassReport {
            revision: REVISION,
            trigger: Trigger::Poll,
            report,
            started,
        }),
        handled_request: None,
    }
}

fn find<'a>(status: &'a EnvironmentStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

#[test]
fn a_converged_apply_is_ready_synced_and_recorded() {
    let report = report(vec![
        gateway("cm", GatewayState::InSync, true),
        gateway("http", GatewayState::InSync, true),
    ]);
    let status = build(
        &EnvironmentStatus::default(),
        &observe(&report, &at(0), at(1)),
    );
    let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, condition::ALL);
    for (type_, expected, reason) in [
        (condition::READY, "True", reason::RECONCILED),
        (condition::VALIDATED, "True", reason::VALID),
        (condition::SYNCED, "True", reason::ALL_IN_SYNC),
        (condition::DRIFTED, "False", reason::NO_DRIFT),
        (condition::GATED, "False", reason::NOT_GATED),
    ] {
        let c = find(&status, type_);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            (expected, reason),
            "{type_}"
        );
        assert_eq!(c.observed_generation, Some(3));
    }
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.gateways_in_sync.as_deref(), Some("2/2"));
    assert_eq!(status.desired_revision.as_deref(), Some(REVISION));
    assert_eq!(status.desired_digest, Some(digest().to_string()));
    assert!(
        status
            .desired_version
            .as_deref()
            .unwrap()
            .ends_with("@01234567")
    );
    assert_eq!(status.gateways.len(), 2);
    assert_eq!(status.history.len(), 1);
    let record = &status.history[0];
    assert_eq!(record.outcome, Outcome::Applied);
    assert_eq!(record.trigger, Trigger::Poll);
    assert_eq!(record.started_at, at(0));
    assert_eq!(record.finished_at, Some(at(1)));
}

#[test]
fn an_unchanged_pass_keeps_transition_times_and_adds_no_history() {
    let applied = report(vec![gateway("cm", GatewayState::InSync, true)]);
    let first = build(
        &EnvironmentStatus::default(),
        &observe(&applied, &at(0), at(1)),
    );
    let unchanged = report(vec![gateway("cm", GatewayState::InSync, false)]);
    let second = build(&first, &observe(&unchanged, &at(60), at(61)));
    for c in &second.conditions {
        assert_eq!(c.last_transition_time, at(1), "{}", c.type_);
    }
    assert_eq!(second.gateways[0].last_transition_time, Some(at(1)));
    assert_eq!(second.history.len(), 1);
}

#[test]
fn a_failed_gateway_is_not_synced_and_says_which() {
    let mut failed = gateway("http", GatewayState::Unreachable, false);
    failed.error = Some("connection refused".into());
    let report = report(vec![gateway("cm", GatewayState::InSync, true), failed]);
    let status = build(
        &EnvironmentStatus::default(),
        &observe(&report, &at(0), at(1)),
    );
    let synced = find(&status, condition::SYNCED);
    assert_eq!(
        (synced.status.as_str(), synced.reason.as_str()),
        ("False", reason::APPLY_FAILED)
    );
    assert!(synced.message.contains("http"), "{}", synced.message);
    assert_eq!(find(&status, condition::READY).reason, reason::APPLY_FAILED);
    assert_eq!(status.gateways_in_sync.as_deref(), Some("1/2"));
    assert_eq!(status.history[0].outcome, Outcome::Failed);
    assert!(
        status.history[0]
            .message
            .as_deref()
            .unwrap()
            .contains("connection refused")
    );
    assert_eq!(
        status.gateways[1].message.as_deref(),
        Some("connection refused")
    );
}

fn drift() -> DriftReport {
    DriftReport {
        new_episode: true,
        changes: Vec::new(),
        diff: String::new(),
    }
}

#[test]
fn drift_left_alone_is_drifted_and_drift_healed_is_recorded_as_such() {
    let mut drifted = gateway("cm", GatewayState::Drifted, false);
    drifted.drift = Some(drift());
    let left = report(vec![drifted]);
    let status = build(
        &EnvironmentStatus::default(),
        &observe(&left, &at(0), at(1)),
    );
    let c = find(&status, condition::DRIFTED);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", reason::DRIFTED)
    );
    assert_eq!(find(&status, condition::READY).reason, reason::DRIFTED);
    assert!(status.history.is_empty());

    let mut healed = gateway("cm", GatewayState::InSync, true);
    healed.drift = Some(drift());
    let healed = report(vec![healed]);
    let status = build(&status, &observe(&healed, &at(60), at(61)));
    let c = find(&status, condition::DRIFTED);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", reason::HEALED)
    );
    assert_eq!(c.last_transition_time, at(61));
    assert_eq!(status.history[0].trigger, Trigger::Drift);
    assert_eq!(find(&status, condition::READY).status, "True");
}

#[test]
fn a_gate_holds_the_environment_back() {
    let mut held = gateway("cm", GatewayState::Gated, false);
    held.gated = Some("soak: staging has run it for 10m of 1h".into());
    let report = report(vec![held]);
    let status = build(
        &EnvironmentStatus::default(),
        &observe(&report, &at(0), at(1)),
    );
    let c = find(&status, condition::GATED);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", reason::GATED)
    );
    assert!(c.message.contains("soak"));
    assert_eq!(find(&status, condition::READY).reason, reason::GATED);
}

#[test]
fn an_invalid_head_keeps_the_last_good_and_says_why() {
    let kept = report(vec![gateway("cm", GatewayState::InSync, false)]);
    let started = at(0);
    let mut observed = observe(&kept, &started, at(1));
    observed.validation = Validation::Invalid {
        reason: reason::VALIDATION_FAILED,
        message: "environments/production/gateways.yaml:3 schema: bad".into(),
    };
    let status = build(&EnvironmentStatus::default(), &observed);
    let validated = find(&status, condition::VALIDATED);
    assert_eq!(validated.status, "False");
    assert!(validated.message.contains("gateways.yaml:3"));
    let ready = find(&status, condition::READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason::VALIDATION_FAILED)
    );
    assert_eq!(find(&status, condition::SYNCED).status, "True");
}

#[test]
fn suspended_and_blocked_say_so_and_keep_the_rest() {
    let report = report(vec![gateway("cm", GatewayState::InSync, true)]);
    let before = build(
        &EnvironmentStatus::default(),
        &observe(&report, &at(0), at(1)),
    );
    let mut suspended = Observed::new(Some(4), at(10));
    suspended.suspended = true;
    let status = build(&before, &suspended);
    let ready = find(&status, condition::READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason::SUSPENDED)
    );
    assert_eq!(ready.last_transition_time, at(10));
    assert_eq!(find(&status, condition::SYNCED).last_transition_time, at(1));
    assert_eq!(status.gateways, before.gateways);
    assert_eq!(status.observed_generation, Some(4));

    let mut blocked = Observed::new(Some(4), at(20));
    blocked.blocked = Some(("FetchFailed", "cannot reach git.example".into()));
    let status = build(&before, &blocked);
    assert_eq!(find(&status, condition::READY).reason, "FetchFailed");
}

#[test]
fn the_handled_request_is_recorded_and_kept() {
    let report = report(vec![gateway("cm", GatewayState::InSync, true)]);
    let started = at(0);
    let mut requested = observe(&report, &started, at(1));
    requested.handled_request = Some("1764633600".into());
    let status = build(&EnvironmentStatus::default(), &requested);
    assert_eq!(
        status.last_handled_reconcile_at.as_deref(),
        Some("1764633600")
    );
    let later = build(&status, &observe(&report, &at(2), at(3)));
    assert_eq!(
        later.last_handled_reconcile_at.as_deref(),
        Some("1764633600")
    );
}

#[test]
fn history_is_bounded_newest_first() {
    let mut status = EnvironmentStatus::default();
    for i in 0..(HISTORY_LIMIT as i64 + 5) {
        let report = report(vec![gateway("cm", GatewayState::InSync, true)]);
        status = build(&status, &observe(&report, &at(i), at(i)));
    }
    assert_eq!(status.history.len(), HISTORY_LIMIT);
    assert_eq!(status.history[0].started_at, at(HISTORY_LIMIT as i64 + 4));
}
