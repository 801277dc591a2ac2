//! `sluice status` and `sluice history`: what runs where, from the ledger
//! file or a running server.

use super::{Cli, Outcome, StateArgs, output::table};
use crate::source::prefix;
use crate::{
    ledger::{Attempt, DriftEpisode},
    reconcile::{
        Clock, SystemClock,
        clock::{age, rfc3339},
        status::{StatusView, short_digest, version},
    },
};
use clap::ValueEnum;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub environment: super::environment::Only,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(flatten)]
    pub from: LedgerSource,
}

/// Where `status` and `history` read the ledger.
#[derive(Debug, clap::Args)]
pub struct LedgerSource {
    /// Read a running `sluice run` (e.g. http://127.0.0.1:7878) instead of the state file.
    #[arg(long)]
    pub server: Option<String>,
    /// Environment variable holding the API token for --server.
    #[arg(long, default_value = "SLUICE_API_TOKEN")]
    pub token_env: String,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The environment whose history to show.
    #[command(flatten)]
    pub environment: super::environment::Environment,
    /// Only this gateway of the environment.
    #[arg(long)]
    pub gateway: Option<String>,
    /// Newest entries shown, at most.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Drift episodes (onset, resolution) instead of apply attempts.
    #[arg(long, conflicts_with = "evals")]
    pub drift: bool,
    /// Eval suite runs (suite, cases passed and failed, the version they ran
    /// against) instead of apply attempts.
    #[arg(long)]
    pub evals: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(flatten)]
    pub from: LedgerSource,
}

pub fn status(_cli: &Cli, args: &StatusArgs) -> anyhow::Result<Outcome> {
    let only = args.environment.name();
    let view = match &args.from.server {
        Some(server) => {
            let view = super::client::status(server, &args.from.token_env, only)?;
            if let Some(env) = only
                && view.gateways.is_empty()
            {
                check_served(server, &args.from.token_env, env)?;
            }
            view
        }
        None => {
            let ledger = args.from.state.read_ledger()?;
            if let Some(env) = only {
                super::environment::check_recorded(env, ledger.as_ref())?;
            }
            StatusView::read(ledger.as_ref(), only)?
        }
    };
    match args.output {
        Format::Json => super::output::print_json(&view)?,
        Format::Yaml => super::output::print_yaml(&view)?,
        Format::Table => print!("{}", status_table(&view, SystemClock.now())),
    }
    Ok(if view.converged() {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

fn status_table(view: &StatusView, now: i64) -> String {
    let mut out = String::new();
    if let Some(error) = &view.ledger_error {
        out.push_str(&format!(
            "the ledger cannot write ({error}): no gateway is changed until it can\n"
        ));
    }
    if let Some(revision) = &view.revision {
        let short = prefix(&revision.commit, 8);
        if revision.valid {
            out.push_str(&format!(
                "revision {short} (seen {} ago)\n",
                age(now - revision.seen_at)
            ));
        } else {
            out.push_str(&format!(
                "revision {short} is INVALID ({}): the last good version keeps running; see `sluice validate --rev {short}`\n",
                crate::config::finding::count(revision.errors, "error")
            ));
        }
    }
    for pin in &view.pins {
        out.push_str(&format!(
            "{} is PINNED at {} by {}, {} ago{}\n",
            pin.environment,
            version(Some(&pin.digest), Some(&pin.revision)),
            pin.by,
            age(now - pin.at),
            pin.reason
                .as_deref()
                .map_or_else(String::new, |r| format!(": {r}"))
        ));
        let note = view
            .gateways
            .iter()
            .filter(|g| g.environment == pin.environment)
            .filter(|g| g.state == crate::ledger::GatewayState::Pinned)
            .find_map(|g| g.error.as_deref());
        if let Some(note) = note {
            out.push_str(&format!("  {note}\n"));
        }
        out.push_str(&format!(
            "  `sluice unpin {}` lets it follow the branch again\n",
            pin.environment
        ));
    }
    let rows: Vec<[String; 6]> = view
        .gateways
        .iter()
        .map(|g| {
            [
                g.environment.clone(),
                g.gateway.clone(),
                version(g.desired_digest.as_deref(), g.desired_revision.as_deref()),
                short_digest(g.observed_digest.as_deref()),
                g.state.as_str().to_owned(),
                format!(
                    "{} ({} ago)",
                    rfc3339(g.changed_at),
                    age(now - g.changed_at)
                ),
            ]
        })
        .collect();
    let rows: Vec<[&str; 6]> = rows
        .iter()
        .map(|r| r.each_ref().map(String::as_str))
        .collect();
    out.push_str(&table(
        &[
            "ENVIRONMENT",
            "GATEWAY",
            "DESIRED",
            "LIVE",
            "STATE",
            "LAST CHANGE",
        ],
        &rows,
    ));
    out
}

/// An environment the server's status has no gateway of is an error
/// naming those it has.
fn check_served(server: &str, token_env: &str, env: &str) -> anyhow::Result<()> {
    let all = super::client::status(server, token_env, None)?;
    super::environment::check(
        env,
        all.gateways.iter().map(|g| g.environment.as_str()),
        &format!("at {server} (nothing recorded for it)"),
    )
}

pub fn history(_cli: &Cli, args: &HistoryArgs) -> anyhow::Result<Outcome> {
    let env = args.environment.name();
    if args.drift {
        return drift_history(args, env);
    }
    if args.evals {
        return eval_history(args, env);
    }
    let attempts = match &args.from.server {
        Some(server) => {
            let attempts = super::client::history(
                server,
                &args.from.token_env,
                env,
                args.gateway.as_deref(),
                args.limit,
            )?;
            if attempts.is_empty() {
                check_served(server, &args.from.token_env, env)?;
            }
            attempts
        }
        None => {
            let ledger = args.from.state.read_ledger()?;
            super::environment::check_recorded(env, ledger.as_ref())?;
            ledger.history(env, args.gateway.as_deref(), args.limit)?
        }
    };
    match args.output {
        Format::Json => super::output::print_json(&attempts)?,
        Format::Yaml => super::output::print_yaml(&attempts)?,
        Format::Table => print!("{}", history_table(&attempts)),
    }
    Ok(Outcome::Clean)
}

/// The environment's drift episodes, newest first (from the state file).
fn drift_history(args: &HistoryArgs, env: &str) -> anyhow::Result<Outcome> {
    if args.from.server.is_some() {
        anyhow::bail!("--drift reads the state file; drop --server");
    }
    let ledger = args.from.state.read_ledger()?;
    super::environment::check_recorded(env, ledger.as_ref())?;
    let episodes: Vec<DriftEpisode> = ledger
        .drift_episodes(Some(env), false, args.limit)?
        .into_iter()
        .filter(|e| args.gateway.as_deref().is_none_or(|g| g == e.gateway))
        .collect();
    match args.output {
        Format::Json => super::output::print_json(&episodes)?,
        Format::Yaml => super::output::print_yaml(&episodes)?,
        Format::Table => {
            let rows: Vec<[String; 5]> = episodes
                .iter()
                .map(|e| {
                    [
                        rfc3339(e.onset_at),
                        e.gateway.clone(),
                        short_digest(e.live_digest.as_deref()),
                        e.resolved_at.map_or_else(|| "open".to_owned(), rfc3339),
                        e.resolution
                            .map(|r| r.as_str().to_owned())
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            let rows: Vec<[&str; 5]> = rows
                .iter()
                .map(|r| r.each_ref().map(String::as_str))
                .collect();
            print!(
                "{}",
                table(&["ONSET", "GATEWAY", "LIVE", "RESOLVED", "HOW"], &rows)
            );
        }
    }
    Ok(Outcome::Clean)
}

/// The environment's eval runs, newest first (from the state file).
fn eval_history(args: &HistoryArgs, env: &str) -> anyhow::Result<Outcome> {
    if args.from.server.is_some() {
        anyhow::bail!("--evals reads the state file; drop --server");
    }
    let ledger = args.from.state.read_ledger()?;
    super::environment::check_recorded(env, ledger.as_ref())?;
    let runs = ledger.eval_runs(env, None, args.limit)?;
    match args.output {
        Format::Json => super::output::print_json(&runs)?,
        Format::Yaml => super::output::print_yaml(&runs)?,
        Format::Table => {
            let rows: Vec<[String; 5]> = runs
                .iter()
                .map(|r| {
                    [
                        rfc3339(r.at),
                        r.suite.clone(),
                        format!("{}/{}", r.passed, r.passed + r.failed),
                        version(Some(&r.digest), Some(&r.revision)),
                        r.failures
                            .first()
                            .map(|f| {
                                crate::source::prefix(
                                    &format!("{}: {}: {}", f.gateway, f.case, f.reason),
                                    100,
                                )
                                .to_owned()
                            })
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            let rows: Vec<[&str; 5]> = rows
                .iter()
                .map(|r| r.each_ref().map(String::as_str))
                .collect();
            print!(
                "{}",
                table(
                    &["AT", "SUITE", "PASSED", "VERSION", "FIRST FAILURE"],
                    &rows
                )
            );
        }
    }
    Ok(Outcome::Clean)
}

fn history_table(attempts: &[Attempt]) -> String {
    let rows: Vec<[String; 6]> = attempts
        .iter()
        .map(|a| {
            [
                rfc3339(a.start.started_at),
                a.start.gateway.clone(),
                version(Some(&a.start.digest), Some(&a.start.revision)),
                a.start.trigger.as_str().to_owned(),
                a.outcome.map_or("in-flight", |o| o.as_str()).to_owned(),
                a.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let rows: Vec<[&str; 6]> = rows
        .iter()
        .map(|r| r.each_ref().map(String::as_str))
        .collect();
    table(
        &[
            "STARTED", "GATEWAY", "VERSION", "TRIGGER", "OUTCOME", "ERROR",
        ],
        &rows,
    )
}
