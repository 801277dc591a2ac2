//! The built-in policy catalog: the policies a chain may name, each with a
//! schema for its settings. Custom policies are named `x-…` and take any
//! settings.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::{borrow::Cow, collections::BTreeMap};

/// Names of custom policies: `x-` and a lowercase name.
pub const CUSTOM_PREFIX: &str = "x-";

/// Settings of the `audit-logger` policy.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditLogger {
    /// Days audit records are kept.
    #[schemars(range(min = 1, max = 3650))]
    pub retention_days: Option<u32>,
    /// Records cannot be altered or deleted before they expire.
    pub immutable: Option<bool>,
    /// Log every access, not only policy hits.
    pub log_all_access: Option<bool>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PiiAction {
    /// Replace detected values and let the call through.
    Redact,
    /// Refuse the call.
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PiiPattern {
    Email,
    Phone,
    Ssn,
    CreditCard,
    Iban,
    IpAddress,
    Passport,
    Address,
    Name,
    DateOfBirth,
}

/// Settings of the `pii-detector` policy.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PiiDetector {
    pub action: Option<PiiAction>,
    /// Which kinds of personal data to look for (default: all).
    pub detect_patterns: Option<Vec<PiiPattern>>,
    /// Card data rules of PCI DSS: never log a card number, even redacted.
    pub pci_mode: Option<bool>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InjectionAction {
    /// Mark the call and let it through.
    Flag,
    /// Refuse the call.
    Block,
}

/// Settings of the `prompt-injection` policy.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptInjection {
    pub action: Option<InjectionAction>,
    /// Detector score from which the action applies, 0 to 1.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub threshold: Option<f64>,
}

/// Settings of the `model-allowlist` policy.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelAllowlist {
    /// Models calls may use, e.g. `gpt-4o` or `claude-sonnet-4`.
    #[schemars(length(min = 1))]
    pub models: Vec<String>,
}

/// Settings of the `rate-limit` policy.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[schemars(range(min = 1))]
    pub requests_per_minute: u64,
}

/// One built-in policy.
pub struct PolicyDef {
    pub name: &'static str,
    pub summary: &'static str,
    settings: fn(&mut SchemaGenerator) -> Schema,
}

/// Every built-in policy, in the order documentation lists them.
pub const CATALOG: &[PolicyDef] = &[
    PolicyDef {
        name: "audit-logger",
        summary: "records every model call for audit",
        settings: |g| g.subschema_for::<AuditLogger>(),
    },
    PolicyDef {
        name: "pii-detector",
        summary: "finds personal data in prompts and answers, and redacts or blocks",
        settings: |g| g.subschema_for::<PiiDetector>(),
    },
    PolicyDef {
        name: "prompt-injection",
        summary: "scores prompts for injection attempts, and flags or blocks",
        settings: |g| g.subschema_for::<PromptInjection>(),
    },
    PolicyDef {
        name: "model-allowlist",
        summary: "lets calls reach only the listed models",
        settings: |g| g.subschema_for::<ModelAllowlist>(),
    },
    PolicyDef {
        name: "rate-limit",
        summary: "caps requests per minute",
        settings: |g| g.subschema_for::<RateLimit>(),
    },
];

/// Whether a chain may name `policy`.
pub fn is_known(policy: &str) -> bool {
    is_custom(policy) || CATALOG.iter().any(|p| p.name == policy)
}

pub fn is_custom(policy: &str) -> bool {
    policy.len() > CUSTOM_PREFIX.len()
        && policy.starts_with(CUSTOM_PREFIX)
        && policy[CUSTOM_PREFIX.len()..]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

pub fn names() -> impl Iterator<Item = &'static str> {
    CATALOG.iter().map(|p| p.name)
}

/// The hint of a finding naming a policy that is not known: the nearest
/// built-in one, else the list of them.
pub fn unknown_policy_hint(policy: &str) -> String {
    super::schema::did_you_mean(policy, names())
        .map(|m| format!("did you mean `{m}`?"))
        .unwrap_or_else(|| {
            format!(
                "built-in policies are {}; custom ones are named x-<name>",
                names().collect::<Vec<_>>().join(", ")
            )
        })
}

/// Settings per policy, by policy name (`policy:` in a pack).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PolicySettings(pub BTreeMap<String, Value>);

impl JsonSchema for PolicySettings {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "PolicySettings".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut properties = Map::new();
        for policy in CATALOG {
            let mut schema = (policy.settings)(generator);
            schema.insert("description".into(), policy.summary.into());
            properties.insert(policy.name.into(), schema.into());
        }
        json_schema!({
            "type": "object",
            "description": "Settings per policy: a built-in policy's name, or x-<name> for a custom policy.",
            "properties": properties,
            "patternProperties": { "^x-[a-z0-9][a-z0-9-]*$": { "type": "object" } },
            "additionalProperties": false,
        })
    }
}
