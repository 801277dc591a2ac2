//! `model-allowlist`: a request for a model not in `models` is refused
//! (`refused-model`). Names compare exactly: `gpt-4o` does not admit
//! `gpt-4o-2024-08-06`, so a dated snapshot must be listed to be used.

use super::{ActionKind, ChatRequest, Verdict};
use crate::config::catalog::ModelAllowlist;

#[derive(Debug, Clone)]
pub struct Allowlist {
    models: Vec<String>,
}

impl Allowlist {
    pub fn new(settings: ModelAllowlist) -> Allowlist {
        Allowlist {
            models: settings.models,
        }
    }

    pub(super) fn screen(&self, request: &ChatRequest) -> Option<Verdict> {
        if self.models.contains(&request.model) {
            return None;
        }
        // NB: the model name is the client's own input, shown back to it;
        // bounded so a megabyte of name does not become a megabyte of detail.
        let shown: String = request.model.chars().take(100).collect();
        Some(Verdict {
            action: ActionKind::RefusedModel,
            detail: format!(
                "model `{shown}` is not allowed (allowed: {})",
                self.models.join(", ")
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_models_pass() {
        let allowlist = Allowlist::new(ModelAllowlist {
            models: vec!["gpt-4o".into(), "claude-sonnet-4".into()],
        });
        let request = |model: &str| {
            serde_json::from_value::<ChatRequest>(
                serde_json::json!({"model": model, "messages": []}),
            )
            .unwrap()
        };
        assert!(allowlist.screen(&request("gpt-4o")).is_none());
        let verdict = allowlist.screen(&request("gpt-4o-2024-08-06")).unwrap();
        assert_eq!(verdict.action, ActionKind::RefusedModel);
        assert!(verdict.detail.contains("gpt-4o-2024-08-06"));
    }
}
