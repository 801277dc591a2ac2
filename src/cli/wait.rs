//! `sluice wait ENV --for in-sync`: reads the ledger (or a server's
//! status) every interval until every gateway of ENV is in sync, as
//! `kubectl wait --for condition=…` waits for a condition. While nothing
//! is recorded yet (a `sluice run` before its first pass) it keeps
//! waiting; an environment that is not among those recorded is an error.
//!
//! Exit codes: 0 the condition is met, 1 the timeout passed first (what is
//! not met is printed), 2 it cannot run (an unknown environment, an
//! unreachable server).

use super::{
    Outcome,
    engine::parse_duration,
    output::{TextOrData as Format, duration, table},
    status::LedgerSource,
};
use crate::{config::Digest, ledger::GatewayState, reconcile::status::StatusView};
use clap::ValueEnum;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub environment: super::environment::Environment,
    /// The condition to wait for: `in-sync`, every gateway runs what it
    /// should (its desired version, or its environment's pin).
    #[arg(long = "for", value_enum, default_value_t = Condition::InSync)]
    pub condition: Condition,
    /// The longest to wait (then exit 1).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How often to read the ledger or the server.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    #[command(flatten)]
    pub from: LedgerSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Condition {
    /// Every gateway of the environment is in sync (or pinned).
    InSync,
}

impl Condition {
    fn as_str(self) -> &'static str {
        match self {
            Condition::InSync => "in-sync",
        }
    }

    fn met_by(self, gateway: GatewayState) -> bool {
        match self {
            Condition::InSync => gateway.settled(),
        }
    }
}

/// What `-o json` prints.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    environment: &'a str,
    condition: &'static str,
    met: bool,
    /// Every gateway of the environment, as last read.
    gateways: Vec<GatewayReport<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GatewayReport<'a> {
    gateway: &'a str,
    state: GatewayState,
    live_digest: Option<&'a Digest>,
    /// The commit the live digest came from, where known.
    live_revision: Option<&'a str>,
    error: Option<&'a str>,
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let env = args.environment.name();
    let deadline = Instant::now() + args.timeout;
    let (met, view) = loop {
        let view = read(args, env)?;
        let met = view.as_ref().is_some_and(|view| {
            !view.gateways.is_empty()
                && view.gateways.iter().all(|g| args.condition.met_by(g.state))
        });
        let left = deadline.saturating_duration_since(Instant::now());
        if met || left.is_zero() {
            break (
                met,
                view.unwrap_or_else(|| StatusView::build(None, Vec::new(), &[])),
            );
        }
        std::thread::sleep(args.interval.min(left));
    };
    match args.output {
        Format::Json => super::output::print_json(&report(args, env, met, &view))?,
        Format::Yaml => super::output::print_yaml(&report(args, env, met, &view))?,
        Format::Text => print!("{}", text(args, env, met, &view)),
    }
    Ok(if met {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

/// The environment's status, or `None` while nothing at all is recorded
/// (no ledger yet, or one without gateways).
fn read(args: &Args, env: &str) -> anyhow::Result<Option<StatusView>> {
    let known = |all: &[crate::ledger::GatewayRecord], at: &str| {
        super::environment::check(env, all.iter().map(|g| g.environment.as_str()), at)
    };
    match &args.from.server {
        Some(server) => {
            let token_env = &args.from.token_env;
            let view = super::client::status(server, token_env, Some(env))?;
            if view.gateways.is_empty() {
                let all = super::client::status(server, token_env, None)?;
                if all.gateways.is_empty() {
                    return Ok(None);
                }
                known(
                    &all.gateways,
                    &format!("at {server} (nothing recorded for it)"),
                )?;
            }
            Ok(Some(view))
        }
        None => {
            let Some(ledger) = args.from.state.read_ledger_if_any()? else {
                return Ok(None);
            };
            let all = ledger.gateways(None)?;
            if all.is_empty() {
                return Ok(None);
            }
            known(&all, "in the ledger (nothing recorded for it)")?;
            Ok(Some(StatusView::read(ledger.as_ref(), Some(env))?))
        }
    }
}

fn report<'a>(args: &Args, env: &'a str, met: bool, view: &'a StatusView) -> Report<'a> {
    Report {
        environment: env,
        condition: args.condition.as_str(),
        met,
        gateways: view
            .gateways
            .iter()
            .map(|g| GatewayReport {
                gateway: &g.gateway,
                state: g.state,
                live_digest: g.observed_digest.as_ref(),
                live_revision: view
                    .live_revisions
                    .iter()
                    .find(|l| l.gateway == g.gateway)
                    .map(|l| l.revision.as_str()),
                error: g.error.as_deref(),
            })
            .collect(),
    }
}

fn text(args: &Args, env: &str, met: bool, view: &StatusView) -> String {
    let condition = match args.condition {
        Condition::InSync => "in sync",
    };
    let gateways = &view.gateways;
    let count = crate::config::finding::count(gateways.len(), "gateway");
    if met {
        let mut versions: Vec<String> = gateways.iter().map(|g| view.live_version(g)).collect();
        versions.dedup();
        return match versions.as_slice() {
            [one] => format!("{env} is {condition}: {count} at {one}\n"),
            _ => format!("{env} is {condition}: {count}\n"),
        };
    }
    let waited = duration(args.timeout);
    if gateways.is_empty() {
        return format!(
            "timed out after {waited} waiting for {env} to be {condition}: nothing is recorded yet (has Sluice made its first pass?)\n"
        );
    }
    let missing: Vec<_> = gateways
        .iter()
        .filter(|g| !args.condition.met_by(g.state))
        .collect();
    let rows: Vec<[String; 4]> = missing
        .iter()
        .map(|g| {
            [
                g.gateway.clone(),
                g.state.as_str().to_owned(),
                view.live_version(g),
                g.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    format!(
        "timed out after {waited} waiting for {env} to be {condition}: {} of {count} not {condition}\n{}",
        missing.len(),
        table(&["GATEWAY", "STATE", "LIVE", "ERROR"], &rows)
    )
}
