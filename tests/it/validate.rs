//! `sluice validate`: output for people and for CI, exit codes.

use crate::support::{TestRepo, sluice};

fn broken() -> TestRepo {
    let repo = TestRepo::example();
    repo.write(
        "environments/production/environment.yaml",
        "slug: production\nname: Production\nisProduction: perhaps\nenfrocement: enforce\n",
    );
    repo.write(
        "base/packs/models.yaml",
        "pack:\n  name: models\n  version: 2.1.0\npolicies:\n  chain: [model-allowlist, pii-detecter]\n",
    );
    repo.commit("break things");
    repo
}

#[test]
fn the_example_is_valid() {
    let run = sluice(&[
        "validate",
        "--repo",
        crate::support::example_dir().to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("valid at worktree: 4 environments, 5 gateways, 2 base packs")
    );
}

#[test]
fn a_pre_release_pack_in_production_is_a_warning_and_counts_read_as_english() {
    let repo = TestRepo::example();
    let baseline = repo
        .read("base/packs/baseline.yaml")
        .replace("version: 1.4.0", "version: 1.5.0-dev.1");
    repo.write("base/packs/baseline.yaml", baseline);
    repo.commit("a development build of baseline");
    let run = repo.sluice(&["validate", "-o", "json"]);
    assert_eq!(
        run.code, 0,
        "a warning does not fail: {}{}",
        run.stdout, run.stderr
    );
    let findings = run.json();
    let rules: Vec<&str> = findings
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["rule"].as_str())
        .collect();
    assert_eq!(rules, ["pack.prerelease-in-production"], "{findings}");
    assert_eq!(
        findings[0]["file"], "base/packs/baseline.yaml",
        "where the version is set"
    );
    assert!(
        findings[0]["message"]
            .as_str()
            .unwrap()
            .contains("pre-release version 1.5.0-dev.1 of pack `baseline`"),
        "{findings}"
    );
    let text = repo.sluice(&["validate"]);
    assert!(
        text.stdout.contains(
            ": 4 environments, 5 gateways, 2 base packs, 3 eval suites (0 errors, 1 warning)"
        ),
        "{}",
        text.stdout
    );
}

#[test]
fn human_output_shows_every_finding_with_its_source_line() {
    let run = broken().sluice(&["validate"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!(run.stdout);
}

/// Issue 15, defect 8: a file's schema errors do not hide its semantic
/// findings: the chain's unknown policy beside a mistyped setting, the
/// credentials in a URL beside an unknown key and a gateway whose driver
/// is misspelled (the lines after it still located where they are).
#[test]
fn schema_errors_do_not_hide_the_semantic_findings_of_their_file() {
    let repo = TestRepo::example();
    repo.write(
        "environments/staging/packs/support.yaml",
        "pack:\n  name: support\n  version: 1.0.0\npolicies:\n  chain: [audit-logger, pii-detectr]\npolicy:\n  audit-logger:\n    retention_days: thirty\n",
    );
    repo.write(
        "environments/staging/gateways.yaml",
        "gateways:\n  - name: staging-0\n    driver: htp\n  - name: staging-1\n    driver: file\n    path: gateways/staging/staging-1.json\n    colour: blue\n  - name: staging-2\n    driver: http\n    url: http://ops:hunter2@127.0.0.1:8443\n",
    );
    repo.commit("schema errors beside semantic ones");
    let run = repo.sluice(&["validate"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("hunter2"), "{}", run.stdout);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn json_output_is_a_stable_array() {
    let run = broken().sluice(&["validate", "--rev", "HEAD", "-o", "json"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn reads_the_commit_not_the_work_tree() {
    let repo = TestRepo::example();
    let good = repo.git(&["rev-parse", "HEAD"]).trim().to_owned();
    repo.write("environments/production/environment.yaml", "slug: [\n");
    // Uncommitted breakage: the work tree is invalid, the commit is not.
    assert_eq!(repo.sluice(&["validate"]).code, 1);
    assert_eq!(repo.sluice(&["validate", "--rev", "HEAD"]).code, 0);
    repo.commit("broken");
    assert_eq!(repo.sluice(&["validate", "--rev", "HEAD"]).code, 1);
    assert_eq!(repo.sluice(&["validate", "--rev", &good]).code, 0);
    assert_eq!(repo.sluice(&["validate", "--rev", "HEAD~1"]).code, 0);
}

#[test]
fn a_missing_revision_is_an_environment_error() {
    let run = TestRepo::example().sluice(&["validate", "--rev", "no-such-branch"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("revision 'no-such-branch' not found"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_missing_repository_is_an_environment_error() {
    let run = sluice(&["validate", "--rev", "HEAD", "--repo", "/nonexistent/sluice"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot open git repository"),
        "{}",
        run.stderr
    );
}

#[test]
fn usage_errors_exit_2() {
    let run = sluice(&["validate", "--no-such-flag"]);
    assert_eq!(run.code, 2);
    let run = sluice(&["validate", "-o", "xml"]);
    assert_eq!(run.code, 2);
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let repo = broken();
    let plain = repo.sluice(&["validate"]);
    assert!(!plain.stdout.contains('\u{1b}'));
    let forced = repo.sluice(&["validate", "--color", "always"]);
    assert!(forced.stdout.contains("\u{1b}[1;31merror"));
}

/// Issue 12: an environment's LiteLLM settings are validated like every
/// file: no literal credential, every provider key and endpoint under the
/// operator's allowances, and every setting of its policy that LiteLLM
/// cannot express a finding at the pack line that sets it.
#[test]
fn an_environments_litellm_settings_are_held_to_the_rules() {
    let repo = TestRepo::example();
    repo.write(
        "environments/staging/litellm.yaml",
        "model_list:\n  - model_name: gpt-4o-mini\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_key: os.environ/OPENAI_API_KEY\n      api_base: https://models.attacker.example\n  - model_name: gpt-4o\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: sk-live-0123456789\ngeneral_settings:\n  master_key: os.environ/STAGING_LITELLM_MASTER_KEY\n",
    );
    repo.commit("litellm settings for staging");
    let run = crate::support::sluice_with(
        &[
            "validate",
            "--rev",
            "HEAD",
            "-o",
            "json",
            "--repo",
            repo.path().to_str().unwrap(),
        ],
        &[
            ("SLUICE_ALLOW_ENV", "production=PROD_*,staging=STAGING_*"),
            (
                "SLUICE_ALLOW_URL",
                "staging=https://models.internal,eval=http://127.0.0.1:*",
            ),
        ],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        !run.stdout.contains("sk-live"),
        "a literal key is never shown"
    );
    let findings = run.json();
    let at = |rule: &str| located(&findings, rule);
    let file = "environments/staging/litellm.yaml";
    assert_eq!(at("allow.env-not-allowed"), [format!("{file}:5")]);
    assert_eq!(at("allow.url-not-allowed"), [format!("{file}:6")]);
    assert_eq!(at("litellm.literal-secret"), [format!("{file}:10")]);
    // The baseline's audit retention and immutability: LiteLLM keeps no
    // audit log of its own to expire or protect.
    let unsupported = at("litellm.unsupported");
    assert!(
        unsupported.contains(&"base/packs/baseline.yaml:14".to_owned())
            && unsupported.contains(&"base/packs/baseline.yaml:15".to_owned()),
        "{unsupported:?}"
    );

    // The settings are part of staging's version, and of no other's.
    let digests = |repo: &TestRepo| -> Vec<(String, String)> {
        let run = repo.sluice(&["render", "-o", "json", "--rev", "HEAD"]);
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        run.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["environment"].as_str().unwrap().to_owned(),
                    r["digest"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    // A staging LiteLLM can run: its audit settings are LiteLLM's to keep.
    repo.write(
        "environments/staging/packs/baseline.yaml",
        "policy:\n  audit-logger: { retention_days: null, immutable: null }\n",
    );
    repo.write(
        "environments/staging/litellm.yaml",
        "model_list:\n  - model_name: gpt-4o-mini\n    litellm_params: { model: openai/gpt-4o-mini, api_key: os.environ/STAGING_OPENAI_KEY }\n",
    );
    repo.commit("a staging LiteLLM that can run");
    let with = digests(&repo);
    repo.remove("environments/staging/litellm.yaml");
    repo.commit("no litellm settings");
    let without = digests(&repo);
    for ((env, a), (_, b)) in with.iter().zip(&without) {
        assert_eq!(a != b, env == "staging", "{env}");
    }
}

/// Review of issue 12: litellm.yaml passes `litellm_settings` through to
/// LiteLLM, which imports the Python a `callbacks` entry names: a
/// repository author must not choose code the gateway runs.
#[test]
fn litellm_settings_may_not_name_code_for_litellm_to_run() {
    let repo = TestRepo::example();
    repo.write(
        "environments/staging/litellm.yaml",
        "model_list:\n  - model_name: gpt-4o-mini\n    litellm_params: { model: openai/gpt-4o-mini }\nlitellm_settings:\n  callbacks: [my_module.instance]\ngeneral_settings:\n  custom_auth: my_module.auth\n",
    );
    repo.commit("code hooks");
    let run = repo.sluice(&["validate", "--rev", "HEAD", "-o", "json"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let lines: Vec<u64> = run
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "litellm.code-not-allowed")
        .map(|f| f["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [5, 7], "callbacks and custom_auth");
}

/// Issue 12: a `file` or `configmap` gateway writing LiteLLM's config needs
/// the environment's litellm.yaml (its model_list), and `rolloutTimeout`
/// means something only with the `deployment` it bounds.
#[test]
fn litellm_gateways_need_their_environments_settings() {
    let repo = TestRepo::example();
    repo.write(
        "environments/staging/gateways.yaml",
        "gateways:\n  - name: litellm-file\n    driver: file\n    path: litellm/config.yaml\n    format: litellm\n  - name: litellm-k8s\n    driver: configmap\n    namespace: gateways\n    configMap: litellm\n    format: litellm\n    deployment: litellm\n    rolloutTimeout: 2m\n  - name: policy-k8s\n    driver: configmap\n    namespace: gateways\n    configMap: policy\n    rolloutTimeout: 2m\n",
    );
    repo.commit("staging on LiteLLM without its settings");
    let run = repo.sluice(&["validate", "--rev", "HEAD", "-o", "json"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let findings = run.json();
    let at = |rule: &str| located(&findings, rule);
    let file = "environments/staging/gateways.yaml";
    assert_eq!(
        at("litellm.no-settings"),
        [format!("{file}:5"), format!("{file}:10")]
    );
    assert_eq!(
        at("gateway.rollout-without-deployment"),
        [format!("{file}:17")]
    );
}

/// Where `findings` (validate's JSON) report `rule`, as `file:line`.
fn located(findings: &serde_json::Value, rule: &str) -> Vec<String> {
    findings
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == rule)
        .map(|f| format!("{}:{}", f["file"].as_str().unwrap(), f["line"]))
        .collect()
}

#[test]
fn verify_and_eval_gates_must_name_suites_that_exist() {
    let repo = TestRepo::example();
    let spec = repo.read("environments/production/environment.yaml").replace(
        "  from: staging\n",
        "  from: staging\n  evals: [injection, pii-leaks]\nverify: { suites: [modles], onFailure: rollback }\n",
    );
    repo.write("environments/production/environment.yaml", spec);
    repo.commit("gates on suites, two misspelt");
    let run = repo.sluice(&["validate", "-o", "json"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let findings = run.json();
    let unknown: Vec<(&str, &str)> = findings
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "env.unknown-suite")
        .map(|f| {
            (
                f["pointer"].as_str().unwrap(),
                f["message"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        unknown,
        [
            (
                "/promotion/evals/1",
                "no eval suite `pii-leaks` (evals/pii-leaks.eval.yaml)"
            ),
            (
                "/verify/suites/0",
                "no eval suite `modles` (evals/modles.eval.yaml)"
            ),
        ],
        "{findings}"
    );
    let text = repo.sluice(&["validate"]);
    assert!(
        text.stdout.contains("did you mean `models`?"),
        "{}",
        text.stdout
    );
}
