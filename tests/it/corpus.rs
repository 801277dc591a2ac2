//! The corpus of broken repositories under tests/corpus: each case overlays a
//! few files on the bundled example and names the findings it must produce,
//! by rule and location. Every case runs twice: from the commit (`--rev
//! HEAD`, git objects) and from the work tree.

use crate::support::TestRepo;
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

struct Case {
    name: String,
    args: Vec<String>,
    deletes: Vec<String>,
    symlinks: Vec<(String, String)>,
    expected: BTreeSet<String>,
    secrets: Vec<String>,
    exit: i32,
    files: Option<PathBuf>,
}

fn cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut names: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.txt").exists())
        .collect();
    names.sort();
    names.into_iter().map(|dir| parse_case(&dir)).collect()
}

fn parse_case(dir: &Path) -> Case {
    let text = fs::read_to_string(dir.join("case.txt")).unwrap();
    let mut case = Case {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        args: Vec::new(),
        deletes: Vec::new(),
        symlinks: Vec::new(),
        expected: BTreeSet::new(),
        secrets: Vec::new(),
        exit: 1,
        files: Some(dir.join("files")).filter(|f| f.exists()),
    };
    for line in text.lines().map(str::trim) {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_owned();
        match key {
            "args" => case
                .args
                .extend(value.split_whitespace().map(str::to_owned)),
            "delete" => case.deletes.push(value),
            "symlink" => {
                let (link, target) = value.split_once(" -> ").expect("symlink: LINK -> TARGET");
                case.symlinks.push((link.to_owned(), target.to_owned()));
            }
            "expect" => {
                case.expected.insert(value);
            }
            "secret" => case.secrets.push(value),
            "exit" => case.exit = value.parse().expect("exit: CODE"),
            _ => {}
        }
    }
    case
}

/// `rule file:line:column` (or `rule file` when the finding has no position).
fn key(finding: &serde_json::Value) -> String {
    let rule = finding["rule"].as_str().unwrap();
    let file = finding["file"].as_str().unwrap();
    match (finding["line"].as_u64(), finding["column"].as_u64()) {
        (Some(line), Some(column)) => format!("{rule} {file}:{line}:{column}"),
        _ => format!("{rule} {file}"),
    }
}

fn build(case: &Case) -> TestRepo {
    let repo = TestRepo::example();
    for path in &case.deletes {
        repo.remove(path);
    }
    if let Some(files) = &case.files {
        crate::support::copy_tree(files, repo.path());
    }
    for (link, target) in &case.symlinks {
        repo.symlink(link, target);
    }
    repo.commit(&case.name);
    repo
}

#[test]
fn every_case_yields_its_rules_at_their_locations() {
    let cases = cases();
    assert!(cases.len() >= 25, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let repo = build(case);
        for rev in [Some("HEAD"), None] {
            let mut args: Vec<&str> = vec!["validate", "-o", "json"];
            args.extend(case.args.iter().map(String::as_str));
            if let Some(rev) = rev {
                args.extend(["--rev", rev]);
            }
            let run = repo.sluice(&args);
            let findings = run.json();
            let found: BTreeSet<String> = findings
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["severity"] == "error" || case.expected.contains(&key(f)))
                .map(key)
                .collect();
            let mode = rev.unwrap_or("worktree");
            let want_code = case.exit;
            if found != case.expected || run.code != want_code {
                failures.push(format!(
                    "{} ({mode}): exit {} (want {want_code})\n  want: {:?}\n  got:  {:?}",
                    case.name, run.code, case.expected, found
                ));
            }
            for secret in &case.secrets {
                let human = repo.sluice(&["validate", "--rev", "HEAD"]);
                for (name, text) in [
                    ("json", &run.stdout),
                    ("human", &human.stdout),
                    ("stderr", &human.stderr),
                ] {
                    if text.contains(secret.as_str()) {
                        failures.push(format!(
                            "{}: the secret appears in {name} output",
                            case.name
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
