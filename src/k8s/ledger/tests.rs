use super::*;
use crate::ledger::{GatewayState, Trigger};

const T0: Millis = 1_763_888_400_123;

fn sample() -> MemoryLedger {
    let ledger = MemoryLedger::new();
    let start = |gateway: &str, at| AttemptStart {
        environment: "production".into(),
        gateway: gateway.into(),
        revision: "c0ffee".into(),
        digest: "sha256:abc".into(),
        trigger: Trigger::Drift,
        started_at: at,
    };
    let done = ledger.start_attempt(&start("gw-1", T0)).unwrap();
    ledger
        .finish_attempt(done, T0 + 7, Outcome::Applied, Some("slow"))
        .unwrap();
    ledger.start_attempt(&start("gw-2", T0 + 9)).unwrap();
    ledger
        .upsert_gateway(&GatewayRecord {
            environment: "production".into(),
            gateway: "gw-1".into(),
            desired_digest: Some("sha256:abc".into()),
            desired_revision: Some("c0ffee".into()),
            observed_digest: Some("sha256:abc".into()),
            state: GatewayState::InSync,
            changed_at: T0 + 7,
            updated_at: T0 + 7,
            error: None,
        })
        .unwrap();
    ledger
        .record_deployment(&Deployment {
            environment: "production".into(),
            revision: "c0ffee".into(),
            digest: "sha256:abc".into(),
            packs: vec![crate::ledger::DeployedPack {
                name: "audit".into(),
                version: "1.0.0".into(),
                digest: "sha256:p1".into(),
                source: "sha256:s1".into(),
            }],
            verified_at: T0 + 8,
        })
        .unwrap();
    ledger
        .open_drift(&DriftEpisode {
            environment: "production".into(),
            gateway: "gw-1".into(),
            revision: "c0ffee".into(),
            desired_digest: "sha256:abc".into(),
            live_digest: Some("sha256:live".into()),
            changes: vec![crate::config::diff::Change {
                pointer: "/enforcement".into(),
                kind: crate::config::diff::ChangeKind::Changed,
                pack: None,
                policy: None,
                setting: None,
                from: Some("enforce".into()),
                to: Some("monitor".into()),
            }],
            onset_at: T0 + 1,
            resolved_at: None,
            resolution: None,
        })
        .unwrap();
    ledger
        .resolve_drift("production", "gw-1", T0 + 2, Resolution::Healed)
        .unwrap();
    let pin = |digest: &str, at| Pin {
        environment: "production".into(),
        digest: digest.into(),
        revision: "c0ffee".into(),
        reason: Some("incident".into()),
        by: "kubernetes".into(),
        at,
        held_since: None,
        ended_at: None,
        ended_by: None,
        end_reason: None,
    };
    ledger.pin(&pin("sha256:old", T0 + 3)).unwrap();
    ledger.pin(&pin("sha256:abc", T0 + 4)).unwrap();
    ledger
        .record_eval_run(&EvalRun {
            environment: "production".into(),
            suite: "pii".into(),
            revision: "c0ffee".into(),
            digest: "sha256:abc".into(),
            packs: vec![crate::ledger::DeployedPack {
                name: "audit".into(),
                version: "1.0.0".into(),
                digest: "sha256:p".into(),
                source: "sha256:s".into(),
            }],
            passed: 3,
            failed: 1,
            failures: vec![EvalFailure {
                gateway: "gw-1".into(),
                case: "card".into(),
                reason: "not redacted".into(),
            }],
            at: T0 + 5,
        })
        .unwrap();
    ledger
}

/// The status ledger as `sluice status --cluster` reads it (no writer).
fn unwritten() -> StatusLedger {
    StatusLedger {
        memory: MemoryLedger::new(),
        objects: Mutex::default(),
        unresolved: Mutex::default(),
        writer: None,
    }
}

#[test]
fn the_status_ledger_does_what_every_ledger_does() {
    crate::ledger::conformance::run_all(unwritten);
}

#[test]
fn a_record_survives_the_status_and_back_to_the_millisecond() {
    let kept = sample().environment("production");
    let status = status_of(&kept);
    // Through JSON, as the API server stores it.
    let stored: LedgerStatus =
        serde_json::from_value(serde_json::to_value(&status).unwrap()).unwrap();
    let back = record_of("production", &stored);
    assert_eq!(back.gateways, kept.gateways);
    assert_eq!(back.deployments, kept.deployments);
    assert_eq!(back.episodes, kept.episodes);
    assert_eq!(back.pins, kept.pins);
    assert_eq!(back.eval_runs, kept.eval_runs);
    assert_eq!(back.pins.len(), 2, "the replaced pin is history");
    let without_ids = |attempts: &[Attempt]| -> Vec<Attempt> {
        attempts
            .iter()
            .map(|a| Attempt { id: 0, ..a.clone() })
            .collect()
    };
    assert_eq!(without_ids(&back.attempts), without_ids(&kept.attempts));
    assert_eq!(
        stored.attempts[0].finished_at, None,
        "newest first, in flight"
    );
    assert_eq!(stored.deployments[0].packs[0].name, "audit");
    assert_eq!(stored.attempts[1].started_at, "2025-11-23T09:00:00.123Z");
}

#[test]
fn a_restored_record_answers_like_the_one_that_wrote_it() {
    let first = sample();
    let second = MemoryLedger::new();
    second.restore(
        "production",
        record_of("production", &status_of(&first.environment("production"))),
    );
    assert_eq!(
        second.deployments("production", 5).unwrap(),
        first.deployments("production", 5).unwrap()
    );
    assert_eq!(
        second.gateways(Some("production")).unwrap(),
        first.gateways(Some("production")).unwrap()
    );
    let unfinished = second.unfinished_attempts().unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].start.gateway, "gw-2");
    second
        .finish_attempt(unfinished[0].id, T0 + 20, Outcome::Interrupted, None)
        .unwrap();
    assert_eq!(
        second.drift_episodes(Some("production"), false, 5).unwrap(),
        first.drift_episodes(Some("production"), false, 5).unwrap()
    );
}

#[test]
fn long_drift_changes_are_not_kept_in_the_status() {
    let ledger = MemoryLedger::new();
    ledger
        .open_drift(&DriftEpisode {
            environment: "e".into(),
            gateway: "g".into(),
            revision: "r".into(),
            desired_digest: "d".into(),
            live_digest: None,
            changes: vec![wide_change(CHANGES_KEPT)],
            onset_at: T0,
            resolved_at: None,
            resolution: None,
        })
        .unwrap();
    assert_eq!(
        status_of(&ledger.environment("e")).drift_episodes[0].changes,
        "[]"
    );
}

#[test]
fn unreadable_times_read_as_the_epoch_not_a_panic() {
    assert_eq!(millis("yesterday"), 0);
    assert_eq!(millis(&time_text(T0)), T0);
}

fn environment(namespace: &str, name: &str, path: &str) -> Environment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Environment",
        "metadata": { "name": name, "namespace": namespace },
        "spec": { "repositoryRef": { "name": "policy" }, "path": path },
    }))
    .unwrap()
}

#[test]
fn a_start_the_api_server_did_not_take_is_taken_back_and_answers_the_error() {
    // An API server that is not there: nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = kube::Config::new(format!("http://{address}").parse().unwrap());
    let client = {
        let _inside = runtime.enter();
        Client::try_from(config).unwrap()
    };
    let ledger = StatusLedger::new(client, runtime.handle().clone());
    ledger
        .bind(&environment(
            "policy",
            "production",
            "environments/production",
        ))
        .unwrap();
    let result = ledger
        .write(&WriteBatch {
            starts: vec![AttemptStart {
                environment: "production".into(),
                gateway: "gw".into(),
                revision: "c0ffee".into(),
                digest: "sha256:abc".into(),
                trigger: Trigger::Poll,
                started_at: T0,
            }],
            ..Default::default()
        })
        .unwrap();
    let error = result.started[0].as_ref().unwrap_err().to_string();
    assert!(error.contains("status"), "{error}");
    assert!(ledger.unfinished_attempts().unwrap().is_empty());
    assert!(
        ledger
            .start_attempt(&AttemptStart {
                environment: "production".into(),
                gateway: "gw".into(),
                revision: "c0ffee".into(),
                digest: "sha256:abc".into(),
                trigger: Trigger::Poll,
                started_at: T0,
            })
            .is_err()
    );
}

#[test]
fn two_environments_naming_one_directory_are_refused() {
    let ledger = StatusLedger {
        memory: MemoryLedger::new(),
        objects: Mutex::default(),
        unresolved: Mutex::default(),
        writer: None,
    };
    ledger
        .bind(&environment("team-a", "prod", "environments/production"))
        .unwrap();
    ledger
        .bind(&environment("team-a", "prod", "environments/production/"))
        .unwrap();
    let other = ledger
        .bind(&environment("team-b", "prod", "environments/production"))
        .unwrap_err();
    assert_eq!(other.to_string(), "team-a/prod");
}

#[test]
fn a_record_too_large_for_a_status_sheds_history_then_says_how_large() {
    let ledger = MemoryLedger::new();
    for i in 0..40 {
        let start = AttemptStart {
            environment: "e".into(),
            gateway: format!("gw-{i}"),
            revision: "r".into(),
            digest: "d".into(),
            trigger: Trigger::Poll,
            started_at: T0 + i,
        };
        let id = ledger.start_attempt(&start).unwrap();
        if i > 0 {
            ledger
                .finish_attempt(id, T0 + i, Outcome::Failed, Some(&"e".repeat(900)))
                .unwrap();
        }
        ledger
            .open_drift(&DriftEpisode {
                environment: "e".into(),
                gateway: format!("gw-{i}"),
                revision: "r".into(),
                desired_digest: "d".into(),
                live_digest: None,
                changes: vec![wide_change(1500)],
                onset_at: T0 + i,
                resolved_at: None,
                resolution: None,
            })
            .unwrap();
    }
    let status = status_of(&ledger.environment("e"));
    let full = serde_json::to_vec(&status).unwrap().len();
    assert!(fit(status.clone(), full).is_ok(), "within budget: as it is");
    assert_eq!(fit(status.clone(), full).unwrap(), status);

    let shrunk = fit(status.clone(), 20 * 1024).unwrap();
    assert!(shrunk.drift_episodes.iter().all(|e| e.changes == "[]"));
    assert_eq!(shrunk.drift_episodes.len(), 40, "open episodes stay");
    assert_eq!(
        shrunk.attempts.len(),
        SHRUNK_HISTORY + 1,
        "the unfinished one stays"
    );
    assert!(shrunk.attempts.iter().any(|a| a.outcome.is_none()));
    assert!(serde_json::to_vec(&shrunk).unwrap().len() <= 20 * 1024);

    let needed = fit(status, 1024).unwrap_err();
    assert!(needed > 1024);
}

#[test]
fn the_revision_most_environments_run_stands_for_the_newest() {
    let values = ["b", "a", "b", "c"].map(String::from).into_iter();
    assert_eq!(most_common(values).as_deref(), Some("b"));
    let ties = ["x", "y"].map(String::from).into_iter();
    assert_eq!(most_common(ties).as_deref(), Some("x"));
    assert_eq!(most_common(std::iter::empty()), None);
}

/// A change whose JSON is longer than `bytes`.
fn wide_change(bytes: usize) -> crate::config::diff::Change {
    crate::config::diff::Change {
        pointer: format!("/{}", "x".repeat(bytes)),
        kind: crate::config::diff::ChangeKind::Added,
        pack: None,
        policy: None,
        setting: None,
        from: None,
        to: None,
    }
}
