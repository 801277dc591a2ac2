//! `sluice eval ENV`: the repository's eval suites against every gateway of
//! one environment; each case's verdict per gateway with what differed.

use super::{Cli, Outcome, allow::AllowArgs, output::table};
use crate::{
    config::finding::Palette,
    eval::{self, EvalReport, Reset, RunOptions, Suite},
    gateway::{DriverContext, Gateway, Secrets},
};
use anyhow::Context as _;
use serde::Serialize;
use std::{path::PathBuf, sync::Arc, time::Duration};

const AFTER_HELP: &str = "\
Examples:
  sluice eval staging                       every suite against staging's gateways
  sluice eval staging --suite pii           one suite (repeat --suite for several)
  sluice eval eval --rev HEAD -o json       the suites of a commit, for machines
  sluice eval staging -o junit > eval.xml   JUnit XML for CI
  sluice eval staging --junit eval.xml      the table, and JUnit XML in a file

Each suite starts from a reset of each gateway's runtime state (rate-limit
counters; POST /admin/v1/reset on the reference gateway) unless --no-reset;
a driver without one is noted and its cases run on its current state.

Exit codes: 0 every case passed, 1 a case failed, 2 usage or configuration
error (an unknown environment or suite, an invalid revision, a gateway that
cannot be connected).";

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Yaml,
    Junit,
}

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The environment whose gateways the suites run against.
    #[command(flatten)]
    pub environment: super::environment::Environment,
    /// Only this suite (repeat for several); default: every suite.
    #[arg(long = "suite", value_name = "NAME")]
    pub suites: Vec<String>,
    /// The commit whose suites and gateways to use (branch, tag, id);
    /// default: the head of --branch.
    #[arg(long)]
    pub rev: Option<String>,
    /// The followed branch.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// Output: the verdicts, JSON, or JUnit XML.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Also write the JUnit XML report to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Gateways exercised at once (the cases of a suite run in order on
    /// each gateway).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Do not reset the gateways' runtime state before each suite.
    #[arg(long)]
    pub no_reset: bool,
    /// Per-request timeout for gateways that set none.
    #[arg(long, default_value = "10s", value_parser = super::engine::parse_duration)]
    pub timeout: Duration,
    /// A directory outside the data dir where `litellm` gateways with
    /// absolute paths keep their config (repeat for several).
    #[arg(long = "file-root", value_name = "DIR")]
    pub file_roots: Vec<PathBuf>,
    /// What the operator allows (as `sluice run` is given it).
    #[command(flatten)]
    pub allow: AllowArgs,
}

/// `-o json`: the report, and what it ran against.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    environment: &'a str,
    revision: String,
    passed: bool,
    #[serde(flatten)]
    report: &'a EvalReport,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let allowances = args.allow.allowances([]);
    let rev = args.rev.as_deref().unwrap_or(&args.branch);
    let loaded = super::load_with(cli, Some(rev), &allowances)?;
    let Some(repo) = &loaded.repository else {
        super::output::print_findings(&loaded, cli.color.stderr());
        anyhow::bail!("revision {} is invalid: no suites are run", loaded.revision);
    };
    let name = args.environment.name();
    super::environment::check(
        name,
        repo.environments.keys().map(String::as_str),
        &super::environment::at(&loaded.revision),
    )?;
    let environment = &repo.environments[name];
    let suites = selected(repo, &args.suites)?;

    let data_dir = if cli.repo.is_dir() {
        cli.repo.join(".sluice")
    } else {
        PathBuf::from(".sluice")
    };
    let mut context = DriverContext::new(data_dir);
    context.timeout = args.timeout;
    context.file_roots = args.file_roots.clone();
    context.secrets = Secrets::new(
        Arc::new(|name| std::env::var(name).ok()),
        Arc::new(allowances),
    );
    let gateways = environment
        .gateways
        .iter()
        .map(|spec| {
            crate::gateway::connect(&environment.slug, spec, &context)
                .map(|driver| (spec.name().to_owned(), driver))
                .with_context(|| format!("gateway `{}`", spec.name()))
        })
        .collect::<anyhow::Result<Vec<(String, Arc<dyn Gateway>)>>>()?;

    let options = RunOptions {
        concurrency: usize::from(args.concurrency),
        reset: !args.no_reset,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(eval::run_suites(
        &gateways,
        &suites,
        &repo.fixtures,
        options,
    ));

    if let Some(path) = &args.junit {
        std::fs::write(path, eval::junit::render(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let document = || Report {
        environment: &environment.slug,
        revision: loaded.revision.to_string(),
        passed: report.passed(),
        report: &report,
    };
    match args.output {
        Format::Json => super::output::print_json(&document())?,
        Format::Yaml => super::output::print_yaml(&document())?,
        Format::Junit => print!("{}", eval::junit::render(&report)),
        Format::Text => print!("{}", text(&report, &environment.slug, cli.color.stdout())),
    }
    Ok(if report.passed() {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

/// The suites `names` asks for (every suite when it is empty), in order.
fn selected<'a>(
    repo: &'a crate::config::Repository,
    names: &[String],
) -> anyhow::Result<Vec<&'a Suite>> {
    let known = || {
        repo.suites
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if repo.suites.is_empty() {
        anyhow::bail!(
            "the repository has no eval suites: add {}/<name>{}",
            eval::suite::SUITES_DIR,
            eval::suite::SUITE_SUFFIX
        );
    }
    if names.is_empty() {
        return Ok(repo.suites.values().map(|s| s.suite.as_ref()).collect());
    }
    let mut suites: Vec<&Suite> = Vec::new();
    for name in names {
        let Some(file) = repo.suites.get(name) else {
            anyhow::bail!("no suite `{name}`; suites: {}", known());
        };
        if !suites.iter().any(|s| s.suite == *name) {
            suites.push(&file.suite);
        }
    }
    Ok(suites)
}

/// A table of every case on every gateway, then what differed.
fn text(report: &EvalReport, environment: &str, palette: Palette) -> String {
    let mut rows: Vec<[String; 5]> = Vec::new();
    for run in &report.runs {
        for case in &run.cases {
            let result = if case.passed { "pass" } else { "FAIL" };
            let outcome = match (&case.observed, &case.error) {
                (_, Some(_)) => "error".to_owned(),
                (Some(observed), None) => observed
                    .outcome
                    .map_or_else(|| "?".to_owned(), |o| o.to_string()),
                (None, None) => "-".to_owned(),
            };
            rows.push([
                run.suite.clone(),
                run.gateway.clone(),
                case.name.clone(),
                result.to_owned(),
                outcome,
            ]);
        }
    }
    let mut out = table(&["SUITE", "GATEWAY", "CASE", "RESULT", "OUTCOME"], &rows);
    for run in &report.runs {
        match &run.reset {
            Reset::Unsupported => out.push_str(&format!(
                "\nnote: {} cannot reset its runtime state; suite {} ran on its current state\n",
                run.gateway, run.suite
            )),
            Reset::Failed(why) => out.push_str(&format!(
                "\nnote: resetting {} before suite {} failed ({why}); it ran on its current state\n",
                run.gateway, run.suite
            )),
            Reset::Done | Reset::Skipped => {}
        }
    }
    for run in &report.runs {
        for case in run.cases.iter().filter(|c| !c.passed) {
            out.push_str(&format!(
                "\n{}{} on {}: {}{}\n",
                palette.bold, run.suite, run.gateway, case.name, palette.reset
            ));
            if let Some(error) = &case.error {
                out.push_str(&format!(
                    "  {}error:{} {error}\n",
                    palette.error, palette.reset
                ));
            }
            for difference in &case.differences {
                out.push_str(&format!("  {difference}\n"));
            }
        }
    }
    let gateways: std::collections::BTreeSet<&str> =
        report.runs.iter().map(|r| r.gateway.as_str()).collect();
    let (colour, word) = if report.passed() {
        (palette.success, "passed")
    } else {
        (palette.error, "FAILED")
    };
    out.push_str(&format!(
        "\n{colour}{word}{}: {} passed, {} failed ({} × {} of {environment})\n",
        palette.reset,
        report.totals.passed,
        report.totals.failed,
        crate::config::finding::count(report.by_suite().len(), "suite"),
        crate::config::finding::count(gateways.len(), "gateway"),
    ));
    out
}
