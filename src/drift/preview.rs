//! What applying a render would change at each gateway, without applying
//! it: `sluice diff`. Each gateway is read through its driver as a drift
//! scan reads it ([`super::scan`]) and compared with the render, live as
//! `a` and the render as `b`: what an apply would change, as `kubectl
//! diff` shows it. Nothing is applied or recorded.

use super::{compare_as, projections};
use crate::{
    config::{Digest, RenderedGateway, Repository, diff::Change, render_all},
    gateway::{self, Desired, DriverContext},
};
use futures::StreamExt;
use serde::Serialize;

/// What a gateway runs, against the render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Comparison {
    /// The render's version.
    Same,
    /// Something else, or nothing.
    Differs,
    /// It could not be read (see the error).
    Unreadable,
}

/// One gateway's live state against its render.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    pub environment: String,
    pub gateway: String,
    pub result: Comparison,
    pub desired_digest: Digest,
    /// `None` when the gateway runs nothing or could not be read.
    pub live_digest: Option<Digest>,
    /// Field by field, live → desired.
    pub changes: Vec<Change>,
    /// Unified text diff, live as `a`, desired as `b`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub diff: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a render is of, for the diff's file names and the drivers.
#[derive(Debug, Clone, Copy)]
pub struct Render<'a> {
    /// The commit (or the work tree's stand-in) the render came from.
    pub revision: &'a str,
    /// How the diff names it: `work tree`, `HEAD`, …
    pub label: &'a str,
}

/// Reads every gateway `repo` renders (of `only`, or all), at most
/// `concurrency` at once, and compares each with its render; in
/// environment and gateway order.
pub async fn preview(
    repo: &Repository,
    render: Render<'_>,
    only: Option<&str>,
    context: &DriverContext,
    concurrency: usize,
) -> Vec<Preview> {
    let rendered = render_all(repo, only);
    let mut found: Vec<Preview> = futures::stream::iter(&rendered)
        .map(|r| preview_one(repo, r, render, context))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    found.sort_by(|a, b| (&a.environment, &a.gateway).cmp(&(&b.environment, &b.gateway)));
    found
}

async fn preview_one(
    repo: &Repository,
    rendered: &RenderedGateway,
    render: Render<'_>,
    context: &DriverContext,
) -> Preview {
    let mut preview = Preview {
        environment: rendered.environment.clone(),
        gateway: rendered.gateway.clone(),
        result: Comparison::Unreadable,
        desired_digest: rendered.digest.clone(),
        live_digest: None,
        changes: Vec::new(),
        diff: String::new(),
        error: None,
    };
    let spec = repo
        .environments
        .get(&rendered.environment)
        .and_then(|env| env.gateways.iter().find(|g| g.name() == rendered.gateway));
    let Some(spec) = spec else {
        preview.error = Some("not in the repository's gateways".into());
        return preview;
    };
    let driver = match gateway::connect(&rendered.environment, spec, context) {
        Ok(driver) => driver,
        Err(e) => {
            preview.error = Some(e.to_string());
            return preview;
        }
    };
    // NB: what the gateway really serves, as a drift scan reads it.
    let live = match driver.verified().await {
        Ok(live) => live,
        Err(e) => {
            preview.error = Some(e.to_string());
            return preview;
        }
    };
    preview.live_digest = live.digest.clone();
    if live.digest.as_ref() == Some(&rendered.digest) {
        preview.result = Comparison::Same;
        return preview;
    }
    preview.result = Comparison::Differs;
    let desired = Desired {
        environment: rendered.environment.clone(),
        gateway: rendered.gateway.clone(),
        digest: rendered.digest.clone(),
        body: rendered.canonical.clone(),
        revision: render.revision.to_owned(),
    };
    let (wanted, running) = projections(driver.as_ref(), &desired).await;
    let place = format!("{}/{}", rendered.environment, rendered.gateway);
    let (a, b) = (
        format!("{place} (live)"),
        format!("{place} ({})", render.label),
    );
    // NB: comparing megabytes is CPU work: off the runtime's workers.
    (preview.changes, preview.diff) =
        tokio::task::spawn_blocking(move || compare_as(&running, &wanted, &a, &b))
            .await
            .unwrap_or_default();
    preview
}
