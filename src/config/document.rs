//! The rendered policy document: what a gateway runs. One type serves the
//! renderer (which builds it), the schema (`sluice schema`) and gateways
//! (which check what they receive with [`check_document`], the same rules
//! validation applies to packs).

use super::{
    catalog::PolicySettings,
    model::{Enforcement, LitellmSettings, Pack, PackMeta, Policies},
    schema::{self, FileKind},
    validate,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Identifies the document format; bump when its shape changes.
pub const FORMAT: &str = "sluice.dev/policy/v1";

/// The desired state of a gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Sluice policy document (what a gateway runs)")]
pub struct PolicyDocument {
    /// Always `sluice.dev/policy/v1`.
    pub format: String,
    pub enforcement: Enforcement,
    /// Packs by name.
    pub packs: BTreeMap<String, DocumentPack>,
    /// The environment's LiteLLM settings (`litellm.yaml`), where it has
    /// them: what its LiteLLM gateways run besides policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub litellm: Option<LitellmSettings>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentPack {
    pub version: String,
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub chain: Vec<String>,
    pub settings: PolicySettings,
}

impl DocumentPack {
    pub fn from_pack(pack: &Pack) -> Self {
        DocumentPack {
            version: pack.pack.version.clone(),
            enabled: pack.pack.enabled,
            description: pack.pack.description.clone(),
            chain: pack.policies.chain.clone(),
            settings: pack.policy.clone(),
        }
    }

    fn to_pack(&self, name: &str) -> Pack {
        Pack {
            pack: PackMeta {
                name: name.to_owned(),
                version: self.version.clone(),
                enabled: self.enabled,
                description: self.description.clone(),
            },
            policies: Policies {
                chain: self.chain.clone(),
            },
            policy: self.settings.clone(),
            memo: Default::default(),
        }
    }
}

/// One reason a gateway refuses a document: a JSON pointer into it and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

/// Checks a received document: its schema, then the pack rules (known
/// policies, SemVer, no repeats). Warnings are not problems.
pub fn check_document(value: &Value) -> Vec<Problem> {
    let findings = schema::check(FileKind::Document, "", value);
    let mut problems: Vec<Problem> = findings
        .into_iter()
        .map(|f| Problem {
            path: f.pointer,
            message: f.message,
        })
        .collect();
    if !problems.is_empty() {
        return problems;
    }
    let Ok(document) = PolicyDocument::deserialize(value) else {
        return vec![Problem {
            path: String::new(),
            message: "not a policy document".into(),
        }];
    };
    if document.format != FORMAT {
        problems.push(Problem {
            path: "/format".into(),
            message: format!(
                "unsupported format `{}`; expected `{FORMAT}`",
                document.format
            ),
        });
    }
    for (name, pack) in &document.packs {
        let mut findings = Vec::new();
        validate::check_pack_body("", &pack.to_pack(name), &mut findings);
        let base = format!("/packs/{}", super::yaml::escape(name));
        problems.extend(
            findings
                .into_iter()
                .filter(|f| f.is_error())
                .map(|f| Problem {
                    path: format!("{base}{}", document_pointer(&f.pointer)),
                    message: f.message,
                }),
        );
    }
    problems
}

/// Where a pack-file pointer lands in the document's pack.
fn document_pointer(pack_pointer: &str) -> String {
    for (from, to) in [
        ("/pack/", "/"),
        ("/policies/chain", "/chain"),
        ("/policy", "/settings"),
    ] {
        if let Some(rest) = pack_pointer.strip_prefix(from) {
            return format!("{to}{rest}");
        }
    }
    pack_pointer.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document() -> Value {
        json!({
            "format": FORMAT,
            "enforcement": "enforce",
            "packs": {"support": {
                "version": "2.3.0", "enabled": true,
                "chain": ["audit-logger", "pii-detector"],
                "settings": {"pii-detector": {"action": "redact"}},
            }},
        })
    }

    #[test]
    fn a_rendered_document_passes() {
        assert_eq!(check_document(&document()), vec![]);
    }

    #[test]
    fn problems_point_into_the_document() {
        let mut bad = document();
        bad["packs"]["support"]["chain"][1] = "pii-detecter".into();
        bad["packs"]["support"]["version"] = "2.3".into();
        let problems = check_document(&bad);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["/packs/support/version", "/packs/support/chain/1"]);

        let mut bad = document();
        bad["packs"]["support"]["settings"]["pii-detector"]["action"] = "mask".into();
        let problems = check_document(&bad);
        assert_eq!(
            problems[0].path,
            "/packs/support/settings/pii-detector/action"
        );
    }
}
