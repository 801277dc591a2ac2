//! An environment's page (its promotion lane and gate, gateways, pin, eval
//! runs, drift episodes with their field-level changes, deployments and
//! recent attempts) and its full attempt history, paged by cursor.

use super::page::{
    self, Chrome, ago, csrf_field, environment_link, gateway_href, layout, path, version_code, when,
};
use super::session::Viewer;
use crate::server::Scope;
use crate::{
    config::{Repository, diff::Change, render},
    ledger::{
        Attempt, Deployment, DriftEpisode, EvalRun, GatewayRecord, HistoryCursor, Ledger,
        LedgerError, Millis, Pin,
    },
    reconcile::{
        gate::{self, Evaluation, Gate, Missing},
        status::StatusView,
    },
};
use maud::{Markup, html};
use std::time::Duration;

/// Rows of each list on the environment page (the history page has all).
const RECENT: usize = 20;
/// Attempts on one page of history.
pub const HISTORY_PAGE: usize = 50;

/// Where the environment sits in the promotion order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lane {
    pub upstream: Option<String>,
    pub downstream: Vec<String>,
    pub soak: Option<String>,
    pub evals: Vec<String>,
}

impl Lane {
    pub fn of(repo: &Repository, environment: &str) -> Option<Lane> {
        let env = repo.environments.get(environment)?;
        let promotion = env.spec.promotion.as_ref();
        Some(Lane {
            upstream: promotion.map(|p| p.from.clone()),
            downstream: repo
                .environments
                .values()
                .filter(|e| {
                    e.spec
                        .promotion
                        .as_ref()
                        .is_some_and(|p| p.from == environment)
                })
                .map(|e| e.slug.clone())
                .collect(),
            soak: promotion.and_then(|p| p.soak.as_ref()).map(|s| s.0.clone()),
            evals: promotion.map(|p| p.evals.clone()).unwrap_or_default(),
        })
    }
}

pub struct EnvironmentPage {
    pub environment: String,
    pub gateways: Vec<GatewayRecord>,
    /// `None` when the followed revision does not have the environment
    /// (or no revision is loaded, as in a controller without its repository).
    pub lane: Option<Lane>,
    pub gate: Option<Evaluation>,
    pub pin: Option<Pin>,
    pub eval_runs: Vec<EvalRun>,
    pub drift: Vec<DriftEpisode>,
    pub deployments: Vec<Deployment>,
    pub recent: Vec<Attempt>,
}

impl EnvironmentPage {
    /// `None` when neither the ledger nor the followed revision knows it.
    pub fn read(
        ledger: &dyn Ledger,
        repo: Option<&Repository>,
        environment: &str,
        now: Millis,
    ) -> Result<Option<EnvironmentPage>, LedgerError> {
        let view = StatusView::read(ledger, Some(environment))?;
        let deployments = ledger.deployments(environment, RECENT)?;
        let configured = repo.and_then(|r| r.environments.get(environment));
        if configured.is_none() && view.gateways.is_empty() && deployments.is_empty() {
            return Ok(None);
        }
        let gate = match (repo, configured) {
            (Some(repo), Some(env)) => {
                let desired = render::pack_digests(repo, env);
                gate::evaluate(ledger, env, &desired, now)?
            }
            _ => None,
        };
        Ok(Some(EnvironmentPage {
            environment: environment.to_owned(),
            gateways: view.gateways,
            lane: repo.and_then(|r| Lane::of(r, environment)),
            gate,
            pin: view.pins.into_iter().next(),
            eval_runs: ledger.eval_runs(environment, None, RECENT)?,
            drift: ledger.drift_episodes(Some(environment), false, RECENT)?,
            deployments,
            recent: ledger.history(environment, None, RECENT)?,
        }))
    }
}

pub fn render(page: &EnvironmentPage, chrome: &Chrome<'_>) -> Markup {
    let env = &page.environment;
    let now = chrome.now;
    layout(
        chrome,
        html! {
            nav.crumbs aria-label="Breadcrumb" { a href="/" { "Overview" } " / " (env) }
            h1 { "Environment " (env) }
            (lane(page))
            (actions(page, chrome.viewer))
            section #gateways {
                h2 { "Gateways" }
                @if page.gateways.is_empty() {
                    p.empty { "No gateway recorded yet." }
                } @else {
                    table.list {
                        thead { tr { th { "Gateway" } th { "State" } th { "Should run" } th { "Runs" } th { "Read back" } th { "Last error" } } }
                        tbody {
                            @for g in &page.gateways {
                                tr data-gateway=(g.gateway) data-state=(g.state.as_str()) {
                                    td { a href=(gateway_href(env, &g.gateway)) { (g.gateway) } }
                                    td { (page::state(g.state)) }
                                    td { (version_code(g.desired_digest.as_ref(), g.desired_revision.as_deref())) }
                                    td { (version_code(g.observed_digest.as_ref(), None)) }
                                    td { (ago(now, g.updated_at)) }
                                    td.error { (g.error.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
            @if !page.eval_runs.is_empty() {
                section #evals {
                    h2 { "Eval runs" }
                    (eval_table(&page.eval_runs))
                }
            }
            section #drift {
                h2 { "Drift episodes" }
                @if page.drift.is_empty() {
                    p.empty { "No drift recorded." }
                } @else {
                    (drift_list(&page.drift, now, true))
                }
            }
            section #deployments {
                h2 { "Deployments" }
                @if page.deployments.is_empty() {
                    p.empty { "The environment has not yet run a version on every gateway." }
                } @else {
                    table.list {
                        thead { tr { th { "Version" } th { "Packs" } th { "Verified" } } }
                        tbody {
                            @for d in &page.deployments {
                                tr {
                                    td { (version_code(Some(&d.digest), Some(&d.revision))) }
                                    td { @for (i, p) in d.packs.iter().enumerate() { @if i > 0 { ", " } (p.name) " " (p.version) } }
                                    td { (when(d.verified_at)) }
                                }
                            }
                        }
                    }
                }
            }
            section #recent {
                h2 { "Recent attempts" }
                (attempt_table(&page.recent, now))
                p { a href={ "/environments/" (path(env)) "/history" } { "Full history" } }
            }
        },
    )
}

fn lane(page: &EnvironmentPage) -> Markup {
    let Some(lane) = &page.lane else {
        return html! {};
    };
    html! {
        section #lane {
            h2 { "Promotion" }
            ol.lane aria-label="Promotion lane" {
                @if let Some(upstream) = &lane.upstream {
                    li { (environment_link(upstream)) }
                }
                li aria-current="page" { strong { (page.environment) } }
                @for downstream in &lane.downstream {
                    li { (environment_link(downstream)) }
                }
            }
            @if lane.upstream.is_some() {
                p {
                    "Promoted from " (lane.upstream.as_deref().unwrap_or_default())
                    @if let Some(soak) = &lane.soak { " after a soak of " (soak) }
                    @if !lane.evals.is_empty() { ", once suites " (lane.evals.join(", ")) " passed there" }
                    "."
                }
            }
            @match &page.gate {
                Some(Evaluation { gate: Gate::Open, .. }) => p #gate data-gate="open" { "Gate: " strong.good { "open" } " — nothing is held back." },
                Some(Evaluation { gate: Gate::Held(waiting), upstream, soak }) => div #gate data-gate="held" {
                    p { "Gate: " strong.warn { "held" } }
                    ul {
                        @for w in waiting {
                            li {
                                "pack " strong { (w.pack) } " " (w.version) " " code { (render::short_digest(&w.digest)) } ": "
                                (missing(&w.missing, upstream, *soak))
                            }
                        }
                    }
                },
                None => {},
            }
        }
    }
}

fn missing(missing: &Missing, upstream: &str, soak: Duration) -> Markup {
    html! {
        @match missing {
            Missing::NotUpstream => { (upstream) " does not run it yet" },
            Missing::UpstreamDrifting => { (upstream) " is drifting: nothing soaks meanwhile" },
            Missing::Soaking { remaining_ms } => {
                "soaking in " (upstream) ", "
                span.countdown data-remaining-ms=(remaining_ms) { (gate::human(Duration::from_millis(*remaining_ms))) }
                " of " (gate::human(soak)) " to go"
            },
            Missing::EvalsPending { suites } => { "suites not yet run in " (upstream) ": " (suites.join(", ")) },
            Missing::EvalsFailed { suite, failed, cases } => {
                "suite " strong { (suite) } " failed in " (upstream) " (" (failed) " failed: " (cases.join(", ")) ")"
            },
        }
    }
}

fn actions(page: &EnvironmentPage, viewer: &Viewer) -> Markup {
    let env = &page.environment;
    let base = format!("/environments/{}", path(env));
    html! {
        section #actions aria-label="Actions" {
            @if viewer.may_act(env) {
                form.inline method="post" action={ (base) "/sync" } {
                    (csrf_field(viewer))
                    button #sync type="submit" { "Sync now" }
                }
                @if page.pin.is_some() {
                    form.inline method="post" action={ (base) "/unpin" } {
                        (csrf_field(viewer))
                        button #unpin type="submit" { "Unpin" }
                    }
                } @else {
                    form.inline method="post" action={ (base) "/pin" } {
                        (csrf_field(viewer))
                        label { "Pin to " input name="to" placeholder="current version" size="14"; }
                        " "
                        label { "because " input name="reason" placeholder="reason" size="24"; }
                        " "
                        button #pin type="submit" { "Pin" }
                    }
                }
            } @else if viewer.signed_in {
                p.muted { "Your token is not scoped to " (env) ": you can look, not act." }
            } @else if viewer.scope == Scope::Open {
                p.muted { "Read-only: this dashboard has no API tokens configured, so nobody can act through it." }
            } @else {
                p.muted { "Read-only. " a href="/login" { "Sign in" } " with a token for " (env) " to sync or pin (a dashboard without tokens is read-only)." }
            }
            @if let Some(pin) = &page.pin {
                p #pinned {
                    "⚓ Pinned at " (version_code(Some(&pin.digest), Some(&pin.revision)))
                    " by " strong { (pin.by) } ", " (when(pin.at))
                    @if let Some(reason) = &pin.reason { ": " em { (reason) } }
                }
            }
        }
    }
}

pub fn eval_table(runs: &[EvalRun]) -> Markup {
    html! {
        table.list {
            thead { tr { th { "Suite" } th { "Version" } th { "Passed" } th { "Failed" } th { "When" } th { "Failures" } } }
            tbody {
                @for run in runs {
                    tr data-suite=(run.suite) data-failed=(run.failed) {
                        td { (run.suite) }
                        td { (version_code(Some(&run.digest), Some(&run.revision))) }
                        td { (run.passed) }
                        td class=[(run.failed > 0).then_some("bad")] { (run.failed) }
                        td { (when(run.at)) }
                        td { @for f in run.failures.iter().take(5) { div { (f.gateway) ": " (f.case) " — " (f.reason) } } }
                    }
                }
            }
        }
    }
}

/// Drift episodes, each with its field-level changes.
pub fn drift_list(episodes: &[DriftEpisode], now: Millis, with_gateway: bool) -> Markup {
    html! {
        ol.episodes {
            @for e in episodes {
                li data-gateway=(e.gateway) data-open=(e.resolved_at.is_none()) {
                    @if with_gateway {
                        a href=(gateway_href(&e.environment, &e.gateway)) { (e.gateway) } " · "
                    }
                    @match e.resolved_at {
                        None => { strong.bad { "open" } ", since " (ago(now, e.onset_at)) },
                        Some(at) => {
                            "from " (when(e.onset_at)) " to " (when(at))
                            @if let Some(how) = e.resolution { " (" (how.as_str()) ")" }
                        },
                    }
                    " · should run " (version_code(Some(&e.desired_digest), Some(&e.revision)))
                    ", ran " (version_code(e.live_digest.as_ref(), None))
                    (changes(&e.changes))
                }
            }
        }
    }
}

/// The field-level changes of an episode.
pub fn changes(changes: &[Change]) -> Markup {
    html! {
        @if !changes.is_empty() {
            ul.changes {
                @for change in changes {
                    li data-pointer=(change.pointer) { code { (change.describe()) } }
                }
            }
        }
    }
}

pub fn attempt_table(attempts: &[Attempt], now: Millis) -> Markup {
    html! {
        @if attempts.is_empty() {
            p.empty { "No attempts recorded." }
        } @else {
            table.list.attempts {
                thead { tr { th { "#" } th { "Started" } th { "Gateway" } th { "Version" } th { "Trigger" } th { "Outcome" } th { "Took" } th { "Error" } } }
                tbody {
                    @for a in attempts {
                        tr.attempt data-id=(a.id) {
                            td { (a.id) }
                            td { (when(a.start.started_at)) }
                            td { a href=(gateway_href(&a.start.environment, &a.start.gateway)) { (a.start.gateway) } }
                            td { (version_code(Some(&a.start.digest), Some(&a.start.revision))) }
                            td { (a.start.trigger.as_str()) }
                            td { @match a.outcome { Some(o) => span class={ "outcome o-" (o.as_str()) } { (o.as_str()) }, None => span.outcome { "in flight " (ago(now, a.start.started_at)) } } }
                            td { @if let Some(done) = a.finished_at { ((done - a.start.started_at).max(0)) " ms" } }
                            td.error { (a.error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

/// One page of an environment's (or one gateway's) history.
pub struct HistoryPage {
    pub environment: String,
    pub gateway: Option<String>,
    pub attempts: Vec<Attempt>,
    /// Where the next (older) page starts, when there is one.
    pub older: Option<HistoryCursor>,
    /// This is not the newest page.
    pub paged: bool,
}

impl HistoryPage {
    pub fn read(
        ledger: &dyn Ledger,
        environment: &str,
        gateway: Option<&str>,
        before: Option<HistoryCursor>,
    ) -> Result<HistoryPage, LedgerError> {
        // One more than a page: whether an older page exists, without a count.
        let mut attempts = ledger.history_page(environment, gateway, before, HISTORY_PAGE + 1)?;
        let more = attempts.len() > HISTORY_PAGE;
        attempts.truncate(HISTORY_PAGE);
        Ok(HistoryPage {
            environment: environment.to_owned(),
            gateway: gateway.map(str::to_owned),
            older: attempts.last().filter(|_| more).map(HistoryCursor::after),
            attempts,
            paged: before.is_some(),
        })
    }

    fn href(&self, before: Option<HistoryCursor>) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(gateway) = &self.gateway {
            query.append_pair("gateway", gateway);
        }
        if let Some(before) = before {
            query.append_pair("before", &before.to_string());
        }
        let query = query.finish();
        let base = format!("/environments/{}/history", path(&self.environment));
        if query.is_empty() {
            base
        } else {
            format!("{base}?{query}")
        }
    }
}

pub fn render_history(page: &HistoryPage, chrome: &Chrome<'_>) -> Markup {
    let env = &page.environment;
    layout(
        chrome,
        html! {
            nav.crumbs aria-label="Breadcrumb" {
                a href="/" { "Overview" } " / " (environment_link(env)) " / history"
            }
            h1 {
                "History of " (env)
                @if let Some(gateway) = &page.gateway { " / " (gateway) }
            }
            (attempt_table(&page.attempts, chrome.now))
            nav.pager aria-label="Pages" {
                @if page.paged { a #newest href=(page.href(None)) { "« Newest" } " " }
                @if let Some(older) = page.older { a #older rel="next" href=(page.href(Some(older))) { "Older »" } }
            }
        },
    )
}
