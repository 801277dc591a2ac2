//! `sluice plan`: what a change between two revisions does, per
//! environment; exit 1 when it weakens a production environment without
//! an approval.

use super::{Cli, Outcome, StateArgs, output::print_findings};
use crate::{
    config::{self, Loaded, Repository},
    plan::{self, Plan},
    source::GitSnapshot,
};
use clap::ValueEnum;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
    Yaml,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The revision the change starts from (e.g. the pull request's base).
    #[arg(long)]
    pub base: String,
    /// The revision with the change (e.g. the pull request's head).
    #[arg(long)]
    pub head: String,
    /// Output: text, Markdown (for a pull request comment) or JSON.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Approve weakening changes (CI passes it from a review label); the
    /// value names who approved.
    #[arg(long, num_args = 0..=1, default_missing_value = "--approved")]
    pub approved: Option<String>,
    /// Compare with what runs now, from this ledger, when it exists.
    #[command(flatten)]
    pub state: StateArgs,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let (base, head) = std::thread::scope(|scope| {
        let base = scope.spawn(|| load(cli, &args.base));
        let head = load(cli, &args.head);
        (base.join().expect("loading does not panic"), head)
    });
    let (base, head) = (base?, head?);
    // NB: an invalid revision is a finding (exit 1), as in `validate`.
    let (Some(base_repo), Some(head_repo)) = (valid(cli, &base), valid(cli, &head)) else {
        return Ok(Outcome::Findings);
    };
    let mut plan = Plan::new(
        base_repo,
        &base.revision.to_string(),
        head_repo,
        &head.revision.to_string(),
    );
    plan.approved_by = args
        .approved
        .clone()
        .or_else(|| plan::approval(head.message.as_deref().unwrap_or_default()));
    if let Some(ledger) = args.state.read_ledger_if_any()? {
        plan = plan.with_running(ledger.as_ref())?;
    }
    match args.output {
        Format::Text => print!("{}", plan::text(&plan)),
        Format::Markdown => print!("{}", plan::markdown(&plan)),
        Format::Json => super::output::print_json(&plan)?,
        Format::Yaml => super::output::print_yaml(&plan)?,
    }
    Ok(if plan.blocked() {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

fn load(cli: &Cli, rev: &str) -> anyhow::Result<Loaded> {
    let snapshot = GitSnapshot::open(&cli.repo, rev)?;
    Ok(config::load(&snapshot, &cli.limits())?)
}

/// The repository of a valid revision; the findings of an invalid one.
fn valid<'a>(cli: &Cli, loaded: &'a Loaded) -> Option<&'a Repository> {
    if loaded.repository.is_none() {
        print_findings(loaded, cli.color.stderr());
        eprintln!("revision {} is invalid: no plan", loaded.revision);
    }
    loaded.repository.as_ref()
}
