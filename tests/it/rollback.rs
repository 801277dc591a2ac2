//! `sluice rollback` against real repositories, a real ledger written by
//! `sluice sync`, and file gateways.

use crate::{reconcile::with_state, support::TestRepo};
use std::{collections::BTreeMap, fs, path::Path};

/// Every environment's digest at `rev`.
fn digests(repo: &TestRepo, rev: &str) -> BTreeMap<String, String> {
    let run = repo.sluice(&["render", "--rev", rev, "-o", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["environment"].as_str().unwrap().to_owned(),
                g["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn sync(repo: &TestRepo, data: &Path) {
    let run = with_state(repo, data, &["sync"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

fn head(repo: &TestRepo) -> String {
    repo.git(&["rev-parse", "HEAD"]).trim().to_owned()
}

/// A change to a shared pack (reaching every environment) and to
/// production's own overlay, committed and synced.
fn change_base_and_production(repo: &TestRepo, data: &Path) -> String {
    let base = repo.read("base/packs/baseline.yaml");
    repo.write(
        "base/packs/baseline.yaml",
        base.replace("retention_days: 30", "retention_days: 60")
            .replace("threshold: 0.8", "threshold: 0.7")
            .replace("    immutable: true\n", ""),
    );
    let overlay = repo.read("environments/production/packs/baseline.yaml");
    repo.write(
        "environments/production/packs/baseline.yaml",
        overlay.replace("retention_days: 365", "retention_days: 400"),
    );
    let commit = repo.commit("baseline 1.5: longer retention; production keeps 400 days");
    sync(repo, data);
    commit
}

fn gateway_digest(data: &Path, env: &str, gateway: &str) -> String {
    let body = fs::read_to_string(data.join(format!("gateways/{env}/{gateway}.json"))).unwrap();
    sluice::config::Digest::of_json(&body).unwrap().to_string()
}

#[test]
fn rollback_restores_one_environment_and_sync_applies_it() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    sync(&repo, data.path());
    let v1 = digests(&repo, "HEAD");
    let first = head(&repo);
    let second = change_base_and_production(&repo, data.path());
    let v2 = digests(&repo, "HEAD");
    for env in ["development", "staging", "production", "eval"] {
        assert_ne!(v1[env], v2[env], "the base change reaches {env}");
    }
    // A configured remote (never pushed to here): the next step names it.
    let remote = tempfile::tempdir().unwrap();
    repo.git(&["remote", "add", "origin", remote.path().to_str().unwrap()]);
    let status_before = repo.git(&["status", "--porcelain"]);

    let run = with_state(
        &repo,
        data.path(),
        &["rollback", "production", "-o", "json"],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let report = run.json();
    let branch = report["branch"].as_str().unwrap().to_owned();
    assert_eq!(
        branch,
        format!("rollback/production-{}", &v1["production"][7..19])
    );
    assert_eq!(report["from"]["digest"], v2["production"].as_str());
    assert_eq!(report["from"]["revision"], second.as_str());
    assert_eq!(report["to"]["digest"], v1["production"].as_str());
    assert_eq!(report["to"]["revision"], first.as_str());
    assert_eq!(report["created"], true);
    assert_eq!(report["pushed"], false);
    assert_eq!(
        report["materialised"][0]["file"],
        "environments/production/packs/baseline.yaml"
    );
    assert!(
        report["next"]
            .as_str()
            .unwrap()
            .starts_with(&format!("git push origin {branch}")),
        "{report}"
    );

    // One new commit on top of main's head.
    let commit = report["commit"].as_str().unwrap();
    assert_eq!(repo.git(&["rev-parse", &branch]).trim(), commit);
    assert_eq!(
        repo.git(&["rev-parse", &format!("{branch}^")]).trim(),
        second
    );
    assert_eq!(
        repo.git(&["rev-list", "--count", &format!("main..{branch}")])
            .trim(),
        "1"
    );
    let message = repo.git(&["log", "-1", "--format=%B", &branch]);
    assert!(
        message.starts_with(&format!(
            "Roll back production to {}@{} (from {}@{})",
            &v1["production"][..19],
            &first[..8],
            &v2["production"][..19],
            &second[..8]
        )),
        "{message}"
    );
    assert!(
        message.contains("Sluice-Rollback: production\n"),
        "{message}"
    );
    assert!(
        message.contains(&format!("Sluice-To: {} {first}", v1["production"])),
        "{message}"
    );
    let changed = repo.git(&["diff", "--name-only", "main", &branch]);
    assert_eq!(
        changed.trim(),
        "environments/production/packs/baseline.yaml",
        "only production's directory changes"
    );

    // Production renders v1; every other environment what main renders.
    let rolled = digests(&repo, &branch);
    assert_eq!(rolled["production"], v1["production"]);
    for env in ["development", "staging", "eval"] {
        assert_eq!(rolled[env], v2[env], "{env} is untouched");
    }

    // The user's checkout did not move.
    assert_eq!(head(&repo), second);
    assert_eq!(repo.git(&["branch", "--show-current"]).trim(), "main");
    assert_eq!(repo.git(&["status", "--porcelain"]), status_before);

    // Merged, it is what sync applies.
    repo.git(&["merge", "--ff-only", "-q", &branch]);
    sync(&repo, data.path());
    for gateway in ["prod-eu-1", "prod-us-1"] {
        assert_eq!(
            gateway_digest(data.path(), "production", gateway),
            v1["production"]
        );
    }
    assert_eq!(
        gateway_digest(data.path(), "staging", "staging-1"),
        v2["staging"]
    );
}

#[test]
fn steps_and_to_choose_older_versions_and_a_branch_is_never_overwritten() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    sync(&repo, data.path());
    let first = head(&repo);
    let v1 = digests(&repo, "HEAD")["production"].clone();
    let second = change_base_and_production(&repo, data.path());
    repo.git(&["tag", "v2", &second]);
    let v2 = digests(&repo, "HEAD")["production"].clone();
    let overlay = repo.read("environments/production/packs/baseline.yaml");
    repo.write(
        "environments/production/packs/baseline.yaml",
        overlay.replace("retention_days: 400", "retention_days: 500"),
    );
    repo.commit("production: 500 days");
    sync(&repo, data.path());

    let two_back = with_state(
        &repo,
        data.path(),
        &["rollback", "production", "--steps", "2", "-o", "json"],
    );
    assert_eq!(two_back.code, 0, "{}", two_back.stderr);
    let two_back = two_back.json();
    assert_eq!(two_back["to"]["digest"], v1.as_str());
    let branch = two_back["branch"].as_str().unwrap();
    assert_eq!(digests(&repo, branch)["production"], v1);

    // The same rollback again finds its branch holding the same tree.
    let by_revision = with_state(
        &repo,
        data.path(),
        &["rollback", "production", "--to", &first[..8], "-o", "json"],
    );
    assert_eq!(by_revision.code, 0, "{}", by_revision.stderr);
    let by_revision = by_revision.json();
    assert_eq!(by_revision["branch"], branch);
    assert_eq!(by_revision["created"], false);
    assert_eq!(by_revision["commit"], two_back["commit"]);

    // A tag works as a revision.
    let by_tag = with_state(
        &repo,
        data.path(),
        &[
            "rollback",
            "production",
            "--to",
            "v2",
            "--branch",
            "revert-to-v2",
            "-m",
            "Put production back on baseline 1.5",
            "-o",
            "json",
        ],
    );
    assert_eq!(by_tag.code, 0, "{}", by_tag.stderr);
    assert_eq!(by_tag.json()["to"]["digest"], v2.as_str());
    assert_eq!(digests(&repo, "revert-to-v2")["production"], v2);
    let message = repo.git(&["log", "-1", "--format=%B", "revert-to-v2"]);
    assert!(
        message.starts_with("Put production back on baseline 1.5\n\n"),
        "{message}"
    );
    assert!(message.contains("Sluice-Rollback: production"), "{message}");

    // A revision production never ran whole.
    let unknown = with_state(
        &repo,
        data.path(),
        &["rollback", "production", "--to", "deadbeef"],
    );
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("never ran"), "{}", unknown.stderr);
    assert!(unknown.stderr.contains(&first[..8]), "{}", unknown.stderr);

    // A branch with other content is refused, and left where it was.
    repo.git(&["branch", "taken", "main"]);
    let taken = with_state(
        &repo,
        data.path(),
        &["rollback", "production", "--branch", "taken"],
    );
    assert_eq!(taken.code, 2, "{}", taken.stdout);
    assert!(taken.stderr.contains("exists already"), "{}", taken.stderr);
    assert_eq!(
        repo.git(&["rev-parse", "taken"]),
        repo.git(&["rev-parse", "main"])
    );
}

#[test]
fn without_an_older_version_there_is_nothing_to_roll_back() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let no_ledger = with_state(&repo, data.path(), &["rollback", "production"]);
    assert_eq!(no_ledger.code, 2);
    assert!(
        no_ledger.stderr.contains("state.db"),
        "{}",
        no_ledger.stderr
    );

    sync(&repo, data.path());
    let run = with_state(&repo, data.path(), &["rollback", "production"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stderr.contains("no older version"), "{}", run.stderr);
    let never = with_state(&repo, data.path(), &["rollback", "nowhere"]);
    assert_eq!(never.code, 2);
    assert!(
        never
            .stderr
            .contains("no environment `nowhere` in the ledger"),
        "{}",
        never.stderr
    );
    assert_eq!(repo.git(&["branch", "--list", "rollback/*"]), "");
}

#[test]
fn push_sends_the_branch_to_a_bare_remote() {
    let repo = TestRepo::example();
    let remote = tempfile::tempdir().unwrap();
    let bare = remote.path().join("policy.git");
    let init = std::process::Command::new("git")
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(&bare)
        .status()
        .unwrap();
    assert!(init.success());
    repo.git(&["remote", "add", "origin", bare.to_str().unwrap()]);
    repo.git(&["push", "-q", "origin", "main"]);
    let data = tempfile::tempdir().unwrap();
    sync(&repo, data.path());
    change_base_and_production(&repo, data.path());

    let run = with_state(
        &repo,
        data.path(),
        &["rollback", "production", "--push", "-o", "json"],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["pushed"], true);
    let branch = report["branch"].as_str().unwrap();
    let pushed = std::process::Command::new("git")
        .args(["--git-dir", bare.to_str().unwrap(), "rev-parse"])
        .arg(format!("refs/heads/{branch}"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&pushed.stdout).trim(),
        report["commit"].as_str().unwrap()
    );
    assert!(
        report["next"].as_str().unwrap().contains("pull request"),
        "{report}"
    );
}

#[test]
fn a_changed_default_is_pinned_in_the_environment() {
    let repo = TestRepo::example();
    let spec = repo.read("environments/staging/environment.yaml");
    repo.write(
        "environments/staging/environment.yaml",
        spec.replace("enforcement: enforce\n", ""),
    );
    repo.commit("staging follows the repository default");
    let data = tempfile::tempdir().unwrap();
    sync(&repo, data.path());
    let v1 = digests(&repo, "HEAD");
    let manifest = repo.read("sluice.yaml");
    repo.write(
        "sluice.yaml",
        manifest.replace("  enforcement: enforce", "  enforcement: alert"),
    );
    repo.commit("default: alert");
    sync(&repo, data.path());
    let v2 = digests(&repo, "HEAD");
    assert_ne!(v1["staging"], v2["staging"]);

    let run = with_state(&repo, data.path(), &["rollback", "staging", "-o", "json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["pinned"], "enforce");
    let branch = report["branch"].as_str().unwrap();
    let rolled = digests(&repo, branch);
    assert_eq!(rolled["staging"], v1["staging"]);
    assert_eq!(rolled["production"], v2["production"]);
    let spec = repo.git(&[
        "show",
        &format!("{branch}:environments/staging/environment.yaml"),
    ]);
    assert!(spec.ends_with("enforcement: enforce\n"), "{spec}");
}

#[test]
fn a_base_pack_added_since_cannot_be_rolled_back_around() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    sync(&repo, data.path());
    repo.write(
        "base/packs/limits.yaml",
        "pack: { name: limits, version: 1.0.0 }\npolicies: { chain: [rate-limit] }\npolicy: { rate-limit: { requests_per_minute: 100 } }\n",
    );
    repo.commit("a new shared pack");
    sync(&repo, data.path());
    let run = with_state(&repo, data.path(), &["rollback", "production"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("limits"), "{}", run.stderr);
    assert_eq!(repo.git(&["branch", "--list", "rollback/*"]), "");
}
