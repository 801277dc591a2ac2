//! The test Kubernetes API server: a real kube-apiserver with etcd, built from
//! Go modules by `scripts/k8s-test-env.sh`.
//!
//! [`client`] hands a test a [`kube::Client`] for that server:
//!
//! 1. If `SLUICE_TEST_KUBECONFIG` is set (as `scripts/k8s-test-env.sh run --
//!    CMD` and `eval "$(scripts/k8s-test-env.sh start)"` do), it connects there.
//! 2. Otherwise, unless `SLUICE_K8S_AUTOSTART=0`, it runs
//!    `scripts/k8s-test-env.sh start --no-build`, which reuses a running
//!    environment or starts one from binaries already in the cache (it never
//!    starts a Go build; the environment stays up for later runs until
//!    `scripts/k8s-test-env.sh stop`).
//! 3. If neither gives a server, the test is skipped with a note on stderr,
//!    except under `CI=true`, where it panics so that a missing server fails CI.
//!
//! The plain `KUBECONFIG` is deliberately not read: tests create and delete
//! objects, and must never run against whatever cluster a developer's shell
//! points at.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Once, OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

/// How to get a server when none is configured.
pub const RUN_HINT: &str = "scripts/k8s-test-env.sh run -- cargo test --test kube";

/// Exit status of the script meaning "no server can be provided here".
const UNAVAILABLE: i32 = 3;

enum Source {
    /// A kubeconfig for a running test API server.
    Ready(PathBuf),
    /// No server here (no Go, nothing built, autostart off): skip.
    Unavailable(String),
    /// A server should be there but is broken: always fail.
    Broken(String),
}

static SOURCE: OnceLock<Source> = OnceLock::new();

/// A client for the test API server, or `None` when there is none and the
/// test should return early (never under `CI=true`, where this panics).
/// The kubeconfig of the test API server, once [`client`] has found one
/// (for tests that run the `sluice` binary against it).
pub fn kubeconfig() -> Option<PathBuf> {
    match SOURCE.get()? {
        Source::Ready(path) => Some(path.clone()),
        _ => None,
    }
}

pub async fn client() -> Option<Client> {
    let source = tokio::task::spawn_blocking(|| SOURCE.get_or_init(locate))
        .await
        .expect("locating the test API server panicked");
    match source {
        Source::Ready(path) => Some(connect(path).await),
        Source::Broken(reason) => panic!("test Kubernetes API server is broken: {reason}"),
        Source::Unavailable(reason) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "CI=true but there is no test Kubernetes API server: {reason}. \
                     CI must build and start it: {RUN_HINT}"
                );
            }
            static NOTE: Once = Once::new();
            NOTE.call_once(|| {
                // Straight to stderr, past libtest's output capture, so the
                // reason shows without --nocapture.
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: no test Kubernetes API server ({reason}); \
                     run {RUN_HINT}"
                );
            });
            None
        }
    }
}

fn locate() -> Source {
    if let Some(path) = std::env::var_os("SLUICE_TEST_KUBECONFIG").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Source::Ready(path)
        } else {
            Source::Broken(format!(
                "SLUICE_TEST_KUBECONFIG={} is not a file",
                path.display()
            ))
        };
    }
    if std::env::var("SLUICE_K8S_AUTOSTART").is_ok_and(|v| v == "0") {
        return Source::Unavailable(
            "SLUICE_TEST_KUBECONFIG is not set and SLUICE_K8S_AUTOSTART=0".into(),
        );
    }
    start_cached_environment()
}

/// `scripts/k8s-test-env.sh start --no-build`: reuse or start the shared
/// environment if its binaries are already built.
fn start_cached_environment() -> Source {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/k8s-test-env.sh");
    let output = match Command::new("bash")
        .arg(&script)
        .args(["start", "--no-build"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(output) => output,
        Err(err) => {
            return Source::Unavailable(format!("cannot run {}: {err}", script.display()));
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last_line = stderr.lines().last().unwrap_or("").trim();
    match output.status.code() {
        Some(0) => {}
        Some(UNAVAILABLE) => {
            return Source::Unavailable(
                last_line
                    .trim_start_matches("k8s-test-env: unavailable: ")
                    .to_owned(),
            );
        }
        _ => {
            return Source::Broken(format!(
                "`{} start --no-build` failed ({}):\n{stderr}",
                script.display(),
                output.status
            ));
        }
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(path) = stdout
        .lines()
        .find_map(|line| line.strip_prefix("export SLUICE_TEST_KUBECONFIG="))
    else {
        return Source::Broken(format!(
            "no SLUICE_TEST_KUBECONFIG in the output of start:\n{stdout}"
        ));
    };
    let path = PathBuf::from(unquote_shell(path));
    let _ = writeln!(
        std::io::stderr(),
        "using the test Kubernetes API server of {} (stop it with: scripts/k8s-test-env.sh stop)",
        path.display()
    );
    Source::Ready(path)
}

/// Undo bash's `printf %q` for the plain paths the script prints.
fn unquote_shell(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '\'' | '"' => {}
            c => out.push(c),
        }
    }
    out
}

/// A client for the same server that authenticates with `bearer_token`
/// instead of the test admin's token (for RBAC tests). Call after [`client`]
/// returned `Some`.
pub async fn client_with_token(bearer_token: &str) -> Client {
    let Some(Source::Ready(path)) = SOURCE.get() else {
        panic!("client_with_token needs a running test API server");
    };
    let mut kubeconfig = serde_json::to_value(read_kubeconfig(path)).expect("kubeconfig to JSON");
    for user in kubeconfig["users"]
        .as_array_mut()
        .expect("kubeconfig users")
    {
        user["user"] = serde_json::json!({ "token": bearer_token });
    }
    let kubeconfig = serde_json::from_value(kubeconfig).expect("kubeconfig from JSON");
    connect_with(path, kubeconfig).await
}

fn read_kubeconfig(path: &Path) -> Kubeconfig {
    Kubeconfig::read_from(path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

async fn connect(kubeconfig: &Path) -> Client {
    connect_with(kubeconfig, read_kubeconfig(kubeconfig)).await
}

async fn connect_with(kubeconfig: &Path, kubeconfig_file: Kubeconfig) -> Client {
    let config = Config::from_custom_kubeconfig(kubeconfig_file, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|err| panic!("loading {}: {err}", kubeconfig.display()));
    Client::try_from(config).expect("building a kube client")
}

/// A DNS-1123 name unique to this test run, so that reruns against a reused
/// server never collide: `PREFIX-<pid><time><counter>` in base 36.
/// A new namespace named from `prefix`, for one test's objects.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{ObjectMeta, PostParams};
    let name = unique_name(prefix);
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    kube::Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("creating a namespace");
    name
}

/// Runs `git ARGS` in `dir` as a test author; it must succeed.
pub fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=Sluice Test",
            "-c",
            "user.email=test@sluice.dev",
        ])
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// Creates the ServiceAccount `metadata` names and returns a token for it
/// (valid ten minutes).
pub async fn service_account_token(
    accounts: &kube::Api<k8s_openapi::api::core::v1::ServiceAccount>,
    metadata: kube::api::ObjectMeta,
) -> String {
    use k8s_openapi::api::{
        authentication::v1::{TokenRequest, TokenRequestSpec},
        core::v1::ServiceAccount,
    };
    let pp = kube::api::PostParams::default();
    let name = metadata.name.clone().expect("a named ServiceAccount");
    accounts
        .create(
            &pp,
            &ServiceAccount {
                metadata,
                ..ServiceAccount::default()
            },
        )
        .await
        .expect("creating a ServiceAccount");
    accounts
        .create_token_request(
            &name,
            &pp,
            &TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(600),
                    ..TokenRequestSpec::default()
                }),
                ..TokenRequest::default()
            },
        )
        .await
        .expect("requesting a ServiceAccount token")
        .status
        .expect("token status")
        .token
        .expect("token")
}

/// Creates the Role `metadata` names in `namespace` with `rules`, and binds
/// it to the ServiceAccount of the same name there.
pub async fn grant(
    admin: &Client,
    namespace: &str,
    metadata: kube::api::ObjectMeta,
    rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule>,
) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding, RoleRef, Subject};
    let pp = kube::api::PostParams::default();
    let name = metadata.name.clone().expect("a named Role");
    kube::Api::<Role>::namespaced(admin.clone(), namespace)
        .create(
            &pp,
            &Role {
                metadata: metadata.clone(),
                rules: Some(rules),
            },
        )
        .await
        .expect("creating a Role");
    kube::Api::<RoleBinding>::namespaced(admin.clone(), namespace)
        .create(
            &pp,
            &RoleBinding {
                metadata,
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: name.clone(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name,
                    namespace: Some(namespace.into()),
                    ..Subject::default()
                }]),
            },
        )
        .await
        .expect("creating a RoleBinding");
}

pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}-{}-{}-{}",
        base36(u128::from(std::process::id())),
        base36(nanos % 36u128.pow(8)),
        base36(u128::from(n))
    )
}

fn base36(mut n: u128) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

/// What a wait that timed out shows beside its message: a process's log,
/// or nothing (`&()`).
pub trait Shows {
    fn shown(&self) -> String;
}

impl Shows for () {
    fn shown(&self) -> String {
        String::new()
    }
}

/// The one polling wait of these tests: `check` every 100 ms until it gives
/// `Some`, or a failure after `seconds` that says what was awaited and
/// shows `context`.
pub async fn eventually<T, F, Fut>(
    seconds: u64,
    what: &str,
    context: &impl Shows,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {seconds}s waiting for {what}{}",
            context.shown()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Await `fut`, failing the test if it takes longer than `secs` seconds.
pub async fn within<F: IntoFuture>(secs: u64, what: &str, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs}s: {what}"))
}

/// The HTTP status code of a Kubernetes API error, if it is one.
pub fn api_status(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Whether a request may succeed when made again: the API server said it
/// was overloaded or timed out (`429`, `500 Handler timeout`, `503`, `504`),
/// or the answer never arrived (a connection the client gave up on under
/// load). Tests retry these; any other answer is the one under test.
pub fn is_transient(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => matches!(status.code, 429 | 500 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Creates `object`, retrying until a deadline while a freshly established
/// kind is not yet routed (`404`) and while the API server is too busy to
/// answer ([`is_transient`]). A create retried after no answer may have
/// gone through: its `409` is the object.
pub async fn create<K>(api: &kube::Api<K>, object: &K) -> Result<K, kube::Error>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    use kube::ResourceExt as _;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut retried = false;
    loop {
        match api.create(&kube::api::PostParams::default(), object).await {
            Err(err) if api_status(&err) == Some(409) && retried => {
                return api.get(&object.name_any()).await;
            }
            Err(err)
                if (api_status(&err) == Some(404) || is_transient(&err))
                    && std::time::Instant::now() < deadline =>
            {
                retried |= is_transient(&err);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            result => return result,
        }
    }
}
