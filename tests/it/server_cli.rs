//! Issue 15: the command line against a running `sluice run` as operators
//! of kubectl, flux and argocd expect it — `sync --server` waits for its
//! pass and reports it as `sync --once` does, `wait --for in-sync`,
//! `status --watch`, the LIVE column with its commit, `version --server`.

use crate::support::{GatewayProcess, Run, TestRepo, eventually, http, sluice, sluice_with};
use std::{
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
};

const TOKENS: &str = "development:dev-token-1,admin:admin-token-1";
const ADMIN: (&str, &str) = ("SLUICE_API_TOKEN", "admin-token-1");
const DEVELOPER: (&str, &str) = ("SLUICE_API_TOKEN", "dev-token-1");

/// `sluice run` on `repo`, its ledger in `data`, polling every `interval`,
/// with API tokens or open; returns once it is ready.
fn serve(repo: &TestRepo, data: &Path, interval: &str, tokens: Option<&str>) -> GatewayProcess {
    crate::support::sluice_run(
        repo,
        data,
        interval,
        &[],
        &[("SLUICE_API_TOKENS", tokens.unwrap_or(""))],
    )
}

/// Development's one gateway, `dev-1`, an HTTP gateway at `url`.
fn development_at(repo: &TestRepo, url: &str) -> String {
    repo.write(
        "environments/development/gateways.yaml",
        format!("gateways:\n  - name: dev-1\n    driver: http\n    url: {url}\n    timeout: 1s\n"),
    );
    repo.commit("development on an HTTP gateway")
}

/// Output with what changes from run to run made fixed: the commits
/// given, the server's address, ports and digests (length kept, so tables
/// stay aligned).
fn stable(text: &str, commits: &[&str], server: &str) -> String {
    let mut text = text.replace(server, "http://SERVER");
    for commit in commits {
        text = text
            .replace(commit, "<commit>")
            .replace(&commit[..8], "<commit>");
    }
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest
        .find("sha256:")
        .map(|i| (i, "sha256:"))
        .into_iter()
        .chain(rest.find("127.0.0.1:").map(|i| (i, "127.0.0.1:")))
        .min()
    {
        let (i, marker) = at;
        out.push_str(&rest[..i + marker.len()]);
        rest = &rest[i + marker.len()..];
        let run = rest
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(rest.len());
        let mask = if marker == "sha256:" { 'x' } else { 'N' };
        out.extend(std::iter::repeat_n(mask, run));
        rest = &rest[run..];
    }
    out.push_str(rest);
    out
}

fn revision_of(run: &Run) -> String {
    run.json()["revision"].as_str().unwrap().to_owned()
}

fn environments_of(run: &Run) -> Vec<String> {
    run.json()["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["environment"].as_str().unwrap().to_owned())
        .collect()
}

/// Defect 5: `sluice sync --server` waits for the pass it asked for, one
/// that fetched after the request, and reports it like `sync --once`
/// (table, `-o json`, exit codes); `--no-wait` only asks; `--timeout`;
/// a scoped token's pass shows its environment only; an unknown
/// environment is a 404 and exit 2.
#[test]
fn sync_server_waits_for_its_pass_and_reports_it_as_sync_once_does() {
    let repo = TestRepo::example();
    // A gateway that takes connections and never answers: every read of
    // it times out, so a pass over development takes seconds.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let first = development_at(&repo, &format!("http://{}", silent.local_addr().unwrap()));
    let data = tempfile::tempdir().unwrap();
    let run = serve(&repo, data.path(), "1h", Some(TOKENS));
    let url = run.url.clone();

    let production = sluice_with(
        &[
            "sync",
            "--server",
            &url,
            "--env",
            "production",
            "-o",
            "json",
        ],
        &[ADMIN],
    );
    assert_eq!(
        production.code, 0,
        "{}{}",
        production.stdout, production.stderr
    );
    assert_eq!(production.json()["result"], "reconciled");
    assert_eq!(environments_of(&production), ["production"]);
    assert_eq!(revision_of(&production), first);
    insta::assert_snapshot!(
        "sync_server_json",
        stable(&production.stdout, &[&first], &url)
    );

    // The interval is an hour: only a pass started after the request
    // (which fetches) can have applied this commit.
    let text = repo.read("base/packs/models.yaml");
    repo.write("base/packs/models.yaml", text.replace("600", "750"));
    let second = repo.commit("raise the rate limit");
    let table = sluice_with(&["sync", "--server", &url, "production"], &[ADMIN]);
    assert_eq!(table.code, 0, "{}{}", table.stdout, table.stderr);
    assert!(
        table.stdout.contains(&format!("revision {}", &second[..8]))
            && table.stdout.contains("2/2 in sync  2 applied"),
        "{}",
        table.stdout
    );
    let written = std::fs::read_to_string(data.path().join("gateways/production/prod-eu-1.json"));
    assert!(written.unwrap().contains("\"requests_per_minute\":750"));

    // Every environment: development's gateway is not in sync, exit 1.
    let all = sluice_with(&["sync", "--server", &url], &[ADMIN]);
    assert_eq!(all.code, 1, "{}{}", all.stdout, all.stderr);
    assert!(all.stdout.contains("dev-1 unreachable"), "{}", all.stdout);
    insta::assert_snapshot!("sync_server_table", stable(&all.stdout, &[&second], &url));

    // A development token's pass is development's alone.
    let scoped = sluice_with(&["sync", "--server", &url, "-o", "json"], &[DEVELOPER]);
    assert_eq!(scoped.code, 1, "{}", scoped.stderr);
    assert_eq!(environments_of(&scoped), ["development"]);

    // Not waited for longer than asked: exit 2, saying so.
    let impatient = sluice_with(
        &[
            "sync",
            "--server",
            &url,
            "development",
            "--wait-timeout",
            "300ms",
        ],
        &[ADMIN],
    );
    assert_eq!(
        impatient.code, 2,
        "{}{}",
        impatient.stdout, impatient.stderr
    );
    assert!(
        impatient
            .stderr
            .contains("timed out after 300ms waiting for the pass of sync request"),
        "{}",
        impatient.stderr
    );

    // --no-wait: the old fire-and-forget, with the API's answer as JSON.
    let asked = sluice_with(&["sync", "--server", &url, "--no-wait"], &[ADMIN]);
    assert_eq!(asked.code, 0, "{}", asked.stderr);
    assert!(
        asked
            .stdout
            .starts_with("reconcile requested (sync request "),
        "{}",
        asked.stdout
    );
    let asked = sluice_with(
        &[
            "sync",
            "--server",
            &url,
            "--no-wait",
            "staging",
            "-o",
            "json",
        ],
        &[ADMIN],
    );
    assert_eq!(asked.code, 0, "{}", asked.stderr);
    let answer = asked.json();
    assert_eq!(answer["accepted"], true);
    assert_eq!(answer["environment"], "staging");
    let number = answer["request"].as_u64().expect("a request number");
    // Its pass can still be asked for, by number, waiting on the server.
    let admin = [("authorization", "Bearer admin-token-1")];
    let asked_for = format!("{url}/api/v1/sync/{number}?env=staging&wait=60s");
    let mut body = String::new();
    // NB: each request waits on the server (less than its request
    // timeout), answering 202 if the pass is not done by then.
    eventually(300, "the pass of the request", || {
        let (status, answer) = http("GET", &asked_for, &admin, "");
        assert!(status == 200 || status == 202, "{status}: {answer}");
        body = answer;
        status == 200
    });
    let pass: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(pass["environments"][0]["environment"], "staging");
    let (status, _) = http("GET", &format!("{url}/api/v1/sync/99999"), &admin, "");
    assert_eq!(status, 404);

    // An unknown environment: 404 from the API, exit 2 from the command.
    let (status, body) = http(
        "POST",
        &format!("{url}/api/v1/sync?env=prodution"),
        &admin,
        "",
    );
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("did you mean `production`? the environments are: development, eval, production, staging"),
        "{body}"
    );
    let unknown = sluice_with(&["sync", "--server", &url, "--env", "prodution"], &[ADMIN]);
    assert_eq!(unknown.code, 2, "{}", unknown.stdout);
    assert!(
        unknown
            .stderr
            .contains("404 Not Found: no environment `prodution`")
            && unknown.stderr.contains("did you mean `production`?"),
        "{}",
        unknown.stderr
    );
    drop(silent);
}

/// `sluice wait ENV --for in-sync`: exit 1 with what is not in sync when
/// the timeout passes first, 0 once the gateway came up and was synced,
/// 2 for an unknown environment; through the API and from the ledger.
#[test]
fn wait_returns_once_the_environment_is_in_sync_and_says_what_is_not_at_timeout() {
    let repo = TestRepo::example();
    let mut gateway = GatewayProcess::start(&["--ephemeral"], &[]);
    let address = gateway.address().to_owned();
    gateway.kill_hard();
    let commit = development_at(&repo, &format!("http://{address}"));
    let data = tempfile::tempdir().unwrap();
    let run = serve(&repo, data.path(), "1s", None);
    let url = run.url.clone();
    eventually(60, "dev-1 recorded unreachable", || {
        let (_, body) = http(
            "GET",
            &format!("{url}/api/v1/status?env=development"),
            &[],
            "",
        );
        body.contains("\"unreachable\"")
    });

    let waited = sluice(&[
        "wait",
        "development",
        "--for",
        "in-sync",
        "--server",
        &url,
        "--timeout",
        "1s",
        "--interval",
        "100ms",
    ]);
    assert_eq!(waited.code, 1, "{}{}", waited.stdout, waited.stderr);
    assert!(
        waited.stdout.starts_with(
            "timed out after 1s waiting for development to be in sync: 1 of 1 gateway not in sync"
        ) && waited.stdout.contains("dev-1    unreachable"),
        "{}",
        waited.stdout
    );
    insta::assert_snapshot!("wait_timeout", stable(&waited.stdout, &[&commit], &url));
    let json = sluice(&[
        "wait",
        "--env",
        "development",
        "--server",
        &url,
        "--timeout",
        "200ms",
        "-o",
        "json",
    ]);
    assert_eq!(json.code, 1, "{}", json.stderr);
    assert_eq!(json.json()["met"], false);
    insta::assert_snapshot!("wait_timeout_json", stable(&json.stdout, &[&commit], &url));

    for from in [
        ["--server", url.as_str()],
        ["--data-dir", data.path().to_str().unwrap()],
    ] {
        let mut args = vec!["wait", "prodution", "--timeout", "5s"];
        args.extend(from);
        let unknown = sluice(&args);
        assert_eq!(unknown.code, 2, "{args:?}: {}", unknown.stdout);
        assert!(
            unknown.stderr.contains("did you mean `production`?"),
            "{}",
            unknown.stderr
        );
    }

    let waiting = {
        let url = url.clone();
        std::thread::spawn(move || {
            sluice(&[
                "wait",
                "development",
                "--server",
                &url,
                "--timeout",
                "120s",
                "--interval",
                "100ms",
            ])
        })
    };
    let _gateway = GatewayProcess::start_on(&address, &["--ephemeral"], &[]);
    let met = waiting.join().unwrap();
    assert_eq!(met.code, 0, "{}{}", met.stdout, met.stderr);
    assert!(
        met.stdout
            .starts_with("development is in sync: 1 gateway at sha256:")
            && met
                .stdout
                .trim_end()
                .ends_with(&format!("@{}", &commit[..8])),
        "{}",
        met.stdout
    );
    insta::assert_snapshot!("wait_met", stable(&met.stdout, &[&commit], &url));
    let local = sluice(&[
        "wait",
        "development",
        "--data-dir",
        data.path().to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(local.code, 0, "{}{}", local.stdout, local.stderr);
    assert_eq!(local.json()["met"], true);
    insta::assert_snapshot!("wait_met_json", stable(&local.stdout, &[&commit], &url));
}

/// A `sluice` process whose standard output is collected as it comes.
struct Watching {
    child: std::process::Child,
    stdout: Arc<Mutex<String>>,
}

impl Watching {
    fn start(args: &[&str]) -> Watching {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = crate::support::collect(child.stdout.take().unwrap());
        Watching { child, stdout }
    }

    fn tables(&self) -> usize {
        self.stdout.lock().unwrap().matches("ENVIRONMENT").count()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sluice status --watch` into a pipe prints the table once, and again
/// only when what runs where changed.
#[test]
fn status_watch_prints_the_table_again_when_it_changes() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let state = data.path().to_str().unwrap();
    let first = repo.sluice(&["sync", "--data-dir", state]);
    assert_eq!(first.code, 0, "{}", first.stderr);

    let quiet = repo.sluice(&[
        "status",
        "--watch",
        "--interval",
        "50ms",
        "--timeout",
        "1s",
        "--data-dir",
        state,
    ]);
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    assert_eq!(
        quiet.stdout.matches("ENVIRONMENT").count(),
        1,
        "nothing changed: one table\n{}",
        quiet.stdout
    );

    let repo_path = repo.path().to_str().unwrap();
    let watching = Watching::start(&[
        "status",
        "-w",
        "--interval",
        "100ms",
        "--timeout",
        "5m",
        "--repo",
        repo_path,
        "--data-dir",
        state,
    ]);
    eventually(60, "the first table", || watching.tables() == 1);
    let text = repo.read("base/packs/models.yaml");
    repo.write("base/packs/models.yaml", text.replace("600", "750"));
    let second = repo.commit("raise the rate limit");
    let synced = repo.sluice(&["sync", "--data-dir", state]);
    assert_eq!(synced.code, 0, "{}", synced.stderr);
    // The sync records the revision before its applies, so the watch may
    // print an intermediate table (new revision, old versions) first; what
    // matters is that a later table shows the gateways on the new commit.
    let on_second = format!("@{}", &second[..8]);
    eventually(60, "a later table with the new commit", || {
        let stdout = watching.stdout.lock().unwrap();
        stdout
            .split_once("\n\nrevision")
            .is_some_and(|(_, later)| later.contains(&on_second))
    });
    let stdout = watching.stdout.lock().unwrap().clone();
    let (first_table, _) = stdout.split_once("\n\nrevision").expect("tables apart");
    assert!(!first_table.contains(&on_second), "{stdout}");
}

/// The LIVE column says which commit each gateway runs; a live digest no
/// revision rendered (a hand edit) is shown alone.
#[test]
fn the_live_column_shows_the_commit_a_gateway_runs() {
    let repo = TestRepo::example();
    // Development is read back every second; drift is reported, not healed.
    let spec = repo
        .read("environments/development/environment.yaml")
        .replace("interval: 5m", "interval: 1s");
    repo.write("environments/development/environment.yaml", spec);
    let commit = repo.commit("read development back every second");
    let data = tempfile::tempdir().unwrap();
    let run = serve(&repo, data.path(), "1h", None);
    let state = data.path().to_str().unwrap();
    // (DESIRED, LIVE, STATE) of a gateway, from the server or the ledger.
    let row = |from: &[&str], gateway: &str| {
        let mut args = vec!["status"];
        args.extend(from);
        let status = sluice(&args);
        let row = status
            .stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(gateway))
            .map(|row| {
                let cells: Vec<String> = row.split_whitespace().map(str::to_owned).collect();
                (cells[2].clone(), cells[3].clone(), cells[4].clone())
            });
        row.unwrap_or_default()
    };
    let server = ["--server", run.url.as_str()];
    let ledger = ["--data-dir", state];
    eventually(60, "dev-1 in sync", || row(&server, "dev-1").2 == "in-sync");
    for from in [&server, &ledger] {
        let (desired, live, _) = row(from, "dev-1");
        assert_eq!(live, desired);
        assert!(live.ends_with(&format!("@{}", &commit[..8])), "{live}");
    }

    // By hand: a version no revision rendered.
    let file = data.path().join("gateways/development/dev-1.json");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("\"alert\"", "\"monitor\"")).unwrap();
    eventually(60, "dev-1 drifted", || row(&ledger, "dev-1").2 == "drifted");
    for from in [&server, &ledger] {
        let (_, live, _) = row(from, "dev-1");
        assert!(live.starts_with("sha256:") && !live.contains('@'), "{live}");
    }
    let json = sluice(&["status", "--data-dir", state, "-o", "json"]).json();
    let revisions = json["liveRevisions"].as_array().unwrap();
    assert_eq!(
        revisions.len(),
        4,
        "every gateway but the edited one: {json}"
    );
    assert!(revisions.iter().all(|l| l["revision"] == commit.as_str()));
}

/// `sluice version --server` says the server's version, from
/// `GET /api/v1/version`, which takes the tokens the status API takes.
#[test]
fn version_server_shows_the_servers_build() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let run = serve(&repo, data.path(), "1h", Some(TOKENS));
    let url = run.url.clone();
    let own = sluice(&["version", "-o", "json"]).json();
    let placeholders = |text: &str| {
        let mut text = text.replace(&url, "http://SERVER");
        for (key, placeholder) in [
            ("commit", "<commit>"),
            ("buildDate", "<date>"),
            ("version", "<version>"),
        ] {
            text = text.replace(own[key].as_str().unwrap(), placeholder);
        }
        text
    };

    let both = sluice_with(&["version", "--server", &url, "-o", "json"], &[DEVELOPER]);
    assert_eq!(both.code, 0, "{}", both.stderr);
    let both = both.json();
    assert_eq!(both["clientVersion"], own);
    assert_eq!(both["serverVersion"], own, "the same binary");
    insta::assert_snapshot!(
        "version_server_json",
        placeholders(&serde_json::to_string_pretty(&both).unwrap())
    );
    let text = sluice_with(&["version", "--server", &url], &[ADMIN]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains(&format!(
            "server {url}: sluice {}",
            own["version"].as_str().unwrap()
        )),
        "{}",
        text.stdout
    );
    insta::assert_snapshot!("version_server", placeholders(&text.stdout));

    let refused = sluice(&["version", "--server", &url]);
    assert_eq!(refused.code, 2, "{}", refused.stdout);
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
    let (status, _) = http("GET", &format!("{url}/api/v1/version"), &[], "");
    assert_eq!(status, 401);
}
