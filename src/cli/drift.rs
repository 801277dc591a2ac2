//! `sluice drift`: a one-shot, read-only scan: each gateway's live state
//! against what Sluice verified there; the diff of every drifted one.

use super::{
    Cli, Outcome, StateArgs,
    engine::EngineArgs,
    output::{coloured_diff, table},
};
use crate::{
    config::finding::Palette,
    drift::scan::{Found, Observation, observe},
    source::prefix,
};

pub use super::output::TextOrData as Format;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub environment: super::environment::Only,
    /// The revision gateways should run; default: the newest valid revision
    /// in the ledger, else HEAD.
    #[arg(long)]
    pub rev: Option<String>,
    /// Output: the table and each drift's diff, or JSON.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let only = args.environment.name();
    let ledger = args.state.read_ledger_if_any()?;
    let records = match &ledger {
        Some(ledger) => ledger.gateways(only)?,
        None => Vec::new(),
    };
    // NB: what the gateways should run is what the last pass applied: the
    // newest revision if valid, else the last good one the records name.
    let rev = match (&args.rev, &ledger) {
        (Some(rev), _) => Some(rev.clone()),
        (None, Some(ledger)) => ledger
            .last_revision()?
            .filter(|r| r.valid)
            .map(|r| r.commit)
            .or_else(|| records.iter().find_map(|r| r.desired_revision.clone())),
        (None, None) => None,
    };
    let loaded = super::load(cli, Some(rev.as_deref().unwrap_or("HEAD")))?;
    let Some(repo) = &loaded.repository else {
        super::output::print_findings(&loaded, cli.color.stderr());
        anyhow::bail!(
            "revision {} is invalid: nothing to compare with",
            loaded.revision
        );
    };
    if let Some(env) = only {
        super::environment::check(
            env,
            repo.environments.keys().map(String::as_str),
            &super::environment::at(&loaded.revision),
        )?;
    }
    let context = args.engine.driver_context(
        args.state.data_dir.clone(),
        std::sync::Arc::new(args.engine.allowances([])),
    );
    // NB: the newest deployment of each environment, as the reconciler
    // reads it: a gateway whose last read failed is still judged by it.
    let mut deployments = std::collections::HashMap::new();
    if let Some(ledger) = &ledger {
        for slug in repo
            .environments
            .keys()
            .filter(|slug| only.is_none_or(|only| only == slug.as_str()))
        {
            if let Some(newest) = ledger.deployments(slug, 1)?.into_iter().next() {
                deployments.insert(slug.clone(), newest.digest);
            }
        }
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let found = runtime.block_on(observe(
        repo,
        &loaded.revision.to_string(),
        &records,
        &deployments,
        &context,
        only,
        args.engine.reach.concurrency,
    ));
    match args.output {
        Format::Json => super::output::print_json(&found)?,
        Format::Yaml => super::output::print_yaml(&found)?,
        Format::Text => print!("{}", text(&found, cli.color.stdout())),
    }
    // NB: a gateway that could not be read may be drifting: a scan that
    // could not look is not a clean one (exit 1, like drift).
    let troubled = found
        .iter()
        .any(|o| matches!(o.found, Found::Drifted | Found::Unreachable));
    Ok(if troubled {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// A table of every gateway, then the diff of each drifted one.
fn text(found: &[Observation], palette: Palette) -> String {
    let rows: Vec<[String; 5]> = found
        .iter()
        .map(|o| {
            [
                o.environment.clone(),
                o.gateway.clone(),
                found_label(o.found).to_owned(),
                o.desired.short().to_owned(),
                o.live
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |d| d.short().to_owned()),
            ]
        })
        .collect();
    let mut out = table(
        &["ENVIRONMENT", "GATEWAY", "FOUND", "DESIRED", "LIVE"],
        &rows,
    );
    for o in found.iter().filter(|o| o.found == Found::Drifted) {
        out.push_str(&format!(
            "\n{}{}/{} drifted{}: runs {}, Sluice verified {}\n",
            palette.bold,
            o.environment,
            o.gateway,
            palette.reset,
            o.live.as_ref().map_or("?", |d| d.short()),
            o.desired.short(),
        ));
        for change in &o.changes {
            out.push_str(&format!("  {}\n", change.describe()));
        }
        out.push_str(&coloured_diff(&o.diff, palette));
    }
    for o in found.iter().filter(|o| o.error.is_some()) {
        out.push_str(&format!(
            "\n{}/{}: {}\n",
            o.environment,
            o.gateway,
            o.error.as_deref().map_or("", |e| prefix(e, 300))
        ));
    }
    out
}

fn found_label(found: Found) -> &'static str {
    match found {
        Found::InSync => "in-sync",
        Found::Drifted => "drifted",
        Found::Pending => "pending",
        Found::Empty => "empty",
        Found::Unreachable => "unreachable",
    }
}
