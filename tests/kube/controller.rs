//! `sluice controller` against the real API server: an Environment pointing
//! at a git repository served over loopback reconciles into a ConfigMap
//! gateway and an HTTP reference gateway, with the status, history and
//! Events right; a hand edit of the ConfigMap is seen as drift and put back
//! (production's policy is `heal`), at once when the controller watches the
//! gateway namespace, long before any requeue. And without the CRDs it
//! refuses to start.
//!
//! The controller runs as a local process with KUBECONFIG: the test API
//! server has no scheduler to run its Deployment.

use crate::{
    crds::install_crds,
    env::{self, eventually},
    git_daemon::GitDaemon,
};
use k8s_openapi::api::{
    core::v1::{ConfigMap, Namespace},
    events::v1::Event,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use sluice::{
    config::Digest,
    gateway::configmap::{DIGEST_ANNOTATION, ENVIRONMENT_LABEL},
    k8s::{self, ConfigRepository, Environment, crd::condition},
    ledger::{GatewayState, Trigger},
    server::webhook::github_signature,
};
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The example repository copied to `work/policy`, each `(environment,
/// gateways.yaml)` written over it, committed on `main`.
fn policy_repo(work: &Path, gateways: &[(&str, String)]) -> PathBuf {
    let repo = work.join("policy");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo");
    assert!(
        Command::new("cp")
            .arg("-r")
            .arg(&example)
            .arg(&repo)
            .status()
            .unwrap()
            .success()
    );
    for (environment, yaml) in gateways {
        std::fs::write(
            repo.join(format!("environments/{environment}/gateways.yaml")),
            yaml,
        )
        .unwrap();
    }
    env::git(&repo, &["init", "-q", "-b", "main"]);
    env::git(&repo, &["add", "-A"]);
    env::git(&repo, &["commit", "-q", "-m", "gateways for the test"]);
    repo
}

/// [`policy_repo`] with production's one gateway on the ConfigMap
/// `policy` of `namespace` (`prod-cm`).
fn production_on_a_configmap(work: &Path, namespace: &str) -> PathBuf {
    policy_repo(
        work,
        &[(
            "production",
            format!(
                "gateways:\n  - name: prod-cm\n    driver: configmap\n    namespace: {namespace}\n    configMap: policy\n"
            ),
        )],
    )
}

/// [`production_on_a_configmap`] in `gateways`, served over git and
/// created as the ConfigRepository `policy` and the Environment
/// `production` of `namespace`, with every requeue far away (the repository
/// polled hourly, drift checked every 10 minutes): what happens at once is
/// a watch's or a request's doing. The daemon serves while it lives.
async fn production_far_from_any_requeue(
    client: &Client,
    work: &Path,
    namespace: &str,
    gateways: &str,
) -> (PathBuf, GitDaemon) {
    let repo = production_on_a_configmap(work, gateways);
    let environment_yaml = repo.join("environments/production/environment.yaml");
    let yaml = std::fs::read_to_string(&environment_yaml).unwrap();
    assert!(yaml.contains("interval: 1m"), "{yaml}");
    std::fs::write(
        &environment_yaml,
        yaml.replace("interval: 1m", "interval: 10m"),
    )
    .unwrap();
    env::git(
        &repo,
        &["commit", "-q", "-am", "drift checked every 10 minutes"],
    );
    let daemon = GitDaemon::serve(&repo);
    create_repository_every(client, namespace, &daemon.url(), "1h").await;
    create_environment(client, namespace, "production", serde_json::json!({})).await;
    (repo, daemon)
}

/// The ConfigRepository `policy`: `url`, branch main, polled every 2 s.
async fn create_repository(client: &Client, namespace: &str, url: &str) {
    create_repository_every(client, namespace, url, "2s").await;
}

/// The ConfigRepository `policy`: `url`, branch main, polled every `interval`.
async fn create_repository_every(client: &Client, namespace: &str, url: &str, interval: &str) {
    let spec = serde_json::json!({ "url": url, "ref": { "branch": "main" }, "interval": interval });
    create_repository_with(client, namespace, spec).await;
}

/// The ConfigRepository `policy` with `spec`.
async fn create_repository_with(client: &Client, namespace: &str, spec: serde_json::Value) {
    let repository: ConfigRepository = serde_json::from_value(serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "ConfigRepository",
        "metadata": { "name": "policy" },
        "spec": spec,
    }))
    .unwrap();
    Api::<ConfigRepository>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &repository)
        .await
        .expect("creating the ConfigRepository");
}

/// The Environment `name` for `environments/<name>` of `policy`.
async fn create_environment(
    client: &Client,
    namespace: &str,
    name: &str,
    labels: serde_json::Value,
) {
    let environment: Environment = serde_json::from_value(serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Environment",
        "metadata": { "name": name, "labels": labels },
        "spec": { "repositoryRef": { "name": "policy" }, "path": format!("environments/{name}") },
    }))
    .unwrap();
    Api::<Environment>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &environment)
        .await
        .expect("creating the Environment");
}

/// What the operator of these tests allows: production its `PROD_*`
/// variables (the example's alert webhook, the test gateway's token), and
/// every environment the loopback gateways.
const OPERATOR: [(&str, &str); 2] = [
    ("SLUICE_ALLOW_ENV", "production=PROD_*"),
    ("SLUICE_ALLOW_URL", "*=http://127.0.0.1:*"),
];

/// A long-running `sluice` process that prints `listening on ADDR`; its
/// stderr goes to a file shown when the test fails.
struct Process {
    child: Child,
    address: String,
    log: PathBuf,
}

impl Process {
    fn start(args: &[&str], envs: &[(&str, &str)], log: PathBuf) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .envs(OPERATOR.iter().copied())
            .envs(envs.iter().copied())
            .env_remove("SLUICE_REPO")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("sluice starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("listening on ") {
                    let _ = tx.send(address.to_owned());
                }
            }
        });
        let Ok(address) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!(
                "sluice {args:?} did not listen:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Process {
            child,
            address,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sluice controller --watch-namespace NAMESPACE ARGS…` with its data under
/// `work/NAME` and its log in `work/NAME.log`, logging at info.
fn start_controller(work: &Path, name: &str, namespace: &str, args: &[&str]) -> Process {
    start_controller_with(work, name, namespace, args, &[])
}

/// [`start_controller`] with more environment variables.
fn start_controller_with(
    work: &Path,
    name: &str,
    namespace: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Process {
    let kubeconfig = env::kubeconfig().expect("the client came from a kubeconfig");
    let data = work.join(name);
    let mut all = vec![
        "controller",
        "--listen",
        "127.0.0.1:0",
        "--watch-namespace",
        namespace,
        "--data-dir",
        data.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    Process::start(
        &all,
        &[
            &[
                ("KUBECONFIG", kubeconfig.to_str().unwrap()),
                ("SLUICE_LOG", "info"),
            ],
            envs,
        ]
        .concat(),
        work.join(format!("{name}.log")),
    )
}

impl env::Shows for Process {
    fn shown(&self) -> String {
        format!("; controller log:\n{}", self.log())
    }
}

fn condition_of(env: &Environment, type_: &str) -> Option<(String, String)> {
    env.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[tokio::test]
async fn an_environment_reconciles_into_configmap_and_http_gateways_and_heals_drift() {
    let Some(client) = env::client().await else {
        return;
    };
    let kubeconfig = env::kubeconfig().expect("the client came from a kubeconfig");
    install_crds(&client).await;
    let namespace = env::namespace(&client, "sluice-ctl").await;
    let work = tempfile::tempdir().unwrap();

    // The reference gateway, with a bearer token. NB: the http driver reads
    // `tokenEnv` of gateways.yaml from the controller's environment; tokens
    // from Secrets are for Gateway objects (`spec.secretRef`).
    let token = "test-gateway-token";
    let gateway = Process::start(
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--data",
            work.path().join("gateway").to_str().unwrap(),
            "--token-env",
            "PROD_TEST_GATEWAY_TOKEN",
        ],
        &[("PROD_TEST_GATEWAY_TOKEN", token)],
        work.path().join("gateway.log"),
    );

    // The config repository: the example, with production on a ConfigMap
    // and on the reference gateway.
    let repo = policy_repo(
        work.path(),
        &[(
            "production",
            format!(
                "gateways:\n  - name: prod-cm\n    driver: configmap\n    namespace: {namespace}\n    configMap: policy\n  - name: prod-http\n    driver: http\n    url: http://{}\n    tokenEnv: PROD_TEST_GATEWAY_TOKEN\n",
                gateway.address
            ),
        )],
    );
    let daemon = GitDaemon::serve(&repo);
    create_repository(&client, &namespace, &daemon.url()).await;
    create_environment(&client, &namespace, "production", serde_json::json!({})).await;
    let environments: Api<Environment> = Api::namespaced(client.clone(), &namespace);

    let controller = Process::start(
        &[
            "controller",
            "--listen",
            "127.0.0.1:0",
            "--watch-namespace",
            &namespace,
            "--data-dir",
            work.path().join("data").to_str().unwrap(),
        ],
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("PROD_TEST_GATEWAY_TOKEN", token),
            ("SLUICE_LOG", "info"),
        ],
        work.path().join("controller.log"),
    );

    // Reconciled: Ready, both gateways in sync, one apply in the history.
    let synced = eventually(
        120,
        "Synced=True with both gateways in sync",
        &controller,
        || async {
            let env = environments.get("production").await.ok()?;
            let status = env.status.as_ref()?;
            (condition_of(&env, condition::SYNCED)? == ("True".into(), "AllInSync".into())
                && status.gateways.len() == 2
                && status
                    .gateways
                    .iter()
                    .all(|g| g.state == GatewayState::InSync))
            .then_some(env)
        },
    )
    .await;
    // The repository says what it fetched.
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&repo)
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    let repos: Api<ConfigRepository> = Api::namespaced(client.clone(), &namespace);
    eventually(30, "the ConfigRepository's status", &controller, || async {
        let status = repos.get("policy").await.ok()?.status?;
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True" && c.reason == "Fetched");
        (ready
            && status.revision.as_deref() == Some(head.as_str())
            && status.last_fetch_time.is_some())
        .then_some(())
    })
    .await;
    let status = synced.status.clone().unwrap();
    assert_eq!(
        condition_of(&synced, condition::READY),
        Some(("True".into(), "Reconciled".into()))
    );
    assert_eq!(
        condition_of(&synced, condition::VALIDATED),
        Some(("True".into(), "Valid".into()))
    );
    assert_eq!(
        condition_of(&synced, condition::DRIFTED),
        Some(("False".into(), "NoDrift".into()))
    );
    assert_eq!(
        condition_of(&synced, condition::GATED),
        Some(("False".into(), "NotGated".into()))
    );
    for c in &status.conditions {
        assert_eq!(
            c.observed_generation, synced.metadata.generation,
            "{}",
            c.type_
        );
    }
    assert_eq!(status.gateways_in_sync.as_deref(), Some("2/2"));
    let desired = status.desired_digest.clone().expect("a desired digest");
    let head = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&repo)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(status.desired_revision.as_deref(), Some(head.trim()));
    assert_eq!(status.history.len(), 1, "{:?}", status.history);
    assert_eq!(status.history[0].trigger, Trigger::Startup);
    assert_eq!(status.history[0].digest, desired);
    for g in &status.gateways {
        assert_eq!(
            g.observed_digest.as_deref(),
            Some(desired.as_str()),
            "{}",
            g.name
        );
    }

    // The ConfigMap holds that version, annotated with its digest.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let written = config_maps.get("policy").await.expect("the ConfigMap");
    assert_eq!(written.annotations()[DIGEST_ANNOTATION], desired);
    let body = written.data.clone().unwrap()["policy.json"].clone();
    assert_eq!(Digest::of_json(&body).unwrap().as_str(), desired);

    // The reference gateway runs it too.
    let live = reqwest::Client::new()
        .get(format!("http://{}/sluice/v1/config", gateway.address))
        .bearer_auth(token)
        .send()
        .await
        .expect("the gateway answers");
    assert!(live.status().is_success(), "{}", live.status());

    // A hand edit of the ConfigMap (what `kubectl edit` does): drift, put
    // back by the next pass (production's drift policy is heal).
    let mut document: serde_json::Value = serde_json::from_str(&body).unwrap();
    document["enforcement"] = "monitor".into();
    config_maps
        .patch(
            "policy",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"data": {"policy.json": document.to_string()}})),
        )
        .await
        .expect("editing the ConfigMap");
    // NB: what lasts is waited for: the heal in the history and the data
    // put back (`Healed` on the Drifted condition lasts one pass).
    let healed = eventually(60, "an apply with trigger drift", &controller, || async {
        let env = environments.get("production").await.ok()?;
        let status = env.status.as_ref()?;
        (status.history.first()?.trigger == Trigger::Drift).then_some(env)
    })
    .await;
    let status = healed.status.clone().unwrap();
    assert_eq!(status.history.len(), 2, "{:?}", status.history);
    assert_eq!(status.history[0].digest, desired);
    let (drifted, reason) = condition_of(&healed, condition::DRIFTED).unwrap();
    assert_eq!(drifted, "False");
    assert!(reason == "Healed" || reason == "NoDrift", "{reason}");
    let back = config_maps.get("policy").await.unwrap().data.unwrap()["policy.json"].clone();
    assert_eq!(Digest::of_json(&back).unwrap().as_str(), desired);

    // Events: the applies and the drift, on the Environment.
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let reasons = eventually(30, "Applied and Drifted Events", &controller, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let reasons: Vec<String> = list
            .items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("production"))
            .filter_map(|e| e.reason.clone())
            .collect();
        (reasons.iter().any(|r| r == "Applied") && reasons.iter().any(|r| r == "Drifted"))
            .then_some(reasons)
    })
    .await;
    assert!(!reasons.iter().any(|r| r == "ApplyFailed"), "{reasons:?}");

    // Health and metrics on --listen.
    let healthz = reqwest::get(format!("http://{}/healthz", controller.address))
        .await
        .unwrap();
    assert!(healthz.status().is_success());
    let metrics = reqwest::get(format!("http://{}/metrics", controller.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("sluice_reconciles"), "{metrics}");
    // The dashboard, from the Environments' status.
    let overview = reqwest::get(format!("http://{}/", controller.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        overview.contains("production") && overview.contains(r#"<td class="cell s-"#),
        "{overview}"
    );

    drop(controller);
    let _ = Api::<Namespace>::all(client)
        .delete(&namespace, &Default::default())
        .await;
}

#[tokio::test]
async fn a_hand_edit_of_a_gateway_configmap_is_healed_at_once_not_at_the_next_requeue() {
    let Some(client) = env::client().await else {
        return;
    };
    install_crds(&client).await;
    let namespace = env::namespace(&client, "sluice-cmw").await;
    let gateways = env::namespace(&client, "sluice-cmw-gw").await;
    let work = tempfile::tempdir().unwrap();

    // Production on a ConfigMap in a namespace of its own.
    let (_repo, _daemon) =
        production_far_from_any_requeue(&client, work.path(), &namespace, &gateways).await;
    let environments: Api<Environment> = Api::namespaced(client.clone(), &namespace);

    let controller = start_controller(
        work.path(),
        "controller",
        &namespace,
        &["--gateway-namespace", &gateways],
    );
    let synced = eventually(120, "Synced=True", &controller, || async {
        let env = environments.get("production").await.ok()?;
        (condition_of(&env, condition::SYNCED)? == ("True".into(), "AllInSync".into()))
            .then_some(env)
    })
    .await;
    let desired = synced.status.clone().unwrap().desired_digest.unwrap();
    // NB: nothing else wakes the Environment now (its own status writes and
    // the ConfigRepository's do not): only the watch can see the edit.

    // The ConfigMap says whose it is.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &gateways);
    let written = config_maps.get("policy").await.expect("the ConfigMap");
    assert_eq!(written.labels()[ENVIRONMENT_LABEL], "production");
    assert_eq!(written.labels()["app.kubernetes.io/managed-by"], "sluice");
    assert_eq!(written.annotations()[DIGEST_ANNOTATION], desired);
    let body = written.data.clone().unwrap()["policy.json"].clone();

    // `kubectl edit`: the data changes, the annotations stay.
    let mut document: serde_json::Value = serde_json::from_str(&body).unwrap();
    document["enforcement"] = "monitor".into();
    config_maps
        .patch(
            "policy",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"data": {"policy.json": document.to_string()}})),
        )
        .await
        .expect("editing the ConfigMap");
    let edited = Instant::now();
    let healed = eventually(
        30,
        "the hand edit healed (trigger drift)",
        &controller,
        || async {
            let env = environments.get("production").await.ok()?;
            let status = env.status.as_ref()?;
            let back = config_maps.get("policy").await.ok()?.data?["policy.json"].clone();
            (status.history.first()?.trigger == Trigger::Drift
                && Digest::of_json(&back)?.as_str() == desired)
                .then_some(env)
        },
    )
    .await;
    eprintln!("healed {:?} after the hand edit", edited.elapsed());
    let status = healed.status.unwrap();
    assert_eq!(status.history.len(), 2, "{:?}", status.history);
    assert_eq!(status.history[0].digest, desired);

    // The heal's own write wakes nothing: one hand edit seen, no more. NB:
    // a requested reconcile, answered, stands in for a wait: the heal's
    // ConfigMap event was delivered long before it.
    environments
        .patch(
            "production",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": { "annotations": { k8s::crd::REQUESTED_AT: "after-the-heal" } }
            })),
        )
        .await
        .unwrap();
    eventually(30, "the request answered", &controller, || async {
        let status = environments.get("production").await.ok()?.status?;
        (status.last_handled_reconcile_at.as_deref() == Some("after-the-heal")).then_some(())
    })
    .await;
    let log = controller.log();
    assert_eq!(
        log.matches("a gateway ConfigMap was edited by hand")
            .count(),
        1,
        "{log}"
    );

    drop(controller);
    for ns in [namespace, gateways] {
        let _ = Api::<Namespace>::all(client.clone())
            .delete(&ns, &Default::default())
            .await;
    }
}

/// A server without the sluice.dev kinds: every path is `404`, as an API
/// server answers for a group it does not serve. (Deterministic: the shared
/// test API server may have the CRDs installed by other tests.)
#[tokio::test]
async fn without_the_crds_the_controller_says_so_and_exits_2() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 8192];
                let _ = stream.read(&mut buffer).await;
                let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","details":{},"code":404}"#;
                let response = format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    let work = tempfile::tempdir().unwrap();
    let kubeconfig = work.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: bare\n  cluster:\n    server: http://{address}\ncontexts:\n- name: bare\n  context:\n    cluster: bare\n    user: nobody\nusers:\n- name: nobody\n  user: {{}}\ncurrent-context: bare\n"
        ),
    )
    .unwrap();
    let data = work.path().join("data");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "controller",
                "--listen",
                "127.0.0.1:0",
                "--watch-namespace",
                "policy",
            ])
            .arg("--data-dir")
            .arg(&data)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    server.abort();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CRDs are not installed"), "{stderr}");
    assert!(stderr.contains("kubectl apply -f crds/"), "{stderr}");
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_killing_it_hands_over() {
    use k8s_openapi::api::coordination::v1::Lease;
    let Some(client) = env::client().await else {
        return;
    };
    let kubeconfig = env::kubeconfig().expect("the client came from a kubeconfig");
    install_crds(&client).await;
    let namespace = env::namespace(&client, "sluice-ctl").await;
    let work = tempfile::tempdir().unwrap();

    let repo = policy_repo(
        work.path(),
        &[(
            "staging",
            format!(
                "gateways:\n  - name: stg-cm\n    driver: configmap\n    namespace: {namespace}\n    configMap: staging-policy\n"
            ),
        )],
    );
    let daemon = GitDaemon::serve(&repo);
    create_repository(&client, &namespace, &daemon.url()).await;
    create_environment(&client, &namespace, "staging", serde_json::json!({})).await;

    let replica = |name: &str| {
        Process::start(
            &[
                "controller",
                "--listen",
                "127.0.0.1:0",
                "--watch-namespace",
                &namespace,
                "--data-dir",
                work.path().join(name).to_str().unwrap(),
                "--leader-elect",
                "--lease-name",
                "sluice-controller",
                "--lease-namespace",
                &namespace,
            ],
            &[
                ("KUBECONFIG", kubeconfig.to_str().unwrap()),
                ("POD_NAME", name),
                ("SLUICE_LOG", "info"),
            ],
            work.path().join(format!("{name}.log")),
        )
    };
    let mut replicas = vec![replica("replica-a"), replica("replica-b")];
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let holder = || async {
        leases
            .get_opt("sluice-controller")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
            .filter(|h| !h.is_empty())
    };
    let leader = eventually(60, "a leader", &replicas[0], || async { holder().await }).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let digest = || async {
        config_maps
            .get_opt("staging-policy")
            .await
            .ok()
            .flatten()
            .and_then(|m| m.metadata.annotations?.get(DIGEST_ANNOTATION).cloned())
    };
    let first = eventually(60, "the leader's first apply", &replicas[0], || async {
        digest().await
    })
    .await;
    assert_eq!(
        holder().await.as_deref(),
        Some(leader.as_str()),
        "one leader, and it stays"
    );

    // The leader dies without a word; the other replica takes over and
    // applies the next commit.
    let index = if leader == "replica-a" { 0 } else { 1 };
    let mut dead = replicas.remove(index);
    let _ = dead.child.kill();
    let _ = dead.child.wait();
    let survivor = &replicas[0];
    let models = std::fs::read_to_string(repo.join("base/packs/models.yaml")).unwrap();
    std::fs::write(
        repo.join("base/packs/models.yaml"),
        models.replace("600", "300"),
    )
    .unwrap();
    env::git(&repo, &["commit", "-q", "-am", "lower the rate"]);
    let next = eventually(90, "the new leader", survivor, || async {
        holder().await.filter(|h| *h != leader)
    })
    .await;
    assert_ne!(next, leader);
    eventually(
        90,
        "the new leader's apply of the next commit",
        survivor,
        || async { digest().await.filter(|d| *d != first) },
    )
    .await;
}

#[tokio::test]
async fn a_sharded_controller_reconciles_only_its_environments() {
    let Some(client) = env::client().await else {
        return;
    };
    install_crds(&client).await;
    let namespace = env::namespace(&client, "sluice-ctl").await;
    let work = tempfile::tempdir().unwrap();
    let gateways = |env: &str| {
        format!(
            "gateways:\n  - name: {env}-cm\n    driver: configmap\n    namespace: {namespace}\n    configMap: {env}-policy\n"
        )
    };
    let repo = policy_repo(
        work.path(),
        &[
            ("staging", gateways("staging")),
            ("development", gateways("development")),
        ],
    );
    let daemon = GitDaemon::serve(&repo);
    create_repository(&client, &namespace, &daemon.url()).await;
    let shard = |value: &str| serde_json::json!({ "sluice.dev/shard": value });
    create_environment(&client, &namespace, "staging", shard("eu")).await;
    create_environment(&client, &namespace, "development", shard("us")).await;
    // A gateway the platform registers itself, beside gateways.yaml.
    let registered: k8s::Gateway = serde_json::from_value(serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Gateway",
        "metadata": { "name": "staging-extra" },
        "spec": {
            "environment": "staging",
            "driver": "configmap",
            "configmap": { "namespace": namespace, "configMap": "staging-extra" },
        },
    }))
    .unwrap();
    let gateways: Api<k8s::Gateway> = Api::namespaced(client.clone(), &namespace);
    gateways
        .create(&PostParams::default(), &registered)
        .await
        .expect("creating the Gateway");
    let environments: Api<Environment> = Api::namespaced(client.clone(), &namespace);
    let controller = start_controller(
        work.path(),
        "data",
        &namespace,
        &["--shard", "sluice.dev/shard=eu"],
    );
    eventually(60, "the eu environment synced", &controller, || async {
        let env = environments.get("staging").await.ok()?;
        (condition_of(&env, "Synced")?.0 == "True").then_some(())
    })
    .await;
    // Two more reconciles of its own environment, and still nothing of the other.
    let reconciles = || async {
        let url = format!("http://{}/metrics", controller.address);
        let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
        let count: f64 = text
            .lines()
            .filter(|l| l.starts_with("sluice_reconciles_total") && l.contains("staging"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        Some(count)
    };
    let before = reconciles().await.unwrap_or(0.0);
    eventually(60, "more reconciles of its own", &controller, || async {
        reconciles().await.filter(|n| *n >= before + 2.0)
    })
    .await;
    // The registered gateway was applied too, and says so on its status.
    let extra = gateways.get("staging-extra").await.unwrap().status.unwrap();
    assert_eq!(extra.state, Some(GatewayState::InSync), "{extra:?}");
    assert!(extra.observed_digest.is_some());
    let other = environments.get("development").await.unwrap();
    assert!(
        other.status.is_none(),
        "another shard's environment was touched: {:?}",
        other.status
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(client, &namespace);
    assert!(
        config_maps
            .get_opt("development-policy")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        config_maps
            .get_opt("staging-extra")
            .await
            .unwrap()
            .is_some()
    );
}

/// The ledger in Kubernetes mode is the Environments' status: a controller
/// killed with its disk thrown away is replaced by one with an empty disk,
/// which still knows what was verified (a hand edit made meanwhile is
/// drift, not a first apply) and what ran before (`sluice rollback --cluster`).
#[tokio::test]
async fn the_ledger_lives_in_the_status_and_outlives_the_controller_and_its_disk() {
    let Some(client) = env::client().await else {
        return;
    };
    let kubeconfig = env::kubeconfig().expect("the client came from a kubeconfig");
    install_crds(&client).await;
    let namespace = env::namespace(&client, "sluice-ctl").await;
    let work = tempfile::tempdir().unwrap();
    let repo = production_on_a_configmap(work.path(), &namespace);
    let daemon = GitDaemon::serve(&repo);
    create_repository(&client, &namespace, &daemon.url()).await;
    create_environment(&client, &namespace, "production", serde_json::json!({})).await;
    let environments: Api<Environment> = Api::namespaced(client.clone(), &namespace);
    let controller = |name: &str| start_controller(work.path(), name, &namespace, &[]);
    let deployments = |count: usize| {
        let environments = environments.clone();
        move || {
            let environments = environments.clone();
            async move {
                let env = environments.get("production").await.ok()?;
                let ledger = env.status?.ledger?;
                (ledger.deployments.len() == count).then_some(ledger)
            }
        }
    };

    // The first controller runs two versions: both are in the status.
    let first = controller("first");
    let ledger = eventually(120, "the first deployment", &first, deployments(1)).await;
    let attempt = &ledger.attempts[0];
    assert_eq!(attempt.gateway, "prod-cm");
    assert_eq!(attempt.outcome, Some(sluice::ledger::Outcome::Applied));
    assert!(attempt.finished_at.is_some());
    assert_eq!(ledger.gateways[0].state, GatewayState::InSync);
    let v1 = ledger.deployments[0].digest.clone();
    assert_eq!(ledger.gateways[0].observed_digest.as_ref(), Some(&v1));
    assert!(!ledger.deployments[0].packs.is_empty());
    let baseline = repo.join("environments/production/packs/baseline.yaml");
    let text = std::fs::read_to_string(&baseline).unwrap();
    std::fs::write(
        &baseline,
        text.replace("retention_days: 365", "retention_days: 400"),
    )
    .unwrap();
    env::git(&repo, &["commit", "-q", "-am", "keep audit records longer"]);
    let ledger = eventually(90, "the second deployment", &first, deployments(2)).await;
    let v2 = ledger.deployments[0].digest.clone();
    assert_ne!(v1, v2);
    assert_eq!(ledger.deployments[1].digest, v1, "newest first");

    // Killed, its disk gone; meanwhile someone edits the ConfigMap by hand.
    drop(first);
    std::fs::remove_dir_all(work.path().join("first")).unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let body = config_maps.get("policy").await.unwrap().data.unwrap()["policy.json"].clone();
    let mut document: serde_json::Value = serde_json::from_str(&body).unwrap();
    document["enforcement"] = "monitor".into();
    config_maps
        .patch(
            "policy",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"data": {"policy.json": document.to_string()}})),
        )
        .await
        .expect("editing the ConfigMap");

    // A new controller with an empty disk calls it drift and heals it
    // (production's policy), because it read what was verified.
    let second = controller("second");
    let healed = eventually(90, "the drift healed", &second, || async {
        let env = environments.get("production").await.ok()?;
        let ledger = env.status?.ledger?;
        let episode = ledger.drift_episodes.first()?.clone();
        (episode.resolution == Some(sluice::ledger::Resolution::Healed))
            .then_some((ledger, episode))
    })
    .await;
    let (ledger, episode) = healed;
    assert_eq!(episode.gateway, "prod-cm");
    assert_eq!(episode.desired_digest, v2);
    assert_eq!(ledger.attempts[0].trigger, Trigger::Drift);
    assert_eq!(ledger.deployments.len(), 2, "healing is no new deployment");
    let back = config_maps.get("policy").await.unwrap().data.unwrap()["policy.json"].clone();
    assert_eq!(Digest::of_json(&back).unwrap(), v2);

    // The CLI reads the same record from the cluster: history, and a
    // rollback to the version before.
    let sluice = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--repo")
            .arg(&repo)
            .args(args)
            .args(["--cluster", namespace.as_str()])
            .env("KUBECONFIG", &kubeconfig)
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "sluice {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let history = sluice(&["history", "production", "-o", "json"]);
    let triggers: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["trigger"].as_str())
        .collect();
    assert_eq!(triggers.first(), Some(&"drift"), "{history}");
    assert_eq!(triggers.len(), 3, "{history}");
    let status = sluice(&["status", "-o", "json"]);
    let head = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&repo)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(status["revision"]["commit"], head.trim(), "{status}");
    assert_eq!(status["gateways"][0]["state"], "in-sync", "{status}");
    assert_eq!(
        status["gateways"][0]["observedDigest"],
        v2.as_str(),
        "{status}"
    );
    let rollback = sluice(&["rollback", "production", "-o", "json"]);
    assert_eq!(rollback["from"]["digest"], v2.as_str(), "{rollback}");
    assert_eq!(rollback["to"]["digest"], v1.as_str(), "{rollback}");
    drop(second);
    let _ = Api::<Namespace>::all(client)
        .delete(&namespace, &Default::default())
        .await;
}

/// `git commit -S` with the SSH key at `key` (what `gpg.format=ssh` authors do).
fn signed_commit(repo: &Path, key: &Path, message: &str) {
    let signing = format!("user.signingkey={}.pub", key.display());
    env::git(
        repo,
        &[
            "-c",
            "gpg.format=ssh",
            "-c",
            &signing,
            "commit",
            "-q",
            "-S",
            "-am",
            message,
        ],
    );
}

/// A repository with `verification` runs only heads signed by a trusted
/// key: an unsigned head is refused (Ready=False, VerificationFailed, an
/// Event) while the gateways keep the last verified version, and the next
/// signed head runs.
#[tokio::test]
async fn only_heads_signed_by_a_trusted_key_run() {
    let Some(client) = env::client().await else {
        return;
    };
    install_crds(&client).await;
    let namespace = env::namespace(&client, "sluice-ctl").await;
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("signing");
    let made = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "release@example.com",
            "-f",
        ])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs");
    assert!(made.success());
    let repo = production_on_a_configmap(work.path(), &namespace);
    let baseline = repo.join("environments/production/packs/baseline.yaml");
    let edit = |from: &str, to: &str| {
        let text = std::fs::read_to_string(&baseline).unwrap();
        assert!(text.contains(from));
        std::fs::write(&baseline, text.replace(from, to)).unwrap();
    };
    edit("retention_days: 365", "retention_days: 366");
    signed_commit(&repo, &key, "signed");

    let public = std::fs::read_to_string(work.path().join("signing.pub")).unwrap();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), &namespace);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": { "name": "trusted-keys" },
                "stringData": { "release": public },
            }))
            .unwrap(),
        )
        .await
        .expect("creating the Secret of keys");
    let daemon = GitDaemon::serve(&repo);
    let spec = serde_json::json!({
        "url": daemon.url(), "ref": { "branch": "main" }, "interval": "2s",
        "verification": { "provider": "ssh", "secretRef": { "name": "trusted-keys" } },
    });
    create_repository_with(&client, &namespace, spec).await;
    create_environment(&client, &namespace, "production", serde_json::json!({})).await;
    let environments: Api<Environment> = Api::namespaced(client.clone(), &namespace);
    let controller = start_controller(work.path(), "controller", &namespace, &[]);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let digest = || async {
        config_maps
            .get_opt("policy")
            .await
            .ok()
            .flatten()
            .and_then(|m| m.metadata.annotations?.get(DIGEST_ANNOTATION).cloned())
    };
    let signed = eventually(120, "the signed head applied", &controller, || async {
        digest().await
    })
    .await;

    // An unsigned head: refused, said so, and nothing of it applied.
    edit("retention_days: 366", "retention_days: 1");
    env::git(&repo, &["commit", "-q", "-am", "unsigned"]);
    let refused = eventually(
        60,
        "Ready=False VerificationFailed",
        &controller,
        || async {
            let env = environments.get("production").await.ok()?;
            let (status, reason) = condition_of(&env, condition::READY)?;
            (status == "False" && reason == "VerificationFailed").then_some(env)
        },
    )
    .await;
    let message = refused
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == condition::READY)
        .unwrap()
        .message;
    assert!(message.contains("not signed"), "{message}");
    let repo_status = Api::<ConfigRepository>::namespaced(client.clone(), &namespace)
        .get("policy")
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(
        repo_status
            .conditions
            .iter()
            .any(|c| c.reason == "VerificationFailed"),
        "{repo_status:?}"
    );
    assert_eq!(
        digest().await,
        Some(signed.clone()),
        "the last verified version keeps running"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    eventually(30, "a VerificationFailed Event", &controller, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("VerificationFailed"))
            .then_some(())
    })
    .await;

    // Signed again: it runs.
    edit("retention_days: 1", "retention_days: 367");
    signed_commit(&repo, &key, "signed again");
    eventually(60, "the next signed head applied", &controller, || async {
        digest().await.filter(|d| *d != signed)
    })
    .await;
    drop(controller);
    let _ = Api::<Namespace>::all(client)
        .delete(&namespace, &Default::default())
        .await;
}

/// An Environment that arrives with attempts another controller left
/// unfinished (it stopped mid-apply) has them resolved by its first pass,
/// from what the gateway runs: here nothing, so they were interrupted.
#[tokio::test]
async fn unfinished_attempts_read_back_are_resolved_by_the_first_pass() {
    let Some(client) = env::client().await else {
        return;
    };
    install_crds(&client).await;
    let namespace = env::namespace(&client, "sluice-ctl").await;
    let work = tempfile::tempdir().unwrap();
    let repo = production_on_a_configmap(work.path(), &namespace);
    let daemon = GitDaemon::serve(&repo);
    create_repository(&client, &namespace, &daemon.url()).await;
    let controller = start_controller(work.path(), "data", &namespace, &[]);

    // After the controller started: a suspended Environment whose status
    // says an apply was in flight, then resumed.
    let environments: Api<Environment> = Api::namespaced(client.clone(), &namespace);
    let environment: Environment = serde_json::from_value(serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Environment",
        "metadata": { "name": "production" },
        "spec": { "repositoryRef": { "name": "policy" }, "path": "environments/production", "suspend": true },
    }))
    .unwrap();
    environments
        .create(&PostParams::default(), &environment)
        .await
        .unwrap();
    let in_flight = Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
    environments
        .patch_status(
            "production",
            &PatchParams::apply("previous-controller").force(),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "Environment",
                "status": { "ledger": { "attempts": [{
                    "gateway": "prod-cm", "revision": "0123456789abcdef0123456789abcdef01234567",
                    "digest": in_flight, "trigger": "poll", "startedAt": "2026-11-01T10:00:00.000Z",
                }]}},
            })),
        )
        .await
        .expect("writing the status a previous controller left");
    environments
        .patch(
            "production",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": { "suspend": false } })),
        )
        .await
        .unwrap();

    // NB: the pass's own attempt is in the status before its apply, so
    // every attempt finished is waited for, not only the old one.
    let ledger = eventually(
        90,
        "the in-flight attempt resolved and the pass's own finished",
        &controller,
        || async {
            let ledger = environments.get("production").await.ok()?.status?.ledger?;
            let old = ledger.attempts.iter().find(|a| a.digest == in_flight)?;
            (old.outcome.is_some() && ledger.attempts.iter().all(|a| a.outcome.is_some()))
                .then(|| ledger.clone())
        },
    )
    .await;
    let old = ledger
        .attempts
        .iter()
        .find(|a| a.digest == in_flight)
        .unwrap();
    assert_eq!(old.outcome, Some(sluice::ledger::Outcome::Interrupted));
    assert!(
        old.error
            .as_deref()
            .unwrap_or_default()
            .contains("interrupted")
    );
    drop(controller);
    let _ = Api::<Namespace>::all(client)
        .delete(&namespace, &Default::default())
        .await;
}

/// The head of `repo` after raising production's audit retention to
/// `days` (a new digest for production, and no weakening to approve).
fn retain_for(repo: &Path, days: u32) -> String {
    let pack = repo.join("environments/production/packs/baseline.yaml");
    let yaml = std::fs::read_to_string(&pack).unwrap();
    let kept = yaml
        .lines()
        .map(
            |line| match line.trim_start().strip_prefix("retention_days: ") {
                Some(_) => format!("    retention_days: {days}"),
                None => line.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&pack, kept + "\n").unwrap();
    env::git(
        repo,
        &[
            "commit",
            "-q",
            "-am",
            &format!("keep audit records {days} days"),
        ],
    );
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo)
        .output()
        .unwrap();
    String::from_utf8_lossy(&head.stdout).trim().to_owned()
}

/// Every way to ask for a reconcile reaches the controller at once, long
/// before any requeue (the repository is polled hourly, drift checked every
/// 10 minutes): a signed git push of its repository to `/hooks/git` (a push
/// of another repository wakes none of its Environments), `POST
/// /api/v1/sync` with an API token, and `sluice.dev/requestedAt` on the
/// Environment and on the ConfigRepository. Each new head is applied with
/// the trigger that asked for it, and each status says which request it
/// handled.
#[tokio::test]
async fn a_push_a_sync_and_a_requested_at_reconcile_at_once() {
    let Some(client) = env::client().await else {
        return;
    };
    install_crds(&client).await;
    let namespace = env::namespace(&client, "sluice-req").await;
    let work = tempfile::tempdir().unwrap();
    let (repo, daemon) =
        production_far_from_any_requeue(&client, work.path(), &namespace, &namespace).await;
    let environments: Api<Environment> = Api::namespaced(client.clone(), &namespace);
    let repos: Api<ConfigRepository> = Api::namespaced(client.clone(), &namespace);

    let secret = "controller-hook-secret";
    let controller = start_controller_with(
        work.path(),
        "controller",
        &namespace,
        &[],
        &[
            ("SLUICE_WEBHOOK_SECRET", secret),
            ("SLUICE_API_TOKENS", "admin:admin-token-9"),
        ],
    );
    eventually(120, "Synced=True", &controller, || async {
        let env = environments.get("production").await.ok()?;
        (condition_of(&env, condition::SYNCED)? == ("True".into(), "AllInSync".into()))
            .then_some(())
    })
    .await;
    // The newest apply is of `head`, started by `trigger`.
    let applied = |head: String, trigger: Trigger, what: &'static str| {
        let environments = environments.clone();
        let controller = &controller;
        async move {
            eventually(30, what, controller, || async {
                let env = environments.get("production").await.ok()?;
                let status = env.status?;
                let newest = status.history.first()?;
                (newest.revision == head).then(|| {
                    assert_eq!(newest.trigger, trigger, "{what}: {:?}", status.history);
                    status.last_handled_reconcile_at
                })
            })
            .await
        }
    };
    let http = reqwest::Client::new();
    let api = format!("http://{}", controller.address);

    let push = |secret: &str, clone_url: &str| {
        let body = serde_json::json!({
            "ref": "refs/heads/main",
            "repository": { "clone_url": clone_url },
        })
        .to_string();
        http.post(format!("{api}/hooks/git"))
            .header(
                "x-hub-signature-256",
                github_signature(secret, body.as_bytes()),
            )
            .body(body)
            .send()
    };
    let request = |value: &str| {
        Patch::Merge(serde_json::json!({
            "metadata": { "annotations": { k8s::crd::REQUESTED_AT: value } }
        }))
    };

    // A push to another repository reconciles none of this one's
    // Environments: the Environment's own request, made after it, is what
    // applies the new head.
    let head = retain_for(&repo, 366);
    let elsewhere = push(secret, "https://git.example.com/other/policy.git")
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 202);
    environments
        .patch("production", &PatchParams::default(), &request("env-1"))
        .await
        .unwrap();
    let handled = applied(
        head,
        Trigger::Manual,
        "the head applied on the Environment's request",
    )
    .await;
    assert_eq!(handled.as_deref(), Some("env-1"));

    // A push to this repository, signed as GitHub signs it.
    let head = retain_for(&repo, 367);
    let hook = push(secret, &daemon.url()).await.unwrap();
    assert_eq!(hook.status(), 202);
    applied(head, Trigger::Webhook, "the pushed head applied").await;

    // A forged push is refused.
    let forged = push("guess", &daemon.url()).await.unwrap();
    assert_eq!(forged.status(), 401);

    // `sluice sync --server`'s request, with and without a token.
    let head = retain_for(&repo, 368);
    let sync = format!("{api}/api/v1/sync?env=production");
    assert_eq!(http.post(&sync).send().await.unwrap().status(), 401);
    let synced = http
        .post(&sync)
        .bearer_auth("admin-token-9")
        .send()
        .await
        .unwrap();
    assert_eq!(synced.status(), 202);
    applied(head, Trigger::Manual, "the head applied on a sync request").await;

    // The repository's request: its Environments fetch and reconcile.
    let head = retain_for(&repo, 369);
    repos
        .patch("policy", &PatchParams::default(), &request("repo-1"))
        .await
        .unwrap();
    applied(
        head.clone(),
        Trigger::Manual,
        "the head applied on the repository's request",
    )
    .await;
    eventually(
        30,
        "the ConfigRepository answered its request",
        &controller,
        || async {
            let status = repos.get("policy").await.ok()?.status?;
            (status.last_handled_reconcile_at.as_deref() == Some("repo-1")
                && status.revision.as_deref() == Some(head.as_str()))
            .then_some(())
        },
    )
    .await;

    drop(controller);
    let _ = Api::<Namespace>::all(client)
        .delete(&namespace, &Default::default())
        .await;
}

#[tokio::test]
async fn spec_pin_holds_the_environment_while_the_branch_moves_and_removing_it_unpins() {
    let Some(client) = env::client().await else {
        return;
    };
    install_crds(&client).await;
    let namespace = env::namespace(&client, "sluice-pin").await;
    let work = tempfile::tempdir().unwrap();
    let repo = production_on_a_configmap(work.path(), &namespace);
    let daemon = GitDaemon::serve(&repo);
    create_repository(&client, &namespace, &daemon.url()).await;
    create_environment(&client, &namespace, "production", serde_json::json!({})).await;
    let environments: Api<Environment> = Api::namespaced(client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let controller = start_controller(work.path(), "pins", &namespace, &[]);
    let running = || async {
        let map = config_maps.get("policy").await.ok()?;
        let body = map.data?.get("policy.json")?.clone();
        Digest::of_json(&body)
    };
    let ledger = eventually(120, "the first deployment", &controller, || async {
        let ledger = environments.get("production").await.ok()?.status?.ledger?;
        (!ledger.deployments.is_empty()).then_some(ledger)
    })
    .await;
    let v1 = ledger.deployments[0].digest.clone();
    assert_eq!(running().await, Some(v1.clone()));

    // Pinned by the spec, at the short digest.
    environments
        .patch(
            "production",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({
                "spec": { "pin": { "digest": v1.short(), "reason": "incident 9" } }
            })),
        )
        .await
        .expect("pinning through spec.pin");
    eventually(60, "the pin in the status ledger", &controller, || async {
        let ledger = environments.get("production").await.ok()?.status?.ledger?;
        let pin = ledger.pins.first()?.clone();
        (pin.by == "kubernetes" && pin.ended_at.is_none() && pin.digest == v1).then_some(())
    })
    .await;

    // The branch moves on: the ConfigMap stays on the pin.
    let baseline = repo.join("environments/production/packs/baseline.yaml");
    let text = std::fs::read_to_string(&baseline).unwrap();
    std::fs::write(
        &baseline,
        text.replace("retention_days: 365", "retention_days: 400"),
    )
    .unwrap();
    env::git(&repo, &["commit", "-q", "-am", "keep audit records longer"]);
    let held = eventually(90, "the pin holding the head back", &controller, || async {
        let ledger = environments.get("production").await.ok()?.status?.ledger?;
        let pin = ledger.pins.first()?;
        (pin.held_since.is_some() && ledger.gateways.first()?.state == GatewayState::Pinned)
            .then_some(ledger)
    })
    .await;
    assert_eq!(held.gateways[0].desired_digest.as_ref(), Some(&v1));
    let note = held.gateways[0].error.clone().unwrap_or_default();
    assert!(note.contains("would apply"), "{note}");
    assert_eq!(running().await, Some(v1.clone()));

    // Removing the field unpins: the head's version goes out.
    environments
        .patch(
            "production",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "spec": { "pin": null } })),
        )
        .await
        .expect("unpinning");
    let v2 = eventually(90, "the head applied", &controller, || async {
        let live = running().await?;
        (live != v1).then_some(live)
    })
    .await;
    let ledger = environments
        .get("production")
        .await
        .unwrap()
        .status
        .unwrap()
        .ledger
        .unwrap();
    assert_eq!(
        ledger.pins[0].end_reason,
        Some(sluice::ledger::PinEnd::Unpinned)
    );
    assert_eq!(ledger.pins[0].ended_by.as_deref(), Some("kubernetes"));
    assert_eq!(ledger.deployments[0].digest, v2);
    drop(controller);
    let _ = Api::<Namespace>::all(client)
        .delete(&namespace, &Default::default())
        .await;
}
