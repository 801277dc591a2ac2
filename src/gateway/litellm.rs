//! The LiteLLM proxy's native format (1.108.7, see docs/litellm.md): a policy
//! document rendered as the proxy's `config.yaml`, and a config text read
//! back as a projection the drift code can diff. Pure functions: no files,
//! no processes.
//!
//! # Mapping
//!
//! Every policy that becomes a guardrail is named `sluice.<pack>.<policy>`
//! (the pack is part of the name because two packs may run the same policy;
//! pack and policy names hold no dots, so the name splits back), rendered
//! `default_on: false` and attached through one LiteLLM policy `sluice`
//! with `scope: "*"`. A guardrail a policy references and LiteLLM cannot
//! build makes the proxy exit instead of starting without it (fail closed),
//! which a `default_on: true` guardrail would not. Chain order is guardrail
//! order (packs by name, then each chain), both in `guardrails` and in the
//! policy's `add`. Disabled packs contribute nothing.
//!
//! | Sluice | enforce | monitor / alert |
//! | ------ | ------- | --------------- |
//! | guardrail `mode` | `pre_call` | `logging_only` (the audit record carries the flag) |
//! | `pii-detector` (default action `redact`) | `litellm_content_filter` patterns, `redact` → `MASK`, `block` → `BLOCK` | same patterns, not applied |
//! | `pii-detector.pci_mode: true` | `credit_card` always `BLOCK` (a card never reaches the model, not even masked) | same, not applied |
//! | `prompt-injection` `block` (default) / `flag` | content-filter categories `prompt_injection_{jailbreak,system_prompt,data_exfiltration}`, `BLOCK`; `flag` → the guardrail in `logging_only` | `logging_only` |
//! | `prompt-injection.threshold` | `severity_threshold`: `[0, 1/3)` → `low`, `[1/3, 2/3)` → `medium`, `[2/3, 1]` → `high`; absent → `medium` (LiteLLM's default) | same |
//! | `model-allowlist` | `model_list` filtered to those `model_name`s (several allow-lists: their intersection) | unsupported |
//! | `rate-limit` | `rpm` on each model entry (the lower of it and the base's) + `router_settings.optional_pre_call_checks: [enforce_model_rate_limits]` | unsupported |
//! | `audit-logger` | `litellm_settings.callbacks: sluice_audit.audit` (`log_all_access: true`) or `sluice_audit.audit_hits` (policy hits only) | same |
//! | `x-…` | a guardrail whose `litellm_params` are the settings verbatim (`mode` defaults to `pre_call`) | `mode: logging_only` |
//!
//! Thresholds: LiteLLM's detector is a keyword/phrase matcher whose matches
//! carry one of three severities, acting on those at or above
//! `severity_threshold`. Sluice's threshold ("score from which the action
//! applies", 0 to 1) is read on that scale in thirds. Every number maps to a
//! bucket and the order is kept (a lower threshold never blocks less), so a
//! threshold is not reported unsupported; the projection shows the bucket,
//! and a change within one bucket renders the same config.
//!
//! Unsupported (findings from [`unsupported`], before anything is applied):
//! the `alert` mode (LiteLLM raises no alerts without Slack or e-mail set
//! up; a flagged call is only recorded); `monitor`/`alert` or a flagging
//! policy without an `audit-logger` (a flag would be recorded nowhere);
//! `model-allowlist` and `rate-limit` under `monitor`/`alert` (LiteLLM cannot
//! let an unlisted model through and flag it, nor warn without limiting);
//! `pii-detector` kinds LiteLLM has no pattern for (`name`, `date_of_birth`,
//! which the default "every kind" includes); `audit-logger.retention_days`
//! and `immutable: true` (LiteLLM neither expires nor protects the file);
//! a custom policy without a `guardrail` type, with a Python-module
//! guardrail (no such file is written beside the config), or with
//! `os.environ/` references or URLs (those belong in the base, where
//! [`variables`] and [`urls`] hold them to the operator's allowances).
//!
//! Only the base's `model_list`, `general_settings`, `router_settings` and
//! `litellm_settings` are rendered; any other key of a base (`include`,
//! `environment_variables`, …) is dropped.
//!
//! # Bytes and stamp
//!
//! YAML is written here, block style, every string double-quoted and every
//! non-ASCII or control character escaped, so PyYAML (YAML 1.1: `on`, `no`
//! are booleans there) and serde-saphyr read the same values. Keys keep a
//! fixed order: top level and each model entry by a fixed list, everything
//! else sorted. The stamp is `sluice_digest`, `sluice_revision` and
//! `sluice_native` in each model entry's `model_info` (echoed by
//! `/model/info`) and in the top-level `sluice` mapping (which LiteLLM
//! ignores; it also records each pack's chain, so a read-back can name the
//! pack and policy of a model list or rate limit). `sluice_native` is the
//! sha256 of the rendering without the stamp: [`native_of`] recomputes it
//! from a config text, so a hand edit shows as a mismatch.

use crate::config::{
    Digest,
    catalog::{
        self, AuditLogger, InjectionAction, PiiAction, PiiDetector, PiiPattern, PromptInjection,
    },
    document::PolicyDocument,
    model::Enforcement,
    yaml,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use std::fmt::Write as _;

/// A gateway's own LiteLLM settings, kept in the repository without secrets:
/// `model_list` (provider keys as `os.environ/VAR`), `general_settings`
/// (`master_key: os.environ/VAR`), `router_settings`, `litellm_settings`.
pub type Base = Map<String, Value>;

/// Which version a rendering is.
pub struct Stamp<'a> {
    pub digest: &'a str,
    pub revision: &'a str,
}

/// The audit callback module LiteLLM loads beside the config, and its file name.
pub const AUDIT_CALLBACK_FILE: &str = "sluice_audit.py";
pub const AUDIT_CALLBACK: &str = include_str!("litellm_audit.py");

/// Config texts larger than this are refused unread: a real one is a few KiB.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;

const CALLBACK_ALL: &str = "sluice_audit.audit";
const CALLBACK_HITS: &str = "sluice_audit.audit_hits";
const RATE_LIMIT_CHECK: &str = "enforce_model_rate_limits";
const POLICY: &str = "sluice";
const CONTENT_FILTER: &str = "litellm_content_filter";
const INJECTION_CATEGORIES: [&str; 3] = [
    "prompt_injection_jailbreak",
    "prompt_injection_system_prompt",
    "prompt_injection_data_exfiltration",
];
const STAMP_KEYS: [&str; 3] = ["sluice_digest", "sluice_revision", "sluice_native"];
/// The packs' chains in each model entry's `model_info`.
const CHAINS_KEY: &str = "sluice_chains";
/// The rate-limit check's name in `/health/readiness/details`' callbacks.
const RATE_LIMIT_HOOK: &str = "ModelRateLimitingCheck";
/// Whether `value` is what LiteLLM (1.108.7) fills in for a guardrail
/// parameter a config leaves out, as `/guardrails/list` echoes it: a
/// setting equal to its default is the same config written or not.
fn is_guardrail_default(key: &str, value: &Value) -> bool {
    match key {
        "experimental_use_latest_role_message_only"
        | "only_scan_new_messages"
        | "skip_unscannable_attachments" => value == &Value::Bool(false),
        "fail_on_error" | "sanitize_error_detail" | "sticky_session_routing" => {
            value == &Value::Bool(true)
        }
        "unreachable_fallback" => value == "fail_closed",
        _ => false,
    }
}
const BASE_SECTIONS: [&str; 4] = [
    "model_list",
    "router_settings",
    "litellm_settings",
    "general_settings",
];

#[derive(Debug, thiserror::Error)]
pub enum LitellmError {
    #[error("config is {0} bytes, over the {MAX_CONFIG_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("config is not readable YAML: {0}")]
    Yaml(String),
    #[error("config is not a mapping at its root")]
    NotMapping,
}

/// One setting LiteLLM cannot express: a JSON pointer into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub pointer: String,
    pub message: String,
}

// ---------------------------------------------------------------------------
// Rendering

/// The proxy's config.yaml for `document` over `base`: deterministic bytes
/// (same inputs → same text; keys in a fixed order), stamped so a read-back
/// says which version it is (`model_info.sluice_digest`/`sluice_revision` on
/// each model entry, echoed by /model/info) and carrying `sluice_native`: the
/// sha256 of the rendering without the stamp, so a hand edit is detectable.
pub fn render(document: &PolicyDocument, base: &Base, stamp: &Stamp<'_>) -> String {
    let mut config = Value::Object(build(document, base));
    let native = sha256(&emit(&config));
    apply_stamp(&mut config, stamp.digest, stamp.revision, &native);
    emit(&config)
}

/// The projection of what `render` would write, without writing it.
pub fn projected(document: &PolicyDocument, base: &Base) -> Value {
    projection(&build(document, base))
}

/// The stamp read back from a config: (digest, revision, native) when present.
pub fn stamp_of(config_yaml: &str) -> Option<(String, String, String)> {
    let config = parse(config_yaml).ok()?;
    let read = |map: &Map<String, Value>, prefix: &str| -> Option<(String, String, String)> {
        let get = |key: &str| Some(map.get(&format!("{prefix}{key}"))?.as_str()?.to_owned());
        Some((get("digest")?, get("revision")?, get("native")?))
    };
    if let Some(stamp) = config
        .get("sluice")
        .and_then(Value::as_object)
        .and_then(|s| read(s, ""))
    {
        return Some(stamp);
    }
    models(&config).find_map(|m| {
        m.get("model_info")
            .and_then(Value::as_object)
            .and_then(|i| read(i, "sluice_"))
    })
}

/// The sha256 of a config text's rendering without its stamp: equal to the
/// stamp's `sluice_native` exactly when nothing but the stamp differs from
/// what Sluice rendered (formatting aside), so a hand edit shows.
pub fn native_of(config_yaml: &str) -> Result<String, LitellmError> {
    let mut config = parse(config_yaml)?;
    if let Some(Value::Array(list)) = config.get_mut("model_list") {
        for entry in list {
            if let Some(Value::Object(info)) = entry.get_mut("model_info") {
                for key in STAMP_KEYS {
                    info.shift_remove(key);
                }
            }
        }
    }
    if let Some(Value::Object(sluice)) = config.get_mut("sluice") {
        for key in ["digest", "revision", "native"] {
            sluice.shift_remove(key);
        }
    }
    Ok(sha256(&emit(&Value::Object(config))))
}

/// The version a config text is: the digest it is stamped with, as long as
/// the rest is what that stamp says was written; a hand edit makes it the
/// digest of its own bytes, which no version has.
pub fn config_version(config_yaml: &str) -> Digest {
    stamp_of(config_yaml)
        .filter(|(_, _, native)| native_of(config_yaml).is_ok_and(|n| n == *native))
        .and_then(|(digest, _, _)| Digest::parse(&digest))
        .unwrap_or_else(|| Digest::of(config_yaml.as_bytes()))
}

/// The version a proxy runs, from its config file and the stamp its API
/// serves ([`served_stamp`]): the stamped version when it was started from
/// that file and the file is as Sluice wrote it; nothing when there is
/// neither file nor stamp (a proxy Sluice has not configured yet); anything
/// else (a hand edit, on disk or started with, a file written but not yet
/// loaded) a digest of that mix, which no version has.
pub fn running_version(
    file: Option<&str>,
    served: Option<&(String, String, String)>,
) -> Option<Digest> {
    match (file, served) {
        (None, None) => None,
        (Some(text), Some(stamp))
            if stamp_of(text).as_ref() == Some(stamp)
                && config_version(text).as_str() == stamp.0 =>
        {
            Digest::parse(&stamp.0)
        }
        (file, served) => {
            let mix = format!(
                "litellm: serves {}, config file {}",
                served.map_or("nothing stamped", |s| s.0.as_str()),
                file.map_or_else(|| "absent".to_owned(), |t| config_version(t).to_string())
            );
            Some(Digest::of(mix.as_bytes()))
        }
    }
}

/// One policy of one enabled pack, in chain order.
struct Entry<'a> {
    pack: &'a str,
    policy: &'a str,
    settings: Option<&'a Value>,
}

fn entries(document: &PolicyDocument) -> Vec<Entry<'_>> {
    document
        .packs
        .iter()
        .filter(|(_, pack)| pack.enabled)
        .flat_map(|(name, pack)| {
            pack.chain.iter().map(move |policy| Entry {
                pack: name,
                policy,
                settings: pack.settings.0.get(policy),
            })
        })
        .collect()
}

/// Settings as the catalog type; absent or unreadable settings are the
/// defaults (validation has already refused unreadable ones).
fn settings<T: DeserializeOwned>(value: Option<&Value>) -> T {
    value
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .or_else(|| serde_json::from_value(json!({})).ok())
        .expect("catalog settings whose fields are all optional read from {}")
}

fn guardrail_name(pack: &str, policy: &str) -> String {
    format!("sluice.{pack}.{policy}")
}

/// LiteLLM prebuilt patterns for a Sluice kind; empty when it has none.
fn prebuilt(pattern: PiiPattern) -> &'static [&'static str] {
    match pattern {
        PiiPattern::Email => &["email"],
        PiiPattern::Phone => &[
            "us_phone",
            "fr_phone",
            "uae_phone",
            "sg_phone",
            "br_phone_landline",
            "br_phone_mobile",
        ],
        PiiPattern::Ssn => &["us_ssn"],
        PiiPattern::CreditCard => &["credit_card"],
        PiiPattern::Iban => &["iban"],
        PiiPattern::IpAddress => &["ipv4", "ipv6"],
        PiiPattern::Passport => &[
            "passport_us",
            "passport_uk",
            "passport_germany",
            "passport_france",
            "passport_netherlands",
            "passport_canada",
            "passport_india",
            "passport_australia",
            "passport_china",
            "passport_japan",
            "passport_singapore",
            "eu_passport_generic",
        ],
        PiiPattern::Address => &["street_address"],
        PiiPattern::Name | PiiPattern::DateOfBirth => &[],
    }
}

const ALL_PATTERNS: [PiiPattern; 10] = [
    PiiPattern::Email,
    PiiPattern::Phone,
    PiiPattern::Ssn,
    PiiPattern::CreditCard,
    PiiPattern::Iban,
    PiiPattern::IpAddress,
    PiiPattern::Passport,
    PiiPattern::Address,
    PiiPattern::Name,
    PiiPattern::DateOfBirth,
];

fn pattern_name(pattern: PiiPattern) -> String {
    serde_json::to_value(pattern)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The severity bucket of a Sluice threshold (see the module docs).
pub fn severity_threshold(threshold: Option<f64>) -> &'static str {
    match threshold {
        None => "medium",
        Some(t) if t < 1.0 / 3.0 => "low",
        Some(t) if t < 2.0 / 3.0 => "medium",
        Some(_) => "high",
    }
}

fn mode_of(enforcement: Enforcement) -> &'static str {
    match enforcement {
        Enforcement::Enforce => "pre_call",
        Enforcement::Monitor | Enforcement::Alert => "logging_only",
    }
}

fn pii_guardrail(settings: &PiiDetector, mode: &str) -> Map<String, Value> {
    let action = match settings.action.unwrap_or(PiiAction::Redact) {
        PiiAction::Redact => "MASK",
        PiiAction::Block => "BLOCK",
    };
    let pci = settings.pci_mode == Some(true);
    let kinds: Vec<PiiPattern> = settings
        .detect_patterns
        .clone()
        .unwrap_or_else(|| ALL_PATTERNS.to_vec());
    let mut names: Vec<&str> = Vec::new();
    for kind in &kinds {
        for name in prebuilt(*kind) {
            if !names.contains(name) {
                names.push(name);
            }
        }
    }
    if pci && !names.contains(&"credit_card") {
        names.push("credit_card");
    }
    let patterns: Vec<Value> = names
        .into_iter()
        .map(|name| {
            let action = if pci && name == "credit_card" {
                "BLOCK"
            } else {
                action
            };
            json!({"pattern_type": "prebuilt", "pattern_name": name, "action": action})
        })
        .collect();
    let mut params = content_filter(mode);
    params.insert("patterns".into(), Value::Array(patterns));
    params
}

fn injection_guardrail(settings: &PromptInjection, enforcement: Enforcement) -> Map<String, Value> {
    let mode = match (
        enforcement,
        settings.action.unwrap_or(InjectionAction::Block),
    ) {
        (Enforcement::Enforce, InjectionAction::Block) => "pre_call",
        _ => "logging_only",
    };
    let severity = severity_threshold(settings.threshold);
    let categories: Vec<Value> = INJECTION_CATEGORIES
        .iter()
        .map(|category| {
            json!({"category": category, "enabled": true, "action": "BLOCK", "severity_threshold": severity})
        })
        .collect();
    let mut params = content_filter(mode);
    params.insert("categories".into(), Value::Array(categories));
    params
}

fn content_filter(mode: &str) -> Map<String, Value> {
    let mut params = Map::new();
    params.insert("guardrail".into(), CONTENT_FILTER.into());
    params.insert("mode".into(), mode.into());
    params.insert("default_on".into(), false.into());
    params
}

/// A custom policy's settings as a guardrail's `litellm_params`: verbatim
/// (sorted), with Sluice's mode and attachment.
fn custom_guardrail(settings: Option<&Value>, enforcement: Enforcement) -> Map<String, Value> {
    let given = settings
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mode = match enforcement {
        Enforcement::Enforce => given
            .get("mode")
            .cloned()
            .unwrap_or_else(|| "pre_call".into()),
        _ => "logging_only".into(),
    };
    let mut params = Map::new();
    params.insert(
        "guardrail".into(),
        given.get("guardrail").cloned().unwrap_or(Value::Null),
    );
    params.insert("mode".into(), mode);
    params.insert("default_on".into(), false.into());
    append_sorted(&mut params, &given, &["guardrail", "mode", "default_on"]);
    params
}

/// Appends `given`'s entries other than `skip` to `out`, by key, each sorted.
fn append_sorted(out: &mut Map<String, Value>, given: &Map<String, Value>, skip: &[&str]) {
    let mut rest: Vec<(&String, &Value)> = given
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .collect();
    rest.sort_by(|a, b| a.0.cmp(b.0));
    for (key, value) in rest {
        out.insert(key.clone(), sorted(value));
    }
}

/// The config without its stamp, as a value in emission order.
fn build(document: &PolicyDocument, base: &Base) -> Map<String, Value> {
    let enforcement = document.enforcement;
    let mut guardrails = Vec::new();
    let mut rpm: Option<u64> = None;
    let mut audit: Option<bool> = None;
    let mut allowlist_settings = Vec::new();
    for entry in entries(document) {
        let params = match entry.policy {
            "pii-detector" => Some(pii_guardrail(
                &settings::<PiiDetector>(entry.settings),
                mode_of(enforcement),
            )),
            "prompt-injection" => Some(injection_guardrail(
                &settings::<PromptInjection>(entry.settings),
                enforcement,
            )),
            "model-allowlist" => {
                if enforcement == Enforcement::Enforce {
                    allowlist_settings.push(entry.settings);
                }
                None
            }
            "rate-limit" => {
                if enforcement == Enforcement::Enforce
                    && let Some(n) = entry
                        .settings
                        .and_then(|s| s.get("requests_per_minute"))
                        .and_then(Value::as_u64)
                {
                    rpm = Some(rpm.map_or(n, |r| r.min(n)));
                }
                None
            }
            "audit-logger" => {
                let settings = settings::<AuditLogger>(entry.settings);
                let all = settings.log_all_access == Some(true);
                audit = Some(audit.unwrap_or(false) || all);
                None
            }
            custom if catalog::is_custom(custom) => {
                Some(custom_guardrail(entry.settings, enforcement))
            }
            _ => None,
        };
        if let Some(params) = params {
            let mut guardrail = Map::new();
            guardrail.insert(
                "guardrail_name".into(),
                guardrail_name(entry.pack, entry.policy).into(),
            );
            guardrail.insert("litellm_params".into(), Value::Object(params));
            guardrails.push(Value::Object(guardrail));
        }
    }
    let allowlists: Vec<Vec<&str>> = allowlist_settings
        .iter()
        .map(|s| {
            s.and_then(|s| s.get("models"))
                .and_then(Value::as_array)
                .map(|m| m.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default()
        })
        .collect();

    let chains: Map<String, Value> = document
        .packs
        .iter()
        .filter(|(_, pack)| pack.enabled)
        .map(|(name, pack)| (name.clone(), json!(pack.chain)))
        .collect();
    let mut config = Map::new();
    // Model list: the base's, filtered and limited, each entry stamped later.
    let mut any_rpm = false;
    let model_list: Vec<Value> = base
        .get("model_list")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|entry| {
            let name = entry.get("model_name").and_then(Value::as_str);
            allowlists
                .iter()
                .all(|list| name.is_some_and(|n| list.contains(&n)))
        })
        .map(|entry| {
            let entry = model_entry(entry, rpm, &chains);
            any_rpm |= entry
                .get("litellm_params")
                .and_then(|p| p.get("rpm"))
                .is_some_and(|r| !r.is_null());
            entry
        })
        .collect();
    config.insert("model_list".into(), Value::Array(model_list));

    let mut router = section(base, "router_settings");
    if any_rpm {
        // Without this check LiteLLM reads `rpm` as a routing hint only.
        let checks = router
            .entry("optional_pre_call_checks")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !checks.is_array() {
            *checks = Value::Array(Vec::new());
        }
        if let Value::Array(list) = checks
            && !list.iter().any(|c| c == RATE_LIMIT_CHECK)
        {
            list.push(RATE_LIMIT_CHECK.into());
        }
    }
    if !router.is_empty() {
        config.insert("router_settings".into(), Value::Object(router));
    }

    if !guardrails.is_empty() {
        let names: Vec<Value> = guardrails
            .iter()
            .filter_map(|g| g.get("guardrail_name").cloned())
            .collect();
        config.insert("guardrails".into(), Value::Array(guardrails));
        config.insert(
            "policies".into(),
            json!({POLICY: {
                "description": "Sluice: the guardrails of every enabled pack, in chain order",
                "guardrails": {"add": names},
            }}),
        );
        config.insert(
            "policy_attachments".into(),
            json!([{"policy": POLICY, "scope": "*"}]),
        );
    }

    let mut litellm = section(base, "litellm_settings");
    if let Some(all) = audit {
        let ours = if all { CALLBACK_ALL } else { CALLBACK_HITS };
        let mut callbacks = match litellm.get("callbacks") {
            Some(Value::Array(list)) => list.clone(),
            Some(Value::String(one)) => vec![Value::String(one.clone())],
            _ => Vec::new(),
        };
        if !callbacks.iter().any(|c| c == ours) {
            callbacks.push(ours.into());
        }
        litellm.insert("callbacks".into(), Value::Array(callbacks));
    }
    if !litellm.is_empty() {
        config.insert("litellm_settings".into(), Value::Object(litellm));
    }
    let general = section(base, "general_settings");
    if !general.is_empty() {
        config.insert("general_settings".into(), Value::Object(general));
    }

    config.insert("sluice".into(), json!({"chains": chains}));
    config
}

/// A base section, sorted; only the four known sections are ever read.
fn section(base: &Base, name: &str) -> Map<String, Value> {
    debug_assert!(BASE_SECTIONS.contains(&name));
    match base.get(name).map(sorted) {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// One model entry: `model_name`, `litellm_params` (with the rate limit),
/// `model_info` (always present, so stripping the stamp restores the
/// unstamped rendering exactly; it carries the packs' chains, because
/// `/model/info` echoes it and nothing else of the top-level `sluice`
/// mapping reads back), then the rest, sorted.
fn model_entry(entry: &Value, rpm: Option<u64>, chains: &Map<String, Value>) -> Value {
    let Some(given) = entry.as_object() else {
        return sorted(entry);
    };
    let mut out = Map::new();
    if let Some(name) = given.get("model_name") {
        out.insert("model_name".into(), sorted(name));
    }
    let mut params = match given.get("litellm_params").map(sorted) {
        Some(Value::Object(map)) => map,
        Some(other) => {
            out.insert("litellm_params".into(), other);
            Map::new()
        }
        None => Map::new(),
    };
    if let Some(limit) = rpm {
        let current = params.get("rpm").and_then(Value::as_u64);
        let value = current.map_or(limit, |c| c.min(limit));
        params.insert("rpm".into(), value.into());
        params.sort_keys();
    }
    if !out.contains_key("litellm_params") {
        out.insert("litellm_params".into(), Value::Object(params));
    }
    let mut info = match given.get("model_info").map(sorted) {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    // Only Sluice stamps a version: a base cannot forge one.
    for key in STAMP_KEYS {
        info.shift_remove(key);
    }
    info.insert(CHAINS_KEY.into(), Value::Object(chains.clone()));
    info.sort_keys();
    out.insert("model_info".into(), Value::Object(info));
    append_sorted(
        &mut out,
        given,
        &["model_name", "litellm_params", "model_info"],
    );
    Value::Object(out)
}

fn apply_stamp(config: &mut Value, digest: &str, revision: &str, native: &str) {
    if let Some(Value::Array(list)) = config.get_mut("model_list") {
        for entry in list {
            if let Some(Value::Object(info)) = entry.get_mut("model_info") {
                info.insert("sluice_digest".into(), digest.into());
                info.insert("sluice_revision".into(), revision.into());
                info.insert("sluice_native".into(), native.into());
            }
        }
    }
    if let Some(Value::Object(sluice)) = config.get_mut("sluice") {
        sluice.insert("digest".into(), digest.into());
        sluice.insert("revision".into(), revision.into());
        sluice.insert("native".into(), native.into());
    }
}

/// A copy with every mapping's keys sorted.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        scalar => scalar.clone(),
    }
}

fn sha256(text: &str) -> String {
    crate::config::Digest::of(text.as_bytes()).to_string()
}

// ---------------------------------------------------------------------------
// YAML emission

/// Block-style YAML of `value` (a mapping), in its own key order.
fn emit(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => emit_map(map, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn emit_map(map: &Map<String, Value>, indent: usize, out: &mut String) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&key_text(key));
        out.push(':');
        emit_child(value, indent, out);
    }
}

/// A value after `key:` or `- `: nested containers on the next lines.
fn emit_child(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            emit_map(map, indent + 2, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            emit_seq(items, indent + 2, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn emit_seq(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        let nested = match item {
            Value::Object(map) if !map.is_empty() => {
                let mut text = String::new();
                emit_map(map, indent + 2, &mut text);
                Some(text)
            }
            Value::Array(inner) if !inner.is_empty() => {
                let mut text = String::new();
                emit_seq(inner, indent + 2, &mut text);
                Some(text)
            }
            _ => None,
        };
        out.push_str(&" ".repeat(indent));
        match nested {
            // The first line of the nested block shares the dash's line.
            Some(text) => {
                out.push_str("- ");
                out.push_str(&text[indent + 2..]);
            }
            None => {
                out.push_str("- ");
                out.push_str(&scalar(item));
                out.push('\n');
            }
        }
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => quoted(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Numbers as both YAML 1.1 and 1.2 read them: PyYAML takes a float only
/// with a `.` and a signed exponent.
fn number(n: &serde_json::Number) -> String {
    let text = n.to_string();
    if n.is_f64() {
        let (mantissa, exponent) = match text.split_once(['e', 'E']) {
            Some((m, e)) => (m.to_owned(), Some(e.to_owned())),
            None => (text.clone(), None),
        };
        let mantissa = if mantissa.contains('.') {
            mantissa
        } else {
            format!("{mantissa}.0")
        };
        return match exponent {
            Some(e) if e.starts_with(['+', '-']) => format!("{mantissa}e{e}"),
            Some(e) => format!("{mantissa}e+{e}"),
            None => mantissa,
        };
    }
    text
}

/// A double-quoted scalar; everything outside printable ASCII is escaped so
/// no YAML reader can disagree about line breaks or encodings.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

fn key_text(key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain { key.to_owned() } else { quoted(key) }
}

// ---------------------------------------------------------------------------
// Reading back

fn parse(config_yaml: &str) -> Result<Map<String, Value>, LitellmError> {
    if config_yaml.len() > MAX_CONFIG_BYTES {
        return Err(LitellmError::TooLarge(config_yaml.len()));
    }
    // The repository's bounded reader: depth, aliases and expansion capped.
    match yaml::parse("config.yaml", config_yaml) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(LitellmError::NotMapping),
        Err(finding) => Err(LitellmError::Yaml(finding.message)),
    }
}

fn models(config: &Map<String, Value>) -> impl Iterator<Item = &Map<String, Value>> {
    config
        .get("model_list")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

/// What a config.yaml text enforces, as a projection keyed by Sluice's own
/// names where possible (per policy: its patterns and actions, mode, the
/// allowed models, rpm, audit on/off; plus the base's model names), so that
/// project(render(d, b, s)) == desired projection and a hand edit (a
/// guardrail removed, MASK changed to BLOCK, rpm changed) shows as a
/// field-level difference. Never panics; inputs over 4 MiB are refused.
pub fn project(config_yaml: &str) -> Result<Value, LitellmError> {
    Ok(projection(&parse(config_yaml)?))
}

/// What a running proxy answers on its read-only admin API (each body as
/// JSON, `Null` for one not read): what it runs, as far as it tells.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// `GET /model/info`
    pub models: Value,
    /// `GET /guardrails/list`
    pub guardrails: Value,
    /// `GET /policies/list`
    pub policies: Value,
    /// `GET /policies/attachments/list`
    pub attachments: Value,
    /// `GET /get/config/callbacks`
    pub callbacks: Value,
    /// `GET /health/readiness/details`
    pub details: Value,
}

/// The admin API paths [`Served`] is read from, in its field order.
pub const SERVED_PATHS: [&str; 6] = [
    "/model/info",
    "/guardrails/list",
    "/policies/list",
    "/policies/attachments/list",
    "/get/config/callbacks",
    "/health/readiness/details",
];

impl From<[Value; 6]> for Served {
    /// The answers of [`SERVED_PATHS`], in order.
    fn from(answers: [Value; 6]) -> Served {
        let [
            models,
            guardrails,
            policies,
            attachments,
            callbacks,
            details,
        ] = answers;
        Served {
            models,
            guardrails,
            policies,
            attachments,
            callbacks,
            details,
        }
    }
}

/// What a running proxy enforces, projected as [`project`] projects a
/// config text: equal to the projection of the config it was started with
/// (what it echoes of guardrails, policies, attachments, models, callbacks
/// and the rate-limit check), so a hand edit it was restarted with shows
/// field by field.
pub fn project_served(served: &Served) -> Value {
    projection(&served_config(served))
}

/// Whether a proxy whose API projects as `running` enforces the config that
/// projects as `written`: equal, except that a guardrail's `params` may
/// hold more in `running`, since LiteLLM echoes defaults of its guardrail
/// types this driver does not list (a custom `x-…` guardrail of another
/// type); a parameter written is still compared.
pub fn serves(written: &Value, running: &Value) -> bool {
    fn trimmed(running: &Value, written: &Value, key: Option<&str>) -> Value {
        match (running, written) {
            (Value::Object(r), Value::Object(w)) => Value::Object(
                r.iter()
                    // NB: inside `params`, only what was written; a
                    // `params` nobody wrote is all defaults.
                    .filter(|(k, _)| key != Some("params") || w.contains_key(*k))
                    .filter(|(k, _)| k.as_str() != "params" || w.contains_key("params"))
                    .map(|(k, v)| {
                        let w = w.get(k).unwrap_or(&Value::Null);
                        (k.clone(), trimmed(v, w, Some(k)))
                    })
                    .collect(),
            ),
            _ => running.clone(),
        }
    }
    trimmed(running, written, None) == *written
}

/// The stamp every model a proxy serves carries, as (digest, revision,
/// native): `None` when it serves no stamped model or the models disagree
/// (a config Sluice did not write whole).
pub fn served_stamp(models: &Value) -> Option<(String, String, String)> {
    let mut stamps = models.get("data")?.as_array()?.iter().map(|m| {
        let info = m.get("model_info")?;
        let get = |k: &str| Some(info.get(k)?.as_str()?.to_owned());
        Some((
            get("sluice_digest")?,
            get("sluice_revision")?,
            get("sluice_native")?,
        ))
    });
    let first = stamps.next()??;
    stamps.all(|s| s.as_ref() == Some(&first)).then_some(first)
}

/// The parts of a config the projection reads, rebuilt from what the API
/// echoes.
fn served_config(served: &Served) -> Map<String, Value> {
    let list = |value: &Value, key: &str| -> Vec<Value> {
        value
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let field = |value: &Value, key: &str| value.get(key).cloned().unwrap_or(Value::Null);
    let mut config = Map::new();
    let models: Vec<Value> = list(&served.models, "data")
        .iter()
        .map(|m| {
            let mut params = Map::new();
            if let Some(rpm) = m.get("litellm_params").and_then(|p| p.get("rpm")) {
                params.insert("rpm".into(), rpm.clone());
            }
            let chains = m
                .get("model_info")
                .and_then(|i| i.get(CHAINS_KEY))
                .cloned()
                .unwrap_or(Value::Null);
            json!({
                "model_name": field(m, "model_name"),
                "litellm_params": params,
                "model_info": {CHAINS_KEY: chains},
            })
        })
        .collect();
    config.insert("model_list".into(), Value::Array(models));
    let guardrails: Vec<Value> = list(&served.guardrails, "guardrails")
        .iter()
        .map(|g| json!({"guardrail_name": field(g, "guardrail_name"), "litellm_params": field(g, "litellm_params")}))
        .collect();
    config.insert("guardrails".into(), Value::Array(guardrails));
    let policies: Map<String, Value> = list(&served.policies, "policies")
        .iter()
        .filter_map(|p| {
            let name = p.get("policy_name")?.as_str()?.to_owned();
            let add = p.get("guardrails_add").cloned().unwrap_or(json!([]));
            Some((name, json!({"guardrails": {"add": add}})))
        })
        .collect();
    config.insert("policies".into(), Value::Object(policies));
    let attachments: Vec<Value> = list(&served.attachments, "attachments")
        .iter()
        .map(|a| json!({"policy": field(a, "policy_name"), "scope": field(a, "scope")}))
        .collect();
    config.insert("policy_attachments".into(), Value::Array(attachments));
    // NB: the rate-limit check is not echoed as configured; it shows as
    // the hook it installs.
    let checked = list(&served.details, "success_callbacks")
        .iter()
        .any(|c| c == RATE_LIMIT_HOOK);
    if checked {
        config.insert(
            "router_settings".into(),
            json!({"optional_pre_call_checks": [RATE_LIMIT_CHECK]}),
        );
    }
    let callbacks: Vec<Value> = list(&served.callbacks, "callbacks")
        .iter()
        .filter_map(|c| c.get("name").cloned())
        .collect();
    config.insert("litellm_settings".into(), json!({"callbacks": callbacks}));
    config
}

/// The projection:
///
/// ```text
/// { "models": [served model_name…],
///   "packs": { pack: { policy: {…} | null } },   // null: nothing enforces it
///   "other_guardrails": { name: {…} } }          // not from a pack's chain
/// ```
fn projection(config: &Map<String, Value>) -> Value {
    let served: Vec<Value> = models(config)
        .filter_map(|m| m.get("model_name").cloned())
        .collect();
    let guardrails: Vec<(&str, &Map<String, Value>)> = config
        .get("guardrails")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| {
            let name = g.get("guardrail_name")?.as_str()?;
            let params = g.get("litellm_params")?.as_object()?;
            Some((name, params))
        })
        .collect();
    let attached = attached_guardrails(config);
    let mut accounted: Vec<String> = Vec::new();
    let mut packs = Map::new();
    let chains = config
        .get("sluice")
        .and_then(|s| s.get("chains"))
        .or_else(|| models(config).find_map(|m| m.get("model_info")?.get(CHAINS_KEY)))
        .and_then(Value::as_object);
    for (pack, chain) in chains.into_iter().flatten() {
        let mut policies = Map::new();
        for policy in chain
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let projected = match policy {
                "model-allowlist" => json!({"models": served}),
                "rate-limit" => rate_limit(config),
                "audit-logger" => audit_logger(config),
                _ => {
                    let name = guardrail_name(pack, policy);
                    accounted.push(name.clone());
                    guardrails
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map_or(Value::Null, |(n, params)| {
                            guardrail(params, attached.contains(n))
                        })
                }
            };
            policies.insert(policy.to_owned(), projected);
        }
        packs.insert(pack.clone(), Value::Object(policies));
    }
    let other: Map<String, Value> = guardrails
        .iter()
        .filter(|(n, _)| !accounted.iter().any(|a| a == n))
        .map(|(n, params)| ((*n).to_owned(), guardrail(params, attached.contains(n))))
        .collect();
    let mut out = Map::new();
    out.insert("models".into(), Value::Array(served));
    out.insert("packs".into(), Value::Object(packs));
    if !other.is_empty() {
        out.insert("other_guardrails".into(), Value::Object(other));
    }
    Value::Object(out)
}

/// Guardrails that apply to every request: those a policy attached with
/// `scope: "*"` adds.
fn attached_guardrails(config: &Map<String, Value>) -> Vec<&str> {
    let policies = config.get("policies").and_then(Value::as_object);
    config
        .get("policy_attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|a| a.get("scope").and_then(Value::as_str) == Some("*"))
        .filter_map(|a| a.get("policy").and_then(Value::as_str))
        .filter_map(|p| policies?.get(p))
        .filter_map(|p| p.get("guardrails")?.get("add")?.as_array())
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn guardrail(params: &Map<String, Value>, attached: bool) -> Value {
    let mut out = Map::new();
    for key in ["guardrail", "mode", "default_on"] {
        out.insert(key.into(), params.get(key).cloned().unwrap_or(Value::Null));
    }
    out.insert("attached".into(), attached.into());
    if let Some(patterns) = params.get("patterns").and_then(Value::as_array) {
        let map: Map<String, Value> = patterns
            .iter()
            .filter_map(|p| {
                let key = match p.get("pattern_type").and_then(Value::as_str) {
                    Some("regex") => format!("regex:{}", p.get("name")?.as_str()?),
                    _ => p.get("pattern_name")?.as_str()?.to_owned(),
                };
                Some((key, p.get("action").cloned().unwrap_or(Value::Null)))
            })
            .collect();
        out.insert("patterns".into(), Value::Object(map));
    }
    if let Some(categories) = params.get("categories").and_then(Value::as_array) {
        let map: Map<String, Value> = categories
            .iter()
            .filter_map(|c| {
                let name = c.get("category")?.as_str()?.to_owned();
                let get = |k: &str| c.get(k).cloned().unwrap_or(Value::Null);
                Some((
                    name,
                    json!({"action": get("action"), "enabled": get("enabled"), "severity_threshold": get("severity_threshold")}),
                ))
            })
            .collect();
        out.insert("categories".into(), Value::Object(map));
    }
    // NB: unset and default parameters are left out, so a config and the
    // API's echo of it (every parameter, most of them null) project alike.
    let rest: Map<String, Value> = params
        .iter()
        .filter(|(k, v)| {
            !matches!(
                k.as_str(),
                "guardrail" | "mode" | "default_on" | "patterns" | "categories"
            ) && !v.is_null()
                && !is_guardrail_default(k, v)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !rest.is_empty() {
        out.insert("params".into(), Value::Object(rest));
    }
    Value::Object(out)
}

fn rate_limit(config: &Map<String, Value>) -> Value {
    let per_model: Map<String, Value> = models(config)
        .filter_map(|m| {
            let name = m.get("model_name")?.as_str()?.to_owned();
            let rpm = m
                .get("litellm_params")
                .and_then(|p| p.get("rpm"))
                .cloned()
                .unwrap_or(Value::Null);
            Some((name, rpm))
        })
        .collect();
    let checked = config
        .get("router_settings")
        .and_then(|r| r.get("optional_pre_call_checks"))
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|c| c == RATE_LIMIT_CHECK));
    json!({"requests_per_minute": per_model, "enforced": checked})
}

fn audit_logger(config: &Map<String, Value>) -> Value {
    let callbacks: Vec<&str> = match config
        .get("litellm_settings")
        .and_then(|l| l.get("callbacks"))
    {
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(one)) => vec![one.as_str()],
        _ => Vec::new(),
    };
    let all = callbacks.contains(&CALLBACK_ALL);
    let on = all || callbacks.contains(&CALLBACK_HITS);
    json!({"on": on, "log_all_access": all})
}

// ---------------------------------------------------------------------------
// What LiteLLM cannot express, and what a base reaches

fn pointer(pack: &str, policy: &str, key: Option<&str>) -> String {
    let mut p = format!(
        "/packs/{}/settings/{}",
        yaml::escape(pack),
        yaml::escape(policy)
    );
    if let Some(key) = key {
        p.push('/');
        p.push_str(&yaml::escape(key));
    }
    p
}

/// What of `document` LiteLLM cannot express (a finding each, before anything
/// is applied): pointers into the document, `/enforcement` or
/// `/packs/<pack>/settings/<policy>/<key>` (JSON-pointer escaped).
pub fn unsupported(document: &PolicyDocument) -> Vec<Unsupported> {
    let mut out = Vec::new();
    let mut push = |pointer: String, message: String| out.push(Unsupported { pointer, message });
    let enforcement = document.enforcement;
    let entries = entries(document);
    let audited = entries.iter().any(|e| e.policy == "audit-logger");
    if enforcement == Enforcement::Alert {
        push(
            "/enforcement".into(),
            "LiteLLM raises no alerts (its alerting needs Slack or e-mail): under `alert` a flagged call is only recorded; use `monitor` or `enforce`".into(),
        );
    }
    if enforcement != Enforcement::Enforce && !audited {
        push(
            "/enforcement".into(),
            format!(
                "under `{}` LiteLLM only flags, and a flag is recorded only by the audit callback: add `audit-logger` to an enabled pack's chain",
                enforcement_name(enforcement)
            ),
        );
    }
    for entry in &entries {
        let (pack, policy) = (entry.pack, entry.policy);
        let at = |key: &str| pointer(pack, policy, Some(key));
        match policy {
            "pii-detector" => {
                let settings = settings::<PiiDetector>(entry.settings);
                let missing: Vec<String> = settings
                    .detect_patterns
                    .clone()
                    .unwrap_or_else(|| ALL_PATTERNS.to_vec())
                    .into_iter()
                    .filter(|p| prebuilt(*p).is_empty())
                    .map(pattern_name)
                    .collect();
                if !missing.is_empty() {
                    let why = if settings.detect_patterns.is_none() {
                        " (the default is every kind: list the kinds to detect)"
                    } else {
                        ""
                    };
                    push(
                        at("detect_patterns"),
                        format!("LiteLLM has no pattern for {}{why}", missing.join(", ")),
                    );
                }
            }
            "prompt-injection" => {
                let settings = settings::<PromptInjection>(entry.settings);
                if matches!(settings.action, Some(InjectionAction::Flag))
                    && enforcement == Enforcement::Enforce
                    && !audited
                {
                    push(
                        at("action"),
                        "`flag` runs the guardrail in logging_only, whose flag only the audit callback records: add `audit-logger` to an enabled pack's chain".into(),
                    );
                }
            }
            "model-allowlist" if enforcement != Enforcement::Enforce => push(
                at("models"),
                format!(
                    "under `{}` LiteLLM cannot let an unlisted model through and flag it: a model is served or refused",
                    enforcement_name(enforcement)
                ),
            ),
            "rate-limit" if enforcement != Enforcement::Enforce => push(
                at("requests_per_minute"),
                format!(
                    "under `{}` LiteLLM cannot count without limiting: its rpm answers 429",
                    enforcement_name(enforcement)
                ),
            ),
            "audit-logger" => {
                let settings = settings::<AuditLogger>(entry.settings);
                if settings.retention_days.is_some() {
                    push(
                        at("retention_days"),
                        "LiteLLM does not expire audit records: the log file is kept until rotated outside LiteLLM".into(),
                    );
                }
                if settings.immutable == Some(true) {
                    push(
                        at("immutable"),
                        "LiteLLM cannot keep audit records immutable: the callback appends to a plain file".into(),
                    );
                }
            }
            custom if catalog::is_custom(custom) => {
                custom_findings(entry.settings, &pointer(pack, policy, None), &mut push);
            }
            _ => {}
        }
    }
    out
}

fn enforcement_name(enforcement: Enforcement) -> &'static str {
    match enforcement {
        Enforcement::Monitor => "monitor",
        Enforcement::Alert => "alert",
        Enforcement::Enforce => "enforce",
    }
}

fn custom_findings(settings: Option<&Value>, base: &str, push: &mut dyn FnMut(String, String)) {
    let at = |key: Option<&str>| match key {
        Some(key) => format!("{base}/{}", yaml::escape(key)),
        None => base.to_owned(),
    };
    let Some(settings) = settings.and_then(Value::as_object) else {
        push(
            at(None),
            "a custom policy on LiteLLM is a guardrail's litellm_params: give at least `guardrail` (e.g. `litellm_content_filter`)".into(),
        );
        return;
    };
    match settings.get("guardrail") {
        Some(Value::String(kind)) if kind.contains('.') => push(
            at(Some("guardrail")),
            format!(
                "`{kind}` names a Python module, and Sluice writes none beside the config: use a built-in guardrail type"
            ),
        ),
        Some(Value::String(kind)) if !kind.is_empty() => {}
        _ => push(
            at(Some("guardrail")),
            "a custom policy on LiteLLM needs `guardrail`: the LiteLLM guardrail type, a string"
                .into(),
        ),
    }
    if let Some(mode) = settings.get("mode")
        && !mode.is_string()
    {
        push(
            at(Some("mode")),
            "`mode` is a LiteLLM guardrail mode, a string".into(),
        );
    }
    // Environment references and URLs would bypass the operator's
    // allowances, which hold only the base's: keep them in the base.
    let mut reach = Vec::new();
    walk(
        &Value::Object(settings.clone()),
        "",
        None,
        &mut |p, key, text| {
            if text.starts_with("os.environ/") || is_url(key, text) {
                reach.push(p.to_owned());
            }
        },
    );
    for inner in reach {
        push(
            format!("{base}{inner}"),
            "a custom guardrail may not name environment variables or URLs (the operator's allowances cover only the gateway's base settings)".into(),
        );
    }
}

/// Every string leaf: its pointer, the key it sits under, its text.
fn walk(
    value: &Value,
    at: &str,
    key: Option<&str>,
    visit: &mut dyn FnMut(&str, Option<&str>, &str),
) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                walk(v, &format!("{at}/{}", yaml::escape(k)), Some(k), visit);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, &format!("{at}/{i}"), key, visit);
            }
        }
        Value::String(text) => visit(at, key, text),
        _ => {}
    }
}

const URL_KEYS: [&str; 7] = [
    "api_base",
    "base_url",
    "api_url",
    "url",
    "endpoint",
    "host",
    "server_url",
];

fn is_url(key: Option<&str>, text: &str) -> bool {
    let key = key.unwrap_or_default().to_ascii_lowercase();
    text.contains("://")
        || URL_KEYS.contains(&key.as_str())
        || ["_url", "_base", "_endpoint", "_host"]
            .iter()
            .any(|s| key.ends_with(s))
}

/// The `os.environ/VAR` references of a base (JSON pointer, variable), so
/// validation can hold them to the operator's --allow-env.
pub fn variables(base: &Base) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk(&Value::Object(base.clone()), "", None, &mut |p, _, text| {
        if let Some(var) = text.strip_prefix("os.environ/") {
            out.push((p.to_owned(), var.to_owned()));
        }
    });
    out
}

/// The URLs of a base (`api_base`, …) (pointer, url), so validation can hold
/// them to the operator's --allow-url: a repository author must not be able
/// to point a model at their own host with the operator's provider key. A
/// URL given as `os.environ/VAR` is a variable instead.
pub fn urls(base: &Base) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk(
        &Value::Object(base.clone()),
        "",
        None,
        &mut |p, key, text| {
            if !text.starts_with("os.environ/") && is_url(key, text) {
                out.push((p.to_owned(), text.to_owned()));
            }
        },
    );
    out
}

#[cfg(test)]
#[path = "litellm_tests.rs"]
mod tests;
