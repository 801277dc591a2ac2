//! The README's parts table, the module table in `src/lib.rs` and the
//! modules themselves say the same thing (issue 17: "the parts table in
//! the README matches the modules").

use std::{collections::BTreeMap, fs, path::Path};

/// `module → job` of a markdown table whose first column names modules
/// (`[name]` in rustdoc, `` `name` `` in the README).
fn table(text: &str, prefix: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .filter_map(|line| {
            let (module, job) = line.split_once('|')?;
            let module = module.trim();
            // NB: a module is written `[name]` or `` `name` ``; the header
            // row's "module" is not.
            let named = module.starts_with(['[', '`']);
            let module = module.trim_matches(['[', ']', '`']);
            (named
                && module
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .then(|| {
                (
                    module.to_owned(),
                    job.trim().trim_end_matches('|').trim().to_owned(),
                )
            })
        })
        .collect()
}

#[test]
fn parts_table_matches_the_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let declared: Vec<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_owned())
        .collect();
    let documented = table(&lib, "//! | ");
    let readme = table(&fs::read_to_string(root.join("README.md")).unwrap(), "| ");
    let mut modules = declared.clone();
    modules.sort();
    assert_eq!(
        documented.keys().cloned().collect::<Vec<_>>(),
        modules,
        "src/lib.rs's table against its `pub mod`s"
    );
    for (module, job) in &documented {
        assert_eq!(readme.get(module), Some(job), "README's row for `{module}`");
        assert!(
            root.join("src").join(module).is_dir()
                || root.join(format!("src/{module}.rs")).is_file(),
            "{module} has no source"
        );
    }
}
