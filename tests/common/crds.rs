//! Installs Sluice's CRDs on a test API server: shared by the Kubernetes
//! tests and the controller benchmark.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::wait::{await_condition, conditions},
};
use std::time::Duration;

/// Server-side applies every Sluice CRD, exactly as `sluice crds` writes
/// them, and waits until each is Established.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in sluice::k8s::crds() {
        let name = crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply("sluice-kube-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("applying the CRD {name}: {e}"));
        let established = tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("{name} did not become Established within 60 s"))
        .expect("watching the CRD");
        assert!(established.is_some(), "{name} vanished");
    }
}
