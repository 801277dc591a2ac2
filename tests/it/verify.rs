//! Behaviour verification with real parts: `sluice run` over enforcing
//! reference gateways (echo upstream), a suite in the repository, alerts to
//! a real HTTP receiver. A production change that stops detecting cards is
//! applied, caught by the post-apply suite, rolled back, pinned and alerted;
//! an eval environment reset and re-run on each new version.

use crate::support::{GatewayProcess, Receiver, TestRepo, eventually, http, sluice_with};
use serde_json::Value;
use tempfile::TempDir;

const TOKEN_ENV: &str = "PROD_GATEWAY_TOKEN";
const TOKEN: &str = "prod-gw-token-5c2e";
const HOOK_ENV: &str = "PROD_ALERT_WEBHOOK";

const CARDS: &str = "suite: cards
description: Card numbers never reach a model from production
cases:
  - name: a card in a support ticket is blocked
    fixture: ticket-with-card
    expect: { outcome: blocked, status: 403, policies: [pii-detector] }
  - name: a plain question is answered
    request: { model: gpt-4o, messages: [{ role: user, content: \"What is a chargeback?\" }] }
    expect: { outcome: allowed, forwardedContains: [\"chargeback\"] }
";

fn live_digest(gateway: &GatewayProcess) -> String {
    let auth = format!("Bearer {TOKEN}");
    let (_, body) = http(
        "GET",
        &format!("{}/sluice/v1/status", gateway.url),
        &[("authorization", &auth)],
        "",
    );
    let status: Value = serde_json::from_str(&body).unwrap_or_default();
    status["digest"].as_str().unwrap_or_default().to_owned()
}

/// The outcomes the gateway's own audit log recorded, oldest first.
fn audited(gateway: &GatewayProcess) -> Vec<String> {
    let auth = format!("Bearer {TOKEN}");
    let (_, body) = http(
        "GET",
        &format!("{}/admin/v1/audit", gateway.url),
        &[("authorization", &auth)],
        "",
    );
    let audit: Value = serde_json::from_str(&body).unwrap_or_default();
    audit["records"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .filter_map(|r| r["outcome"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_change_that_breaks_card_blocking_is_caught_rolled_back_pinned_and_alerted() {
    let receiver = Receiver::start();
    let gateways: Vec<(GatewayProcess, TempDir)> = (0..2)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let process = GatewayProcess::start(
                &[
                    "--token-env",
                    TOKEN_ENV,
                    "--data",
                    dir.path().to_str().unwrap(),
                ],
                &[(TOKEN_ENV, TOKEN)],
            );
            (process, dir)
        })
        .collect();
    let repo = TestRepo::example();
    let mut yaml = String::from("gateways:\n");
    for (i, (gateway, _)) in gateways.iter().enumerate() {
        yaml.push_str(&format!(
            "  - name: gw-{i}\n    driver: http\n    url: {}\n    tokenEnv: {TOKEN_ENV}\n    timeout: 5s\n",
            gateway.url
        ));
    }
    repo.write("environments/production/gateways.yaml", yaml);
    let spec = repo
        .read("environments/production/environment.yaml")
        .replace(
            "{ urlEnv: PROD_ALERT_WEBHOOK, format: slack }",
            "{ urlEnv: PROD_ALERT_WEBHOOK, format: generic }",
        );
    repo.write(
        "environments/production/environment.yaml",
        format!("{spec}verify: {{ suites: [cards], onFailure: rollback }}\n"),
    );
    repo.write("evals/cards.eval.yaml", CARDS);
    repo.commit("production verifies that cards are blocked");
    let render = repo.sluice(&["render", "production", "--rev", "HEAD", "-o", "json"]);
    let good = render.json()[0]["digest"].as_str().unwrap().to_owned();

    let data = tempfile::tempdir().unwrap();
    let envs = [(TOKEN_ENV, TOKEN), (HOOK_ENV, receiver.url.as_str())];
    let _run = GatewayProcess::spawn(
        &[
            "run",
            "--repo",
            repo.path().to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "1s",
        ],
        &envs,
    );
    let sluice = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend([
            "--repo",
            repo.path().to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
        ]);
        sluice_with(&all, &envs)
    };
    eventually(60, "both gateways run the good version, verified", || {
        gateways.iter().all(|(g, _)| live_digest(g) == good)
            && gateways
                .iter()
                .all(|(g, _)| audited(g) == ["blocked", "allowed"])
    });
    assert_eq!(receiver.count("verification-failed"), 0);

    // The change: production stops looking for cards.
    let overlay = repo
        .read("environments/production/packs/baseline.yaml")
        .replace(
            "    action: block\n    pci_mode",
            "    action: block\n    detect_patterns: [email]\n    pci_mode",
        );
    repo.write("environments/production/packs/baseline.yaml", overlay);
    let bad_commit = repo.commit("production: only e-mail addresses are personal data");
    eventually(
        60,
        "the failed verification and the rollback are alerted",
        || receiver.count("verification-failed") == 1 && receiver.count("rolled-back") == 1,
    );
    eventually(30, "every gateway is back on the good version", || {
        gateways.iter().all(|(g, _)| live_digest(g) == good)
    });
    // What the real gateways did under the bad version: the card went through.
    for (gateway, _) in &gateways {
        let outcomes = audited(gateway);
        assert!(
            outcomes.starts_with(&["blocked".into(), "allowed".into(), "allowed".into()]),
            "{outcomes:?}"
        );
    }
    let alerts = receiver.received();
    let failed = alerts
        .iter()
        .find(|a| a.event == "verification-failed")
        .unwrap();
    let detail = failed.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("suite cards: 2 of 4 cases failed")
            && detail.contains("a card in a support ticket is blocked"),
        "{detail}"
    );
    let rolled = alerts.iter().find(|a| a.event == "rolled-back").unwrap();
    assert!(
        rolled.body["desiredVersion"]
            .as_str()
            .unwrap()
            .starts_with(&good[..7 + 12]),
        "{}",
        rolled.body
    );

    // Status says pinned, by Sluice, and why; the bad head is held back.
    let status = sluice(&["status", "--env", "production", "-o", "json"]);
    let view = status.json();
    let pin = &view["pins"][0];
    assert_eq!(pin["by"], "sluice", "{view}");
    assert_eq!(pin["digest"], good.as_str());
    assert!(pin["reason"].as_str().unwrap().contains("verification of"));
    assert!(status.stdout.contains("\"pinned\""), "{}", status.stdout);
    let text = sluice(&["status", "--env", "production"]);
    assert!(text.stdout.contains("PINNED"), "{}", text.stdout);

    // Nothing lost: the bad version's applies and the rollback's are all
    // in the ledger, finished.
    let history = sluice(&["history", "production", "-o", "json"]);
    let attempts = history.json();
    let attempts = attempts.as_array().unwrap();
    let triggers: Vec<&str> = attempts
        .iter()
        .filter(|a| a["gateway"] == "gw-0")
        .filter_map(|a| a["trigger"].as_str())
        .collect();
    assert_eq!(triggers[0], "rollback", "{attempts:?}");
    assert!(
        attempts
            .iter()
            .any(|a| a["revision"].as_str() == Some(bad_commit.trim())),
        "the bad version's applies are recorded: {attempts:?}"
    );
    assert!(
        attempts
            .iter()
            .all(|a| !a["finishedAt"].is_null() && a["outcome"] == "applied"),
        "{attempts:?}"
    );

    // The suite's runs, by version: passed, failed, passed again once back.
    let evals = sluice(&["history", "production", "--evals", "-o", "json"]);
    let runs = evals.json();
    let seen: Vec<(&str, u64)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["digest"].as_str().unwrap(), r["failed"].as_u64().unwrap()))
        .collect();
    let bad = attempts
        .iter()
        .find(|a| a["trigger"] == "poll")
        .and_then(|a| a["digest"].as_str())
        .unwrap();
    assert_eq!(seen, [(good.as_str(), 0), (bad, 2), (good.as_str(), 0)]);
    let table = sluice(&["history", "production", "--evals"]);
    assert!(
        table.stdout.contains("cards  2/4")
            && table.stdout.contains(
                "a card in a support ticket is blocked: outcome: expected blocked, found allowed"
            ),
        "{}",
        table.stdout
    );
}

/// An eval environment on a real reference gateway: each sync that brings a
/// new version resets the gateway (audit log, counters) and runs every
/// suite, so what the gateway logged is exactly one run's requests.
#[test]
fn an_eval_environment_resets_its_gateway_and_runs_every_suite_on_each_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = GatewayProcess::start(
        &[
            "--token-env",
            "EVAL_GW_TOKEN",
            "--data",
            dir.path().to_str().unwrap(),
        ],
        &[("EVAL_GW_TOKEN", TOKEN)],
    );
    let repo = TestRepo::example();
    repo.write(
        "environments/eval/gateways.yaml",
        format!(
            "gateways:\n  - name: eval-1\n    driver: http\n    url: {}\n    tokenEnv: EVAL_GW_TOKEN\n    timeout: 5s\n",
            gateway.url
        ),
    );
    repo.commit("the eval environment on a reference gateway");
    let data = tempfile::tempdir().unwrap();
    let envs = [
        ("EVAL_GW_TOKEN", TOKEN),
        ("SLUICE_ALLOW_ENV", "production=PROD_*,eval=EVAL_*"),
    ];
    let sync = || {
        let run = sluice_with(
            &[
                "sync",
                "--env",
                "eval",
                "--repo",
                repo.path().to_str().unwrap(),
                "--data-dir",
                data.path().to_str().unwrap(),
            ],
            &envs,
        );
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    };
    let runs = || {
        sluice_with(
            &[
                "history",
                "eval",
                "--evals",
                "-o",
                "json",
                "--repo",
                repo.path().to_str().unwrap(),
                "--data-dir",
                data.path().to_str().unwrap(),
            ],
            &envs,
        )
        .json()
    };
    sync();
    let first = runs();
    assert_eq!(first.as_array().unwrap().len(), 3, "{first}");
    assert!(
        first.as_array().unwrap().iter().all(|r| r["failed"] == 0),
        "{first}"
    );
    // One suite's requests: the gateway was reset before each suite.
    let after_first = audited(&gateway).len();
    assert_eq!(
        after_first,
        3,
        "the last suite (pii) alone: {:?}",
        audited(&gateway)
    );

    // A request between syncs, then a new version: reset again.
    let auth = format!("Bearer {TOKEN}");
    http(
        "POST",
        &format!("{}/v1/chat/completions", gateway.url),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(audited(&gateway).len(), 4);
    let red_team = repo
        .read("environments/eval/packs/red-team.yaml")
        .replace("version: 0.3.0", "version: 0.3.1")
        .replace("sample: 200", "sample: 300");
    repo.write("environments/eval/packs/red-team.yaml", red_team);
    repo.commit("red-team 0.3.1");
    sync();
    assert_eq!(runs().as_array().unwrap().len(), 6);
    assert_eq!(audited(&gateway).len(), 3, "reset: {:?}", audited(&gateway));
    // The same version again: nothing runs, nothing is reset.
    sync();
    assert_eq!(runs().as_array().unwrap().len(), 6);
    assert_eq!(audited(&gateway).len(), 3);
}
