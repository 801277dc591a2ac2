//! Compare: the semantic plan between two revisions, as `sluice plan`
//! shows it, with the changes that weaken governance marked.

use super::page::{Chrome, Section, environment_link, layout};
use crate::{
    plan::{Plan, Status},
    reconcile::status::short_digest,
    source::prefix,
};
use maud::{Markup, html};

/// What the form asked and what came of it.
pub struct Compare {
    pub base: String,
    pub head: String,
    pub outcome: Result<Plan, String>,
}

pub fn render(compare: &Compare, chrome: &Chrome<'_>) -> Markup {
    debug_assert_eq!(chrome.section, Section::Compare);
    layout(
        chrome,
        html! {
            h1 { "Compare revisions" }
            form.compare method="get" action="/compare" {
                label { "Base " input name="base" value=(compare.base) size="20" required; }
                " "
                label { "Head " input name="head" value=(compare.head) size="20" required; }
                " "
                button type="submit" { "Compare" }
            }
            @match &compare.outcome {
                Err(error) => p.error role="alert" { (error) },
                Ok(plan) => (plan_view(plan)),
            }
        },
    )
}

fn plan_view(plan: &Plan) -> Markup {
    let changed: Vec<_> = plan
        .environments
        .iter()
        .filter(|e| e.status != Status::Unchanged)
        .collect();
    html! {
        section #plan data-weakening=(plan.weakening()) {
            p {
                "From " code { (prefix(&plan.base, 8)) } " to " code { (prefix(&plan.head, 8)) } ": "
                (changed.len()) " of " (plan.environments.len()) " environments change"
                @if plan.weakening() > 0 {
                    ", " strong.bad { (plan.weakening()) " weakening" }
                    @match &plan.approved_by { Some(by) => { " (approved by " (by) ")" }, None => { " (not approved)" } }
                }
                "."
            }
            @for env in changed {
                article.env-plan data-environment=(env.environment) data-status=(status(env.status)) {
                    h2 {
                        (environment_link(&env.environment)) " "
                        span.muted { (status(env.status)) }
                        @if env.is_production { " " span.tag { "production" } }
                    }
                    p {
                        code { (short_digest(env.before.as_ref())) } " → "
                        code { (short_digest(env.after.as_ref())) }
                        @if !env.gateways.is_empty() { " · gateways: " (env.gateways.join(", ")) }
                        @if !env.gateways_added.is_empty() { " · added: " (env.gateways_added.join(", ")) }
                        @if !env.gateways_removed.is_empty() { " · removed: " (env.gateways_removed.join(", ")) }
                    }
                    ul.changes {
                        @for change in &env.changes {
                            @let weakens = change.weakening();
                            li class=[weakens.as_ref().map(|_| "weakening")] {
                                @if let Some(why) = &weakens {
                                    strong.bad title=(why) { "⚠ weakens: " }
                                }
                                code { (change.describe()) }
                            }
                        }
                    }
                    @if !env.weakening.is_empty() {
                        div.banner.bad {
                            "Weakens production governance: "
                            ul { @for why in &env.weakening { li { (why) } } }
                        }
                    }
                }
            }
        }
    }
}

fn status(status: Status) -> &'static str {
    match status {
        Status::Added => "added",
        Status::Removed => "removed",
        Status::Changed => "changed",
        Status::Unchanged => "unchanged",
    }
}
