//! `sluice validate`: output for people and for CI, exit codes.

use crate::support::{TestRepo, sluice};

fn broken() -> TestRepo {
    let repo = TestRepo::example();
    repo.write(
        "environments/production/environment.yaml",
        "slug: production\nname: Production\nisProduction: perhaps\nenfrocement: enforce\n",
    );
    repo.write(
        "base/packs/models.yaml",
        "pack:\n  name: models\n  version: 2.1.0\npolicies:\n  chain: [model-allowlist, pii-detecter]\n",
    );
    repo.commit("break things");
    repo
}

#[test]
fn the_example_is_valid() {
    let run = sluice(&[
        "validate",
        "--repo",
        crate::support::example_dir().to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("valid at worktree: 4 environments, 5 gateways, 2 base packs")
    );
}

#[test]
fn human_output_shows_every_finding_with_its_source_line() {
    let run = broken().sluice(&["validate"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn json_output_is_a_stable_array() {
    let run = broken().sluice(&["validate", "--rev", "HEAD", "-o", "json"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn reads_the_commit_not_the_work_tree() {
    let repo = TestRepo::example();
    let good = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    repo.write("environments/production/environment.yaml", "slug: [\n");
    // Uncommitted breakage: the work tree is invalid, the commit is not.
    assert_eq!(repo.sluice(&["validate"]).code, 1);
    assert_eq!(repo.sluice(&["validate", "--rev", "HEAD"]).code, 0);
    repo.commit("broken");
    assert_eq!(repo.sluice(&["validate", "--rev", "HEAD"]).code, 1);
    assert_eq!(repo.sluice(&["validate", "--rev", &good]).code, 0);
    assert_eq!(repo.sluice(&["validate", "--rev", "HEAD~1"]).code, 0);
}

#[test]
fn a_missing_revision_is_an_environment_error() {
    let run = TestRepo::example().sluice(&["validate", "--rev", "no-such-branch"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("revision 'no-such-branch' not found"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_missing_repository_is_an_environment_error() {
    let run = sluice(&["validate", "--rev", "HEAD", "--repo", "/nonexistent/sluice"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot open git repository"),
        "{}",
        run.stderr
    );
}

#[test]
fn usage_errors_exit_2() {
    let run = sluice(&["validate", "--no-such-flag"]);
    assert_eq!(run.code, 2);
    let run = sluice(&["validate", "-o", "xml"]);
    assert_eq!(run.code, 2);
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let repo = broken();
    let plain = repo.sluice(&["validate"]);
    assert!(!plain.stdout.contains('\u{1b}'));
    let forced = repo.sluice(&["validate", "--color", "always"]);
    assert!(forced.stdout.contains("\u{1b}[1;31merror"));
}
