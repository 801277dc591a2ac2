//! A read-only look at every gateway against the revision it should run:
//! what `sluice drift` prints. Nothing is applied or recorded; whether a
//! gateway drifted is [`super::decide`]'s call, as in the reconciler.

use super::{compare_live, decide};
use crate::{
    config::{Digest, RenderedGateway, Repository, diff::Change, render_all},
    gateway::{self, Desired, DriverContext},
    ledger::{GatewayRecord, Trigger},
};
use futures::StreamExt;
use serde::Serialize;
use std::collections::HashMap;

/// What a gateway was found running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Found {
    InSync,
    /// Something other than what Sluice verified there.
    Drifted,
    /// A version Sluice has not verified there: the change is not applied
    /// yet, or Sluice never applied to it (no ledger record). Not drift.
    Pending,
    /// Nothing (restarted empty, or never configured): not drift.
    Empty,
    Unreachable,
}

impl From<decide::Found> for Found {
    fn from(found: decide::Found) -> Self {
        match found {
            decide::Found::InSync => Found::InSync,
            decide::Found::Empty => Found::Empty,
            decide::Found::Pending => Found::Pending,
            decide::Found::Drifted => Found::Drifted,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub environment: String,
    pub gateway: String,
    pub found: Found,
    pub desired: Digest,
    pub live: Option<Digest>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub diff: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads every gateway (of `only`, or all) at most `concurrency` at once,
/// against the ledger's `records` and each environment's newest deployment
/// digest (`deployments`, by slug).
pub async fn observe(
    repo: &Repository,
    revision: &str,
    records: &[GatewayRecord],
    deployments: &HashMap<String, Digest>,
    context: &DriverContext,
    only: Option<&str>,
    concurrency: usize,
) -> Vec<Observation> {
    let records: HashMap<(&str, &str), &GatewayRecord> = records
        .iter()
        .map(|r| ((r.environment.as_str(), r.gateway.as_str()), r))
        .collect();
    let rendered = render_all(repo, only);
    let mut found: Vec<Observation> = futures::stream::iter(&rendered)
        .map(|r| {
            let record = records.get(&(r.environment.as_str(), r.gateway.as_str()));
            let deployment = deployments.get(&r.environment);
            observe_one(repo, r, revision, record.copied(), deployment, context)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    found.sort_by(|a, b| (&a.environment, &a.gateway).cmp(&(&b.environment, &b.gateway)));
    found
}

async fn observe_one(
    repo: &Repository,
    rendered: &RenderedGateway,
    revision: &str,
    record: Option<&GatewayRecord>,
    deployment: Option<&Digest>,
    context: &DriverContext,
) -> Observation {
    let mut observation = Observation {
        environment: rendered.environment.clone(),
        gateway: rendered.gateway.clone(),
        found: Found::Unreachable,
        desired: rendered.digest.clone(),
        live: None,
        changes: Vec::new(),
        diff: String::new(),
        error: None,
    };
    let Some(env) = repo.environments.get(&rendered.environment) else {
        return observation;
    };
    let spec = env.gateways.iter().find(|g| g.name() == rendered.gateway);
    let driver = match spec.map(|spec| gateway::connect(&rendered.environment, spec, context)) {
        Some(Ok(driver)) => driver,
        Some(Err(e)) => {
            observation.error = Some(e.to_string());
            return observation;
        }
        None => return observation,
    };
    let live = match driver.verified().await {
        Ok(live) => live,
        Err(e) => {
            observation.error = Some(e.to_string());
            return observation;
        }
    };
    observation.live = live.digest.clone();
    // NB: the facts of a drift scan: what it does about drift is the
    // reconciler's business, not this read's.
    let decision = decide::decide(&decide::Facts {
        desired: &rendered.digest,
        live: live.digest.as_ref(),
        record,
        deployment,
        policy: env.drift_policy(&repo.manifest),
        trigger: Trigger::Drift,
        gated: false,
    });
    observation.found = decision.found.into();
    if observation.found == Found::Drifted {
        let desired = Desired {
            environment: rendered.environment.clone(),
            gateway: rendered.gateway.clone(),
            digest: rendered.digest.clone(),
            body: rendered.canonical.clone(),
            revision: revision.to_owned(),
        };
        (observation.changes, observation.diff) = compare_live(driver.as_ref(), &desired).await;
    }
    observation
}
