//! Tests against real SQLite files in temporary directories.

use super::migrations::LATEST;
use super::*;
use crate::ledger::default_retention;
use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Barrier;
use tempfile::TempDir;

const DAY: Millis = 86_400_000;
/// A fixed "now" far from the epoch, so subtracting a year stays positive.
const NOW: Millis = 1_750_000_000_000;

fn ledger_path() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state").join("ledger.db");
    (dir, path)
}

fn fresh() -> (TempDir, PathBuf, SqliteLedger) {
    let (dir, path) = ledger_path();
    let ledger = SqliteLedger::open(&path).expect("open ledger");
    (dir, path, ledger)
}

fn revision(commit: &str, seen_at: Millis, valid: bool) -> RevisionRecord {
    RevisionRecord {
        commit: commit.to_string(),
        seen_at,
        valid,
        errors: if valid { 0 } else { 2 },
        findings: if valid {
            Vec::new()
        } else {
            vec![(&crate::config::Finding::error("yaml.syntax", "base/a.yaml", "bad")).into()]
        },
    }
}

fn start(environment: &str, gateway: &str, started_at: Millis) -> AttemptStart {
    AttemptStart {
        environment: environment.to_string(),
        gateway: gateway.to_string(),
        revision: "c0ffee".to_string(),
        digest: "sha256:abc".into(),
        trigger: Trigger::Poll,
        started_at,
    }
}

fn gateway(environment: &str, name: &str, state: GatewayState) -> GatewayRecord {
    GatewayRecord {
        environment: environment.to_string(),
        gateway: name.to_string(),
        desired_digest: Some("sha256:abc".into()),
        desired_revision: Some("c0ffee".to_string()),
        observed_digest: None,
        state,
        changed_at: NOW,
        updated_at: NOW,
        error: None,
    }
}

/// Counts rows with a separate plain connection, so the count does not go
/// through the code under test.
fn count_rows(path: &Path, table: &str) -> i64 {
    let conn = Connection::open(path).expect("raw open");
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
        row.get(0)
    })
    .expect("count")
}

fn production_or_not(environment: &str) -> Duration {
    default_retention(environment == "production")
}

#[test]
fn open_creates_missing_directories_and_the_file() {
    let (_dir, path) = ledger_path();
    assert!(!path.parent().unwrap().exists());
    let _ledger = SqliteLedger::open(&path).unwrap();
    assert!(path.exists());
}

#[test]
fn an_empty_ledger_has_no_revision_attempts_or_gateways() {
    let (_dir, _path, ledger) = fresh();
    assert_eq!(ledger.last_revision().unwrap(), None);
    assert!(ledger.unfinished_attempts().unwrap().is_empty());
    assert!(ledger.history("production", None, 10).unwrap().is_empty());
    assert!(ledger.gateways(None).unwrap().is_empty());
    assert_eq!(ledger.prune(NOW, &production_or_not).unwrap(), 0);
}

#[test]
fn a_recorded_revision_reads_back_and_the_newest_seen_is_last() {
    let (_dir, _path, ledger) = fresh();
    let older = revision("aaa", NOW - 10, true);
    let newer = revision("bbb", NOW, false);
    ledger.record_revision(&newer).unwrap();
    ledger.record_revision(&older).unwrap();
    assert_eq!(ledger.last_revision().unwrap(), Some(newer));
}

#[test]
fn revisions_seen_in_the_same_millisecond_are_ordered_by_insertion() {
    let (_dir, _path, ledger) = fresh();
    ledger
        .record_revision(&revision("first", NOW, true))
        .unwrap();
    ledger
        .record_revision(&revision("second", NOW, true))
        .unwrap();
    assert_eq!(ledger.last_revision().unwrap().unwrap().commit, "second");
}

#[test]
fn recording_a_commit_again_keeps_one_row_and_its_first_sighting_and_makes_it_the_newest() {
    let (_dir, path, ledger) = fresh();
    ledger.record_revision(&revision("aaa", NOW, true)).unwrap();
    ledger
        .record_revision(&revision("bbb", NOW + 1, true))
        .unwrap();
    ledger
        .record_revision(&revision("aaa", NOW + 2, false))
        .unwrap();
    assert_eq!(count_rows(&path, "revisions"), 2);
    // A branch reset back to "aaa" (a rollback) makes it the newest again...
    assert_eq!(ledger.last_revision().unwrap().unwrap().commit, "aaa");
    // ...it keeps its first seen_at, and its validation result is the latest one.
    let conn = Connection::open(&path).unwrap();
    let (seen_at, valid, errors): (Millis, bool, i64) = conn
        .query_row(
            "SELECT seen_at, valid, errors FROM revisions WHERE commit_id = 'aaa'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert_eq!((seen_at, valid, errors), (NOW, false, 2));
}

#[test]
fn an_attempt_reads_back_unfinished_then_finished() {
    let (_dir, _path, ledger) = fresh();
    let begun = AttemptStart {
        trigger: Trigger::Webhook,
        ..start("staging", "gw-1", NOW)
    };
    let id = ledger.start_attempt(&begun).unwrap();
    let unfinished = ledger.unfinished_attempts().unwrap();
    assert_eq!(
        unfinished,
        vec![Attempt {
            id,
            start: begun.clone(),
            finished_at: None,
            outcome: None,
            error: None
        }]
    );

    ledger
        .finish_attempt(id, NOW + 5, Outcome::Failed, Some("HTTP 503"))
        .unwrap();
    assert!(ledger.unfinished_attempts().unwrap().is_empty());
    assert_eq!(
        ledger.history("staging", Some("gw-1"), 10).unwrap(),
        vec![Attempt {
            id,
            start: begun,
            finished_at: Some(NOW + 5),
            outcome: Some(Outcome::Failed),
            error: Some("HTTP 503".to_string()),
        }]
    );
}

#[test]
fn every_trigger_and_outcome_survives_a_round_trip() {
    let (_dir, _path, ledger) = fresh();
    let triggers = [
        Trigger::Startup,
        Trigger::Poll,
        Trigger::Webhook,
        Trigger::Manual,
        Trigger::Drift,
    ];
    let outcomes = [
        Outcome::Applied,
        Outcome::Unchanged,
        Outcome::Failed,
        Outcome::Interrupted,
    ];
    for (n, trigger) in triggers.into_iter().enumerate() {
        let at = NOW + n as Millis;
        let id = ledger
            .start_attempt(&AttemptStart {
                trigger,
                ..start("dev", "gw", at)
            })
            .unwrap();
        ledger
            .finish_attempt(id, at, outcomes[n % outcomes.len()], None)
            .unwrap();
    }
    let history = ledger.history("dev", None, 100).unwrap();
    let seen_triggers: Vec<Trigger> = history.iter().rev().map(|a| a.start.trigger).collect();
    assert_eq!(seen_triggers, triggers);
    let seen_outcomes: BTreeSet<&str> = history
        .iter()
        .map(|a| a.outcome.unwrap().as_str())
        .collect();
    assert_eq!(seen_outcomes.len(), outcomes.len());
}

#[test]
fn finishing_an_attempt_twice_is_an_error_and_adds_no_row() {
    let (_dir, path, ledger) = fresh();
    let id = ledger
        .start_attempt(&start("production", "gw", NOW))
        .unwrap();
    ledger
        .finish_attempt(id, NOW + 1, Outcome::Applied, None)
        .unwrap();
    assert_eq!(count_rows(&path, "attempts"), 1);

    let again = ledger.finish_attempt(id, NOW + 2, Outcome::Failed, Some("late"));
    match again {
        Err(LedgerError::Query { doing, message }) => {
            assert_eq!(doing, "finishing an attempt");
            assert!(message.contains("already finished"), "{message}");
        }
        other => panic!("expected an already-finished error, got {other:?}"),
    }
    assert_eq!(count_rows(&path, "attempts"), 1);
    let kept = &ledger.history("production", None, 10).unwrap()[0];
    assert_eq!(
        (kept.finished_at, kept.outcome, kept.error.as_deref()),
        (Some(NOW + 1), Some(Outcome::Applied), None)
    );
}

#[test]
fn finishing_an_attempt_that_does_not_exist_is_no_such_attempt() {
    let (_dir, path, ledger) = fresh();
    let result = ledger.finish_attempt(42, NOW, Outcome::Applied, None);
    assert!(
        matches!(result, Err(LedgerError::NoSuchAttempt(42))),
        "{result:?}"
    );
    assert_eq!(count_rows(&path, "attempts"), 0);
}

#[test]
fn history_is_newest_first_filtered_by_gateway_and_limited() {
    let (_dir, _path, ledger) = fresh();
    let a1 = ledger
        .start_attempt(&start("production", "gw-a", NOW))
        .unwrap();
    let b1 = ledger
        .start_attempt(&start("production", "gw-b", NOW + 1))
        .unwrap();
    let a2 = ledger
        .start_attempt(&start("production", "gw-a", NOW + 2))
        .unwrap();
    // Same start time as a2: the later id is newer.
    let a3 = ledger
        .start_attempt(&start("production", "gw-a", NOW + 2))
        .unwrap();
    let _other = ledger
        .start_attempt(&start("staging", "gw-a", NOW + 3))
        .unwrap();

    let ids = |attempts: Vec<Attempt>| attempts.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(
        ids(ledger.history("production", None, 10).unwrap()),
        vec![a3, a2, b1, a1]
    );
    assert_eq!(
        ids(ledger.history("production", Some("gw-a"), 10).unwrap()),
        vec![a3, a2, a1]
    );
    assert_eq!(
        ids(ledger.history("production", Some("gw-a"), 2).unwrap()),
        vec![a3, a2]
    );
    assert_eq!(
        ids(ledger.history("production", None, 0).unwrap()),
        Vec::<AttemptId>::new()
    );
    assert_eq!(
        ids(ledger.history("production", None, usize::MAX).unwrap()).len(),
        4
    );
    assert!(
        ledger
            .history("production", Some("gw-z"), 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn gateway_records_are_replaced_by_upsert_and_listed_by_environment_then_gateway() {
    let (_dir, path, ledger) = fresh();
    ledger
        .upsert_gateway(&gateway("staging", "gw-b", GatewayState::Pending))
        .unwrap();
    ledger
        .upsert_gateway(&gateway("production", "gw-z", GatewayState::InSync))
        .unwrap();
    ledger
        .upsert_gateway(&gateway("staging", "gw-a", GatewayState::Applying))
        .unwrap();

    let updated = GatewayRecord {
        observed_digest: None,
        desired_digest: None,
        desired_revision: None,
        state: GatewayState::Unreachable,
        updated_at: NOW + 9,
        error: Some("connection refused".to_string()),
        ..gateway("staging", "gw-b", GatewayState::Pending)
    };
    ledger.upsert_gateway(&updated).unwrap();
    assert_eq!(count_rows(&path, "gateways"), 3);

    let all = ledger.gateways(None).unwrap();
    let keys: Vec<(&str, &str)> = all
        .iter()
        .map(|g| (g.environment.as_str(), g.gateway.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("production", "gw-z"),
            ("staging", "gw-a"),
            ("staging", "gw-b")
        ]
    );
    assert_eq!(all[2], updated);

    let staging = ledger.gateways(Some("staging")).unwrap();
    assert_eq!(staging.len(), 2);
    assert!(ledger.gateways(Some("nowhere")).unwrap().is_empty());
}

#[test]
fn every_gateway_state_survives_a_round_trip() {
    let (_dir, _path, ledger) = fresh();
    for (n, state) in GatewayState::ALL.into_iter().enumerate() {
        ledger
            .upsert_gateway(&gateway("dev", &format!("gw-{n}"), state))
            .unwrap();
    }
    let read: Vec<GatewayState> = ledger
        .gateways(Some("dev"))
        .unwrap()
        .iter()
        .map(|g| g.state)
        .collect();
    assert_eq!(read, GatewayState::ALL);
}

#[test]
fn reopening_a_ledger_applies_no_migration_again_and_keeps_its_records() {
    let (_dir, path, ledger) = fresh();
    ledger.record_revision(&revision("aaa", NOW, true)).unwrap();
    drop(ledger);
    let schema = |path: &Path| -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let before = schema(&path);

    for _ in 0..2 {
        let ledger = SqliteLedger::open(&path).unwrap();
        assert_eq!(migrations::user_version(&ledger.conn()).unwrap(), LATEST);
        assert_eq!(ledger.last_revision().unwrap().unwrap().commit, "aaa");
    }
    assert_eq!(schema(&path), before);
    assert_eq!(count_rows(&path, "revisions"), 1);
}

#[test]
fn two_connections_opening_a_new_file_at_once_both_migrate_it_once() {
    let (_dir, path) = ledger_path();
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        let opens: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    SqliteLedger::open(&path).map(drop)
                })
            })
            .collect();
        for open in opens {
            open.join().unwrap().unwrap();
        }
    });
    let ledger = SqliteLedger::open(&path).unwrap();
    assert_eq!(migrations::user_version(&ledger.conn()).unwrap(), LATEST);
}

#[test]
fn a_file_from_a_newer_sluice_is_refused_as_too_new() {
    let (_dir, path, ledger) = fresh();
    drop(ledger);
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", LATEST + 1)
        .unwrap();

    for result in [
        SqliteLedger::open(&path),
        SqliteLedger::open_read_only(&path),
    ] {
        match result {
            Err(LedgerError::TooNew { found, known }) => {
                assert_eq!((found, known), (LATEST + 1, LATEST));
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
    }
}

#[test]
fn a_file_that_is_not_a_ledger_is_refused_and_left_alone() {
    let (dir, _path) = ledger_path();
    let foreign = dir.path().join("other.db");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE notes (body TEXT)")
        .unwrap();
    let result = SqliteLedger::open(&foreign);
    assert!(
        matches!(&result, Err(LedgerError::Open { message, .. }) if message.contains("not a Sluice ledger")),
        "{result:?}"
    );
    assert_eq!(count_rows(&foreign, "sqlite_schema"), 1);

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    assert!(matches!(
        SqliteLedger::open(&garbage),
        Err(LedgerError::Open { .. })
    ));
}

#[test]
fn the_file_is_in_wal_mode_with_normal_sync_and_foreign_keys() {
    let (_dir, path, ledger) = fresh();
    let conn = ledger.conn();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let synchronous: i64 = conn
        .pragma_query_value(None, "synchronous", |row| row.get(0))
        .unwrap();
    assert_eq!(synchronous, 1, "NORMAL");
    let foreign_keys: bool = conn
        .pragma_query_value(None, "foreign_keys", |row| row.get(0))
        .unwrap();
    assert!(foreign_keys);
    drop(conn);
    // WAL is a property of the file, seen by any other connection too.
    let raw = Connection::open(&path).unwrap();
    let mode: String = raw
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn opening_read_only_needs_an_existing_ledger() {
    let (_dir, path) = ledger_path();
    let result = SqliteLedger::open_read_only(&path);
    assert!(
        matches!(&result, Err(LedgerError::Open { message, .. }) if message.contains("no ledger file")),
        "{result:?}"
    );
    assert!(!path.exists(), "a reader must not create the file");
}

#[test]
fn a_read_only_ledger_sees_the_writers_records_but_cannot_write() {
    let (_dir, path, writer) = fresh();
    let id = writer
        .start_attempt(&start("production", "gw", NOW))
        .unwrap();
    writer
        .upsert_gateway(&gateway("production", "gw", GatewayState::Applying))
        .unwrap();

    let reader = SqliteLedger::open_read_only(&path).unwrap();
    assert_eq!(reader.unfinished_attempts().unwrap()[0].id, id);
    assert_eq!(reader.gateways(None).unwrap().len(), 1);
    // The writer keeps going and the reader sees it, while both are open.
    writer
        .finish_attempt(id, NOW + 1, Outcome::Applied, None)
        .unwrap();
    assert!(reader.unfinished_attempts().unwrap().is_empty());

    let write = reader.record_revision(&revision("aaa", NOW, true));
    assert!(
        matches!(
            write,
            Err(LedgerError::Query {
                doing: "recording a revision",
                ..
            })
        ),
        "{write:?}"
    );
    assert_eq!(count_rows(&path, "revisions"), 0);
}

#[test]
fn an_attempt_left_unfinished_when_the_ledger_is_dropped_is_seen_on_reopening() {
    let (_dir, path, ledger) = fresh();
    let id = ledger
        .start_attempt(&start("production", "gw", NOW))
        .unwrap();
    drop(ledger);
    let reopened = SqliteLedger::open(&path).unwrap();
    let unfinished = reopened.unfinished_attempts().unwrap();
    assert_eq!(
        unfinished.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![id]
    );
    // Resolving it is an ordinary finish.
    reopened
        .finish_attempt(id, NOW + 1, Outcome::Interrupted, Some("sluice stopped"))
        .unwrap();
    assert!(reopened.unfinished_attempts().unwrap().is_empty());
}

#[test]
fn a_second_ledger_on_another_thread_sees_an_attempt_in_flight() {
    let (_dir, path, first) = fresh();
    let id = first
        .start_attempt(&start("production", "gw", NOW))
        .unwrap();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let second = SqliteLedger::open(&path).unwrap();
                let unfinished = second.unfinished_attempts().unwrap();
                assert_eq!(
                    unfinished.iter().map(|a| a.id).collect::<Vec<_>>(),
                    vec![id]
                );
                second
                    .finish_attempt(id, NOW + 1, Outcome::Interrupted, None)
                    .unwrap();
            })
            .join()
            .unwrap();
    });
    assert!(first.unfinished_attempts().unwrap().is_empty());
    let result = first.finish_attempt(id, NOW + 2, Outcome::Applied, None);
    assert!(
        matches!(result, Err(LedgerError::Query { .. })),
        "{result:?}"
    );
}

/// Set in the child process of the kill test: the ledger path to write to.
const KILL_CHILD_ENV: &str = "SLUICE_LEDGER_TEST_KILL_CHILD";
/// What the child prints before its attempt id. Libtest may print the test's
/// name on the same line first, so the parent looks for it anywhere in a line.
const KILL_CHILD_MARKER: &str = "sluice-attempt-in-flight:";

#[test]
fn an_attempt_started_by_a_killed_process_is_seen_unfinished_by_the_next() {
    if let Ok(path) = std::env::var(KILL_CHILD_ENV) {
        // The child: start an attempt, say so, then block until killed.
        let ledger = SqliteLedger::open(Path::new(&path)).unwrap();
        let id = ledger
            .start_attempt(&start("production", "gw", NOW))
            .unwrap();
        println!("{KILL_CHILD_MARKER}{id}");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        // Only reached if the parent closed stdin without killing us.
        std::process::abort();
    }

    let (_dir, path) = ledger_path();
    let name = concat!(
        module_path!(),
        "::an_attempt_started_by_a_killed_process_is_seen_unfinished_by_the_next"
    );
    let name = name.split_once("::").map_or(name, |(_crate, rest)| rest);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(KILL_CHILD_ENV, &path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let id: AttemptId = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            let (_, id) = line.rsplit_once(KILL_CHILD_MARKER)?;
            Some(id.trim().parse().unwrap())
        })
        .expect("the child reports its attempt");
    child.kill().unwrap(); // SIGKILL: no destructors, no clean close
    let status = child.wait().unwrap();
    assert!(!status.success());

    let ledger = SqliteLedger::open(&path).unwrap();
    let unfinished = ledger.unfinished_attempts().unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].id, id);
    assert_eq!(unfinished[0].start, start("production", "gw", NOW));
}

#[test]
fn two_ledgers_on_one_file_writing_from_two_threads_lose_no_attempt() {
    const PER_WRITER: usize = 100;
    let (_dir, path, first) = fresh();
    let second = SqliteLedger::open(&path).unwrap();
    let barrier = Barrier::new(2);
    let ids: Vec<AttemptId> = std::thread::scope(|scope| {
        let writers: Vec<_> = [(&first, "gw-1"), (&second, "gw-2")]
            .into_iter()
            .map(|(ledger, gw)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let mut ids = Vec::new();
                    for n in 0..PER_WRITER {
                        let at = NOW + n as Millis;
                        let id = ledger.start_attempt(&start("production", gw, at)).unwrap();
                        ledger
                            .finish_attempt(id, at + 1, Outcome::Applied, None)
                            .unwrap();
                        ids.push(id);
                    }
                    ids
                })
            })
            .collect();
        writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });

    let distinct: BTreeSet<AttemptId> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), 2 * PER_WRITER, "no id handed out twice");
    let recorded: BTreeSet<AttemptId> = first
        .history("production", None, usize::MAX)
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(recorded, distinct, "every attempt recorded, none invented");
    assert!(second.unfinished_attempts().unwrap().is_empty());
    assert_eq!(
        second
            .history("production", Some("gw-2"), usize::MAX)
            .unwrap()
            .len(),
        PER_WRITER
    );
}

#[test]
fn prune_keeps_production_attempts_a_year_and_others_ninety_days_and_never_unfinished_ones() {
    let (_dir, path, ledger) = fresh();
    let finished = |environment: &str, age_days: Millis| {
        let at = NOW - age_days * DAY;
        let id = ledger.start_attempt(&start(environment, "gw", at)).unwrap();
        ledger
            .finish_attempt(id, at, Outcome::Applied, None)
            .unwrap();
        id
    };
    let prod_old = finished("production", 366);
    let prod_kept = finished("production", 364);
    let stage_old = finished("staging", 91);
    let stage_kept = finished("staging", 89);
    let prod_stuck = ledger
        .start_attempt(&start("production", "gw", NOW - 1000 * DAY))
        .unwrap();
    let stage_stuck = ledger
        .start_attempt(&start("staging", "gw", NOW - 1000 * DAY))
        .unwrap();
    ledger
        .upsert_gateway(&GatewayRecord {
            updated_at: NOW - 1000 * DAY,
            ..gateway("staging", "gw", GatewayState::InSync)
        })
        .unwrap();

    assert_eq!(ledger.prune(NOW, &production_or_not).unwrap(), 2);

    let ids = |environment: &str| -> BTreeSet<AttemptId> {
        ledger
            .history(environment, None, usize::MAX)
            .unwrap()
            .iter()
            .map(|a| a.id)
            .collect()
    };
    assert_eq!(ids("production"), BTreeSet::from([prod_kept, prod_stuck]));
    assert_eq!(ids("staging"), BTreeSet::from([stage_kept, stage_stuck]));
    assert!(!ids("production").contains(&prod_old) && !ids("staging").contains(&stage_old));
    assert_eq!(ledger.unfinished_attempts().unwrap().len(), 2);
    assert_eq!(count_rows(&path, "gateways"), 1);
    // Pruning again at the same time finds nothing more.
    assert_eq!(ledger.prune(NOW, &production_or_not).unwrap(), 0);
}

#[test]
fn prune_honours_a_configured_retention_per_environment() {
    let (_dir, _path, ledger) = fresh();
    for (environment, age) in [("eval", 8), ("eval", 6), ("production", 8)] {
        let at = NOW - age * DAY;
        let id = ledger.start_attempt(&start(environment, "gw", at)).unwrap();
        ledger
            .finish_attempt(id, at, Outcome::Unchanged, None)
            .unwrap();
    }
    let week_for_eval = |environment: &str| match environment {
        "eval" => Duration::from_secs(7 * 86_400),
        _ => Duration::MAX,
    };
    assert_eq!(ledger.prune(NOW, &week_for_eval).unwrap(), 1);
    assert_eq!(ledger.history("eval", None, 10).unwrap().len(), 1);
    assert_eq!(ledger.history("production", None, 10).unwrap().len(), 1);
}

#[test]
fn prune_drops_revisions_past_the_longest_retention_unless_an_attempt_or_gateway_names_them() {
    let (_dir, path, ledger) = fresh();
    ledger
        .record_revision(&revision("ancient", NOW - 400 * DAY, true))
        .unwrap();
    ledger
        .record_revision(&revision("desired", NOW - 399 * DAY, true))
        .unwrap();
    ledger
        .record_revision(&revision("attempted", NOW - 398 * DAY, true))
        .unwrap();
    ledger
        .record_revision(&revision("half-year", NOW - 200 * DAY, true))
        .unwrap();
    ledger
        .record_revision(&revision("current", NOW - DAY, true))
        .unwrap();
    ledger
        .upsert_gateway(&GatewayRecord {
            desired_revision: Some("desired".to_string()),
            ..gateway("staging", "gw", GatewayState::InSync)
        })
        .unwrap();
    let id = ledger
        .start_attempt(&AttemptStart {
            revision: "attempted".to_string(),
            ..start("production", "gw", NOW - 10 * DAY)
        })
        .unwrap();
    ledger
        .finish_attempt(id, NOW - 10 * DAY, Outcome::Applied, None)
        .unwrap();

    // Production's 365 days is the longest retention known, so "half-year"
    // stays although staging's 90 days alone would drop it.
    assert_eq!(ledger.prune(NOW, &production_or_not).unwrap(), 1);
    assert_eq!(
        commits(&path),
        ["attempted", "current", "desired", "half-year"]
    );
}

#[test]
fn prune_never_drops_the_newest_revision_however_old() {
    let (_dir, path, ledger) = fresh();
    ledger
        .upsert_gateway(&gateway("staging", "gw", GatewayState::InSync))
        .unwrap();
    ledger
        .record_revision(&revision("old", NOW - 500 * DAY, true))
        .unwrap();
    ledger
        .record_revision(&revision("newest", NOW - 400 * DAY, false))
        .unwrap();
    // Inserted last but seen earlier, so not the newest.
    ledger
        .record_revision(&revision("late-insert", NOW - 450 * DAY, true))
        .unwrap();

    assert_eq!(ledger.prune(NOW, &production_or_not).unwrap(), 2);
    assert_eq!(commits(&path), ["newest"]);
    assert_eq!(ledger.last_revision().unwrap().unwrap().commit, "newest");
}

/// The commits left in the revisions table, sorted.
fn commits(path: &Path) -> Vec<String> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT commit_id FROM revisions ORDER BY commit_id")
        .unwrap();
    stmt.query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn prune_keeps_revisions_when_no_environment_is_known() {
    let (_dir, _path, ledger) = fresh();
    ledger
        .record_revision(&revision("ancient", NOW - 4000 * DAY, true))
        .unwrap();
    ledger
        .record_revision(&revision("old", NOW - 3000 * DAY, true))
        .unwrap();
    assert_eq!(ledger.prune(NOW, &production_or_not).unwrap(), 0);
}

#[test]
fn a_poisoned_lock_does_not_kill_the_ledger() {
    let (_dir, _path, ledger) = fresh();
    let _ = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let _guard = ledger.conn();
                panic!("poison the lock");
            })
            .join()
    });
    assert!(ledger.conn.is_poisoned());
    ledger.record_revision(&revision("aaa", NOW, true)).unwrap();
    assert!(ledger.last_revision().unwrap().is_some());
}

#[test]
fn a_batch_commits_starts_finishes_and_records_together() {
    let (_dir, path, ledger) = fresh();
    let earlier = ledger.start_attempt(&start("prod", "gw-0", NOW)).unwrap();
    let batch = WriteBatch {
        starts: vec![start("prod", "gw-1", NOW), start("prod", "gw-2", NOW)],
        finishes: vec![
            AttemptFinish {
                id: earlier,
                finished_at: NOW + 5,
                outcome: Outcome::Applied,
                error: None,
            },
            // Unknown: fails alone, the rest of the batch still lands.
            AttemptFinish {
                id: 9_999,
                finished_at: NOW + 5,
                outcome: Outcome::Failed,
                error: Some("boom".into()),
            },
        ],
        records: vec![gateway("prod", "gw-1", GatewayState::Applying)],
    };
    let result = ledger.write(&batch).unwrap();

    assert_eq!(result.started.len(), 2);
    assert!(
        result
            .started
            .iter()
            .all(|id| *id.as_ref().unwrap() > earlier)
    );
    assert!(result.finished[0].is_ok());
    assert!(matches!(
        result.finished[1],
        Err(LedgerError::NoSuchAttempt(9_999))
    ));
    assert_eq!(count_rows(&path, "attempts"), 3);
    let unfinished: BTreeSet<String> = ledger
        .unfinished_attempts()
        .unwrap()
        .into_iter()
        .map(|a| a.start.gateway)
        .collect();
    assert_eq!(unfinished, BTreeSet::from(["gw-1".into(), "gw-2".into()]));
    assert_eq!(ledger.gateways(Some("prod")).unwrap().len(), 1);
}

fn deployment(environment: &str, revision: &str, digest: &str, at: Millis) -> Deployment {
    Deployment {
        environment: environment.into(),
        revision: revision.into(),
        digest: digest.into(),
        packs: Vec::new(),
        verified_at: at,
    }
}

#[test]
fn a_deployment_is_recorded_once_per_change_of_version() {
    let (_dir, _path, ledger) = fresh();
    assert!(
        ledger
            .record_deployment(&deployment("prod", "r1", "sha256:a", NOW))
            .unwrap()
    );
    assert!(
        !ledger
            .record_deployment(&deployment("prod", "r2", "sha256:a", NOW + 1))
            .unwrap()
    );
    assert!(
        ledger
            .record_deployment(&deployment("prod", "r3", "sha256:b", NOW + 2))
            .unwrap()
    );
    // Back to an older version is a new deployment.
    assert!(
        ledger
            .record_deployment(&deployment("prod", "r4", "sha256:a", NOW + 3))
            .unwrap()
    );
    assert!(
        ledger
            .record_deployment(&deployment("dev", "r1", "sha256:a", NOW))
            .unwrap()
    );

    let revisions: Vec<String> = ledger
        .deployments("prod", 10)
        .unwrap()
        .into_iter()
        .map(|d| d.revision)
        .collect();
    assert_eq!(revisions, ["r4", "r3", "r1"]);
    assert_eq!(ledger.deployments("prod", 1).unwrap().len(), 1);
}

fn episode(gateway: &str, live: &str, at: Millis) -> DriftEpisode {
    DriftEpisode {
        environment: "prod".into(),
        gateway: gateway.into(),
        revision: "c0ffee".into(),
        desired_digest: "sha256:want".into(),
        live_digest: Some(live.into()),
        changes: Vec::new(),
        onset_at: at,
        resolved_at: None,
        resolution: None,
    }
}

#[test]
fn a_gateway_has_one_open_drift_episode_until_it_is_resolved() {
    let (_dir, _path, ledger) = fresh();
    assert!(
        ledger
            .open_drift(&episode("gw-1", "sha256:x", NOW))
            .unwrap()
    );
    assert!(
        !ledger
            .open_drift(&episode("gw-1", "sha256:y", NOW + 5))
            .unwrap()
    );
    let open = ledger.drift_episodes(Some("prod"), true, 10).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].onset_at, NOW, "the onset stays");
    assert_eq!(open[0].live_digest, Some("sha256:y".into()));

    let resolved = ledger
        .resolve_drift("prod", "gw-1", NOW + 9, Resolution::Healed)
        .unwrap()
        .expect("an open episode");
    assert_eq!(resolved.resolved_at, Some(NOW + 9));
    assert_eq!(resolved.resolution, Some(Resolution::Healed));
    assert!(
        ledger
            .resolve_drift("prod", "gw-1", NOW + 10, Resolution::Healed)
            .unwrap()
            .is_none()
    );
    assert!(ledger.drift_episodes(None, true, 10).unwrap().is_empty());

    assert!(
        ledger
            .open_drift(&episode("gw-1", "sha256:z", NOW + 20))
            .unwrap()
    );
    assert_eq!(
        ledger
            .drift_episodes(Some("prod"), false, 10)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn resolved_drift_and_superseded_deployments_age_out() {
    let (_dir, _path, ledger) = fresh();
    ledger
        .upsert_gateway(&gateway("prod", "gw-1", GatewayState::InSync))
        .unwrap();
    ledger
        .record_deployment(&deployment("prod", "r1", "sha256:a", NOW - 400 * DAY))
        .unwrap();
    ledger
        .record_deployment(&deployment("prod", "r2", "sha256:b", NOW - 399 * DAY))
        .unwrap();
    ledger
        .open_drift(&episode("gw-1", "sha256:x", NOW - 399 * DAY))
        .unwrap();
    ledger
        .resolve_drift("prod", "gw-1", NOW - 398 * DAY, Resolution::Healed)
        .unwrap();

    ledger.prune(NOW, &|_| default_retention(true)).unwrap();
    let left = ledger.deployments("prod", 10).unwrap();
    assert_eq!(left.len(), 1, "the newest deployment stays");
    assert_eq!(left[0].revision, "r2");
    assert!(ledger.drift_episodes(None, false, 10).unwrap().is_empty());
}

#[test]
fn the_sqlite_ledger_does_what_every_ledger_does() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::cell::Cell::new(0);
    crate::ledger::conformance::run_all(|| {
        counter.set(counter.get() + 1);
        SqliteLedger::open(&dir.path().join(format!("{}.db", counter.get()))).unwrap()
    });
}

/// Set in the child process of the full-disk test: the ledger path to write to.
const FULL_CHILD_ENV: &str = "SLUICE_LEDGER_TEST_FULL_CHILD";
/// What the child prints before each attempt id the ledger handed out.
const FULL_CHILD_ID: &str = "sluice-attempt-recorded:";
/// What the child prints for each write the ledger refused.
const FULL_CHILD_REFUSED: &str = "sluice-attempt-refused";

/// The child of the full-disk test: starts attempts one by one and in
/// batches until the file-size limit it runs under has refused many of them,
/// printing every id the ledger claimed to have written.
fn fill_the_ledger(path: &Path) {
    let ledger = SqliteLedger::open(path).unwrap();
    let mut refused = 0;
    for n in 0..100_000 {
        if refused >= 200 {
            break;
        }
        let at = NOW + n;
        // Long enough that a few hundred attempts outgrow the limit.
        let mut attempt = start(
            "production",
            &format!("gateway-{n:06}-{}", "x".repeat(200)),
            at,
        );
        attempt.digest = format!("sha256:{n:064}").into();
        let ids: Vec<Result<AttemptId, LedgerError>> = if n % 2 == 0 {
            vec![ledger.start_attempt(&attempt)]
        } else {
            let batch = WriteBatch {
                starts: vec![attempt.clone(), attempt],
                ..WriteBatch::default()
            };
            match ledger.write(&batch) {
                Ok(result) => result.started,
                Err(e) => vec![Err(e)],
            }
        };
        for id in ids {
            match id {
                Ok(id) => println!("{FULL_CHILD_ID}{id}"),
                Err(_) => {
                    refused += 1;
                    println!("{FULL_CHILD_REFUSED}");
                }
            }
        }
    }
}

/// A disk that fills up mid-rollout: every id the ledger hands out must be
/// an attempt that is really in the file, or an apply would go out under a
/// record that does not exist (issue 16: 198 applies under one id never
/// stored). The child runs with a file-size limit (`prlimit --fsize`, with
/// SIGXFSZ ignored, so writes past it fail as on a full disk).
#[test]
fn an_attempt_id_is_handed_out_only_for_a_start_that_is_in_the_file_when_writes_fail() {
    if let Ok(path) = std::env::var(FULL_CHILD_ENV) {
        fill_the_ledger(Path::new(&path));
        return;
    }
    let (_dir, path) = ledger_path();
    // Created and migrated before the limit, so only the attempts hit it.
    drop(SqliteLedger::open(&path).unwrap());
    let name = concat!(
        module_path!(),
        "::an_attempt_id_is_handed_out_only_for_a_start_that_is_in_the_file_when_writes_fail"
    );
    let name = name.split_once("::").map_or(name, |(_crate, rest)| rest);
    let exe = std::env::current_exe().unwrap();
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"trap '' XFSZ; exec prlimit --fsize=262144 -- "$@""#)
        .arg("bash")
        .arg(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(FULL_CHILD_ENV, &path)
        .stderr(std::process::Stdio::null())
        .output()
        .expect("prlimit (util-linux) runs the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let claimed: Vec<AttemptId> = stdout
        .lines()
        .filter_map(|line| line.rsplit_once(FULL_CHILD_ID))
        .map(|(_, id)| id.trim().parse().unwrap())
        .collect();
    let refused = stdout.matches(FULL_CHILD_REFUSED).count();
    assert!(
        refused > 0,
        "the file-size limit never refused a write: {}",
        output.status
    );
    assert!(
        !claimed.is_empty(),
        "no attempt was recorded before the limit"
    );

    let ledger = SqliteLedger::open(&path).unwrap();
    let recorded: BTreeSet<AttemptId> = ledger
        .unfinished_attempts()
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    let invented: Vec<AttemptId> = claimed
        .iter()
        .copied()
        .filter(|id| !recorded.contains(id))
        .collect();
    assert!(
        invented.is_empty(),
        "{} of {} ids handed out are not in the ledger (first: {:?}); {refused} refused",
        invented.len(),
        claimed.len(),
        &invented[..invented.len().min(5)]
    );
    let distinct: BTreeSet<AttemptId> = claimed.iter().copied().collect();
    assert_eq!(distinct.len(), claimed.len(), "an id was handed out twice");
}

/// Issue 16: a 0-byte state.db was silently taken as a new ledger (928
/// attempts lost without a word).
#[test]
fn an_empty_ledger_file_is_refused_unless_a_fresh_start_is_asked_for() {
    let (_dir, path) = ledger_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"").unwrap();
    for refused in [
        SqliteLedger::open(&path),
        SqliteLedger::open_read_only(&path),
    ] {
        let error = refused.unwrap_err().to_string();
        assert!(error.contains("empty (0 bytes)"), "{error}");
        assert!(error.contains("--fresh-ledger"), "{error}");
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was");
    let ledger = SqliteLedger::open_afresh(&path).unwrap();
    ledger
        .start_attempt(&start("production", "gw", NOW))
        .unwrap();
    drop(ledger);
    assert_eq!(
        SqliteLedger::open(&path)
            .unwrap()
            .unfinished_attempts()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_deployment_whose_packs_do_not_decode_is_an_error_not_a_version_without_packs() {
    let (_dir, path, ledger) = fresh();
    let mut kept = deployment("production", "c0ffee", "sha256:abc", 1);
    kept.packs = vec![DeployedPack {
        name: "audit".into(),
        version: "1.0.0".into(),
        digest: "sha256:p1".into(),
        source: "sha256:s1".into(),
    }];
    ledger.record_deployment(&kept).unwrap();
    assert_eq!(ledger.deployments("production", 1).unwrap(), vec![kept]);

    // A hand edit (or a torn disk) of the column.
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE deployments SET packs = '[{\"name\":'", [])
        .unwrap();
    let refused = ledger.deployments("production", 1).unwrap_err();
    let text = refused.to_string();
    assert!(
        text.contains("listing deployments") && text.contains("deployments row 1: column packs"),
        "{text}"
    );
}

#[test]
fn a_drift_episode_with_an_unknown_resolution_is_an_error_that_names_it() {
    let (_dir, path, ledger) = fresh();
    ledger
        .open_drift(&DriftEpisode {
            environment: "prod".into(),
            gateway: "gw-1".into(),
            revision: "r1".into(),
            desired_digest: "sha256:a".into(),
            live_digest: None,
            changes: Vec::new(),
            onset_at: NOW,
            resolved_at: None,
            resolution: None,
        })
        .unwrap();
    ledger
        .resolve_drift("prod", "gw-1", NOW + 1, Resolution::Superseded)
        .unwrap();
    let read = ledger.drift_episodes(Some("prod"), false, 1).unwrap();
    assert_eq!(read[0].resolution, Some(Resolution::Superseded));

    Connection::open(&path)
        .unwrap()
        .execute("UPDATE drift_episodes SET resolution = 'fixed-somehow'", [])
        .unwrap();
    let refused = ledger.drift_episodes(Some("prod"), false, 1).unwrap_err();
    assert!(
        refused.to_string().contains("\"fixed-somehow\""),
        "{refused}"
    );
}

#[test]
fn an_eval_run_whose_failures_do_not_decode_is_an_error_naming_the_row() {
    let (_dir, path, ledger) = fresh();
    let run = EvalRun {
        environment: "production".into(),
        suite: "pii".into(),
        revision: "c0ffee".into(),
        digest: "sha256:abc".into(),
        packs: Vec::new(),
        passed: 1,
        failed: 0,
        failures: Vec::new(),
        at: NOW,
    };
    ledger.record_eval_run(&run).unwrap();
    assert_eq!(ledger.eval_runs("production", None, 1).unwrap(), vec![run]);
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE eval_runs SET failures = 'nope'", [])
        .unwrap();
    let text = ledger
        .eval_runs("production", Some("pii"), 1)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("listing eval runs") && text.contains("eval_runs row 1: column failures"),
        "{text}"
    );
}

#[test]
fn a_new_ledger_has_the_pin_and_eval_run_tables() {
    let (_dir, path) = ledger_path();
    drop(SqliteLedger::open(&path).unwrap());
    assert_eq!(count_rows(&path, "pins"), 0);
    assert_eq!(count_rows(&path, "eval_runs"), 0);
    assert_eq!(LATEST, 4);
}

/// The findings of a revision read back as written, and a row whose
/// findings do not decode is an error naming it: never "no findings",
/// which the dashboard would show as a head with nothing wrong.
#[test]
fn a_revision_whose_findings_do_not_decode_is_an_error_naming_the_row() {
    let (_dir, path, ledger) = fresh();
    let invalid = revision("c0ffee", NOW, false);
    ledger.record_revision(&invalid).unwrap();
    assert_eq!(ledger.last_revision().unwrap(), Some(invalid));
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE revisions SET findings = '{\"code\": \"E1\"}'", [])
        .unwrap();
    let text = ledger.last_revision().unwrap_err().to_string();
    assert!(
        text.contains("revisions row c0ffee: column findings"),
        "{text}"
    );
}

/// A digest column holding what is not a digest (a corrupt or hand-edited
/// file) is an error naming the column: never a version nobody has, which
/// a promotion gate would read as "upstream never ran it".
#[test]
fn a_deployment_whose_digest_does_not_decode_is_an_error_naming_the_column() {
    let (_dir, path, ledger) = fresh();
    ledger
        .record_deployment(&deployment("prod", "r1", "sha256:a", NOW))
        .unwrap();
    Connection::open(&path)
        .unwrap()
        .execute("UPDATE deployments SET digest = 'sha256:not-hex'", [])
        .unwrap();
    let text = ledger.deployments("prod", 1).unwrap_err().to_string();
    assert!(
        text.contains("digest") && text.contains("`sha256:not-hex` is not a digest"),
        "{text}"
    );
}
