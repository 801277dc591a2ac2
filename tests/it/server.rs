//! `sluice run`'s HTTP server: health, readiness, metrics, the status API
//! with scoped tokens, and the git webhook.

use crate::support::{GatewayProcess, TestRepo, eventually, http, sluice, sluice_with};
use sluice::server::webhook::github_signature;
use std::fs;

const SECRET: &str = "hook-secret-7c2d";

fn start(repo: &TestRepo, data: &std::path::Path) -> GatewayProcess {
    crate::support::sluice_run(
        repo,
        data,
        "1h",
        &[],
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
    // No alert was sent, tried or dropped (a family shows its first series).
    assert!(!metrics.contains("sluice_alerts"), "{metrics}");
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
    // The scheme is case-insensitive (RFC 9110).
    let lowercase = [("authorization", "bearer admin-token-1")];
    assert_eq!(
        http("GET", &format!("{url}/api/v1/status"), &lowercase, "").0,
        200
    );
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

/// `sluice run` with the HTTP server's limits given as flags.
fn start_with_limits(repo: &TestRepo, data: &std::path::Path, limits: &[&str]) -> GatewayProcess {
    crate::support::sluice_run(
        repo,
        data,
        "1h",
        limits,
        &[
            ("SLUICE_WEBHOOK_SECRET", SECRET),
            ("SLUICE_API_TOKENS", "admin:admin-token-1"),
        ],
    )
}

/// A raw TCP connection to the server at `url` (`http://ADDR`) that gives
/// up reading after `read_limit`.
fn connect(url: &str, read_limit: std::time::Duration) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(read_limit)).unwrap();
    stream
}

/// Reads until the server closes the connection; `Err` with what was read
/// if the read limit passed first.
fn read_until_closed(stream: &mut std::net::TcpStream) -> Result<String, String> {
    use std::io::Read;
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(String::from_utf8_lossy(&seen).into_owned()),
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(String::from_utf8_lossy(&seen).into_owned());
            }
            // Reset by the server: closed too.
            Err(_) => return Ok(String::from_utf8_lossy(&seen).into_owned()),
        }
    }
}

/// Reads what the server answers first (at least a status line), or `None`
/// if nothing came within the read limit.
fn read_answer(stream: &mut std::net::TcpStream) -> Option<String> {
    use std::io::Read;
    let mut buffer = [0u8; 4096];
    match stream.read(&mut buffer) {
        Ok(n) if n > 0 => Some(String::from_utf8_lossy(&buffer[..n]).into_owned()),
        _ => None,
    }
}

#[test]
fn idle_slow_header_and_slow_body_clients_are_disconnected() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let run = start_with_limits(
        &repo,
        data.path(),
        &[
            "--http-header-timeout",
            "1s",
            "--http-request-timeout",
            "2s",
        ],
    );
    let url = run.url.clone();
    eventually(30, "ready", || {
        http("GET", &format!("{url}/readyz"), &[], "").0 == 200
    });
    // Generous against a loaded machine; without the timeouts each of
    // these would be held open for ever.
    let bound = Duration::from_secs(30);
    let started = Instant::now();
    let mut idle = connect(&url, bound);
    let mut slow_header = connect(&url, bound);
    slow_header
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: sluice\r\n")
        .unwrap();
    let mut slow_body = connect(&url, bound);
    let signature = github_signature(SECRET, b"{}");
    write!(
        slow_body,
        "POST /hooks/git HTTP/1.1\r\nHost: sluice\r\nContent-Length: 1000\r\n\
         X-Hub-Signature-256: {signature}\r\n\r\n{{\"ref\":"
    )
    .unwrap();
    // A kept-alive connection that went idle after one request.
    let mut kept_alive = connect(&url, bound);
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: sluice\r\n\r\n")
        .unwrap();
    for (name, stream) in [
        ("idle", &mut idle),
        ("slow header", &mut slow_header),
        ("slow body", &mut slow_body),
        ("kept alive", &mut kept_alive),
    ] {
        let seen = read_until_closed(stream)
            .unwrap_or_else(|seen| panic!("the {name} connection is still open: {seen:?}"));
        if name == "slow body" {
            assert!(seen.starts_with("HTTP/1.1 408"), "{seen}");
        }
        if name == "kept alive" {
            assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
        }
    }
    assert!(started.elapsed() < bound);
    assert_eq!(http("GET", &format!("{url}/healthz"), &[], "").0, 200);
}

#[test]
fn the_connection_cap_holds_and_healthz_answers_once_a_slot_frees() {
    use std::io::Write;
    use std::time::Duration;
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let run = start_with_limits(
        &repo,
        data.path(),
        &["--http-header-timeout", "5m", "--http-max-connections", "3"],
    );
    let url = run.url.clone();
    eventually(30, "ready", || {
        http("GET", &format!("{url}/readyz"), &[], "").0 == 200
    });
    let held: Vec<_> = (0..3)
        .map(|_| connect(&url, Duration::from_secs(30)))
        .collect();
    // The fourth client is left in the backlog while three are open: no
    // answer within a short look (a longer one would only make this slower).
    let mut fourth = connect(&url, Duration::from_millis(1500));
    fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_answer(&mut fourth),
        None,
        "a fourth connection was served"
    );
    // One held client leaves: the waiting one is served.
    drop(held.into_iter().next());
    fourth
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let answer = read_answer(&mut fourth).expect("healthz answers once a slot is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn an_unauthenticated_body_is_refused_before_it_is_read() {
    use std::io::Write;
    use std::time::Duration;
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let run = start_with_limits(&repo, data.path(), &[]);
    let url = run.url.clone();
    eventually(30, "ready", || {
        http("GET", &format!("{url}/readyz"), &[], "").0 == 200
    });
    // 1.5 MB announced (under the 2 MB a buffering extractor would take
    // whole), 1 KiB sent: a server that reads the body first never answers.
    let requests = [
        "POST /api/v1/sync HTTP/1.1\r\nHost: sluice\r\nContent-Length: 1500000\r\n\r\n".to_owned(),
        "POST /api/v1/sync HTTP/1.1\r\nHost: sluice\r\nAuthorization: Bearer guess\r\n\
         Content-Length: 1500000\r\n\r\n"
            .to_owned(),
        "POST /hooks/git HTTP/1.1\r\nHost: sluice\r\nX-Gitlab-Token: guess\r\n\
         Content-Length: 1500000\r\n\r\n"
            .to_owned(),
        "POST /hooks/git HTTP/1.1\r\nHost: sluice\r\nContent-Length: 1500000\r\n\r\n".to_owned(),
    ];
    for request in requests {
        let mut stream = connect(&url, Duration::from_secs(20));
        stream.write_all(request.as_bytes()).unwrap();
        stream.write_all(&[b'x'; 1024]).unwrap();
        let answer = read_answer(&mut stream)
            .unwrap_or_else(|| panic!("no answer before the body: {request}"));
        assert!(answer.starts_with("HTTP/1.1 401"), "{request}\n{answer}");
    }
}

/// `sluice ARGS` with at most `files` open file descriptors (the soft and
/// hard limit, set by `prlimit`), killed on drop.
fn with_few_files(files: u64, args: &[&str], envs: &[(&str, &str)]) -> GatewayProcess {
    let mut command = std::process::Command::new("prlimit");
    command
        .arg(format!("--nofile={files}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .envs(crate::support::OPERATOR.iter().copied())
        .envs(envs.iter().copied());
    GatewayProcess::spawn_command(command, args)
}

#[test]
fn many_idle_clients_under_a_low_file_limit_starve_neither_healthz_nor_fetches() {
    use std::time::Duration;
    let repo = TestRepo::example();
    let daemon = crate::support::GitDaemon::serve(repo.path());
    let data = tempfile::tempdir().unwrap();
    let run = with_few_files(
        64,
        &[
            "run",
            "--repo",
            &daemon.url(),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "1h",
            "--http-header-timeout",
            "2s",
            "--http-max-connections",
            "16",
        ],
        &[("SLUICE_WEBHOOK_SECRET", SECRET)],
    );
    let url = run.url.clone();
    eventually(60, "ready", || {
        http("GET", &format!("{url}/readyz"), &[], "").0 == 200
    });
    // More idle clients than the process may open files.
    let idle: Vec<_> = (0..80)
        .map(|_| connect(&url, Duration::from_secs(60)))
        .collect();
    let mut health = connect(&url, Duration::from_secs(90));
    use std::io::Write as _;
    health
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut health).expect("healthz answers");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A push is fetched over the network and applied.
    let target = data.path().join("gateways/eval/eval-1.json");
    let text = repo.read("base/packs/models.yaml");
    repo.write("base/packs/models.yaml", text.replace("600", "750"));
    repo.commit("raise the rate limit");
    let body = r#"{"ref":"refs/heads/main"}"#;
    let signed = github_signature(SECRET, body.as_bytes());
    let (status, _) = http(
        "POST",
        &format!("{url}/hooks/git"),
        &[("x-hub-signature-256", &signed)],
        body,
    );
    assert_eq!(status, 202);
    eventually(60, "the pushed change fetched and applied", || {
        fs::read_to_string(&target)
            .unwrap_or_default()
            .contains("\"requests_per_minute\":750")
    });
    drop(idle);
}

/// An API without tokens answers anyone who reaches it: beyond loopback
/// `sluice run` and `sluice controller` refuse to start unless the operator
/// says `--allow-open-api` (the controller before it looks for a cluster).
#[test]
fn an_open_api_beyond_loopback_needs_allow_open_api() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let run = |listen: &'static str, more: &[&'static str]| {
        let mut args = vec![
            "run",
            "--repo",
            repo.path().to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--listen",
            listen,
            "--interval",
            "1h",
        ];
        args.extend_from_slice(more);
        args
    };
    let refused = sluice(&run("0.0.0.0:0", &[]));
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("no API tokens are set")
            && refused.stderr.contains("--allow-open-api"),
        "{}",
        refused.stderr
    );
    let refused = sluice_with(
        &[
            "controller",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "0.0.0.0:0",
        ],
        &[("KUBECONFIG", "/nonexistent/kubeconfig")],
    );
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("--allow-open-api"),
        "{}",
        refused.stderr
    );

    // On purpose, with tokens, or on loopback: it starts.
    let mut open = GatewayProcess::spawn(&run("0.0.0.0:0", &["--allow-open-api"]), &[]);
    open.terminate();
    assert!(open.wait_exit(std::time::Duration::from_secs(30)).is_some());
    let mut guarded =
        GatewayProcess::spawn(&run("0.0.0.0:0", &[]), &[("SLUICE_API_TOKENS", "admin:a1")]);
    guarded.terminate();
    assert!(
        guarded
            .wait_exit(std::time::Duration::from_secs(30))
            .is_some()
    );
    let mut local = GatewayProcess::spawn(&run("127.0.0.1:0", &[]), &[]);
    local.terminate();
    assert!(
        local
            .wait_exit(std::time::Duration::from_secs(30))
            .is_some()
    );
}
