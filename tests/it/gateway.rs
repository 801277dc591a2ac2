//! The reference gateway and the http driver, as separate processes on 127.0.0.1.

use crate::support::{GatewayProcess, example_dir};
use serde_json::Value;
use sluice::{
    config::Allowances,
    config::{Digest, Limits, load, model, render_all},
    gateway::{
        self, Applied, Desired, DriverContext, Gateway, GatewayError, Secrets, http::HttpGateway,
    },
    source::WorkTree,
};
use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

const TOKEN: &str = "tok-3f9a1c0e-never-print-me";
const TOKEN_ENV: &str = "TEST_GATEWAY_TOKEN";

/// Distinct valid documents: the bundled example rendered, one per digest.
fn documents() -> Vec<Desired> {
    let tree = WorkTree::open(&example_dir()).expect("example opens");
    let loaded = load(&tree, &Limits::default()).expect("example loads");
    let repository = loaded.repository.expect("example is valid");
    let mut documents: Vec<Desired> = Vec::new();
    for rendered in render_all(&repository, None) {
        if documents.iter().all(|d| d.digest != rendered.digest) {
            documents.push(Desired {
                environment: rendered.environment.clone(),
                gateway: rendered.gateway.clone(),
                digest: rendered.digest.clone(),
                body: rendered.canonical.clone(),
                revision: "worktree".into(),
            });
        }
    }
    assert!(
        documents.len() >= 2,
        "the example renders at least two distinct documents"
    );
    documents
}

/// A document the gateway must refuse: a chain naming an unknown policy.
fn invalid_document() -> String {
    let mut value: Value = serde_json::from_str(&documents()[0].body).unwrap();
    let packs = value["packs"].as_object_mut().unwrap();
    let pack = packs.values_mut().next().expect("a pack");
    pack["chain"][0] = "pii-detecter".into();
    value.to_string()
}

fn spec(url: &str, token: bool, timeout: Option<&str>) -> model::HttpGateway {
    model::HttpGateway {
        name: "gw".into(),
        url: url.to_owned(),
        token_env: token.then(|| model::EnvVarName(TOKEN_ENV.into())),
        timeout: timeout.map(|t| model::DurationText(t.into())),
    }
}

fn context(token: Option<&str>) -> DriverContext {
    let token = token.map(str::to_owned);
    // The operator allows this test's variable and loopback URLs.
    let allowances = Allowances::new(
        vec![format!("*={TOKEN_ENV}").parse().unwrap()],
        vec!["*=http://127.0.0.1:*".parse().unwrap()],
    );
    DriverContext {
        secrets: Secrets::new(
            Arc::new(move |name| (name == TOKEN_ENV).then(|| token.clone()).flatten()),
            Arc::new(allowances),
        ),
        timeout: Duration::from_secs(10),
        ..DriverContext::new(PathBuf::from("."))
    }
}

/// The driver as the reconciler gets it.
fn client(process: &GatewayProcess) -> Arc<dyn Gateway> {
    gateway::connect(
        "development",
        &model::Gateway::Http(spec(&process.url, true, None)),
        &context(Some(TOKEN)),
    )
    .expect("driver connects")
}

fn driver(process: &GatewayProcess) -> HttpGateway {
    HttpGateway::new(
        "development",
        &spec(&process.url, true, None),
        &context(Some(TOKEN)),
    )
    .unwrap()
}

/// A gateway with a token and a data directory.
fn start(data: &std::path::Path, extra: &[&str]) -> GatewayProcess {
    let mut args = vec!["--data", data.to_str().unwrap(), "--token-env", TOKEN_ENV];
    args.extend(extra);
    GatewayProcess::start(&args, &[(TOKEN_ENV, TOKEN)])
}

/// The admin API, as a person simulating a hand edit or a fault would use it.
async fn admin(
    process: &GatewayProcess,
    method: reqwest::Method,
    path: &str,
    body: String,
) -> reqwest::Response {
    reqwest::Client::new()
        .request(method, format!("{}{path}", process.url))
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .expect("admin request")
}

/// An admin request that must succeed.
async fn admin_ok(process: &GatewayProcess, method: reqwest::Method, path: &str, body: String) {
    let response = admin(process, method, path, body).await;
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.text().await.unwrap_or_default()
    );
}

async fn faults(process: &GatewayProcess, body: &str) {
    admin_ok(
        process,
        reqwest::Method::POST,
        "/admin/v1/faults",
        body.to_owned(),
    )
    .await;
}

#[tokio::test]
async fn apply_then_read_back_with_the_digest_as_etag() {
    let data = tempfile::tempdir().unwrap();
    let process = start(data.path(), &[]);
    let gateway = client(&process);
    let documents = documents();
    let first = &documents[0];

    let live = gateway.live().await.unwrap();
    assert_eq!(live.digest, None, "a new gateway runs nothing");
    assert_eq!(gateway.projection().await.unwrap(), None);

    let applied = gateway.apply(first, None, 1).await.unwrap();
    assert_eq!(
        applied,
        Applied::Swapped {
            digest: first.digest.clone()
        }
    );
    let live = gateway.live().await.unwrap();
    assert_eq!(live.digest.as_ref(), Some(&first.digest));
    assert_eq!(live.generation, Some(1));
    let config = gateway.projection().await.unwrap().expect("a config");
    assert_eq!(
        Digest::of_json(&config.to_string()).as_ref(),
        Some(&first.digest)
    );

    // GET and HEAD carry the digest as ETag; status lists the packs.
    let http = reqwest::Client::new();
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let response = http
            .request(method.clone(), format!("{}/sluice/v1/config", process.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{method}");
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        assert_eq!(etag, format!("\"{}\"", first.digest), "{method}");
    }
    let status: Value = http
        .get(format!("{}/sluice/v1/status", process.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["digest"], first.digest.as_str());
    assert!(
        status["packs"].as_object().is_some_and(|p| !p.is_empty()),
        "{status}"
    );
    assert!(
        status["startedAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{status}"
    );
    assert!(status["appliedAt"].as_str().is_some(), "{status}");

    // The driver's dry run agrees with the gateway.
    let driver = driver(&process);
    driver.validate(&documents[1].body).await.unwrap();
}

#[tokio::test]
async fn the_same_digest_is_not_modified() {
    let data = tempfile::tempdir().unwrap();
    let process = start(data.path(), &[]);
    let gateway = client(&process);
    let first = &documents()[0];
    gateway.apply(first, None, 1).await.unwrap();
    assert_eq!(
        gateway.apply(first, Some(&first.digest), 2).await.unwrap(),
        Applied::Unchanged
    );
    // Reformatted, the same document is the same digest.
    let pretty: Value = serde_json::from_str(&first.body).unwrap();
    let reformatted = Desired {
        body: Arc::from(serde_json::to_string_pretty(&pretty).unwrap()),
        ..first.clone()
    };
    assert_eq!(
        gateway
            .apply(&reformatted, Some(&first.digest), 3)
            .await
            .unwrap(),
        Applied::Unchanged
    );
    assert_eq!(
        gateway.live().await.unwrap().generation,
        Some(1),
        "nothing was done"
    );
}

#[tokio::test]
async fn a_hand_edit_makes_the_next_apply_fail_its_precondition() {
    let data = tempfile::tempdir().unwrap();
    let process = start(data.path(), &[]);
    let gateway = client(&process);
    let documents = documents();
    let (first, second) = (&documents[0], &documents[1]);
    gateway.apply(first, None, 1).await.unwrap();

    // Someone edits the running gateway by hand.
    let mut edited: Value = serde_json::from_str(&first.body).unwrap();
    edited["enforcement"] = if edited["enforcement"] == "enforce" {
        "monitor"
    } else {
        "enforce"
    }
    .into();
    admin_ok(
        &process,
        reqwest::Method::PUT,
        "/admin/v1/config",
        edited.to_string(),
    )
    .await;
    let live = gateway.live().await.unwrap();
    let hand_digest = live.digest.expect("runs the hand edit");
    assert_ne!(hand_digest, first.digest);
    assert_eq!(live.generation, Some(1), "a hand edit keeps the generation");

    let error = gateway
        .apply(second, Some(&first.digest), 2)
        .await
        .unwrap_err();
    assert!(matches!(error, GatewayError::Changed { .. }), "{error:?}");
    // Expecting nothing while something runs is a change too.
    let error = gateway.apply(second, None, 2).await.unwrap_err();
    assert!(matches!(error, GatewayError::Changed { .. }), "{error:?}");
    assert_eq!(
        gateway.live().await.unwrap().digest,
        Some(hand_digest.clone())
    );

    // Re-read, then the apply goes through.
    let applied = gateway.apply(second, Some(&hand_digest), 2).await.unwrap();
    assert_eq!(
        applied,
        Applied::Swapped {
            digest: second.digest.clone()
        }
    );

    // The admin API validates too.
    let response = admin(
        &process,
        reqwest::Method::PUT,
        "/admin/v1/config",
        invalid_document(),
    )
    .await;
    assert_eq!(response.status(), 422);
}

#[tokio::test]
async fn an_older_generation_is_a_conflict() {
    let data = tempfile::tempdir().unwrap();
    let process = start(data.path(), &[]);
    let gateway = client(&process);
    let documents = documents();
    gateway.apply(&documents[0], None, 7).await.unwrap();
    let error = gateway
        .apply(&documents[1], Some(&documents[0].digest), 6)
        .await
        .unwrap_err();
    match error {
        GatewayError::StaleGeneration { running, offered } => {
            assert_eq!((running, offered), (7, 6))
        }
        other => panic!("expected a stale generation, got {other:?}"),
    }
    // The same generation again is allowed (a retry of the same push).
    gateway
        .apply(&documents[1], Some(&documents[0].digest), 7)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_invalid_document_is_refused_and_the_old_one_keeps_running() {
    let data = tempfile::tempdir().unwrap();
    let process = start(data.path(), &[]);
    let gateway = client(&process);
    let first = &documents()[0];
    gateway.apply(first, None, 1).await.unwrap();

    let body = invalid_document();
    let bad = Desired {
        digest: Digest::of_json(&body).unwrap(),
        body: Arc::from(body),
        ..first.clone()
    };
    match gateway
        .apply(&bad, Some(&first.digest), 2)
        .await
        .unwrap_err()
    {
        GatewayError::Refused { problems } => {
            assert!(
                problems
                    .iter()
                    .any(|p| p.path.ends_with("/chain/0") && p.message.contains("pii-detecter")),
                "{problems:?}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let live = gateway.live().await.unwrap();
    assert_eq!(
        (live.digest.as_ref(), live.generation),
        (Some(&first.digest), Some(1))
    );
    let config = gateway.projection().await.unwrap().unwrap();
    assert_eq!(
        Digest::of_json(&config.to_string()).as_ref(),
        Some(&first.digest)
    );

    // Not JSON at all is refused the same way, and validate agrees.
    let driver = driver(&process);
    assert!(matches!(
        driver.validate("{not json").await,
        Err(GatewayError::Refused { .. })
    ));
    assert!(matches!(
        driver.validate(&bad.body).await,
        Err(GatewayError::Refused { .. })
    ));
}

#[tokio::test]
async fn a_put_during_a_slow_reload_is_told_to_retry() {
    let data = tempfile::tempdir().unwrap();
    let process = start(data.path(), &[]);
    let gateway = client(&process);
    let documents = documents();
    faults(&process, r#"{"reload_delay_ms": 1500}"#).await;

    let slow = {
        let gateway = gateway.clone();
        let first = documents[0].clone();
        tokio::spawn(async move { gateway.apply(&first, None, 1).await })
    };
    // Poll until the reload is under way. The probe can never swap: before
    // and after the slow reload its precondition fails (412); during it the
    // gateway is busy (429).
    let bogus = Digest::of(b"not what runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    let busy = loop {
        match gateway.apply(&documents[1], Some(&bogus), 2).await {
            Err(GatewayError::Busy { retry_after }) => break retry_after,
            Err(GatewayError::Changed { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "never saw the reload in progress"
        );
        assert!(
            !slow.is_finished(),
            "the slow reload finished before a probe saw it"
        );
    };
    assert!(
        busy.is_some_and(|d| d >= Duration::from_secs(1)),
        "Retry-After: {busy:?}"
    );
    let applied = slow.await.unwrap().unwrap();
    assert_eq!(
        applied,
        Applied::Swapped {
            digest: documents[0].digest.clone()
        }
    );
}

#[tokio::test]
async fn credentials_are_required_and_never_echoed() {
    let data = tempfile::tempdir().unwrap();
    let process = start(data.path(), &[]);
    let first = &documents()[0];

    let anonymous = gateway::connect(
        "development",
        &model::Gateway::Http(spec(&process.url, false, None)),
        &context(None),
    )
    .unwrap();
    let wrong = gateway::connect(
        "development",
        &model::Gateway::Http(spec(&process.url, true, None)),
        &context(Some("wrong-tok-never-print-me")),
    )
    .unwrap();
    for (who, gateway) in [("anonymous", &anonymous), ("wrong token", &wrong)] {
        let errors = [
            gateway.live().await.unwrap_err(),
            gateway.projection().await.unwrap_err(),
            gateway.apply(first, None, 1).await.unwrap_err(),
        ];
        for error in errors {
            assert!(
                matches!(error, GatewayError::Unauthorized { status: 401 }),
                "{who}: {error:?}"
            );
            let text = format!("{error} {error:?}");
            assert!(
                !text.contains(TOKEN) && !text.contains("never-print-me"),
                "{who}: {text}"
            );
        }
    }
    // The right token works; a missing variable names the variable, not a value.
    assert_eq!(client(&process).live().await.unwrap().digest, None);
    let Err(error) = gateway::connect(
        "development",
        &model::Gateway::Http(spec(&process.url, true, None)),
        &context(None),
    ) else {
        panic!("a missing token variable must fail");
    };
    assert!(
        matches!(error, GatewayError::Config(_)) && error.to_string().contains(TOKEN_ENV),
        "{error}"
    );
    // Nothing about the token in the gateway's own output either.
    assert!(!process.stderr().contains(TOKEN));

    // A gateway started without its token variable refuses to run open.
    let run = crate::support::sluice(&[
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--ephemeral",
        "--token-env",
        "SLUICE_TEST_UNSET_VARIABLE",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("SLUICE_TEST_UNSET_VARIABLE"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_restart_keeps_digest_and_generation() {
    let data = tempfile::tempdir().unwrap();
    let first = &documents()[0];
    let before = {
        let process = start(data.path(), &[]);
        let gateway = client(&process);
        gateway.apply(first, None, 4).await.unwrap();
        gateway.live().await.unwrap()
        // Dropped: killed with SIGKILL, no chance to flush anything more.
    };
    let process = start(data.path(), &[]);
    let gateway = client(&process);
    assert_eq!(gateway.live().await.unwrap(), before);
    assert_eq!(before.digest.as_ref(), Some(&first.digest));
    assert_eq!(before.generation, Some(4));
    let config = gateway.projection().await.unwrap().unwrap();
    assert_eq!(
        Digest::of_json(&config.to_string()).as_ref(),
        Some(&first.digest)
    );
}

#[tokio::test]
async fn an_ephemeral_gateway_forgets_on_restart() {
    let first = &documents()[0];
    {
        let process = GatewayProcess::start(&["--ephemeral"], &[]);
        let gateway = gateway::connect(
            "development",
            &model::Gateway::Http(spec(&process.url, false, None)),
            &context(None),
        )
        .unwrap();
        gateway.apply(first, None, 1).await.unwrap();
        assert_eq!(
            gateway.live().await.unwrap().digest.as_ref(),
            Some(&first.digest)
        );
    }
    let process = GatewayProcess::start(&["--ephemeral"], &[]);
    let gateway = gateway::connect(
        "development",
        &model::Gateway::Http(spec(&process.url, false, None)),
        &context(None),
    )
    .unwrap();
    assert_eq!(gateway.live().await.unwrap().digest, None, "push again");
    assert_eq!(gateway.projection().await.unwrap(), None);
}

#[tokio::test]
async fn injected_errors_then_success() {
    let data = tempfile::tempdir().unwrap();
    let process = start(data.path(), &[]);
    let gateway = client(&process);
    faults(&process, r#"{"status": 500, "count": 2}"#).await;
    for _ in 0..2 {
        let error = gateway.live().await.unwrap_err();
        assert!(
            matches!(error, GatewayError::Status { status: 500, .. }),
            "{error:?}"
        );
        assert!(error.is_transient());
    }
    assert_eq!(gateway.live().await.unwrap().digest, None);

    faults(&process, r#"{"status": 503}"#).await;
    let first = &documents()[0];
    let error = gateway.apply(first, None, 1).await.unwrap_err();
    assert!(
        matches!(error, GatewayError::Status { status: 503, .. }),
        "{error:?}"
    );
    assert_eq!(
        gateway.live().await.unwrap().digest,
        None,
        "a failed request changes nothing"
    );
    gateway.apply(first, None, 1).await.unwrap();
}

#[tokio::test]
async fn a_hang_past_the_client_timeout_is_a_timeout() {
    let data = tempfile::tempdir().unwrap();
    let process = start(data.path(), &[]);
    let gateway = gateway::connect(
        "development",
        &model::Gateway::Http(spec(&process.url, true, Some("300ms"))),
        &context(Some(TOKEN)),
    )
    .unwrap();
    faults(&process, r#"{"hang_ms": 5000, "count": 1}"#).await;
    let started = Instant::now();
    let error = gateway.live().await.unwrap_err();
    assert!(
        matches!(error, GatewayError::Timeout(d) if d == Duration::from_millis(300)),
        "{error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "gave up in time"
    );
    assert!(error.is_transient());
    // The fault is spent; the gateway answers again.
    assert_eq!(gateway.live().await.unwrap().digest, None);
}

#[tokio::test]
async fn nobody_listening_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let gateway = gateway::connect(
        "development",
        &model::Gateway::Http(spec(&url, false, Some("2s"))),
        &context(None),
    )
    .unwrap();
    let error = gateway.live().await.unwrap_err();
    assert!(matches!(error, GatewayError::Unreachable(_)), "{error:?}");
}

#[test]
fn sigterm_shuts_it_down_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let mut process = start(data.path(), &[]);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &process.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = process
        .wait_exit(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}: {}", process.stderr());
}

/// A gateway that lies: `PUT` answers `200` with the new digest as `ETag`
/// and `/status` reports it, but `GET /sluice/v1/config` keeps serving the
/// first document, with its own `ETag` or (when `etag_lies`) the claimed one.
struct LyingGateway {
    url: String,
    _server: tokio::task::JoinHandle<()>,
}

impl LyingGateway {
    async fn start(served: &Desired, etag_lies: bool) -> LyingGateway {
        use axum::{
            extract::State,
            http::{HeaderMap, StatusCode},
            response::IntoResponse,
            routing::get,
        };
        use std::sync::Mutex;
        #[derive(Clone)]
        struct Lies {
            served: Arc<(String, String)>,
            claimed: Arc<Mutex<String>>,
            etag_lies: bool,
        }
        let lies = Lies {
            served: Arc::new((served.body.to_string(), served.digest.to_string())),
            claimed: Arc::new(Mutex::new(served.digest.to_string())),
            etag_lies,
        };
        let app = axum::Router::new()
            .route(
                sluice::gateway::protocol::STATUS_PATH,
                get(|State(lies): State<Lies>| async move {
                    let digest = lies.claimed.lock().unwrap().clone();
                    axum::Json(serde_json::json!({
                        "digest": digest, "generation": 1, "startedAt": "2026-12-01T00:00:00Z"
                    }))
                }),
            )
            .route(
                sluice::gateway::protocol::CONFIG_PATH,
                get(|State(lies): State<Lies>| async move {
                    let tag = if lies.etag_lies {
                        lies.claimed.lock().unwrap().clone()
                    } else {
                        lies.served.1.clone()
                    };
                    ([("etag", format!("\"{tag}\""))], lies.served.0.clone())
                })
                .put(
                    |State(lies): State<Lies>, _: HeaderMap, body: String| async move {
                        let digest = Digest::of_json(&body).unwrap().to_string();
                        *lies.claimed.lock().unwrap() = digest.clone();
                        (StatusCode::OK, [("etag", format!("\"{digest}\""))]).into_response()
                    },
                ),
            )
            .with_state(lies);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        LyingGateway {
            url,
            _server: server,
        }
    }
}

#[tokio::test]
async fn a_gateway_runs_what_it_serves_whatever_its_status_claims() {
    let documents = documents();
    for etag_lies in [false, true] {
        let gateway = LyingGateway::start(&documents[0], etag_lies).await;
        let driver = HttpGateway::new(
            "development",
            &spec(&gateway.url, false, None),
            &context(None),
        )
        .unwrap();
        // Before any lie, status and config agree.
        let live = driver.live().await.unwrap();
        assert_eq!(live.digest.as_ref(), Some(&documents[0].digest));

        let applied = driver
            .apply(&documents[1], Some(&documents[0].digest), 2)
            .await
            .unwrap();
        assert!(matches!(applied, Applied::Swapped { .. }), "{applied:?}");
        // What it serves is what it runs, whatever /status and the ETag say.
        let live = driver.verified().await.unwrap();
        assert_eq!(
            live.digest.as_ref(),
            Some(&documents[0].digest),
            "etag lies: {etag_lies}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_to_a_lying_gateway_fails_rather_than_records_it_applied() {
    let gateway = LyingGateway::start(&documents()[0], true).await;
    let repo = crate::support::TestRepo::example();
    repo.write(
        "environments/production/gateways.yaml",
        format!(
            "gateways:\n  - name: liar\n    driver: http\n    url: {}\n    timeout: 5s\n",
            gateway.url
        ),
    );
    repo.commit("a lying gateway");
    let data = tempfile::tempdir().unwrap();
    let (repo_path, data_path) = (
        repo.path().to_str().unwrap().to_owned(),
        data.path().to_str().unwrap().to_owned(),
    );
    // The gateway answers on this runtime while the CLI runs beside it.
    let run = tokio::task::spawn_blocking(move || {
        crate::support::sluice_with(
            &[
                "sync",
                "--env",
                "production",
                "-o",
                "json",
                "--repo",
                &repo_path,
                "--data-dir",
                &data_path,
            ],
            &[],
        )
    })
    .await
    .unwrap();
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let pass = run.json();
    let liar = pass["environments"][0]["gateways"][0].clone();
    assert_eq!(liar["gateway"], "liar", "{pass}");
    assert_eq!(liar["state"], "failed", "{pass}");
    // What it serves, not what its /status claims, is what it is said to run.
    let served = documents()[0].digest.to_string();
    assert!(
        liar["error"].as_str().unwrap().contains(&served),
        "the error names what was served: {liar}"
    );
}

fn client_at(url: &str) -> Arc<dyn Gateway> {
    gateway::connect(
        "development",
        &model::Gateway::Http(spec(url, true, None)),
        &context(Some(TOKEN)),
    )
    .expect("driver connects")
}

#[tokio::test]
async fn one_process_hosts_several_gateways_each_with_its_own_state_and_faults() {
    let data = tempfile::tempdir().unwrap();
    let args = [
        "--data",
        data.path().to_str().unwrap(),
        "--token-env",
        TOKEN_ENV,
    ];
    let (process, urls) = GatewayProcess::start_fleet(3, &args, &[(TOKEN_ENV, TOKEN)]);
    assert_eq!(urls.len(), 3);
    let mut distinct = urls.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{urls:?}");
    let gateways: Vec<Arc<dyn Gateway>> = urls.iter().map(|u| client_at(u)).collect();

    let first = &documents()[0];
    gateways[1].apply(first, None, 3).await.unwrap();
    assert_eq!(gateways[0].live().await.unwrap().digest, None);
    assert_eq!(
        gateways[1].live().await.unwrap().digest.as_ref(),
        Some(&first.digest)
    );
    assert_eq!(gateways[2].live().await.unwrap().digest, None);

    // A fault injected into one is played by that one only.
    let injected = reqwest::Client::new()
        .post(format!("{}/admin/v1/faults", urls[2]))
        .bearer_auth(TOKEN)
        .body(r#"{"status": 500, "count": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(injected.status(), 200);
    assert!(gateways[0].live().await.is_ok());
    assert!(matches!(
        gateways[2].live().await,
        Err(GatewayError::Status { status: 500, .. })
    ));
    assert!(gateways[2].live().await.is_ok(), "one fault, played once");

    // Gateway I keeps its state (and its apply log) in DATA/I.
    let log = std::fs::read_to_string(data.path().join("1").join("applies.jsonl")).unwrap();
    let line: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(line["digest"], first.digest.as_str());
    assert_eq!(line["generation"], 3);
    assert_eq!(line["via"], "protocol");
    assert!(!data.path().join("0").join("applies.jsonl").exists());
    assert!(data.path().join("1").join("config.json").exists());
    drop(process);
}

#[test]
fn several_gateways_cannot_watch_one_file() {
    let run = crate::support::sluice(&[
        "gateway",
        "--ephemeral",
        "--gateways",
        "2",
        "--watch",
        "config.json",
    ]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("--watch runs one gateway"),
        "{}",
        run.stderr
    );
}
