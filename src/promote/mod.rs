//! Promotion: a new commit, on a new branch, that brings one environment's
//! packs into the next environment of the promotion order — a copy of the
//! pack files, checked by rendering, handed over for review.
//!
//! ```text
//!  base branch head ─► load + validate: FROM clean, TO's promotion.from == FROM
//!        │
//!        ├─► environments/FROM/packs/<pack>.yaml ──(byte for byte)──► environments/TO/packs/
//!        │      (equal files: unchanged; TO's packs FROM lacks: kept)
//!        ▼
//!  commit object (no ref), trailers: Sluice-Promotion, Sluice-Pack…
//!        │
//!  load + render: valid; TO's promoted packs == FROM's pack digests;
//!                 every other environment as on the head
//!        │ only then
//!        ▼
//!  refs/heads/promote/<from>-to-<to>-<digest>   (push: never forced)
//! ```
//!
//! Environment-specific files (`environment.yaml`, `gateways.yaml`) never
//! move, and base packs are shared, so they need no promotion.

mod files;
mod message;
pub mod trailer;

use crate::{
    config::{
        self, Digest, Limits, Loaded, Repository,
        render::{environment_digests, pack_digests},
    },
    source::{
        GitSnapshot, SourceError,
        commit::{self, BranchError, MODE_BLOB, git},
        prefix,
    },
};
use files::{Changes, by_name};
use message::{commit_message, default_branch};
use serde::Serialize;
use trailer::{PromotedPack, Promotion};

/// Findings listed in a refusal; `sluice validate` shows them all.
const FINDINGS_SHOWN: usize = 5;
/// Where environment directories live in a config repository.
const ENVIRONMENTS: &str = "environments";

/// Why a promotion was not made. Each variant is one step that failed.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error(transparent)]
    Branch(#[from] BranchError),
    #[error("no branch `{branch}` in {path} (pass the branch Sluice follows with --base)")]
    NoBase { branch: String, path: String },
    #[error("cannot read revision {revision}: {source}")]
    Read {
        revision: String,
        #[source]
        source: SourceError,
    },
    #[error("cannot read {file} at {revision}: {message}")]
    ReadPack {
        file: String,
        revision: String,
        message: String,
    },
    #[error(
        "`{environment}` is both FROM and TO: a promotion goes from one environment to another"
    )]
    SameEnvironment { environment: String },
    #[error("no environment `{environment}` at {revision}; {}", crate::config::environment_hint(environment, known.iter().map(String::as_str)))]
    UnknownEnvironment {
        environment: String,
        revision: String,
        known: Vec<String>,
    },
    #[error(
        "`{to}` takes promotions from `{}` (promotion.from: {} in {file}), not from `{from}`; pass --force --reason TEXT to promote anyway",
        expected,
        expected
    )]
    NotPromotionSource {
        from: String,
        to: String,
        expected: String,
        file: String,
    },
    #[error(
        "`{to}` has no promotion.from in {file}: it takes no promotions; pass --force --reason TEXT to promote from `{from}` anyway"
    )]
    NoPromotionSource {
        from: String,
        to: String,
        file: String,
    },
    #[error("{}", unknown_packs(from, names, own, inherited))]
    UnknownPacks {
        from: String,
        names: Vec<String>,
        own: Vec<String>,
        inherited: Vec<String>,
    },
    #[error(
        "`{environment}` has {errors} error finding{} at {revision}, so it is not promoted: {}; see `sluice validate --rev {revision}`",
        if *errors == 1 { "" } else { "s" }, listed.join("; ")
    )]
    SourceFindings {
        environment: String,
        revision: String,
        errors: usize,
        listed: Vec<String>,
    },
    #[error(
        "{revision} does not validate ({errors} error finding{}: {}), so nothing is promoted; see `sluice validate --rev {revision}`",
        if *errors == 1 { "" } else { "s" }, listed.join("; ")
    )]
    BaseInvalid {
        revision: String,
        errors: usize,
        listed: Vec<String>,
    },
    #[error(
        "the promoted tree does not validate ({errors} error finding{}: {}); no branch was made",
        if *errors == 1 { "" } else { "s" }, listed.join("; ")
    )]
    ResultInvalid { errors: usize, listed: Vec<String> },
    #[error("the promoted tree does not render as it must, so no branch was made: {}", mismatches.join("; "))]
    RenderCheck { mismatches: Vec<String> },
}

impl PromoteError {
    /// Validation or the render check refused the promotion (exit 1), as
    /// against a usage or environment error (exit 2).
    pub fn is_check_failure(&self) -> bool {
        matches!(
            self,
            PromoteError::SourceFindings { .. }
                | PromoteError::BaseInvalid { .. }
                | PromoteError::ResultInvalid { .. }
                | PromoteError::RenderCheck { .. }
        )
    }
}

fn unknown_packs(from: &str, names: &[String], own: &[String], inherited: &[String]) -> String {
    let mut parts = Vec::new();
    let (base, other): (Vec<&String>, Vec<&String>) =
        names.iter().partition(|n| inherited.contains(n));
    if !other.is_empty() {
        let has = if own.is_empty() {
            "none".to_owned()
        } else {
            own.join(", ")
        };
        parts.push(format!(
            "`{from}` has no pack file {}; its pack files: {has}",
            quoted(&other)
        ));
    }
    if !base.is_empty() {
        parts.push(format!(
            "{} {} inherited by `{from}` from base/packs/ unchanged: base packs are shared and need no promotion",
            quoted(&base),
            if base.len() == 1 { "is" } else { "are" }
        ));
    }
    parts.join("; ")
}

fn quoted(names: &[&String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What to promote and where to write it.
#[derive(Debug, Clone)]
pub struct Request {
    /// A local repository (or a directory inside one).
    pub repo: std::path::PathBuf,
    pub from: String,
    pub to: String,
    /// Only these packs (by name); all of FROM's pack files when `None`.
    pub packs: Option<Vec<String>>,
    /// The new branch; default `promote/<from>-to-<to>-<12 hex of TO's new digest>`.
    pub branch: Option<String>,
    /// The branch Sluice follows; the commit goes on top of its head.
    pub base: String,
    /// Replaces the commit's subject line.
    pub message: Option<String>,
    /// Promote even though FROM is not TO's `promotion.from`, for this reason.
    pub force: Option<String>,
    pub limits: Limits,
}

/// A pack as an environment runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackVersion {
    pub version: String,
    pub digest: Digest,
}

/// One pack file brought from FROM into TO.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromotedFile {
    pub name: String,
    /// The file written (relative to the config repository).
    pub file: String,
    /// FROM's file it is a copy of.
    pub source: String,
    /// What TO ran before: `None` when it had no such pack.
    pub previous: Option<PackVersion>,
    /// What TO runs now: FROM's version and pack digest.
    pub version: String,
    pub digest: Digest,
    /// TO's file for the pack under another name (`.yml` against `.yaml`),
    /// removed so the pack has one file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// A pack file of TO's that FROM has no file for: left as it is.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    pub name: String,
    pub file: String,
}

/// The branch made for a promotion.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Made {
    pub branch: String,
    pub commit: String,
    /// False when the branch already existed with exactly this tree.
    pub created: bool,
    /// TO's digest on the head, and on the branch.
    pub previous_digest: Digest,
    pub digest: Digest,
    pub subject: String,
}

/// A promotion looked at and, unless there was nothing to promote, made.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Promoted {
    pub from: String,
    pub to: String,
    /// The base branch and the commit the promotion reads and sits on.
    pub base: String,
    pub parent: String,
    /// The pack files that change in TO; empty: nothing to promote.
    pub packs: Vec<PromotedFile>,
    /// FROM's pack files TO already holds byte for byte.
    pub unchanged: Vec<String>,
    pub kept: Vec<Kept>,
    /// The reason given with `--force`.
    pub forced: Option<String>,
    /// `None` when there was nothing to promote: no branch is made.
    #[serde(flatten)]
    pub made: Option<Made>,
}

/// Reads the base branch head, checks the promotion may happen, builds the
/// commit, checks its render and only then creates the branch. Nothing else
/// in the repository moves. With nothing to promote, no commit is made.
pub fn prepare(request: &Request) -> Result<Promoted, PromoteError> {
    let path = request.repo.as_path();
    let repo = commit::open_repository(path)?;
    let root_prefix = commit::root_prefix(&repo, path);
    let (from, to) = (request.from.as_str(), request.to.as_str());
    if from == to {
        return Err(PromoteError::SameEnvironment {
            environment: from.to_owned(),
        });
    }

    // 1. The base head, loaded; FROM must be clean, TO must take from FROM.
    let head_commit = repo
        .revparse_single(&format!("refs/heads/{}", request.base))
        .or_else(|_| repo.revparse_single(&request.base))
        .and_then(|o| o.peel_to_commit())
        .map_err(|_| PromoteError::NoBase {
            branch: request.base.clone(),
            path: path.display().to_string(),
        })?;
    let head_id = head_commit.id().to_string();
    let short = prefix(&head_id, 8).to_owned();
    let snapshot = GitSnapshot::open(path, &head_id).map_err(|source| PromoteError::Read {
        revision: short.clone(),
        source,
    })?;
    let loaded = load(&snapshot, &request.limits, &short)?;
    let head = match &loaded.repository {
        Some(head) => head,
        None => return Err(refusal(&loaded, from, &short)),
    };
    let environment = |slug: &str| {
        head.environments
            .get(slug)
            .ok_or_else(|| PromoteError::UnknownEnvironment {
                environment: slug.to_owned(),
                revision: short.clone(),
                known: head.environments.keys().cloned().collect(),
            })
    };
    let (source, target) = (environment(from)?, environment(to)?);
    let forced = match (&target.spec.promotion, &request.force) {
        (Some(promotion), _) if promotion.from == from => None,
        (_, Some(reason)) => Some(reason.clone()),
        (Some(promotion), None) => {
            return Err(PromoteError::NotPromotionSource {
                from: from.to_owned(),
                to: to.to_owned(),
                expected: promotion.from.clone(),
                file: target.spec_file.clone(),
            });
        }
        (None, None) => {
            return Err(PromoteError::NoPromotionSource {
                from: from.to_owned(),
                to: to.to_owned(),
                file: target.spec_file.clone(),
            });
        }
    };

    // 2. What changes: FROM's pack files, against TO's.
    let Changes {
        promoted,
        unchanged,
        kept,
    } = files::changes(
        &snapshot,
        &request.limits,
        &short,
        (head, source, target),
        request.packs.as_deref(),
    )?;
    let mut report = Promoted {
        from: from.to_owned(),
        to: to.to_owned(),
        base: request.base.clone(),
        parent: head_id.clone(),
        packs: Vec::new(),
        unchanged,
        kept,
        forced,
        made: None,
    };
    if promoted.is_empty() {
        return Ok(report);
    }

    // 3. The new tree: the head's, with the pack files copied.
    let head_tree = head_commit.tree().map_err(git("reading the head tree"))?;
    let mut root = head_tree.id();
    for (file, bytes) in &promoted {
        let blob = repo.blob(bytes).map_err(git("writing a pack file"))?;
        let current = repo.find_tree(root).map_err(git("building the tree"))?;
        root = match &file.replaces {
            Some(old) => commit::remove(&repo, &current, &format!("{root_prefix}{old}"))
                .map_err(git("building the tree"))?,
            None => root,
        };
        let current = repo.find_tree(root).map_err(git("building the tree"))?;
        root = commit::put(
            &repo,
            Some(&current),
            &format!("{root_prefix}{}", file.file),
            (blob, MODE_BLOB),
        )
        .map_err(git("building the tree"))?;
    }
    let new_tree = repo.find_tree(root).map_err(git("building the tree"))?;
    report.packs = promoted.into_iter().map(|(file, _)| file).collect();

    // 4. The commit object, not yet on any branch; loaded and rendered.
    let record = Promotion {
        from: from.to_owned(),
        to: to.to_owned(),
        packs: report
            .packs
            .iter()
            .map(|p| PromotedPack {
                name: p.name.clone(),
                version: p.version.clone(),
                digest: p.digest.clone(),
                source_env: from.to_owned(),
                source_revision: head_id.clone(),
            })
            .collect(),
        forced: report.forced.clone(),
    };
    let message = commit_message(&record, target, request.message.as_deref());
    let commit = commit::write_detached(&repo, &message, &new_tree, &head_commit)?;
    let commit_id = commit.to_string();
    let promoted_snapshot =
        GitSnapshot::open(path, &commit_id).map_err(|source| PromoteError::Read {
            revision: prefix(&commit_id, 8).to_owned(),
            source,
        })?;
    let result = load(&promoted_snapshot, &request.limits, prefix(&commit_id, 8))?;
    let Some(result_repo) = &result.repository else {
        let (errors, listed) = error_findings(&result, None);
        return Err(PromoteError::ResultInvalid { errors, listed });
    };
    let new_digest = check(head, result_repo, &record)?;

    // 5. Only now the branch.
    let branch = request
        .branch
        .clone()
        .unwrap_or_else(|| default_branch(from, to, &new_digest));
    let log = format!("sluice promote {from} {to}");
    let (commit, created) = commit::create_branch(&repo, &branch, commit, &log)?;
    report.made = Some(Made {
        branch,
        commit: commit.to_string(),
        created,
        previous_digest: environment_digests(head)
            .remove(to)
            .expect("TO is an environment of the head"),
        digest: new_digest,
        subject: message.lines().next().unwrap_or_default().to_owned(),
    });
    Ok(report)
}

/// Loads a snapshot, findings and all.
fn load(snapshot: &GitSnapshot, limits: &Limits, revision: &str) -> Result<Loaded, PromoteError> {
    config::load(snapshot, limits).map_err(|source| PromoteError::Read {
        revision: revision.to_owned(),
        source,
    })
}

/// Why an invalid head refuses the promotion: FROM's own findings, or the
/// repository's.
fn refusal(loaded: &Loaded, from: &str, revision: &str) -> PromoteError {
    let dir = format!("{}/{from}/", ENVIRONMENTS);
    let (errors, listed) = error_findings(loaded, Some(&dir));
    if errors > 0 {
        return PromoteError::SourceFindings {
            environment: from.to_owned(),
            revision: revision.to_owned(),
            errors,
            listed,
        };
    }
    let (errors, listed) = error_findings(loaded, None);
    PromoteError::BaseInvalid {
        revision: revision.to_owned(),
        errors,
        listed,
    }
}

/// How many error findings there are (under `dir`, if given), and the
/// first few as `file:line rule: message`.
fn error_findings(loaded: &Loaded, dir: Option<&str>) -> (usize, Vec<String>) {
    let found: Vec<&config::Finding> = loaded
        .findings
        .iter()
        .filter(|f| f.is_error() && dir.is_none_or(|d| f.file.starts_with(d)))
        .collect();
    let listed = found
        .iter()
        .take(FINDINGS_SHOWN)
        .map(|f| {
            let line = f.line.map(|l| format!(":{l}")).unwrap_or_default();
            let message = if f.redact { "" } else { f.message.as_str() };
            format!("{}{line} {}: {message}", f.file, f.rule)
        })
        .collect();
    (found.len(), listed)
}

/// The promoted tree must run each promoted pack in TO exactly as FROM ran
/// it on the head, and render every other environment as the head does.
/// Returns TO's new digest.
pub fn check(
    head: &Repository,
    promoted: &Repository,
    record: &Promotion,
) -> Result<Digest, PromoteError> {
    let mut mismatches = Vec::new();
    let to = record.to.as_str();
    let packs = promoted
        .environments
        .get(to)
        .map(|env| by_name(pack_digests(promoted, env)))
        .unwrap_or_default();
    for pack in &record.packs {
        match packs.get(&pack.name) {
            Some(got) if got.digest == pack.digest => {}
            got => mismatches.push(format!(
                "{to} pack {}: expected {} (as in {}), got {}",
                pack.name,
                pack.digest,
                record.from,
                got.map_or("nothing", |g| g.digest.as_str())
            )),
        }
    }
    let before = environment_digests(head);
    let mut after = environment_digests(promoted);
    let slugs: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for slug in slugs.into_iter().filter(|s| s.as_str() != to) {
        if before.get(slug) != after.get(slug) {
            mismatches.push(format!(
                "{slug}: expected {} (unchanged), got {}",
                before.get(slug).map_or("nothing", Digest::as_str),
                after.get(slug).map_or("nothing", Digest::as_str)
            ));
        }
    }
    match after.remove(to) {
        Some(digest) if mismatches.is_empty() => Ok(digest),
        Some(_) => Err(PromoteError::RenderCheck { mismatches }),
        None => {
            mismatches.push(format!("{to}: no longer an environment"));
            Err(PromoteError::RenderCheck { mismatches })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_packs_say_which_are_base_packs() {
        let text = unknown_packs(
            "staging",
            &["modles".into(), "baseline".into()],
            &["models".into()],
            &["baseline".into()],
        );
        assert_eq!(
            text,
            "`staging` has no pack file `modles`; its pack files: models; `baseline` is inherited by `staging` from base/packs/ unchanged: base packs are shared and need no promotion"
        );
    }
}
