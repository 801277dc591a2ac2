//! `sluice plan` on a fixture repository with every kind of change,
//! weakening ones included: golden text, markdown and JSON, and the exit
//! code that CI branches on.

use crate::support::TestRepo;

/// The example at `base`, then one commit with: production weakened five
/// ways, a shared pack's version bumped, a new pack in staging, a gateway
/// added to development.
fn fixture(message: &str) -> (TestRepo, String, String) {
    let repo = TestRepo::example();
    let base = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let spec = repo.read("environments/production/environment.yaml");
    repo.write(
        "environments/production/environment.yaml",
        spec.replace("enforcement: enforce", "enforcement: alert")
            .replace("retention: 400d", "retention: 200d"),
    );
    repo.write(
        "environments/production/packs/baseline.yaml",
        "policies:\n  chain: [audit-logger, pii-detector]\npolicy:\n  audit-logger:\n    retention_days: 30\n  pii-detector:\n    action: redact\n",
    );
    let models = repo.read("base/packs/models.yaml");
    repo.write(
        "base/packs/models.yaml",
        models.replace("version: 2.1.0", "version: 2.2.0").replace(
            "chain: [model-allowlist, rate-limit]",
            "chain: [rate-limit, model-allowlist]",
        ),
    );
    repo.write(
        "environments/staging/packs/support.yaml",
        "pack:\n  name: support\n  version: 1.0.0\npolicies:\n  chain: [prompt-injection]\npolicy:\n  prompt-injection:\n    action: block\n    threshold: 0.7\n",
    );
    let gateways = repo.read("environments/development/gateways.yaml");
    repo.write(
        "environments/development/gateways.yaml",
        format!("{gateways}  - name: dev-2\n    driver: file\n    path: gateways/development/dev-2.json\n"),
    );
    let head = repo.commit(message);
    (repo, base, head)
}

fn plan(repo: &TestRepo, base: &str, head: &str, extra: &[&str]) -> crate::support::Run {
    let mut args = vec!["plan", "--base", base, "--head", head];
    args.extend(extra);
    repo.sluice(&args)
}

/// Commit ids differ from run to run; the golden files must not.
fn stable(text: &str, base: &str, head: &str) -> String {
    text.replace(base, "BASE")
        .replace(head, "HEAD")
        .replace(&base[..8], "BASE")
        .replace(&head[..8], "HEAD")
}

#[test]
fn the_plan_names_each_change_and_stops_unapproved_weakening() {
    let (repo, base, head) = fixture("Loosen production");
    let text = plan(&repo, &base, &head, &[]);
    assert_eq!(text.code, 1, "{}{}", text.stdout, text.stderr);
    insta::assert_snapshot!("plan_text", stable(&text.stdout, &base, &head));

    let markdown = plan(&repo, &base, &head, &["-o", "markdown"]);
    assert_eq!(markdown.code, 1);
    insta::assert_snapshot!("plan_markdown", stable(&markdown.stdout, &base, &head));

    let json = plan(&repo, &base, &head, &["-o", "json"]);
    assert_eq!(json.code, 1);
    insta::assert_snapshot!("plan_json", stable(&json.stdout, &base, &head));
    let production = json.json()["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["environment"] == "production")
        .unwrap()
        .clone();
    let weakening: Vec<&str> = production["weakening"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    for expected in [
        "enforcement lowered",
        "prompt-injection no longer runs",
        "block → redact",
        "audit retention shortened",
        "ledger retention shortened",
    ] {
        assert!(
            weakening.iter().any(|w| w.contains(expected)),
            "{expected} missing from {weakening:?}"
        );
    }
}

#[test]
fn an_approval_lets_weakening_through() {
    let (repo, base, head) =
        fixture("Loosen production\n\nSluice-Approved-By: Dana <dana@example.com>");
    let run = plan(&repo, &base, &head, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("approved by Dana <dana@example.com>"),
        "{}",
        run.stdout
    );

    let (repo, base, head) = fixture("Loosen production");
    let run = plan(
        &repo,
        &base,
        &head,
        &["--approved", "governance-approved label"],
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
}

#[test]
fn a_change_alone_is_not_a_failure() {
    let repo = TestRepo::example();
    let base = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let models = repo.read("base/packs/models.yaml");
    repo.write("base/packs/models.yaml", models.replace("600", "900"));
    let head = repo.commit("more requests");
    let run = plan(&repo, &base, &head, &[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("rate-limit.requests_per_minute (pack models): 600 → 900")
    );
    assert!(
        run.stdout
            .contains("warning: this changes a production environment")
    );
}

#[test]
fn removing_a_production_environment_needs_an_approval() {
    let repo = TestRepo::example();
    let base = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    for file in ["environment.yaml", "gateways.yaml", "packs/baseline.yaml"] {
        repo.remove(&format!("environments/production/{file}"));
    }
    let head = repo.commit("drop production");
    let run = plan(&repo, &base, &head, &[]);
    // The head may be invalid for other reasons (promotion order); either
    // way it must not pass.
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
}

#[test]
fn the_plan_says_what_runs_now_from_the_ledger() {
    let (repo, base, head) = fixture("Loosen production");
    let data = tempfile::tempdir().unwrap();
    let sync = crate::reconcile::with_state(&repo, data.path(), &["sync", "--branch", &base]);
    assert_eq!(sync.code, 0, "{}", sync.stderr);
    let run = crate::reconcile::with_state(
        &repo,
        data.path(),
        &["plan", "--base", &base, "--head", &head],
    );
    assert!(
        run.stdout
            .contains("(2/2 gateways in sync); the head changes it"),
        "{}",
        run.stdout
    );
}
