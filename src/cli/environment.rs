//! Choosing an environment, the same way in every command: by name
//! (`sluice history production`, as kubectl takes a resource's name) or
//! with `--env` (`sluice history --env production`, as scripts spell it
//! for every command alike), not both. A name that is no environment is
//! an error naming the closest and every one there is.

use crate::{ledger::Ledger, source::Revision};
use std::collections::BTreeSet;

/// An environment a command needs.
#[derive(Debug, Clone, clap::Args)]
pub struct Environment {
    /// The environment (or --env ENV).
    #[arg(value_name = "ENV", required_unless_present = "env")]
    environment: Option<String>,
    /// The environment, as a flag (the same as ENV).
    #[arg(long = "env", value_name = "ENV", conflicts_with = "environment")]
    env: Option<String>,
}

impl Environment {
    pub fn name(&self) -> &str {
        self.environment
            .as_deref()
            .or(self.env.as_deref())
            .expect("clap requires ENV or --env")
    }
}

/// An environment a command may be narrowed to.
#[derive(Debug, Clone, clap::Args)]
pub struct Only {
    /// Only this environment (or --env ENV); default: every one.
    #[arg(value_name = "ENV")]
    environment: Option<String>,
    /// Only this environment, as a flag (the same as ENV).
    #[arg(long = "env", value_name = "ENV", conflicts_with = "environment")]
    env: Option<String>,
}

impl Only {
    pub fn name(&self) -> Option<&str> {
        self.environment.as_deref().or(self.env.as_deref())
    }
}

/// `name` is one of `known` (`at` says whose: "at revision 3f2a9c1b", "in
/// the ledger"), or the error says which are.
pub fn check<'a>(
    name: &str,
    known: impl IntoIterator<Item = &'a str>,
    at: &str,
) -> anyhow::Result<()> {
    let known: BTreeSet<&str> = known.into_iter().collect();
    if known.contains(name) {
        return Ok(());
    }
    anyhow::bail!(
        "no environment `{name}` {at}; {}",
        crate::config::environment_hint(name, known)
    )
}

/// Where a loaded repository's environments come from, for [`check`].
pub fn at(revision: &Revision) -> String {
    match revision {
        Revision::Commit(_) => format!("at revision {}", revision.short()),
        Revision::WorkTree => "in the work tree".to_owned(),
    }
}

/// [`check`] against what the ledger has recorded: the environments whose
/// gateways Sluice has worked on.
pub fn check_recorded(name: &str, ledger: &dyn Ledger) -> anyhow::Result<()> {
    let records = ledger.gateways(None)?;
    check(
        name,
        records.iter().map(|r| r.environment.as_str()),
        "in the ledger (nothing recorded for it)",
    )
}
