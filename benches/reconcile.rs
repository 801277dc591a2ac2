//! Benchmark of the standalone reconciler against 10,000 gateways.
//!
//! `cargo bench --bench reconcile` starts one light, protocol-faithful HTTP
//! server on 127.0.0.1 that hosts 10,000 gateways (`/g/<id>/sluice/v1/…`:
//! status, conditional PUT with digest check and generations), generates a
//! repository of 100 environments × 100 http gateways, commits it, and
//! measures:
//!
//! - `sluice sync` from commit to every gateway verified, and its peak RSS;
//! - a second `sluice sync` that changes nothing;
//! - the floor: a bare tokio client doing the same GET + PUT + GET per
//!   gateway at the same concurrency, and Sluice's time as a ratio to it;
//! - `sluice run`: webhook to the first gateway applied (p50 of 10 pushes).

mod common;

use common::{git, write};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use sluice::{config::Digest, server::webhook::github_signature};
use std::{
    collections::HashMap,
    fmt::Write as _,
    fs,
    path::{Path as FsPath, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The operator's allowances of the benchmark: its gateways are on loopback.
const OPERATOR: [(&str, &str); 1] = [("SLUICE_ALLOW_URL", "*=http://127.0.0.1:*")];

const ENVIRONMENTS: usize = 100;
const GATEWAYS_PER_ENVIRONMENT: usize = 100;
const CONCURRENCY: usize = 32;
const WEBHOOK_RUNS: usize = 10;
/// Rounds of Sluice against the floor.
const ROUNDS: usize = 5;
/// Gateways hand-edited before the drift scan.
const DRIFTED: usize = 100;

#[derive(Default)]
struct Fleet {
    gateways: Mutex<HashMap<String, Running>>,
    /// When the first PUT after `mark` arrived.
    first_put: Mutex<Option<Instant>>,
    mark: Mutex<Option<Instant>>,
}

#[derive(Clone)]
struct Running {
    digest: String,
    generation: u64,
    body: Bytes,
}

async fn config(State(fleet): State<Arc<Fleet>>, Path(id): Path<String>) -> Response {
    match fleet.gateways.lock().unwrap().get(&id).cloned() {
        Some(r) => (
            StatusCode::OK,
            [("etag", format!("\"{}\"", r.digest))],
            r.body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// What a hand edit does: `count` gateways now run another document.
fn hand_edit(fleet: &Fleet, count: usize) {
    let mut gateways = fleet.gateways.lock().unwrap();
    for id in ids().take(count) {
        let running = gateways.get_mut(&id).expect("applied");
        let text = String::from_utf8_lossy(&running.body).replace("\"redact\"", "\"block\"");
        assert_ne!(
            text.as_bytes(),
            &running.body[..],
            "the edit changes something"
        );
        running.digest = Digest::of_json(&text).unwrap().to_string();
        running.body = Bytes::from(text);
    }
}

async fn status(State(fleet): State<Arc<Fleet>>, Path(id): Path<String>) -> Response {
    let running = fleet.gateways.lock().unwrap().get(&id).cloned();
    let (digest, generation) = running.map_or((String::new(), 0), |r| (r.digest, r.generation));
    let body = serde_json::json!({
        "digest": digest, "generation": generation, "packs": {},
        "appliedAt": null, "startedAt": "2026-11-23T00:00:00Z", "lastError": null,
    });
    axum::Json(body).into_response()
}

async fn put(
    State(fleet): State<Arc<Fleet>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    {
        let mark = *fleet.mark.lock().unwrap();
        let mut first = fleet.first_put.lock().unwrap();
        if mark.is_some() && first.is_none() {
            *first = Some(Instant::now());
        }
    }
    let Some(digest) = std::str::from_utf8(&body).ok().and_then(Digest::of_json) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, "not JSON").into_response();
    };
    let generation: u64 = headers
        .get("sluice-generation")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut gateways = fleet.gateways.lock().unwrap();
    let running = gateways.get(&id).cloned();
    if running
        .as_ref()
        .is_some_and(|r| r.digest == digest.as_str())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let precondition = match (
        &running,
        headers.get("if-match"),
        headers.get("if-none-match"),
    ) {
        (None, _, Some(_)) => true,
        (Some(r), Some(tag), _) => tag.to_str().is_ok_and(|t| t.trim_matches('"') == r.digest),
        _ => false,
    };
    if !precondition {
        return StatusCode::PRECONDITION_FAILED.into_response();
    }
    if running.as_ref().is_some_and(|r| generation < r.generation) {
        return StatusCode::CONFLICT.into_response();
    }
    gateways.insert(
        id,
        Running {
            digest: digest.as_str().to_owned(),
            generation,
            body,
        },
    );
    (StatusCode::OK, [("etag", format!("\"{digest}\""))]).into_response()
}

async fn serve(fleet: Arc<Fleet>) -> String {
    let app = Router::new()
        .route("/g/{id}/sluice/v1/status", get(status))
        .route(
            "/g/{id}/sluice/v1/config",
            axum::routing::put(put).get(config),
        )
        .with_state(fleet);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fleet = Arc::new(Fleet::default());
    let base = runtime.block_on(serve(fleet.clone()));
    let binary = sluice_binary();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    generate(&repo, &base);
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "fleet"]);

    // NB: Sluice and the floor take turns, so both see the same machine;
    // the figure is the median of the rounds' ratios.
    let mut rounds = Vec::new();
    let mut data = dir.path().join("data");
    for round in 0..ROUNDS {
        fleet.gateways.lock().unwrap().clear();
        data = dir.path().join(format!("data-{round}"));
        let (sluice, rss) = timed_sync(&binary, &repo, &data);
        let applied = fleet.gateways.lock().unwrap().len();
        assert_eq!(
            applied,
            ENVIRONMENTS * GATEWAYS_PER_ENVIRONMENT,
            "every gateway applied"
        );
        let floor = runtime.block_on(floor(&base, &repo, &fleet));
        println!(
            "round {round}: sluice sync, commit to all {applied} gateways verified: {sluice:.2?} (peak RSS {} MiB); floor: {floor:.2?}; ratio {:.2}",
            rss / 1024,
            sluice.as_secs_f64() / floor.as_secs_f64()
        );
        rounds.push((sluice, floor));
    }
    let mut ratios: Vec<f64> = rounds
        .iter()
        .map(|(s, f)| s.as_secs_f64() / f.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "sluice/floor (bare tokio client, GET+PUT+GET per gateway, concurrency {CONCURRENCY}): median of {ROUNDS} rounds {:.2} (min {:.2}, max {:.2})",
        ratios[ROUNDS / 2],
        ratios[0],
        ratios[ROUNDS - 1]
    );
    let applied = ENVIRONMENTS * GATEWAYS_PER_ENVIRONMENT;
    let (again, rss) = timed_sync(&binary, &repo, &data);
    println!(
        "sluice sync, no change, all {applied} gateways read: {again:.2?}, peak RSS {} MiB",
        rss / 1024
    );

    hand_edit(&fleet, DRIFTED);
    let (scan, rss) = timed(&binary, "drift", &repo, &data, 1);
    println!(
        "sluice drift, read-only scan of all {applied} gateways ({DRIFTED} drifted, each read and diffed): {scan:.2?}, peak RSS {} MiB",
        rss / 1024
    );
    // An explicit sync puts the hand edits back before the webhook runs.
    timed_sync(&binary, &repo, &data);

    webhook_latency(&runtime, &binary, &repo, &data, &fleet);
}

/// Runs `sluice sync` and returns its wall time and peak RSS (KiB).
fn timed_sync(binary: &FsPath, repo: &FsPath, data: &FsPath) -> (Duration, u64) {
    timed(binary, "sync", repo, data, 0)
}

/// Runs `sluice COMMAND` over the fleet, expecting exit `code`; returns its
/// wall time and peak RSS (KiB).
fn timed(
    binary: &FsPath,
    command: &str,
    repo: &FsPath,
    data: &FsPath,
    code: i32,
) -> (Duration, u64) {
    let start = Instant::now();
    let output = Command::new("/usr/bin/time")
        .envs(OPERATOR)
        .args(["-f", "%M"])
        .arg(binary)
        .args([command, "--concurrency", &CONCURRENCY.to_string(), "--repo"])
        .arg(repo)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .output()
        .expect("sluice runs");
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "sluice {command}: {stderr}"
    );
    let rss = stderr
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    (elapsed, rss)
}

/// The same work without Sluice: for every gateway, read its status, PUT
/// the rendered document, read the status again.
async fn floor(base: &str, repo: &FsPath, fleet: &Fleet) -> Duration {
    fleet.gateways.lock().unwrap().clear();
    let body: Arc<str> = rendered_body(repo).into();
    let client = reqwest::Client::new();
    let ids: Vec<String> = ids().collect();
    let start = Instant::now();
    let work = ids.into_iter().map(|id| {
        let client = client.clone();
        let body = body.clone();
        let base = base.to_owned();
        async move {
            let status = format!("{base}/g/{id}/sluice/v1/status");
            read(&client, &status).await;
            let response = client
                .put(format!("{base}/g/{id}/sluice/v1/config"))
                .header("if-none-match", "*")
                .header("sluice-generation", "1")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
            read(&client, &status).await;
        }
    });
    use futures::StreamExt;
    futures::stream::iter(work)
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    start.elapsed()
}

async fn read(client: &reqwest::Client, url: &str) {
    client.get(url).send().await.unwrap().bytes().await.unwrap();
}

/// Webhook to the first gateway applied, with `sluice run` following the repo.
fn webhook_latency(
    runtime: &tokio::runtime::Runtime,
    binary: &FsPath,
    repo: &FsPath,
    data: &FsPath,
    fleet: &Fleet,
) {
    let secret = "bench-secret";
    let mut child = Command::new(binary)
        .envs(OPERATOR)
        .args([
            "run",
            "--interval",
            "1h",
            "--listen",
            "127.0.0.1:0",
            "--repo",
        ])
        .arg(repo)
        .arg("--data-dir")
        .arg(data)
        .env("SLUICE_WEBHOOK_SECRET", secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = format!(
        "http://{}/hooks/git",
        line.trim().trim_start_matches("listening on ")
    );
    let client = reqwest::Client::new();
    let mut latencies = Vec::new();
    let metrics = url.replace("/hooks/git", "/metrics");
    for run in 0..WEBHOOK_RUNS {
        // Wait until the previous pass is over: every gateway runs the head,
        // and the last environment of the pass has been counted (a push
        // during a pass would wait for it, measuring the pass, not the hook).
        wait_converged(binary, data);
        wait_passes(runtime, &client, &metrics, run + 1);
        let pack = repo.join("environments/env-000/packs/base-00.yaml");
        fs::write(&pack, own_pack(1000 + run)).unwrap();
        git(repo, &["commit", "-q", "-am", "push"]);
        *fleet.first_put.lock().unwrap() = None;
        let body = r#"{"ref":"refs/heads/main"}"#;
        let sent = Instant::now();
        *fleet.mark.lock().unwrap() = Some(sent);
        let response = runtime.block_on(
            client
                .post(&url)
                .header(
                    "x-hub-signature-256",
                    github_signature(secret, body.as_bytes()),
                )
                .body(body)
                .send(),
        );
        assert_eq!(response.unwrap().status(), 202);
        let deadline = Instant::now() + Duration::from_secs(60);
        let first = loop {
            if let Some(first) = *fleet.first_put.lock().unwrap() {
                break first;
            }
            assert!(Instant::now() < deadline, "no apply after the webhook");
            std::thread::sleep(Duration::from_millis(1));
        };
        *fleet.mark.lock().unwrap() = None;
        latencies.push(first - sent);
    }
    let _ = child.kill();
    let _ = child.wait();
    latencies.sort();
    println!(
        "webhook to first gateway applied ({WEBHOOK_RUNS} pushes): p50 {:.1?}, min {:.1?}, max {:.1?}",
        latencies[WEBHOOK_RUNS / 2],
        latencies[0],
        latencies[WEBHOOK_RUNS - 1]
    );
}

/// Waits until `sluice run` has finished `passes` passes over the last environment.
fn wait_passes(
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    metrics: &str,
    passes: usize,
) {
    let last = format!("env-{:03}", ENVIRONMENTS - 1);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = runtime
            .block_on(async { client.get(metrics).send().await?.text().await })
            .unwrap_or_default();
        let counted: usize = text
            .lines()
            .filter(|l| {
                l.starts_with("sluice_reconciles_total")
                    && l.contains(&format!("environment=\"{last}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<usize>().ok())
            .sum();
        if counted >= passes {
            return;
        }
        assert!(Instant::now() < deadline, "the pass never finished");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_converged(binary: &FsPath, data: &FsPath) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = Command::new(binary)
            .envs(OPERATOR)
            .arg("status")
            .arg("--data-dir")
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if status.success() {
            return;
        }
        assert!(Instant::now() < deadline, "never converged");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ids() -> impl Iterator<Item = String> {
    (0..ENVIRONMENTS)
        .flat_map(|e| (0..GATEWAYS_PER_ENVIRONMENT).map(move |g| format!("env-{e:03}-gw-{g:03}")))
}

fn rendered_body(repo: &FsPath) -> String {
    let snapshot = sluice::source::GitSnapshot::open(repo, "HEAD").unwrap();
    let loaded = sluice::config::load(&snapshot, &sluice::config::Limits::default()).unwrap();
    let rendered = sluice::config::render_all(loaded.repository.as_ref().unwrap(), Some("env-001"));
    rendered[0].canonical.to_string()
}

fn generate(repo: &FsPath, base: &str) {
    let example = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo");
    write(repo, "sluice.yaml", "promotion:\n  order: []\n");
    for pack in ["baseline", "models"] {
        let text = fs::read_to_string(example.join(format!("base/packs/{pack}.yaml"))).unwrap();
        write(repo, &format!("base/packs/{pack}.yaml"), &text);
    }
    for e in 0..ENVIRONMENTS {
        let slug = format!("env-{e:03}");
        write(
            repo,
            &format!("environments/{slug}/environment.yaml"),
            &format!("slug: {slug}\nname: Environment {e}\n"),
        );
        let mut gateways = String::from("gateways:\n");
        for g in 0..GATEWAYS_PER_ENVIRONMENT {
            let _ = write!(
                gateways,
                "  - name: gw-{g:03}\n    driver: http\n    url: {base}/g/{slug}-gw-{g:03}\n"
            );
        }
        write(
            repo,
            &format!("environments/{slug}/gateways.yaml"),
            &gateways,
        );
        write(
            repo,
            &format!("environments/{slug}/packs/base-00.yaml"),
            &own_pack(999),
        );
    }
}

/// A pack of the environment's own, with a rate limit to change.
fn own_pack(requests_per_minute: usize) -> String {
    format!(
        "pack:\n  name: base-00\n  version: 1.0.0\npolicies:\n  chain: [rate-limit]\npolicy:\n  rate-limit:\n    requests_per_minute: {requests_per_minute}\n"
    )
}

fn sluice_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let release = exe
        .parent()
        .and_then(FsPath::parent)
        .expect("target/release");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--bin", "sluice"])
        .status()
        .expect("cargo builds");
    assert!(status.success());
    release.join("sluice")
}
