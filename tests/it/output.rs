//! What every command prints, for people and for machines, as snapshots
//! (uv's `uv_snapshot!`): one walk through the example repository, with
//! file gateways and a real ledger, that syncs, drifts, heals, pins,
//! promotes and rolls back. A change to any command's output shows here as
//! a diff to review; the JSON snapshots are the schema CI users rely on
//! (camelCase keys, RFC 3339 times, nested documents).

use crate::{
    assert_stable,
    reconcile::with_state,
    support::{Run, TestRepo, stable_output},
};
use std::{fs, path::Path};

/// The exit code, then standard output.
fn shown(run: &Run) -> String {
    format!("exit {}\n{}", run.code, run.stdout)
}

/// Every object key of a JSON document is camelCase and every time is
/// RFC 3339 text: the one convention (issue 15, defect 10).
fn assert_convention(what: &str, value: &serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                assert!(
                    !key.contains('_') && !key.starts_with(char::is_uppercase),
                    "{what}: key {key:?} is not camelCase"
                );
                if key.ends_with("At") || key == "at" {
                    assert!(
                        inner.is_null()
                            || inner
                                .as_str()
                                .is_some_and(|t| sluice::clock::parse_rfc3339(t).is_some()),
                        "{what}: {key} = {inner} is not an RFC 3339 time"
                    );
                }
                // NB: rendered documents and the values a change moves
                // between carry the policy's own keys (`retention_days`,
                // LiteLLM's `model_list`): not ours.
                if !["config", "from", "to"].contains(&key.as_str()) {
                    assert_convention(what, inner);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| assert_convention(what, i)),
        serde_json::Value::String(text) => assert!(
            !(text.starts_with("[{") || text.starts_with("{\"")),
            "{what}: JSON inside a string: {text}"
        ),
        _ => {}
    }
}

/// `sluice ARGS` with this walk's ledger, shown as text and as JSON (the
/// JSON checked against the convention, and as YAML the same document).
fn both(repo: &TestRepo, data: &Path, name: &str, args: &[&str]) {
    let text = with_state(repo, data, args);
    assert_stable!(repo, &format!("{name}_text"), &shown(&text));
    let json_args: Vec<&str> = args.iter().copied().chain(["-o", "json"]).collect();
    let json = with_state(repo, data, &json_args);
    assert_eq!(json.code, text.code, "{name}: the same exit code as text");
    let value = json.json();
    assert_convention(name, &value);
    assert_stable!(repo, &format!("{name}_json"), &shown(&json));
}

#[test]
fn every_command_prints_its_text_and_its_json() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let data = data.path();
    {
        let render = repo.sluice(&["render", "-o", "table"]);
        assert_stable!(&repo, "render_table", &shown(&render));
        let render = repo.sluice(&["render", "-o", "wide"]);
        assert_stable!(&repo, "render_wide", &shown(&render));
        let render = repo.sluice(&["render", "development", "-o", "json"]);
        assert_convention("render", &render.json());
        assert_stable!(&repo, "render_json", &shown(&render));

        both(&repo, data, "sync", &["sync"]);
        both(&repo, data, "status", &["status"]);
        let wide = with_state(&repo, data, &["status", "-o", "wide"]);
        assert_stable!(&repo, "status_wide", &shown(&wide));
        both(&repo, data, "history", &["history", "production"]);
        let wide = with_state(&repo, data, &["history", "production", "-o", "wide"]);
        let mut settings = stable_output(&repo);
        // NB: how long an apply took varies, and with it the column's width.
        settings.add_filter(r"\b\d+(ms|s)\b", "[took]");
        settings.add_filter(r"TOOK +ERROR", "TOOK  ERROR");
        settings.bind(|| insta::assert_snapshot!("history_wide", shown(&wide)));

        // A hand edit on development's gateway: drift, then a sync heals it.
        let file = data.join("gateways/development/dev-1.json");
        let live = fs::read_to_string(&file).unwrap();
        let edited = live.replacen("\"redact\"", "\"allow\"", 1);
        assert_ne!(live, edited, "{live}");
        fs::write(&file, edited).unwrap();
        both(&repo, data, "drift", &["drift", "--env", "development"]);
        both(&repo, data, "sync_heals", &["sync", "--env", "development"]);
        both(
            &repo,
            data,
            "history_drift",
            &["history", "development", "--drift"],
        );
        both(
            &repo,
            data,
            "history_evals",
            &["history", "development", "--evals"],
        );

        // A second version of production, so there is one to go back to.
        let overlay = repo.read("environments/production/packs/baseline.yaml");
        repo.write(
            "environments/production/packs/baseline.yaml",
            overlay.replace("retention_days: 365", "retention_days: 400"),
        );
        repo.commit("production keeps 400 days");
        let synced = with_state(&repo, data, &["sync"]);
        assert_eq!(synced.code, 0, "{}", synced.stderr);

        let pin = with_state(&repo, data, &["pin", "production", "--reason", "freeze"]);
        assert_stable!(&repo, "pin_text", &shown(&pin));
        both(
            &repo,
            data,
            "status_pinned",
            &["status", "--env", "production"],
        );
        let unpin = with_state(&repo, data, &["unpin", "production", "-o", "json"]);
        assert_convention("unpin", &unpin.json());
        assert_stable!(&repo, "unpin_json", &shown(&unpin));
        let pin = with_state(&repo, data, &["pin", "production", "-o", "json"]);
        assert_convention("pin", &pin.json());
        assert_stable!(&repo, "pin_json", &shown(&pin));
        let unpin = with_state(&repo, data, &["unpin", "production"]);
        assert_stable!(&repo, "unpin_text", &shown(&unpin));

        let rollback = with_state(&repo, data, &["rollback", "production", "-o", "json"]);
        assert_convention("rollback", &rollback.json());
        assert_stable!(&repo, "rollback_json", &shown(&rollback));
        let rollback = with_state(&repo, data, &["rollback", "production"]);
        assert_stable!(&repo, "rollback_text", &shown(&rollback));

        repo.write(
            "environments/staging/packs/support.yaml",
            "pack: { name: support, version: 2.4.0 }\npolicies:\n  chain: [audit-logger]\npolicy:\n  audit-logger: { retention_days: 90 }\n",
        );
        repo.commit("staging: support 2.4.0");
        let promote = repo.sluice(&["promote", "staging", "production", "-o", "json"]);
        assert_convention("promote", &promote.json());
        assert_stable!(&repo, "promote_json", &shown(&promote));
        let promote = repo.sluice(&["promote", "staging", "production"]);
        assert_stable!(&repo, "promote_text", &shown(&promote));

        let yaml = with_state(&repo, data, &["status", "--env", "staging", "-o", "yaml"]);
        let json = with_state(&repo, data, &["status", "--env", "staging", "-o", "json"]);
        let from_yaml: serde_json::Value = serde_saphyr::from_str(&yaml.stdout).unwrap();
        assert_eq!(from_yaml, json.json(), "-o yaml is the JSON document");
    }
}

/// `sluice version`: what it prints, with the build's own facts filtered.
#[test]
fn version_prints_the_build() {
    let repo = TestRepo::empty();
    let mut settings = stable_output(&repo);
    settings.add_filter(r"\b[0-9a-f]{7,40}\b", "[commit]");
    settings.add_filter(r"\d{4}-\d\d-\d\d", "[date]");
    settings.add_filter(env!("CARGO_PKG_VERSION"), "[version]");
    settings.bind(|| {
        let text = crate::support::sluice(&["version"]);
        assert_stable!(&repo, "version_text", &shown(&text));
        let json = crate::support::sluice(&["version", "-o", "json"]);
        assert_convention("version", &json.json());
        assert_stable!(&repo, "version_json", &shown(&json));
    });
}

/// `sluice schema --out` and `sluice crds --out`: the files they write,
/// one line each (their content is checked by the schema and CRD tests).
#[test]
fn generators_list_what_they_wrote() {
    let out = tempfile::tempdir().unwrap();
    stable_output(out.path()).bind(|| {
        let dir = out.path().join("schemas");
        let schema = crate::support::sluice(&["schema", "--out", dir.to_str().unwrap()]);
        insta::assert_snapshot!("schema_out_text", shown(&schema));
        let dir = out.path().join("crds");
        let crds = crate::support::sluice(&["crds", "--out", dir.to_str().unwrap()]);
        insta::assert_snapshot!("crds_out_text", shown(&crds));
    });
}
