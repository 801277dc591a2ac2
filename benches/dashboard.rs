//! Benchmark of the dashboard at the scale of `benches/reconcile.rs`:
//! 100 environments × 100 gateways (10,000), with a ledger that holds what
//! a fleet that size records (every gateway's record, 10 attempts per
//! gateway, 100,000 in all, a drift episode per environment and a
//! deployment each), in a real SQLite file, served by the real router on
//! 127.0.0.1.
//!
//! `cargo bench --bench dashboard` measures, over real HTTP:
//! - the overview (`GET /`): server time (median and p90 of 20) and bytes;
//! - one history page (`GET /environments/env-000/history`), the newest
//!   and one 1,000 pages deep (by following `Older` links): server time;
//! - an environment page and a gateway page;
//! - with Chromium and playwright-core installed (scripts/install-deps.sh),
//!   first contentful paint of the overview in headless Chromium
//!   (`benches/dashboard/fcp.mjs`).
//!
//! The goals (issue 14): each page's server time < 100 ms, first contentful
//! paint < 1 s. Argo CD's figures for the same question are in
//! BENCHMARKS.md (8,000 applications listed in 35 s, argo-cd#9575).

use sluice::{
    config::Digest,
    ledger::{
        AttemptStart, Deployment, DriftEpisode, GatewayRecord, GatewayState, Ledger, Outcome,
        SqliteLedger, Trigger, WriteBatch,
    },
    server::{self, ServerState},
};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

const ENVIRONMENTS: usize = 100;
const GATEWAYS_PER_ENVIRONMENT: usize = 100;
const ATTEMPTS_PER_GATEWAY: usize = 10;
const SAMPLES: usize = 20;
const T0: i64 = 1_790_000_000_000;

fn digest(i: usize) -> Digest {
    Digest::of(format!("version {i}").as_bytes())
}

fn commit(i: usize) -> String {
    Digest::of(format!("commit {i}").as_bytes()).as_str()[7..47].to_owned()
}

/// Fills `ledger` as a 10,000-gateway fleet would.
fn populate(ledger: &SqliteLedger) {
    let mut records = Vec::new();
    for e in 0..ENVIRONMENTS {
        let environment = format!("env-{e:03}");
        for round in 0..ATTEMPTS_PER_GATEWAY {
            let starts: Vec<AttemptStart> = (0..GATEWAYS_PER_ENVIRONMENT)
                .map(|g| AttemptStart {
                    environment: environment.clone(),
                    gateway: format!("gw-{g:03}"),
                    revision: commit(round),
                    digest: digest(e * 100 + round),
                    trigger: Trigger::Poll,
                    started_at: T0 + (round * 60_000) as i64,
                })
                .collect();
            let started = ledger
                .write(&WriteBatch {
                    starts,
                    ..Default::default()
                })
                .unwrap();
            for id in started.started {
                ledger
                    .finish_attempt(
                        id.unwrap(),
                        T0 + (round * 60_000 + 40) as i64,
                        Outcome::Applied,
                        None,
                    )
                    .unwrap();
            }
        }
        for g in 0..GATEWAYS_PER_ENVIRONMENT {
            let drifted = g == 7;
            records.push(GatewayRecord {
                environment: environment.clone(),
                gateway: format!("gw-{g:03}"),
                desired_digest: Some(digest(e * 100 + ATTEMPTS_PER_GATEWAY - 1)),
                desired_revision: Some(commit(ATTEMPTS_PER_GATEWAY - 1)),
                observed_digest: Some(digest(
                    e * 100 + ATTEMPTS_PER_GATEWAY - usize::from(!drifted),
                )),
                state: if drifted {
                    GatewayState::Drifted
                } else {
                    GatewayState::InSync
                },
                changed_at: T0,
                updated_at: T0 + 600_000,
                error: None,
            });
        }
        ledger
            .record_deployment(&Deployment {
                environment: environment.clone(),
                revision: commit(ATTEMPTS_PER_GATEWAY - 1),
                digest: digest(e * 100 + ATTEMPTS_PER_GATEWAY - 1),
                packs: Vec::new(),
                verified_at: T0 + 600_000,
            })
            .unwrap();
        ledger
            .open_drift(&DriftEpisode {
                environment: environment.clone(),
                gateway: "gw-007".into(),
                revision: commit(ATTEMPTS_PER_GATEWAY - 1),
                desired_digest: digest(e * 100 + ATTEMPTS_PER_GATEWAY - 1),
                live_digest: Some(digest(e * 100 + ATTEMPTS_PER_GATEWAY)),
                changes: serde_json::from_str(r#"[{"pointer":"/enforcement","kind":"changed","from":"enforce","to":"monitor"}]"#).unwrap(),
                onset_at: T0 + 500_000,
                resolved_at: None,
                resolution: None,
            })
            .unwrap();
    }
    ledger.upsert_gateways(&records).unwrap();
}

/// Median and p90 of `samples` GETs of `url` (after one warm-up), and the
/// bytes of the answer.
async fn measure(client: &reqwest::Client, url: &str) -> (Duration, Duration, usize) {
    let mut times = Vec::new();
    let mut bytes = 0;
    for i in 0..=SAMPLES {
        let started = Instant::now();
        let response = client.get(url).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        let body = response.bytes().await.unwrap();
        if i > 0 {
            times.push(started.elapsed());
        }
        bytes = body.len();
    }
    times.sort();
    (times[SAMPLES / 2], times[SAMPLES * 9 / 10], bytes)
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let ledger = SqliteLedger::open(&path).unwrap();
    let filled = Instant::now();
    populate(&ledger);
    println!(
        "ledger: {} gateways, {} attempts, written in {:.1} s",
        ENVIRONMENTS * GATEWAYS_PER_ENVIRONMENT,
        ENVIRONMENTS * GATEWAYS_PER_ENVIRONMENT * ATTEMPTS_PER_GATEWAY,
        filled.elapsed().as_secs_f64()
    );
    let ledger: Arc<dyn Ledger> = Arc::new(ledger);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let state = Arc::new(ServerState {
            ledger,
            ledger_health: Default::default(),
            ready: Default::default(),
            metrics: Default::default(),
            tokens: Default::default(),
            webhook_secret: None,
            sync: Default::default(),
            passes: None,
            dashboard: Default::default(),
        });
        state.dashboard.passed(T0 + 600_000);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(server::serve(
            listener,
            server::router(state),
            Default::default(),
            std::future::pending(),
        ));
        let client = reqwest::Client::new();
        println!("page                                   median     p90        bytes");
        let row = |name: &str, (median, p90, bytes): (Duration, Duration, usize)| {
            println!("{name:<38} {:<10} {:<10} {bytes}", ms(median), ms(p90));
        };
        row(
            "overview GET /",
            measure(&client, &format!("{base}/")).await,
        );
        if let Ok(path) = std::env::var("SLUICE_BENCH_DUMP") {
            let page = client.get(format!("{base}/")).send().await.unwrap();
            std::fs::write(path, page.text().await.unwrap()).unwrap();
        }
        let history = format!("{base}/environments/env-000/history");
        row("history, newest page", measure(&client, &history).await);
        // The 20th page (attempts 951–1,000): 19 Older links on.
        let mut deep = history.clone();
        for _ in 0..19 {
            let page = client
                .get(&deep)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let at = page
                .find(r#"id="older" rel="next" href=""#)
                .expect("an older page")
                + 28;
            let href = page[at..].split('"').next().unwrap().replace("&amp;", "&");
            deep = format!("{base}{href}");
        }
        row(
            "history, 20th page (by Older links)",
            measure(&client, &deep).await,
        );
        row(
            "environment page",
            measure(&client, &format!("{base}/environments/env-042")).await,
        );
        row(
            "gateway page (drifted)",
            measure(
                &client,
                &format!("{base}/environments/env-042/gateways/gw-007"),
            )
            .await,
        );
        row(
            "API GET /api/v1/status (same data)",
            measure(&client, &format!("{base}/api/v1/status")).await,
        );
        fcp(&base);
    });
}

/// First contentful paint of the overview in headless Chromium, when the
/// browser test's dependencies are installed.
fn fcp(base: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/dashboard/fcp.mjs");
    let node_path = std::process::Command::new("bash")
        .args([concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/browser-env.sh"
        )])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let Some(node_path) = node_path else {
        println!(
            "first contentful paint: skipped (no Chromium/playwright-core; run scripts/install-deps.sh)"
        );
        return;
    };
    let url = format!("{base}/");
    let output = std::process::Command::new("node")
        .args([script, &url])
        .env("NODE_PATH", node_path)
        .output()
        .expect("node runs");
    if output.status.success() {
        println!(
            "first contentful paint of the overview: {}",
            String::from_utf8_lossy(&output.stdout).trim()
        );
    } else {
        println!(
            "first contentful paint: failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
