//! `sluice promote FROM TO`: a branch whose one new commit copies FROM's
//! pack files into TO, checked by rendering; optionally pushed. Exit 0 when
//! the branch is made or there is nothing to promote, 1 when validation or
//! the render check refuses it, 2 on usage or environment errors (a FROM
//! that is not TO's `promotion.from` without `--force`, an unknown pack).

use super::{
    Cli, Outcome,
    publish::{Published, PushArgs, refusal_is_a_finding},
};
use crate::{
    promote::{self, PromoteError, Promoted, Request},
    source::prefix,
};
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment whose packs are promoted.
    pub from: String,
    /// The environment they are promoted into (its `promotion.from` must be FROM).
    pub to: String,
    /// Only these packs (names of FROM's pack files, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub packs: Option<Vec<String>>,
    /// Name of the new branch [default: promote/<from>-to-<to>-<12 hex of TO's new digest>].
    #[arg(long)]
    pub branch: Option<String>,
    /// The branch Sluice follows: the promotion reads its head and goes on top of it.
    #[arg(long, default_value = "main")]
    pub base: String,
    /// Subject line of the commit (the body and trailers are kept).
    #[arg(short, long)]
    pub message: Option<String>,
    /// Promote even though FROM is not TO's `promotion.from` (needs --reason).
    #[arg(long, requires = "reason")]
    pub force: bool,
    /// Why the promotion is forced: written into the commit and its
    /// `Sluice-Forced` trailer.
    #[arg(long, requires = "force")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub publish: PushArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

pub use super::output::TextOrData as Format;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    #[serde(flatten)]
    promotion: &'a Promoted,
    #[serde(flatten)]
    published: Published,
}

pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    refusal_is_a_finding(make(cli, args), PromoteError::is_check_failure)
}

fn make(cli: &Cli, args: &Args) -> anyhow::Result<Outcome> {
    let request = Request {
        repo: cli.repo.clone(),
        from: args.from.clone(),
        to: args.to.clone(),
        packs: args.packs.clone(),
        branch: args.branch.clone(),
        base: args.base.clone(),
        message: args.message.clone(),
        force: args.force.then(|| args.reason.clone()).flatten(),
        limits: cli.limits(),
    };
    let promotion = promote::prepare(&request)?;
    let published = match &promotion.made {
        Some(made) => args.publish.publish(cli, &promotion.base, &made.branch)?,
        None => args.publish.unpublished(),
    };
    let report = Report {
        promotion: &promotion,
        published,
    };
    match args.output {
        Format::Json => super::output::print_json(&report)?,
        Format::Yaml => super::output::print_yaml(&report)?,
        Format::Text => print!("{}", human(&report)),
    }
    Ok(Outcome::Clean)
}

fn human(report: &Report<'_>) -> String {
    let p = report.promotion;
    let on = format!("{} {}", p.base, prefix(&p.parent, 8));
    let Some(made) = &p.made else {
        let why = if p.unchanged.is_empty() {
            format!(
                "`{}` has no pack files of its own (base packs are shared and need no promotion)",
                p.from
            )
        } else {
            format!(
                "`{}` already holds {} as `{}` has {}",
                p.to,
                if p.unchanged.len() == 1 { "it" } else { "them" },
                p.from,
                if p.unchanged.len() == 1 { "it" } else { "them" },
            )
        };
        let mut out = format!(
            "nothing to promote from {} to {} on {on}: {why}\n",
            p.from, p.to
        );
        for name in &p.unchanged {
            out.push_str(&format!("  {:<13}{name}\n", "unchanged"));
        }
        return out;
    };
    let mut out = format!("promotion {} -> {} on {on}\n", p.from, p.to);
    let mut rows: Vec<(&str, String)> = Vec::new();
    for pack in &p.packs {
        let previous = pack
            .previous
            .as_ref()
            .map_or("(new)", |v| v.version.as_str());
        let mut text = format!(
            "{} {previous} -> {}  {}  {}",
            pack.name,
            pack.version,
            pack.digest.short(),
            pack.file
        );
        if let Some(old) = &pack.replaces {
            text.push_str(&format!(" (replaces {old})"));
        }
        rows.push(("pack", text));
    }
    for name in &p.unchanged {
        rows.push(("unchanged", name.clone()));
    }
    for kept in &p.kept {
        rows.push((
            "kept",
            format!(
                "{} ({}; `{}` has no file for it)",
                kept.name, kept.file, p.from
            ),
        ));
    }
    if let Some(reason) = &p.forced {
        rows.push(("forced", reason.clone()));
    }
    rows.push((
        "version",
        format!(
            "{}: {} -> {}",
            p.to,
            made.previous_digest.short(),
            made.digest.short()
        ),
    ));
    let what = if made.created {
        "new commit"
    } else {
        "already there, commit"
    };
    rows.push((
        "branch",
        format!(
            "{} ({what} {} on {on})",
            made.branch,
            prefix(&made.commit, 8)
        ),
    ));
    if report.published.pushed {
        rows.push((
            "pushed",
            format!("{} to {}", made.branch, report.published.remote),
        ));
    }
    for (label, text) in rows {
        out.push_str(&format!("  {label:<13}{text}\n"));
    }
    if let Some(next) = Some(&report.published.next).filter(|n| !n.is_empty()) {
        out.push_str(&format!("next: {next}\n"));
    }
    out
}
