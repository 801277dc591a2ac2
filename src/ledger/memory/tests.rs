use super::*;
use crate::ledger::{GatewayState, Trigger, conformance};

const T0: Millis = 1_750_000_000_000;

#[test]
fn the_memory_ledger_does_what_every_ledger_does() {
    conformance::run_all(MemoryLedger::new);
}

fn start(gateway: &str, at: Millis) -> AttemptStart {
    AttemptStart {
        environment: "prod".into(),
        gateway: gateway.into(),
        revision: "c0ffee".into(),
        digest: "sha256:abc".into(),
        trigger: Trigger::Poll,
        started_at: at,
    }
}

#[test]
fn history_is_bounded_but_unfinished_attempts_are_never_dropped() {
    let ledger = MemoryLedger::new();
    let stuck = ledger.start_attempt(&start("stuck", T0)).unwrap();
    for i in 0..(ATTEMPTS_KEPT as Millis + 30) {
        let id = ledger.start_attempt(&start("gw", T0 + 1 + i)).unwrap();
        ledger
            .finish_attempt(id, T0 + 1 + i, Outcome::Applied, None)
            .unwrap();
    }
    let record = ledger.environment("prod");
    assert_eq!(record.attempts.len(), ATTEMPTS_KEPT + 1);
    assert!(record.attempts.iter().any(|a| a.id == stuck));
    let newest = ledger.history("prod", Some("gw"), 1).unwrap();
    assert_eq!(
        newest[0].start.started_at,
        T0 + ATTEMPTS_KEPT as Millis + 30
    );
}

#[test]
fn deployments_and_resolved_episodes_are_bounded_open_ones_kept() {
    let ledger = MemoryLedger::new();
    for i in 0..(DEPLOYMENTS_KEPT as Millis + 5) {
        ledger
            .record_deployment(&Deployment {
                environment: "prod".into(),
                revision: format!("r{i}"),
                digest: format!("d{i}").into(),
                packs: Vec::new(),
                verified_at: T0 + i,
            })
            .unwrap();
    }
    let episode = |gateway: &str, at| DriftEpisode {
        environment: "prod".into(),
        gateway: gateway.into(),
        revision: "r".into(),
        desired_digest: "d".into(),
        live_digest: None,
        changes: Vec::new(),
        onset_at: at,
        resolved_at: None,
        resolution: None,
    };
    ledger.open_drift(&episode("still-drifted", T0)).unwrap();
    for i in 0..(EPISODES_KEPT as Millis + 5) {
        ledger.open_drift(&episode("flappy", T0 + i)).unwrap();
        ledger
            .resolve_drift("prod", "flappy", T0 + i, Resolution::Healed)
            .unwrap();
    }
    let record = ledger.environment("prod");
    assert_eq!(record.deployments.len(), DEPLOYMENTS_KEPT);
    assert_eq!(record.deployments.last().unwrap().digest, "d24");
    assert_eq!(record.episodes.len(), EPISODES_KEPT + 1);
    assert_eq!(ledger.drift_episodes(None, true, 10).unwrap().len(), 1);
}

#[test]
fn a_restored_record_reads_back_under_its_environment_with_fresh_ids() {
    let first = MemoryLedger::new();
    let id = first.start_attempt(&start("gw", T0)).unwrap();
    first
        .upsert_gateway(&GatewayRecord {
            environment: "prod".into(),
            gateway: "gw".into(),
            desired_digest: Some("d".into()),
            desired_revision: Some("r".into()),
            observed_digest: None,
            state: GatewayState::Applying,
            changed_at: T0,
            updated_at: T0,
            error: None,
        })
        .unwrap();
    let kept = first.environment("prod");

    let second = MemoryLedger::new();
    let other = second.start_attempt(&start("gw", T0)).unwrap();
    second.restore("prod", kept);
    let unfinished = second.unfinished_attempts().unwrap();
    assert_eq!(unfinished.len(), 1, "the restore replaces the record");
    assert_ne!(unfinished[0].id, other);
    let _ = id;
    second
        .finish_attempt(unfinished[0].id, T0 + 1, Outcome::Interrupted, None)
        .unwrap();
    assert_eq!(second.gateways(Some("prod")).unwrap()[0].gateway, "gw");
}

#[test]
fn prune_keeps_unfinished_open_and_the_newest_deployment() {
    let ledger = MemoryLedger::new();
    let old = ledger.start_attempt(&start("gw", T0)).unwrap();
    ledger
        .finish_attempt(old, T0, Outcome::Applied, None)
        .unwrap();
    ledger.start_attempt(&start("gw", T0)).unwrap();
    ledger
        .record_deployment(&Deployment {
            environment: "prod".into(),
            revision: "r".into(),
            digest: "d".into(),
            packs: Vec::new(),
            verified_at: T0,
        })
        .unwrap();
    let day = Duration::from_secs(86_400);
    let deleted = ledger.prune(T0 + 2 * 86_400_000, &|_| day).unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(ledger.unfinished_attempts().unwrap().len(), 1);
    assert_eq!(ledger.deployments("prod", 10).unwrap().len(), 1);
}
