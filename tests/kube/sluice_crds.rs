//! Sluice's own CRDs (`sluice crds`) on the real API server: installed and
//! Established, the examples in `examples/k8s/` accepted and read back, the
//! schema's patterns and CEL rules enforced (422), and the printer columns
//! `kubectl get environments` shows.

use std::path::Path;

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sluice::k8s::{
    self, ConfigRepository, Environment, EnvironmentStatus, Gateway,
    crd::{ApplyRecord, GatewayStatus, condition},
};

use crate::{
    crds::install_crds,
    env::{self, api_status},
};

const NAMESPACE: &str = "default";

/// An example from `examples/k8s/`, renamed to a name unique to this run.
fn example<K: DeserializeOwned + Resource>(file: &str, name: &str) -> K {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/k8s")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("reading the example");
    let mut object: K =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    object.meta_mut().name = Some(name.to_owned());
    object
}

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).expect("a timestamp"))
}

/// `kubectl get environment NAME` as the server prints it: a meta.k8s.io
/// Table with the CRD's printer columns.
async fn environment_table(client: &Client, name: &str) -> Value {
    let request = http::Request::get(format!(
        "/apis/sluice.dev/v1alpha1/namespaces/{NAMESPACE}/environments/{name}"
    ))
    .header(
        "Accept",
        "application/json;as=Table;g=meta.k8s.io;v=v1,application/json",
    )
    .body(Vec::new())
    .expect("a request");
    let text = client
        .request_text(request)
        .await
        .expect("reading the environment as a table");
    serde_json::from_str(&text).expect("a JSON table")
}

#[tokio::test]
async fn sluice_crds_serve_the_examples_with_status_and_printer_columns() {
    let Some(client) = env::client().await else {
        return;
    };
    install_crds(&client).await;
    let repos: Api<ConfigRepository> = Api::namespaced(client.clone(), NAMESPACE);
    let environments: Api<Environment> = Api::namespaced(client.clone(), NAMESPACE);
    let gateways: Api<Gateway> = Api::namespaced(client.clone(), NAMESPACE);

    let repo_name = env::unique_name("policy");
    let env_name = env::unique_name("production");
    let gateway_name = env::unique_name("gw-eu-2");

    let repo: ConfigRepository = example("configrepository.yaml", &repo_name);
    let created = env::create(&repos, &repo)
        .await
        .expect("creating the ConfigRepository");
    assert_eq!(created.spec, repo.spec);
    assert_eq!(created.metadata.generation, Some(1));

    let mut environment: Environment = example("environment.yaml", &env_name);
    environment.spec.repository_ref.name = repo_name.clone();
    env::create(&environments, &environment)
        .await
        .expect("creating the Environment");

    let mut gateway: Gateway = example("gateway.yaml", &gateway_name);
    gateway.spec.environment = env_name.clone();
    env::create(&gateways, &gateway)
        .await
        .expect("creating the Gateway");

    // Read back what the server stored, defaults included.
    let read = repos
        .get(&repo_name)
        .await
        .expect("reading the ConfigRepository");
    assert_eq!(read.spec, repo.spec);
    assert_eq!(read.spec.interval.0, "1m");
    let read = environments
        .get(&env_name)
        .await
        .expect("reading the Environment");
    assert_eq!(read.spec, environment.spec);
    let read = gateways
        .get(&gateway_name)
        .await
        .expect("reading the Gateway");
    assert_eq!(read.spec, gateway.spec);
    assert_eq!(
        read.spec
            .to_gateway(&gateway_name)
            .expect("driver settings")
            .driver(),
        "http"
    );

    // The status the controller will write, through the status subresource.
    let status = EnvironmentStatus {
        observed_generation: Some(1),
        conditions: condition::ALL
            .iter()
            .map(|type_| Condition {
                type_: (*type_).into(),
                status: if [condition::DRIFTED, condition::GATED].contains(type_) {
                    "False"
                } else {
                    "True"
                }
                .into(),
                reason: if *type_ == condition::READY {
                    "Synced"
                } else {
                    "AsExpected"
                }
                .into(),
                message: String::new(),
                observed_generation: Some(1),
                last_transition_time: at(1_790_000_000),
            })
            .collect(),
        desired_revision: Some("0123456789abcdef0123456789abcdef01234567".into()),
        desired_digest: Some(format!("sha256:{}", "ab".repeat(32))),
        desired_version: Some("sha256:abababababab@01234567".into()),
        gateways_in_sync: Some("1/1".into()),
        gateways: vec![GatewayStatus {
            name: gateway_name.clone(),
            state: sluice::ledger::GatewayState::InSync,
            desired_digest: Some(format!("sha256:{}", "ab".repeat(32))),
            observed_digest: Some(format!("sha256:{}", "ab".repeat(32))),
            last_transition_time: Some(at(1_790_000_000)),
            message: None,
        }],
        history: vec![ApplyRecord {
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            trigger: sluice::ledger::Trigger::Poll,
            outcome: sluice::ledger::Outcome::Applied,
            started_at: at(1_790_000_000),
            finished_at: Some(at(1_790_000_001)),
            message: None,
        }],
        last_handled_reconcile_at: Some("1790000000".into()),
        ledger: Some(sluice::k8s::crd::LedgerStatus {
            attempts: vec![sluice::k8s::crd::LedgerAttempt {
                gateway: gateway_name.clone(),
                revision: "0123456789abcdef0123456789abcdef01234567".into(),
                digest: sluice::config::Digest::parse(&format!("sha256:{}", "ab".repeat(32)))
                    .unwrap(),
                trigger: sluice::ledger::Trigger::Poll,
                started_at: "2026-09-21T13:46:40.123Z".into(),
                finished_at: None,
                outcome: None,
                error: None,
            }],
            deployments: vec![sluice::k8s::crd::LedgerDeployment {
                revision: "0123456789abcdef0123456789abcdef01234567".into(),
                digest: sluice::config::Digest::parse(&format!("sha256:{}", "ab".repeat(32)))
                    .unwrap(),
                packs: vec![sluice::k8s::crd::LedgerPack {
                    name: "baseline".into(),
                    version: "1.0.0".into(),
                    digest: sluice::config::Digest::parse(&format!("sha256:{}", "cd".repeat(32)))
                        .unwrap(),
                    source: format!("sha256:{}", "cd".repeat(32)),
                }],
                verified_at: "2026-09-21T13:46:41.000Z".into(),
            }],
            ..Default::default()
        }),
    };
    environments
        .patch_status(
            &env_name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .expect("patching the Environment status");
    let read = environments
        .get_status(&env_name)
        .await
        .expect("reading the Environment status");
    assert_eq!(read.status.as_ref(), Some(&status));

    // What `kubectl get environments` shows.
    let table = environment_table(&client, &env_name).await;
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("column definitions")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Name",
            "Path",
            "Version",
            "Gateways",
            "Ready",
            "Reason",
            "Suspended",
            "Repository",
            "Age"
        ]
    );
    let cells = &table["rows"][0]["cells"];
    assert_eq!(
        cells.as_array().unwrap()[..8],
        [
            json!(env_name),
            json!("environments/production"),
            json!("sha256:abababababab@01234567"),
            json!("1/1"),
            json!("True"),
            json!("Synced"),
            json!(false),
            json!(repo_name),
        ]
    );
}

#[tokio::test]
async fn sluice_crds_refuse_what_the_schema_forbids() {
    let Some(client) = env::client().await else {
        return;
    };
    install_crds(&client).await;
    let environments: Api<Environment> = Api::namespaced(client.clone(), NAMESPACE);
    let repos: Api<ConfigRepository> = Api::namespaced(client.clone(), NAMESPACE);
    let gateways: Api<Gateway> = Api::namespaced(client.clone(), NAMESPACE);

    // A path outside environments/<slug>.
    let mut environment: Environment = example("environment.yaml", &env::unique_name("bad-path"));
    environment.spec.path = "environments/Prod/../../etc".into();
    let err = env::create(&environments, &environment)
        .await
        .expect_err("the server refuses the path");
    assert_eq!(api_status(&err), Some(422), "{err}");
    assert!(err.to_string().contains("spec.path"), "{err}");

    // Two refs at once (CEL on spec.ref).
    let mut repo: ConfigRepository =
        example("configrepository.yaml", &env::unique_name("two-refs"));
    repo.spec.git_ref.tag = Some("v1.0.0".into());
    let err = env::create(&repos, &repo)
        .await
        .expect_err("the server refuses two refs");
    assert_eq!(api_status(&err), Some(422), "{err}");
    assert!(
        err.to_string()
            .contains("set exactly one of branch, tag or commit"),
        "{err}"
    );

    // Credentials in the URL.
    let mut repo: ConfigRepository =
        example("configrepository.yaml", &env::unique_name("url-token"));
    repo.spec.url = "https://user:token@git.example.com/policy.git".into();
    let err = env::create(&repos, &repo)
        .await
        .expect_err("the server refuses a URL with credentials");
    assert_eq!(api_status(&err), Some(422), "{err}");

    // A driver without its settings (CEL on spec).
    let mut gateway: Gateway = example("gateway.yaml", &env::unique_name("no-settings"));
    gateway.spec.driver = k8s::GatewayDriver::Configmap;
    gateway.spec.secret_ref = None;
    let err = env::create(&gateways, &gateway)
        .await
        .expect_err("the server refuses a driver without settings");
    assert_eq!(api_status(&err), Some(422), "{err}");
    assert!(
        err.to_string()
            .contains("spec.configmap is required with driver configmap"),
        "{err}"
    );

    // The history is bounded.
    let name = env::unique_name("long-history");
    env::create(&environments, &example("environment.yaml", &name))
        .await
        .expect("creating the Environment");
    let record = json!({
        "revision": "0123456789abcdef0123456789abcdef01234567",
        "digest": "sha256:00",
        "trigger": "poll",
        "outcome": "applied",
        "startedAt": "2026-11-23T00:00:00Z",
    });
    let too_long = vec![record; k8s::crd::HISTORY_LIMIT + 1];
    let err = environments
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "history": too_long } })),
        )
        .await
        .expect_err("the server refuses a 21st history entry");
    assert_eq!(api_status(&err), Some(422), "{err}");
    assert!(err.to_string().contains("status.history"), "{err}");

    // The status ledger holds digests, nothing else: a hand edit of one
    // is refused, so the controller never reads a version nobody has.
    let bad = json!({ "ledger": { "deployments": [{
        "revision": "0123456789abcdef0123456789abcdef01234567",
        "digest": "sha256:not-a-digest",
        "verifiedAt": "2026-11-23T00:00:00Z",
    }] } });
    let err = environments
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": bad })),
        )
        .await
        .expect_err("the server refuses a ledger digest that is not one");
    assert_eq!(api_status(&err), Some(422), "{err}");
    assert!(
        err.to_string()
            .contains("status.ledger.deployments[0].digest"),
        "{err}"
    );
}
