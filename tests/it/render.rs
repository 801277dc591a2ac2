//! `sluice render`: desired state and versions.

use crate::support::TestRepo;

#[test]
fn renders_every_gateway_with_its_version() {
    let repo = TestRepo::example();
    let commit = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let run = repo.sluice(&["render", "--rev", "HEAD", "-o", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let entries = run.json();
    let entries = entries.as_array().unwrap();
    let names: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["environment"].as_str().unwrap(),
                e["gateway"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("development", "dev-1"),
            ("eval", "eval-1"),
            ("production", "prod-eu-1"),
            ("production", "prod-us-1"),
            ("staging", "staging-1"),
        ]
    );
    for entry in entries {
        let digest = entry["digest"].as_str().unwrap();
        assert!(digest.starts_with("sha256:") && digest.len() == 71);
        let version = entry["version"].as_str().unwrap();
        assert_eq!(version, format!("{}@{}", &digest[..19], &commit[..8]));
        assert_eq!(entry["revision"], commit.as_str());
    }
    // The production overlay is applied; staging inherits the base unchanged.
    let prod = &entries[2]["config"]["packs"]["baseline"]["settings"];
    assert_eq!(prod["pii-detector"]["action"], "block");
    assert_eq!(prod["audit-logger"]["retention_days"], 365);
    let staging = &entries[4]["config"]["packs"]["baseline"]["settings"];
    assert_eq!(staging["pii-detector"]["action"], "redact");
    // Gateways of one environment share the version.
    assert_eq!(entries[2]["digest"], entries[3]["digest"]);
}

#[test]
fn filters_by_environment_and_gateway() {
    let repo = TestRepo::example();
    let run = repo.sluice(&[
        "render",
        "production",
        "--gateway",
        "prod-us-1",
        "-o",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let entries = run.json();
    assert_eq!(entries.as_array().unwrap().len(), 1);
    assert_eq!(entries[0]["gateway"], "prod-us-1");

    let run = repo.sluice(&["render", "prod"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("no environment `prod`"),
        "{}",
        run.stderr
    );
}

#[test]
fn yaml_is_the_default_output() {
    let run = TestRepo::example().sluice(&["render", "eval"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("environment: eval"), "{}", run.stdout);
    assert!(run.stdout.contains("x-jailbreak-replay"));
}

#[test]
fn an_invalid_revision_renders_nothing() {
    let repo = TestRepo::example();
    repo.write("environments/staging/environment.yaml", "slug: staging\n");
    repo.commit("missing name");
    let run = repo.sluice(&["render", "--rev", "HEAD", "-o", "json"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.is_empty());
    assert!(run.stderr.contains("schema.required"), "{}", run.stderr);
}
