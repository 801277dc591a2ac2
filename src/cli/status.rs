//! `sluice status` and `sluice history`: what runs where, from the ledger
//! file or a running server. `status --watch` keeps reading it and prints
//! the table again when it changes (in place on a terminal), as `kubectl
//! get -w` does.

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
use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    /// The table with more columns, as kubectl's `-o wide`: for `status`,
    /// when each gateway was last read back and its message; for
    /// `history`, each attempt's id and how long it took.
    Wide,
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
    /// Keep reading and print the table again whenever it changes (redrawn
    /// in place on a terminal), until Ctrl-C or --timeout.
    #[arg(short, long)]
    pub watch: bool,
    /// With --watch: how often to read the ledger or the server.
    #[arg(long, default_value = "2s", value_parser = super::engine::parse_duration, requires = "watch")]
    pub interval: Duration,
    /// With --watch: stop after this long, exiting as without --watch on
    /// what was read last.
    #[arg(long, value_parser = super::engine::parse_duration, requires = "watch")]
    pub timeout: Option<Duration>,
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
    let view = if args.watch {
        watch(args)?
    } else {
        let view = read_status(args)?;
        print_status(&view, args.output)?;
        view
    };
    Ok(if view.converged() {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

fn print_status(view: &StatusView, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => super::output::print_json(view)?,
        Format::Yaml => super::output::print_yaml(view)?,
        Format::Table => print!("{}", status_table(view, SystemClock.now(), false)),
        Format::Wide => print!("{}", status_table(view, SystemClock.now(), true)),
    }
    Ok(())
}

/// `--watch`: reads every interval; prints what was read when it differs
/// from what was printed last (on a terminal the table is redrawn at each
/// read, so its ages keep counting); returns the last view.
fn watch(args: &StatusArgs) -> anyhow::Result<StatusView> {
    let deadline = args.timeout.map(|t| Instant::now() + t);
    let redraw =
        matches!(args.output, Format::Table | Format::Wide) && std::io::stdout().is_terminal();
    let mut shown: Option<StatusView> = None;
    loop {
        let view = read_status(args)?;
        let changed = shown
            .as_ref()
            .is_none_or(|s| unchanging(s) != unchanging(&view));
        if redraw {
            // Home, clear the screen, then the table.
            print!("\x1b[H\x1b[2J");
            println!(
                "every {}: sluice status (Ctrl-C to stop)\n",
                super::output::duration(args.interval)
            );
        } else if changed && shown.is_some() {
            println!();
        }
        if redraw || changed {
            print_status(&view, args.output)?;
            std::io::stdout().flush()?;
        }
        shown = Some(view);
        let mut pause = args.interval;
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            pause = pause.min(left);
        }
        std::thread::sleep(pause);
    }
    Ok(shown.expect("read at least once"))
}

/// What `--watch` compares: the view without the times every pass
/// rewrites (when a record was last written, when the revision was seen),
/// so only a change of what runs where counts.
fn unchanging(view: &StatusView) -> StatusView {
    let mut view = view.clone();
    for gateway in &mut view.gateways {
        gateway.updated_at = 0;
    }
    if let Some(revision) = &mut view.revision {
        revision.seen_at = 0;
    }
    view
}

fn read_status(args: &StatusArgs) -> anyhow::Result<StatusView> {
    let only = args.environment.name();
    Ok(match &args.from.server {
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
    })
}

fn status_table(view: &StatusView, now: i64, wide: bool) -> String {
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
    let rows: Vec<Vec<String>> = view
        .gateways
        .iter()
        .map(|g| {
            let mut row = vec![
                g.environment.clone(),
                g.gateway.clone(),
                version(g.desired_digest.as_ref(), g.desired_revision.as_deref()),
                view.live_version(g),
                g.state.as_str().to_owned(),
                format!(
                    "{} ({} ago)",
                    rfc3339(g.changed_at),
                    age(now - g.changed_at)
                ),
            ];
            if wide {
                row.push(format!("{} ago", age(now - g.updated_at)));
                row.push(g.error.clone().unwrap_or_default());
            }
            row
        })
        .collect();
    let mut header = vec![
        "ENVIRONMENT",
        "GATEWAY",
        "DESIRED",
        "LIVE",
        "STATE",
        "LAST CHANGE",
    ];
    if wide {
        header.extend(["LAST READ", "MESSAGE"]);
    }
    out.push_str(&table(&header, &rows));
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
        Format::Table => print!("{}", history_table(&attempts, false)),
        Format::Wide => print!("{}", history_table(&attempts, true)),
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
        Format::Table | Format::Wide => {
            let rows: Vec<[String; 5]> = episodes
                .iter()
                .map(|e| {
                    [
                        rfc3339(e.onset_at),
                        e.gateway.clone(),
                        short_digest(e.live_digest.as_ref()),
                        e.resolved_at.map_or_else(|| "open".to_owned(), rfc3339),
                        e.resolution
                            .map(|r| r.as_str().to_owned())
                            .unwrap_or_default(),
                    ]
                })
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
        Format::Table | Format::Wide => {
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

fn history_table(attempts: &[Attempt], wide: bool) -> String {
    let rows: Vec<Vec<String>> = attempts
        .iter()
        .map(|a| {
            let mut row = vec![
                rfc3339(a.start.started_at),
                a.start.gateway.clone(),
                version(Some(&a.start.digest), Some(&a.start.revision)),
                a.start.trigger.as_str().to_owned(),
                a.outcome.map_or("in-flight", |o| o.as_str()).to_owned(),
            ];
            if wide {
                row.insert(0, a.id.to_string());
                row.push(a.finished_at.map_or_else(String::new, |at| {
                    super::output::duration(std::time::Duration::from_millis(
                        u64::try_from(at - a.start.started_at).unwrap_or(0),
                    ))
                }));
            }
            row.push(a.error.clone().unwrap_or_default());
            row
        })
        .collect();
    let mut header = vec!["STARTED", "GATEWAY", "VERSION", "TRIGGER", "OUTCOME"];
    if wide {
        header.insert(0, "ID");
        header.push("TOOK");
    }
    header.push("ERROR");
    table(&header, &rows)
}
