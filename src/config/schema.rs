//! The first validation pass: JSON Schemas generated from the Rust types
//! (schemars), compiled once, checked with jsonschema. Errors become findings
//! that name the key or value, with "did you mean" hints.

use super::{
    finding::Finding,
    model::{EnvironmentSpec, GatewaysFile, LitellmSettings, Manifest, Pack},
    yaml::escape,
};
use jsonschema::{ValidationError, Validator, error::ValidationErrorKind};
use schemars::{JsonSchema, generate::SchemaSettings};
use serde_json::Value;
use std::{path::Path, sync::OnceLock};

/// The kinds of file a repository holds, each with its own schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Manifest,
    Environment,
    Gateways,
    Pack,
    /// A rendered policy document, as gateways receive it.
    Document,
    /// `environments/<slug>/litellm.yaml`.
    Litellm,
    /// `evals/<name>.eval.yaml`.
    Suite,
    /// `fixtures/<name>.fixture.yaml`.
    Fixture,
}

impl FileKind {
    pub const ALL: [FileKind; 8] = [
        FileKind::Manifest,
        FileKind::Environment,
        FileKind::Gateways,
        FileKind::Pack,
        FileKind::Document,
        FileKind::Litellm,
        FileKind::Suite,
        FileKind::Fixture,
    ];

    /// The schema's file name under `sluice schema --out DIR`.
    pub fn schema_file(self) -> &'static str {
        match self {
            FileKind::Manifest => "sluice.schema.json",
            FileKind::Environment => "environment.schema.json",
            FileKind::Gateways => "gateways.schema.json",
            FileKind::Pack => "pack.schema.json",
            FileKind::Document => "policy-document.schema.json",
            FileKind::Litellm => "litellm.schema.json",
            FileKind::Suite => "eval-suite.schema.json",
            FileKind::Fixture => "fixture.schema.json",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn generate(self) -> Value {
        match self {
            FileKind::Manifest => generate::<Manifest>(),
            FileKind::Environment => generate::<EnvironmentSpec>(),
            FileKind::Gateways => generate::<GatewaysFile>(),
            FileKind::Pack => generate::<Pack>(),
            FileKind::Document => generate::<super::document::PolicyDocument>(),
            FileKind::Litellm => generate::<LitellmSettings>(),
            FileKind::Suite => generate::<crate::eval::Suite>(),
            FileKind::Fixture => generate::<crate::eval::Fixture>(),
        }
    }
}

fn generate<T: JsonSchema>() -> Value {
    // NB: inlined so a schema path from jsonschema can be walked without
    // resolving references (needed for "did you mean").
    let settings = SchemaSettings::draft2020_12().with(|s| s.inline_subschemas = true);
    settings.into_generator().into_root_schema_for::<T>().into()
}

struct Compiled {
    schema: Value,
    validator: Validator,
}

fn compiled(kind: FileKind) -> &'static Compiled {
    static COMPILED: OnceLock<Vec<Compiled>> = OnceLock::new();
    let all = COMPILED.get_or_init(|| {
        FileKind::ALL
            .iter()
            .map(|kind| {
                let schema = kind.generate();
                let validator = jsonschema::validator_for(&schema)
                    .expect("schemas generated from our own types compile");
                Compiled { schema, validator }
            })
            .collect()
    });
    &all[kind.index()]
}

/// The schema of a kind of file, as written by `sluice schema`.
pub fn schema(kind: FileKind) -> &'static Value {
    &compiled(kind).schema
}

/// A pack overlay's schema: the pack schema with nothing required and `null`
/// allowed anywhere (a JSON merge patch deletes with `null`). For editors; the
/// loader checks the merged pack against the full schema instead.
pub fn overlay_schema() -> Value {
    fn relax(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.remove("required");
                map.values_mut().for_each(relax);
                match map.get_mut("type") {
                    Some(Value::String(t)) if t != "null" => {
                        let t = t.clone();
                        map.insert("type".into(), serde_json::json!([t, "null"]));
                    }
                    Some(Value::Array(types)) if !types.contains(&Value::from("null")) => {
                        types.push("null".into());
                    }
                    _ => {}
                }
                if let Some(Value::Array(options)) = map.get_mut("enum")
                    && !options.contains(&Value::Null)
                {
                    options.push(Value::Null);
                }
                // NB: relaxed branches may all accept null, which `oneOf` would
                // refuse; an editor's schema can afford the looser `anyOf`.
                if let Some(branches) = map.remove("oneOf") {
                    map.insert("anyOf".into(), branches);
                }
                if let Some(Value::Array(branches)) = map.get_mut("anyOf") {
                    branches.push(serde_json::json!({"type": "null"}));
                }
            }
            Value::Array(items) => items.iter_mut().for_each(relax),
            _ => {}
        }
    }
    let mut schema = schema(FileKind::Pack).clone();
    relax(&mut schema);
    schema["title"] = "Sluice pack overlay (a JSON merge patch over a base pack)".into();
    schema
}

/// Writes every schema into `dir`.
pub fn write_all(dir: &Path) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut documents: Vec<(&str, Value)> = FileKind::ALL
        .iter()
        .map(|k| (k.schema_file(), schema(*k).clone()))
        .collect();
    documents.push(("pack-overlay.schema.json", overlay_schema()));
    for (name, document) in documents {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(&document).map_err(std::io::Error::other)?;
        std::fs::write(&path, text + "\n")?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

/// Checks `value` against the schema of `kind`; every violation is a finding.
pub fn check(kind: FileKind, file: &str, value: &Value) -> Vec<Finding> {
    let compiled = compiled(kind);
    if compiled.validator.is_valid(value) {
        return Vec::new();
    }
    let mut findings = Vec::new();
    for error in compiled.validator.iter_errors(value) {
        describe(&error, &compiled.schema, file, &mut findings);
    }
    findings
}

fn describe(error: &ValidationError<'_>, root: &Value, file: &str, out: &mut Vec<Finding>) {
    let at = error.instance_path().as_str().to_owned();
    let instance = error.instance();
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let allowed = allowed_keys(root, error.schema_path().as_str());
            for key in unexpected {
                out.push(unknown_key(file, &at, key, &allowed));
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            out.push(
                Finding::error(
                    "schema.required",
                    file,
                    format!("missing required key `{name}`"),
                )
                .pointer(at),
            );
        }
        ValidationErrorKind::Type { kind } => {
            // NB: in the user's words: "a whole number or nothing", never
            // the validator's type names.
            let expected = match kind {
                jsonschema::error::TypeKind::Single(one) => type_words(one.as_str()),
                jsonschema::error::TypeKind::Multiple(set) => {
                    let mut words: Vec<String> = set
                        .iter()
                        .filter(|t| t.as_str() != "null")
                        .map(|t| type_words(t.as_str()))
                        .collect();
                    if set.iter().any(|t| t.as_str() == "null") {
                        words.push("nothing (null)".into());
                    }
                    words.join(" or ")
                }
            };
            out.push(
                Finding::error(
                    "schema.type",
                    file,
                    format!("expected {expected}, found {}", shown(instance)),
                )
                .pointer(at),
            );
        }
        ValidationErrorKind::Enum { options } => {
            let options: Vec<String> = options
                .as_array()
                .map(|o| {
                    o.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            out.push(not_one_of(file, &at, instance, &options));
        }
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            describe_alternatives(context, &at, instance, root, file, out);
        }
        ValidationErrorKind::Pattern { .. } => {
            let node = node_at(root, parent(error.schema_path().as_str()));
            let hint = node
                .and_then(|n| n.get("x-hint"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            // NB: where a secret's *name* belongs, a malformed value is often
            // the secret itself: never show it.
            let secret = node.and_then(|n| n.get("x-redact")).is_some();
            let message = if secret {
                "the value is not an environment-variable name".to_owned()
            } else {
                format!("{} is not well formed", shown(instance))
            };
            let finding = Finding::error("schema.format", file, message)
                .pointer(at)
                .hint_opt(hint);
            out.push(if secret { finding.redacted() } else { finding });
        }
        ValidationErrorKind::Minimum { .. }
        | ValidationErrorKind::Maximum { .. }
        | ValidationErrorKind::ExclusiveMinimum { .. }
        | ValidationErrorKind::ExclusiveMaximum { .. } => {
            out.push(Finding::error("schema.range", file, error.to_string()).pointer(at));
        }
        ValidationErrorKind::MinLength { .. }
        | ValidationErrorKind::MaxLength { .. }
        | ValidationErrorKind::MinItems { .. }
        | ValidationErrorKind::MaxItems { .. } => {
            out.push(Finding::error("schema.length", file, error.to_string()).pointer(at));
        }
        _ => out.push(Finding::error("schema.invalid", file, error.to_string()).pointer(at)),
    }
}

/// For `oneOf`/`anyOf` (tagged enums such as a gateway's `driver`, documented
/// enums), report the alternative the author evidently meant rather than
/// "matches none of the alternatives".
fn describe_alternatives(
    context: &[Vec<ValidationError<'static>>],
    at: &str,
    instance: &Value,
    root: &Value,
    file: &str,
    out: &mut Vec<Finding>,
) {
    let is_tag_mismatch = |e: &ValidationError<'_>| {
        matches!(
            e.kind(),
            ValidationErrorKind::Constant { .. } | ValidationErrorKind::Enum { .. }
        )
    };
    let chosen = context
        .iter()
        .filter(|branch| !branch.iter().any(is_tag_mismatch))
        .min_by_key(|branch| branch.len());
    if let Some(branch) = chosen {
        for error in branch {
            describe(error, root, file, out);
        }
        return;
    }
    // Every alternative is ruled out by a constant: the discriminator itself is wrong.
    let mut expected = Vec::new();
    let mut tag_at = at.to_owned();
    for error in context.iter().flatten() {
        if let ValidationErrorKind::Constant { expected_value } = error.kind() {
            if let Some(v) = expected_value.as_str() {
                expected.push(v.to_owned());
            }
            tag_at = error.instance_path().as_str().to_owned();
        }
    }
    let found = instance.pointer(&tag_at[at.len()..]).unwrap_or(instance);
    out.push(not_one_of(file, &tag_at, found, &expected));
}

fn not_one_of(file: &str, at: &str, found: &Value, options: &[String]) -> Finding {
    let hint = found
        .as_str()
        .and_then(|f| did_you_mean(f, options.iter().map(String::as_str)))
        .map(|m| format!("did you mean `{m}`?"));
    Finding::error(
        "schema.enum",
        file,
        format!("{} is not one of: {}", shown(found), options.join(", ")),
    )
    .pointer(at)
    .hint_opt(hint)
}

fn unknown_key(file: &str, at: &str, key: &str, allowed: &[String]) -> Finding {
    let pointer = format!("{at}/{}", escape(key));
    let finding = Finding::error("schema.unknown-key", file, format!("unknown key `{key}`"))
        .pointer(pointer)
        .at_key();
    // NB: the value of an unexpected key may be a secret where its name
    // belongs (`url:` for `urlEnv:`, `token:`): such lines are masked; a
    // typo of any other key (`enforcment: alert`) is shown as written.
    let names_a_secret = allowed
        .iter()
        .any(|a| a.strip_suffix("Env").or_else(|| a.strip_suffix("_env")) == Some(key));
    let finding = if names_a_secret {
        finding.redacted()
    } else {
        finding
    };
    if looks_secret(key) {
        return finding.redacted().hint(
            "secrets never live in the repository: keep the value in an environment \
             variable or Kubernetes Secret and name it (e.g. `tokenEnv`)",
        );
    }
    let hint = did_you_mean(key, allowed.iter().map(String::as_str))
        .map(|m| format!("did you mean `{m}`?"))
        .or_else(|| {
            (!allowed.is_empty()).then(|| format!("expected one of: {}", allowed.join(", ")))
        });
    finding.hint_opt(hint)
}

fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace(['_', '-'], "");
    [
        "token",
        "password",
        "secret",
        "apikey",
        "credential",
        "bearer",
    ]
    .iter()
    .any(|word| key.contains(word))
        && !key.ends_with("env")
}

/// The closest candidate to a misspelt `word`, if any is close enough.
pub fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let fold = |s: &str| s.to_ascii_lowercase().replace(['_', '-'], "");
    let folded = fold(word);
    candidates
        .map(|c| {
            let distance = if fold(c) == folded {
                0
            } else {
                strsim::damerau_levenshtein(word, c)
            };
            (distance, c)
        })
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The property names the schema object that raised `additionalProperties` allows.
fn allowed_keys(root: &Value, schema_path: &str) -> Vec<String> {
    node_at(root, parent(schema_path))
        .and_then(|n| n.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn parent(pointer: &str) -> &str {
    pointer.rfind('/').map_or("", |i| &pointer[..i])
}

fn node_at<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    root.pointer(pointer)
}

fn type_words(json_type: &str) -> String {
    match json_type {
        "object" => "a mapping".into(),
        "array" => "a list".into(),
        "string" => "a string".into(),
        "boolean" => "true or false".into(),
        "integer" => "a whole number".into(),
        "number" => "a number".into(),
        "null" => "nothing (null)".into(),
        other => other.into(),
    }
}

/// A value as shown in a message: its kind, and short scalars verbatim.
fn shown(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("`{n}`"),
        Value::String(s) if s.chars().count() <= 40 => format!("`{s}`"),
        Value::String(_) => "a long string".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn suggests_close_keys() {
        let keys = ["enforcement", "slug", "isProduction"];
        assert_eq!(
            did_you_mean("enfrocement", keys.into_iter()),
            Some("enforcement")
        );
        assert_eq!(
            did_you_mean("is_production", keys.into_iter()),
            Some("isProduction")
        );
        assert_eq!(did_you_mean("color", keys.into_iter()), None);
    }

    #[test]
    fn unknown_environment_key_gets_a_hint() {
        let value = json!({"slug": "dev", "name": "Dev", "enfrocement": "enforce"});
        let findings = check(FileKind::Environment, "e.yaml", &value);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].rule, "schema.unknown-key");
        assert_eq!(findings[0].pointer, "/enfrocement");
        assert_eq!(
            findings[0].hint.as_deref(),
            Some("did you mean `enforcement`?")
        );
    }

    #[test]
    fn only_keys_that_may_hold_a_secret_are_masked() {
        // A typo of an ordinary key is shown as written...
        let value = json!({"slug": "dev", "name": "Dev", "enforcment": "alert"});
        let findings = check(FileKind::Environment, "e.yaml", &value);
        assert!(!findings[0].redact, "{findings:?}");
        // ...a value where a secret's variable name belongs is not.
        let value = json!({"slug": "dev", "name": "Dev", "alerts": [{"webhook": {"url": "https://hooks.example/T0/B0/XXX"}}]});
        let findings = check(FileKind::Environment, "e.yaml", &value);
        let unknown: Vec<_> = findings
            .iter()
            .filter(|f| f.rule == "schema.unknown-key")
            .collect();
        assert!(
            !unknown.is_empty() && unknown.iter().all(|f| f.redact),
            "{findings:?}"
        );
        let value = json!({"gateways": [{"name": "a", "driver": "http", "url": "https://x", "token": "sk-live"}]});
        let findings = check(FileKind::Gateways, "g.yaml", &value);
        assert!(findings.iter().all(|f| f.redact), "{findings:?}");
    }

    #[test]
    fn a_type_that_may_also_be_null_is_said_in_words() {
        let value = json!({"pack": {"name": "p", "version": "1.0.0"}, "policy": {"audit-logger": {"retention_days": "thirty"}}});
        let findings = check(FileKind::Pack, "p.yaml", &value);
        let message = &findings[0].message;
        assert_eq!(
            message, "expected a whole number or nothing (null), found `thirty`",
            "{findings:?}"
        );
    }

    #[test]
    fn wrong_types_are_named() {
        let value = json!({"slug": "dev", "name": "Dev", "isProduction": "perhaps"});
        let findings = check(FileKind::Environment, "e.yaml", &value);
        assert_eq!(findings[0].rule, "schema.type");
        assert_eq!(
            findings[0].message,
            "expected true or false, found `perhaps`"
        );
    }

    #[test]
    fn gateway_errors_follow_the_driver() {
        let value = json!({"gateways": [
            {"name": "a", "driver": "http", "url": "https://x", "tokne_env": "T"},
            {"name": "b", "driver": "ftp", "path": "/x"},
        ]});
        let findings = check(FileKind::Gateways, "g.yaml", &value);
        let rules: Vec<_> = findings
            .iter()
            .map(|f| (f.rule, f.pointer.as_str()))
            .collect();
        assert_eq!(
            rules,
            vec![
                ("schema.unknown-key", "/gateways/0/tokne_env"),
                ("schema.enum", "/gateways/1/driver"),
            ],
            "{findings:#?}"
        );
    }

    #[test]
    fn catalog_settings_are_checked() {
        let value = json!({
            "pack": {"name": "p", "version": "1.0.0"},
            "policies": {"chain": ["pii-detector"]},
            "policy": {"pii-detector": {"action": "redcat"}, "x-mine": {"anything": 1}},
        });
        let findings = check(FileKind::Pack, "p.yaml", &value);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert_eq!(findings[0].pointer, "/policy/pii-detector/action");
        assert_eq!(findings[0].hint.as_deref(), Some("did you mean `redact`?"));
    }
}
