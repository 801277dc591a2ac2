//! `sluice init`: a working config repository (the bundled example) with its
//! first commit.

use super::Outcome;
use anyhow::{Context, bail};
use git2::{IndexAddOption, Repository, Signature};
use std::{fs, path::PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to create the repository (made if missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

macro_rules! example {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../examples/config-repo/", $path)))),*]
    };
}

/// The scaffold is the bundled example, so the two cannot drift apart.
const SCAFFOLD: &[(&str, &str)] = example![
    "sluice.yaml",
    "base/packs/baseline.yaml",
    "base/packs/models.yaml",
    "environments/development/environment.yaml",
    "environments/development/gateways.yaml",
    "environments/development/packs/models.yaml",
    "environments/staging/environment.yaml",
    "environments/staging/gateways.yaml",
    "environments/production/environment.yaml",
    "environments/production/gateways.yaml",
    "environments/production/packs/baseline.yaml",
    "environments/eval/environment.yaml",
    "environments/eval/gateways.yaml",
    "environments/eval/packs/red-team.yaml",
    "evals/pii.eval.yaml",
    "evals/injection.eval.yaml",
    "evals/models.eval.yaml",
    "fixtures/ticket-with-card.fixture.yaml",
    "fixtures/instruction-override.fixture.yaml",
];

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let dir = &args.dir;
    if dir.join("sluice.yaml").exists() {
        bail!(
            "{} already holds a sluice.yaml; not overwriting it",
            dir.display()
        );
    }
    for (path, content) in SCAFFOLD.iter().chain([&(".gitignore", GITIGNORE)]) {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&target, content).with_context(|| format!("writing {}", target.display()))?;
    }
    let (commit, branch) = first_commit(dir)?;
    println!(
        "created a Sluice config repository in {} ({} files, commit {} on {branch})",
        dir.display(),
        SCAFFOLD.len() + 1,
        &commit[..8]
    );
    if branch != DEFAULT_BRANCH {
        println!(
            "note: `run`, `sync`, `promote` and `rollback` follow `{DEFAULT_BRANCH}` unless given --branch {branch}"
        );
    }
    // NB: the scaffold's production alert names PROD_ALERT_WEBHOOK and its
    // eval gateway answers on loopback, and the operator's allowances are
    // deny-by-default: say how to allow both, or the first validate fails.
    println!(
        "next: export SLUICE_ALLOW_ENV='production=PROD_*' (as the operator: production's alert may use its PROD_* variable)"
    );
    println!(
        "      export SLUICE_ALLOW_URL='eval=http://127.0.0.1:*' (the eval gateway's chat endpoint, for its suites)"
    );
    println!("      sluice validate --repo {}", dir.display());
    Ok(Outcome::Clean)
}

/// The branch the other commands follow by default (`--branch`).
const DEFAULT_BRANCH: &str = "main";

/// Keeps Sluice's data directory (the default, `.sluice` beside the
/// repository's files) out of commits.
const GITIGNORE: &str =
    "# Sluice's data directory (ledger, fetched repositories): never committed.\n/.sluice/\n";

/// Commits the scaffold, in a new repository (on `main`, whatever git's
/// `init.defaultBranch` says, since that is what the other commands follow)
/// or an existing one (on its current branch). Returns the commit and branch.
fn first_commit(dir: &std::path::Path) -> anyhow::Result<(String, String)> {
    let repo = match Repository::open(dir) {
        Ok(repo) => repo,
        Err(_) => Repository::init_opts(
            dir,
            git2::RepositoryInitOptions::new().initial_head(DEFAULT_BRANCH),
        )
        .with_context(|| format!("git init {}", dir.display()))?,
    };
    let mut index = repo.index()?;
    let paths: Vec<&str> = SCAFFOLD
        .iter()
        .map(|(p, _)| *p)
        .chain([".gitignore"])
        .collect();
    index.add_all(paths, IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let signature = repo
        .signature()
        .or_else(|_| Signature::now("Sluice", "sluice@localhost"))?;
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    let id = repo.commit(
        Some("HEAD"),
        &signature,
        &signature,
        "Sluice config repository scaffold",
        &tree,
        &parents,
    )?;
    let branch = repo
        .head()
        .ok()
        .and_then(|h| h.shorthand().ok().map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_BRANCH.to_owned());
    Ok((id.to_string(), branch))
}
