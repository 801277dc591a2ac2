//! The operator's allowances against a hostile commit: a change touching
//! only `environments/development/gateways.yaml` that points gateways at a
//! server its author runs, naming the process's secrets as their tokens.
//! Nothing may reach that server; the command reports the findings.

use crate::support::{Run, TestRepo, sluice_with};
use std::{
    io::{ErrorKind, Read},
    net::TcpListener,
    path::Path,
};

/// Values the process holds; none may leave it.
const SECRETS: [(&str, &str); 3] = [
    ("SLUICE_API_TOKENS", "admin:api-secret-value"),
    ("SLUICE_WEBHOOK_SECRET", "hook-secret-value"),
    ("PROD_GATEWAY_TOKEN", "prod-secret-value"),
];

/// The author's server: a loopback listener nobody answers. A client that
/// connects is queued by the kernel, so whatever it sent can be read after
/// the command has exited (no waiting, no sleeps).
struct Collector {
    listener: TcpListener,
    url: String,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Collector { listener, url }
    }

    /// Everything every connection made so far sent.
    fn received(&self) -> Vec<String> {
        self.listener.set_nonblocking(true).unwrap();
        let mut seen = Vec::new();
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(true).unwrap();
                    let mut bytes = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buffer) {
                        bytes.extend_from_slice(&buffer[..n]);
                    }
                    seen.push(String::from_utf8_lossy(&bytes).into_owned());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return seen,
                Err(e) => panic!("accepting: {e}"),
            }
        }
    }
}

/// The example with development's gateways replaced by the author's.
fn hostile_repo(url: &str, tokens: &[&str]) -> TestRepo {
    let repo = TestRepo::example();
    let mut yaml = String::from(
        "gateways:\n  - name: dev-1\n    driver: file\n    path: gateways/development/dev-1.json\n",
    );
    for (i, token) in tokens.iter().enumerate() {
        yaml.push_str(&format!(
            "  - name: grab-{i}\n    driver: http\n    url: {url}\n    tokenEnv: {token}\n    timeout: 1s\n"
        ));
    }
    repo.write("environments/development/gateways.yaml", yaml);
    repo.commit("development: more gateways");
    repo
}

fn sync(repo: &TestRepo, data: &Path, operator: &[(&str, &str)]) -> Run {
    let mut envs: Vec<(&str, &str)> = SECRETS.to_vec();
    envs.extend(operator);
    sluice_with(
        &[
            "sync",
            "--once",
            "-o",
            "json",
            "--repo",
            repo.path().to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &envs,
    )
}

fn assert_nothing_left(run: &Run, collector: &Collector, data: &Path) {
    let received = collector.received();
    assert!(
        received.is_empty(),
        "the author's server was reached: {received:?}"
    );
    for (_, value) in SECRETS {
        assert!(
            !run.stdout.contains(value) && !run.stderr.contains(value),
            "{value} in the output:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
    assert!(
        !data.join("gateways/development/dev-1.json").exists(),
        "nothing of an invalid revision is applied"
    );
}

#[test]
fn a_development_commit_cannot_send_the_process_secrets_anywhere() {
    let collector = Collector::start();
    let repo = hostile_repo(
        &collector.url,
        &[
            "SLUICE_API_TOKENS",
            "SLUICE_WEBHOOK_SECRET",
            "PROD_GATEWAY_TOKEN",
        ],
    );
    let data = tempfile::tempdir().unwrap();
    // NB: the operator even allows loopback URLs and every variable of
    // development's own: the variables alone must stop it.
    let run = sync(
        &repo,
        data.path(),
        &[
            ("SLUICE_ALLOW_ENV", "production=PROD_*,development=DEV_*"),
            ("SLUICE_ALLOW_URL", "*=http://127.0.0.1:*"),
        ],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.json()["result"], "validation-failed", "{}", run.stdout);
    let file = "environments/development/gateways.yaml";
    for expected in [
        format!("{file}:8:15"),
        format!("{file}:13:15"),
        format!("{file}:18:15"),
    ] {
        assert!(
            run.stderr.contains(&expected),
            "{expected}:\n{}",
            run.stderr
        );
    }
    assert!(run.stderr.contains("allow.env-reserved"), "{}", run.stderr);
    assert!(
        run.stderr.contains("allow.env-not-allowed"),
        "{}",
        run.stderr
    );
    assert_nothing_left(&run, &collector, data.path());
}

#[test]
fn an_allowed_variable_goes_only_to_an_allowed_url() {
    let collector = Collector::start();
    let repo = hostile_repo(&collector.url, &["DEV_GW_TOKEN"]);
    let data = tempfile::tempdir().unwrap();
    let run = sync(
        &repo,
        data.path(),
        &[
            ("DEV_GW_TOKEN", "dev-secret-value"),
            ("SLUICE_ALLOW_ENV", "development=DEV_GW_*,production=PROD_*"),
            ("SLUICE_ALLOW_URL", "development=https://gw-*.internal:8443"),
        ],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("allow.url-not-allowed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("environments/development/gateways.yaml:7:10"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("dev-secret-value"), "{}", run.stderr);
    assert_nothing_left(&run, &collector, data.path());
}

#[test]
fn validate_reports_what_sync_would_refuse() {
    let repo = hostile_repo("http://127.0.0.1:9", &["SLUICE_API_TOKENS"]);
    let run = repo.sluice(&["validate", "-o", "json"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let rules: Vec<String> = run
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rules, ["allow.env-reserved"], "{}", run.stdout);
    // With nothing allowed, the example's own alert variable is a finding.
    let closed = sluice_with(
        &[
            "validate",
            "--repo",
            crate::support::example_dir().to_str().unwrap(),
        ],
        &[("SLUICE_ALLOW_ENV", ""), ("SLUICE_ALLOW_URL", "")],
    );
    assert_eq!(closed.code, 1, "{}{}", closed.stdout, closed.stderr);
    assert!(
        closed.stdout.contains("PROD_ALERT_WEBHOOK"),
        "{}",
        closed.stdout
    );
}
