//! What changed between two rendered policy documents: field by field (by
//! JSON pointer, named by pack, policy and setting where the path says so)
//! for alerts and machines, and as a unified text diff for people.
//!
//! Drift compares what a gateway runs with what it should; `plan` compares
//! two revisions. Both read the same document shape (see `render`):
//! `{enforcement, format, packs: {<pack>: {chain, enabled, settings: {<policy>: {…}}, version}}}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// How long the text diff may search before settling for a coarser answer.
const TEXT_DIFF_BUDGET: Duration = Duration::from_millis(40);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// RFC 6901 pointer into the document.
    pub pointer: String,
    pub kind: ChangeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The setting's path inside the policy, dotted (`action`, `limits.burst`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
}

impl Change {
    /// One line for people: `pii-detector.action (pack baseline): "redact" → "block"`.
    pub fn describe(&self) -> String {
        let subject = match (&self.pack, &self.policy, &self.setting) {
            (Some(pack), Some(policy), Some(setting)) => {
                format!("{policy}.{setting} (pack {pack})")
            }
            (Some(pack), Some(policy), None) => format!("{policy} settings (pack {pack})"),
            (Some(pack), None, _) => {
                let field = self.pointer.rsplit('/').next().unwrap_or_default();
                if self.pointer.matches('/').count() <= 2 {
                    format!("pack {pack}")
                } else {
                    format!("{} of pack {pack}", unescape(field))
                }
            }
            _ => self.pointer.trim_start_matches('/').replace('/', "."),
        };
        let show = |v: &Option<Value>| v.as_ref().map_or("nothing".to_owned(), Value::to_string);
        match self.kind {
            ChangeKind::Added => format!("{subject}: added {}", show(&self.to)),
            ChangeKind::Removed => format!("{subject}: removed (was {})", show(&self.from)),
            ChangeKind::Changed => {
                format!("{subject}: {} → {}", show(&self.from), show(&self.to))
            }
        }
    }
}

/// Every field of `after` that differs from `before`. Objects are compared
/// key by key; arrays and scalars as whole values (a reordered chain is a
/// change of the chain, which is what it means).
pub fn changes(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(&mut String::new(), before, after, &mut out);
    out
}

fn walk(pointer: &mut String, before: &Value, after: &Value, out: &mut Vec<Change>) {
    match (before, after) {
        (Value::Object(old), Value::Object(new)) => {
            for (key, old_value) in old {
                let length = pointer.len();
                push_segment(pointer, key);
                match new.get(key) {
                    Some(new_value) => walk(pointer, old_value, new_value, out),
                    None => out.push(change(pointer, Some(old_value), None)),
                }
                pointer.truncate(length);
            }
            for (key, new_value) in new {
                if !old.contains_key(key) {
                    let length = pointer.len();
                    push_segment(pointer, key);
                    out.push(change(pointer, None, Some(new_value)));
                    pointer.truncate(length);
                }
            }
        }
        _ if before == after => {}
        _ => out.push(change(pointer, Some(before), Some(after))),
    }
}

fn push_segment(pointer: &mut String, key: &str) {
    pointer.push('/');
    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

fn change(pointer: &str, from: Option<&Value>, to: Option<&Value>) -> Change {
    let kind = match (from, to) {
        (None, _) => ChangeKind::Added,
        (_, None) => ChangeKind::Removed,
        _ => ChangeKind::Changed,
    };
    let segments: Vec<String> = pointer.split('/').skip(1).map(unescape).collect();
    let (pack, policy, setting) = match segments.as_slice() {
        [packs, pack, settings, policy, rest @ ..]
            if packs == "packs" && settings == "settings" =>
        {
            let setting = (!rest.is_empty()).then(|| rest.join("."));
            (Some(pack.clone()), Some(policy.clone()), setting)
        }
        [packs, pack, ..] if packs == "packs" => (Some(pack.clone()), None, None),
        _ => (None, None, None),
    };
    Change {
        pointer: pointer.to_owned(),
        kind,
        pack,
        policy,
        setting,
        from: from.cloned(),
        to: to.cloned(),
    }
}

/// A unified diff of the two documents pretty-printed, `before` as `a`.
/// Bounded in time: on huge, very different documents it is coarser, never slow.
pub fn text(before: &Value, after: &Value, a: &str, b: &str) -> String {
    let old = pretty(before);
    let new = pretty(after);
    similar::TextDiff::configure()
        .timeout(TEXT_DIFF_BUDGET)
        .diff_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(a, b)
        .to_string()
}

/// `before` with `changes` made: the inverse of [`changes`], so a record
/// that kept only the changes (a drift episode) still gives both documents
/// for a text diff.
pub fn apply(before: &Value, changes: &[Change]) -> Value {
    let mut after = before.clone();
    for change in changes {
        let mut segments: Vec<String> = change.pointer.split('/').skip(1).map(unescape).collect();
        let Some(last) = segments.pop() else {
            // The whole document differs.
            if let Some(to) = &change.to {
                after = to.clone();
            }
            continue;
        };
        // NB: `changes` descends only where both documents have objects,
        // so every step on the way is one.
        let mut node = &mut after;
        for segment in &segments {
            if !node.is_object() {
                *node = Value::Object(Default::default());
            }
            node = node
                .as_object_mut()
                .expect("made an object above")
                .entry(segment.clone())
                .or_insert_with(|| Value::Object(Default::default()));
        }
        if !node.is_object() {
            *node = Value::Object(Default::default());
        }
        let object = node.as_object_mut().expect("made an object above");
        match &change.to {
            Some(to) => {
                object.insert(last, to.clone());
            }
            None => {
                object.remove(&last);
            }
        }
    }
    after
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document(action: &str, chain: &[&str]) -> Value {
        json!({
            "enforcement": "enforce",
            "format": "sluice.dev/policy/v1",
            "packs": {
                "baseline": {
                    "chain": chain,
                    "enabled": true,
                    "settings": {
                        "pii-detector": {"action": action, "detect_patterns": ["email"]},
                        "audit-logger": {"retention_days": 30}
                    },
                    "version": "1.4.0"
                }
            }
        })
    }

    #[test]
    fn applying_the_changes_gives_the_other_document() {
        let before = document("redact", &["audit-logger", "pii-detector"]);
        let mut after = document("block", &["pii-detector"]);
        after["packs"]["baseline"]["settings"]
            .as_object_mut()
            .unwrap()
            .remove("audit-logger");
        after["packs"]["extra/pack"] = json!({"enabled": false});
        after["enforcement"] = json!("alert");
        let found = changes(&before, &after);
        assert!(found.len() >= 4);
        assert_eq!(apply(&before, &found), after);
        assert_eq!(apply(&before, &[]), before);
    }

    #[test]
    fn identical_documents_have_no_changes() {
        let doc = document("redact", &["audit-logger", "pii-detector"]);
        assert!(changes(&doc, &doc).is_empty());
    }

    #[test]
    fn a_setting_change_names_its_pack_policy_and_setting() {
        let before = document("block", &["audit-logger", "pii-detector"]);
        let after = document("redact", &["audit-logger", "pii-detector"]);
        let found = changes(&before, &after);
        assert_eq!(found.len(), 1);
        let change = &found[0];
        assert_eq!(
            change.pointer,
            "/packs/baseline/settings/pii-detector/action"
        );
        assert_eq!(change.kind, ChangeKind::Changed);
        assert_eq!(change.pack.as_deref(), Some("baseline"));
        assert_eq!(change.policy.as_deref(), Some("pii-detector"));
        assert_eq!(change.setting.as_deref(), Some("action"));
        assert_eq!(
            change.describe(),
            r#"pii-detector.action (pack baseline): "block" → "redact""#
        );
    }

    #[test]
    fn a_reordered_chain_is_one_change_of_the_chain() {
        let before = document("block", &["audit-logger", "pii-detector"]);
        let after = document("block", &["pii-detector", "audit-logger"]);
        let found = changes(&before, &after);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].pointer, "/packs/baseline/chain");
        assert!(found[0].describe().starts_with("chain of pack baseline: "));
    }

    #[test]
    fn added_and_removed_fields_are_told_apart() {
        let before = document("block", &["audit-logger"]);
        let mut after = before.clone();
        after["packs"]["baseline"]["settings"]
            .as_object_mut()
            .unwrap()
            .remove("audit-logger");
        after["packs"]["extra"] = json!({"chain": [], "enabled": true});
        let found = changes(&before, &after);
        let kinds: Vec<(&str, ChangeKind)> =
            found.iter().map(|c| (c.pointer.as_str(), c.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("/packs/baseline/settings/audit-logger", ChangeKind::Removed),
                ("/packs/extra", ChangeKind::Added),
            ]
        );
        assert_eq!(
            found[1].describe(),
            r#"pack extra: added {"chain":[],"enabled":true}"#
        );
    }

    #[test]
    fn keys_with_slashes_are_escaped_in_pointers() {
        let found = changes(&json!({"a/b": 1}), &json!({"a/b": 2}));
        assert_eq!(found[0].pointer, "/a~1b");
    }

    #[test]
    fn the_text_diff_shows_the_changed_line() {
        let before = document("block", &["audit-logger"]);
        let after = document("redact", &["audit-logger"]);
        let diff = text(&before, &after, "desired", "live");
        assert!(diff.contains("--- desired"), "{diff}");
        assert!(diff.contains("-          \"action\": \"block\","), "{diff}");
        assert!(
            diff.contains("+          \"action\": \"redact\","),
            "{diff}"
        );
    }
}
