//! Rollback: a new commit, on a new branch, that puts one environment back
//! on a version it ran whole before — found in the ledger, rebuilt from
//! git, checked by rendering, never by rewriting history.
//!
//! ```text
//!  ledger deployments ─► target (digest, revision)
//!                                 │
//!  base branch head tree ─────────┼─► environments/<env>/ from the target revision
//!                                 └─► changed shared packs materialised into <env>
//!                                       │
//!              commit object (no ref) ◄─┘
//!                       │
//!   load + render: <env> == target digest, every other environment == head
//!                       │ only then
//!                       ▼
//!              refs/heads/rollback/<env>-<digest>   (push: never forced)
//! ```

mod message;
mod restore;
mod target;

pub use restore::{Materialised, overlay_for};
pub use target::{Selection, Selector, describe, select};

use crate::{
    config::{self, Digest, Limits, Repository, model::Enforcement, render::environment_digests},
    ledger::{Ledger, LedgerError},
    source::{
        GitSnapshot, SourceError,
        commit::{self as tree, BranchError},
        prefix,
    },
};
use git2::Oid;
use serde::Serialize;
use std::{collections::BTreeMap, path::Path};

/// Most deployments looked at: years of changes to one environment.
const DEPLOYMENTS_READ: usize = 10_000;

/// Why a rollback was not made. Each variant is one step that failed.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("cannot read the ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error(
        "the ledger has no deployment of `{environment}`: it never ran a version on every gateway (run `sluice sync` or `sluice run` first)"
    )]
    NoDeployments { environment: String },
    #[error(
        "`{environment}` has no older version to go back to{}: the ledger holds {found} other than the current {current}",
        if *steps > 1 { format!(" {steps} steps back") } else { String::new() }
    )]
    NoOlderVersion {
        environment: String,
        steps: usize,
        found: usize,
        current: String,
    },
    #[error(
        "`{environment}` never ran revision `{given}` whole; the ledger has: {}",
        known.join(", ")
    )]
    NeverRan {
        environment: String,
        given: String,
        known: Vec<String>,
    },
    #[error("revision `{given}` is ambiguous among the deployments: {}", candidates.join(", "))]
    AmbiguousRevision {
        given: String,
        candidates: Vec<String>,
    },
    #[error("`{environment}` already runs {digest} (revision {revision}): nothing to roll back")]
    AlreadyRuns {
        environment: String,
        digest: String,
        revision: String,
    },
    #[error(
        "`{base}` already renders {digest} for `{environment}`: nothing to commit; run `sluice sync --env {environment}` to apply it"
    )]
    AlreadyOnBase {
        environment: String,
        base: String,
        digest: String,
    },
    #[error("no branch `{branch}` in {path} (pass the branch Sluice follows with --base)")]
    NoBase { branch: String, path: String },
    #[error(
        "revision {revision} (which `{environment}` ran at {digest}) is not in {path}: fetch it first"
    )]
    RevisionMissing {
        environment: String,
        revision: String,
        digest: String,
        path: String,
    },
    #[error("cannot read revision {revision}: {source}")]
    Read {
        revision: String,
        #[source]
        source: SourceError,
    },
    #[error(
        "revision {revision} does not validate ({errors} errors, first: {first}); see `sluice validate --rev {revision}`"
    )]
    Invalid {
        revision: String,
        errors: usize,
        first: String,
    },
    #[error("no environment `{environment}` at revision {revision}")]
    UnknownEnvironment {
        environment: String,
        revision: String,
    },
    #[error(
        "revision {revision} renders {got} for `{environment}` today, not the {expected} the ledger recorded: it cannot be restored faithfully"
    )]
    TargetRenders {
        environment: String,
        revision: String,
        expected: String,
        got: String,
    },
    #[error(
        "base packs added since reach `{environment}` whatever it holds ({}): an environment cannot opt out of a base pack, so its old version cannot be rendered without changing the others",
        packs.join(", ")
    )]
    BasePackAdded {
        environment: String,
        packs: Vec<String>,
    },
    #[error("cannot write {what} as YAML: {message}")]
    Serialize { what: String, message: String },
    #[error(
        "the rolled-back tree does not validate ({errors} errors, first: {first}); no branch was made"
    )]
    ResultInvalid { errors: usize, first: String },
    #[error("the rolled-back tree does not render as it must, so no branch was made: {}", mismatches.join("; "))]
    RenderCheck { mismatches: Vec<String> },
    #[error(transparent)]
    Branch(#[from] BranchError),
}

impl RollbackError {
    /// The render check refused the rollback (exit 1), as against a usage
    /// or environment error (exit 2).
    pub fn is_check_failure(&self) -> bool {
        matches!(
            self,
            RollbackError::TargetRenders { .. }
                | RollbackError::BasePackAdded { .. }
                | RollbackError::ResultInvalid { .. }
                | RollbackError::RenderCheck { .. }
        )
    }
}

/// What to roll back and where to write it.
#[derive(Debug, Clone)]
pub struct Request {
    /// A local repository (or a directory inside one).
    pub repo: std::path::PathBuf,
    pub environment: String,
    pub selector: Selector,
    /// The new branch; default `rollback/<env>-<12 hex of the digest>`.
    pub branch: Option<String>,
    /// The branch Sluice follows; the commit goes on top of its head.
    pub base: String,
    /// Replaces the commit's subject line.
    pub message: Option<String>,
    pub limits: Limits,
}

/// A version as shown: digest, revision and `sha256:<12>@<8>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    pub digest: String,
    pub revision: String,
    pub version: String,
}

impl Point {
    fn of(digest: &str, revision: &str) -> Point {
        Point {
            digest: digest.to_owned(),
            revision: revision.to_owned(),
            version: format!(
                "{}@{}",
                crate::config::render::short_digest(digest),
                prefix(revision, 8)
            ),
        }
    }
}

/// A rollback branch made (or found already holding the same tree).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollback {
    pub environment: String,
    /// The version the environment runs now (the ledger's newest).
    pub from: Point,
    /// The version the branch renders for it.
    pub to: Point,
    /// The base branch and the commit the rollback sits on.
    pub base: String,
    pub parent: String,
    /// What the base head renders for the environment, when it differs
    /// from `from` (commits not yet applied, which the rollback also undoes).
    pub undeployed: Option<Point>,
    pub branch: String,
    pub commit: String,
    /// False when the branch already existed with exactly this tree.
    pub created: bool,
    /// The directory restored from the target revision.
    pub restored: String,
    pub materialised: Vec<Materialised>,
    pub pinned: Option<Enforcement>,
    pub subject: String,
}

/// Chooses the target in the ledger, builds the commit, checks its render
/// and only then creates the branch. Nothing else in the repository moves.
pub fn prepare(request: &Request, ledger: &dyn Ledger) -> Result<Rollback, RollbackError> {
    let path = request.repo.as_path();
    let shown = path.display().to_string();
    let repo = tree::open_repository(path)?;
    let root_prefix = tree::root_prefix(&repo, path);
    let env = request.environment.as_str();

    // 1. The target, from the ledger.
    let deployments = ledger.deployments(env, DEPLOYMENTS_READ)?;
    let selector = match &request.selector {
        Selector::Revision { given, .. } => Selector::Revision {
            given: given.clone(),
            commit: repo
                .revparse_single(given)
                .and_then(|o| o.peel_to_commit())
                .ok()
                .map(|c| c.id().to_string()),
        },
        steps => steps.clone(),
    };
    let Selection { current, target } = select(env, &deployments, &selector)?;

    // 2. The base head and the target revision, loaded and rendered.
    let head_commit = repo
        .revparse_single(&format!("refs/heads/{}", request.base))
        .or_else(|_| repo.revparse_single(&request.base))
        .and_then(|o| o.peel_to_commit())
        .map_err(|_| RollbackError::NoBase {
            branch: request.base.clone(),
            path: shown.clone(),
        })?;
    let head_id = head_commit.id().to_string();
    let head = load(path, &head_id, &request.limits)?;
    let head_digests = environment_digests(&head);
    let old = load(path, &target.revision, &request.limits).map_err(|e| match e {
        RollbackError::Read {
            source: SourceError::RevisionNotFound { .. },
            ..
        } => RollbackError::RevisionMissing {
            environment: env.to_owned(),
            revision: target.revision.clone(),
            digest: target.digest.to_string(),
            path: shown.clone(),
        },
        other => other,
    })?;
    let old_digest =
        environment_digests(&old)
            .remove(env)
            .ok_or_else(|| RollbackError::UnknownEnvironment {
                environment: env.to_owned(),
                revision: target.revision.clone(),
            })?;
    if old_digest != target.digest {
        return Err(RollbackError::TargetRenders {
            environment: env.to_owned(),
            revision: target.revision.clone(),
            expected: target.digest.to_string(),
            got: old_digest.to_string(),
        });
    }
    if head_digests.get(env) == Some(&target.digest) {
        return Err(RollbackError::AlreadyOnBase {
            environment: env.to_owned(),
            base: request.base.clone(),
            digest: target.digest.to_string(),
        });
    }

    // 3. The new tree: the head's, with the environment's old directory and
    // whatever shared content it needs materialised into it.
    let plan = restore::plan(env, &old, &head, &target.revision)?;
    let target_commit = repo
        .find_commit(
            Oid::from_str(&target.revision).map_err(tree::git("reading the target revision"))?,
        )
        .map_err(tree::git("reading the target revision"))?;
    let env_dir = format!("{root_prefix}environments/{env}");
    let old_tree = target_commit
        .tree()
        .map_err(tree::git("reading the target tree"))?;
    let (env_tree, _) =
        tree::entry(&old_tree, &env_dir).ok_or_else(|| RollbackError::UnknownEnvironment {
            environment: env.to_owned(),
            revision: target.revision.clone(),
        })?;
    let head_tree = head_commit
        .tree()
        .map_err(tree::git("reading the head tree"))?;
    let mut root = tree::put(
        &repo,
        Some(&head_tree),
        &env_dir,
        (env_tree, tree::MODE_TREE),
    )
    .map_err(tree::git("building the tree"))?;
    let mut writes: Vec<(String, String)> = plan
        .materialised
        .iter()
        .map(|m| (m.file.clone(), m.content.clone()))
        .collect();
    if let Some(enforcement) = plan.pinned {
        let environment = &old.environments[env];
        let file = environment.spec_file.clone();
        let text = blob_text(&repo, &old_tree, &format!("{root_prefix}{file}"))?;
        let pinned = restore::pin_enforcement(&file, &text, &environment.spec, enforcement)?;
        writes.push((file, pinned));
    }
    for (file, content) in &writes {
        let blob = repo
            .blob(content.as_bytes())
            .map_err(tree::git("writing a materialised file"))?;
        let current = repo
            .find_tree(root)
            .map_err(tree::git("building the tree"))?;
        root = tree::put(
            &repo,
            Some(&current),
            &format!("{root_prefix}{file}"),
            (blob, tree::MODE_BLOB),
        )
        .map_err(tree::git("building the tree"))?;
    }
    let new_tree = repo
        .find_tree(root)
        .map_err(tree::git("building the tree"))?;

    // 4. The commit object, not yet on any branch; loaded and rendered.
    let from = Point::of(current.digest.as_str(), &current.revision);
    let to = Point::of(target.digest.as_str(), &target.revision);
    let undeployed = head_digests
        .get(env)
        .filter(|d| **d != current.digest)
        .map(|d| Point::of(d.as_str(), &head_id));
    let message = message::commit_message(&message::Message {
        environment: env,
        from: &from,
        to: &to,
        base: &request.base,
        head: &head_id,
        plan: &plan,
        subject: request.message.as_deref(),
    });
    let commit = tree::write_detached(&repo, &message, &new_tree, &head_commit)?;
    let rolled = load(path, &commit.to_string(), &request.limits).map_err(|e| match e {
        RollbackError::Invalid { errors, first, .. } => {
            RollbackError::ResultInvalid { errors, first }
        }
        other => other,
    })?;
    check(
        env,
        target.digest.as_str(),
        &head_digests,
        &environment_digests(&rolled),
    )?;

    // 5. Only now the branch.
    let branch = request
        .branch
        .clone()
        .unwrap_or_else(|| message::default_branch(env, target.digest.as_str()));
    let log = format!("sluice rollback {env}: {}", to.version);
    let (commit, created) = tree::create_branch(&repo, &branch, commit, &log)?;
    Ok(Rollback {
        environment: env.to_owned(),
        from,
        to,
        base: request.base.clone(),
        parent: head_id,
        undeployed,
        branch,
        commit: commit.to_string(),
        created,
        restored: format!("environments/{env}/"),
        materialised: plan.materialised,
        pinned: plan.pinned,
        subject: message.lines().next().unwrap_or_default().to_owned(),
    })
}

/// Loads one commit; it must validate.
fn load(path: &Path, revision: &str, limits: &Limits) -> Result<Repository, RollbackError> {
    let read = |source| RollbackError::Read {
        revision: prefix(revision, 8).to_owned(),
        source,
    };
    let snapshot = GitSnapshot::open(path, revision).map_err(read)?;
    let loaded = config::load(&snapshot, limits).map_err(read)?;
    let errors: Vec<&config::Finding> = loaded.findings.iter().filter(|f| f.is_error()).collect();
    let first = errors.first().map_or_else(String::new, |f| {
        let line = f.line.map(|l| format!(":{l}")).unwrap_or_default();
        let message = if f.redact { "" } else { f.message.as_str() };
        format!("{}{line} {}: {message}", f.file, f.rule)
    });
    let count = errors.len();
    loaded.repository.ok_or_else(|| RollbackError::Invalid {
        revision: prefix(revision, 8).to_owned(),
        errors: count,
        first,
    })
}

fn blob_text(
    repo: &git2::Repository,
    tree: &git2::Tree<'_>,
    path: &str,
) -> Result<String, RollbackError> {
    let (id, _) = tree::entry(tree, path).ok_or_else(|| BranchError::Git {
        doing: "reading environment.yaml",
        message: format!("no {path} in the target revision"),
    })?;
    let blob = repo
        .find_blob(id)
        .map_err(tree::git("reading environment.yaml"))?;
    Ok(String::from_utf8_lossy(blob.content()).into_owned())
}

/// The rolled-back tree must render the target for the environment and
/// exactly what the head renders for every other one.
pub fn check(
    environment: &str,
    target: &str,
    head: &BTreeMap<String, Digest>,
    rolled: &BTreeMap<String, Digest>,
) -> Result<(), RollbackError> {
    let mut mismatches = Vec::new();
    let got = |slug: &str| {
        rolled
            .get(slug)
            .map_or("nothing", |d| d.as_str())
            .to_owned()
    };
    if rolled.get(environment).map(Digest::as_str) != Some(target) {
        mismatches.push(format!(
            "{environment}: expected {target}, got {}",
            got(environment)
        ));
    }
    let others = head
        .keys()
        .chain(rolled.keys())
        .filter(|slug| slug.as_str() != environment)
        .collect::<std::collections::BTreeSet<_>>();
    for slug in others {
        if head.get(slug) != rolled.get(slug) {
            let expected = head.get(slug).map_or("nothing", |d| d.as_str());
            mismatches.push(format!(
                "{slug}: expected {expected} (unchanged), got {}",
                got(slug)
            ));
        }
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(RollbackError::RenderCheck { mismatches })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    #[test]
    fn the_check_names_every_environment_that_moved() {
        let head: BTreeMap<String, Digest> = [
            ("production".into(), digest('b')),
            ("staging".into(), digest('c')),
        ]
        .into();
        let mut rolled = head.clone();
        rolled.insert("production".into(), digest('a'));
        assert!(check("production", digest('a').as_str(), &head, &rolled).is_ok());
        rolled.insert("staging".into(), digest('d'));
        let Err(error) = check("production", digest('e').as_str(), &head, &rolled) else {
            panic!("two environments are off");
        };
        let text = error.to_string();
        assert!(text.contains("production: expected sha256:eeee"), "{text}");
        assert!(text.contains("staging: expected sha256:cccc"), "{text}");
        assert!(error.is_check_failure());
    }
}
