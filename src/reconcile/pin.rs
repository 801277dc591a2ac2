//! Pins: an environment held at a version it ran whole, so auto-sync does
//! not fight an incident fix while the rollback branch is reviewed.
//!
//! ```text
//!  ledger.pins() ──► per pinned environment of the pass:
//!     head renders pin.digest ──────────────► pin ends (caught-up), head applies
//!     else Revisions::load(pin.revision) ──► render the environment there
//!        digest == pin.digest ──► its gateways' desired state is that render
//!        otherwise (or it cannot load) ──► hold: nothing applied, reported
//! ```
//!
//! Anything that writes a pin into the ledger (`sluice pin`, the API,
//! `spec.pin`, or code such as an automatic rollback calling
//! [`Ledger::pin`](crate::ledger::Ledger::pin)) is honoured by the next pass.

use crate::{
    config::{Digest, Loaded, RenderedGateway, Repository, render::environment_version},
    ledger::Pin,
    source::prefix,
};
use async_trait::async_trait;
use std::sync::Arc;

/// Loads (and validates) the repository at a commit: how a pass gets the
/// pinned revision's rendering. Standalone mode reads the followed
/// repository's cache, Kubernetes mode its repository's.
#[async_trait]
pub trait Revisions: Send + Sync {
    async fn load(&self, commit: &str) -> Result<Arc<Loaded>, String>;
}

/// What a pass does with one pinned environment.
#[derive(Debug, Clone)]
pub enum Honour {
    /// The head renders the pinned digest again after the pin held it
    /// back: the pin ends by itself.
    CaughtUp,
    /// The head renders the pinned digest and never rendered another
    /// since the pin: nothing is held back yet; the pin stays.
    Level,
    /// The gateways' desired state is the pinned version.
    Apply(PinnedVersion),
    /// The pinned version cannot be rendered as pinned: nothing is applied.
    Hold(String),
}

/// The pinned version's render, as the environment's gateways get it.
#[derive(Debug, Clone)]
pub struct PinnedVersion {
    pub canonical: Arc<str>,
    pub digest: Digest,
    pub packs: Arc<[crate::config::render::PackDigest]>,
}

/// A pinned environment in a pass.
#[derive(Debug, Clone)]
pub struct Pinned {
    pub pin: Pin,
    /// What the head renders for the environment (what it would apply).
    pub head: Digest,
    pub head_revision: String,
    /// Why the pin cannot be honoured, when it cannot.
    pub problem: Option<String>,
}

impl Pinned {
    /// What status shows beside a pinned gateway.
    pub fn message(&self) -> String {
        match &self.problem {
            Some(problem) => problem.clone(),
            None => format!(
                "pinned by {}; the head ({}) would apply {}",
                self.pin.by,
                prefix(&self.head_revision, 8),
                self.head.short()
            ),
        }
    }
}

/// Decides, from the head's digest for the environment and the pinned
/// revision as loaded, what the pass does with the pin. Pure.
pub fn honour(pin: &Pin, head: &Digest, pinned: Result<&Loaded, &str>) -> Honour {
    if *head == pin.digest {
        return match pin.held_since {
            Some(_) => Honour::CaughtUp,
            None => Honour::Level,
        };
    }
    let at = format!(
        "pinned at {}@{} by {}",
        pin.digest.short(),
        prefix(&pin.revision, 8),
        pin.by
    );
    let loaded = match pinned {
        Ok(loaded) => loaded,
        Err(e) => {
            return Honour::Hold(format!(
                "{at}, but revision {} cannot be read: {e}; nothing applied",
                prefix(&pin.revision, 8)
            ));
        }
    };
    let Some(repo) = &loaded.repository else {
        return Honour::Hold(format!(
            "{at}, but revision {} is invalid now; nothing applied",
            prefix(&pin.revision, 8)
        ));
    };
    match render(repo, &pin.environment) {
        Some(version) if version.digest == pin.digest => Honour::Apply(version),
        Some(version) => Honour::Hold(format!(
            "{at}, but revision {} renders {} for it now; nothing applied",
            prefix(&pin.revision, 8),
            version.digest.short()
        )),
        None => Honour::Hold(format!(
            "{at}, but revision {} has no environment {}; nothing applied",
            prefix(&pin.revision, 8),
            pin.environment
        )),
    }
}

fn render(repo: &Repository, environment: &str) -> Option<PinnedVersion> {
    let env = repo.environments.get(environment)?;
    let (canonical, digest, packs) = environment_version(repo, env);
    Some(PinnedVersion {
        canonical,
        digest,
        packs,
    })
}

/// Puts the pinned version in place of the head's for `environment`'s gateways.
pub fn substitute(rendered: &mut [RenderedGateway], environment: &str, version: &PinnedVersion) {
    for gateway in rendered.iter_mut().filter(|g| g.environment == environment) {
        gateway.digest = version.digest.clone();
        gateway.canonical = version.canonical.clone();
        gateway.packs = version.packs.clone();
    }
}

/// Why a pin target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error(
        "`{environment}` never ran a version on every gateway, so there is nothing to pin it at (run `sluice sync` or `sluice run` first)"
    )]
    NoDeployments { environment: String },
    #[error("`{environment}` never ran `{given}` whole; its recent deployments: {}", recent.join(", "))]
    NeverRan {
        environment: String,
        given: String,
        recent: Vec<String>,
    },
    #[error("`{given}` is ambiguous among the deployments of `{environment}`: {}", candidates.join(", "))]
    Ambiguous {
        environment: String,
        given: String,
        candidates: Vec<String>,
    },
}

/// Deployments named in a refusal, at most.
const RECENT_SHOWN: usize = 5;

/// The deployment a pin holds `environment` at, among its deployments
/// (newest first): by digest (full, or at least `sha256:` and 12 hex), by
/// revision (a commit id or its start, 4 hex or more), or the newest (what
/// it runs now) when `to` is `None`. Pure.
pub fn target(
    environment: &str,
    deployments: &[crate::ledger::Deployment],
    to: Option<&str>,
) -> Result<crate::ledger::Deployment, TargetError> {
    let Some(newest) = deployments.first() else {
        return Err(TargetError::NoDeployments {
            environment: environment.to_owned(),
        });
    };
    let Some(given) = to.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(newest.clone());
    };
    let needle = given.to_ascii_lowercase();
    let (matches, key): (
        Vec<&crate::ledger::Deployment>,
        fn(&crate::ledger::Deployment) -> &str,
    ) = if let Some(hex) = needle.strip_prefix("sha256:") {
        let ok = hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        let found = deployments
            .iter()
            .filter(|d| ok && d.digest.as_str().starts_with(&needle))
            .collect();
        (found, |d| d.digest.as_str())
    } else {
        let ok = needle.len() >= 4 && needle.bytes().all(|b| b.is_ascii_hexdigit());
        let found = deployments
            .iter()
            .filter(|d| ok && d.revision.starts_with(&needle))
            .collect();
        (found, |d| d.revision.as_str())
    };
    let mut distinct: Vec<&str> = matches.iter().map(|d| key(d)).collect();
    distinct.sort_unstable();
    distinct.dedup();
    match (matches.first(), distinct.len()) {
        (Some(found), 1) => Ok((*found).clone()),
        (Some(_), _) => Err(TargetError::Ambiguous {
            environment: environment.to_owned(),
            given: given.to_owned(),
            candidates: distinct
                .iter()
                .map(|k| crate::config::render::short_digest(k).to_owned())
                .collect(),
        }),
        (None, _) => Err(TargetError::NeverRan {
            environment: environment.to_owned(),
            given: given.to_owned(),
            recent: deployments
                .iter()
                .take(RECENT_SHOWN)
                .map(crate::rollback::describe)
                .collect(),
        }),
    }
}

/// Why a pin was not made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PinError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
}

/// Deployments a pin target is chosen among, at most.
const DEPLOYMENTS_READ: usize = 1_000;

/// Pins `environment` at `to` (see [`target`]) in `ledger`: what
/// `sluice pin`, the API and `spec.pin` do. Returns the pin and the one
/// it replaced. The next pass applies it.
pub fn pin_in(
    ledger: &dyn crate::ledger::Ledger,
    environment: &str,
    to: Option<&str>,
    reason: Option<String>,
    by: &str,
    at: crate::ledger::Millis,
) -> Result<(Pin, Option<Pin>), PinError> {
    let deployments = ledger.deployments(environment, DEPLOYMENTS_READ)?;
    let chosen = target(environment, &deployments, to)?;
    let pin = Pin {
        environment: environment.to_owned(),
        digest: chosen.digest,
        revision: chosen.revision,
        reason: reason.filter(|r| !r.trim().is_empty()),
        by: by.to_owned(),
        at,
        held_since: None,
        ended_at: None,
        ended_by: None,
        end_reason: None,
    };
    let replaced = ledger.pin(&pin)?;
    Ok((pin, replaced))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Deployment;

    fn deployment(digest: char, revision: &str) -> Deployment {
        Deployment {
            environment: "production".into(),
            revision: revision.into(),
            digest: format!("sha256:{}", digest.to_string().repeat(64)).into(),
            packs: Vec::new(),
            verified_at: 0,
        }
    }

    #[test]
    fn a_target_is_the_newest_a_digest_or_a_revision_it_ran_whole() {
        let ran = [
            deployment('b', "bbbb1111"),
            deployment('a', "aaaa2222"),
            deployment('b', "bbbb0000"),
        ];
        let digest = |d: &Deployment| d.digest.clone();
        assert_eq!(
            digest(&target("production", &ran, None).unwrap()),
            ran[0].digest
        );
        let short = format!("sha256:{}", "a".repeat(12));
        assert_eq!(target("production", &ran, Some(&short)).unwrap(), ran[1]);
        assert_eq!(
            target("production", &ran, Some(ran[1].digest.as_str())).unwrap(),
            ran[1]
        );
        assert_eq!(target("production", &ran, Some("AAAA2")).unwrap(), ran[1]);
        // One digest under two revisions is one version: the newest is taken.
        let b = format!("sha256:{}", "b".repeat(12));
        assert_eq!(target("production", &ran, Some(&b)).unwrap(), ran[0]);

        let never = target("production", &ran, Some("cccc")).unwrap_err();
        let text = never.to_string();
        assert!(
            text.contains("never ran `cccc`") && text.contains("@aaaa2222"),
            "{text}"
        );
        assert!(matches!(
            target("production", &ran, Some("bbbb")),
            Err(TargetError::Ambiguous { .. })
        ));
        assert!(matches!(
            target("production", &ran, Some("sha256:aaa")),
            Err(TargetError::NeverRan { .. })
        ));
        assert!(matches!(
            target("production", &[], None),
            Err(TargetError::NoDeployments { .. })
        ));
    }
}
