//! `sluice rollback ENV`: a branch whose one new commit puts ENV back on a
//! version it ran whole before, checked by rendering; optionally pushed.
//! Exit 0 when the branch is made, 1 when the render check refuses it,
//! 2 on usage or environment errors.

use super::{Cli, Outcome, StateArgs};
use crate::{
    ledger::SqliteLedger,
    rollback::{self, Request, Rollback, RollbackError, Selector},
    source::{
        Credentials,
        commit::open_repository,
        follow::redact_url,
        prefix,
        publish::{next_step, pull_request_url, push, url_of},
    },
};
use clap::ValueEnum;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment to roll back.
    pub environment: String,
    /// Go back to the version this revision put in place (a commit id or
    /// its start, a tag, a branch); the environment must have run it whole.
    #[arg(long, conflicts_with = "steps")]
    pub to: Option<String>,
    /// Go back this many distinct versions (1: the one before the current).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub steps: u32,
    /// Name of the new branch [default: rollback/<env>-<12 hex of the digest>].
    #[arg(long)]
    pub branch: Option<String>,
    /// The branch Sluice follows: the rollback commit goes on top of its head.
    #[arg(long, default_value = "main")]
    pub base: String,
    /// Subject line of the commit (the body and trailers are kept).
    #[arg(short, long)]
    pub message: Option<String>,
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
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    rollback: &'a Rollback,
    pushed: bool,
    /// The remote's name, or its URL without credentials.
    remote: String,
    pull_request_url: Option<String>,
    /// What to do next: the push command, or where to open the pull request.
    next: String,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    match make(cli, args) {
        Ok(outcome) => Ok(outcome),
        Err(e) => match e.downcast::<RollbackError>() {
            Ok(refused) if refused.is_check_failure() => {
                eprintln!("error: {refused}");
                Ok(Outcome::Findings)
            }
            Ok(other) => Err(other.into()),
            Err(other) => Err(other),
        },
    }
}

fn make(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let ledger = SqliteLedger::open_read_only(&args.state.state_path())?;
    let selector = match &args.to {
        Some(given) => Selector::Revision {
            given: given.clone(),
            commit: None,
        },
        None => Selector::Steps(args.steps as usize),
    };
    let request = Request {
        repo: cli.repo.clone(),
        environment: args.environment.clone(),
        selector,
        branch: args.branch.clone(),
        base: args.base.clone(),
        message: args.message.clone(),
        limits: cli.limits(),
    };
    let made = rollback::prepare(&request, &ledger)?;
    let repo = open_repository(&cli.repo)?;
    let remote_url = url_of(&repo, &args.remote).unwrap_or_else(|| args.remote.clone());
    let pushed = if args.push {
        let credentials = Credentials {
            token_env: args.git_token_env.clone(),
            ssh_key: args.git_ssh_key.clone(),
        };
        Some(push(&cli.repo, &made.branch, &args.remote, &credentials)?)
    } else {
        None
    };
    let pull_request_url = pull_request_url(&remote_url, &made.base, &made.branch);
    let next = next_step(
        pushed.is_some(),
        &args.remote,
        &made.base,
        &made.branch,
        pull_request_url.as_deref(),
    );
    let report = Report {
        rollback: &made,
        pushed: pushed.is_some(),
        remote: pushed.unwrap_or_else(|| redact_url(&args.remote)),
        pull_request_url,
        next,
    };
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print!("{}", human(&report)),
    }
    Ok(Outcome::Clean)
}

fn human(report: &Report<'_>) -> String {
    let r = report.rollback;
    let mut out = format!(
        "rollback of {}: {} -> {}\n",
        r.environment, r.from.version, r.to.version
    );
    let made = if r.created {
        "new commit"
    } else {
        "already there, commit"
    };
    let mut rows: Vec<(&str, String)> = vec![
        (
            "branch",
            format!(
                "{} ({made} {} on {} {})",
                r.branch,
                prefix(&r.commit, 8),
                r.base,
                prefix(&r.parent, 8)
            ),
        ),
        (
            "restored",
            format!("{} from {}", r.restored, prefix(&r.to.revision, 8)),
        ),
    ];
    for m in &r.materialised {
        rows.push((
            "materialised",
            format!("{} ({} changed since)", m.file, m.base),
        ));
    }
    if let Some(pinned) = r.pinned {
        let word = serde_json::to_value(pinned).unwrap_or_default();
        rows.push((
            "pinned",
            format!(
                "enforcement: {} in environments/{}/environment.yaml",
                word.as_str().unwrap_or_default(),
                r.environment
            ),
        ));
    }
    if let Some(undeployed) = &r.undeployed {
        rows.push((
            "note",
            format!(
                "{} renders {} (not yet applied); the rollback replaces that too",
                r.base, undeployed.version
            ),
        ));
    }
    if report.pushed {
        rows.push(("pushed", format!("{} to {}", r.branch, report.remote)));
    }
    for (label, text) in rows {
        out.push_str(&format!("  {label:<13}{text}\n"));
    }
    out.push_str(&format!("next: {}\n", report.next));
    out
}
