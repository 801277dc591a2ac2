//! Built-in objects the operator relies on, against the real API server:
//! ConfigMaps, Secrets, Leases (optimistic concurrency) and Events.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        coordination::v1::{Lease, LeaseSpec},
        core::v1::{ConfigMap, Event as CoreEvent, Secret},
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use serde_json::json;

use crate::env::{self, api_status, within};

fn meta(name: &str, run: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(BTreeMap::from([(
            "test.sluice.dev/run".to_owned(),
            run.to_owned(),
        )])),
        ..ObjectMeta::default()
    }
}

#[tokio::test]
async fn server_reports_the_built_version() {
    let Some(client) = env::client().await else {
        return;
    };
    let info = client.apiserver_version().await.expect("GET /version");
    // Set by the version ldflags of scripts/k8s-test-env.sh; an unstamped
    // build would report v0.0.0-master and empty major/minor.
    assert_eq!(info.major, "1", "{info:?}");
    assert!(
        info.git_version.starts_with(&format!("v1.{}.", info.minor)),
        "{info:?}"
    );
    assert_eq!(info.git_tree_state, "clean", "{info:?}");
}

#[tokio::test]
async fn configmap_and_secret_round_trip() {
    let Some(client) = env::client().await else {
        return;
    };
    let run = env::unique_name("run");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client, "default");

    let cm_name = env::unique_name("policy");
    let created = config_maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta(&cm_name, &run),
                data: Some(BTreeMap::from([(
                    "policy.yaml".to_owned(),
                    "models: [gpt]\n".to_owned(),
                )])),
                ..ConfigMap::default()
            },
        )
        .await
        .expect("creating a ConfigMap");
    let patched = config_maps
        .patch(
            &cm_name,
            &PatchParams::apply("sluice-kube-tests"),
            &Patch::Apply(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": cm_name},
                "data": {"extra.yaml": "limits: {}\n"},
            })),
        )
        .await
        .expect("server-side applying to the ConfigMap");
    assert_ne!(created.resource_version(), patched.resource_version());
    let data = patched.data.expect("data");
    assert_eq!(data["policy.yaml"], "models: [gpt]\n");
    assert_eq!(data["extra.yaml"], "limits: {}\n");
    let listed = config_maps
        .list(&ListParams::default().labels(&format!("test.sluice.dev/run={run}")))
        .await
        .expect("listing ConfigMaps by label");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].name_any(), cm_name);

    let secret_name = env::unique_name("credentials");
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: meta(&secret_name, &run),
                type_: Some("Opaque".into()),
                string_data: Some(BTreeMap::from([("token".to_owned(), "s3cr3t".to_owned())])),
                ..Secret::default()
            },
        )
        .await
        .expect("creating a Secret");
    let read = secrets.get(&secret_name).await.expect("reading the Secret");
    // stringData is write-only: the server stores it base64 in data.
    assert_eq!(read.string_data, None);
    assert_eq!(read.data.expect("data")["token"].0, b"s3cr3t");

    config_maps
        .delete(&cm_name, &DeleteParams::default())
        .await
        .expect("deleting the ConfigMap");
    secrets
        .delete(&secret_name, &DeleteParams::default())
        .await
        .expect("deleting the Secret");
    let gone = config_maps.get_opt(&cm_name).await.expect("get_opt");
    assert!(gone.is_none());
}

#[tokio::test]
async fn lease_updates_use_optimistic_concurrency() {
    let Some(client) = env::client().await else {
        return;
    };
    let leases: Api<Lease> = Api::namespaced(client, "default");
    let name = env::unique_name("sluice-leader");
    let now = MicroTime(Timestamp::now());

    let held = leases
        .create(
            &PostParams::default(),
            &Lease {
                metadata: meta(&name, "lease"),
                spec: Some(LeaseSpec {
                    holder_identity: Some("sluice-a".into()),
                    lease_duration_seconds: Some(15),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            },
        )
        .await
        .expect("creating a Lease");

    // sluice-b takes over with the current resourceVersion.
    let mut takeover = held.clone();
    let spec = takeover.spec.as_mut().expect("spec");
    spec.holder_identity = Some("sluice-b".into());
    spec.lease_transitions = Some(1);
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    let taken = leases
        .replace(&name, &PostParams::default(), &takeover)
        .await
        .expect("taking over the Lease");
    assert_ne!(taken.resource_version(), held.resource_version());

    // sluice-a renewing from its stale copy must lose: 409 Conflict.
    let mut stale = held.clone();
    stale.spec.as_mut().expect("spec").renew_time = Some(MicroTime(Timestamp::now()));
    let err = leases
        .replace(&name, &PostParams::default(), &stale)
        .await
        .expect_err("a stale resourceVersion must conflict");
    assert_eq!(api_status(&err), Some(409), "{err}");

    let current = leases.get(&name).await.expect("reading the Lease");
    let spec = current.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("sluice-b"));
    assert_eq!(spec.lease_transitions, Some(1));

    leases
        .delete(&name, &DeleteParams::default())
        .await
        .expect("deleting the Lease");
}

#[tokio::test]
async fn events_are_recorded_for_an_object() {
    let Some(client) = env::client().await else {
        return;
    };
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm_name = env::unique_name("evented");
    let cm = config_maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta(&cm_name, "events"),
                ..ConfigMap::default()
            },
        )
        .await
        .expect("creating a ConfigMap");

    // kube's Recorder writes events.k8s.io/v1 Events, as the operator will.
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "sluice-kube-tests".into(),
            instance: None,
        },
    );
    recorder
        .publish(
            &Event {
                type_: EventType::Normal,
                reason: "Reconciled".into(),
                note: Some("applied 3 policies".into()),
                action: "Reconcile".into(),
                secondary: None,
            },
            &cm.object_ref(&()),
        )
        .await
        .expect("publishing an Event");

    // The same Event read back through core/v1, selected by its object.
    let events: Api<CoreEvent> = Api::namespaced(client, "default");
    let selector = format!("involvedObject.kind=ConfigMap,involvedObject.name={cm_name}");
    let listed = within(
        30,
        "listing Events",
        events.list(&ListParams::default().fields(&selector)),
    )
    .await
    .expect("listing Events by field selector");
    assert_eq!(listed.items.len(), 1, "{listed:?}");
    let event = &listed.items[0];
    assert_eq!(event.reason.as_deref(), Some("Reconciled"));
    assert_eq!(event.message.as_deref(), Some("applied 3 policies"));
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    assert_eq!(event.involved_object.uid, cm.metadata.uid);

    config_maps
        .delete(&cm_name, &DeleteParams::default())
        .await
        .expect("deleting the ConfigMap");
}
