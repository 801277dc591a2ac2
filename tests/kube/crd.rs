//! A CustomResourceDefinition and custom resources on the real API server:
//! install, wait for Established, create, watch an update, status subresource,
//! and server-side CEL validation.
//!
//! The `Widget` kind in `test.sluice.dev` exists only for these tests; Sluice's
//! own CRDs live elsewhere.

use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, CustomResource, CustomResourceExt, KubeSchema, Resource,
    api::{DeleteParams, Patch, PatchParams},
    runtime::wait::{await_condition, conditions},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

use crate::env::{self, api_status, within};

const FIELD_MANAGER: &str = "sluice-kube-tests";

/// Spec of the test-only `Widget` custom resource.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "test.sluice.dev",
    version = "v1alpha1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    shortname = "wdg",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase")
)]
#[x_kube(validation = Rule::new("self.replicas <= 10").message("at most 10 replicas"))]
#[serde(rename_all = "camelCase")]
pub struct WidgetSpec {
    message: String,
    replicas: i32,
}

/// Status of the test-only `Widget` custom resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    phase: String,
    observed_generation: Option<i64>,
}

/// Server-side apply the Widget CRD (idempotent, so a reused server is fine)
/// and wait until the server reports it Established.
async fn install_widget_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = Widget::crd_name();
    crds.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(Widget::crd()),
    )
    .await
    .expect("applying the Widget CRD");
    let established = within(
        60,
        "Widget CRD to become Established",
        await_condition(crds, name, conditions::is_crd_established()),
    )
    .await
    .expect("watching the Widget CRD");
    assert!(established.is_some(), "Widget CRD vanished");
}

#[tokio::test]
async fn crd_custom_resource_watch_and_status() {
    let Some(client) = env::client().await else {
        return;
    };
    install_widget_crd(&client).await;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let name = env::unique_name("widget");

    let created = env::create(
        &widgets,
        &Widget::new(
            &name,
            WidgetSpec {
                message: "hello".into(),
                replicas: 1,
            },
        ),
    )
    .await
    .expect("creating a Widget");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some(), "server assigns a uid");
    assert_eq!(created.status, None);

    // Watch the object. The condition sees it first as listed; only then is
    // the spec changed, so the change must arrive as a watch event.
    let listed = Arc::new(Notify::new());
    let watch = tokio::spawn({
        let (api, name, listed) = (widgets.clone(), name.clone(), listed.clone());
        async move {
            let cond = move |w: Option<&Widget>| match w {
                Some(w) if w.spec.message == "updated" => true,
                Some(_) => {
                    listed.notify_one();
                    false
                }
                None => false,
            };
            await_condition(api, &name, cond).await
        }
    });
    within(30, "the watch to list the Widget", listed.notified()).await;

    widgets
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"message": "updated", "replicas": 2}})),
        )
        .await
        .expect("patching the Widget spec");
    let seen = within(30, "the watch to see the spec update", watch)
        .await
        .expect("watch task")
        .expect("watching the Widget")
        .expect("Widget still exists");
    assert_eq!(seen.spec.message, "updated");
    assert_eq!(seen.spec.replicas, 2);
    assert_eq!(seen.metadata.generation, Some(2));

    // Status goes through the status subresource and does not bump the
    // generation.
    let status = WidgetStatus {
        phase: "Ready".into(),
        observed_generation: seen.metadata.generation,
    };
    let after = widgets
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .expect("patching the Widget status");
    assert_eq!(after.metadata.generation, Some(2));
    let read = widgets
        .get_status(&name)
        .await
        .expect("reading the Widget status");
    assert_eq!(read.status.as_ref(), Some(&status));

    // With the subresource enabled, the main endpoint ignores status changes.
    widgets
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Overwritten"}})),
        )
        .await
        .expect("patching the Widget");
    let read = widgets.get(&name).await.expect("reading the Widget");
    assert_eq!(read.status.as_ref(), Some(&status));

    widgets
        .delete(&name, &DeleteParams::default())
        .await
        .expect("deleting the Widget");
    let uid = read.meta().uid.clone().expect("uid");
    within(
        30,
        "the Widget to be deleted",
        await_condition(widgets, &name, conditions::is_deleted(&uid)),
    )
    .await
    .expect("watching the Widget deletion");
}

#[tokio::test]
async fn crd_cel_validation_is_enforced_by_the_server() {
    let Some(client) = env::client().await else {
        return;
    };
    install_widget_crd(&client).await;
    let widgets: Api<Widget> = Api::namespaced(client, "default");
    let name = env::unique_name("widget-invalid");

    let err = env::create(
        &widgets,
        &Widget::new(
            &name,
            WidgetSpec {
                message: "too many".into(),
                replicas: 11,
            },
        ),
    )
    .await
    .expect_err("the server rejects replicas > 10");
    assert_eq!(api_status(&err), Some(422), "{err}");
    assert!(err.to_string().contains("at most 10 replicas"), "{err}");
}
