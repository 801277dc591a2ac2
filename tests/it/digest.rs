//! Digest stability: formatting never changes a version; values always do.

use crate::support::TestRepo;
use std::collections::BTreeMap;

fn digests(repo: &TestRepo) -> BTreeMap<String, String> {
    let run = repo.sluice(&["render", "--rev", "HEAD", "-o", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                format!(
                    "{}/{}",
                    e["environment"].as_str().unwrap(),
                    e["gateway"].as_str().unwrap()
                ),
                e["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn reformatting_reordering_comments_and_quoting_keep_the_digest() {
    let repo = TestRepo::example();
    let before = digests(&repo);
    // The same pack: keys reordered, flow style, quotes, comments, blank lines.
    repo.write(
        "base/packs/models.yaml",
        r#"# reformatted
policy:
  rate-limit: {"requests_per_minute": 600}   # same value
  model-allowlist:
    models:
      - 'gpt-4o'
      - "gpt-4o-mini"
      - claude-sonnet-4

policies: { chain: ["model-allowlist", 'rate-limit'] }
pack: {description: "Approved models and a request budget", version: "2.1.0", name: models}
"#,
    );
    repo.commit("reformat");
    assert_eq!(digests(&repo), before);
}

#[test]
fn changing_any_value_changes_the_digest_of_exactly_the_affected_environments() {
    let repo = TestRepo::example();
    let before = digests(&repo);
    let text = repo.read("environments/production/packs/baseline.yaml");
    repo.write(
        "environments/production/packs/baseline.yaml",
        text.replace("retention_days: 365", "retention_days: 366"),
    );
    repo.commit("retention");
    let after = digests(&repo);
    for (gateway, digest) in &before {
        if gateway.starts_with("production/") {
            assert_ne!(&after[gateway], digest, "{gateway}");
        } else {
            assert_eq!(&after[gateway], digest, "{gateway}");
        }
    }
}

#[test]
fn a_base_change_reaches_every_environment_that_inherits_it() {
    let repo = TestRepo::example();
    let before = digests(&repo);
    let text = repo.read("base/packs/models.yaml");
    repo.write("base/packs/models.yaml", text.replace("600", "601"));
    repo.commit("rate");
    let after = digests(&repo);
    // Every environment inherits the models pack; development's overlay
    // leaves the rate limit alone, so it changes there too.
    for (gateway, digest) in &before {
        assert_ne!(&after[gateway], digest, "{gateway}");
    }
}

#[test]
fn same_policy_in_two_environments_is_the_same_version() {
    let repo = TestRepo::example();
    // staging and a copy of it run the same policy: same digest, different environments.
    let env = repo.read("environments/staging/environment.yaml");
    repo.write(
        "environments/staging-2/environment.yaml",
        env.replace("slug: staging", "slug: staging-2"),
    );
    repo.write(
        "environments/staging-2/gateways.yaml",
        "gateways:\n  - name: s2\n    driver: file\n    path: s2.json\n",
    );
    repo.commit("second staging");
    let all = digests(&repo);
    assert_eq!(all["staging/staging-1"], all["staging-2/s2"]);
}
