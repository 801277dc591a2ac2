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
    /// The head renders the pinned digest: the pin ends by itself.
    CaughtUp,
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
    if head.as_str() == pin.digest {
        return Honour::CaughtUp;
    }
    let at = format!(
        "pinned at {}@{} by {}",
        prefix(&pin.digest, 19),
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
        Some(version) if version.digest.as_str() == pin.digest => Honour::Apply(version),
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
