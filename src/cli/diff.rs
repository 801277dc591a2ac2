//! `sluice diff [ENV]`: what each gateway runs now against what the
//! repository's work tree (or `--rev`) renders for it, before anything is
//! committed or applied, as `kubectl diff`, `argocd app diff` and `flux
//! diff` show it: a unified diff per gateway that differs, what it runs as
//! `-`, the render as `+`. Read-only: nothing is applied or recorded.
//!
//! Exit codes (`kubectl diff`'s): 0 no differences, 1 differences, 2 an
//! error: an invalid work tree or revision (its findings printed as
//! `validate` prints them), a gateway that could not be read, an unknown
//! environment, a usage error.

use super::{
    Cli, Outcome, StateArgs,
    engine::ReachArgs,
    load_with,
    output::{coloured_diff, print_findings},
};
use crate::{
    config::finding::{Palette, count},
    drift::preview::{Comparison, Preview, Render, preview},
};
use std::sync::Arc;

pub use super::output::TextOrData as Format;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub environment: super::environment::Only,
    /// Compare this commit (branch, tag, id) instead of the work tree.
    #[arg(long)]
    pub rev: Option<String>,
    /// Output: a unified diff of each gateway that differs, or JSON (every
    /// gateway compared).
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub reach: ReachArgs,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let allowances = args.reach.allow.allowances([]);
    let loaded = load_with(cli, args.rev.as_deref(), &allowances)?;
    let source = match &args.rev {
        Some(rev) => format!("revision {rev}"),
        None => "the work tree".to_owned(),
    };
    let Some(repo) = &loaded.repository else {
        print_findings(&loaded, cli.color.stderr());
        anyhow::bail!("{source} is invalid: nothing to compare; fix the findings above");
    };
    let only = args.environment.name();
    if let Some(env) = only {
        super::environment::check(
            env,
            repo.environments.keys().map(String::as_str),
            &super::environment::at(&loaded.revision),
        )?;
    }
    let context = args
        .reach
        .driver_context(args.state.data_dir.clone(), Arc::new(allowances));
    let revision = loaded.revision.to_string();
    let label = args.rev.as_deref().unwrap_or("work tree");
    let runtime = tokio::runtime::Runtime::new()?;
    let found = runtime.block_on(preview(
        repo,
        Render {
            revision: &revision,
            label,
        },
        only,
        &context,
        args.reach.concurrency,
    ));
    match args.output {
        Format::Json => super::output::print_json(&found)?,
        Format::Yaml => super::output::print_yaml(&found)?,
        Format::Text => print!("{}", text(&found, &source, cli.color.stdout())),
    }
    let unreadable: Vec<String> = found
        .iter()
        .filter(|p| p.result == Comparison::Unreadable)
        .map(|p| format!("{}/{}", p.environment, p.gateway))
        .collect();
    if !unreadable.is_empty() {
        anyhow::bail!(
            "{} could not be read: {}",
            count(unreadable.len(), "gateway"),
            unreadable.join(", ")
        );
    }
    Ok(if found.iter().any(|p| p.result == Comparison::Differs) {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// Each gateway that differs: a headline, its changes one a line, the
/// unified diff; then each that could not be read; then a summary.
fn text(found: &[Preview], source: &str, palette: Palette) -> String {
    let mut out = String::new();
    let differs: Vec<&Preview> = found
        .iter()
        .filter(|p| p.result == Comparison::Differs)
        .collect();
    for p in &differs {
        out.push_str(&format!(
            "{}{}/{}{}: runs {}, {source} renders {}\n",
            palette.bold,
            p.environment,
            p.gateway,
            palette.reset,
            p.live_digest.as_ref().map_or("nothing", |d| d.short()),
            p.desired_digest.short(),
        ));
        for change in &p.changes {
            out.push_str(&format!("  {}\n", change.describe()));
        }
        out.push_str(&coloured_diff(&p.diff, palette));
        out.push('\n');
    }
    for p in found.iter().filter(|p| p.result == Comparison::Unreadable) {
        out.push_str(&format!(
            "{}{}/{}: cannot be read{}: {}\n",
            palette.error,
            p.environment,
            p.gateway,
            palette.reset,
            p.error.as_deref().unwrap_or("unknown error")
        ));
    }
    let unreadable = found.len()
        - differs.len()
        - found
            .iter()
            .filter(|p| p.result == Comparison::Same)
            .count();
    let gateways = count(found.len(), "gateway");
    let runs = |n: usize| if n == 1 { "runs" } else { "run" };
    let mut summary = match (differs.len(), unreadable) {
        (0, 0) => format!(
            "no differences: {gateways} {} what {source} renders",
            runs(found.len())
        ),
        (0, u) if u == found.len() => format!("{u} of {gateways} could not be read"),
        (0, u) => {
            format!("{u} of {gateways} could not be read; the others run what {source} renders")
        }
        (n, _) => format!(
            "{n} of {gateways} {} from what {source} renders",
            if n == 1 { "differs" } else { "differ" },
        ),
    };
    if unreadable > 0 && !differs.is_empty() {
        summary.push_str(&format!("; {unreadable} could not be read"));
    }
    out.push_str(&summary);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Digest, diff::changes};
    use serde_json::json;

    fn preview(gateway: &str, result: Comparison) -> Preview {
        let live =
            json!({"packs": {"baseline": {"settings": {"pii-detector": {"action": "block"}}}}});
        let desired =
            json!({"packs": {"baseline": {"settings": {"pii-detector": {"action": "redact"}}}}});
        let (changes, diff) = match result {
            Comparison::Differs => (
                changes(&live, &desired),
                crate::config::diff::text(&live, &desired, "a", "b"),
            ),
            _ => (Vec::new(), String::new()),
        };
        Preview {
            environment: "production".into(),
            gateway: gateway.into(),
            result,
            desired_digest: Digest::of(b"desired"),
            live_digest: (result != Comparison::Unreadable).then(|| Digest::of(b"live")),
            changes,
            diff,
            error: (result == Comparison::Unreadable).then(|| "gateway is unreachable".into()),
        }
    }

    #[test]
    fn only_gateways_that_differ_show_a_diff_and_the_summary_counts_them() {
        let found = [
            preview("eu-1", Comparison::Differs),
            preview("us-1", Comparison::Same),
        ];
        let out = text(&found, "the work tree", Palette::PLAIN);
        assert!(out.starts_with("production/eu-1: runs sha256:"), "{out}");
        assert!(
            out.contains(r#"  pii-detector.action (pack baseline): "block" → "redact""#),
            "{out}"
        );
        assert!(out.contains("-          \"action\": \"block\""), "{out}");
        assert!(!out.contains("us-1"), "{out}");
        assert!(
            out.ends_with("1 of 2 gateways differs from what the work tree renders\n"),
            "{out}"
        );
    }

    #[test]
    fn a_gateway_that_cannot_be_read_says_why() {
        let found = [preview("eu-1", Comparison::Unreadable)];
        let out = text(&found, "revision HEAD", Palette::PLAIN);
        assert!(
            out.contains("production/eu-1: cannot be read: gateway is unreachable\n"),
            "{out}"
        );
        assert!(out.ends_with("1 of 1 gateway could not be read\n"), "{out}");
    }
}
