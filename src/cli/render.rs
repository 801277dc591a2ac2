//! `sluice render`: each gateway's desired state and its version.

use super::{Cli, Outcome, load, output::print_findings};
use crate::config::{Version, render_all};
use anyhow::bail;
use clap::ValueEnum;
use serde::Serialize;
use std::collections::HashMap;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub environment: super::environment::Only,
    /// Only this gateway.
    #[arg(long)]
    pub gateway: Option<String>,
    /// Render this commit instead of the work tree.
    #[arg(long)]
    pub rev: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Yaml,
    Json,
    /// One line per gateway: its version, without the documents.
    Table,
    /// The table with each gateway's packs (name@version) and the policies
    /// they run, as kubectl's `-o wide` adds columns.
    Wide,
    /// Each gateway's config as its driver writes it (LiteLLM's
    /// config.yaml for `format: litellm`); several are separated by a
    /// `# ENVIRONMENT/GATEWAY VERSION` line.
    Native,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    environment: &'a str,
    gateway: &'a str,
    driver: &'a str,
    version: String,
    digest: &'a str,
    revision: String,
    packs: &'a [crate::config::render::PackDigest],
    /// Absent only where the output does not show it (table, native).
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<&'a serde_json::Value>,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let loaded = load(cli, args.rev.as_deref())?;
    let Some(repo) = &loaded.repository else {
        print_findings(&loaded, cli.color.stderr());
        return Ok(Outcome::Findings);
    };
    let only = args.environment.name();
    if let Some(env) = only {
        super::environment::check(
            env,
            repo.environments.keys().map(String::as_str),
            &super::environment::at(&loaded.revision),
        )?;
    }
    let mut rendered = render_all(repo, only);
    if let Some(gateway) = &args.gateway {
        rendered.retain(|r| &r.gateway == gateway);
        if rendered.is_empty() {
            bail!("no gateway `{gateway}` in the selected environments");
        }
    }
    // NB: an environment's gateways share one document: it is parsed once
    // per environment, and only for the outputs that show it.
    let mut configs: HashMap<&str, serde_json::Value> = HashMap::new();
    if matches!(args.output, Format::Json | Format::Yaml | Format::Wide) {
        for r in &rendered {
            configs
                .entry(r.environment.as_str())
                .or_insert_with(|| r.config());
        }
    }
    let entries: Vec<Entry<'_>> = rendered
        .iter()
        .map(|r| Entry {
            environment: &r.environment,
            gateway: &r.gateway,
            driver: r.driver,
            version: Version {
                digest: &r.digest,
                revision: &loaded.revision,
            }
            .to_string(),
            digest: r.digest.as_str(),
            revision: loaded.revision.to_string(),
            packs: &r.packs,
            config: configs.get(r.environment.as_str()),
        })
        .collect();
    match args.output {
        Format::Native => {
            for (r, entry) in rendered.iter().zip(&entries) {
                let spec = repo
                    .environments
                    .get(&r.environment)
                    .and_then(|e| e.gateways.iter().find(|g| g.name() == r.gateway));
                let Some(spec) = spec else { continue };
                let desired = crate::gateway::Desired {
                    environment: r.environment.clone(),
                    gateway: r.gateway.clone(),
                    digest: r.digest.clone(),
                    body: r.canonical.clone(),
                    revision: loaded.revision.to_string(),
                };
                let native = crate::gateway::native(spec, &desired)?;
                if rendered.len() > 1 {
                    println!(
                        "# {}/{} {}",
                        entry.environment, entry.gateway, entry.version
                    );
                }
                print!("{native}");
                if !native.ends_with('\n') {
                    println!();
                }
            }
        }
        Format::Json => super::output::print_json(&entries)?,
        Format::Yaml => super::output::print_yaml(&entries)?,
        Format::Table => {
            let rows: Vec<[&str; 4]> = entries
                .iter()
                .map(|e| [e.environment, e.gateway, e.driver, e.version.as_str()])
                .collect();
            print!(
                "{}",
                super::output::table(&["ENVIRONMENT", "GATEWAY", "DRIVER", "VERSION"], &rows)
            );
        }
        Format::Wide => {
            let rows: Vec<[String; 6]> = entries
                .iter()
                .map(|e| {
                    let packs: Vec<String> = e
                        .packs
                        .iter()
                        .map(|p| format!("{}@{}", p.name, p.version))
                        .collect();
                    [
                        e.environment.to_owned(),
                        e.gateway.to_owned(),
                        e.driver.to_owned(),
                        e.version.clone(),
                        packs.join(","),
                        e.config.map(policies).unwrap_or_default().join(","),
                    ]
                })
                .collect();
            print!(
                "{}",
                super::output::table(
                    &[
                        "ENVIRONMENT",
                        "GATEWAY",
                        "DRIVER",
                        "VERSION",
                        "PACKS",
                        "POLICIES"
                    ],
                    &rows
                )
            );
        }
    }
    Ok(Outcome::Clean)
}

/// The policies a rendered document runs: each enabled pack's chain, each
/// policy once.
fn policies(config: &serde_json::Value) -> Vec<String> {
    let mut chain: Vec<String> = Vec::new();
    let packs = config.get("packs").and_then(|p| p.as_object());
    for pack in packs.into_iter().flat_map(|p| p.values()) {
        if pack.get("enabled") == Some(&serde_json::Value::Bool(false)) {
            continue;
        }
        for policy in pack
            .get("chain")
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(policy) = policy.as_str()
                && !chain.iter().any(|p| p == policy)
            {
                chain.push(policy.to_owned());
            }
        }
    }
    chain
}
