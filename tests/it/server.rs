//! `sluice run`'s HTTP server: health, readiness, metrics, the status API
//! with scoped tokens, and the git webhook.

use crate::support::{GatewayProcess, TestRepo, eventually, http};
use sluice::server::webhook::github_signature;
use std::fs;

const SECRET: &str = "hook-secret-7c2d";

fn start(repo: &TestRepo, data: &std::path::Path) -> GatewayProcess {
    GatewayProcess::spawn(
        &[
            "run",
            "--repo",
            repo.path().to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "1h",
        ],
        &[
            ("SLUICE_WEBHOOK_SECRET", SECRET),
            (
                "SLUICE_API_TOKENS",
                "development:dev-token-1,admin:admin-token-1",
            ),
        ],
    )
}

#[test]
fn a_verified_push_reconciles_at_once_and_a_forged_one_is_refused() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let mut run = start(&repo, data.path());
    let url = run.url.clone();
    eventually(30, "ready", || {
        http("GET", &format!("{url}/readyz"), &[], "").0 == 200
    });
    assert_eq!(http("GET", &format!("{url}/healthz"), &[], "").0, 200);
    let target = data.path().join("gateways/eval/eval-1.json");
    eventually(30, "the first pass", || target.exists());

    let text = repo.read("base/packs/models.yaml");
    repo.write("base/packs/models.yaml", text.replace("600", "750"));
    repo.commit("raise the rate limit");
    let body = r#"{"ref":"refs/heads/main"}"#;

    let forged = github_signature("not-the-secret", body.as_bytes());
    let (status, _) = http(
        "POST",
        &format!("{url}/hooks/git"),
        &[("x-hub-signature-256", &forged)],
        body,
    );
    assert_eq!(status, 401);
    let (status, _) = http("POST", &format!("{url}/hooks/git"), &[], body);
    assert_eq!(status, 401);
    let (_, metrics) = http("GET", &format!("{url}/metrics"), &[], "");
    assert!(
        metrics.contains("sluice_webhook_rejected_total 2"),
        "{metrics}"
    );
    assert!(!fs::read_to_string(&target).unwrap().contains("750"));

    let signed = github_signature(SECRET, body.as_bytes());
    let (status, _) = http(
        "POST",
        &format!("{url}/hooks/git"),
        &[("x-hub-signature-256", &signed)],
        body,
    );
    assert_eq!(status, 202);
    // The interval is an hour: only the webhook can have applied it.
    eventually(30, "the pushed change applied", || {
        fs::read_to_string(&target)
            .unwrap()
            .contains("\"requests_per_minute\":750")
    });
    let (_, metrics) = http("GET", &format!("{url}/metrics"), &[], "");
    assert!(
        metrics.contains("sluice_reconciles_total{environment=\"eval\",outcome=\"converged\"}"),
        "{metrics}"
    );

    // GitLab's form of the secret works too.
    let (status, _) = http(
        "POST",
        &format!("{url}/hooks/git"),
        &[("x-gitlab-token", SECRET)],
        body,
    );
    assert_eq!(status, 202);
    run.terminate();
    assert!(run.wait_exit(std::time::Duration::from_secs(30)).is_some());
}

#[test]
fn tokens_are_scoped_to_their_environment() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let run = start(&repo, data.path());
    let url = run.url.clone();
    eventually(30, "ready", || {
        http("GET", &format!("{url}/readyz"), &[], "").0 == 200
    });
    let dev = [("authorization", "Bearer dev-token-1")];
    let admin = [("authorization", "Bearer admin-token-1")];

    assert_eq!(http("GET", &format!("{url}/api/v1/status"), &[], "").0, 401);
    assert_eq!(
        http(
            "GET",
            &format!("{url}/api/v1/status?env=production"),
            &dev,
            ""
        )
        .0,
        403
    );
    assert_eq!(
        http(
            "GET",
            &format!("{url}/api/v1/environments/production/history"),
            &dev,
            ""
        )
        .0,
        403
    );
    assert_eq!(
        http(
            "POST",
            &format!("{url}/api/v1/sync?env=production"),
            &dev,
            ""
        )
        .0,
        403
    );

    let (status, body) = http(
        "GET",
        &format!("{url}/api/v1/status?env=development"),
        &dev,
        "",
    );
    assert_eq!(status, 200, "{body}");
    // Without a filter a scoped token sees only its own environment.
    eventually(30, "status lists gateways", || {
        let (_, body) = http("GET", &format!("{url}/api/v1/status"), &admin, "");
        body.contains("prod-eu-1")
    });
    let (_, body) = http("GET", &format!("{url}/api/v1/status"), &dev, "");
    assert!(
        body.contains("dev-1") && !body.contains("prod-eu-1"),
        "{body}"
    );
    assert_eq!(
        http(
            "GET",
            &format!("{url}/api/v1/environments/production/history"),
            &admin,
            ""
        )
        .0,
        200
    );

    // The CLI reads the same API.
    let status = crate::support::sluice_with(
        &["status", "--server", &url, "-o", "json"],
        &[("SLUICE_API_TOKEN", "admin-token-1")],
    );
    assert_eq!(status.code, 0, "{}{}", status.stdout, status.stderr);
    assert_eq!(status.json()["gateways"].as_array().unwrap().len(), 5);
}
