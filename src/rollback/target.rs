//! Which version to roll back to, chosen from the ledger's deployments of
//! one environment (newest first). Pure: no git, no ledger I/O.
//!
//! ```text
//!  deployments:  d5 (current)  d4 = d5's digest  d3  d2 = d3's digest  d1
//!  --steps 1 (the default) ──────────────────────► d3
//!  --steps 2 ─────────────────────────────────────────────────────────► d1
//! ```

use super::RollbackError;
use crate::{ledger::Deployment, source::prefix};

/// How the operator named the version to go back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The `n`-th distinct older version (1: the one before the current).
    Steps(usize),
    /// The deployment of a revision: what the operator typed, and the
    /// commit git resolved it to, when it did.
    Revision {
        given: String,
        commit: Option<String>,
    },
}

/// The version an environment runs now and the one to go back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub current: Deployment,
    pub target: Deployment,
}

/// Chooses the target among `deployments` (newest first, one environment).
pub fn select(
    environment: &str,
    deployments: &[Deployment],
    selector: &Selector,
) -> Result<Selection, RollbackError> {
    let Some((current, older)) = deployments.split_first() else {
        return Err(RollbackError::NoDeployments {
            environment: environment.to_owned(),
        });
    };
    let target = match selector {
        Selector::Steps(steps) => by_steps(environment, current, older, *steps)?,
        Selector::Revision { given, commit } => {
            by_revision(environment, deployments, given, commit.as_deref())?
        }
    };
    if target.digest == current.digest {
        return Err(RollbackError::AlreadyRuns {
            environment: environment.to_owned(),
            digest: current.digest.to_string(),
            revision: target.revision.clone(),
        });
    }
    Ok(Selection {
        current: current.clone(),
        target: target.clone(),
    })
}

fn by_steps<'a>(
    environment: &str,
    current: &Deployment,
    older: &'a [Deployment],
    steps: usize,
) -> Result<&'a Deployment, RollbackError> {
    let steps = steps.max(1);
    let mut seen: Vec<&str> = vec![current.digest.as_str()];
    let mut distinct = Vec::new();
    for deployment in older {
        if !seen.contains(&deployment.digest.as_str()) {
            seen.push(deployment.digest.as_str());
            distinct.push(deployment);
        }
    }
    distinct
        .get(steps - 1)
        .copied()
        .ok_or_else(|| RollbackError::NoOlderVersion {
            environment: environment.to_owned(),
            steps,
            found: distinct.len(),
            current: current.digest.to_string(),
        })
}

fn by_revision<'a>(
    environment: &str,
    deployments: &'a [Deployment],
    given: &str,
    commit: Option<&str>,
) -> Result<&'a Deployment, RollbackError> {
    // NB: what git resolved wins (a tag or branch name); otherwise the text
    // is taken as the start of a commit id, as `git` itself would.
    let exact = commit.and_then(|c| deployments.iter().find(|d| d.revision == c));
    if let Some(found) = exact {
        return Ok(found);
    }
    let needle = given.to_ascii_lowercase();
    let matches: Vec<&Deployment> =
        if needle.len() >= 4 && needle.bytes().all(|b| b.is_ascii_hexdigit()) {
            deployments
                .iter()
                .filter(|d| d.revision.starts_with(&needle))
                .collect()
        } else {
            Vec::new()
        };
    let mut revisions: Vec<&str> = matches.iter().map(|d| d.revision.as_str()).collect();
    revisions.sort_unstable();
    revisions.dedup();
    match (matches.first(), revisions.len()) {
        (Some(found), 1) => Ok(found),
        (Some(_), _) => Err(RollbackError::AmbiguousRevision {
            given: given.to_owned(),
            candidates: revisions.iter().map(|r| prefix(r, 12).to_owned()).collect(),
        }),
        (None, _) => Err(RollbackError::NeverRan {
            environment: environment.to_owned(),
            given: given.to_owned(),
            known: deployments.iter().map(describe).collect(),
        }),
    }
}

/// `sha256:<12 hex>@<rev8>`, as versions are shown everywhere.
pub fn describe(deployment: &Deployment) -> String {
    format!(
        "{}@{}",
        deployment.digest.short(),
        prefix(&deployment.revision, 8)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(digest: &str, revision: &str) -> Deployment {
        Deployment {
            environment: "production".into(),
            revision: revision.into(),
            digest: format!("sha256:{}", digest.repeat(64 / digest.len())).into(),
            packs: Vec::new(),
            verified_at: 0,
        }
    }

    /// Newest first: c runs now; b ran twice (two revisions), then a.
    fn ledger() -> Vec<Deployment> {
        vec![
            deployment("c", "cccc000000000000000000000000000000000003"),
            deployment("b", "bbbb000000000000000000000000000000000002"),
            deployment("c", "cccc000000000000000000000000000000000001"),
            deployment("b", "bbbb000000000000000000000000000000000001"),
            deployment("a", "aaaa000000000000000000000000000000000000"),
        ]
    }

    fn steps(n: usize) -> Result<Selection, RollbackError> {
        select("production", &ledger(), &Selector::Steps(n))
    }

    #[test]
    fn the_default_is_the_newest_older_version_with_another_digest() {
        let selection = steps(1).unwrap();
        assert_eq!(selection.current, ledger()[0]);
        assert_eq!(selection.target, ledger()[1]);
    }

    #[test]
    fn steps_count_distinct_digests_not_rows() {
        // b, then c again (the current digest: skipped), then b again
        // (seen), then a.
        assert_eq!(steps(2).unwrap().target, ledger()[4]);
        let Err(RollbackError::NoOlderVersion { steps, found, .. }) = steps(3) else {
            panic!("three steps back is past the ledger");
        };
        assert_eq!((steps, found), (3, 2));
    }

    #[test]
    fn a_single_deployment_has_nothing_to_go_back_to() {
        let only = &ledger()[..1];
        assert!(matches!(
            select("production", only, &Selector::Steps(1)),
            Err(RollbackError::NoOlderVersion { found: 0, .. })
        ));
        assert!(matches!(
            select("production", &[], &Selector::Steps(1)),
            Err(RollbackError::NoDeployments { .. })
        ));
    }

    #[test]
    fn a_revision_is_found_by_what_git_resolved_or_by_its_prefix() {
        let resolved = Selector::Revision {
            given: "v1".into(),
            commit: Some("aaaa000000000000000000000000000000000000".into()),
        };
        assert_eq!(
            select("production", &ledger(), &resolved).unwrap().target,
            ledger()[4]
        );
        let by_prefix = Selector::Revision {
            given: "BBBB000000000000000000000000000000000002".into(),
            commit: None,
        };
        assert_eq!(
            select("production", &ledger(), &by_prefix).unwrap().target,
            ledger()[1]
        );
    }

    #[test]
    fn a_revision_the_environment_never_ran_whole_is_refused_with_what_it_ran() {
        let unknown = Selector::Revision {
            given: "dddd".into(),
            commit: Some("dddd000000000000000000000000000000000000".into()),
        };
        let Err(error @ RollbackError::NeverRan { .. }) = select("production", &ledger(), &unknown)
        else {
            panic!("dddd never ran");
        };
        let text = error.to_string();
        assert!(text.contains("sha256:aaaaaaaaaaaa@aaaa0000"), "{text}");
    }

    #[test]
    fn a_short_prefix_matching_two_revisions_is_ambiguous() {
        let short = Selector::Revision {
            given: "bbbb".into(),
            commit: None,
        };
        assert!(matches!(
            select("production", &ledger(), &short),
            Err(RollbackError::AmbiguousRevision { .. })
        ));
    }

    #[test]
    fn the_version_running_now_is_no_target() {
        let same = Selector::Revision {
            given: "cccc000000000000000000000000000000000001".into(),
            commit: None,
        };
        assert!(matches!(
            select("production", &ledger(), &same),
            Err(RollbackError::AlreadyRuns { .. })
        ));
    }
}
