//! Service-account tokens (signed with the generated keys) and RBAC, enforced
//! by the real API server.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::{
    core::v1::{ConfigMap, Secret, ServiceAccount},
    rbac::v1::{PolicyRule, Role, RoleBinding},
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, ObjectMeta},
};
use tokio::time::Instant;

use crate::env::{self, api_status};

fn named(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(BTreeMap::from([(
            "test.sluice.dev/suite".to_owned(),
            "rbac".to_owned(),
        )])),
        ..ObjectMeta::default()
    }
}

#[tokio::test]
async fn service_account_token_is_subject_to_rbac() {
    let Some(admin) = env::client().await else {
        return;
    };
    let name = env::unique_name("reader");
    let user = format!("system:serviceaccount:default:{name}");

    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    let token = env::service_account_token(&accounts, named(&name)).await;

    let as_reader = env::client_with_token(&token).await;
    let reader_config_maps: Api<ConfigMap> = Api::namespaced(as_reader.clone(), "default");
    let reader_secrets: Api<Secret> = Api::namespaced(as_reader, "default");

    // Authenticated (403 names the account, not 401) but not yet authorized.
    let err = reader_config_maps
        .list(&ListParams::default())
        .await
        .expect_err("no Role grants this yet");
    assert_eq!(api_status(&err), Some(403), "{err}");
    assert!(err.to_string().contains(&user), "{err}");

    env::grant(
        &admin,
        "default",
        named(&name),
        vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..PolicyRule::default()
        }],
    )
    .await;

    // The authorizer sees the binding through its informer: poll until then.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match reader_config_maps.list(&ListParams::default()).await {
            Ok(_) => break,
            Err(err) if api_status(&err) == Some(403) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("listing ConfigMaps with the Role bound: {err}"),
        }
    }
    // The Role grants ConfigMaps only.
    let err = reader_secrets
        .list(&ListParams::default())
        .await
        .expect_err("Secrets stay forbidden");
    assert_eq!(api_status(&err), Some(403), "{err}");

    let dp = DeleteParams::default();
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), "default");
    let roles: Api<Role> = Api::namespaced(admin, "default");
    bindings
        .delete(&name, &dp)
        .await
        .expect("deleting the RoleBinding");
    roles.delete(&name, &dp).await.expect("deleting the Role");
    accounts
        .delete(&name, &dp)
        .await
        .expect("deleting the ServiceAccount");
}
