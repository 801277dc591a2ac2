//! `sluice validate`: every finding at once, for people or for CI.

use super::{Cli, Outcome, allow::AllowArgs, load_with};
use crate::config::finding;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Validate this commit (branch, tag, id) instead of the work tree.
    #[arg(long)]
    pub rev: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// What the operator allows (as `sluice run` is given it): variables
    /// and URLs outside it are findings.
    #[command(flatten)]
    pub allow: AllowArgs,
}

pub use super::output::TextOrData as Format;

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let loaded = load_with(cli, args.rev.as_deref(), &args.allow.allowances([]))?;
    match args.output {
        Format::Json => super::output::print_json(&loaded.findings)?,
        Format::Yaml => super::output::print_yaml(&loaded.findings)?,
        Format::Text => {
            let palette = cli.color.stdout();
            print!(
                "{}",
                finding::render_human(&loaded.findings, &loaded.sources, palette)
            );
            match &loaded.repository {
                Some(repo) => {
                    let gateways: usize =
                        repo.environments.values().map(|e| e.gateways.len()).sum();
                    let suites = match repo.suites.len() {
                        0 => String::new(),
                        n => format!(", {}", finding::count(n, "eval suite")),
                    };
                    println!(
                        "valid at {}: {}, {}, {}{suites} ({})",
                        loaded.revision.short(),
                        finding::count(repo.environments.len(), "environment"),
                        finding::count(gateways, "gateway"),
                        finding::count(repo.base_packs.len(), "base pack"),
                        finding::summary(&loaded.findings),
                    );
                }
                None => println!(
                    "invalid at {}: {}",
                    loaded.revision.short(),
                    finding::summary(&loaded.findings)
                ),
            }
        }
    }
    Ok(if loaded.has_errors() {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}
