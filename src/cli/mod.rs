//! The `sluice` command line: clap definitions in one place, one module per
//! subcommand. Exit codes: 0 fine, 1 findings, 2 usage or environment error.

mod access;
mod allow;
mod client;
mod completion;
mod controller;
mod crds;
mod diff;
mod drift;
mod engine;
mod environment;
mod eval;
mod examples;
mod gateway;
mod init;
mod man;
mod output;
mod pin;
mod plan;
mod promote;
mod publish;
mod render;
mod rollback;
mod run;
mod schema;
mod status;
mod sync;
mod validate;
mod version;
mod wait;

use clap::{Parser, Subcommand, ValueEnum};
use std::{path::PathBuf, process::ExitCode};

pub use output::Colour;

/// What a command concluded, mapped onto the documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 0: everything is fine.
    Clean,
    /// 1: the command ran and found problems (invalid config, drift, …).
    Findings,
}

/// Exit code for usage and environment errors (bad flags, missing revision,
/// unreadable repository).
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version = version::LINE,
    about = "GitOps for AI-gateway governance policy"
)]
#[command(propagate_version = true)]
pub struct Cli {
    /// The config repository.
    #[arg(
        long,
        global = true,
        default_value = ".",
        env = "SLUICE_REPO",
        help_heading = GLOBAL
    )]
    pub repo: PathBuf,
    /// Largest file Sluice reads from the repository, in bytes.
    #[arg(
        long,
        global = true,
        default_value_t = 1024 * 1024,
        env = "SLUICE_MAX_FILE_SIZE",
        help_heading = GLOBAL
    )]
    pub max_file_size: u64,
    /// Colour in human output and logs: auto uses it on a terminal unless
    /// NO_COLOR is set.
    #[arg(long, global = true, value_enum, default_value_t = Colour::Auto, help_heading = GLOBAL)]
    pub color: Colour,
    /// Log format on standard error (the level: SLUICE_LOG, e.g. `debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, help_heading = GLOBAL)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The heading global flags are listed under in every command's help,
/// apart from the command's own.
const GLOBAL: &str = "Global options";

/// Flags a command is given (global ones, or a group it shares) that mean
/// nothing to it, and why: its help does not show them, and giving one is
/// an error rather than silently ignored.
#[rustfmt::skip]
const NOT_FOR: &[(&str, &str, &str)] = &[
    ("init", "repo", "it makes the repository in DIR (`sluice init DIR`)"),
    ("init", "max_file_size", "it reads no repository"),
    ("gateway", "repo", "the reference gateway reads no repository"),
    ("gateway", "max_file_size", "the reference gateway reads no repository"),
    ("schema", "repo", "the schemas are Sluice's, not a repository's"),
    ("schema", "max_file_size", "it reads no repository"),
    ("crds", "repo", "the CRDs are Sluice's, not a repository's"),
    ("crds", "max_file_size", "it reads no repository"),
    ("completion", "repo", "it reads no repository"),
    ("completion", "max_file_size", "it reads no repository"),
    ("version", "repo", "it reads no repository"),
    ("version", "max_file_size", "it reads no repository"),
    ("controller", "repo", "it follows the cluster's ConfigRepository objects"),
    ("controller", "cluster", "it keeps its ledger in the Environments' status"),
    ("run", "cluster", "it keeps its own ledger (--state, --data-dir)"),
    ("sync", "cluster", "it keeps its own ledger (--state, --data-dir)"),
    ("status", "max_file_size", "it reads the ledger, not the repository"),
    ("history", "max_file_size", "it reads the ledger, not the repository"),
    ("wait", "max_file_size", "it reads the ledger, not the repository"),
    ("pin", "max_file_size", "it writes the ledger, not the repository"),
    ("pin", "cluster", "in Kubernetes mode pin with the Environment's spec.pin"),
    ("unpin", "max_file_size", "it writes the ledger, not the repository"),
    ("unpin", "cluster", "in Kubernetes mode remove the Environment's spec.pin"),
    ("drift", "alert_retry_for", "it reads gateways and sends no alerts"),
    ("diff", "state", "it reads the gateways, not the ledger"),
    ("diff", "cluster", "it reads the gateways, not the ledger"),
    ("man", "repo", "it reads no repository"),
    ("man", "max_file_size", "it reads no repository"),
];

/// The command line's definition, with [`NOT_FOR`] applied: what `main`
/// parses and completions and the CLI tests are made from.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut command = Cli::command();
    for (name, id, _) in NOT_FOR {
        let global = command.get_arguments().find(|a| a.get_id() == id).cloned();
        command = command.mut_subcommand(name, |sub| match global {
            // NB: clap gives a global flag to every subcommand that has
            // none of that name: a hidden one of its own takes its place.
            Some(arg) => sub.arg(arg.global(false).hide(true)),
            None => sub.mut_arg(id, |arg| arg.hide(true)),
        });
    }
    command
}

/// A flag of [`NOT_FOR`] given to its command is a usage error.
fn refuse_what_does_not_apply(matches: &clap::ArgMatches) -> Result<(), clap::Error> {
    let Some((name, sub)) = matches.subcommand() else {
        return Ok(());
    };
    for (_, id, why) in NOT_FOR.iter().filter(|(command, ..)| *command == name) {
        let given = [matches, sub].iter().any(|m| {
            m.try_contains_id(id).is_ok()
                && m.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
        });
        if given {
            let flag = id.replace('_', "-");
            return Err(command().error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("--{flag} does not apply to `sluice {name}`: {why}"),
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the repository: schema, then semantic rules; every finding at once.
    #[command(after_help = examples::VALIDATE)]
    Validate(validate::Args),
    /// Print each gateway's desired state and its digest.
    #[command(after_help = examples::RENDER)]
    Render(render::Args),
    /// Write the JSON Schemas of the repository's files, for editors.
    #[command(after_help = examples::SCHEMA)]
    Schema(schema::Args),
    /// Scaffold a working config repository and make its first commit.
    #[command(after_help = examples::INIT)]
    Init(init::Args),
    /// Follow a branch and keep every environment's gateways on it (standalone mode).
    #[command(after_help = examples::RUN)]
    Run(run::Args),
    /// One reconcile pass and exit; exit 0 only when everything converged.
    #[command(after_help = examples::SYNC)]
    Sync(sync::Args),
    /// What runs where: environment × gateway, desired and live versions.
    #[command(after_help = examples::STATUS)]
    Status(status::StatusArgs),
    /// Wait until every gateway of an environment is in sync; exit 1 when the timeout passes first.
    #[command(after_help = examples::WAIT)]
    Wait(wait::Args),
    /// What ran where and when in one environment.
    #[command(after_help = examples::HISTORY)]
    History(status::HistoryArgs),
    /// What a change between two revisions does, per environment; exit 1 when it weakens production unapproved.
    #[command(after_help = examples::PLAN)]
    Plan(plan::Args),
    /// Read every gateway back and show what drifted from what Sluice verified; exit 1 on drift or an unreachable gateway.
    #[command(after_help = examples::DRIFT)]
    Drift(drift::Args),
    /// Show what each gateway runs against what the work tree (or --rev) renders for it, before committing; exit 1 when any differs.
    #[command(after_help = examples::DIFF)]
    Diff(diff::Args),
    /// Run the repository's eval suites against one environment's gateways; exit 1 when a case fails.
    Eval(eval::Args),
    /// Bring one environment's packs into the next one of the promotion
    /// order: a new branch with one commit, checked by rendering, to review.
    #[command(after_help = examples::PROMOTE)]
    Promote(promote::Args),
    /// Put an environment back on a version it ran whole before: a new
    /// branch with one commit, checked by rendering; history is never rewritten.
    #[command(after_help = examples::ROLLBACK)]
    Rollback(rollback::Args),
    /// Hold an environment at a version it ran whole: auto-sync applies
    /// that, not the branch's head, until it is unpinned (or the head renders it).
    Pin(pin::PinArgs),
    /// Let a pinned environment follow the branch again.
    Unpin(pin::UnpinArgs),
    /// Kubernetes mode: reconcile the Environments of the cluster (sluice.dev CRDs).
    #[command(after_help = examples::CONTROLLER)]
    Controller(controller::Args),
    /// Run the reference gateway: speaks the Sluice gateway protocol, keeps its config on disk,
    /// and enforces it on POST /v1/chat/completions.
    #[command(long_about = gateway::LONG_ABOUT, after_help = gateway::AFTER_HELP)]
    Gateway(gateway::Args),
    /// Print or write the Kubernetes CustomResourceDefinitions (sluice.dev/v1alpha1).
    #[command(after_help = examples::CRDS)]
    Crds(crds::Args),
    /// Print the shell completion script for bash, zsh, fish or powershell.
    #[command(after_help = examples::COMPLETION)]
    Completion(completion::Args),
    /// Write the man pages: sluice.1, and sluice-COMMAND.1 for each command.
    #[command(after_help = examples::MAN)]
    Man(man::Args),
    /// Print Sluice's version, the git commit it was built from, and when.
    #[command(after_help = examples::VERSION)]
    Version(version::Args),
}

/// Where Sluice keeps its state.
#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    /// The ledger (SQLite); default: <data-dir>/state.db.
    #[arg(long, env = "SLUICE_STATE")]
    pub state: Option<PathBuf>,
    /// Data directory: the ledger, fetched repositories, and `file` gateways
    /// with relative paths [default: .sluice in the --repo directory, or in
    /// the working directory for a remote --repo].
    #[arg(
        long,
        default_value = ".sluice",
        hide_default_value = true,
        env = "SLUICE_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// Read the ledger from the `Environment` objects' status in this
    /// namespace (what `sluice controller` keeps) instead of the SQLite file;
    /// the cluster is the one of KUBECONFIG.
    #[arg(long, value_name = "NAMESPACE")]
    pub cluster: Option<String>,
}

impl StateArgs {
    /// The data directory, made if missing, with a `.gitignore` of `*` in
    /// it: inside a config repository's work tree it is never committed.
    pub fn make_data_dir(&self) -> anyhow::Result<()> {
        use anyhow::Context;
        let dir = &self.data_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
        let ignore = dir.join(".gitignore");
        if !ignore.exists() {
            std::fs::write(&ignore, "# Sluice's data directory: never committed.\n*\n")
                .with_context(|| format!("writing {}", ignore.display()))?;
        }
        Ok(())
    }

    pub fn state_path(&self) -> PathBuf {
        self.state
            .clone()
            .unwrap_or_else(|| self.data_dir.join("state.db"))
    }

    /// The ledger to read: the cluster's with `--cluster`, else the SQLite
    /// file, which must exist.
    pub fn read_ledger(&self) -> anyhow::Result<Box<dyn crate::ledger::Ledger>> {
        match &self.cluster {
            Some(namespace) => read_cluster_ledger(namespace),
            None => Ok(Box::new(crate::ledger::SqliteLedger::open_read_only(
                &self.state_path(),
            )?)),
        }
    }

    /// [`StateArgs::read_ledger`], or `None` when there is no SQLite file yet.
    pub fn read_ledger_if_any(&self) -> anyhow::Result<Option<Box<dyn crate::ledger::Ledger>>> {
        if self.cluster.is_none() && !self.state_path().exists() {
            return Ok(None);
        }
        self.read_ledger().map(Some)
    }
}

/// The records `sluice controller` keeps in the status of namespace's Environments.
fn read_cluster_ledger(namespace: &str) -> anyhow::Result<Box<dyn crate::ledger::Ledger>> {
    use anyhow::Context as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ledger = runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("no Kubernetes API for --cluster (set KUBECONFIG)")?;
        crate::k8s::ledger::StatusLedger::read(&client, Some(namespace))
            .await
            .with_context(|| format!("reading the Environments of namespace {namespace}"))
    })?;
    Ok(Box::new(ledger))
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    use clap::FromArgMatches;
    let parsed = command().try_get_matches().and_then(|matches| {
        refuse_what_does_not_apply(&matches)?;
        Ok((Cli::from_arg_matches(&matches)?, matches))
    });
    let mut cli = match parsed {
        Ok((mut cli, matches)) => {
            cli.locate_data_dir(&matches);
            cli
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_ERROR } else { 0 });
        }
    };
    let cli = &mut cli;
    quiet_on_closed_pipe();
    use std::io::IsTerminal;
    init_tracing(
        cli.log_format,
        cli.color.on(std::io::stderr().is_terminal()),
        cli.command.default_log_level(),
    );
    match run(cli) {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

impl Command {
    /// The log level without SLUICE_LOG: a long-running command's log is
    /// the record of what it changed (each apply and heal, at info, as
    /// Flux's and Argo CD's controllers log); a one-shot command prints
    /// its result and logs only what went wrong.
    fn default_log_level(&self) -> &'static str {
        match self {
            Command::Run(_) | Command::Controller(_) | Command::Gateway(_) => "warn,sluice=info",
            _ => "warn",
        }
    }

    /// Where the command keeps its state, for commands that keep one.
    fn state_mut(&mut self) -> Option<&mut StateArgs> {
        match self {
            Command::Run(args) => Some(&mut args.state),
            Command::Controller(args) => Some(&mut args.state),
            Command::Sync(args) => Some(&mut args.state),
            Command::Status(args) => Some(&mut args.from.state),
            Command::History(args) => Some(&mut args.from.state),
            Command::Wait(args) => Some(&mut args.from.state),
            Command::Drift(args) => Some(&mut args.state),
            Command::Diff(args) => Some(&mut args.state),
            Command::Plan(args) => Some(&mut args.state),
            Command::Rollback(args) => Some(&mut args.state),
            Command::Pin(args) => Some(&mut args.target.state),
            Command::Unpin(args) => Some(&mut args.target.state),
            _ => None,
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<Outcome> {
    match &cli.command {
        Command::Validate(args) => validate::run(cli, args),
        Command::Render(args) => render::run(cli, args),
        Command::Schema(args) => schema::run(args),
        Command::Crds(args) => crds::run(args),
        Command::Init(args) => init::run(args),
        Command::Gateway(args) => gateway::run(args),
        Command::Run(args) => run::run(cli, args),
        Command::Controller(args) => controller::run(cli, args),
        Command::Sync(args) => sync::run(cli, args),
        Command::Status(args) => status::status(cli, args),
        Command::History(args) => status::history(cli, args),
        Command::Wait(args) => wait::run(args),
        Command::Drift(args) => drift::run(cli, args),
        Command::Diff(args) => diff::run(cli, args),
        Command::Eval(args) => eval::run(cli, args),
        Command::Plan(args) => plan::run(cli, args),
        Command::Promote(args) => promote::run(cli, args),
        Command::Rollback(args) => rollback::run(cli, args),
        Command::Pin(args) => pin::pin(args),
        Command::Unpin(args) => pin::unpin(args),
        Command::Completion(args) => completion::run(args),
        Command::Man(args) => man::run(args),
        Command::Version(args) => version::run(args),
    }
}

/// Output into a pipe whose reader went away (`sluice validate | head -1`)
/// ends the process quietly, as it would `cat`, with the shell's code for
/// SIGPIPE (141), instead of a panic: `println!` panics on the write error
/// because Rust ignores SIGPIPE, and a server must keep ignoring it (a
/// client that hangs up must not kill it), so it is the write that is
/// caught, not the signal restored.
fn quiet_on_closed_pipe() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        previous(info);
    }));
}

/// Logs on standard error, coloured by the same decision as human output
/// there (`--color`, NO_COLOR, a terminal or not); SLUICE_LOG (an
/// EnvFilter, e.g. `debug` or `sluice::reconcile=debug`) overrides `level`.
fn init_tracing(format: LogFormat, colour: bool, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Opens the snapshot the flags name and loads the repository from it.
fn load(cli: &Cli, rev: Option<&str>) -> anyhow::Result<crate::config::Loaded> {
    let snapshot = crate::source::open(&cli.repo, rev)?;
    Ok(crate::config::load(snapshot.as_ref(), &cli.limits())?)
}

/// [`load`], checked against the operator's allowances too.
fn load_with(
    cli: &Cli,
    rev: Option<&str>,
    allowances: &crate::config::Allowances,
) -> anyhow::Result<crate::config::Loaded> {
    let snapshot = crate::source::open(&cli.repo, rev)?;
    Ok(crate::config::load_with(
        snapshot.as_ref(),
        &cli.limits(),
        allowances,
    )?)
}

impl Cli {
    /// Without `--data-dir` (or SLUICE_DATA_DIR), the data directory is
    /// `.sluice` in the `--repo` directory, so `sluice --repo R status`
    /// finds what `sluice --repo R run` keeps, from any working directory;
    /// a remote `--repo` keeps it in the working directory.
    fn locate_data_dir(&mut self, matches: &clap::ArgMatches) {
        // NB: only commands with a data directory know the argument.
        let defaulted = matches.subcommand().is_some_and(|(_, sub)| {
            sub.try_contains_id("data_dir").is_ok()
                && sub.value_source("data_dir") == Some(clap::parser::ValueSource::DefaultValue)
        });
        let local = self.repo.is_dir();
        let repo = self.repo.clone();
        if let (true, true, Some(state)) = (defaulted, local, self.command.state_mut()) {
            state.data_dir = repo.join(".sluice");
        }
    }

    fn limits(&self) -> crate::config::Limits {
        crate::config::Limits {
            max_file_bytes: self.max_file_size,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        super::command().debug_assert();
    }
}
