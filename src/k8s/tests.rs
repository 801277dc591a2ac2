//! The CRDs and the types behind them, without a cluster. The API server's
//! own checks (CEL, patterns, printer columns) run in `tests/kube/sluice_crds.rs`.

use super::{crd::*, *};
use crate::{
    config::model,
    ledger::{Outcome, Trigger},
};
use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use serde_json::{Value, json};
use std::path::Path;

fn schema_of(kind: &str) -> Value {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .clone()
        .and_then(|s| s.open_api_v3_schema)
        .expect("a schema");
    serde_json::to_value(schema).unwrap()
}

/// Every object in the schema says what it holds: properties, typed
/// additionalProperties, or x-kubernetes-preserve-unknown-fields; and there
/// is no oneOf/anyOf/allOf a structural schema would need to repeat.
fn assert_structural(path: &str, schema: &Value) {
    let obj = schema.as_object().expect("schema object");
    for keyword in ["oneOf", "anyOf", "allOf", "not", "$ref"] {
        assert!(!obj.contains_key(keyword), "{path}: {keyword}");
    }
    assert!(obj.contains_key("type"), "{path}: no type");
    if obj["type"] == "object" {
        let typed = obj.contains_key("properties")
            || obj
                .get("additionalProperties")
                .is_some_and(Value::is_object)
            || obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
        assert!(typed, "{path}: an object of unknown shape");
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            assert_structural(&format!("{path}.{name}"), sub);
        }
    }
    if let Some(items) = obj.get("items") {
        assert_structural(&format!("{path}[]"), items);
    }
}

#[test]
fn schemas_are_structural() {
    for kind in ["ConfigRepository", "Environment", "Gateway"] {
        assert_structural(kind, &schema_of(kind));
    }
}

#[test]
fn the_crds_are_named_and_grouped_for_kubectl() {
    let names: Vec<_> = crds()
        .iter()
        .map(|c| (file_name(c), c.spec.names.short_names.clone().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            (
                "configrepositories.sluice.dev.yaml".to_owned(),
                vec!["configrepo".to_owned()]
            ),
            (
                "environments.sluice.dev.yaml".to_owned(),
                vec!["sluiceenv".to_owned(), "senv".to_owned()]
            ),
            (
                "gateways.sluice.dev.yaml".to_owned(),
                vec!["sgw".to_owned()]
            ),
        ]
    );
    for crd in crds() {
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.categories, Some(vec!["sluice".to_owned()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, VERSION);
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns = version.additional_printer_columns.as_ref().unwrap();
        assert_eq!(columns.last().unwrap().name, "Age");
    }
}

#[test]
fn cheap_validation_lives_in_the_schema() {
    let env = schema_of("Environment");
    let spec = &env["properties"]["spec"]["properties"];
    assert_eq!(
        spec["path"]["pattern"],
        "^environments/[a-z][a-z0-9-]{1,48}[a-z0-9]$"
    );
    let status = &env["properties"]["status"]["properties"];
    assert_eq!(status["history"]["maxItems"], json!(HISTORY_LIMIT));
    assert_eq!(status["conditions"]["x-kubernetes-list-type"], "map");
    assert_eq!(
        status["gateways"]["items"]["properties"]["state"]["enum"][0],
        "in-sync"
    );

    let repo = schema_of("ConfigRepository");
    let spec = &repo["properties"]["spec"]["properties"];
    assert_eq!(spec["interval"]["pattern"], "^([0-9]+(ms|s|m|h|d))+$");
    assert_eq!(spec["interval"]["default"], "1m");
    assert_eq!(
        spec["ref"]["x-kubernetes-validations"][0]["message"],
        "set exactly one of branch, tag or commit"
    );
    assert_eq!(
        spec["verification"]["properties"]["provider"]["enum"],
        json!(["openpgp", "ssh"])
    );

    let gateway = schema_of("Gateway");
    let spec = &gateway["properties"]["spec"];
    assert_eq!(
        spec["properties"]["driver"]["enum"],
        json!(["http", "file", "configmap"])
    );
    assert_eq!(
        spec["x-kubernetes-validations"].as_array().unwrap().len(),
        4
    );
}

#[test]
fn the_url_pattern_accepts_git_urls_and_refuses_credentials() {
    let repo = schema_of("ConfigRepository");
    let pattern = repo["properties"]["spec"]["properties"]["url"]["pattern"]
        .as_str()
        .unwrap();
    let validator =
        jsonschema::validator_for(&json!({"type": "string", "pattern": pattern})).unwrap();
    for good in [
        "https://git.example.com/platform/policy.git",
        "http://127.0.0.1:9418/policy",
        "ssh://git@git.example.com/platform/policy.git",
        "git@git.example.com:platform/policy.git",
        "git://127.0.0.1:9418/policy",
    ] {
        assert!(validator.is_valid(&json!(good)), "{good}");
    }
    for bad in [
        "https://user:token@git.example.com/policy.git",
        "https://git.example.com",
        "/srv/git/policy",
        "file:///srv/git/policy",
        "git://user@127.0.0.1/policy",
    ] {
        assert!(!validator.is_valid(&json!(bad)), "{bad}");
    }
}

fn example<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/k8s")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_examples_are_objects_of_these_types() {
    let repo: ConfigRepository = example("configrepository.yaml");
    assert_eq!(repo.spec.git_ref.branch.as_deref(), Some("main"));
    assert_eq!(
        repo.spec.verification.as_ref().unwrap().provider,
        SignatureProvider::Ssh
    );
    let env: Environment = example("environment.yaml");
    assert_eq!(env.spec.repository_ref.name, "policy");
    assert_eq!(env.spec.path, "environments/production");
    let gateway: Gateway = example("gateway.yaml");
    assert_eq!(gateway.spec.environment, "production");
    let gw = gateway.spec.to_gateway("gw-eu-2").unwrap();
    assert_eq!(gw.driver(), "http");
    assert_eq!(gw.name(), "gw-eu-2");
}

#[test]
fn defaults_fill_in_what_the_spec_leaves_out() {
    let repo: ConfigRepositorySpec =
        serde_json::from_value(json!({"url": "git@h:p", "ref": {"tag": "v1"}})).unwrap();
    assert_eq!(repo.interval.0, "1m");
    let env: EnvironmentSpec =
        serde_json::from_value(json!({"repositoryRef": {"name": "r"}, "path": "environments/dev"}))
            .unwrap();
    assert!(!env.suspend);
}

#[test]
fn a_gateway_without_its_driver_settings_says_which() {
    let spec = GatewaySpec {
        environment: "production".into(),
        driver: GatewayDriver::Configmap,
        http: None,
        file: None,
        configmap: None,
        secret_ref: None,
    };
    let err = spec.to_gateway("gw").unwrap_err();
    assert_eq!(
        err.to_string(),
        "gateway \"gw\" uses driver configmap but has no spec.configmap settings"
    );
    let spec = GatewaySpec {
        configmap: Some(ConfigMapSettings {
            namespace: "gateways".into(),
            config_map: "policy".into(),
            format: Some(model::FileFormat::Litellm),
            deployment: Some("litellm".into()),
            rollout_timeout: Some(model::DurationText("2m".into())),
        }),
        ..spec
    };
    assert_eq!(
        spec.to_gateway("gw").unwrap(),
        model::Gateway::Configmap(model::ConfigMapGateway {
            name: "gw".into(),
            namespace: "gateways".into(),
            config_map: "policy".into(),
            format: model::FileFormat::Litellm,
            deployment: Some("litellm".into()),
            rollout_timeout: Some(model::DurationText("2m".into())),
        })
    );
}

fn condition(type_: &str, status: &str, reason: &str, at_secs: i64) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: String::new(),
        observed_generation: Some(1),
        last_transition_time: Time(Timestamp::from_second(at_secs).unwrap()),
    }
}

#[test]
fn a_condition_moves_its_transition_time_only_when_its_status_changes() {
    let mut conditions = vec![condition(condition::READY, "False", "Validating", 10)];
    set_condition(
        &mut conditions,
        condition(condition::READY, "False", "Applying", 20),
    );
    assert_eq!(conditions.len(), 1);
    assert_eq!(conditions[0].reason, "Applying");
    assert_eq!(
        conditions[0].last_transition_time,
        condition("", "", "", 10).last_transition_time
    );

    set_condition(
        &mut conditions,
        condition(condition::READY, "True", "Synced", 30),
    );
    assert_eq!(
        conditions[0].last_transition_time,
        condition("", "", "", 30).last_transition_time
    );

    set_condition(
        &mut conditions,
        condition(condition::DRIFTED, "False", "NoDrift", 40),
    );
    let types: Vec<_> = conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, [condition::READY, condition::DRIFTED]);
}

#[test]
fn history_keeps_the_newest_twenty() {
    let mut history = Vec::new();
    for i in 0..25 {
        push_history(
            &mut history,
            ApplyRecord {
                revision: format!("{i:040}"),
                digest: "sha256:0".into(),
                trigger: Trigger::Poll,
                outcome: Outcome::Applied,
                started_at: Time(Timestamp::from_second(i).unwrap()),
                finished_at: None,
                message: None,
            },
        );
    }
    assert_eq!(history.len(), HISTORY_LIMIT);
    assert_eq!(history[0].revision, format!("{:040}", 24));
    assert_eq!(history[19].revision, format!("{:040}", 5));
}

#[test]
fn the_stream_holds_every_crd_with_the_generated_header() {
    let all = all_to_yaml().unwrap();
    assert_eq!(all.matches("---\n").count(), 3);
    assert_eq!(all.matches(GENERATED_HEADER).count(), 3);
    for (name, yaml) in files().unwrap() {
        assert!(all.contains(&yaml), "{name} not in the stream");
    }
}
