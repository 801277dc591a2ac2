//! The `configmap` gateway driver against the real API server: applies,
//! reads back, sees `kubectl edit`-style changes as drift, refuses stale
//! writes; with `format: litellm` and a `deployment`, rolls the Deployment
//! and waits for its rollout (the test plays the Deployment controller,
//! which the test API server does not run); and `sluice sync` / `sluice
//! drift` / `sluice render -o native` end to end.

use crate::env;
use futures::StreamExt;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use sluice::{
    config::{Digest, model},
    drift,
    gateway::{
        self, Applied, Desired, DriverContext, Gateway, GatewayError,
        configmap::{
            ConfigMapGateway, DIGEST_ANNOTATION, ENVIRONMENT_LABEL, LITELLM_DATA_KEY,
            REVISION_ANNOTATION,
        },
        litellm::{AUDIT_CALLBACK, AUDIT_CALLBACK_FILE},
        rollout::{CONFIG_DIGEST_ANNOTATION, RESTARTED_AT_ANNOTATION},
    },
};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};
use tokio::sync::Notify;

fn desired(body: &str, revision: &str) -> Desired {
    Desired {
        environment: "production".into(),
        gateway: "prod-k8s".into(),
        digest: Digest::of_json(body).unwrap(),
        body: Arc::from(body),
        revision: revision.into(),
    }
}

/// What `kubectl edit` does to the data: the annotations stay as they were.
async fn hand_edit(config_maps: &Api<ConfigMap>, name: &str, body: &str) {
    let patch = serde_json::json!({"data": {"policy.json": body}});
    config_maps
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("editing the ConfigMap");
}

#[tokio::test]
async fn a_configmap_gateway_applies_sees_hand_edits_and_refuses_stale_writes() {
    let Some(client) = env::client().await else {
        return;
    };
    let namespace = env::namespace(&client, "sluice-cm").await;
    let mut context = DriverContext::new(std::env::temp_dir());
    context.kube = Arc::new(tokio::sync::OnceCell::new_with(Some(client.clone())));
    let spec = model::ConfigMapGateway {
        name: "prod-k8s".into(),
        namespace: namespace.clone(),
        config_map: "policy".into(),
        format: model::FileFormat::Sluice,
        deployment: None,
        rollout_timeout: None,
    };
    let gateway = ConfigMapGateway::new(&spec, &context);
    assert_eq!(gateway.live().await.unwrap().digest, None, "nothing yet");

    let first = desired(r#"{"enforcement":"enforce","packs":{}}"#, "c0ffee01");
    let applied = gateway.apply(&first, None, 1).await.unwrap();
    assert_eq!(
        applied,
        Applied::Swapped {
            digest: first.digest.clone()
        }
    );
    let live = gateway.live().await.unwrap();
    assert_eq!(live.digest.as_ref(), Some(&first.digest));
    assert_eq!(live.generation, Some(1));
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let map = config_maps.get("policy").await.unwrap();
    assert_eq!(
        map.metadata.labels.unwrap()[ENVIRONMENT_LABEL],
        "production"
    );
    let annotations = map.metadata.annotations.unwrap();
    assert_eq!(annotations[DIGEST_ANNOTATION], first.digest.as_str());
    assert_eq!(annotations[REVISION_ANNOTATION], "c0ffee01");
    assert_eq!(
        gateway.apply(&first, Some(&first.digest), 2).await.unwrap(),
        Applied::Unchanged
    );

    // A hand edit: the data changes, the annotation still claims the old digest.
    let edited = r#"{"enforcement":"monitor","packs":{}}"#;
    hand_edit(&config_maps, "policy", edited).await;
    let live = gateway.live().await.unwrap().digest.unwrap();
    assert_eq!(live, Digest::of_json(edited).unwrap(), "read from the data");
    assert_eq!(
        gateway.projection().await.unwrap(),
        Some(serde_json::from_str(edited).unwrap())
    );

    let second = desired(r#"{"enforcement":"enforce","packs":{"a":{}}}"#, "c0ffee02");
    let stale = gateway.apply(&second, Some(&first.digest), 2).await;
    assert!(
        matches!(stale, Err(GatewayError::Changed { .. })),
        "{stale:?}"
    );
    assert_eq!(
        gateway.live().await.unwrap().digest,
        Some(live.clone()),
        "not overwritten"
    );
    let applied = gateway.apply(&second, Some(&live), 2).await.unwrap();
    assert_eq!(
        applied,
        Applied::Swapped {
            digest: second.digest.clone()
        }
    );

    let third = desired(r#"{"enforcement":"alert","packs":{}}"#, "c0ffee03");
    let older = gateway.apply(&third, Some(&second.digest), 1).await;
    assert!(
        matches!(
            older,
            Err(GatewayError::StaleGeneration {
                running: 2,
                offered: 1
            })
        ),
        "{older:?}"
    );
}

/// The example repository copied into `work/repo` with `files` written
/// over it, committed on `main`.
fn example_repo(work: &Path, files: &[(&str, String)]) -> PathBuf {
    let repo = work.join("repo");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(&example)
        .arg(&repo)
        .status()
        .unwrap();
    assert!(copied.success());
    for (path, text) in files {
        let path = repo.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    env::git(&repo, &["init", "-q", "-b", "main"]);
    env::git(&repo, &["add", "-A"]);
    env::git(&repo, &["commit", "-q", "-m", "gateways for the test"]);
    repo
}

fn sluice(args: &[&str], kubeconfig: &Path) -> (i32, String, String) {
    // NB: as an operator who allows production the example's alert variable.
    sluice_as(args, kubeconfig, "production=PROD_*")
}

/// `sluice ARGS` as an operator allowing `allow_env` (`SLUICE_ALLOW_ENV`).
fn sluice_as(args: &[&str], kubeconfig: &Path, allow_env: &str) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_ALLOW_ENV", allow_env)
        // NB: and the example eval gateway's chat endpoint on loopback.
        .env("SLUICE_ALLOW_URL", "eval=http://127.0.0.1:*")
        .env("KUBECONFIG", kubeconfig)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn sync_writes_configmaps_and_drift_sees_an_edit_that_sync_puts_back() {
    let Some(client) = env::client().await else {
        return;
    };
    let kubeconfig = env::kubeconfig().expect("the client came from a kubeconfig");
    let namespace = env::namespace(&client, "sluice-cm").await;
    let work = tempfile::tempdir().unwrap();
    let repo = example_repo(
        work.path(),
        &[(
            "environments/production/gateways.yaml",
            format!(
                "gateways:\n  - name: prod-k8s\n    driver: configmap\n    namespace: {namespace}\n    configMap: policy\n"
            ),
        )],
    );
    let (repo_arg, data) = (
        repo.to_str().unwrap().to_owned(),
        work.path().join("data").to_str().unwrap().to_owned(),
    );
    let run = |command: &str| {
        sluice(
            &[
                command,
                "--env",
                "production",
                "--repo",
                &repo_arg,
                "--data-dir",
                &data,
            ],
            &kubeconfig,
        )
    };

    let (code, stdout, stderr) = run("sync");
    assert_eq!(code, 0, "{stdout}{stderr}");
    let config_maps: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let written = config_maps.get("policy").await.unwrap();
    let digest = written.metadata.annotations.unwrap()[DIGEST_ANNOTATION].clone();
    let (code, stdout, _) = run("drift");
    assert_eq!(code, 0, "{stdout}");

    let mut document: serde_json::Value =
        serde_json::from_str(&written.data.unwrap()["policy.json"]).unwrap();
    document["enforcement"] = "monitor".into();
    hand_edit(&config_maps, "policy", &document.to_string()).await;
    let (code, stdout, _) = run("drift");
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("drifted"), "{stdout}");
    assert!(
        stdout.contains(r#"enforcement: "enforce" → "monitor""#),
        "{stdout}"
    );

    let (code, stdout, stderr) = run("sync");
    assert_eq!(code, 0, "{stdout}{stderr}");
    let healed = config_maps.get("policy").await.unwrap();
    let body = &healed.data.unwrap()["policy.json"];
    assert_eq!(Digest::of_json(body).unwrap().as_str(), digest);
}

/// Plays the Deployment controller, which the test API server does not
/// run: for each new pod template (generation) of one Deployment it writes
/// the status of a rollout under way (one replica updated) and says so on
/// `rolling`, then the status of a complete rollout once `finish` is
/// notified (at once when `finish` is `None`). It reacts to a watch, so
/// nothing sleeps; the test bounds every wait on it with a deadline.
struct DeploymentController {
    rolling: tokio::sync::mpsc::UnboundedReceiver<i64>,
    rolled: tokio::sync::mpsc::UnboundedReceiver<i64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DeploymentController {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The status of `deployment`'s rollout of `generation` with `updated` of
/// its replicas on the new template (and the old ones still up).
async fn write_status(
    deployments: &Api<Deployment>,
    name: &str,
    generation: i64,
    wanted: i32,
    updated: i32,
) {
    let status = json!({"status": {
        "observedGeneration": generation,
        // One surge pod while rolling, as the default strategy does.
        "replicas": wanted + i32::from(updated < wanted),
        "updatedReplicas": updated,
        "availableReplicas": wanted,
        "readyReplicas": wanted,
    }});
    deployments
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("writing the Deployment's status");
}

impl DeploymentController {
    async fn start(deployments: Api<Deployment>, name: &str, finish: Option<Arc<Notify>>) -> Self {
        // The Deployment as it ran before Sluice: rolled out.
        let before = deployments.get(name).await.expect("the Deployment exists");
        let wanted = before.spec.replicas.unwrap_or(1);
        let mut seen = before.metadata.generation.unwrap_or(0);
        write_status(&deployments, name, seen, wanted, wanted).await;
        let (started, rolling) = tokio::sync::mpsc::unbounded_channel();
        let (done, rolled) = tokio::sync::mpsc::unbounded_channel();
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
            let mut events = std::pin::pin!(watcher(deployments.clone(), config).applied_objects());
            while let Some(event) = events.next().await {
                let Ok(deployment) = event else { continue };
                let generation = deployment.metadata.generation.unwrap_or(0);
                // NB: its own status writes do not change the generation.
                if generation <= seen {
                    continue;
                }
                seen = generation;
                write_status(&deployments, &name, generation, wanted, 1).await;
                let _ = started.send(generation);
                if let Some(finish) = &finish {
                    finish.notified().await;
                }
                write_status(&deployments, &name, generation, wanted, wanted).await;
                let _ = done.send(generation);
            }
        });
        DeploymentController {
            rolling,
            rolled,
            task,
        }
    }

    /// Until the rollout of `generation` is complete.
    async fn rolled(&mut self, generation: i64) {
        let rolled =
            async { while self.rolled.recv().await.expect("the controller runs") < generation {} };
        env::within(60, "a rollout completes", rolled).await;
    }

    /// The generation of the next rollout that starts.
    async fn next_rollout(&mut self) -> i64 {
        env::within(60, "a rollout starts", self.rolling.recv())
            .await
            .expect("the controller runs")
    }
}

/// A Deployment of two LiteLLM replicas mounting ConfigMap `config_map`
/// (there is no kubelet: the pods never run, only the objects matter).
async fn litellm_deployment(deployments: &Api<Deployment>, name: &str, config_map: &str) {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{
                        "name": "litellm",
                        "image": "registry.example.com/litellm:1.108.7",
                        "args": ["--config", "/etc/litellm/config.yaml"],
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/litellm"}],
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": config_map}}],
                },
            },
        },
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("creating the Deployment");
}

/// A LiteLLM environment's policy: one pack redacting SSNs and e-mail
/// addresses, over one model.
fn litellm_desired(redact: &str, revision: &str) -> Desired {
    let body = json!({
        "enforcement": "enforce",
        "format": "sluice.dev/policy/v1",
        "litellm": {"model_list": [{
            "model_name": "gpt-4o-mini",
            "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "os.environ/OPENAI_API_KEY"},
        }]},
        "packs": {"support": {
            "version": "1.0.0",
            "enabled": true,
            "chain": ["pii-detector"],
            "settings": {"pii-detector": {"action": redact, "detect_patterns": ["ssn", "email"]}},
        }},
    });
    desired(&body.to_string(), revision)
}

struct Rollout {
    client: kube::Client,
    namespace: String,
    context: DriverContext,
    spec: model::Gateway,
    gateway: Arc<dyn Gateway>,
}

impl Rollout {
    /// A `configmap` gateway with `format: litellm` and `deployment:
    /// litellm` (which exists), rolled out within a minute.
    async fn new(client: &kube::Client, prefix: &str) -> Rollout {
        let namespace = env::namespace(client, prefix).await;
        litellm_deployment(
            &Api::namespaced(client.clone(), &namespace),
            "litellm",
            "litellm",
        )
        .await;
        let mut context = DriverContext::new(std::env::temp_dir());
        context.kube = Arc::new(tokio::sync::OnceCell::new_with(Some(client.clone())));
        let spec = model::Gateway::Configmap(model::ConfigMapGateway {
            name: "litellm-k8s".into(),
            namespace: namespace.clone(),
            config_map: "litellm".into(),
            format: model::FileFormat::Litellm,
            deployment: Some("litellm".into()),
            rollout_timeout: Some(model::DurationText("1m".into())),
        });
        let gateway = gateway::connect("production", &spec, &context).unwrap();
        Rollout {
            client: client.clone(),
            namespace,
            context,
            spec,
            gateway,
        }
    }

    /// The same gateway with `rolloutTimeout: timeout`.
    fn rolled_within(&self, timeout: &str) -> Arc<dyn Gateway> {
        let mut spec = self.spec.clone();
        if let model::Gateway::Configmap(map) = &mut spec {
            map.rollout_timeout = Some(model::DurationText(timeout.into()));
        }
        gateway::connect("production", &spec, &self.context).unwrap()
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Applies `desired` in the background, as the reconciler would.
    fn apply(
        &self,
        desired: &Desired,
        expected: Option<Digest>,
        generation: u64,
    ) -> tokio::task::JoinHandle<Result<Applied, GatewayError>> {
        apply_in_background(&self.gateway, desired, expected, generation)
    }

    async fn template_annotations(&self) -> BTreeMap<String, String> {
        let deployment = self.deployments().get("litellm").await.unwrap();
        deployment
            .spec
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap_or_default()
    }
}

/// `gateway.apply(…)` on a task of its own.
fn apply_in_background(
    gateway: &Arc<dyn Gateway>,
    desired: &Desired,
    expected: Option<Digest>,
    generation: u64,
) -> tokio::task::JoinHandle<Result<Applied, GatewayError>> {
    let (gateway, desired) = (gateway.clone(), desired.clone());
    tokio::spawn(async move { gateway.apply(&desired, expected.as_ref(), generation).await })
}

#[tokio::test]
async fn a_litellm_configmap_gateway_is_applied_only_once_its_deployment_rolled_out() {
    let Some(client) = env::client().await else {
        return;
    };
    let cluster = Rollout::new(&client, "sluice-roll").await;
    let finish = Arc::new(Notify::new());
    let mut controller =
        DeploymentController::start(cluster.deployments(), "litellm", Some(finish.clone())).await;
    assert_eq!(
        cluster.gateway.live().await.unwrap().digest,
        None,
        "nothing yet"
    );

    let first = litellm_desired("redact", "c0ffee01");
    let apply = cluster.apply(&first, None, 1);
    controller.next_rollout().await;
    // The ConfigMap holds LiteLLM's config and its audit callback, the pod
    // template the digest; the apply waits for the rollout.
    let map = cluster.config_maps().get("litellm").await.unwrap();
    let data = map.data.unwrap();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        [LITELLM_DATA_KEY, AUDIT_CALLBACK_FILE]
    );
    assert_eq!(
        data[LITELLM_DATA_KEY],
        gateway::native(&cluster.spec, &first).unwrap()
    );
    assert!(data[LITELLM_DATA_KEY].contains("litellm_content_filter"));
    assert_eq!(data[AUDIT_CALLBACK_FILE], AUDIT_CALLBACK);
    assert_eq!(
        cluster.template_annotations().await[CONFIG_DIGEST_ANNOTATION],
        first.digest.as_str()
    );
    assert!(!apply.is_finished(), "not applied while the rollout runs");
    assert_eq!(
        cluster.gateway.live().await.unwrap().digest,
        None,
        "half the pods run the old config: not known, so pushed again, not drift"
    );
    finish.notify_one();
    let applied = env::within(60, "the apply", apply).await.unwrap().unwrap();
    assert_eq!(
        applied,
        Applied::Swapped {
            digest: first.digest.clone()
        }
    );
    assert_eq!(
        cluster.gateway.live().await.unwrap().digest,
        Some(first.digest.clone())
    );
    assert_eq!(
        cluster
            .gateway
            .apply(&first, Some(&first.digest), 2)
            .await
            .unwrap(),
        Applied::Unchanged
    );

    // A hand edit of config.yaml is drift at once, though no pod restarted
    // yet: every pod that starts from now on runs it.
    let edited = data[LITELLM_DATA_KEY].replace("MASK", "BLOCK");
    let patch = json!({"data": {LITELLM_DATA_KEY: edited}});
    cluster
        .config_maps()
        .patch("litellm", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let live = cluster.gateway.live().await.unwrap().digest.unwrap();
    assert_eq!(live, Digest::of(edited.as_bytes()));
    let projection = cluster.gateway.projection().await.unwrap().unwrap();
    let (changes, _) = drift::compare(&cluster.gateway.projected(&first), &projection);
    assert_eq!(
        changes
            .iter()
            .map(|c| c.pointer.as_str())
            .collect::<Vec<_>>(),
        [
            "/packs/support/pii-detector/patterns/us_ssn",
            "/packs/support/pii-detector/patterns/email"
        ],
        "named field by field"
    );

    // Healing it restarts the pods even though the template's digest
    // stays: some may have started from the edit.
    let heal = cluster.apply(&first, Some(live), 3);
    controller.next_rollout().await;
    finish.notify_one();
    let healed = env::within(60, "the heal", heal).await.unwrap().unwrap();
    assert_eq!(
        healed,
        Applied::Swapped {
            digest: first.digest.clone()
        }
    );
    let annotations = cluster.template_annotations().await;
    assert_eq!(annotations[CONFIG_DIGEST_ANNOTATION], first.digest.as_str());
    assert!(
        annotations.contains_key(RESTARTED_AT_ANNOTATION),
        "{annotations:?}"
    );
    assert_eq!(
        cluster.gateway.live().await.unwrap().digest,
        Some(first.digest.clone())
    );

    // A new version rolls again; the pods run the old one until it is done.
    let second = litellm_desired("block", "c0ffee02");
    let apply = cluster.apply(&second, Some(first.digest.clone()), 4);
    controller.next_rollout().await;
    assert_eq!(cluster.gateway.live().await.unwrap().digest, None);
    finish.notify_one();
    let applied = env::within(60, "the second apply", apply)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        applied,
        Applied::Swapped {
            digest: second.digest.clone()
        }
    );

    // `kubectl rollout undo`: the pods run the older version again, which
    // is what the gateway reports (drift for a verified gateway).
    let undo = json!({"spec": {"template": {"metadata": {"annotations": {CONFIG_DIGEST_ANNOTATION: first.digest.as_str()}}}}});
    cluster
        .deployments()
        .patch("litellm", &PatchParams::default(), &Patch::Merge(&undo))
        .await
        .unwrap();
    let undone = controller.next_rollout().await;
    finish.notify_one();
    controller.rolled(undone).await;
    assert_eq!(
        cluster.gateway.live().await.unwrap().digest,
        Some(first.digest.clone())
    );
    let projection = cluster.gateway.projection().await.unwrap().unwrap();
    assert!(
        projection
            .as_str()
            .is_some_and(|p| p.contains(first.digest.as_str())),
        "{projection}"
    );
}

#[tokio::test]
async fn a_rollout_that_never_completes_fails_the_apply_by_its_deadline_and_is_undone() {
    let Some(client) = env::client().await else {
        return;
    };
    let cluster = Rollout::new(&client, "sluice-stuck").await;
    let finish = Arc::new(Notify::new());
    let mut controller =
        DeploymentController::start(cluster.deployments(), "litellm", Some(finish.clone())).await;
    let first = litellm_desired("redact", "c0ffee01");
    let apply = cluster.apply(&first, None, 1);
    controller.next_rollout().await;
    finish.notify_one();
    env::within(60, "the first apply", apply)
        .await
        .unwrap()
        .unwrap();
    let before = cluster.config_maps().get("litellm").await.unwrap();

    // The new pods never become available: the rollout never finishes.
    let second = litellm_desired("block", "c0ffee02");
    let stuck = cluster.rolled_within("2s");
    let started = tokio::time::Instant::now();
    let apply = apply_in_background(&stuck, &second, Some(first.digest.clone()), 2);
    controller.next_rollout().await;
    let failed = env::within(60, "the apply", apply).await.unwrap();
    let elapsed = started.elapsed();
    let Err(err) = failed else {
        panic!("applied without a rollout: {failed:?}");
    };
    assert!(matches!(err, GatewayError::Rollout(_)), "{err:?}");
    assert!(!err.is_transient(), "the deadline already waited");
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "Deployment {}/litellm did not roll out within 2s: 1 of 2 replicas updated; the previous config was put back",
            cluster.namespace
        )),
        "{message}"
    );
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");

    // What ran before is back: the ConfigMap (no pod that restarts starts
    // from the new config) and the pod template (the Deployment controller
    // scales the previous pods back up).
    let after = cluster.config_maps().get("litellm").await.unwrap();
    assert_eq!(after.data, before.data);
    assert_eq!(
        after.metadata.annotations.unwrap()[DIGEST_ANNOTATION],
        first.digest.as_str()
    );
    assert_eq!(
        cluster.template_annotations().await[CONFIG_DIGEST_ANNOTATION],
        first.digest.as_str()
    );
    assert_eq!(
        stuck.live().await.unwrap().digest,
        None,
        "while rolling back"
    );
    // NB: releases the stuck rollout, now stale (the template moved on).
    finish.notify_one();
    let back = controller.next_rollout().await;
    finish.notify_one();
    controller.rolled(back).await;
    assert_eq!(
        stuck.live().await.unwrap().digest,
        Some(first.digest.clone()),
        "not applied: the previous version runs, and the next pass pushes again"
    );
}

#[tokio::test]
async fn sync_rolls_a_litellm_deployment_and_render_native_is_what_it_wrote() {
    let Some(client) = env::client().await else {
        return;
    };
    let kubeconfig = env::kubeconfig().expect("the client came from a kubeconfig");
    let namespace = env::namespace(&client, "sluice-litellm").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    litellm_deployment(&deployments, "litellm", "litellm").await;
    let _controller = DeploymentController::start(deployments.clone(), "litellm", None).await;

    let work = tempfile::tempdir().unwrap();
    let repo = example_repo(
        work.path(),
        &[
            // LiteLLM keeps no audit log of its own to expire or protect.
            (
                "environments/staging/packs/baseline.yaml",
                "policy:\n  audit-logger: { retention_days: null, immutable: null }\n".into(),
            ),
            (
                "environments/staging/litellm.yaml",
                "model_list:\n  - model_name: gpt-4o-mini\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_key: os.environ/STAGING_PROVIDER_KEY\ngeneral_settings:\n  master_key: os.environ/STAGING_LITELLM_MASTER_KEY\n".into(),
            ),
            (
                "environments/staging/gateways.yaml",
                format!(
                    "gateways:\n  - name: litellm-k8s\n    driver: configmap\n    namespace: {namespace}\n    configMap: litellm\n    format: litellm\n    deployment: litellm\n    rolloutTimeout: 1m\n"
                ),
            ),
        ],
    );
    let (repo_arg, data) = (
        repo.to_str().unwrap().to_owned(),
        work.path().join("data").to_str().unwrap().to_owned(),
    );
    // NB: the binary blocks its thread while the watch above answers it.
    let run = |args: Vec<String>| {
        let kubeconfig = kubeconfig.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            sluice_as(&args, &kubeconfig, "production=PROD_*,staging=STAGING_*")
        })
    };
    let command = |command: &str| {
        [
            command,
            "--env",
            "staging",
            "--repo",
            &repo_arg,
            "--data-dir",
            &data,
        ]
        .map(str::to_owned)
        .to_vec()
    };

    let (code, stdout, stderr) = env::within(120, "sync", run(command("sync")))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stdout}{stderr}");
    let config_maps: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let written = config_maps.get("litellm").await.unwrap().data.unwrap();
    let digest = deployments
        .get("litellm")
        .await
        .unwrap()
        .spec
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap()[CONFIG_DIGEST_ANNOTATION]
        .clone();
    assert!(
        written[LITELLM_DATA_KEY].contains(&digest),
        "stamped with what the template carries"
    );
    let native = [
        "render",
        "staging",
        "--gateway",
        "litellm-k8s",
        "--rev",
        "HEAD",
        "-o",
        "native",
        "--repo",
        &repo_arg,
    ]
    .map(str::to_owned)
    .to_vec();
    let (code, stdout, stderr) = env::within(60, "render", run(native)).await.unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout, written[LITELLM_DATA_KEY],
        "render -o native is what sync wrote"
    );

    let (code, stdout, stderr) = env::within(60, "drift", run(command("drift")))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stdout}{stderr}");
    let edited = written[LITELLM_DATA_KEY].replace("MASK", "BLOCK");
    assert_ne!(edited, written[LITELLM_DATA_KEY]);
    let patch = json!({"data": {LITELLM_DATA_KEY: edited}});
    config_maps
        .patch("litellm", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let (code, stdout, _) = env::within(60, "drift", run(command("drift")))
        .await
        .unwrap();
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("drifted")
            && stdout.contains(r#"email of pack baseline: "MASK" → "BLOCK""#),
        "{stdout}"
    );
    let (code, stdout, stderr) = env::within(120, "sync", run(command("sync")))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stdout}{stderr}");
    let healed = config_maps.get("litellm").await.unwrap().data.unwrap();
    assert_eq!(healed[LITELLM_DATA_KEY], written[LITELLM_DATA_KEY]);
}
