//! `sluice pin ENV` and `sluice unpin ENV`: hold an environment at a
//! version it ran whole, so auto-sync does not fight an incident fix while
//! the rollback branch is reviewed; and let it follow the branch again.
//! With `--server` through a running `sluice run`'s API (the token's name
//! is recorded as who); without, in the ledger file (as `$USER`).

use super::{Outcome, StateArgs, output::TextOrData as Format};
use crate::{
    ledger::{Ledger, Pin, PinEnd, SqliteLedger},
    reconcile::{Clock, SystemClock, pin::pin_in, status::short_digest},
    source::prefix,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  sluice pin production --reason 'incident 42: rollback in review'
  sluice pin production --to sha256:3f2a9c1b7d4e --server http://127.0.0.1:7878
  sluice unpin production")]
pub struct PinArgs {
    /// The environment to pin.
    #[command(flatten)]
    pub environment: super::environment::Environment,
    /// The version: a digest (full, or `sha256:` and 12 hex) or the
    /// revision of a deployment [default: what it runs now].
    #[arg(long)]
    pub to: Option<String>,
    /// Why (shown by `sluice status`).
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  sluice unpin production
  sluice unpin production --server http://127.0.0.1:7878")]
pub struct UnpinArgs {
    /// The environment to unpin.
    #[command(flatten)]
    pub environment: super::environment::Environment,
    #[command(flatten)]
    pub target: Target,
}

/// Where the pin is written.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// Through a running `sluice run` (e.g. http://127.0.0.1:7878) instead
    /// of the ledger file.
    #[arg(long)]
    pub server: Option<String>,
    /// Environment variable holding the API token for --server.
    #[arg(long, default_value = "SLUICE_API_TOKEN")]
    pub token_env: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    #[command(flatten)]
    pub state: StateArgs,
}

/// What a pin did (the API's answer too).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pinned {
    pub pin: Pin,
    pub replaced: Option<Pin>,
}

/// What an unpin did (the API's answer too).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unpinned {
    pub environment: String,
    pub unpinned: Option<Pin>,
}

/// Who pins from this machine.
pub fn local_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "local".to_owned())
}

/// The ledger file, for writing pins beside a running `sluice run`
/// (SQLite lets both write).
fn ledger(state: &StateArgs) -> anyhow::Result<SqliteLedger> {
    if let Some(namespace) = &state.cluster {
        anyhow::bail!(
            "in Kubernetes mode pin with the Environment's spec.pin (kubectl -n {namespace} edit environment ...)"
        );
    }
    if !state.state_path().exists() {
        anyhow::bail!(
            "no ledger at {} (`sluice run` creates it); pin an environment that ran",
            state.state_path().display()
        );
    }
    Ok(SqliteLedger::open(&state.state_path())?)
}

pub fn pin(args: &PinArgs) -> anyhow::Result<Outcome> {
    let made = match &args.target.server {
        Some(server) => super::client::pin(
            server,
            &args.target.token_env,
            args.environment.name(),
            args.to.as_deref(),
            args.reason.as_deref(),
        )?,
        None => pin_locally(
            &args.target.state,
            args.environment.name(),
            args.to.as_deref(),
            args.reason.clone(),
        )?,
    };
    match args.target.output {
        Format::Json => super::output::print_json(&made)?,
        Format::Yaml => super::output::print_yaml(&made)?,
        Format::Text => print!("{}", pinned_text(&made)),
    }
    Ok(Outcome::Clean)
}

/// Pins in the ledger file, as the OS user.
pub fn pin_locally(
    state: &StateArgs,
    environment: &str,
    to: Option<&str>,
    reason: Option<String>,
) -> anyhow::Result<Pinned> {
    let ledger = ledger(state)?;
    super::environment::check_recorded(environment, &ledger)?;
    let (pin, replaced) = pin_in(
        &ledger,
        environment,
        to,
        reason,
        &local_user(),
        SystemClock.now(),
    )?;
    Ok(Pinned { pin, replaced })
}

pub fn pinned_text(made: &Pinned) -> String {
    let pin = &made.pin;
    let mut out = format!(
        "pinned {} at {}@{} (by {}{})\n",
        pin.environment,
        short_digest(Some(&pin.digest)),
        prefix(&pin.revision, 8),
        pin.by,
        pin.reason
            .as_deref()
            .map_or_else(String::new, |r| format!(": {r}"))
    );
    if let Some(old) = &made.replaced {
        out.push_str(&format!(
            "  replaced the pin at {}@{} by {}\n",
            short_digest(Some(&old.digest)),
            prefix(&old.revision, 8),
            old.by
        ));
    }
    out.push_str(&format!(
        "next: the next pass holds its gateways there; `sluice unpin {}` lets it follow the branch again\n",
        pin.environment
    ));
    out
}

pub fn unpin(args: &UnpinArgs) -> anyhow::Result<Outcome> {
    let done = match &args.target.server {
        Some(server) => {
            super::client::unpin(server, &args.target.token_env, args.environment.name())?
        }
        None => {
            let ledger = ledger(&args.target.state)?;
            super::environment::check_recorded(args.environment.name(), &ledger)?;
            let unpinned = ledger.unpin(
                args.environment.name(),
                SystemClock.now(),
                &local_user(),
                PinEnd::Unpinned,
            )?;
            Unpinned {
                environment: args.environment.name().to_owned(),
                unpinned,
            }
        }
    };
    match args.target.output {
        Format::Json => super::output::print_json(&done)?,
        Format::Yaml => super::output::print_yaml(&done)?,
        Format::Text => match &done.unpinned {
            Some(pin) => println!(
                "unpinned {} (was at {}@{}, pinned by {}); it follows the branch again",
                done.environment,
                short_digest(Some(&pin.digest)),
                prefix(&pin.revision, 8),
                pin.by
            ),
            None => println!("{} was not pinned", done.environment),
        },
    }
    Ok(Outcome::Clean)
}
