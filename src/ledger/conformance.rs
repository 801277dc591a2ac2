//! What every [`Ledger`] must do, run against each implementation so the
//! standalone and the Kubernetes modes remember the same things the same way.

use super::*;

const T0: Millis = 1_750_000_000_000;

fn start(environment: &str, gateway: &str, started_at: Millis) -> AttemptStart {
    AttemptStart {
        environment: environment.into(),
        gateway: gateway.into(),
        revision: "c0ffee".into(),
        digest: "sha256:abc".into(),
        trigger: Trigger::Poll,
        started_at,
    }
}

fn record(environment: &str, gateway: &str, state: GatewayState) -> GatewayRecord {
    GatewayRecord {
        environment: environment.into(),
        gateway: gateway.into(),
        desired_digest: Some("sha256:abc".into()),
        desired_revision: Some("c0ffee".into()),
        observed_digest: Some("sha256:abc".into()),
        state,
        changed_at: T0,
        updated_at: T0,
        error: None,
    }
}

fn deployment(environment: &str, digest: &str, at: Millis) -> Deployment {
    Deployment {
        environment: environment.into(),
        revision: format!("rev-{digest}"),
        digest: digest.into(),
        packs: Vec::new(),
        verified_at: at,
    }
}

fn episode(environment: &str, gateway: &str, onset_at: Millis) -> DriftEpisode {
    DriftEpisode {
        environment: environment.into(),
        gateway: gateway.into(),
        revision: "c0ffee".into(),
        desired_digest: "sha256:abc".into(),
        live_digest: Some("sha256:live".into()),
        changes: Vec::new(),
        onset_at,
        resolved_at: None,
        resolution: None,
    }
}

pub fn attempts_start_unfinished_and_finish_once(ledger: &dyn Ledger) {
    let a = ledger.start_attempt(&start("prod", "gw-1", T0)).unwrap();
    let b = ledger.start_attempt(&start("dev", "gw-1", T0 + 1)).unwrap();
    assert_ne!(a, b);
    let unfinished: Vec<AttemptId> = ledger
        .unfinished_attempts()
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(unfinished, vec![a, b]);
    ledger
        .finish_attempt(a, T0 + 5, Outcome::Applied, None)
        .unwrap();
    assert!(
        ledger
            .finish_attempt(a, T0 + 6, Outcome::Failed, Some("again"))
            .is_err(),
        "finishing twice must fail"
    );
    assert!(matches!(
        ledger.finish_attempt(9_999_999, T0, Outcome::Applied, None),
        Err(LedgerError::NoSuchAttempt(9_999_999))
    ));
    let history = ledger.history("prod", None, 10).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].outcome, Some(Outcome::Applied));
    assert_eq!(history[0].finished_at, Some(T0 + 5));
    assert_eq!(ledger.unfinished_attempts().unwrap().len(), 1);
}

pub fn batches_start_finish_and_record_together(ledger: &dyn Ledger) {
    let first = ledger
        .write(&WriteBatch {
            starts: vec![start("prod", "gw-1", T0), start("prod", "gw-2", T0)],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(first.started.len(), 2);
    let second = ledger
        .write(&WriteBatch {
            finishes: vec![
                AttemptFinish {
                    id: *first.started[0].as_ref().unwrap(),
                    finished_at: T0 + 1,
                    outcome: Outcome::Applied,
                    error: None,
                },
                AttemptFinish {
                    id: 424_242,
                    finished_at: T0 + 1,
                    outcome: Outcome::Applied,
                    error: None,
                },
            ],
            records: vec![record("prod", "gw-1", GatewayState::InSync)],
            ..Default::default()
        })
        .unwrap();
    assert!(second.finished[0].is_ok());
    assert!(second.finished[1].is_err(), "an unknown finish fails alone");
    assert_eq!(ledger.gateways(Some("prod")).unwrap().len(), 1);
    assert_eq!(ledger.unfinished_attempts().unwrap().len(), 1);
}

pub fn history_is_newest_first_filtered_and_limited(ledger: &dyn Ledger) {
    for (i, gateway) in ["a", "b", "a", "b", "a"].iter().enumerate() {
        let id = ledger
            .start_attempt(&start("prod", gateway, T0 + i as Millis))
            .unwrap();
        ledger
            .finish_attempt(id, T0 + 10, Outcome::Unchanged, None)
            .unwrap();
    }
    ledger.start_attempt(&start("dev", "a", T0 + 100)).unwrap();
    let all: Vec<Millis> = ledger
        .history("prod", None, 10)
        .unwrap()
        .iter()
        .map(|a| a.start.started_at)
        .collect();
    assert_eq!(all, vec![T0 + 4, T0 + 3, T0 + 2, T0 + 1, T0]);
    let a: Vec<Millis> = ledger
        .history("prod", Some("a"), 2)
        .unwrap()
        .iter()
        .map(|a| a.start.started_at)
        .collect();
    assert_eq!(a, vec![T0 + 4, T0 + 2]);
    assert!(ledger.history("nowhere", None, 10).unwrap().is_empty());
}

pub fn history_pages_cover_every_attempt_once_in_order(ledger: &dyn Ledger) {
    // Several attempts per millisecond, as a pass over many gateways
    // writes them: the cursor must tell them apart by id.
    let mut started = Vec::new();
    for i in 0..23 {
        let gateway = if i % 3 == 0 { "a" } else { "b" };
        let id = ledger
            .start_attempt(&start("prod", gateway, T0 + i / 4))
            .unwrap();
        started.push((T0 + i / 4, id, gateway));
    }
    started.sort_by_key(|(at, id, _)| std::cmp::Reverse((*at, *id)));
    for gateway in [None, Some("a")] {
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = ledger.history_page("prod", gateway, before, 5).unwrap();
            assert!(page.len() <= 5);
            let Some(last) = page.last() else { break };
            before = Some(HistoryCursor::after(last));
            seen.extend(page.iter().map(|a| a.id));
        }
        let expected: Vec<AttemptId> = started
            .iter()
            .filter(|(_, _, g)| gateway.is_none_or(|w| w == *g))
            .map(|(_, id, _)| *id)
            .collect();
        assert_eq!(seen, expected, "pages of {gateway:?}");
    }
    let cursor: HistoryCursor = "1750000000001.17".parse().unwrap();
    assert_eq!(cursor.to_string(), "1750000000001.17");
    assert!("17".parse::<HistoryCursor>().is_err());
    let from_json: HistoryCursor = "2025-06-15T15:06:40.001Z.17".parse().unwrap();
    assert_eq!(
        from_json, cursor,
        "the startedAt of an attempt's JSON works too"
    );
    assert!(
        "2025-06-15T15:06:40.001.17"
            .parse::<HistoryCursor>()
            .is_err()
    );
}

pub fn gateway_records_replace_list_in_order_and_go(ledger: &dyn Ledger) {
    ledger
        .upsert_gateways(&[
            record("prod", "gw-b", GatewayState::Pending),
            record("dev", "gw-z", GatewayState::InSync),
            record("prod", "gw-a", GatewayState::InSync),
        ])
        .unwrap();
    ledger
        .upsert_gateway(&record("prod", "gw-b", GatewayState::Failed))
        .unwrap();
    let names: Vec<(String, String, GatewayState)> = ledger
        .gateways(None)
        .unwrap()
        .into_iter()
        .map(|r| (r.environment, r.gateway, r.state))
        .collect();
    assert_eq!(
        names,
        vec![
            ("dev".into(), "gw-z".into(), GatewayState::InSync),
            ("prod".into(), "gw-a".into(), GatewayState::InSync),
            ("prod".into(), "gw-b".into(), GatewayState::Failed),
        ]
    );
    ledger
        .remove_gateways(&[("prod".into(), "gw-a".into())])
        .unwrap();
    assert_eq!(ledger.gateways(Some("prod")).unwrap().len(), 1);
}

pub fn deployments_skip_a_repeat_and_read_newest_first(ledger: &dyn Ledger) {
    assert!(
        ledger
            .record_deployment(&deployment("prod", "d1", T0))
            .unwrap()
    );
    assert!(
        !ledger
            .record_deployment(&deployment("prod", "d1", T0 + 1))
            .unwrap()
    );
    assert!(
        ledger
            .record_deployment(&deployment("prod", "d2", T0 + 2))
            .unwrap()
    );
    assert!(
        ledger
            .record_deployment(&deployment("prod", "d1", T0 + 3))
            .unwrap()
    );
    let digests: Vec<Digest> = ledger
        .deployments("prod", 10)
        .unwrap()
        .into_iter()
        .map(|d| d.digest)
        .collect();
    assert_eq!(digests, vec!["d1", "d2", "d1"]);
    assert_eq!(
        ledger.deployments("prod", 1).unwrap()[0].verified_at,
        T0 + 3
    );
    assert!(ledger.deployments("dev", 10).unwrap().is_empty());
}

pub fn drift_episodes_open_once_update_and_resolve(ledger: &dyn Ledger) {
    assert!(ledger.open_drift(&episode("prod", "gw-1", T0)).unwrap());
    let mut again = episode("prod", "gw-1", T0 + 5);
    again.live_digest = Some("sha256:other".into());
    assert!(!ledger.open_drift(&again).unwrap(), "one open per gateway");
    assert!(ledger.open_drift(&episode("prod", "gw-2", T0 + 1)).unwrap());
    let open = ledger.drift_episodes(Some("prod"), true, 10).unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(open[0].gateway, "gw-2", "newest first");
    assert_eq!(open[1].onset_at, T0, "the onset stays");
    assert_eq!(open[1].live_digest, Some("sha256:other".into()));
    let closed = ledger
        .resolve_drift("prod", "gw-1", T0 + 9, Resolution::Healed)
        .unwrap()
        .expect("an open episode");
    assert_eq!(closed.resolution, Some(Resolution::Healed));
    assert_eq!(closed.resolved_at, Some(T0 + 9));
    assert!(
        ledger
            .resolve_drift("prod", "gw-1", T0 + 10, Resolution::Healed)
            .unwrap()
            .is_none()
    );
    assert_eq!(ledger.drift_episodes(None, true, 10).unwrap().len(), 1);
    assert_eq!(
        ledger
            .drift_episodes(Some("prod"), false, 10)
            .unwrap()
            .len(),
        2
    );
    assert!(
        ledger
            .drift_episodes(Some("dev"), false, 10)
            .unwrap()
            .is_empty()
    );
}

pub fn the_last_revision_is_the_newest_seen(ledger: &dyn Ledger) {
    assert!(ledger.last_revision().unwrap().is_none());
    let revision = |commit: &str, seen_at| RevisionRecord {
        commit: commit.into(),
        seen_at,
        valid: true,
        errors: 0,
        findings: Vec::new(),
    };
    ledger.record_revision(&revision("aaa", T0)).unwrap();
    ledger.record_revision(&revision("bbb", T0 + 1)).unwrap();
    assert_eq!(ledger.last_revision().unwrap().unwrap().commit, "bbb");
    // An invalid one keeps its findings, as they were.
    let finding = crate::config::Finding::error("pack.unknown-policy", "base/a.yaml", "no policy")
        .at(Some(crate::config::Position {
            line: 3,
            column: 5,
            width: 4,
        }))
        .pointer("/policies/chain/0")
        .hint("did you mean `pii-detector`?");
    let invalid = RevisionRecord {
        valid: false,
        errors: 1,
        findings: vec![(&finding).into()],
        ..revision("ccc", T0 + 2)
    };
    ledger.record_revision(&invalid).unwrap();
    assert_eq!(ledger.last_revision().unwrap(), Some(invalid));
}

fn pin(environment: &str, digest: &str, by: &str, at: Millis) -> Pin {
    Pin {
        environment: environment.into(),
        digest: digest.into(),
        revision: format!("rev-{digest}"),
        reason: Some("incident 42".into()),
        by: by.into(),
        at,
        held_since: None,
        ended_at: None,
        ended_by: None,
        end_reason: None,
    }
}

pub fn a_pin_is_one_per_environment_and_kept_as_history_when_it_ends(ledger: &dyn Ledger) {
    assert!(ledger.pins(None).unwrap().is_empty());
    assert!(
        ledger
            .unpin("prod", T0, "alice", PinEnd::Unpinned)
            .unwrap()
            .is_none(),
        "nothing to unpin"
    );
    assert!(
        ledger
            .pin(&pin("prod", "d1", "alice", T0))
            .unwrap()
            .is_none()
    );
    ledger.pin(&pin("dev", "d9", "bob", T0)).unwrap();
    let replaced = ledger
        .pin(&pin("prod", "d2", "carol", T0 + 5))
        .unwrap()
        .expect("the pin in place is replaced");
    assert_eq!(replaced.digest, "d1");
    assert_eq!(replaced.end_reason, Some(PinEnd::Replaced));
    assert_eq!(replaced.ended_at, Some(T0 + 5));
    assert_eq!(replaced.ended_by.as_deref(), Some("carol"));

    let active = ledger.pins(None).unwrap();
    let names: Vec<(&str, Digest)> = active
        .iter()
        .map(|p| (p.environment.as_str(), p.digest.clone()))
        .collect();
    assert_eq!(
        names,
        vec![("dev", "d9".into()), ("prod", "d2".into())],
        "by environment"
    );
    let prod = ledger.pins(Some("prod")).unwrap();
    assert_eq!(prod, vec![pin("prod", "d2", "carol", T0 + 5)], "kept whole");

    ledger.pin_holds("prod", T0 + 6).unwrap();
    ledger.pin_holds("prod", T0 + 7).unwrap();
    ledger.pin_holds("nowhere", T0 + 7).unwrap();
    assert_eq!(
        ledger.pins(Some("prod")).unwrap()[0].held_since,
        Some(T0 + 6),
        "the first time it held stays"
    );
    let ended = ledger
        .unpin("prod", T0 + 9, "sluice", PinEnd::CaughtUp)
        .unwrap()
        .expect("a pin in place");
    assert_eq!(ended.end_reason, Some(PinEnd::CaughtUp));
    assert_eq!(ended.ended_by.as_deref(), Some("sluice"));
    assert!(ledger.pins(Some("prod")).unwrap().is_empty());
    assert!(
        ledger
            .unpin("prod", T0 + 10, "alice", PinEnd::Unpinned)
            .unwrap()
            .is_none(),
        "ended once"
    );
    let history = ledger.pin_history("prod", 10).unwrap();
    let digests: Vec<(Digest, Option<PinEnd>)> = history
        .iter()
        .map(|p| (p.digest.clone(), p.end_reason))
        .collect();
    assert_eq!(
        digests,
        vec![
            ("d2".into(), Some(PinEnd::CaughtUp)),
            ("d1".into(), Some(PinEnd::Replaced))
        ],
        "newest first"
    );
    assert_eq!(ledger.pin_history("prod", 1).unwrap().len(), 1);
    assert_eq!(ledger.pins(Some("dev")).unwrap().len(), 1, "others stay");
}

fn eval_run(environment: &str, suite: &str, failed: u32, at: Millis) -> EvalRun {
    EvalRun {
        environment: environment.into(),
        suite: suite.into(),
        revision: "c0ffee".into(),
        digest: "sha256:abc".into(),
        packs: vec![DeployedPack {
            name: "support".into(),
            version: "2.3.0".into(),
            digest: "sha256:p1".into(),
            source: "sha256:s1".into(),
        }],
        passed: 7,
        failed,
        failures: (0..failed)
            .map(|i| EvalFailure {
                gateway: "gw-1".into(),
                case: format!("case-{i}"),
                reason: "forwarded a card number".into(),
            })
            .collect(),
        at,
    }
}

pub fn eval_runs_read_newest_first_by_suite_with_failures_capped(ledger: &dyn Ledger) {
    assert!(ledger.eval_runs("prod", None, 10).unwrap().is_empty());
    ledger
        .record_eval_run(&eval_run("prod", "pii", 0, T0))
        .unwrap();
    ledger
        .record_eval_run(&eval_run("prod", "injection", 2, T0 + 1))
        .unwrap();
    ledger
        .record_eval_run(&eval_run("prod", "pii", 1, T0 + 2))
        .unwrap();
    ledger
        .record_eval_run(&eval_run("dev", "pii", 0, T0 + 3))
        .unwrap();
    let all: Vec<(String, Millis)> = ledger
        .eval_runs("prod", None, 10)
        .unwrap()
        .into_iter()
        .map(|r| (r.suite, r.at))
        .collect();
    assert_eq!(
        all,
        vec![
            ("pii".into(), T0 + 2),
            ("injection".into(), T0 + 1),
            ("pii".into(), T0)
        ]
    );
    let pii = ledger.eval_runs("prod", Some("pii"), 1).unwrap();
    assert_eq!(pii, vec![eval_run("prod", "pii", 1, T0 + 2)], "kept whole");
    assert!(
        ledger
            .eval_runs("prod", Some("nope"), 10)
            .unwrap()
            .is_empty()
    );

    let many = eval_run("prod", "big", 80, T0 + 4);
    ledger.record_eval_run(&many).unwrap();
    let read = &ledger.eval_runs("prod", Some("big"), 1).unwrap()[0];
    assert_eq!(read.failed, 80, "the count stays whole");
    assert_eq!(read.failures.len(), EVAL_FAILURES_KEPT);
    assert_eq!(read.failures[..], many.failures[..EVAL_FAILURES_KEPT]);
}

pub fn prune_drops_old_ended_pins_and_eval_runs_but_not_what_is_current(ledger: &dyn Ledger) {
    const DAY: Millis = 86_400_000;
    let now = T0 + 400 * DAY;
    ledger.pin(&pin("prod", "d1", "alice", T0)).unwrap();
    ledger.pin(&pin("prod", "d2", "alice", T0 + DAY)).unwrap();
    ledger
        .record_eval_run(&eval_run("prod", "pii", 0, T0))
        .unwrap();
    ledger
        .record_eval_run(&eval_run("prod", "pii", 0, T0 + DAY))
        .unwrap();
    ledger
        .record_eval_run(&eval_run("prod", "injection", 0, T0))
        .unwrap();
    ledger
        .record_eval_run(&eval_run("prod", "pii", 0, now - DAY))
        .unwrap();
    let deleted = ledger
        .prune(now, &|_| Duration::from_secs(90 * 86_400))
        .unwrap();
    assert_eq!(deleted, 3, "the replaced pin and two old pii runs");
    assert_eq!(
        ledger.pins(Some("prod")).unwrap().len(),
        1,
        "in place stays"
    );
    assert_eq!(ledger.pin_history("prod", 10).unwrap().len(), 1);
    let runs: Vec<(String, Millis)> = ledger
        .eval_runs("prod", None, 10)
        .unwrap()
        .into_iter()
        .map(|r| (r.suite, r.at))
        .collect();
    assert_eq!(
        runs,
        vec![("pii".into(), now - DAY), ("injection".into(), T0)],
        "each suite's newest stays"
    );
}

/// Every check above, each on a fresh ledger from `fresh`.
pub fn run_all<L: Ledger>(fresh: impl Fn() -> L) {
    let checks: [fn(&dyn Ledger); 11] = [
        a_pin_is_one_per_environment_and_kept_as_history_when_it_ends,
        eval_runs_read_newest_first_by_suite_with_failures_capped,
        prune_drops_old_ended_pins_and_eval_runs_but_not_what_is_current,
        attempts_start_unfinished_and_finish_once,
        batches_start_finish_and_record_together,
        history_is_newest_first_filtered_and_limited,
        history_pages_cover_every_attempt_once_in_order,
        gateway_records_replace_list_in_order_and_go,
        deployments_skip_a_repeat_and_read_newest_first,
        drift_episodes_open_once_update_and_resolve,
        the_last_revision_is_the_newest_seen,
    ];
    for check in checks {
        check(&fresh());
    }
}
