//! Benchmark of enforcement (issue 13): `POST /v1/chat/completions` through
//! the reference gateway running the example repository's production
//! document (audit-logger, pii-detector, prompt-injection, model-allowlist,
//! rate-limit) with the echo upstream, against a floor measured in the
//! same run: an axum server on the same runtime that parses the same
//! request and answers the same echo completion, without evaluating.
//!
//! `cargo bench --bench enforce`. The production rate limit (600 a minute)
//! is raised to 10^9 so every request goes through the whole chain and is
//! forwarded rather than answered `429`; the gateway is ephemeral, so the
//! audit record goes to memory. Rounds alternate floor and gateway; each
//! measures sequential latency (one client, p50/p99) and throughput
//! (`CONCURRENCY` clients). Figures go to BENCHMARKS.md by hand.

use axum::{
    Router,
    body::Bytes,
    extract::DefaultBodyLimit,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::post,
};
use serde_json::{Value, json};
use sluice::{
    config::{Limits, load, render_all},
    enforce::{ChatRequest, Counters, Engine},
    gateway::reference::{
        MAX_BODY_BYTES, ReferenceGateway, ReferenceOptions,
        chat::{CHAT_PATH, echo_completion},
    },
    source::WorkTree,
};
use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::net::TcpListener;

const ROUNDS: usize = 5;
const WARMUP: usize = 300;
const SEQUENTIAL: usize = 2_000;
const CONCURRENCY: usize = 16;
const CONCURRENT: usize = 8_000;
const ENGINE_RUNS: usize = 20_000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run());
}

/// The production document of the bundled example, rate limit raised.
fn production_document() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo");
    let snapshot = WorkTree::open(&root).unwrap();
    let loaded = load(&snapshot, &Limits::default()).unwrap();
    let repository = loaded.repository.expect("the example is valid");
    let gateway = render_all(&repository, Some("production"))
        .into_iter()
        .next()
        .expect("production has a gateway");
    let mut document = gateway.config();
    let settings = &mut document["packs"]["models"]["settings"]["rate-limit"];
    assert!(settings.is_object(), "production has its rate limit");
    settings["requests_per_minute"] = json!(1_000_000_000u64);
    document
}

/// A typical prompt: a system message and ~600 characters from a user,
/// nothing any policy acts on.
fn request_body() -> Vec<u8> {
    let question = "Our quarterly report covers revenue, costs and hiring across the three \
        regions. Summarise the main changes since last quarter in five bullet points, \
        mention any region where costs grew faster than revenue, and suggest two \
        questions the board is likely to ask about hiring plans for the next half year. \
        Keep the tone neutral and the whole answer under two hundred words, and list the \
        figures you relied on at the end so the finance team can check them quickly.";
    json!({
        "model": "gpt-4o",
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "You are a concise analyst for the finance team."},
            {"role": "user", "content": question},
        ],
    })
    .to_string()
    .into_bytes()
}

async fn floor(body: Bytes) -> axum::response::Response {
    match ChatRequest::parse(&body) {
        Ok(request) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            echo_completion(&request, "floor", 0).to_string(),
        )
            .into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{CHAT_PATH}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

struct Figures {
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

async fn one(client: &reqwest::Client, url: &str, body: &[u8]) -> Duration {
    let started = Instant::now();
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.bytes().await.unwrap();
    started.elapsed()
}

async fn measure(client: &reqwest::Client, url: &str, body: &Arc<Vec<u8>>) -> Figures {
    for _ in 0..WARMUP {
        one(client, url, body).await;
    }
    let mut latencies = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        latencies.push(one(client, url, body).await);
    }
    latencies.sort();
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
            tokio::spawn(async move {
                for _ in 0..CONCURRENT / CONCURRENCY {
                    one(&client, &url, &body).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    Figures {
        p50: latencies[latencies.len() / 2],
        p99: latencies[latencies.len() * 99 / 100],
        per_second: CONCURRENT as f64 / started.elapsed().as_secs_f64(),
    }
}

async fn run() {
    let document = production_document();
    let gateway = ReferenceGateway::open(ReferenceOptions::default()).unwrap();
    let gateway_url = serve(gateway.router()).await;
    let floor_url = serve(
        Router::new()
            .route(CHAT_PATH, post(floor))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
    )
    .await;
    let client = reqwest::Client::new();
    let admin = gateway_url.replace(CHAT_PATH, "/admin/v1/config");
    let put = client
        .put(&admin)
        .body(document.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());

    let body = Arc::new(request_body());
    let check: Value = client
        .post(&gateway_url)
        .body(body.to_vec())
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(check["sluice"]["outcome"], "allowed", "{check}");
    let chain: Vec<String> = document["packs"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p["chain"].as_array().unwrap().clone())
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    println!(
        "chain: {} ; request {} bytes; {SEQUENTIAL} sequential, {CONCURRENT} at concurrency {CONCURRENCY}",
        chain.join(" → "),
        body.len()
    );

    // The engine alone, in this thread: what evaluation adds at most.
    let engine = Engine::from_document(&document).unwrap();
    let request = ChatRequest::parse(&body).unwrap();
    let mut counters = Counters::default();
    let started = Instant::now();
    for _ in 0..ENGINE_RUNS {
        let evaluation = engine.evaluate(&mut counters, &request, Instant::now());
        assert!(evaluation.forwarded.is_some());
    }
    println!(
        "engine.evaluate alone: {:.1} µs per request ({ENGINE_RUNS} runs)",
        started.elapsed().as_secs_f64() * 1e6 / ENGINE_RUNS as f64
    );

    let mut ratios = Vec::new();
    for round in 0..ROUNDS {
        // Alternate which goes first, so warming and noise fall on both.
        let (floor, sluice) = if round % 2 == 0 {
            let f = measure(&client, &floor_url, &body).await;
            (f, measure(&client, &gateway_url, &body).await)
        } else {
            let s = measure(&client, &gateway_url, &body).await;
            (measure(&client, &floor_url, &body).await, s)
        };
        let ratio = sluice.p50.as_secs_f64() / floor.p50.as_secs_f64();
        ratios.push(ratio);
        println!(
            "round {round}: floor p50 {:>4} µs p99 {:>4} µs {:>6.0} req/s | gateway p50 {:>4} µs p99 {:>4} µs {:>6.0} req/s | p50 ratio {ratio:.2}",
            floor.p50.as_micros(),
            floor.p99.as_micros(),
            floor.per_second,
            sluice.p50.as_micros(),
            sluice.p99.as_micros(),
            sluice.per_second,
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "gateway/floor at p50: median of {ROUNDS} rounds {:.2} (min {:.2}, max {:.2}); goal ≤ 1.3",
        ratios[ROUNDS / 2],
        ratios[0],
        ratios[ROUNDS - 1]
    );
}
