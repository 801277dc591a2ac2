//! The formats a `file` or `configmap` gateway holds its config in
//! (`format:` in gateways.yaml): Sluice's policy document, or a LiteLLM
//! proxy `config.yaml` for a LiteLLM the user (or Kubernetes) restarts. One
//! place for both drivers, so a file and a ConfigMap holding the same
//! version hold the same bytes and read back as the same version.

use super::{Desired, GatewayError, litellm};
use crate::config::{Digest, document::PolicyDocument, model::FileFormat};
use serde_json::Value;

/// What `desired` is written as in `format`.
pub(crate) fn render(format: FileFormat, desired: &Desired) -> Result<String, GatewayError> {
    match format {
        FileFormat::Sluice => Ok(desired.body.to_string()),
        FileFormat::Litellm => {
            let (document, base) = litellm_document(desired)?;
            Ok(litellm::render(
                &document,
                &base,
                &litellm::Stamp {
                    digest: desired.digest.as_str(),
                    revision: &desired.revision,
                },
            ))
        }
    }
}

/// The version a config text is: for Sluice's document its canonical
/// digest; for a LiteLLM config the digest it is stamped with, as long as
/// the rest is what that stamp says was written (a hand edit makes it the
/// digest of its own bytes, which no version has).
pub(crate) fn version_of(format: FileFormat, text: &str) -> Digest {
    match format {
        FileFormat::Sluice => super::document_digest(text),
        FileFormat::Litellm => litellm::config_version(text),
    }
}

/// A config text as the drift code compares it.
pub(crate) fn projection(format: FileFormat, text: &str) -> Value {
    match format {
        FileFormat::Sluice => super::json_projection(text),
        FileFormat::Litellm => {
            litellm::project(text).unwrap_or_else(|e| Value::String(format!("<unreadable: {e}>")))
        }
    }
}

/// The desired state projected as [`projection`] projects what was written.
pub(crate) fn projected(format: FileFormat, desired: &Desired) -> Value {
    match (format, litellm_document(desired)) {
        (FileFormat::Litellm, Ok((document, base))) => litellm::projected(&document, &base),
        _ => serde_json::from_str(&desired.body).unwrap_or(Value::Null),
    }
}

/// The policy document and LiteLLM settings a desired state carries.
pub(crate) fn litellm_document(
    desired: &Desired,
) -> Result<(PolicyDocument, litellm::Base), GatewayError> {
    let document: PolicyDocument = serde_json::from_str(&desired.body)
        .map_err(|e| GatewayError::Config(format!("not a policy document: {e}")))?;
    let base = match document.litellm.as_ref().map(serde_json::to_value) {
        Some(Ok(Value::Object(base))) => base,
        _ => {
            return Err(GatewayError::Config(
                "a LiteLLM gateway's environment needs a litellm.yaml (its model_list)".into(),
            ));
        }
    };
    Ok((document, base))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::model;

    /// A LiteLLM environment's policy document: one pack redacting SSNs and
    /// e-mail addresses, over one model.
    pub(crate) const LITELLM_BODY: &str = r#"{"enforcement":"enforce","format":"sluice.dev/policy/v1","litellm":{"model_list":[{"litellm_params":{"api_key":"os.environ/OPENAI_API_KEY","model":"openai/gpt-4o-mini"},"model_name":"gpt-4o-mini"}]},"packs":{"support":{"chain":["pii-detector"],"enabled":true,"settings":{"pii-detector":{"action":"redact","detect_patterns":["ssn","email"]}},"version":"1.0.0"}}}"#;

    #[test]
    fn a_configmap_gateway_is_rendered_natively_as_a_file_gateway_is() {
        let desired = Desired::of_body(LITELLM_BODY);
        let configmap = |format| {
            model::Gateway::Configmap(model::ConfigMapGateway {
                name: "g".into(),
                namespace: "gateways".into(),
                config_map: "litellm".into(),
                format,
                deployment: Some("litellm".into()),
                rollout_timeout: None,
            })
        };
        let file = model::Gateway::File(model::FileGateway {
            name: "g".into(),
            path: "config.yaml".into(),
            format: FileFormat::Litellm,
            chat: None,
        });
        let native = super::super::native(&configmap(FileFormat::Litellm), &desired).unwrap();
        assert_eq!(native, super::super::native(&file, &desired).unwrap());
        assert!(native.contains("litellm_content_filter"), "{native}");
        assert_eq!(version_of(FileFormat::Litellm, &native), desired.digest);
        assert_eq!(
            super::super::native(&configmap(FileFormat::Sluice), &desired).unwrap(),
            LITELLM_BODY
        );
    }
}
