//! `sluice diff`: the work tree (or a revision) against what real
//! reference gateways run, before anything is committed.

use crate::support::{GatewayProcess, Run, TestRepo, sluice_with};
use tempfile::TempDir;

const TOKEN_ENV: &str = "PROD_GATEWAY_TOKEN";
const TOKEN: &str = "prod-gw-token-3c9e";

/// The example with production on two reference gateways, synced.
struct Production {
    repo: TestRepo,
    data: TempDir,
    gateways: Vec<GatewayProcess>,
    _dirs: Vec<TempDir>,
}

impl Production {
    fn synced() -> Production {
        let repo = TestRepo::example();
        let dirs: Vec<TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        let gateways: Vec<GatewayProcess> = dirs
            .iter()
            .map(|d| {
                GatewayProcess::start(
                    &[
                        "--data",
                        d.path().to_str().unwrap(),
                        "--token-env",
                        TOKEN_ENV,
                    ],
                    &[(TOKEN_ENV, TOKEN)],
                )
            })
            .collect();
        let mut yaml = String::from("gateways:\n");
        for (i, g) in gateways.iter().enumerate() {
            yaml.push_str(&format!(
                "  - name: gw-{i}\n    driver: http\n    url: {}\n    tokenEnv: {TOKEN_ENV}\n    timeout: 2s\n",
                g.url
            ));
        }
        repo.write("environments/production/gateways.yaml", yaml);
        repo.commit("production on reference gateways");
        let production = Production {
            repo,
            data: tempfile::tempdir().unwrap(),
            gateways,
            _dirs: dirs,
        };
        let sync = production.sluice(&["sync", "production"]);
        assert_eq!(sync.code, 0, "{}\n{}", sync.stdout, sync.stderr);
        production
    }

    fn sluice(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend([
            "--repo",
            self.repo.path().to_str().unwrap(),
            "--data-dir",
            self.data.path().to_str().unwrap(),
        ]);
        sluice_with(&all, &[(TOKEN_ENV, TOKEN)])
    }

    /// Raises production's rate limit in the work tree, uncommitted.
    fn edit(&self) {
        let pack = "base/packs/models.yaml";
        let text = self.repo.read(pack);
        assert!(text.contains("600"), "{text}");
        self.repo.write(pack, text.replace("600", "750"));
    }
}

/// `text` with every digest (`sha256:` and its hex) as `sha256:[digest]`:
/// they change with any edit of the example, which this output is not about.
fn stable(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("sha256:") {
        out.push_str(&rest[..at]);
        out.push_str("sha256:[digest]");
        let hex = &rest[at + 7..];
        rest = hex.trim_start_matches(|c: char| c.is_ascii_hexdigit());
    }
    out.push_str(rest);
    out
}

#[test]
fn an_uncommitted_edit_shows_as_a_diff_per_gateway_and_exits_1() {
    let production = Production::synced();
    let clean = production.sluice(&["diff", "production"]);
    assert_eq!(clean.code, 0, "{}\n{}", clean.stdout, clean.stderr);
    assert_eq!(
        clean.stdout,
        "no differences: 2 gateways run what the work tree renders\n"
    );

    production.edit();
    let edited = production.sluice(&["diff", "production"]);
    assert_eq!(edited.code, 1, "{}\n{}", edited.stdout, edited.stderr);
    for gateway in ["gw-0", "gw-1"] {
        assert!(
            edited.stdout.contains(&format!(
                "--- production/{gateway} (live)\n+++ production/{gateway} (work tree)\n"
            )),
            "{}",
            edited.stdout
        );
    }
    assert!(
        edited.stdout.contains(
            "-          \"requests_per_minute\": 600\n+          \"requests_per_minute\": 750\n"
        ),
        "{}",
        edited.stdout
    );
    insta::assert_snapshot!("diff_text", stable(&edited.stdout));

    // What is committed is what runs.
    let committed = production.sluice(&["diff", "--env", "production", "--rev", "HEAD"]);
    assert_eq!(committed.code, 0, "{}", committed.stderr);
    assert_eq!(
        committed.stdout,
        "no differences: 2 gateways run what revision HEAD renders\n"
    );

    let json = production.sluice(&["diff", "production", "-o", "json"]);
    assert_eq!(json.code, 1, "{}", json.stderr);
    let found = json.json();
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), 2);
    for (i, entry) in found.iter().enumerate() {
        assert_eq!(entry["environment"], "production");
        assert_eq!(entry["gateway"], format!("gw-{i}"));
        assert_eq!(entry["result"], "differs");
        assert_ne!(entry["desiredDigest"], entry["liveDigest"]);
        let change = &entry["changes"][0];
        assert_eq!(
            change["pointer"],
            "/packs/models/settings/rate-limit/requests_per_minute"
        );
        assert_eq!(change["from"], 600, "live → desired: {entry}");
        assert_eq!(change["to"], 750);
    }
    insta::assert_snapshot!("diff_json", stable(&json.stdout));
}

#[test]
fn an_unreadable_gateway_an_invalid_work_tree_and_an_unknown_environment_exit_2() {
    let mut production = Production::synced();
    production.gateways[1].kill_hard();
    let unreachable = production.sluice(&["diff", "production"]);
    assert_eq!(unreachable.code, 2, "{}", unreachable.stdout);
    assert!(
        unreachable
            .stdout
            .contains("production/gw-1: cannot be read: gateway is unreachable"),
        "{}",
        unreachable.stdout
    );
    assert!(
        unreachable
            .stderr
            .contains("error: 1 gateway could not be read: production/gw-1"),
        "{}",
        unreachable.stderr
    );

    let spec = "environments/production/environment.yaml";
    let text = production.repo.read(spec);
    production.repo.write(
        spec,
        text.replace("enforcement: enforce", "enforcement: lots"),
    );
    let invalid = production.sluice(&["diff", "production"]);
    assert_eq!(invalid.code, 2, "{}", invalid.stdout);
    assert!(invalid.stdout.is_empty(), "{}", invalid.stdout);
    assert!(
        invalid.stderr.contains("error[") && invalid.stderr.contains("enforcement: lots"),
        "the findings as validate shows them: {}",
        invalid.stderr
    );
    assert!(
        invalid
            .stderr
            .contains("error: the work tree is invalid: nothing to compare"),
        "{}",
        invalid.stderr
    );

    let unknown = production.sluice(&["diff", "prodution", "--rev", "HEAD"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("did you mean `production`?"),
        "{}",
        unknown.stderr
    );
}
