//! `sluice promote` against real repositories: the branch it makes, the
//! trailers the gates read back, and its refusals.

use crate::support::TestRepo;
use sluice::promote::trailer;
use std::collections::BTreeMap;

/// An overlay on base/packs/models.yaml, and a whole pack of staging's own.
const MODELS: &str = "# staging's models\npack:\n  version: 2.2.0\npolicy:\n  model-allowlist:\n    models: [gpt-4o, claude-sonnet-4]\n";
const SUPPORT: &str = "pack: { name: support, version: 2.4.0, description: Support baseline }\npolicies:\n  chain: [audit-logger, pii-detector]\npolicy:\n  audit-logger: { retention_days: 90 }\n  pii-detector: { action: redact }\n";

/// The example with two pack files in staging, committed.
fn staged() -> TestRepo {
    let repo = TestRepo::example();
    repo.write("environments/staging/packs/models.yaml", MODELS);
    repo.write("environments/staging/packs/support.yaml", SUPPORT);
    repo.commit("staging: models 2.2.0, support 2.4.0");
    repo
}

/// An environment's pack digests at `rev`, by pack name: `(version, digest)`.
fn packs(repo: &TestRepo, env: &str, rev: &str) -> BTreeMap<String, (String, String)> {
    let run = repo.sluice(&["render", env, "--rev", rev, "-o", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let gateways = run.json();
    gateways[0]["packs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                (
                    p["version"].as_str().unwrap().to_owned(),
                    p["digest"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

fn digest(repo: &TestRepo, env: &str, rev: &str) -> String {
    let run = repo.sluice(&["render", env, "--rev", rev, "-o", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json()[0]["digest"].as_str().unwrap().to_owned()
}

fn head(repo: &TestRepo) -> String {
    repo.git(&["rev-parse", "HEAD"]).trim().to_owned()
}

fn promote_branches(repo: &TestRepo) -> String {
    repo.git(&["branch", "--list", "promote/*"])
}

#[test]
fn promote_copies_the_pack_files_and_nothing_else() {
    let repo = staged();
    let main = head(&repo);
    let status_before = repo.git(&["status", "--porcelain"]);

    let run = repo.sluice(&["promote", "staging", "production", "-o", "json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let report = run.json();
    let branch = report["branch"].as_str().unwrap().to_owned();
    let promoted = digest(&repo, "production", &branch);
    assert_eq!(
        branch,
        format!("promote/staging-to-production-{}", &promoted[7..19])
    );
    assert_eq!(report["digest"], promoted.as_str());
    assert_eq!(report["created"], true);
    assert_eq!(report["parent"], main.as_str());
    assert_eq!(report["kept"][0]["name"], "baseline");
    assert_eq!(report["packs"][0]["previous"]["version"], "2.1.0");
    assert_eq!(report["packs"][1]["previous"], serde_json::Value::Null);
    // NB: the test repository has no remote: the next step says so
    // rather than naming a push that would fail.
    assert_eq!(
        report["next"],
        format!(
            "this repository has no remote `origin`: git remote add origin URL, then git push origin {branch} and open a pull request into main"
        ),
        "{report}"
    );

    // Exactly the promoted files differ, copied byte for byte; the
    // environment's own files are untouched.
    let changed = repo.git(&["diff", "--name-only", "main", &branch]);
    assert_eq!(
        changed,
        "environments/production/packs/models.yaml\nenvironments/production/packs/support.yaml\n"
    );
    for (file, content) in [("models.yaml", MODELS), ("support.yaml", SUPPORT)] {
        let copied = repo.git(&[
            "show",
            &format!("{branch}:environments/production/packs/{file}"),
        ]);
        assert_eq!(copied, content, "{file}");
    }
    assert_eq!(
        repo.git(&["rev-list", "--count", &format!("main..{branch}")])
            .trim(),
        "1"
    );
    assert_eq!(repo.git(&["rev-parse", &format!("{branch}^")]).trim(), main);

    // The message says what moved, and its trailers parse back with the
    // digests staging runs.
    let message = repo.git(&["log", "-1", "--format=%B", &branch]);
    assert!(
        message.starts_with("Promote models 2.2.0, support 2.4.0 from staging to production\n\n"),
        "{message}"
    );
    let staging = packs(&repo, "staging", "main");
    assert!(
        message.contains(&format!(
            "Promote support 2.4.0 {}… from staging@{}\n",
            &staging["support"].1[..19],
            &main[..8]
        )),
        "{message}"
    );
    let promotion = trailer::parse(&message).expect("the trailers parse");
    assert_eq!(promotion.from, "staging");
    assert_eq!(promotion.to, "production");
    assert_eq!(promotion.forced, None);
    let names: Vec<&str> = promotion.packs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["models", "support"]);
    let production = packs(&repo, "production", &branch);
    for pack in &promotion.packs {
        assert_eq!(pack.source_env, "staging");
        assert_eq!(pack.source_revision, main);
        assert_eq!(pack.version, staging[&pack.name].0);
        assert_eq!(pack.digest.as_str(), staging[&pack.name].1, "{}", pack.name);
        assert_eq!(production[&pack.name], staging[&pack.name], "{}", pack.name);
    }
    assert_ne!(
        production["baseline"], staging["baseline"],
        "kept as it was"
    );
    for env in ["development", "staging", "eval"] {
        assert_eq!(digest(&repo, env, &branch), digest(&repo, env, "main"));
    }

    // The user's checkout did not move.
    assert_eq!(head(&repo), main);
    assert_eq!(repo.git(&["branch", "--show-current"]).trim(), "main");
    assert_eq!(repo.git(&["status", "--porcelain"]), status_before);

    // Again: the branch is found holding the same tree.
    let again = repo.sluice(&["promote", "staging", "production", "-o", "json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.json()["branch"], branch.as_str());
    assert_eq!(again.json()["created"], false);

    // Merged, there is nothing left to promote.
    repo.git(&["merge", "--ff-only", "-q", &branch]);
    let done = repo.sluice(&["promote", "staging", "production"]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    assert!(
        done.stdout
            .starts_with("nothing to promote from staging to production"),
        "{}",
        done.stdout
    );
    assert_eq!(repo.git(&["rev-list", "--count", "--all"]).trim(), "3");
}

#[test]
fn packs_restricts_what_is_promoted() {
    let repo = staged();
    let run = repo.sluice(&[
        "promote",
        "staging",
        "production",
        "--packs",
        "support",
        "--branch",
        "support-only",
        "-m",
        "Support 2.4.0 to production",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("support (new) -> 2.4.0"),
        "{}",
        run.stdout
    );
    assert_eq!(
        repo.git(&["diff", "--name-only", "main", "support-only"]),
        "environments/production/packs/support.yaml\n"
    );
    let message = repo.git(&["log", "-1", "--format=%B", "support-only"]);
    assert!(
        message.starts_with("Support 2.4.0 to production\n\nPromote support 2.4.0 "),
        "{message}"
    );
    let promotion = trailer::parse(&message).unwrap();
    assert_eq!(promotion.packs.len(), 1);
    assert_eq!(promotion.packs[0].name, "support");

    // A name that is not one of staging's pack files is a usage error,
    // and a base pack is said to need no promotion.
    let unknown = repo.sluice(&[
        "promote",
        "staging",
        "production",
        "--packs",
        "suport,baseline",
    ]);
    assert_eq!(unknown.code, 2, "{}", unknown.stdout);
    assert!(
        unknown.stderr.contains("no pack file `suport`"),
        "{}",
        unknown.stderr
    );
    assert!(
        unknown.stderr.contains("models, support"),
        "{}",
        unknown.stderr
    );
    assert!(
        unknown.stderr.contains("`baseline` is inherited"),
        "{}",
        unknown.stderr
    );

    // Once production holds a file byte for byte, it is not a change.
    repo.git(&["merge", "--ff-only", "-q", "support-only"]);
    let run = repo.sluice(&["promote", "staging", "production", "-o", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["unchanged"], serde_json::json!(["support"]));
    assert_eq!(report["packs"].as_array().unwrap().len(), 1);
    assert_eq!(report["packs"][0]["name"], "models");
    let nothing = repo.sluice(&["promote", "staging", "production", "--packs", "support"]);
    assert_eq!(nothing.code, 0, "{}", nothing.stderr);
    assert!(
        nothing.stdout.contains("nothing to promote"),
        "{}",
        nothing.stdout
    );
}

#[test]
fn refusals_come_with_their_reasons() {
    let repo = staged();
    repo.write("environments/development/packs/support.yaml", SUPPORT);
    repo.commit("development: support");

    // Not production's promotion.from.
    let skip = repo.sluice(&["promote", "development", "production"]);
    assert_eq!(skip.code, 2, "{}", skip.stdout);
    assert!(
        skip.stderr.contains("promotion.from: staging"),
        "{}",
        skip.stderr
    );
    assert!(skip.stderr.contains("--force --reason"), "{}", skip.stderr);
    let no_reason = repo.sluice(&["promote", "development", "production", "--force"]);
    assert_eq!(no_reason.code, 2);
    assert_eq!(promote_branches(&repo), "");

    // Forced, with the reason in the message and its trailer.
    let forced = repo.sluice(&[
        "promote",
        "development",
        "production",
        "--force",
        "--reason",
        "hotfix for INC-42",
        "-o",
        "json",
    ]);
    assert_eq!(forced.code, 0, "{}{}", forced.stdout, forced.stderr);
    let branch = forced.json()["branch"].as_str().unwrap().to_owned();
    assert!(branch.starts_with("promote/development-to-production-"));
    let message = repo.git(&["log", "-1", "--format=%B", &branch]);
    assert!(
        message.contains("Forced (production takes promotions from staging): hotfix for INC-42"),
        "{message}"
    );
    let promotion = trailer::parse(&message).unwrap();
    assert_eq!(promotion.forced.as_deref(), Some("hotfix for INC-42"));
    assert_eq!(promotion.from, "development");
    assert_eq!(
        repo.git(&["diff", "--name-only", "main", &branch]),
        "environments/production/packs/models.yaml\nenvironments/production/packs/support.yaml\n"
    );

    // An environment that takes no promotions.
    let none = repo.sluice(&["promote", "staging", "development"]);
    assert_eq!(none.code, 2);
    assert!(none.stderr.contains("no promotion.from"), "{}", none.stderr);
    let unknown = repo.sluice(&["promote", "staging", "prod"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("no environment `prod`"),
        "{}",
        unknown.stderr
    );

    // The branch Sluice follows is what is read: an uncommitted break in
    // staging does not count, a committed one refuses the promotion.
    repo.write(
        "environments/staging/packs/support.yaml",
        SUPPORT.replace("action: redact", "action: shred"),
    );
    let uncommitted = repo.sluice(&["promote", "staging", "production", "--branch", "ok"]);
    assert_eq!(uncommitted.code, 0, "{}", uncommitted.stderr);
    repo.commit("staging: a broken support pack");
    let broken = repo.sluice(&["promote", "staging", "production"]);
    assert_eq!(broken.code, 1, "{}{}", broken.stdout, broken.stderr);
    assert!(
        broken.stderr.contains("`staging` has 1 error finding"),
        "{}",
        broken.stderr
    );
    assert!(
        broken
            .stderr
            .contains("environments/staging/packs/support.yaml:"),
        "{}",
        broken.stderr
    );
    let branches = promote_branches(&repo);
    assert_eq!(branches.lines().count(), 1, "{branches}");
}

#[test]
fn nothing_to_promote_is_not_an_error() {
    let repo = TestRepo::example();
    let run = repo.sluice(&["promote", "staging", "production"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("nothing to promote from staging to production on main "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("base packs are shared"),
        "{}",
        run.stdout
    );
    let json = repo.sluice(&["promote", "staging", "production", "-o", "json"]);
    assert_eq!(json.code, 0);
    let report = json.json();
    assert_eq!(report["packs"], serde_json::json!([]));
    assert!(report.get("branch").is_none(), "{report}");
    assert_eq!(promote_branches(&repo), "");
}

#[test]
fn push_sends_the_branch_to_a_bare_remote() {
    let repo = staged();
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

    let run = repo.sluice(&["promote", "staging", "production", "--push", "-o", "json"]);
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
    assert_eq!(
        report["next"],
        format!("open a pull request from {branch} into main").as_str()
    );
}

#[test]
fn a_pack_file_under_the_other_extension_is_replaced() {
    let repo = staged();
    repo.write(
        "environments/production/packs/models.yml",
        "pack: { version: 2.1.1 }\n",
    );
    repo.commit("production: models 2.1.1");
    let run = repo.sluice(&[
        "promote",
        "staging",
        "production",
        "--packs",
        "models",
        "-o",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(
        report["packs"][0]["replaces"],
        "environments/production/packs/models.yml"
    );
    assert_eq!(report["packs"][0]["previous"]["version"], "2.1.1");
    let branch = report["branch"].as_str().unwrap();
    assert_eq!(
        repo.git(&["diff", "--name-status", "--no-renames", "main", branch]),
        "A\tenvironments/production/packs/models.yaml\nD\tenvironments/production/packs/models.yml\n"
    );
}
