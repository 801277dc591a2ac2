//! `sluice sync`: one reconcile pass, then exit — for cron and CI. Exit 0
//! when every gateway converged, 1 when some did not (or the revision is
//! invalid), 2 when Sluice could not run. With `--server`, asks a running
//! `sluice run` to reconcile now instead.

use super::{
    Cli, Outcome, StateArgs,
    engine::{Engine, EngineArgs},
    output::{print_findings, table},
};
use crate::source::prefix;
use crate::{
    ledger::{GatewayState, Trigger},
    reconcile::{Pass, Progress},
};
use clap::ValueEnum;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::{collections::HashMap, io::IsTerminal, sync::Mutex};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub environment: super::environment::Only,
    /// Run the pass here and exit (the default without --server).
    #[arg(long)]
    pub once: bool,
    /// Ask this running `sluice run` (e.g. http://127.0.0.1:7878) to reconcile now.
    #[arg(long, conflicts_with = "once")]
    pub server: Option<String>,
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
        return runtime.block_on(super::client::trigger_sync(
            server,
            &args.token_env,
            args.environment.name(),
        ));
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
        match args.output {
            Format::Json => super::output::print_json(&pass)?,
            Format::Yaml => super::output::print_yaml(&pass)?,
            Format::Table => print!("{}", summary(&pass)),
        }
        Ok(if pass.converged() {
            Outcome::Clean
        } else {
            Outcome::Findings
        })
    })
}

fn summary(pass: &Pass) -> String {
    match pass {
        Pass::ValidationFailed { revision, errors } => format!(
            "revision {short} is invalid ({}): nothing applied; the last good version keeps running; see `sluice validate --rev {short}`\n",
            crate::config::finding::count(*errors, "error"),
            short = prefix(revision, 8)
        ),
        Pass::Reconciled {
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
            let rows: Vec<[&str; 4]> = rows
                .iter()
                .map(|r| r.each_ref().map(String::as_str))
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
