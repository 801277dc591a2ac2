//! Benchmark of `sluice controller` against the test Kubernetes API server:
//! 1,000 `Environment` objects with 10 `configmap` gateways each.
//!
//! ```text
//! scripts/k8s-test-env.sh run -- timeout 2400 cargo bench --bench controller
//! ```
//!
//! Without `SLUICE_TEST_KUBECONFIG` it says how to run it and exits 0. With
//! it, it generates a config repository (a small shared base pack, one pack
//! of each environment's own, 10 ConfigMap gateways per environment, all in
//! one namespace), commits it and serves it with `git daemon` on loopback,
//! installs the CRDs, creates one `ConfigRepository` and the `Environment`
//! objects, then starts the release `sluice controller` under
//! `/usr/bin/time` and measures:
//!
//! - wall time from the controller's start to every Environment showing
//!   `Synced=True` (a list call every 500 ms), and the rates;
//! - that every ConfigMap exists with the digest annotation;
//! - the controller's peak RSS (stopped with SIGTERM).
//!
//! `SLUICE_BENCH_ENVIRONMENTS=N` overrides the count (for a quick try).

mod common;
#[path = "../tests/common/crds.rs"]
mod crds;
#[path = "../tests/common/git_daemon.rs"]
mod git_daemon;

use common::{git, write};
use git_daemon::GitDaemon;

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use sluice::{
    gateway::configmap::DIGEST_ANNOTATION,
    k8s::{ConfigRepository, Environment, crd::condition},
};
use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Environments (Environment objects), by default.
const ENVIRONMENTS: usize = 1_000;
const GATEWAYS_PER_ENVIRONMENT: usize = 10;
/// Environment objects created at once.
const CREATE_CONCURRENCY: usize = 16;
/// How often the Environments are listed.
const POLL: Duration = Duration::from_millis(500);
const DEADLINE: Duration = Duration::from_secs(20 * 60);
/// The ConfigRepository's `interval` (the example's).
const INTERVAL: &str = "1m";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(kubeconfig) = std::env::var_os("SLUICE_TEST_KUBECONFIG").map(PathBuf::from) else {
        println!(
            "benches/controller.rs needs the test Kubernetes API server (SLUICE_TEST_KUBECONFIG is not set); run it with:\n  \
             scripts/k8s-test-env.sh run -- timeout 2400 cargo bench --bench controller"
        );
        return;
    };
    let environments: usize = std::env::var("SLUICE_BENCH_ENVIRONMENTS")
        .ok()
        .map(|n| n.parse().expect("SLUICE_BENCH_ENVIRONMENTS is a number"))
        .unwrap_or(ENVIRONMENTS);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let binary = sluice_binary();
    let client = runtime.block_on(connect(&kubeconfig));
    let dir = tempfile::tempdir().unwrap();
    let namespace = format!("sluice-bench-{}", std::process::id());

    let repo = dir.path().join("policy");
    let started = Instant::now();
    generate(&repo, &namespace, environments);
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "fleet"]);
    // NB: packed, as a served repository usually is.
    git(&repo, &["gc", "-q"]);
    let daemon = GitDaemon::serve(&repo);
    println!(
        "repository: {environments} environments × {GATEWAYS_PER_ENVIRONMENT} configmap gateways, generated and committed in {:.1?}, served at {}",
        started.elapsed(),
        daemon.url()
    );

    let started = Instant::now();
    runtime.block_on(async {
        crds::install_crds(&client).await;
        create_namespace(&client, &namespace).await;
        create_objects(&client, &namespace, &daemon.url(), environments).await;
    });
    println!(
        "CRDs, namespace {namespace}, 1 ConfigRepository and {environments} Environments created in {:.1?} ({CREATE_CONCURRENCY} at once)",
        started.elapsed()
    );

    let controller = Controller::start(&binary, &kubeconfig, &namespace, dir.path());
    let outcome = runtime.block_on(wait_synced(&client, &namespace, environments, &controller));
    let hwm = controller.vm_hwm_kib();
    let config_maps = runtime.block_on(count_config_maps(&client, &namespace));
    let (peak_kib, log) = controller.stop();

    let gateways = environments * GATEWAYS_PER_ENVIRONMENT;
    match outcome {
        Ok(Synced { all, first }) => {
            let secs = all.as_secs_f64();
            println!(
                "controller start to all {environments} Environments Synced=True: {all:.1?} (first after {first:.1?}); {:.1} environments/s, {:.0} gateways/s",
                environments as f64 / secs,
                gateways as f64 / secs
            );
        }
        Err(synced) => println!(
            "NOT all Synced within {DEADLINE:?}: {synced}/{environments} Environments Synced=True ({:.2} environments/s)",
            synced as f64 / DEADLINE.as_secs_f64()
        ),
    }
    println!(
        "ConfigMaps with the {DIGEST_ANNOTATION} annotation: {config_maps} of {gateways} expected"
    );
    println!(
        "controller peak RSS: {} MiB (/usr/bin/time %M; VmHWM before SIGTERM {} MiB; goal < 200 MB)",
        peak_kib / 1024,
        hwm / 1024
    );
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    println!(
        "controller log: {} lines, {warnings} warnings",
        log.lines().count()
    );
    if let Some(line) = log.lines().find(|l| l.contains("WARN")) {
        println!("  first warning: {line}");
    }

    runtime.block_on(async {
        let _ = Api::<Namespace>::all(client.clone())
            .delete(&namespace, &DeleteParams::default())
            .await;
    });
    drop(daemon);
    let complete = outcome.is_ok() && config_maps == gateways;
    assert!(complete, "the benchmark did not complete; see above");
}

async fn connect(kubeconfig: &Path) -> Client {
    let file = Kubeconfig::read_from(kubeconfig).expect("reading SLUICE_TEST_KUBECONFIG");
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .expect("loading SLUICE_TEST_KUBECONFIG");
    Client::try_from(config).expect("building a kube client")
}

/// A repository of `environments` environments, each with its own pack on
/// two shared base packs and `GATEWAYS_PER_ENVIRONMENT` ConfigMap gateways
/// (`env-NNNN-gw-NN` in `namespace`).
fn generate(repo: &Path, namespace: &str, environments: usize) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo");
    write(repo, "sluice.yaml", "promotion:\n  order: []\n");
    for pack in ["baseline", "models"] {
        let text = fs::read_to_string(example.join(format!("base/packs/{pack}.yaml"))).unwrap();
        write(repo, &format!("base/packs/{pack}.yaml"), &text);
    }
    for e in 0..environments {
        let slug = format!("env-{e:04}");
        write(
            repo,
            &format!("environments/{slug}/environment.yaml"),
            &format!("slug: {slug}\nname: Environment {e}\n"),
        );
        let mut gateways = String::from("gateways:\n");
        for g in 0..GATEWAYS_PER_ENVIRONMENT {
            let _ = write!(
                gateways,
                "  - name: gw-{g:02}\n    driver: configmap\n    namespace: {namespace}\n    configMap: {slug}-gw-{g:02}\n"
            );
        }
        write(
            repo,
            &format!("environments/{slug}/gateways.yaml"),
            &gateways,
        );
        write(
            repo,
            &format!("environments/{slug}/packs/limits.yaml"),
            &format!(
                "pack:\n  name: limits\n  version: 1.0.0\npolicies:\n  chain: [rate-limit]\npolicy:\n  rate-limit:\n    requests_per_minute: {}\n",
                100 + e
            ),
        );
    }
}

async fn create_namespace(client: &Client, name: &str) {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("creating the namespace");
}

async fn create_objects(client: &Client, namespace: &str, url: &str, environments: usize) {
    let repository: ConfigRepository = serde_json::from_value(serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "ConfigRepository",
        "metadata": { "name": "policy" },
        "spec": { "url": url, "ref": { "branch": "main" }, "interval": INTERVAL },
    }))
    .unwrap();
    Api::<ConfigRepository>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &repository)
        .await
        .expect("creating the ConfigRepository");
    let api: Api<Environment> = Api::namespaced(client.clone(), namespace);
    futures::stream::iter(0..environments)
        .map(|e| {
            let api = api.clone();
            async move {
                let slug = format!("env-{e:04}");
                let environment: Environment = serde_json::from_value(serde_json::json!({
                    "apiVersion": "sluice.dev/v1alpha1",
                    "kind": "Environment",
                    "metadata": { "name": slug },
                    "spec": {
                        "repositoryRef": { "name": "policy" },
                        "path": format!("environments/{slug}"),
                    },
                }))
                .unwrap();
                api.create(&PostParams::default(), &environment).await
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await
        .expect("creating the Environments");
}

struct Synced {
    all: Duration,
    first: Duration,
}

/// Lists the Environments every [`POLL`] until all are `Synced=True`;
/// `Err(count synced)` after [`DEADLINE`].
async fn wait_synced(
    client: &Client,
    namespace: &str,
    environments: usize,
    controller: &Controller,
) -> Result<Synced, usize> {
    let api: Api<Environment> = Api::namespaced(client.clone(), namespace);
    let mut first = None;
    let mut reported = Instant::now();
    loop {
        let synced = match api.list(&ListParams::default()).await {
            Ok(list) => list.items.iter().filter(|e| is_synced(e)).count(),
            Err(e) => {
                println!("  listing Environments failed: {e}");
                0
            }
        };
        let elapsed = controller.started.elapsed();
        if synced > 0 && first.is_none() {
            first = Some(elapsed);
        }
        if synced == environments {
            return Ok(Synced {
                all: elapsed,
                first: first.unwrap_or(elapsed),
            });
        }
        if elapsed > DEADLINE {
            return Err(synced);
        }
        if reported.elapsed() >= Duration::from_secs(5) {
            reported = Instant::now();
            println!(
                "  {elapsed:>6.1?}: {synced}/{environments} Synced=True, controller RSS {} MiB, {} threads",
                controller.vm_rss_kib() / 1024,
                controller.status_field("Threads:")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn is_synced(env: &Environment) -> bool {
    env.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == condition::SYNCED && c.status == "True")
    })
}

async fn count_config_maps(client: &Client, namespace: &str) -> usize {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut count = 0;
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await.expect("listing the ConfigMaps");
        count += page
            .items
            .iter()
            .filter(|c| c.annotations().contains_key(DIGEST_ANNOTATION))
            .count();
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return count,
        }
    }
}

/// `sluice controller` under `/usr/bin/time -f %M`.
struct Controller {
    time: Child,
    sluice: u32,
    started: Instant,
    rss_file: PathBuf,
    log_file: PathBuf,
}

impl Controller {
    fn start(binary: &Path, kubeconfig: &Path, namespace: &str, dir: &Path) -> Controller {
        let rss_file = dir.join("controller.rss");
        let log_file = dir.join("controller.log");
        let started = Instant::now();
        let time = Command::new("/usr/bin/time")
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss_file)
            .arg(binary)
            .args(["controller", "--listen", "127.0.0.1:0"])
            .args(["--watch-namespace", namespace])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("KUBECONFIG", kubeconfig)
            .env("SLUICE_LOG", "info")
            .env_remove("SLUICE_REPO")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log_file).unwrap())
            .spawn()
            .expect("/usr/bin/time runs");
        // The controller is /usr/bin/time's only child.
        let children = format!("/proc/{0}/task/{0}/children", time.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        let sluice = loop {
            if let Some(pid) = fs::read_to_string(&children)
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
            {
                break pid;
            }
            assert!(Instant::now() < deadline, "the controller did not start");
            std::thread::sleep(Duration::from_millis(5));
        };
        Controller {
            time,
            sluice,
            started,
            rss_file,
            log_file,
        }
    }

    fn status_field(&self, field: &str) -> u64 {
        fs::read_to_string(format!("/proc/{}/status", self.sluice))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(field))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    fn vm_rss_kib(&self) -> u64 {
        self.status_field("VmRSS:")
    }

    /// Sends `kill -SIGNAL` to the controller (not to `time` around it).
    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.sluice.to_string())
            .status();
    }

    fn vm_hwm_kib(&self) -> u64 {
        self.status_field("VmHWM:")
    }

    /// SIGTERM, wait; the peak RSS (KiB) and the log.
    fn stop(mut self) -> (u64, String) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.time.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                println!("the controller did not stop within 60 s of SIGTERM; killed");
                self.signal("KILL");
                let _ = self.time.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let rss = fs::read_to_string(&self.rss_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .next_back()
            .unwrap_or(0);
        let log = fs::read_to_string(&self.log_file).unwrap_or_default();
        (rss, log)
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if self.time.try_wait().ok().flatten().is_none() {
            self.signal("KILL");
            let _ = self.time.wait();
        }
    }
}

fn sluice_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let release = exe.parent().and_then(Path::parent).expect("target/release");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--bin", "sluice"])
        .status()
        .expect("cargo builds");
    assert!(status.success());
    release.join("sluice")
}
