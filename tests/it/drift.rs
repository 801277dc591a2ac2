//! Drift against real reference gateways: hand edits through the admin
//! API, `sluice run`'s periodic scan with each policy, alerts delivered to a
//! real HTTP receiver, and the one-shot `sluice drift`.

use crate::support::{GatewayProcess, Receiver, TestRepo, eventually, http, sluice_with};
use serde_json::Value;
use sluice::server::webhook::github_signature;
use tempfile::TempDir;

const TOKEN_ENV: &str = "PROD_GATEWAY_TOKEN";
const TOKEN: &str = "prod-gw-token-d41f";
const HOOK_ENV: &str = "PROD_ALERT_WEBHOOK";
const SIGN_ENV: &str = "PROD_ALERT_SECRET";
const SIGN_KEY: &str = "alert-signing-key-9b";
const ACTION: &str = "/packs/baseline/settings/pii-detector/action";

/// The example repository with production on one reference gateway, its
/// drift settings and an alert sink.
struct Production {
    repo: TestRepo,
    data: TempDir,
    gateway: GatewayProcess,
    _gateway_dir: TempDir,
}

impl Production {
    fn new(policy: &str, interval: &str, gateway_args: &[&str]) -> Production {
        let repo = TestRepo::example();
        let gateway_dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--token-env", TOKEN_ENV];
        if !gateway_args.contains(&"--ephemeral") {
            args.extend(["--data", gateway_dir.path().to_str().unwrap()]);
        }
        args.extend(gateway_args);
        let gateway = GatewayProcess::start(&args, &[(TOKEN_ENV, TOKEN)]);
        repo.write(
            "environments/production/gateways.yaml",
            format!(
                "gateways:\n  - name: gw-0\n    driver: http\n    url: {}\n    tokenEnv: {TOKEN_ENV}\n    timeout: 2s\n",
                gateway.url
            ),
        );
        let spec = repo
            .read("environments/production/environment.yaml")
            .replace("interval: 1m", &format!("interval: {interval}"))
            .replace("policy: heal", &format!("policy: {policy}"))
            .replace(
                "{ urlEnv: PROD_ALERT_WEBHOOK, format: slack }",
                &format!("{{ urlEnv: {HOOK_ENV}, format: generic, secretEnv: {SIGN_ENV} }}"),
            );
        assert!(spec.contains(&format!("policy: {policy}")), "{spec}");
        repo.write("environments/production/environment.yaml", spec);
        repo.commit("production on a reference gateway");
        Production {
            repo,
            data: tempfile::tempdir().unwrap(),
            gateway,
            _gateway_dir: gateway_dir,
        }
    }

    fn sluice(&self, args: &[&str], receiver: Option<&Receiver>) -> crate::support::Run {
        let mut all = args.to_vec();
        all.extend([
            "--repo",
            self.repo.path().to_str().unwrap(),
            "--data-dir",
            self.data.path().to_str().unwrap(),
        ]);
        sluice_with(&all, &self.envs(receiver))
    }

    fn envs<'a>(&self, receiver: Option<&'a Receiver>) -> Vec<(&'static str, &'a str)> {
        let mut envs = vec![(TOKEN_ENV, TOKEN), (SIGN_ENV, SIGN_KEY)];
        if let Some(receiver) = receiver {
            envs.push((HOOK_ENV, receiver.url.as_str()));
        }
        envs
    }

    /// `sluice run` following the repository, polling only hourly: what
    /// happens in between is the drift scan's doing.
    fn run(&self, receiver: &Receiver) -> GatewayProcess {
        GatewayProcess::spawn(
            &[
                "run",
                "--repo",
                self.repo.path().to_str().unwrap(),
                "--data-dir",
                self.data.path().to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--interval",
                "1h",
            ],
            &self.envs(Some(receiver)),
        )
    }

    fn desired(&self) -> (String, Value) {
        let render = self.repo.sluice(&[
            "render",
            "production",
            "--gateway",
            "gw-0",
            "--rev",
            "HEAD",
            "-o",
            "json",
        ]);
        let rendered = &render.json()[0];
        (
            rendered["digest"].as_str().unwrap().to_owned(),
            rendered["config"].clone(),
        )
    }

    fn live_digest(&self) -> String {
        let auth = format!("Bearer {TOKEN}");
        let (_, body) = http(
            "GET",
            &format!("{}/sluice/v1/status", self.gateway.url),
            &[("authorization", &auth)],
            "",
        );
        let status: Value = serde_json::from_str(&body).unwrap_or_default();
        status["digest"].as_str().unwrap_or_default().to_owned()
    }

    /// What an operator does by hand: the PII detector set to `redact`.
    fn hand_edit(&self) {
        let (_, mut config) = self.desired();
        assert_eq!(config.pointer(ACTION).unwrap(), "block");
        *config.pointer_mut(ACTION).unwrap() = "redact".into();
        let auth = format!("Bearer {TOKEN}");
        let (status, text) = http(
            "PUT",
            &format!("{}/admin/v1/config", self.gateway.url),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            &config.to_string(),
        );
        assert_eq!(status, 200, "{text}");
    }
}

/// A counter or gauge of `sluice run`'s metrics, summed over the series
/// whose labels contain `labels`.
fn metric(run: &GatewayProcess, name: &str, labels: &str) -> f64 {
    let (_, text) = http("GET", &format!("{}/metrics", run.url), &[], "");
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_hand_edit_is_alerted_once_healed_and_the_resolution_follows() {
    let receiver = Receiver::start();
    let production = Production::new("heal", "1s", &[]);
    let (desired, _) = production.desired();
    let run = production.run(&receiver);
    eventually(30, "the first apply", || {
        production.live_digest() == desired
    });

    production.hand_edit();
    assert_ne!(production.live_digest(), desired);
    eventually(30, "the drift alert", || {
        receiver.count("drift-detected") == 1
    });
    eventually(30, "the heal", || production.live_digest() == desired);
    eventually(30, "the resolved notice", || {
        receiver.count("drift-resolved") == 1
    });

    // Scans go on; the episode is over and was told once.
    let production_label = "environment=\"production\"";
    let scans = metric(&run, "sluice_reconciles_total", production_label);
    eventually(30, "two more scans", || {
        metric(&run, "sluice_reconciles_total", production_label) >= scans + 2.0
    });
    assert_eq!(receiver.count("drift-detected"), 1);
    assert_eq!(receiver.count("drift-resolved"), 1);
    assert_eq!(
        metric(&run, "sluice_drift_episodes_total", production_label),
        1.0
    );

    let received = receiver.received();
    let detected = received
        .iter()
        .find(|r| r.event == "drift-detected")
        .unwrap();
    let body = &detected.body;
    assert_eq!(body["environment"], "production");
    assert_eq!(body["gateway"], "gw-0");
    let short = &desired[..7 + 12];
    assert!(
        body["desiredVersion"].as_str().unwrap().starts_with(short),
        "{body}"
    );
    assert_ne!(body["liveVersion"], Value::Null);
    let change = &body["changes"][0];
    assert_eq!(change["pointer"], ACTION);
    assert_eq!(change["from"], "block");
    assert_eq!(change["to"], "redact");
    assert!(body["diff"].as_str().unwrap().contains("+"), "{body}");
    assert_eq!(
        detected.signature.as_deref(),
        Some(github_signature(SIGN_KEY, detected.raw.as_bytes()).as_str()),
        "signed with the secret from the environment"
    );
    let resolved = received
        .iter()
        .find(|r| r.event == "drift-resolved")
        .unwrap();
    assert_eq!(resolved.body["detail"], "healed");

    // The heal is an apply like any other, recorded with its trigger.
    let history = production.sluice(&["history", "production", "-o", "json"], None);
    let attempts = history.json();
    let triggers: Vec<&str> = attempts
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["trigger"].as_str())
        .collect();
    assert!(triggers.contains(&"drift"), "{attempts}");
    // The secret never reaches the logs.
    assert!(!run.stderr().contains(SIGN_KEY));
    assert!(!run.stderr().contains(&receiver.url));
}

#[test]
fn detect_records_drift_and_leaves_the_gateway_alone() {
    let receiver = Receiver::start();
    let production = Production::new("detect", "1s", &[]);
    let (desired, _) = production.desired();
    let run = production.run(&receiver);
    eventually(30, "the first apply", || {
        production.live_digest() == desired
    });

    production.hand_edit();
    let edited = production.live_digest();
    let production_label = "environment=\"production\"";
    eventually(30, "drift seen", || {
        metric(&run, "sluice_drifted_gateways", production_label) == 1.0
    });
    let scans = metric(&run, "sluice_reconciles_total", production_label);
    eventually(30, "two more scans", || {
        metric(&run, "sluice_reconciles_total", production_label) >= scans + 2.0
    });
    assert_eq!(production.live_digest(), edited, "detect never re-applies");
    assert_eq!(receiver.count("drift-detected"), 0, "detect never alerts");
    assert_eq!(
        metric(&run, "sluice_drift_episodes_total", production_label),
        1.0
    );
    let status = production.sluice(&["status", "--env", "production", "-o", "json"], None);
    assert!(status.stdout.contains("\"drifted\""), "{}", status.stdout);
}

#[test]
fn the_drift_command_shows_the_diff_and_a_manual_sync_puts_it_back() {
    let production = Production::new("detect", "1m", &[]);
    let sync = production.sluice(&["sync", "--env", "production"], None);
    assert_eq!(sync.code, 0, "{}{}", sync.stdout, sync.stderr);
    let clean = production.sluice(&["drift", "--env", "production"], None);
    assert_eq!(clean.code, 0, "{}{}", clean.stdout, clean.stderr);

    production.hand_edit();
    let json = production.sluice(&["drift", "--env", "production", "-o", "json"], None);
    assert_eq!(json.code, 1, "{}{}", json.stdout, json.stderr);
    let found = json.json();
    assert_eq!(found[0]["found"], "drifted");
    assert_eq!(found[0]["changes"][0]["pointer"], ACTION);

    let text = production.sluice(&["drift", "--env", "production"], None);
    assert_eq!(text.code, 1);
    assert!(
        text.stdout
            .contains(r#"pii-detector.action (pack baseline): "block" → "redact""#),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("-          \"action\": \"block\""));
    assert!(text.stdout.contains("+          \"action\": \"redact\""));
    assert!(!text.stdout.contains('\x1b'), "no colour off a terminal");

    // An explicit sync is a request to put the desired state back.
    let sync = production.sluice(&["sync", "--env", "production", "-o", "json"], None);
    assert_eq!(sync.code, 0, "{}{}", sync.stdout, sync.stderr);
    let gateway = &sync.json()["environments"][0]["gateways"][0];
    assert_eq!(gateway["drift"]["changes"][0]["pointer"], ACTION);
    assert_eq!(gateway["applied"], true);
    let after = production.sluice(&["drift", "--env", "production"], None);
    assert_eq!(after.code, 0, "{}", after.stdout);
}

#[test]
fn the_drift_command_fails_and_says_why_when_a_gateway_is_unreachable() {
    let mut production = Production::new("detect", "1m", &[]);
    let sync = production.sluice(&["sync", "--env", "production"], None);
    assert_eq!(sync.code, 0, "{}{}", sync.stdout, sync.stderr);
    production.gateway.kill_hard();

    let text = production.sluice(&["drift", "--env", "production"], None);
    assert_eq!(
        text.code, 1,
        "an unreachable gateway is not a clean scan: {}",
        text.stdout
    );
    let row = text
        .stdout
        .lines()
        .find(|l| l.contains("unreachable"))
        .unwrap_or_else(|| panic!("{}", text.stdout));
    assert!(row.contains("production"), "{row}");
    assert!(
        text.stdout
            .contains("production/gw-0: gateway is unreachable"),
        "the text says why: {}",
        text.stdout
    );
    let json = production.sluice(&["drift", "--env", "production", "-o", "json"], None);
    assert_eq!(json.code, 1);
    assert_eq!(json.json()[0]["found"], "unreachable");
}

#[test]
fn a_gateway_that_restarted_empty_is_reapplied_without_being_called_drift() {
    let mut production = Production::new("detect", "1m", &["--ephemeral"]);
    let sync = production.sluice(&["sync", "--env", "production"], None);
    assert_eq!(sync.code, 0, "{}{}", sync.stdout, sync.stderr);

    let address = production.gateway.address().to_owned();
    production.gateway.kill_hard();
    production.gateway = GatewayProcess::start_on(
        &address,
        &["--token-env", TOKEN_ENV, "--ephemeral"],
        &[(TOKEN_ENV, TOKEN)],
    );
    assert_eq!(production.live_digest(), "", "it came back empty");
    let drift = production.sluice(&["drift", "--env", "production", "-o", "json"], None);
    assert_eq!(drift.code, 0, "{}", drift.stdout);
    assert_eq!(drift.json()[0]["found"], "empty");

    let sync = production.sluice(&["sync", "--env", "production", "-o", "json"], None);
    assert_eq!(sync.code, 0, "{}{}", sync.stdout, sync.stderr);
    let gateway = &sync.json()["environments"][0]["gateways"][0];
    assert_eq!(gateway["applied"], true);
    assert_eq!(gateway["drift"], Value::Null, "{gateway}");
}

#[test]
fn an_episode_ends_when_the_gateway_is_back_even_after_a_failure_in_between() {
    let receiver = Receiver::start();
    let production = Production::new("detect", "1s", &[]);
    let (desired, config) = production.desired();
    let run = production.run(&receiver);
    eventually(30, "the first apply", || {
        production.live_digest() == desired
    });
    let production_label = "environment=\"production\"";

    production.hand_edit();
    eventually(30, "drift seen", || {
        metric(&run, "sluice_drifted_gateways", production_label) == 1.0
    });
    // The gateway fails every read for a while: it is no longer `drifted`.
    let auth = format!("Bearer {TOKEN}");
    let faults = format!("{}/admin/v1/faults", production.gateway.url);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let (status, _) = http(
        "POST",
        &faults,
        &headers,
        r#"{"status":500,"count":1000,"method":"GET"}"#,
    );
    assert_eq!(status, 200);
    eventually(30, "the failure seen", || {
        metric(&run, "sluice_gateways", "state=\"failed\"") >= 1.0
    });
    // Then someone puts the verified document back by hand, and reads work again.
    let (status, _) = http("DELETE", &faults, &headers, "");
    assert_eq!(status, 200);
    let (status, text) = http(
        "PUT",
        &format!("{}/admin/v1/config", production.gateway.url),
        &headers,
        &config.to_string(),
    );
    assert_eq!(status, 200, "{text}");
    eventually(30, "back in sync", || {
        metric(&run, "sluice_gateways", "state=\"in-sync\"") >= 1.0
            && metric(&run, "sluice_drifted_gateways", production_label) == 0.0
    });
    eventually(30, "the episode closed", || {
        let episodes = production.sluice(&["history", "production", "--drift", "-o", "json"], None);
        let list = episodes.json();
        list.as_array().is_some_and(|l| {
            l.len() == 1 && l[0]["resolvedAt"].is_string() && l[0]["resolution"] == "reverted"
        })
    });
}

/// `sluice drift` and the reconciler share one drift rule: a gateway that
/// runs something Sluice never verified there (no ledger record: it was
/// configured by hand before Sluice arrived) is pending to both, not
/// drifted to one and pushed by the other.
#[test]
fn drift_and_sync_agree_on_a_gateway_sluice_never_verified() {
    let production = Production::new("detect", "1m", &[]);
    production.hand_edit();
    let drift = production.sluice(&["drift", "--env", "production", "-o", "json"], None);
    assert_eq!(drift.code, 0, "{}{}", drift.stdout, drift.stderr);
    assert_eq!(drift.json()[0]["found"], "pending", "{}", drift.stdout);

    // Under `detect`, a drifted gateway is left alone; this one is applied.
    let sync = production.sluice(&["sync", "--env", "production", "-o", "json"], None);
    assert_eq!(sync.code, 0, "{}{}", sync.stdout, sync.stderr);
    let gateway = &sync.json()["environments"][0]["gateways"][0];
    assert_eq!(gateway["applied"], true, "{gateway}");
    assert_eq!(gateway["drift"], Value::Null, "{gateway}");
    let after = production.sluice(&["drift", "--env", "production", "-o", "json"], None);
    assert_eq!(after.json()[0]["found"], "in-sync", "{}", after.stdout);
}
