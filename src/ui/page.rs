//! What every dashboard page shares: the layout (header, navigation, who
//! is signed in, the live-update hook) and the small pieces pages are made
//! of (a gateway's state, a version, an age). Pure: markup from data.

use super::session::Viewer;
use crate::{
    config::Digest,
    ledger::{GatewayState, Millis},
    reconcile::{
        clock::{age, rfc3339},
        status::version,
    },
};
use maud::{DOCTYPE, Markup, html};

/// Paths of the embedded assets; the build's version in the query, so a
/// new binary's assets are never served from an old cache.
pub const CSS: &str = concat!("/assets/sluice.css?v=", env!("CARGO_PKG_VERSION"));
pub const JS: &str = concat!("/assets/sluice.js?v=", env!("CARGO_PKG_VERSION"));

/// The frame around a page's content.
pub struct Chrome<'a> {
    pub title: &'a str,
    pub viewer: &'a Viewer,
    pub now: Millis,
    /// Which navigation entry is current.
    pub section: Section,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Environments,
    Compare,
    SignIn,
}

pub fn layout(chrome: &Chrome<'_>, content: Markup) -> Markup {
    let current = |section: Section| (chrome.section == section).then_some("page");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (chrome.title) " · Sluice" }
                link rel="stylesheet" href=(CSS);
                script src=(JS) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    nav aria-label="Main" {
                        a.brand href="/" { "Sluice" }
                        a href="/" aria-current=[current(Section::Overview)] { "Overview" }
                        a href="/compare" aria-current=[current(Section::Compare)] { "Compare" }
                    }
                    div.who {
                        @if chrome.viewer.signed_in {
                            span { "Signed in as " strong { (chrome.viewer.name) } }
                            form method="post" action="/logout" {
                                (csrf_field(chrome.viewer))
                                button type="submit" { "Sign out" }
                            }
                        } @else if chrome.section != Section::SignIn {
                            span.muted { "read-only" }
                        }
                    }
                }
                main #main data-events="/events" tabindex="-1" {
                    (content)
                }
                footer {
                    "Sluice " (env!("CARGO_PKG_VERSION")) " · rendered at "
                    time datetime=(rfc3339(chrome.now)) { (rfc3339(chrome.now)) }
                    span #live aria-live="polite" {}
                }
            }
        }
    }
}

/// The hidden CSRF field of a form that changes something.
pub fn csrf_field(viewer: &Viewer) -> Markup {
    html! {
        @if let Some(csrf) = &viewer.csrf {
            input type="hidden" name="csrf" value=(csrf);
        }
    }
}

/// A mark beside a state's word, so the state does not rest on colour.
fn glyph(state: GatewayState) -> &'static str {
    match state {
        GatewayState::InSync => "✓",
        GatewayState::Drifted => "≠",
        GatewayState::Pending => "…",
        GatewayState::Applying => "↻",
        GatewayState::Failed => "✗",
        GatewayState::Unreachable => "?",
        GatewayState::Gated => "‖",
        GatewayState::Pinned => "⚓",
    }
}

/// A state as a badge: its word, a mark and a colour.
pub fn state(state: GatewayState) -> Markup {
    html! {
        span class={ "state s-" (state.as_str()) } {
            span aria-hidden="true" { (glyph(state)) " " }
            (state.as_str())
        }
    }
}

/// `sha256:<12>@<commit>`, in the form every command shows versions.
pub fn version_code(digest: Option<&Digest>, revision: Option<&str>) -> Markup {
    let text = version(digest, revision);
    html! {
        code.version title=[digest.map(Digest::as_str)] { (text) }
    }
}

/// `5s ago` with the exact time on hover and for machines.
pub fn ago(now: Millis, at: Millis) -> Markup {
    html! {
        time datetime=(rfc3339(at)) title=(rfc3339(at)) { (age(now - at)) " ago" }
    }
}

/// A time as RFC 3339, for tables of history.
pub fn when(at: Millis) -> Markup {
    html! { time datetime=(rfc3339(at)) { (rfc3339(at).replace('T', " ").trim_end_matches('Z')) } }
}

pub fn environment_link(environment: &str) -> Markup {
    html! { a href={ "/environments/" (path(environment)) } { (environment) } }
}

pub fn gateway_href(environment: &str, gateway: &str) -> String {
    format!(
        "/environments/{}/gateways/{}",
        path(environment),
        path(gateway)
    )
}

/// A path segment: slugs are `[a-z0-9-]`, but a name from a ledger is
/// escaped anyway, so a strange one cannot break out of its URL.
pub fn path(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

/// A page that says why there is nothing to show, with a status code.
pub fn message(chrome: &Chrome<'_>, heading: &str, text: &str) -> Markup {
    layout(
        chrome,
        html! {
            h1 { (heading) }
            p.error role="alert" { (text) }
            p { a href="/" { "Back to the overview" } }
        },
    )
}
