//! The `configmap` gateway driver against the real API server: applies,
//! reads back, sees `kubectl edit`-style changes as drift, refuses stale
//! writes; and `sluice sync` / `sluice drift` end to end.

use crate::env;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use sluice::{
    config::{Digest, model},
    gateway::{
        Applied, Desired, DriverContext, Gateway, GatewayError,
        configmap::{ConfigMapGateway, DIGEST_ANNOTATION, ENVIRONMENT_LABEL, REVISION_ANNOTATION},
    },
};
use std::{path::Path, process::Command, sync::Arc};

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

fn sluice(args: &[&str], kubeconfig: &Path) -> (i32, String, String) {
    // NB: as an operator who allows production the example's alert variable.
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_ALLOW_ENV", "production=PROD_*")
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
    let repo = work.path().join("repo");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(&example)
        .arg(&repo)
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::write(
        repo.join("environments/production/gateways.yaml"),
        format!(
            "gateways:\n  - name: prod-k8s\n    driver: configmap\n    namespace: {namespace}\n    configMap: policy\n"
        ),
    )
    .unwrap();
    env::git(&repo, &["init", "-q", "-b", "main"]);
    env::git(&repo, &["add", "-A"]);
    env::git(&repo, &["commit", "-q", "-m", "production on a ConfigMap"]);
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
