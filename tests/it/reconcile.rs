//! `sluice sync`, `status` and `history` against real git repositories,
//! real file gateways and a real SQLite ledger.

use crate::support::TestRepo;
use std::{fs, path::Path};

/// Runs a subcommand against `repo` with its state in `data`.
pub fn with_state(repo: &TestRepo, data: &Path, args: &[&str]) -> crate::support::Run {
    let mut all = args.to_vec();
    all.extend(["--data-dir", data.to_str().unwrap()]);
    repo.sluice(&all)
}

fn gateway_file(data: &Path, env: &str, gateway: &str) -> String {
    fs::read_to_string(data.join(format!("gateways/{env}/{gateway}.json"))).unwrap()
}

#[test]
fn sync_converges_then_changes_nothing() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let first = with_state(&repo, data.path(), &["sync", "-o", "json"]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let pass = first.json();
    assert_eq!(pass["result"], "reconciled");
    let applied: usize = pass["environments"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["gateways"].as_array().unwrap())
        .filter(|g| g["applied"] == true)
        .count();
    assert_eq!(applied, 5);

    // What the gateways hold is exactly the rendered document.
    let render = repo.sluice(&[
        "render",
        "production",
        "--gateway",
        "prod-eu-1",
        "--rev",
        "HEAD",
        "-o",
        "json",
    ]);
    let digest = render.json()[0]["digest"].as_str().unwrap().to_owned();
    let body = gateway_file(data.path(), "production", "prod-eu-1");
    assert_eq!(
        sluice::config::Digest::of_json(&body).unwrap().as_str(),
        digest
    );

    let second = with_state(&repo, data.path(), &["sync", "-o", "json"]);
    assert_eq!(second.code, 0);
    assert!(second.stdout.contains("\"applied\": false"));
    assert!(!second.stdout.contains("\"applied\": true"));

    let status = with_state(&repo, data.path(), &["status", "-o", "json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let view = status.json();
    let states: Vec<&str> = view["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["in-sync"; 5]);

    let history = with_state(&repo, data.path(), &["history", "production", "-o", "json"]);
    let attempts = history.json();
    let attempts = attempts.as_array().unwrap();
    // One apply per production gateway: the second pass recorded no attempt.
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts
            .iter()
            .all(|a| a["outcome"] == "applied" && a["trigger"] == "manual")
    );
}

#[test]
fn an_invalid_commit_is_never_applied_and_the_next_valid_one_is() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    assert_eq!(with_state(&repo, data.path(), &["sync"]).code, 0);
    let before = gateway_file(data.path(), "production", "prod-eu-1");

    // Invalid: a typo in production's overlay.
    let overlay = repo.read("environments/production/packs/baseline.yaml");
    repo.write(
        "environments/production/packs/baseline.yaml",
        overlay.replace("action: block\n    pci_mode", "action: blok\n    pci_mode"),
    );
    repo.commit("typo");
    let run = with_state(&repo, data.path(), &["sync"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("is invalid"), "{}", run.stdout);
    assert!(run.stderr.contains("schema.enum"), "{}", run.stderr);
    assert_eq!(gateway_file(data.path(), "production", "prod-eu-1"), before);
    let status = with_state(&repo, data.path(), &["status"]);
    assert_eq!(status.code, 1);
    assert!(
        status.stdout.contains("INVALID (1 error)"),
        "{}",
        status.stdout
    );
    let typo = repo
        .git(&["rev-parse", "--short=8", "HEAD"])
        .trim()
        .to_owned();
    assert!(
        status
            .stdout
            .contains(&format!("see `sluice validate --rev {typo}`")),
        "the next step is named: {}",
        status.stdout
    );

    // The fix applies, raising retention in production only.
    repo.write(
        "environments/production/packs/baseline.yaml",
        overlay.replace("retention_days: 365", "retention_days: 400"),
    );
    repo.commit("fix");
    let run = with_state(&repo, data.path(), &["sync", "-o", "json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let after = gateway_file(data.path(), "production", "prod-eu-1");
    assert!(after.contains("\"retention_days\":400"));
    assert_eq!(with_state(&repo, data.path(), &["status"]).code, 0);
}

#[test]
fn a_hand_edited_file_gateway_is_put_back() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    assert_eq!(with_state(&repo, data.path(), &["sync"]).code, 0);
    let path = data.path().join("gateways/staging/staging-1.json");
    let good = fs::read_to_string(&path).unwrap();
    fs::write(&path, good.replace("\"redact\"", "\"block\"")).unwrap();
    let run = with_state(
        &repo,
        data.path(),
        &["sync", "--env", "staging", "-o", "json"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(fs::read_to_string(&path).unwrap(), good);
    let history = with_state(&repo, data.path(), &["history", "staging", "-o", "json"]);
    assert_eq!(history.json().as_array().unwrap().len(), 2);
}

#[test]
fn status_without_a_ledger_says_so() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let run = with_state(&repo, data.path(), &["status"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("state.db"), "{}", run.stderr);
}

#[test]
fn sync_follows_a_remote_served_over_loopback() {
    let origin = TestRepo::example();
    let server = crate::support::GitDaemon::serve(origin.path());
    let data = tempfile::tempdir().unwrap();
    let url = server.url();
    let sync = || {
        crate::support::sluice(&[
            "sync",
            "--repo",
            &url,
            "--data-dir",
            data.path().to_str().unwrap(),
            "-o",
            "json",
        ])
    };
    let run = sync();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let head = origin.git(&["rev-parse", "HEAD"]).trim().to_owned();
    assert_eq!(run.json()["revision"], head.as_str());

    let text = origin.read("base/packs/models.yaml");
    origin.write("base/packs/models.yaml", text.replace("600", "900"));
    let next = origin.commit("rate");
    let run = sync();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.json()["revision"], next.as_str());
    assert!(gateway_file(data.path(), "eval", "eval-1").contains("\"requests_per_minute\":900"));
}

#[test]
fn a_removed_gateway_leaves_the_status() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    assert_eq!(with_state(&repo, data.path(), &["sync"]).code, 0);
    let gateways = repo.read("environments/production/gateways.yaml");
    let cut = gateways.find("  - name: prod-us-1").unwrap();
    repo.write("environments/production/gateways.yaml", &gateways[..cut]);
    repo.commit("retire prod-us-1");
    assert_eq!(with_state(&repo, data.path(), &["sync"]).code, 0);
    let status = with_state(&repo, data.path(), &["status", "-o", "json"]);
    let names: Vec<String> = status.json()["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["gateway"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["dev-1", "eval-1", "prod-eu-1", "staging-1"]);
}

#[test]
fn an_absolute_file_gateway_path_needs_an_operator_allowed_root() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("edge/policy.json");
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    repo.write(
        "environments/eval/gateways.yaml",
        format!(
            "gateways:\n  - name: eval-1\n    driver: file\n    path: {}\n",
            target.display()
        ),
    );
    repo.commit("an absolute gateway path");

    let refused = with_state(&repo, data.path(), &["sync", "--env", "eval", "-o", "json"]);
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stdout.contains("--file-root"), "{}", refused.stdout);
    assert!(
        !target.exists(),
        "nothing is written outside an allowed root"
    );

    let root = outside.path().to_str().unwrap();
    let allowed = with_state(
        &repo,
        data.path(),
        &["sync", "--env", "eval", "--file-root", root, "-o", "json"],
    );
    assert_eq!(allowed.code, 0, "{}{}", allowed.stdout, allowed.stderr);
    let body = fs::read_to_string(&target).unwrap();
    assert!(body.contains("requests_per_minute"), "{body}");
}

/// Issue 16: the lock was keyed on the path, so the same state.db reached
/// through a symlink got a lock of its own and a `sync` ran beside a live
/// `run`; an empty state.db was taken as a new ledger.
#[test]
fn one_ledger_is_one_lock_whatever_the_path_and_an_empty_one_is_refused() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let first = with_state(&repo, data.path(), &["sync"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let run = crate::support::GatewayProcess::spawn(
        &[
            "run",
            "--repo",
            repo.path().to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "1h",
        ],
        &[],
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let link = elsewhere.path().join("linked.db");
    std::os::unix::fs::symlink(data.path().join("state.db"), &link).unwrap();
    let second = repo.sluice(&[
        "sync",
        "--data-dir",
        elsewhere.path().to_str().unwrap(),
        "--state",
        link.to_str().unwrap(),
    ]);
    assert_eq!(second.code, 2, "{}{}", second.stdout, second.stderr);
    assert!(
        second
            .stderr
            .contains("another `sluice run` or `sluice sync`"),
        "{}",
        second.stderr
    );
    drop(run);

    let empty = tempfile::tempdir().unwrap();
    fs::write(empty.path().join("state.db"), b"").unwrap();
    let refused = with_state(&repo, empty.path(), &["sync"]);
    assert_eq!(refused.code, 2, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("empty (0 bytes)"),
        "{}",
        refused.stderr
    );
    let fresh = with_state(&repo, empty.path(), &["sync", "--fresh-ledger"]);
    assert_eq!(fresh.code, 0, "{}{}", fresh.stdout, fresh.stderr);
}
