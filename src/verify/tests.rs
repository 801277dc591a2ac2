use super::*;
use crate::reconcile::tests::example;

const PRODUCTION: &str = "slug: production\nname: Production\nisProduction: true\n\
    promotion: { from: staging, evals: [injection] }\n\
    verify: { suites: [models, pii], onFailure: rollback }\n";

fn deployment(digest: &str) -> Deployment {
    Deployment {
        environment: "production".into(),
        revision: format!("rev-{digest}"),
        digest: digest.into(),
        packs: Vec::new(),
        verified_at: 0,
    }
}

fn run(suite: &str, digest: &str, failed: u32) -> EvalRun {
    EvalRun {
        environment: "production".into(),
        suite: suite.into(),
        revision: format!("rev-{digest}"),
        digest: digest.into(),
        packs: Vec::new(),
        passed: 2,
        failed,
        failures: (0..failed)
            .map(|i| EvalFailure {
                gateway: "prod-eu-1".into(),
                case: format!("case {i}"),
                reason: "outcome: expected redacted, found allowed".into(),
            })
            .collect(),
        at: 0,
    }
}

#[test]
fn which_suites_run_where() {
    let loaded = example(&[("environments/production/environment.yaml", PRODUCTION)]);
    let repo = loaded.repository.as_ref().unwrap();
    let suites = |env: &str| suites_after_apply(repo, &repo.environments[env]);
    // Its own verify suites.
    assert_eq!(suites("production"), ["models", "pii"]);
    // What production's promotion asks of staging.
    assert_eq!(suites("staging"), ["injection"]);
    // An eval environment runs them all, and only it is reset.
    assert_eq!(suites("eval"), ["injection", "models", "pii"]);
    assert!(resets(&repo.environments["eval"]));
    assert!(!resets(&repo.environments["production"]));
    assert!(suites("development").is_empty());
}

#[test]
fn a_failed_verification_rolls_back_to_the_newest_version_that_passed() {
    let loaded = example(&[("environments/production/environment.yaml", PRODUCTION)]);
    let repo = loaded.repository.as_ref().unwrap();
    let production = &repo.environments["production"];
    let deployments = [deployment("v3"), deployment("v2"), deployment("v1")];
    let history = [
        run("pii", "v2", 1),
        run("models", "v2", 0),
        run("pii", "v1", 0),
        run("models", "v1", 0),
    ];
    let now = [run("models", "v3", 0), run("pii", "v3", 2)];
    let response = respond(production, &now, &deployments, &history);
    let Response::Rollback { failed, to } = &response else {
        panic!("{response:?}")
    };
    assert_eq!(to.digest, "v1", "v2 failed pii: never a target");
    assert_eq!(
        failed,
        "suite pii: 2 of 4 cases failed (prod-eu-1: case 0: outcome: expected redacted, found allowed)"
    );
    // Passing is the end of it; a suite it does not verify with is not its business.
    let passing = [
        run("models", "v3", 0),
        run("pii", "v3", 0),
        run("x", "v3", 9),
    ];
    assert_eq!(
        respond(production, &passing, &deployments, &history),
        Response::Passed
    );
}

#[test]
fn rollback_targets() {
    let suites = ["pii".to_owned()];
    let deployments = [deployment("v3"), deployment("v2"), deployment("v1")];
    // Never checked before: the version before, which ran whole.
    assert_eq!(
        rollback_target(&deployments, &[], &suites, Some(&"v3".into())).map(|d| d.digest.clone()),
        Some("v2".into())
    );
    // Checked and every earlier one failed: nothing qualifies.
    let failed = [run("pii", "v2", 1), run("pii", "v1", 1)];
    assert_eq!(
        rollback_target(&deployments, &failed, &suites, Some(&"v3".into())),
        None
    );
    // The newest run at a digest decides.
    let fixed = [run("pii", "v2", 0), run("pii", "v2", 1)];
    assert_eq!(
        rollback_target(&deployments, &fixed, &suites, Some(&"v3".into()))
            .map(|d| d.digest.clone()),
        Some("v2".into())
    );
    // Nothing earlier at all.
    assert_eq!(
        rollback_target(&deployments[..1], &[], &suites, Some(&"v3".into())),
        None
    );
}

#[test]
fn an_alerting_environment_keeps_its_version_and_an_eval_one_never_reacts() {
    let alerting = PRODUCTION.replace("onFailure: rollback", "onFailure: alert");
    let loaded = example(&[("environments/production/environment.yaml", &alerting)]);
    let repo = loaded.repository.as_ref().unwrap();
    let failing = [run("pii", "v3", 1)];
    assert!(matches!(
        respond(&repo.environments["production"], &failing, &[], &[]),
        Response::Alert { .. }
    ));
    assert_eq!(
        respond(&repo.environments["eval"], &failing, &[], &[]),
        Response::Passed
    );
}
