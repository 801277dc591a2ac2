//! `sluice crds`: the CRDs in `crds/` and in the chart are the ones the
//! types generate, byte for byte.

use crate::support::sluice;
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

const REGENERATE: &str =
    "regenerate them: cargo run -- crds --out crds/ && cp crds/*.yaml charts/sluice/crds/";

fn yaml_files(dir: &Path) -> BTreeMap<String, String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}; {REGENERATE}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read_to_string(&path).unwrap())
        })
        .collect()
}

#[test]
fn crds_in_the_repository_and_the_chart_are_not_stale() {
    let dir = tempfile::tempdir().unwrap();
    let run = sluice(&["crds", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let generated = yaml_files(dir.path());
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        [
            "configrepositories.sluice.dev.yaml",
            "environments.sluice.dev.yaml",
            "gateways.sluice.dev.yaml"
        ]
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for committed in [root.join("crds"), root.join("charts/sluice/crds")] {
        let files = yaml_files(&committed);
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            generated.keys().collect::<Vec<_>>(),
            "{} holds other files than `sluice crds` writes; {REGENERATE}",
            committed.display()
        );
        for (name, text) in &generated {
            assert!(
                files[name] == *text,
                "{}/{name} is stale; {REGENERATE}",
                committed.display()
            );
        }
    }
}

#[test]
fn without_out_prints_one_stream() {
    let run = sluice(&["crds"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&run.stdout).unwrap();
    let kinds: Vec<_> = docs
        .iter()
        .map(|d| d["spec"]["names"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ConfigRepository", "Environment", "Gateway"]);
    assert!(docs.iter().all(|d| d["kind"] == "CustomResourceDefinition"));
}
