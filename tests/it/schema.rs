//! `sluice schema`: schemas for editors, the same ones validation uses.

use crate::support::{example_dir, sluice};

#[test]
fn writes_schemas_that_accept_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let run = sluice(&["schema", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let load = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(name)).unwrap()).unwrap()
    };
    let cases = [
        ("sluice.schema.json", "sluice.yaml"),
        (
            "environment.schema.json",
            "environments/production/environment.yaml",
        ),
        (
            "gateways.schema.json",
            "environments/production/gateways.yaml",
        ),
        ("pack.schema.json", "base/packs/baseline.yaml"),
        (
            "pack-overlay.schema.json",
            "environments/production/packs/baseline.yaml",
        ),
    ];
    for (schema, file) in cases {
        let validator = jsonschema::validator_for(&load(schema)).unwrap();
        let text = std::fs::read_to_string(example_dir().join(file)).unwrap();
        let value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{file} against {schema}: {errors:?}");
    }
    // The overlay is not a whole pack, and the pack schema says so.
    let overlay =
        std::fs::read_to_string(example_dir().join("environments/production/packs/baseline.yaml"))
            .unwrap();
    let overlay: serde_json::Value = serde_saphyr::from_str(&overlay).unwrap();
    assert!(
        !jsonschema::validator_for(&load("pack.schema.json"))
            .unwrap()
            .is_valid(&overlay)
    );
}

#[test]
fn the_pack_schema_knows_the_catalog() {
    let run = sluice(&["schema"]);
    let all: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let policies = &all["pack.schema.json"]["properties"]["policy"]["properties"];
    for name in [
        "audit-logger",
        "pii-detector",
        "prompt-injection",
        "model-allowlist",
        "rate-limit",
    ] {
        assert!(policies.get(name).is_some(), "{name} missing");
    }
}

#[test]
fn the_eval_schemas_are_written_with_descriptions() {
    let run = sluice(&["schema"]);
    let all: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let suite = &all["eval-suite.schema.json"];
    let fixture = &all["fixture.schema.json"];
    assert!(
        suite["title"]
            .as_str()
            .unwrap()
            .contains("evals/<name>.eval.yaml")
    );
    assert!(
        fixture["title"]
            .as_str()
            .unwrap()
            .contains("fixtures/<name>.fixture.yaml")
    );
    let case = &suite["properties"]["cases"]["items"];
    assert!(
        case["properties"]["repeat"]["description"].is_string(),
        "{case}"
    );
    let outcomes =
        serde_json::to_string(&case["properties"]["expect"]["properties"]["outcome"]).unwrap();
    for outcome in [
        "allowed",
        "redacted",
        "blocked",
        "flagged",
        "rate-limited",
        "refused-model",
    ] {
        assert!(outcomes.contains(outcome), "{outcome} in {outcomes}");
    }
    let example: serde_json::Value = serde_saphyr::from_str(
        "suite: pii\ncases:\n  - name: a\n    fixture: t\n    request: { params: { temperature: 0 } }\n    expect: { outcome: redacted, forwardedNotContains: [x] }\n",
    )
    .unwrap();
    assert!(jsonschema::validator_for(suite).unwrap().is_valid(&example));
    let typo: serde_json::Value = serde_saphyr::from_str(
        "suite: pii\ncases:\n  - name: a\n    fixture: t\n    expect: { outcome: redacted, fowardedNotContains: [x] }\n",
    )
    .unwrap();
    assert!(!jsonschema::validator_for(suite).unwrap().is_valid(&typo));
}
