//! `sluice rollback ENV`: a branch whose one new commit puts ENV back on a
//! version it ran whole before, checked by rendering; optionally pushed.
//! Exit 0 when the branch is made, 1 when the render check refuses it,
//! 2 on usage or environment errors.

use super::{
    Cli, Outcome, StateArgs,
    publish::{Published, PushArgs, refusal_is_a_finding},
};
use crate::{
    rollback::{self, Request, Rollback, RollbackError, Selector},
    source::prefix,
};
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment to roll back.
    #[command(flatten)]
    pub environment: super::environment::Environment,
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
    /// Also pin the environment at the rollback's target, so auto-sync
    /// holds it there while the branch is reviewed (ends by itself once
    /// the branch is merged and the head renders it).
    #[arg(long)]
    pub pin: bool,
    /// Why, for the pin.
    #[arg(long, requires = "pin")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub publish: PushArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    #[command(flatten)]
    pub state: StateArgs,
}

pub use super::output::TextOrData as Format;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    #[serde(flatten)]
    rollback: &'a Rollback,
    #[serde(flatten)]
    published: Published,
    #[serde(rename = "pin", skip_serializing_if = "Option::is_none")]
    pinned_at: Option<super::pin::Pinned>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    refusal_is_a_finding(make(cli, args), RollbackError::is_check_failure)
}

fn make(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let ledger = args.state.read_ledger()?;
    super::environment::check_recorded(args.environment.name(), ledger.as_ref())?;
    let selector = match &args.to {
        Some(given) => Selector::Revision {
            given: given.clone(),
            commit: None,
        },
        None => Selector::Steps(args.steps as usize),
    };
    let request = Request {
        repo: cli.repo.clone(),
        environment: args.environment.name().to_owned(),
        selector,
        branch: args.branch.clone(),
        base: args.base.clone(),
        message: args.message.clone(),
        limits: cli.limits(),
    };
    let made = rollback::prepare(&request, ledger.as_ref())?;
    drop(ledger);
    let published = args.publish.publish(cli, &made.base, &made.branch)?;
    let pinned_at = if args.pin {
        let reason = args
            .reason
            .clone()
            .or_else(|| Some(format!("rollback {} in review", made.branch)));
        Some(super::pin::pin_locally(
            &args.state,
            &made.environment,
            Some(&made.to.digest),
            reason,
        )?)
    } else {
        None
    };
    let report = Report {
        rollback: &made,
        published,
        pinned_at,
    };
    match args.output {
        Format::Json => super::output::print_json(&report)?,
        Format::Yaml => super::output::print_yaml(&report)?,
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
    if report.published.pushed {
        rows.push((
            "pushed",
            format!("{} to {}", r.branch, report.published.remote),
        ));
    }
    for (label, text) in rows {
        out.push_str(&format!("  {label:<13}{text}\n"));
    }
    if let Some(made) = &report.pinned_at {
        out.push_str(&super::pin::pinned_text(made));
    }
    out.push_str(&format!("next: {}\n", report.published.next));
    out
}
