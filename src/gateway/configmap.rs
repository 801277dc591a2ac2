//! The `configmap` driver: a gateway that mounts (or watches) a Kubernetes
//! ConfigMap holding its policy as `policy.json`, annotated with the digest,
//! revision and generation Sluice wrote.
//!
//! What runs is read from the data, not from the annotations: a `kubectl
//! edit` of the data is drift even when the annotations still claim the old
//! digest. Writes are conditional on the `resourceVersion` read, the
//! ConfigMap's own compare-and-swap, so a change made meanwhile is `Changed`
//! (the protocol's `412`), never overwritten.

use super::{Applied, Desired, DriverContext, Gateway, GatewayError, Live};
use crate::config::{Digest, model};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use std::{collections::BTreeMap, sync::Arc, time::Duration};
use tokio::sync::OnceCell;

/// The data key holding the rendered document.
pub const DATA_KEY: &str = "policy.json";
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
    timeout: Duration,
}

impl ConfigMapGateway {
    pub fn new(spec: &model::ConfigMapGateway, context: &DriverContext) -> Self {
        ConfigMapGateway {
            client: context.kube.clone(),
            namespace: spec.namespace.clone(),
            name: spec.config_map.clone(),
            timeout: context.timeout,
        }
    }

    async fn api(&self) -> Result<Api<ConfigMap>, GatewayError> {
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
        Ok(Api::namespaced(client.clone(), &self.namespace))
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
}

fn document(map: &ConfigMap) -> Option<&str> {
    map.data.as_ref()?.get(DATA_KEY).map(String::as_str)
}

/// The slug of the environment whose ConfigMap `map` is, when what it holds
/// is not what Sluice wrote (the data's digest is not the one annotated: a
/// hand edit, or the data or annotation taken away); `None` for Sluice's own
/// writes and for ConfigMaps without the environment label.
pub fn edited_by_hand(map: &ConfigMap) -> Option<&str> {
    let environment = map.metadata.labels.as_ref()?.get(ENVIRONMENT_LABEL)?;
    let annotated = map
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DIGEST_ANNOTATION));
    let held = document(map).map(super::document_digest);
    let unchanged = match (&held, annotated) {
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
        Ok(Live {
            digest: map.as_ref().and_then(document).map(super::document_digest),
            generation: map.as_ref().and_then(generation_of),
        })
    }

    async fn projection(&self) -> Result<Option<serde_json::Value>, GatewayError> {
        Ok(self
            .read()
            .await?
            .as_ref()
            .and_then(document)
            .map(super::json_projection))
    }

    async fn apply(
        &self,
        desired: &Desired,
        expected: Option<&Digest>,
        generation: u64,
    ) -> Result<Applied, GatewayError> {
        let api = self.api().await?;
        let current = self.read().await?;
        let running = current
            .as_ref()
            .and_then(document)
            .map(super::document_digest);
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
        let map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                // NB: the compare-and-swap: a write over anything but what
                // was just read is refused with 409.
                resource_version: current
                    .as_ref()
                    .and_then(|m| m.metadata.resource_version.clone()),
                labels: Some(merged(
                    current.as_ref().and_then(|m| m.metadata.labels.clone()),
                    [
                        (MANAGED_BY_LABEL, MANAGED_BY.to_owned()),
                        (ENVIRONMENT_LABEL, desired.environment.clone()),
                    ],
                )),
                annotations: Some(merged(
                    current
                        .as_ref()
                        .and_then(|m| m.metadata.annotations.clone()),
                    [
                        (DIGEST_ANNOTATION, desired.digest.to_string()),
                        (REVISION_ANNOTATION, desired.revision.clone()),
                        (GENERATION_ANNOTATION, generation.to_string()),
                    ],
                )),
                // Owners, finalizers and the rest stay as they are.
                managed_fields: None,
                ..current
                    .as_ref()
                    .map(|m| m.metadata.clone())
                    .unwrap_or_default()
            },
            data: Some(BTreeMap::from([(
                DATA_KEY.to_owned(),
                desired.body.to_string(),
            )])),
            ..Default::default()
        };
        let params = PostParams::default();
        let written = match current {
            Some(_) => self.call(api.replace(&self.name, &params, &map)).await?,
            None => self.call(api.create(&params, &map)).await?,
        };
        match document(&written).map(super::document_digest) {
            Some(digest) if digest == desired.digest => Ok(Applied::Swapped { digest }),
            other => Err(GatewayError::Mismatch {
                applied: desired.digest.to_string(),
                reported: other.map_or("nothing".into(), |d| d.to_string()),
            }),
        }
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
