//! A gateway's page: what it runs against what it should, its last error,
//! its drift episodes with the unified diff of desired against live, and
//! its attempts.

use super::{
    environment::{attempt_table, drift_list},
    page::{self, Chrome, ago, environment_link, layout, path, version_code},
};
use crate::{
    config::diff,
    ledger::{Attempt, DriftEpisode, GatewayRecord, Ledger, LedgerError},
};
use maud::{Markup, html};
use serde_json::Value;

const RECENT: usize = 20;
/// Episodes of the environment read to find this gateway's.
const EPISODES_READ: usize = 500;

pub struct GatewayPage {
    pub environment: String,
    pub gateway: String,
    pub record: Option<GatewayRecord>,
    pub attempts: Vec<Attempt>,
    /// Newest first.
    pub drift: Vec<DriftEpisode>,
    /// The unified diff of desired against live for the newest episode,
    /// when the desired document could be rendered.
    pub diff: Option<String>,
}

impl GatewayPage {
    /// `None` when the ledger knows nothing of the gateway.
    pub fn read(
        ledger: &dyn Ledger,
        environment: &str,
        gateway: &str,
    ) -> Result<Option<GatewayPage>, LedgerError> {
        let record = crate::reconcile::status::StatusView::read(ledger, Some(environment))?
            .gateways
            .into_iter()
            .find(|g| g.gateway == gateway);
        let attempts = ledger.history(environment, Some(gateway), RECENT)?;
        if record.is_none() && attempts.is_empty() {
            return Ok(None);
        }
        let mut drift = ledger.drift_episodes(Some(environment), false, EPISODES_READ)?;
        drift.retain(|e| e.gateway == gateway);
        drift.truncate(RECENT);
        Ok(Some(GatewayPage {
            environment: environment.to_owned(),
            gateway: gateway.to_owned(),
            record,
            attempts,
            drift,
            diff: None,
        }))
    }

    /// The diff of the newest episode, given the document its revision
    /// renders for the environment: the live one is that document with the
    /// episode's changes made.
    pub fn with_desired(mut self, desired: &Value) -> Self {
        if let Some(episode) = self.drift.first() {
            let live = diff::apply(desired, &episode.changes);
            self.diff = Some(crate::drift::compare(desired, &live).1);
        }
        self
    }
}

pub fn render(page: &GatewayPage, chrome: &Chrome<'_>) -> Markup {
    let now = chrome.now;
    let env = &page.environment;
    layout(
        chrome,
        html! {
            nav.crumbs aria-label="Breadcrumb" {
                a href="/" { "Overview" } " / " (environment_link(env)) " / " (page.gateway)
            }
            h1 { "Gateway " (page.gateway) " " span.muted { "in " (env) } }
            @if let Some(g) = &page.record {
                dl.facts #facts data-state=(g.state.as_str()) {
                    dt { "State" } dd { (page::state(g.state)) " since " (ago(now, g.changed_at)) }
                    dt { "Should run" } dd { (version_code(g.desired_digest.as_ref(), g.desired_revision.as_deref())) }
                    dt { "Runs" } dd {
                        (version_code(g.observed_digest.as_ref(), None))
                        @if g.observed_digest.is_some() && g.observed_digest == g.desired_digest { " " span.good { "(the same)" } }
                    }
                    dt { "Read back" } dd { (ago(now, g.updated_at)) }
                    dt { "Last error" } dd #last-error { (g.error.as_deref().unwrap_or("none")) }
                }
            }
            section #drift {
                h2 { "Drift" }
                @if let Some(diff) = &page.diff {
                    @let open = page.drift.first().is_some_and(|e| e.resolved_at.is_none());
                    p { @if open { "What it runs differs from what it should:" } @else { "The last drift, now ended:" } }
                    pre #diff .diff { @for line in diff.lines() { span class=(line_class(line)) { (line) } "\n" } }
                }
                @if page.drift.is_empty() {
                    p.empty { "No drift recorded." }
                } @else {
                    (drift_list(&page.drift, now, false))
                }
            }
            section #attempts {
                h2 { "Attempts" }
                (attempt_table(&page.attempts, now))
                p { a href={ "/environments/" (path(env)) "/history?gateway=" (path(&page.gateway)) } { "Full history" } }
            }
        },
    )
}

fn line_class(line: &str) -> &'static str {
    if line.starts_with("+++") || line.starts_with("---") {
        "head"
    } else if line.starts_with('+') {
        "add"
    } else if line.starts_with('-') {
        "del"
    } else if line.starts_with("@@") {
        "hunk"
    } else {
        "ctx"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::session::Viewer;
    use serde_json::json;

    #[test]
    fn the_diff_shows_the_changed_setting_as_desired_against_live() {
        let desired = json!({"enforcement": "enforce", "packs": {"baseline": {"settings": {"pii-detector": {"action": "redact"}}}}});
        let live = json!({"enforcement": "enforce", "packs": {"baseline": {"settings": {"pii-detector": {"action": "allow"}}}}});
        let changes = diff::changes(&desired, &live);
        let page = GatewayPage {
            environment: "production".into(),
            gateway: "prod-eu-1".into(),
            record: None,
            attempts: Vec::new(),
            drift: vec![DriftEpisode {
                environment: "production".into(),
                gateway: "prod-eu-1".into(),
                revision: "c0ffee".into(),
                desired_digest: "sha256:aa".into(),
                live_digest: Some("sha256:bb".into()),
                changes,
                onset_at: 0,
                resolved_at: None,
                resolution: None,
            }],
            diff: None,
        }
        .with_desired(&desired);
        let viewer = Viewer::open();
        let chrome = Chrome {
            title: "g",
            viewer: &viewer,
            now: 1_000,
            section: page::Section::Environments,
        };
        let html = render(&page, &chrome).into_string();
        assert!(
            html.contains(
                r#"<span class="del">-          &quot;action&quot;: &quot;redact&quot;</span>"#
            ),
            "{html}"
        );
        assert!(html.contains(
            r#"<span class="add">+          &quot;action&quot;: &quot;allow&quot;</span>"#
        ));
        assert!(html.contains(
            "pii-detector.action (pack baseline): &quot;redact&quot; → &quot;allow&quot;"
        ));
    }
}
