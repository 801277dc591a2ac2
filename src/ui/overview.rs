//! The overview: the environment × gateway matrix (each cell the version,
//! state and age of its last read-back), counts by state, what needs
//! attention and why, and the followed revision with banners when the head
//! is invalid or the data is stale.

use super::page::{self, Chrome, ago, environment_link, gateway_href, layout, version_code};
use crate::{
    config::{Digest, Severity},
    ledger::{GatewayRecord, GatewayState, Ledger, LedgerError, Millis, Pin, RevisionRecord},
    reconcile::status::StatusView,
    source::prefix,
};
use maud::{Markup, html};
use std::collections::BTreeMap;

/// At most this many gateways are listed under "needs attention"; the
/// rest are counted (the matrix shows them all).
const ATTENTION_LISTED: usize = 100;

/// What the overview shows, read from the ledger and the followed revision.
pub struct Overview {
    /// Gateways by environment, every environment the viewer may see;
    /// environments the followed revision has but the ledger does not yet
    /// have an empty list.
    pub environments: BTreeMap<String, Vec<GatewayRecord>>,
    pub revision: Option<RevisionRecord>,
    /// The newest revision's findings, when it is invalid.
    pub findings: Vec<FindingLine>,
    pub pins: Vec<Pin>,
    /// When the reconciler last finished a pass, and after how long
    /// without one the data is stale.
    pub last_pass: Option<Millis>,
    pub stale_after: Millis,
    pub ledger_error: Option<String>,
}

/// A finding of an invalid head, as the banner lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingLine {
    pub location: String,
    pub rule: String,
    pub message: String,
}

impl FindingLine {
    /// The error findings of a revision record (`validate -o json`'s array).
    pub fn of(revision: &RevisionRecord) -> Vec<FindingLine> {
        revision
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| FindingLine {
                location: f.location(),
                rule: f.rule.clone(),
                message: f.message.clone(),
            })
            .collect()
    }
}

impl Overview {
    /// Reads the ledger for the environments `sees` accepts; `configured`
    /// names the followed revision's environments.
    pub fn read(
        ledger: &dyn Ledger,
        configured: &[String],
        sees: &dyn Fn(&str) -> bool,
    ) -> Result<Overview, LedgerError> {
        let view = StatusView::read(ledger, None)?.retain(sees);
        let mut environments: BTreeMap<String, Vec<GatewayRecord>> = configured
            .iter()
            .filter(|e| sees(e))
            .map(|e| (e.clone(), Vec::new()))
            .collect();
        for gateway in view.gateways {
            environments
                .entry(gateway.environment.clone())
                .or_default()
                .push(gateway);
        }
        let revision = ledger.last_revision()?;
        let findings = revision
            .as_ref()
            .filter(|r| !r.valid)
            .map(FindingLine::of)
            .unwrap_or_default();
        Ok(Overview {
            environments,
            revision,
            findings,
            pins: view.pins,
            last_pass: None,
            stale_after: 0,
            ledger_error: None,
        })
    }

    /// Gateways by state, every state, in the order states are listed.
    fn counts(&self) -> Vec<(&'static str, usize)> {
        let all = self.environments.values().flatten();
        GatewayState::ALL
            .iter()
            .map(|state| {
                (
                    state.as_str(),
                    all.clone().filter(|g| g.state == *state).count(),
                )
            })
            .collect()
    }

    fn attention(&self) -> Vec<&GatewayRecord> {
        self.environments
            .values()
            .flatten()
            .filter(|g| !g.state.settled())
            .collect()
    }
}

pub fn render(overview: &Overview, chrome: &Chrome<'_>) -> Markup {
    let now = chrome.now;
    let counts = overview.counts();
    let attention = overview.attention();
    let stale = match overview.last_pass {
        Some(at) => now - at > overview.stale_after,
        None => true,
    };
    let gateways: usize = overview.environments.values().map(Vec::len).sum();
    layout(
        chrome,
        html! {
            h1 { "Which version runs where" }
            section #revision aria-label="Followed revision" {
                @match &overview.revision {
                    Some(revision) => p {
                        "Newest revision " code { (prefix(&revision.commit, 8)) }
                        ", seen " (ago(now, revision.seen_at))
                        @if revision.valid { " · valid" } @else { " · " strong.bad { "invalid" } }
                        " · " (overview.environments.len()) " environments, " (gateways) " gateways"
                    },
                    None => p { "No revision fetched yet." },
                }
                @if let Some(revision) = overview.revision.as_ref().filter(|r| !r.valid) {
                    div.banner.bad #invalid role="alert" {
                        p {
                            strong { "The newest revision " code { (prefix(&revision.commit, 8)) } " is invalid" }
                            " (" (revision.errors) " " (if revision.errors == 1 { "error" } else { "errors" }) "): "
                            "it is not applied and every gateway keeps the last good version. "
                            "Run " code { "sluice validate --rev " (prefix(&revision.commit, 8)) } " to see why."
                        }
                        ul {
                            @for finding in overview.findings.iter().take(20) {
                                li { code { (finding.location) } " " (finding.message) " " span.muted { "(" (finding.rule) ")" } }
                            }
                        }
                    }
                }
                @if stale {
                    div.banner.warn #stale role="status" {
                        @match overview.last_pass {
                            Some(at) => { "This data may be stale: the last reconcile finished " (ago(now, at)) "." }
                            None => { "No reconcile has finished since this Sluice started; what is shown is what the ledger last recorded." }
                        }
                    }
                }
                @if let Some(error) = &overview.ledger_error {
                    div.banner.bad role="alert" { "The ledger cannot be written: " (error) ". No gateway is changed until it can." }
                }
            }
            ul #counts aria-label="Gateways by state" {
                @for (state, count) in &counts {
                    li data-state=(state) class={ "count s-" (state) } {
                        span.n { (count) } " " span.label { (state) }
                    }
                }
            }
            @if !attention.is_empty() {
                section #attention {
                    h2 { "Needs attention (" (attention.len()) ")" }
                    ul {
                        @for gateway in attention.iter().take(ATTENTION_LISTED) {
                            li data-environment=(gateway.environment) data-gateway=(gateway.gateway) {
                                a href=(gateway_href(&gateway.environment, &gateway.gateway)) {
                                    (gateway.environment) "/" (gateway.gateway)
                                }
                                " " (page::state(gateway.state)) " "
                                span.reason { (reason(gateway)) }
                            }
                        }
                        @if attention.len() > ATTENTION_LISTED {
                            li.muted { "and " (attention.len() - ATTENTION_LISTED) " more" }
                        }
                    }
                }
            }
            @if overview.environments.is_empty() {
                p.empty { "No environments yet: once the first revision is fetched and validated, they appear here." }
            } @else {
                table #matrix {
                    caption { "Environments and their gateways" }
                    thead { tr { th scope="col" { "Environment" } th scope="col" colspan="999" { "Gateways" } } }
                    tbody {
                        @for (environment, gateways) in &overview.environments {
                            tr data-environment=(environment) {
                                th scope="row" {
                                    (environment_link(environment))
                                    @if let Some(pin) = overview.pins.iter().find(|p| p.environment == *environment) {
                                        " " span.pin title={ "pinned by " (pin.by) } { "⚓ pinned" }
                                    }
                                }
                                @if gateways.is_empty() {
                                    td.empty { "no gateway recorded yet" }
                                }
                                @for shown in cells(gateways) {
                                    @match shown {
                                        Shown::One(gateway) => (cell(gateway, now)),
                                        Shown::Alike(alike) => (group(environment, &alike, now)),
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// An environment with more gateways than this shows the settled ones that
/// run the same version as one cell (with how many): at 10,000 gateways the
/// page stays small, and every gateway that needs attention still has a
/// cell of its own.
const GROUP_OVER: usize = 12;

enum Shown<'a> {
    One(&'a GatewayRecord),
    /// Settled gateways in the same state at the same version.
    Alike(Vec<&'a GatewayRecord>),
}

fn cells(gateways: &[GatewayRecord]) -> Vec<Shown<'_>> {
    if gateways.len() <= GROUP_OVER {
        return gateways.iter().map(Shown::One).collect();
    }
    // By (state, desired digest, desired revision).
    type Version<'a> = (&'static str, Option<&'a Digest>, Option<&'a str>);
    let mut alike: BTreeMap<Version<'_>, Vec<&GatewayRecord>> = BTreeMap::new();
    let mut shown = Vec::new();
    for gateway in gateways {
        if gateway.state.settled() && gateway.observed_digest == gateway.desired_digest {
            let key = (
                gateway.state.as_str(),
                gateway.desired_digest.as_ref(),
                gateway.desired_revision.as_deref(),
            );
            alike.entry(key).or_default().push(gateway);
        } else {
            shown.push(Shown::One(gateway));
        }
    }
    let mut groups: Vec<Shown<'_>> = alike
        .into_values()
        .map(|g| {
            if g.len() == 1 {
                Shown::One(g[0])
            } else {
                Shown::Alike(g)
            }
        })
        .collect();
    groups.append(&mut shown);
    groups
}

/// Settled gateways at one version, as one cell.
fn group(environment: &str, alike: &[&GatewayRecord], now: Millis) -> Markup {
    let first = alike[0];
    let oldest = alike
        .iter()
        .map(|g| g.updated_at)
        .min()
        .unwrap_or(first.updated_at);
    html! {
        td class={ "cell group s-" (first.state.as_str()) }
            data-environment=(environment)
            data-state=(first.state.as_str())
            data-count=(alike.len()) {
            a.name href={ "/environments/" (page::path(environment)) "#gateways" } {
                (alike.len()) " gateways"
            }
            " " (page::state(first.state))
            br;
            (version_code(first.desired_digest.as_ref(), first.desired_revision.as_deref()))
            br;
            small.age { "oldest read " (ago(now, oldest)) }
        }
    }
}

/// One gateway of the matrix.
fn cell(gateway: &GatewayRecord, now: Millis) -> Markup {
    let runs_other =
        gateway.observed_digest.is_some() && gateway.observed_digest != gateway.desired_digest;
    html! {
        td class={ "cell s-" (gateway.state.as_str()) }
            data-environment=(gateway.environment)
            data-gateway=(gateway.gateway)
            data-state=(gateway.state.as_str()) {
            a.name href=(gateway_href(&gateway.environment, &gateway.gateway)) { (gateway.gateway) }
            " " (page::state(gateway.state))
            br;
            (version_code(gateway.desired_digest.as_ref(), gateway.desired_revision.as_deref()))
            @if runs_other {
                br;
                span.live { "runs " (version_code(gateway.observed_digest.as_ref(), None)) }
            }
            br;
            small.age { "read " (ago(now, gateway.updated_at)) }
        }
    }
}

/// Why a gateway needs attention, in a few words.
pub fn reason(gateway: &GatewayRecord) -> String {
    match (&gateway.error, gateway.state) {
        (Some(error), _) => error.clone(),
        (None, GatewayState::Drifted) => "runs something other than what Sluice applied".into(),
        (None, GatewayState::Pending) => "not yet applied".into(),
        (None, GatewayState::Applying) => "an apply is in flight".into(),
        (None, GatewayState::Gated) => "held by its promotion gate".into(),
        (None, state) => state.as_str().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::session::Viewer;

    fn record(environment: &str, gateway: &str, state: GatewayState) -> GatewayRecord {
        GatewayRecord {
            environment: environment.into(),
            gateway: gateway.into(),
            desired_digest: Some(format!("sha256:{}", "ab".repeat(32)).into()),
            desired_revision: Some("0123456789abcdef".into()),
            observed_digest: Some(format!("sha256:{}", "ab".repeat(32)).into()),
            state,
            changed_at: 1_000,
            updated_at: 1_000,
            error: None,
        }
    }

    fn overview(gateways: Vec<GatewayRecord>) -> Overview {
        let mut environments: BTreeMap<String, Vec<GatewayRecord>> = BTreeMap::new();
        for g in gateways {
            environments
                .entry(g.environment.clone())
                .or_default()
                .push(g);
        }
        Overview {
            environments,
            revision: Some(RevisionRecord {
                commit: "fedcba9876543210".into(),
                seen_at: 1_000,
                valid: true,
                errors: 0,
                findings: Vec::new(),
            }),
            findings: Vec::new(),
            pins: Vec::new(),
            last_pass: Some(5_000),
            stale_after: 60_000,
            ledger_error: None,
        }
    }

    fn html(overview: &Overview) -> String {
        let viewer = Viewer::open();
        let chrome = Chrome {
            title: "Overview",
            viewer: &viewer,
            now: 6_000,
            section: page::Section::Overview,
        };
        render(overview, &chrome).into_string()
    }

    #[test]
    fn every_gateway_is_a_cell_with_its_version_and_state_in_words() {
        let mut drifted = record("production", "prod-eu-1", GatewayState::Drifted);
        drifted.observed_digest = Some(format!("sha256:{}", "cd".repeat(32)).into());
        let page = html(&overview(vec![
            record("development", "dev-1", GatewayState::InSync),
            drifted,
        ]));
        assert!(page.contains(
            r#"data-environment="development" data-gateway="dev-1" data-state="in-sync""#
        ));
        assert!(page.contains(r#"data-gateway="prod-eu-1" data-state="drifted""#));
        assert!(page.contains("sha256:abababababab@01234567"));
        assert!(
            page.contains("runs <code class=\"version\""),
            "a drifted cell says what runs"
        );
        assert!(page.contains(
            r#"<li data-state="drifted" class="count s-drifted"><span class="n">1</span>"#
        ));
        assert!(
            page.contains(r#"id="attention""#),
            "the drifted gateway needs attention"
        );
        assert!(!page.contains(r#"id="stale""#));
    }

    #[test]
    fn an_invalid_head_and_stale_data_get_banners() {
        let mut overview = overview(vec![record("development", "dev-1", GatewayState::InSync)]);
        overview.revision = Some(RevisionRecord {
            commit: "deadbeef00".into(),
            seen_at: 1_000,
            valid: false,
            errors: 1,
            findings: vec![
                serde_json::from_str(r#"{"severity":"error","rule":"pack.unknown-policy","file":"base/a.yaml","line":3,"message":"no policy `pii-detectr`"}"#)
                    .unwrap(),
            ],
        });
        overview.findings = FindingLine::of(overview.revision.as_ref().unwrap());
        overview.last_pass = Some(-100_000);
        let page = html(&overview);
        assert!(page.contains(r#"id="invalid""#));
        assert!(page.contains("base/a.yaml:3"));
        assert!(page.contains("sluice validate --rev deadbeef"));
        assert!(page.contains(r#"id="stale""#));
    }

    #[test]
    fn a_large_environment_groups_its_settled_gateways_by_version() {
        let mut gateways: Vec<GatewayRecord> = (0..20)
            .map(|i| record("production", &format!("gw-{i:02}"), GatewayState::InSync))
            .collect();
        gateways[7].state = GatewayState::Drifted;
        gateways[7].observed_digest = Some(format!("sha256:{}", "cd".repeat(32)).into());
        let page = html(&overview(gateways));
        assert_eq!(page.matches(r#"<td class="cell"#).count(), 2, "{page}");
        assert!(page.contains(r#"data-state="in-sync" data-count="19""#));
        assert!(page.contains(r#"data-gateway="gw-07" data-state="drifted""#));
        assert!(page.contains("19 gateways"));
    }

    #[test]
    fn names_are_escaped() {
        let page = html(&overview(vec![record(
            "development",
            "<script>x</script>",
            GatewayState::InSync,
        )]));
        assert!(!page.contains("<script>x"));
        assert!(page.contains("&lt;script&gt;x"));
    }
}
