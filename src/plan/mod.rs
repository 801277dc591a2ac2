//! What a change does, for whoever reviews its pull request: per
//! environment, the semantic changes of the rendered policy between two
//! revisions, digests before and after, what runs now (from the ledger),
//! and the changes that weaken governance in a production environment,
//! which need an approval.

pub mod semantic;

use crate::{
    config::{
        Digest, Environment, Repository,
        render::{canonical_json, document},
    },
    ledger::{Ledger, LedgerError},
    source::prefix,
};
use semantic::Change;
use serde::Serialize;
use std::collections::BTreeSet;

/// The trailer that approves weakening changes in the head commit.
pub const APPROVAL_TRAILER: &str = "Sluice-Approved-By";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub base: String,
    pub head: String,
    pub environments: Vec<EnvironmentPlan>,
    /// Who approved weakening changes (the trailer's value, or `--approved`).
    pub approved_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Added,
    Removed,
    Changed,
    Unchanged,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentPlan {
    pub environment: String,
    pub is_production: bool,
    pub status: Status,
    pub before: Option<Digest>,
    pub after: Option<Digest>,
    pub gateways_added: Vec<String>,
    pub gateways_removed: Vec<String>,
    /// The gateways whose desired state changes.
    pub gateways: Vec<String>,
    pub changes: Vec<Change>,
    /// Why this change weakens governance (production environments only).
    pub weakening: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<Running>,
}

/// What the ledger says the environment runs now.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    pub digest: Option<Digest>,
    pub revision: Option<String>,
    pub in_sync: usize,
    pub gateways: usize,
    /// The head renders what already runs.
    pub head_runs: bool,
}

impl Plan {
    /// Builds the plan from `base` to `head`. An environment absent from
    /// one side is added or removed.
    pub fn new(base: &Repository, base_rev: &str, head: &Repository, head_rev: &str) -> Plan {
        let names: BTreeSet<&String> = base
            .environments
            .keys()
            .chain(head.environments.keys())
            .collect();
        let environments = names
            .into_iter()
            .map(|name| environment(base, head, name))
            .collect();
        Plan {
            base: base_rev.to_owned(),
            head: head_rev.to_owned(),
            environments,
            approved_by: None,
        }
    }

    /// Adds what runs now, per environment, from the ledger.
    pub fn with_running(mut self, ledger: &dyn Ledger) -> Result<Plan, LedgerError> {
        let records = ledger.gateways(None)?;
        for env in &mut self.environments {
            let mine: Vec<_> = records
                .iter()
                .filter(|r| r.environment == env.environment)
                .collect();
            let deployment = ledger.deployments(&env.environment, 1)?.into_iter().next();
            let digest = deployment.as_ref().map(|d| d.digest.clone());
            env.running = Some(Running {
                head_runs: digest.is_some() && digest == env.after,
                digest,
                revision: deployment.map(|d| d.revision),
                in_sync: mine.iter().filter(|r| r.state.settled()).count(),
                gateways: mine.len(),
            });
        }
        Ok(self)
    }

    /// Weakening changes in production environments.
    pub fn weakening(&self) -> usize {
        self.environments.iter().map(|e| e.weakening.len()).sum()
    }

    /// Weakening changes without an approval: what makes `plan` exit 1.
    pub fn blocked(&self) -> bool {
        self.weakening() > 0 && self.approved_by.is_none()
    }
}

fn environment(base: &Repository, head: &Repository, name: &str) -> EnvironmentPlan {
    let before = base.environments.get(name);
    let after = head.environments.get(name);
    let render = |repo: &Repository, env: &Environment| {
        let doc = document(repo, env);
        let digest = Digest::of(canonical_json(&doc).as_bytes());
        (doc, digest)
    };
    let old = before.map(|env| render(base, env));
    let new = after.map(|env| render(head, env));
    let null = serde_json::Value::Null;
    let changes = semantic::changes(
        old.as_ref().map_or(&null, |(doc, _)| doc),
        new.as_ref().map_or(&null, |(doc, _)| doc),
    );
    let names = |env: Option<&Environment>| -> BTreeSet<String> {
        env.map(|e| e.gateways.iter().map(|g| g.name().to_owned()).collect())
            .unwrap_or_default()
    };
    let (old_gateways, new_gateways) = (names(before), names(after));
    let status = match (&old, &new) {
        (None, _) => Status::Added,
        (_, None) => Status::Removed,
        (Some((_, a)), Some((_, b))) if a == b && old_gateways == new_gateways => Status::Unchanged,
        _ => Status::Changed,
    };
    let is_production =
        after.is_some_and(|e| e.spec.is_production) || before.is_some_and(|e| e.spec.is_production);
    let mut weakening = Vec::new();
    if before.is_some_and(|e| e.spec.is_production) {
        weakening.extend(changes.iter().filter_map(Change::weakening));
        match after {
            None => weakening.push(format!(
                "production environment `{name}` removed while it is flagged isProduction"
            )),
            Some(env) if !env.spec.is_production => {
                weakening.push("isProduction removed: its protections are lifted".into())
            }
            Some(env)
                if env.retention() < before.map_or(env.retention(), Environment::retention) =>
            {
                weakening.push(format!(
                    "ledger retention shortened from {} to {} days",
                    before.map_or(0, |b| b.retention().as_secs() / 86_400),
                    env.retention().as_secs() / 86_400
                ))
            }
            Some(_) => {}
        }
    }
    let digest_changed = old.as_ref().map(|(_, d)| d) != new.as_ref().map(|(_, d)| d);
    EnvironmentPlan {
        environment: name.to_owned(),
        is_production,
        status,
        gateways: if digest_changed {
            new_gateways.intersection(&old_gateways).cloned().collect()
        } else {
            Vec::new()
        },
        gateways_added: new_gateways.difference(&old_gateways).cloned().collect(),
        gateways_removed: old_gateways.difference(&new_gateways).cloned().collect(),
        before: old.map(|(_, d)| d),
        after: new.map(|(_, d)| d),
        changes,
        weakening,
        running: None,
    }
}

/// The approver named by a `Sluice-Approved-By:` trailer in a commit message.
pub fn approval(message: &str) -> Option<String> {
    crate::promote::trailer::trailers(message)
        .into_iter()
        .rev()
        .find(|t| t.key.eq_ignore_ascii_case(APPROVAL_TRAILER) && !t.value.trim().is_empty())
        .map(|t| t.value.trim().to_owned())
}

fn short(digest: Option<&Digest>) -> &str {
    digest.map_or("-", Digest::short)
}

/// Lines shown per environment before the rest are counted.
const MAX_LINES_PER_ENVIRONMENT: usize = 200;
/// Bytes of one line: a reordered chain names every policy in it.
const MAX_LINE_BYTES: usize = 400;
/// Bytes of text output before the remaining environments are counted.
const MAX_TEXT_BYTES: usize = 256 << 10;
/// Bytes of markdown: it is a pull-request comment, and GitHub refuses one
/// over 65,536 characters.
const MAX_MARKDOWN_BYTES: usize = 60 << 10;

/// Appends `section` while `out` stays within `max` bytes; false (and
/// nothing appended) once it would not.
fn within(out: &mut String, section: &str, max: usize) -> bool {
    if out.len() + section.len() > max {
        return false;
    }
    out.push_str(section);
    true
}

/// The note for what a bounded output left out.
fn left_out(more: usize, max: usize) -> String {
    format!(
        "… {more} more environment(s) not shown: output is cut at {} KiB (`-o json` has the whole plan)",
        max >> 10
    )
}

/// Plain text for a terminal.
pub fn text(plan: &Plan) -> String {
    let mut out = format!(
        "plan {} → {}\n",
        prefix(&plan.base, 8),
        prefix(&plan.head, 8)
    );
    let changed: Vec<&EnvironmentPlan> = plan
        .environments
        .iter()
        .filter(|e| e.status != Status::Unchanged)
        .collect();
    for (i, env) in changed.iter().enumerate() {
        let mut section = format!(
            "\n{} ({}){}: {} → {}\n",
            env.environment,
            status_word(env.status),
            if env.is_production {
                ", PRODUCTION"
            } else {
                ""
            },
            short(env.before.as_ref()),
            short(env.after.as_ref()),
        );
        for line in shown_lines(env) {
            section.push_str(&format!("  {line}\n"));
        }
        if !within(&mut out, &section, MAX_TEXT_BYTES) {
            out.push_str(&format!(
                "\n{}\n",
                left_out(changed.len() - i, MAX_TEXT_BYTES)
            ));
            break;
        }
    }
    out.push_str(&format!("\n{}\n", verdict(plan)));
    out
}

/// Markdown for a pull-request comment.
pub fn markdown(plan: &Plan) -> String {
    let changed: Vec<&EnvironmentPlan> = plan
        .environments
        .iter()
        .filter(|e| e.status != Status::Unchanged)
        .collect();
    let mut out = format!(
        "### Sluice plan `{}` → `{}`\n\n",
        prefix(&plan.base, 8),
        prefix(&plan.head, 8)
    );
    if changed.is_empty() {
        out.push_str("No environment's policy changes.\n");
        return out;
    }
    // NB: room is kept for the verdict, what a reviewer needs most.
    let max = MAX_MARKDOWN_BYTES - 1024;
    out.push_str(
        "| environment | change | before | after | gateways |\n| --- | --- | --- | --- | --- |\n",
    );
    let mut cut = None;
    for (i, env) in changed.iter().enumerate() {
        let row = format!(
            "| {}{} | {} | `{}` | `{}` | {} |\n",
            env.environment,
            if env.is_production { " ⚠️" } else { "" },
            status_word(env.status),
            short(env.before.as_ref()),
            short(env.after.as_ref()),
            env.gateways.len() + env.gateways_added.len(),
        );
        if !within(&mut out, &row, max) {
            cut = Some(i);
            break;
        }
    }
    'environments: for (i, env) in changed
        .iter()
        .enumerate()
        .take(cut.unwrap_or(changed.len()))
    {
        if !within(&mut out, &format!("\n#### {}\n\n", env.environment), max) {
            cut = Some(i);
            break;
        }
        let lines = shown_lines(env);
        let total = lines.len();
        for (j, line) in lines.into_iter().enumerate() {
            if !within(&mut out, &format!("- {}\n", line.replace('|', "\\|")), max) {
                out.push_str(&format!("- … {} more line(s) not shown\n", total - j));
                cut = Some(i + 1);
                break 'environments;
            }
        }
    }
    if let Some(i) = cut.filter(|i| *i < changed.len()) {
        out.push_str(&format!(
            "\n{}\n",
            left_out(changed.len() - i, MAX_MARKDOWN_BYTES)
        ));
    }
    out.push_str(&format!("\n**{}**\n", verdict(plan)));
    out
}

/// An environment's lines as shown: at most [`MAX_LINES_PER_ENVIRONMENT`]
/// (weakening changes first), each at most [`MAX_LINE_BYTES`].
fn shown_lines(env: &EnvironmentPlan) -> Vec<String> {
    let lines = env_lines(env);
    let more = lines.len().saturating_sub(MAX_LINES_PER_ENVIRONMENT);
    let mut shown: Vec<String> = lines
        .into_iter()
        .take(MAX_LINES_PER_ENVIRONMENT)
        .map(|mut line| {
            if crate::drift::cut(&mut line, MAX_LINE_BYTES) {
                line.push('…');
            }
            line
        })
        .collect();
    if more > 0 {
        shown.push(format!("… {more} more change(s) (`-o json` has all)"));
    }
    shown
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Added => "added",
        Status::Removed => "removed",
        Status::Changed => "changed",
        Status::Unchanged => "unchanged",
    }
}

fn env_lines(env: &EnvironmentPlan) -> Vec<String> {
    let mut lines: Vec<String> = env
        .weakening
        .iter()
        .map(|w| format!("WEAKENS: {w}"))
        .collect();
    lines.extend(env.changes.iter().map(Change::describe));
    if !env.gateways_added.is_empty() {
        lines.push(format!("gateways added: {}", env.gateways_added.join(", ")));
    }
    if !env.gateways_removed.is_empty() {
        lines.push(format!(
            "gateways removed: {}",
            env.gateways_removed.join(", ")
        ));
    }
    if let Some(running) = &env.running {
        lines.push(match (&running.digest, running.head_runs) {
            (None, _) => "runs: nothing recorded yet".to_owned(),
            (Some(_), true) => format!(
                "runs: already the head's version ({}/{} gateways in sync)",
                running.in_sync, running.gateways
            ),
            (Some(digest), false) => format!(
                "runs: {} from {} ({}/{} gateways in sync); the head changes it",
                digest.short(),
                prefix(running.revision.as_deref().unwrap_or("?"), 8),
                running.in_sync,
                running.gateways
            ),
        });
    }
    if env.is_production && env.status != Status::Unchanged {
        lines.push("warning: this changes a production environment".into());
    }
    lines
}

fn verdict(plan: &Plan) -> String {
    let weakening = plan.weakening();
    // NB: the approver may come from a commit's trailer, of any length.
    let approved_by = plan
        .approved_by
        .clone()
        .map(|who| crate::drift::shortened(who, 200));
    match (&approved_by, weakening) {
        (_, 0) => "No governance-weakening change.".to_owned(),
        (Some(who), n) => format!("{n} governance-weakening change(s), approved by {who}."),
        (None, n) => format!(
            "{n} governance-weakening change(s) without approval: add a `{APPROVAL_TRAILER}: <name>` trailer to the head commit, or approve the pull request's label."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_approval_trailer_is_read_from_the_message() {
        let message =
            "Lower enforcement\n\nWe need it.\n\nSluice-Approved-By: Dana <dana@example.com>\n";
        assert_eq!(
            approval(message).as_deref(),
            Some("Dana <dana@example.com>")
        );
        assert_eq!(approval("Subject\n\nSluice-Approved-By:   \n"), None);
        assert_eq!(approval("no trailer"), None);
    }

    /// A plan whose one environment changes `changes` times, each line
    /// naming a chain of `chain` policies.
    fn huge(environments: usize, changes: usize, chain: usize) -> Plan {
        let names = Value::from(vec!["x-a"; chain]);
        let env = |i: usize| EnvironmentPlan {
            environment: format!("env-{i}"),
            is_production: false,
            status: Status::Changed,
            before: None,
            after: None,
            gateways_added: vec![],
            gateways_removed: vec![],
            gateways: vec![],
            changes: (0..changes)
                .map(|_| Change::ChainReordered {
                    pack: "p".into(),
                    from: names.clone(),
                    to: names.clone(),
                })
                .collect(),
            weakening: vec![],
            running: None,
        };
        Plan {
            base: "a".repeat(40),
            head: "b".repeat(40),
            environments: (0..environments).map(env).collect(),
            approved_by: Some("x".repeat(100_000)),
        }
    }

    #[test]
    fn text_and_markdown_plans_are_bounded() {
        // NB: unbounded, this was 1,000 lines of 6 KB each (6 MB).
        let plan = huge(1, 1_000, 1_000);
        for out in [text(&plan), markdown(&plan)] {
            assert!(out.len() < 150 << 10, "{} bytes", out.len());
            assert!(
                out.contains("… 800 more change(s)") || out.contains("more line(s) not shown"),
                "{}",
                crate::drift::shortened(out.clone(), 500)
            );
            let longest = out.lines().map(str::len).max().unwrap();
            assert!(longest < MAX_LINE_BYTES + 300, "a line of {longest} bytes");
        }
        let many = huge(2_000, 3, 10);
        let markdown = markdown(&many);
        assert!(
            markdown.len() <= MAX_MARKDOWN_BYTES,
            "{} bytes",
            markdown.len()
        );
        assert!(markdown.contains("more environment(s) not shown"));
        assert!(markdown.trim_end().ends_with("**"), "the verdict is kept");
    }
}
