//! Helpers: temp git repositories and running the binary.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};
use tempfile::TempDir;

/// The bundled example, the base most tests start from.
pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo")
}

/// A git repository in a temp dir, driven with the real `git`.
pub struct TestRepo {
    dir: TempDir,
}

impl TestRepo {
    pub fn empty() -> TestRepo {
        let repo = TestRepo {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// A repository holding the bundled example, committed.
    pub fn example() -> TestRepo {
        let repo = TestRepo::empty();
        copy_tree(&example_dir(), repo.path());
        repo.commit("example");
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, path: &str, content: impl AsRef<[u8]>) {
        let target = self.path().join(path);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::write(target, content).unwrap();
    }

    pub fn read(&self, path: &str) -> String {
        fs::read_to_string(self.path().join(path)).unwrap()
    }

    pub fn remove(&self, path: &str) {
        let target = self.path().join(path);
        if target.is_dir() {
            fs::remove_dir_all(target).unwrap();
        } else {
            fs::remove_file(target).unwrap();
        }
    }

    pub fn symlink(&self, link: &str, target: &str) {
        let at = self.path().join(link);
        fs::create_dir_all(at.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&at);
        std::os::unix::fs::symlink(target, at).unwrap();
    }

    /// Commits everything and returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    pub fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .args([
                "-c",
                "user.name=Sluice Test",
                "-c",
                "user.email=test@sluice.dev",
            ])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(self.path())
            .output()
            .expect("git runs");
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs `sluice ARGS --repo <this repo>`.
    pub fn sluice(&self, args: &[&str]) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        let repo = self.path().to_str().unwrap().to_owned();
        all.extend(["--repo", &repo]);
        sluice(&all)
    }
}

impl AsRef<Path> for TestRepo {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

/// What one run of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// What the operator of these tests allows unless a test says otherwise:
/// production its `PROD_*` variables (the example's alert webhook, the
/// tests' gateway tokens), and every environment the loopback gateways.
pub const OPERATOR: [(&str, &str); 2] = [
    ("SLUICE_ALLOW_ENV", "production=PROD_*"),
    ("SLUICE_ALLOW_URL", "*=http://127.0.0.1:*"),
];

pub fn sluice(args: &[&str]) -> Run {
    sluice_with(args, &[])
}

pub fn copy_tree(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A `sluice gateway` process on a free port of 127.0.0.1, killed on drop.
pub struct GatewayProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl GatewayProcess {
    /// Starts `sluice gateway --listen 127.0.0.1:0 ARGS` with `envs` set and
    /// waits (with a deadline) for its `listening on ADDR` line.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> GatewayProcess {
        Self::start_on("127.0.0.1:0", args, envs)
    }

    /// The same on a given address (to come back where it was).
    pub fn start_on(listen: &str, args: &[&str], envs: &[(&str, &str)]) -> GatewayProcess {
        let mut all = vec!["gateway", "--listen", listen];
        all.extend(args);
        Self::spawn(&all, envs)
    }

    /// Any long-running `sluice` command that prints `listening on ADDR`
    /// (`gateway`, `run`).
    pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> GatewayProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .args(args)
            .envs(OPERATOR.iter().copied())
            .envs(envs.iter().copied());
        Self::spawn_command(command, args)
    }

    /// [`GatewayProcess::spawn`] of a command made by the caller (a
    /// `sluice` under a wrapper such as `prlimit`).
    pub fn spawn_command(command: Command, args: &[&str]) -> GatewayProcess {
        Self::spawn_listening(command, args, 1).0
    }

    /// `sluice gateway --gateways N ARGS` on free ports: the process, and
    /// each of its gateways' `http://127.0.0.1:PORT`, in order.
    pub fn start_fleet(
        n: usize,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> (GatewayProcess, Vec<String>) {
        let count = n.to_string();
        let mut all = vec!["gateway", "--listen", "127.0.0.1:0", "--gateways", &count];
        all.extend(args);
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .args(&all)
            .envs(OPERATOR.iter().copied())
            .envs(envs.iter().copied());
        Self::spawn_listening(command, &all, n)
    }

    /// Spawns `command` and waits (with a deadline) for `count` lines of
    /// `listening on ADDR`; the first is the process's `url`.
    fn spawn_listening(
        mut command: Command,
        args: &[&str],
        count: usize,
    ) -> (GatewayProcess, Vec<String>) {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        use std::sync::mpsc;
        use std::time::Duration;

        let mut child = command
            .env_remove("SLUICE_REPO")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sluice gateway starts");
        let stderr = collect(child.stderr.take().unwrap());
        let (lines, received) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        // Keeps draining stdout so the gateway never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    // Nobody listens any more; keep draining.
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut urls = Vec::with_capacity(count);
        while urls.len() < count {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        urls.push(format!("http://{}", addr.trim()));
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("sluice {args:?} did not start: {}", stderr.lock().unwrap());
                }
            }
        }
        let url = urls[0].clone();
        (GatewayProcess { child, url, stderr }, urls)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `host:port` it listens on.
    pub fn address(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: a graceful stop.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
    }

    /// What it wrote to standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for it to exit on its own.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[path = "../common/git_daemon.rs"]
mod git_daemon;
pub use git_daemon::GitDaemon;

/// One HTTP request from a synchronous test: status and body.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .request(method.parse().unwrap(), url)
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request is answered");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    })
}

/// Polls `check` until it holds or `seconds` pass; the message says what was awaited.
pub fn eventually(seconds: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `sluice ARGS` with extra environment variables.
pub fn sluice_with(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .envs(OPERATOR.iter().copied())
        .envs(envs.iter().copied())
        .env_remove("SLUICE_REPO")
        .env("NO_COLOR", "1")
        .output()
        .expect("sluice runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A repository served over git's smart HTTP protocol on a free loopback
/// port: `git http-backend` run as a CGI per request, behind HTTP Basic auth
/// that accepts exactly one user and password. Stopped on drop.
pub struct GitHttp {
    /// Dropped first: its runtime ends the server and kills any CGI left.
    runtime: Option<tokio::runtime::Runtime>,
    port: u16,
    name: String,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Clone)]
struct GitHttpState {
    root: PathBuf,
    authorization: String,
    user: String,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl GitHttp {
    /// Serves `repo` (its parent is the project root) to `user:password`.
    pub fn serve(repo: &Path, user: &str, password: &str) -> GitHttp {
        use std::sync::{Arc, atomic::AtomicUsize};
        let name = repo.file_name().unwrap().to_string_lossy().into_owned();
        let refused = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let state = GitHttpState {
            root: repo.parent().unwrap().to_owned(),
            authorization: format!("Basic {}", base64(format!("{user}:{password}").as_bytes())),
            user: user.to_owned(),
            refused: refused.clone(),
            served: served.clone(),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener).unwrap()
        };
        let app = axum::Router::new()
            .fallback(git_http_backend)
            .with_state(state);
        runtime.spawn(async move { axum::serve(listener, app).await });
        GitHttp {
            runtime: Some(runtime),
            port,
            name,
            refused,
            served,
        }
    }

    /// `http://127.0.0.1:PORT/NAME`, with `user_info` (`user:password`) if given.
    pub fn url(&self, user_info: Option<&str>) -> String {
        let user_info = user_info.map(|u| format!("{u}@")).unwrap_or_default();
        format!("http://{user_info}127.0.0.1:{}/{}", self.port, self.name)
    }

    /// Requests answered 401 (missing or wrong credentials) so far.
    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests let through to `git http-backend` so far.
    pub fn served(&self) -> usize {
        self.served.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        // Cancels the server and every request in flight; their CGI
        // processes are `kill_on_drop`.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}

/// One request: the Basic auth check, then `git http-backend` as a CGI.
async fn git_http_backend(
    axum::extract::State(state): axum::extract::State<GitHttpState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::{body::Body, http::StatusCode, response::IntoResponse};
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let (parts, body) = request.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    if header("authorization") != state.authorization {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"git\"")],
            "authentication required\n",
        )
            .into_response();
    }
    state.served.fetch_add(1, Ordering::SeqCst);
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let backend = Path::new(git_exec_path().trim()).join("git-http-backend");
    let mut child = match tokio::process::Command::new(backend)
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        // git sends large requests gzipped; http-backend inflates them itself.
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", &state.user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    // Written alongside the reading, so neither side blocks on a full pipe.
    let mut stdin = child.stdin.take().unwrap();
    tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut response = axum::http::Response::builder();
    loop {
        let mut line = String::new();
        match stdout.read_line(&mut line).await {
            Ok(0) | Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
            Ok(_) => {}
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return StatusCode::BAD_GATEWAY.into_response();
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().unwrap_or("").parse().unwrap_or(500);
            response = response.status(code);
        } else {
            response = response.header(name, value);
        }
    }
    // The rest is the body, streamed; the child is reaped (or killed) with it.
    let body = futures::stream::unfold((stdout, child), |(mut stdout, child)| async move {
        let mut chunk = vec![0u8; 64 * 1024];
        match stdout.read(&mut chunk).await {
            Ok(0) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok::<_, std::io::Error>(chunk), (stdout, child)))
            }
            Err(e) => Some((Err(e), (stdout, child))),
        }
    });
    response
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

/// `git --exec-path`, asked once.
fn git_exec_path() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let output = Command::new("git").arg("--exec-path").output().unwrap();
        String::from_utf8(output.stdout).unwrap()
    })
}

/// Standard base64 with padding (for an `Authorization: Basic` value).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An HTTP endpoint on 127.0.0.1 that records every POST it receives
/// (alert sinks): `X-Sluice-Event`, the signature header and the JSON body.
pub struct Receiver {
    runtime: Option<tokio::runtime::Runtime>,
    pub url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub event: String,
    pub signature: Option<String>,
    pub raw: String,
    pub body: serde_json::Value,
}

impl Receiver {
    pub fn start() -> Receiver {
        use std::sync::{Arc, Mutex};
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener).unwrap()
        };
        let sink = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, raw: String| {
                let sink = sink.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    sink.lock().unwrap().push(Received {
                        event: header("x-sluice-event").unwrap_or_default(),
                        signature: header("x-sluice-signature-256"),
                        body: serde_json::from_str(&raw).unwrap_or_default(),
                        raw,
                    });
                    "ok"
                }
            }),
        );
        runtime.spawn(async move { axum::serve(listener, app).await });
        Receiver {
            runtime: Some(runtime),
            url,
            received,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// How many alerts of `event` arrived.
    pub fn count(&self, event: &str) -> usize {
        self.received().iter().filter(|r| r.event == event).count()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}

/// insta settings that make a command's output the same from run to run,
/// keeping its columns aligned: the repository's commits become
/// `00000001`, `00000002`… (oldest first, as long as shown), times
/// `0000-00-00T00:00:00Z`, ages `[age]`, loopback ports `[port]`, the
/// repository's path `[repo]`, this machine's user `[user]`. Make them
/// after the commits a snapshot shows, and bind them (`settings.bind(|| …)`)
/// around it.
pub fn stable_output(repo: impl AsRef<Path>) -> insta::Settings {
    let repo = repo.as_ref();
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(true);
    let log = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["log", "--all", "--topo-order", "--reverse", "--format=%H"])
        .output()
        .expect("git runs");
    let commits = String::from_utf8_lossy(&log.stdout);
    for (n, commit) in commits.lines().enumerate() {
        settings.add_filter(commit, format!("{:0>40}", n + 1));
        settings.add_filter(&format!(r"\b{}\b", &commit[..8]), format!("{:0>8}", n + 1));
        settings.add_filter(
            &format!(r"\b{}[0-9a-f]*\b", &commit[..7]),
            format!("C{}", n + 1),
        );
    }
    settings.add_filter(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
        "0000-00-00T00:00:00.000Z",
    );
    settings.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "0000-00-00T00:00:00Z");
    settings.add_filter(r"\b\d+[smhd] ago\b", "[age] ago");
    settings.add_filter(r"\bin \d+(\.\d+)?(ms|s)\b", "in [duration]");
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[port]");
    let path = repo.to_str().unwrap();
    settings.add_filter(&regex_escape(path), "[repo]");
    // Who pins from this machine (`sluice pin` records the OS user).
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "local".to_owned());
    settings.add_filter(&format!(r"\b{}\b", regex_escape(&user)), "[user]");
    settings
}

/// A snapshot of `text` under [`stable_output`] for `repo` as it is now,
/// named after the calling module.
#[macro_export]
macro_rules! assert_stable {
    ($repo:expr, $name:expr, $text:expr) => {
        $crate::support::stable_output($repo)
            .bind(|| insta::assert_snapshot!($name.to_string(), $text))
    };
}

/// `text` matched literally by an insta filter.
pub fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// `sluice run` on `repo`, its ledger in `data`, on a free loopback port,
/// polling every `interval`, with `extra` flags and `envs`; returns once
/// it is ready (`/readyz` answers 200).
pub fn sluice_run(
    repo: &TestRepo,
    data: &Path,
    interval: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> GatewayProcess {
    let mut args = vec![
        "run",
        "--repo",
        repo.path().to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--interval",
        interval,
    ];
    args.extend(extra);
    let run = GatewayProcess::spawn(&args, envs);
    let ready = format!("{}/readyz", run.url);
    eventually(60, "sluice run ready", || {
        http("GET", &ready, &[], "").0 == 200
    });
    run
}

/// Everything `pipe` gives, as it comes, read on a thread of its own so the
/// process never blocks on a full pipe.
pub fn collect(
    mut pipe: impl std::io::Read + Send + 'static,
) -> std::sync::Arc<std::sync::Mutex<String>> {
    let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buffer) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });
    text
}
