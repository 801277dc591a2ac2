//! The `configmap` driver: a gateway that mounts (or watches) a Kubernetes
//! ConfigMap holding its policy as `policy.json` or (`format: litellm`) a
//! LiteLLM proxy's `config.yaml` with its audit callback `sluice_audit.py`,
//! annotated with the digest, revision and generation Sluice wrote. With a
//! `deployment`, the gateway's pods read it at start: Sluice then rolls the
//! Deployment after each write and waits for it (see [`super::rollout`]).
//!
//! What runs is read from the data, not from the annotations: a `kubectl
//! edit` of the data is drift even when the annotations still claim the old
//! digest (and with a Deployment, even before a restart picks it up: every
//! pod that starts from now on runs it). Writes are conditional on the
//! `resourceVersion` read, the ConfigMap's own compare-and-swap, so a change
//! made meanwhile is `Changed` (the protocol's `412`), never overwritten.

use super::{
    Applied, Desired, DriverContext, Gateway, GatewayError, Live, format, litellm,
    rollout::{self, Progress},
};
use crate::config::{
    Digest,
    model::{self, FileFormat},
};
use async_trait::async_trait;
use k8s_openapi::{
    api::{apps::v1::Deployment, core::v1::ConfigMap},
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
    runtime::wait::await_condition,
};
use serde_json::Value;
use std::{collections::BTreeMap, sync::Arc, time::Duration};
use tokio::sync::OnceCell;

/// The data key holding the rendered document (`format: sluice`).
pub const DATA_KEY: &str = "policy.json";
/// The data key holding LiteLLM's config (`format: litellm`); its audit
/// callback is beside it under [`litellm::AUDIT_CALLBACK_FILE`].
pub const LITELLM_DATA_KEY: &str = "config.yaml";
pub const DIGEST_ANNOTATION: &str = "sluice.dev/digest";
pub const REVISION_ANNOTATION: &str = "sluice.dev/revision";
pub const GENERATION_ANNOTATION: &str = "sluice.dev/generation";
/// The label naming the environment (its slug) whose gateway the ConfigMap
/// is: how the controller's watch finds the Environment to wake.
pub const ENVIRONMENT_LABEL: &str = "sluice.dev/environment";
/// The label on every ConfigMap Sluice writes.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "sluice";

/// One Kubernetes client for every `configmap` gateway of a process, made
/// on first use from the kubeconfig or the in-cluster service account (the
/// controller sets it up front).
pub type KubeClient = Arc<OnceCell<Client>>;

pub struct ConfigMapGateway {
    client: KubeClient,
    namespace: String,
    name: String,
    format: FileFormat,
    /// The Deployment rolled after each write, and how long its rollout may take.
    deployment: Option<(String, Duration)>,
    timeout: Duration,
}

impl ConfigMapGateway {
    pub fn new(spec: &model::ConfigMapGateway, context: &DriverContext) -> Self {
        let rollout_timeout = spec
            .rollout_timeout
            .as_ref()
            .and_then(model::DurationText::parse)
            .unwrap_or(rollout::DEFAULT_ROLLOUT_TIMEOUT);
        ConfigMapGateway {
            client: context.kube.clone(),
            namespace: spec.namespace.clone(),
            name: spec.config_map.clone(),
            format: spec.format,
            deployment: spec.deployment.clone().map(|d| (d, rollout_timeout)),
            timeout: context.timeout,
        }
    }

    async fn client(&self) -> Result<Client, GatewayError> {
        let client = self
            .client
            .get_or_try_init(|| async {
                Client::try_default().await.map_err(|e| {
                    GatewayError::Config(format!(
                        "no Kubernetes API for configmap gateways (kubeconfig or in-cluster): {e}"
                    ))
                })
            })
            .await?;
        Ok(client.clone())
    }

    async fn api(&self) -> Result<Api<ConfigMap>, GatewayError> {
        Ok(Api::namespaced(self.client().await?, &self.namespace))
    }

    async fn deployments(&self) -> Result<Api<Deployment>, GatewayError> {
        Ok(Api::namespaced(self.client().await?, &self.namespace))
    }

    /// Runs one API call within the gateway's timeout.
    async fn call<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, GatewayError> {
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(GatewayError::Timeout(self.timeout)),
            Ok(result) => result.map_err(|e| self.error(e)),
        }
    }

    fn error(&self, e: kube::Error) -> GatewayError {
        match e {
            kube::Error::Api(status) => match status.code {
                401 | 403 => GatewayError::Unauthorized {
                    status: status.code,
                },
                409 => GatewayError::Changed {
                    expected: format!("ConfigMap {} as read", self.place()),
                },
                code => GatewayError::Status {
                    status: code,
                    message: status.message,
                },
            },
            other => GatewayError::Unreachable(other.to_string()),
        }
    }

    fn place(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    async fn read(&self) -> Result<Option<ConfigMap>, GatewayError> {
        let api = self.api().await?;
        self.call(api.get_opt(&self.name)).await
    }

    /// The Deployment behind the gateway, when it names one.
    async fn pods(&self) -> Result<Option<Deployment>, GatewayError> {
        let Some((deployment, _)) = &self.deployment else {
            return Ok(None);
        };
        let api = self.deployments().await?;
        self.call(api.get_opt(deployment)).await
    }

    /// The version the gateway runs, given its ConfigMap and Deployment as
    /// read: what the ConfigMap holds, or with a Deployment what its pods
    /// were rolled onto ([`rollout::running`]). A ConfigMap holding what
    /// Sluice did not write is that, whatever the pods run: every pod
    /// started from now on runs it, so it is drift now, not at the next
    /// restart.
    fn running(&self, map: Option<&ConfigMap>, pods: Option<&Deployment>) -> Option<Digest> {
        let map = map?;
        let held = version(map, self.format)?;
        match &self.deployment {
            Some(_) if written_by_sluice(map, self.format) => rollout::running(&held, pods),
            _ => Some(held),
        }
    }

    /// Rolls `deployment` onto `digest` and waits, at most `deadline`, for
    /// its rollout to complete; with `restart` the pods restart even if the
    /// template carries `digest` already.
    async fn roll(
        &self,
        deployment: &str,
        digest: &Digest,
        deadline: Duration,
        restart: bool,
    ) -> Result<(), GatewayError> {
        let api = self.deployments().await?;
        let now = restart.then(|| Timestamp::now().to_string());
        let patch = Patch::Merge(rollout::patch(digest, now.as_deref()));
        self.call(api.patch(deployment, &PatchParams::default(), &patch))
            .await?;
        let place = format!("Deployment {}/{deployment}", self.namespace);
        // NB: a watch, not a poll: the answer comes as the status is written.
        let settled = |d: Option<&Deployment>| {
            d.is_none_or(|d| !matches!(rollout::progress(d), Progress::Waiting(_)))
        };
        let seen =
            match tokio::time::timeout(deadline, await_condition(api.clone(), deployment, settled))
                .await
            {
                Ok(Ok(seen)) => seen,
                Ok(Err(e)) => {
                    return Err(GatewayError::Unreachable(format!("watching {place}: {e}")));
                }
                // The last word, for the message.
                Err(_) => self.call(api.get_opt(deployment)).await?,
            };
        match seen
            .as_ref()
            .map(|d| (rollout::progress(d), rollout::template_digest(d)))
        {
            Some((Progress::Complete, Some(rolled))) if rolled == digest.as_str() => Ok(()),
            Some((Progress::Complete, rolled)) => Err(GatewayError::Mismatch {
                applied: digest.to_string(),
                reported: format!("{place} rolled onto {}", rolled.unwrap_or("nothing")),
            }),
            Some((Progress::Failed(why), _)) => {
                Err(GatewayError::Rollout(format!("{place}: {why}")))
            }
            Some((Progress::Waiting(why), _)) => Err(GatewayError::Rollout(format!(
                "{place} did not roll out within {deadline:?}: {why}"
            ))),
            None => Err(GatewayError::Rollout(format!("{place} was deleted"))),
        }
    }

    /// Puts back what ran before a rollout that did not complete, so that
    /// the Deployment controller scales the previous ReplicaSet back up and
    /// no pod that restarts later starts from the new config: the
    /// ConfigMap as it was (`before`, over `written`, what this apply
    /// stored), when it held a config Sluice wrote (a hand edit or nothing
    /// is no config to go back to), and the pod template's annotations
    /// (`pods`, as read before the patch). Says what it did after `why`.
    async fn restore(
        &self,
        why: String,
        before: Option<&ConfigMap>,
        written: Option<&ConfigMap>,
        pods: &Deployment,
    ) -> String {
        let Some(before) = before.filter(|m| written_by_sluice(m, self.format)) else {
            return format!(
                "{why}; nothing to put back (the ConfigMap held no config Sluice wrote)"
            );
        };
        let restored = async {
            if let Some(written) = written {
                let mut map = before.clone();
                // NB: over this apply's write only, never over a change made since.
                map.metadata.resource_version = written.metadata.resource_version.clone();
                map.metadata.managed_fields = None;
                let api = self.api().await?;
                self.call(api.replace(&self.name, &PostParams::default(), &map))
                    .await?;
            }
            let api = self.deployments().await?;
            let patch = Patch::Merge(rollout::restore(pods));
            self.call(api.patch(&pods.name_any(), &PatchParams::default(), &patch))
                .await
        }
        .await;
        match restored {
            Ok(_) => format!("{why}; the previous config was put back"),
            Err(e) => format!("{why}; putting the previous config back failed: {e}"),
        }
    }

    /// Writes `body` over `current` (the ConfigMap as just read) and checks
    /// what the API server stored, which it returns.
    async fn write(
        &self,
        api: &Api<ConfigMap>,
        current: Option<&ConfigMap>,
        desired: &Desired,
        body: String,
        generation: u64,
    ) -> Result<ConfigMap, GatewayError> {
        let data = match self.format {
            FileFormat::Sluice => BTreeMap::from([(DATA_KEY.to_owned(), body)]),
            // NB: LiteLLM loads the audit callback from beside its config,
            // which is where the mounted ConfigMap puts it.
            FileFormat::Litellm => BTreeMap::from([
                (LITELLM_DATA_KEY.to_owned(), body),
                (
                    litellm::AUDIT_CALLBACK_FILE.to_owned(),
                    litellm::AUDIT_CALLBACK.to_owned(),
                ),
            ]),
        };
        let map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                // NB: the compare-and-swap: a write over anything but what
                // was just read is refused with 409.
                resource_version: current.and_then(|m| m.metadata.resource_version.clone()),
                labels: Some(merged(
                    current.and_then(|m| m.metadata.labels.clone()),
                    [
                        (MANAGED_BY_LABEL, MANAGED_BY.to_owned()),
                        (ENVIRONMENT_LABEL, desired.environment.clone()),
                    ],
                )),
                annotations: Some(merged(
                    current.and_then(|m| m.metadata.annotations.clone()),
                    [
                        (DIGEST_ANNOTATION, desired.digest.to_string()),
                        (REVISION_ANNOTATION, desired.revision.clone()),
                        (GENERATION_ANNOTATION, generation.to_string()),
                    ],
                )),
                // Owners, finalizers and the rest stay as they are.
                managed_fields: None,
                ..current.map(|m| m.metadata.clone()).unwrap_or_default()
            },
            data: Some(data),
            ..Default::default()
        };
        let params = PostParams::default();
        let written = match current {
            Some(_) => self.call(api.replace(&self.name, &params, &map)).await?,
            None => self.call(api.create(&params, &map)).await?,
        };
        match version(&written, self.format) {
            Some(digest) if digest == desired.digest => Ok(written),
            other => Err(GatewayError::Mismatch {
                applied: desired.digest.to_string(),
                reported: other.map_or("nothing".into(), |d| d.to_string()),
            }),
        }
    }
}

/// The ConfigMap's config in `format`.
fn text(map: &ConfigMap, format: FileFormat) -> Option<&str> {
    let key = match format {
        FileFormat::Sluice => DATA_KEY,
        FileFormat::Litellm => LITELLM_DATA_KEY,
    };
    map.data.as_ref()?.get(key).map(String::as_str)
}

/// The version the ConfigMap holds in `format` ([`format::version_of`]).
fn version(map: &ConfigMap, format: FileFormat) -> Option<Digest> {
    text(map, format).map(|text| format::version_of(format, text))
}

/// Whether the ConfigMap holds what Sluice wrote there: its data is the
/// version it is annotated with.
fn written_by_sluice(map: &ConfigMap, format: FileFormat) -> bool {
    version(map, format).is_some_and(|held| annotated(map) == Some(held.as_str()))
}

/// The digest Sluice annotated the ConfigMap with when it wrote it.
fn annotated(map: &ConfigMap) -> Option<&str> {
    map.metadata
        .annotations
        .as_ref()?
        .get(DIGEST_ANNOTATION)
        .map(String::as_str)
}

/// The slug of the environment whose ConfigMap `map` is, when what it holds
/// is not what Sluice wrote (the data's digest is not the one annotated: a
/// hand edit, or the data or annotation taken away); `None` for Sluice's own
/// writes and for ConfigMaps without the environment label.
pub fn edited_by_hand(map: &ConfigMap) -> Option<&str> {
    let environment = map.metadata.labels.as_ref()?.get(ENVIRONMENT_LABEL)?;
    // NB: the watch sees ConfigMaps of every format; the data key says which.
    let format = match text(map, FileFormat::Litellm) {
        Some(_) => FileFormat::Litellm,
        None => FileFormat::Sluice,
    };
    let unchanged = match (version(map, format), annotated(map)) {
        (Some(held), Some(annotated)) => held.as_str() == annotated,
        (None, None) => true,
        _ => false,
    };
    (!unchanged).then_some(environment.as_str())
}

fn generation_of(map: &ConfigMap) -> Option<u64> {
    map.metadata
        .annotations
        .as_ref()?
        .get(GENERATION_ANNOTATION)?
        .parse()
        .ok()
}

#[async_trait]
impl Gateway for ConfigMapGateway {
    async fn live(&self) -> Result<Live, GatewayError> {
        let map = self.read().await?;
        let pods = self.pods().await?;
        Ok(Live {
            digest: self.running(map.as_ref(), pods.as_ref()),
            generation: map.as_ref().and_then(generation_of),
        })
    }

    async fn projection(&self) -> Result<Option<Value>, GatewayError> {
        let map = self.read().await?;
        let Some(text) = map.as_ref().and_then(|m| text(m, self.format)) else {
            return Ok(None);
        };
        let held = format::version_of(self.format, text);
        let pods = self.pods().await?;
        Ok(Some(match self.running(map.as_ref(), pods.as_ref()) {
            // NB: what those pods run is not in the ConfigMap any more.
            Some(running) if running != held => Value::String(format!(
                "<the Deployment's pods run {running}, not the ConfigMap's {held}>"
            )),
            _ => format::projection(self.format, text),
        }))
    }

    fn projected(&self, desired: &Desired) -> Value {
        format::projected(self.format, desired)
    }

    async fn apply(
        &self,
        desired: &Desired,
        expected: Option<&Digest>,
        generation: u64,
    ) -> Result<Applied, GatewayError> {
        let body = format::render(self.format, desired)?;
        let api = self.api().await?;
        let current = self.read().await?;
        let pods = self.pods().await?;
        let running = self.running(current.as_ref(), pods.as_ref());
        if running.as_ref() == Some(&desired.digest) {
            return Ok(Applied::Unchanged);
        }
        if running.as_ref() != expected {
            return Err(GatewayError::Changed {
                expected: expected.map_or("nothing".into(), |d| d.to_string()),
            });
        }
        if let Some(running) = current.as_ref().and_then(generation_of)
            && running > generation
        {
            return Err(GatewayError::StaleGeneration {
                running,
                offered: generation,
            });
        }
        let rollout = match (&self.deployment, pods) {
            (Some((deployment, deadline)), Some(pods)) => Some((deployment, *deadline, pods)),
            (Some((deployment, _)), None) => {
                return Err(GatewayError::Config(format!(
                    "Deployment {}/{deployment} does not exist: no pods would read the ConfigMap",
                    self.namespace
                )));
            }
            (None, _) => None,
        };
        let held = current.as_ref().and_then(|m| version(m, self.format));
        // NB: the ConfigMap may hold the version already, from an apply
        // whose rollout did not complete: then only the rollout is left.
        let written = if held.as_ref() == Some(&desired.digest) {
            None
        } else {
            Some(
                self.write(&api, current.as_ref(), desired, body, generation)
                    .await?,
            )
        };
        if let Some((deployment, deadline, pods)) = rollout {
            let by_hand = current
                .as_ref()
                .is_some_and(|m| held.is_some() && !written_by_sluice(m, self.format));
            match self
                .roll(deployment, &desired.digest, deadline, by_hand)
                .await
            {
                Err(GatewayError::Rollout(why)) => {
                    let why = self
                        .restore(why, current.as_ref(), written.as_ref(), &pods)
                        .await;
                    return Err(GatewayError::Rollout(why));
                }
                other => other?,
            }
        }
        Ok(Applied::Swapped {
            digest: desired.digest.clone(),
        })
    }
}

/// `existing` with `entries` set over it.
fn merged<const N: usize>(
    existing: Option<BTreeMap<String, String>>,
    entries: [(&str, String); N],
) -> BTreeMap<String, String> {
    let mut map = existing.unwrap_or_default();
    for (key, value) in entries {
        map.insert(key.to_owned(), value);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ConfigMap of environment `production` holding `data`, annotated
    /// with `annotated` as its digest.
    fn map(data: Option<&str>, annotated: Option<&str>) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                labels: Some(BTreeMap::from([(
                    ENVIRONMENT_LABEL.to_owned(),
                    "production".to_owned(),
                )])),
                annotations: annotated
                    .map(|d| BTreeMap::from([(DIGEST_ANNOTATION.to_owned(), d.to_owned())])),
                ..Default::default()
            },
            data: data.map(|d| BTreeMap::from([(DATA_KEY.to_owned(), d.to_owned())])),
            ..Default::default()
        }
    }

    #[test]
    fn a_litellm_configmap_is_read_by_its_config_yaml() {
        let desired = Desired::of_body(super::super::format::tests::LITELLM_BODY);
        let config = format::render(FileFormat::Litellm, &desired).unwrap();
        let mut written = map(None, Some(desired.digest.as_str()));
        let mut hold = |text: &str| {
            written.data = Some(BTreeMap::from([(
                LITELLM_DATA_KEY.to_owned(),
                text.to_owned(),
            )]));
            (
                version(&written, FileFormat::Litellm),
                edited_by_hand(&written).map(str::to_owned),
            )
        };
        assert_eq!(hold(&config), (Some(desired.digest.clone()), None));
        // The stamp still claims the digest; the rest says otherwise.
        let edited = config.replace("MASK", "BLOCK");
        assert_ne!(edited, config);
        assert_eq!(
            hold(&edited),
            (
                Some(Digest::of(edited.as_bytes())),
                Some("production".into())
            )
        );
    }

    #[test]
    fn only_data_that_is_not_the_annotated_digest_is_a_hand_edit() {
        let written = r#"{"enforcement":"enforce"}"#;
        let digest = Digest::of_json(written).unwrap();
        // Sluice's own write, also when re-indented by hand (same canonical JSON).
        assert_eq!(
            edited_by_hand(&map(Some(written), Some(digest.as_str()))),
            None
        );
        assert_eq!(
            edited_by_hand(&map(
                Some("{ \"enforcement\": \"enforce\" }"),
                Some(digest.as_str())
            )),
            None
        );
        assert_eq!(edited_by_hand(&map(None, None)), None);
        // The data changed, taken away, or never written by Sluice.
        for edited in [
            map(Some(r#"{"enforcement":"monitor"}"#), Some(digest.as_str())),
            map(Some("not json"), Some(digest.as_str())),
            map(None, Some(digest.as_str())),
            map(Some(written), None),
        ] {
            assert_eq!(edited_by_hand(&edited), Some("production"));
        }
        // Without the environment label there is nothing to wake.
        let mut unlabelled = map(Some("{}"), Some(digest.as_str()));
        unlabelled.metadata.labels = None;
        assert_eq!(edited_by_hand(&unlabelled), None);
    }
}
