//! `sluice sync`: one reconcile pass, then exit — for cron and CI. Exit 0
//! when every gateway converged, 1 when some did not (or the revision is
//! invalid), 2 when Sluice could not run. With `--server`, asks a running
//! `sluice run` to reconcile now instead and waits for that pass (as
//! `argocd app sync` and `flux reconcile` wait for theirs), reporting it
//! the same way with the same exit codes; exit 2 also when `--wait-timeout`
//! passes first. `--no-wait` only asks (exit 0 once asked). A `sluice
//! controller` does not report its passes: there it says so and only asks.

use super::{
    Cli, Outcome, StateArgs,
    client::Server,
    engine::{Engine, EngineArgs, parse_duration},
    output::{print_findings, table},
};
use crate::source::prefix;
use crate::{
    ledger::{GatewayState, Trigger},
    reconcile::{Pass, Progress},
};
use anyhow::{Context, bail};
use clap::ValueEnum;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Deserialize;
use std::{
    collections::HashMap,
    io::IsTerminal,
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub environment: super::environment::Only,
    /// Run the pass here and exit (the default without --server).
    #[arg(long)]
    pub once: bool,
    /// Ask this running `sluice run` (e.g. http://127.0.0.1:7878) to
    /// reconcile now, and wait for that pass.
    #[arg(long, conflicts_with = "once")]
    pub server: Option<String>,
    /// With --server: only ask for the pass; do not wait for it.
    #[arg(long, requires = "server")]
    pub no_wait: bool,
    /// With --server: the longest to wait for the pass (then exit 2).
    /// (`--timeout` is the gateways' request timeout of a pass run here.)
    #[arg(long, default_value = "5m", value_parser = parse_duration, requires = "server")]
    pub wait_timeout: Duration,
    /// Environment variable holding the API token for --server.
    #[arg(long, default_value = "SLUICE_API_TOKEN")]
    pub token_env: String,
    /// Output: a table per environment, or the pass as JSON.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Longest `sync` waits for its alerts to be delivered before exiting.
pub const ALERT_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(server) = &args.server {
        return runtime.block_on(through(server, args));
    }
    runtime.block_on(async {
        let allowances = args.engine.allowances([args.token_env.as_str()]);
        let engine = Engine::new(cli, &args.state, &args.engine, allowances)?;
        let commit = engine.fetch().await?;
        let loaded = engine.load(&commit).await?;
        if let (Some(env), Some(repo)) = (args.environment.name(), &loaded.repository) {
            super::environment::check(
                env,
                repo.environments.keys().map(String::as_str),
                &format!(
                    "at the head of {} ({})",
                    args.engine.branch,
                    loaded.revision.short()
                ),
            )?;
        }
        let progress = Bars::new(std::io::stderr().is_terminal());
        let pass = engine
            .reconciler
            .pass(&loaded, Trigger::Manual, args.environment.name(), &progress)
            .await?;
        progress.clear();
        engine.alerts.flush(ALERT_GRACE).await;
        if matches!(pass, Pass::ValidationFailed { .. }) {
            print_findings(&loaded, cli.color.stderr());
        }
        print_pass(serde_json::to_value(&pass)?, args.output)
    })
}

/// Longest one request for the pass waits on the server (below its
/// default request timeout of 30 s; it answers sooner under a shorter one).
const LONG_POLL: Duration = Duration::from_secs(20);

/// `--server`: asks the server for a pass and, unless `--no-wait`, waits
/// for it to finish.
async fn through(url: &str, args: &Args) -> anyhow::Result<Outcome> {
    let server = Server::new(url, &args.token_env)?;
    let asked = server.request_sync(args.environment.name()).await?;
    let request = match (args.no_wait, asked.request) {
        (false, Some(request)) => request,
        (no_wait, request) => {
            if !no_wait {
                eprintln!(
                    "{url} does not report its passes (it is a `sluice controller`): the reconcile is requested, not waited for; follow it with `kubectl get environments -w`"
                );
            }
            match (args.output, request) {
                (Format::Json, _) => super::output::print_json(&asked.raw)?,
                (Format::Yaml, _) => super::output::print_yaml(&asked.raw)?,
                (Format::Table, Some(request)) => {
                    println!("reconcile requested (sync request {request})")
                }
                (Format::Table, None) => println!("reconcile requested"),
            }
            return Ok(Outcome::Clean);
        }
    };
    let spinner = std::io::stderr().is_terminal().then(|| {
        let spinner = ProgressBar::new_spinner();
        spinner.set_message(format!("waiting for the pass of sync request {request}"));
        spinner.enable_steady_tick(Duration::from_millis(120));
        spinner
    });
    let deadline = Instant::now() + args.wait_timeout;
    let timed_out = || {
        anyhow::anyhow!(
            "timed out after {} waiting for the pass of sync request {request}: it is still queued or running at {url}; see `sluice status --server {url}`",
            super::output::duration(args.wait_timeout)
        )
    };
    let pass = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(timed_out());
        }
        let asked = server.pass(request, asked.environment.as_deref(), left.min(LONG_POLL));
        match tokio::time::timeout(left, asked).await {
            Err(_) => break Err(timed_out()),
            Ok(Err(e)) => break Err(e),
            Ok(Ok(Some(pass))) => break Ok(pass),
            Ok(Ok(None)) => {}
        }
    };
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    let pass = pass?;
    if pass["result"] == "error" {
        bail!(
            "the server could not run the pass: {}",
            pass["error"].as_str().unwrap_or("no reason given")
        );
    }
    print_pass(pass, args.output)
}

/// Prints a pass (as `-o json` shows it, whichever side ran it) and says
/// what the exit code is.
fn print_pass(pass: serde_json::Value, format: Format) -> anyhow::Result<Outcome> {
    let read: Summary =
        serde_json::from_value(pass.clone()).context("reading the pass's report")?;
    match format {
        Format::Json => super::output::print_json(&pass)?,
        Format::Yaml => super::output::print_yaml(&pass)?,
        Format::Table => print!("{}", summary(&read)),
    }
    Ok(if read.converged() {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

/// What the table shows of a pass, read from its JSON.
#[derive(Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
enum Summary {
    ValidationFailed {
        revision: String,
        errors: usize,
    },
    Reconciled {
        revision: String,
        environments: Vec<EnvironmentSummary>,
    },
}

#[derive(Deserialize)]
struct EnvironmentSummary {
    environment: String,
    gateways: Vec<GatewaySummary>,
}

impl EnvironmentSummary {
    fn in_sync(&self) -> usize {
        self.gateways.iter().filter(|g| g.state.settled()).count()
    }
}

#[derive(Deserialize)]
struct GatewaySummary {
    gateway: String,
    state: GatewayState,
    applied: bool,
}

impl Summary {
    /// [`Pass::converged`].
    fn converged(&self) -> bool {
        match self {
            Summary::ValidationFailed { .. } => false,
            Summary::Reconciled { environments, .. } => {
                environments.iter().all(|e| e.in_sync() == e.gateways.len())
            }
        }
    }
}

fn summary(pass: &Summary) -> String {
    match pass {
        Summary::ValidationFailed { revision, errors } => format!(
            "revision {short} is invalid ({}): nothing applied; the last good version keeps running; see `sluice validate --rev {short}`\n",
            crate::config::finding::count(*errors, "error"),
            short = prefix(revision, 8)
        ),
        Summary::Reconciled {
            revision,
            environments,
        } => {
            let rows: Vec<[String; 4]> = environments
                .iter()
                .map(|e| {
                    let failed: Vec<String> = e
                        .gateways
                        .iter()
                        .filter(|g| !g.state.settled())
                        .map(|g| format!("{} {}", g.gateway, g.state.as_str()))
                        .collect();
                    let applied = e.gateways.iter().filter(|g| g.applied).count();
                    [
                        e.environment.clone(),
                        format!("{}/{} in sync", e.in_sync(), e.gateways.len()),
                        format!("{applied} applied"),
                        failed.join(", "),
                    ]
                })
                .collect();
            format!(
                "revision {}\n{}",
                prefix(revision, 8),
                table(
                    &["ENVIRONMENT", "GATEWAYS", "CHANGES", "NOT IN SYNC"],
                    &rows
                )
            )
        }
    }
}

/// A progress bar per environment, on a terminal only.
struct Bars {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn new(terminal: bool) -> Self {
        Bars {
            multi: terminal.then(MultiProgress::new),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn clear(&self) {
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }
}

impl Progress for Bars {
    fn environment(&self, environment: &str, gateways: usize) {
        let Some(multi) = &self.multi else { return };
        let bar = multi.add(ProgressBar::new(gateways as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(environment.to_owned());
        self.bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(environment.to_owned(), bar);
    }

    fn gateway_done(&self, environment: &str, gateway: &str, state: GatewayState) {
        let bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bar) = bars.get(environment) {
            bar.inc(1);
            if !state.settled() {
                bar.set_message(format!("{gateway}: {}", state.as_str()));
            }
        }
    }
}
