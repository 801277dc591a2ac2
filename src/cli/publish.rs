//! What `promote` and `rollback` share after their branch is made: the
//! optional push and the next step to tell the user.

use super::{Cli, Outcome};
use crate::source::{
    Credentials,
    commit::open_repository,
    follow::redact_url,
    publish::{next_step, pull_request_url, push, url_of},
};
use serde::Serialize;
use std::path::PathBuf;

/// Flags for pushing the branch.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Push the branch (never forced) to --remote.
    #[arg(long)]
    pub push: bool,
    /// Remote to push to: a remote's name in the repository, or a URL.
    #[arg(long, default_value = "origin")]
    pub remote: String,
    /// Environment variable holding an HTTPS token for the push.
    #[arg(long)]
    pub git_token_env: Option<String>,
    /// SSH private key for the push.
    #[arg(long)]
    pub git_ssh_key: Option<PathBuf>,
}

/// Where the branch went and what to do next.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    pub pushed: bool,
    /// The remote's name, or its URL without credentials.
    pub remote: String,
    pub pull_request_url: Option<String>,
    /// What to do next: the push command, or where to open the pull request.
    pub next: String,
}

impl PushArgs {
    /// Pushes `branch` when asked; says how to open the pull request into `base`.
    pub fn publish(&self, cli: &Cli, base: &str, branch: &str) -> anyhow::Result<Published> {
        let repo = open_repository(&cli.repo)?;
        let configured = url_of(&repo, &self.remote);
        // NB: `--remote` may be a URL or a path instead of a remote's name.
        let remote_known = configured.is_some()
            || self.remote.contains('/')
            || self.remote.contains(':')
            || self.remote.contains('\\');
        let remote_url = configured.unwrap_or_else(|| self.remote.clone());
        // NB: a remote given as a URL may carry a token; it is never shown.
        let shown = redact_url(&self.remote);
        let remote = if self.push {
            let credentials = Credentials {
                token_env: self.git_token_env.clone(),
                ssh_key: self.git_ssh_key.clone(),
                token: None,
            };
            push(&cli.repo, branch, &self.remote, &credentials)?
        } else {
            shown.clone()
        };
        let pull_request_url = pull_request_url(&remote_url, base, branch);
        let next = next_step(
            self.push,
            &shown,
            base,
            branch,
            pull_request_url.as_deref(),
            remote_known,
        );
        Ok(Published {
            pushed: self.push,
            remote,
            pull_request_url,
            next,
        })
    }

    /// When nothing was made: nothing pushed, nothing to do.
    pub fn unpublished(&self) -> Published {
        Published {
            pushed: false,
            remote: redact_url(&self.remote),
            pull_request_url: None,
            next: String::new(),
        }
    }
}

/// A branch the render check refused is a finding (exit 1), not an error
/// of usage or environment (exit 2).
pub fn refusal_is_a_finding<E>(
    result: anyhow::Result<Outcome>,
    is_check_failure: impl Fn(&E) -> bool,
) -> anyhow::Result<Outcome>
where
    E: std::fmt::Display + std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Err(e) if e.downcast_ref::<E>().is_some_and(is_check_failure) => {
            eprintln!("error: {e}");
            Ok(Outcome::Findings)
        }
        other => other,
    }
}
