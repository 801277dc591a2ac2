//! `/metrics` of a real `sluice run` over real reference gateways: the
//! build, each gateway's apply outcomes and durations, alert deliveries.

use crate::support::{GatewayProcess, TestRepo, eventually, http, sluice};
use tempfile::TempDir;

const TOKEN_ENV: &str = "PROD_GATEWAY_TOKEN";
const TOKEN: &str = "prod-gw-token-77b0";

/// `http://127.0.0.1:PORT` where nothing listens (a port just let go).
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

fn scrape(run: &GatewayProcess) -> String {
    http("GET", &format!("{}/metrics", run.url), &[], "").1
}

/// The value of the one series `series` (name and labels, as exposed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

fn gateways_yaml(gateways: &[(&str, &str)]) -> String {
    let mut yaml = String::from("gateways:\n");
    for (name, url) in gateways {
        yaml.push_str(&format!(
            "  - name: {name}\n    driver: http\n    url: {url}\n    tokenEnv: {TOKEN_ENV}\n    timeout: 1s\n"
        ));
    }
    yaml
}

#[test]
fn applies_are_counted_per_gateway_and_an_alert_to_a_dead_sink_counts_failed() {
    let gateway_dir = tempfile::tempdir().unwrap();
    let up = GatewayProcess::start(
        &[
            "--data",
            gateway_dir.path().to_str().unwrap(),
            "--token-env",
            TOKEN_ENV,
        ],
        &[(TOKEN_ENV, TOKEN)],
    );
    let down = dead_url();
    let sink = format!("{}/hook", dead_url());
    let repo = TestRepo::example();
    let both = gateways_yaml(&[("gw-up", &up.url), ("gw-down", &down)]);
    repo.write("environments/production/gateways.yaml", both);
    repo.commit("production on a gateway that is up and one that is down");
    let data = TempDir::new().unwrap();
    let run = GatewayProcess::spawn(
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
            "--alert-retry-for",
            "1s",
        ],
        &[(TOKEN_ENV, TOKEN), ("PROD_ALERT_WEBHOOK", &sink)],
    );
    let failed_alert = r#"sluice_alerts_total{environment="production",sink="PROD_ALERT_WEBHOOK",event="apply-failed",outcome="failed"}"#;
    eventually(60, "the apply-failed alert given up", || {
        value(&scrape(&run), failed_alert) == Some(1.0)
    });
    let text = scrape(&run);
    let applies = |gateway: &str, outcome: &str| {
        value(
            &text,
            &format!(
                r#"sluice_gateway_applies_total{{environment="production",gateway="{gateway}",outcome="{outcome}"}}"#
            ),
        )
    };
    assert_eq!(applies("gw-up", "applied"), Some(1.0), "{text}");
    assert_eq!(applies("gw-down", "failed"), Some(1.0), "{text}");
    assert_eq!(applies("gw-up", "failed"), None, "{text}");
    assert_eq!(applies("gw-down", "applied"), None, "{text}");
    for gateway in ["gw-up", "gw-down"] {
        let count = format!(
            r#"sluice_gateway_apply_duration_seconds_count{{environment="production",gateway="{gateway}"}}"#
        );
        assert_eq!(value(&text, &count), Some(1.0), "{count} in {text}");
    }
    let tries = r#"sluice_alerts_failed_attempts_total{sink="PROD_ALERT_WEBHOOK"}"#;
    assert!(value(&text, tries).is_some_and(|n| n >= 1.0), "{text}");
    for fate in ["sent", "dropped"] {
        assert!(
            !text.contains(&format!(r#"event="apply-failed",outcome="{fate}""#)),
            "{fate}: {text}"
        );
    }

    let version = sluice(&["version", "-o", "json"]).json();
    let commit = version["commit"].as_str().unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("sluice_build_info{")
            && l.contains(&format!("commit=\"{commit}\""))
            && l.ends_with("} 1")),
        "{commit} in {text}"
    );

    // The dead gateway is removed from the configuration: its series go.
    repo.write(
        "environments/production/gateways.yaml",
        gateways_yaml(&[("gw-up", &up.url)]),
    );
    repo.commit("gw-down is gone");
    let (status, body) = http("POST", &format!("{}/api/v1/sync", run.url), &[], "");
    assert!((200..300).contains(&status), "{status}: {body}");
    eventually(60, "gw-down's series removed", || {
        !scrape(&run).contains(r#"gateway="gw-down""#)
    });
    let text = scrape(&run);
    assert!(text.contains(r#"gateway="gw-up""#), "{text}");
}
