//! The changes between two policy documents in the words of the domain
//! (a policy left a chain, a setting moved, a pack's version was bumped),
//! and which of them weaken governance.

use crate::config::diff;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// One change to an environment's policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Change {
    Enforcement {
        from: Value,
        to: Value,
    },
    PackAdded {
        pack: String,
        version: Value,
    },
    PackRemoved {
        pack: String,
        version: Value,
    },
    PackVersion {
        pack: String,
        from: Value,
        to: Value,
    },
    PackEnabled {
        pack: String,
        from: Value,
        to: Value,
    },
    PolicyAdded {
        pack: String,
        policy: String,
    },
    PolicyRemoved {
        pack: String,
        policy: String,
    },
    ChainReordered {
        pack: String,
        from: Value,
        to: Value,
    },
    Setting {
        pack: String,
        policy: String,
        setting: String,
        from: Option<Value>,
        to: Option<Value>,
    },
    /// Anything else (descriptions, fields of future formats).
    Other {
        pointer: String,
        from: Option<Value>,
        to: Option<Value>,
    },
}

impl Change {
    /// One line for people.
    pub fn describe(&self) -> String {
        let show = |v: &Option<Value>| v.as_ref().map_or("nothing".to_owned(), Value::to_string);
        match self {
            Change::Enforcement { from, to } => format!("enforcement {from} → {to}"),
            Change::PackAdded { pack, version } => format!("pack {pack} {version} added"),
            Change::PackRemoved { pack, version } => format!("pack {pack} {version} removed"),
            Change::PackVersion { pack, from, to } => format!("pack {pack} version {from} → {to}"),
            Change::PackEnabled { pack, from, to } => format!("pack {pack} enabled {from} → {to}"),
            Change::PolicyAdded { pack, policy } => {
                format!("{policy} added to the chain of {pack}")
            }
            Change::PolicyRemoved { pack, policy } => {
                format!("{policy} removed from the chain of {pack}")
            }
            Change::ChainReordered { pack, from, to } => {
                format!("chain of {pack} reordered {from} → {to}")
            }
            Change::Setting {
                pack,
                policy,
                setting,
                from,
                to,
            } => {
                let change = match (from, to) {
                    (None, Some(to)) => format!("added {to}"),
                    (Some(from), None) => format!("removed (was {from})"),
                    _ => format!("{} → {}", show(from), show(to)),
                };
                format!("{policy}.{setting} (pack {pack}): {change}")
            }
            Change::Other { pointer, from, to } => {
                format!("{pointer}: {} → {}", show(from), show(to))
            }
        }
    }

    /// Why this change weakens governance, if it does.
    pub fn weakening(&self) -> Option<String> {
        match self {
            Change::Enforcement { from, to } if rank(to) < rank(from) => {
                Some(format!("enforcement lowered from {from} to {to}"))
            }
            Change::PolicyRemoved { pack, policy } => {
                Some(format!("{policy} no longer runs in pack {pack}"))
            }
            Change::PackRemoved { pack, .. } => Some(format!("pack {pack} no longer runs")),
            Change::PackEnabled { pack, to, .. } if *to == Value::Bool(false) => {
                Some(format!("pack {pack} disabled"))
            }
            Change::Setting {
                policy,
                setting,
                from: Some(from),
                to,
                ..
            } => weakened_setting(policy, setting, from, to.as_ref()),
            _ => None,
        }
    }
}

/// A setting moved (or removed, `to` = `None`: the policy's default applies)
/// in the direction of less protection.
fn weakened_setting(
    policy: &str,
    setting: &str,
    from: &Value,
    to: Option<&Value>,
) -> Option<String> {
    let now = to.map_or_else(|| "removed".to_owned(), Value::to_string);
    let was_true_now_not = *from == Value::Bool(true) && to != Some(&Value::Bool(true));
    match (policy, setting) {
        ("pii-detector" | "prompt-injection", "action")
            if from == "block" && to.is_none_or(|t| t != "block") =>
        {
            Some(format!(
                "{policy} no longer blocks: block → {}",
                to.map_or("removed".into(), |t| t
                    .as_str()
                    .unwrap_or_default()
                    .to_owned())
            ))
        }
        ("audit-logger", "retention_days") if to.is_none_or(|t| t.as_f64() < from.as_f64()) => {
            Some(format!(
                "audit retention shortened from {from} days to {now}"
            ))
        }
        ("pii-detector", "pci_mode") | ("audit-logger", "immutable" | "log_all_access")
            if was_true_now_not =>
        {
            Some(format!("{policy}.{setting} turned off ({now})"))
        }
        _ => None,
    }
}

/// Enforcement from weakest to strongest; unknown values rank lowest.
fn rank(value: &Value) -> u8 {
    match value.as_str() {
        Some("monitor") => 1,
        Some("alert") => 2,
        Some("enforce") => 3,
        _ => 0,
    }
}

/// Every change from `before` to `after` (rendered policy documents).
pub fn changes(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    if before["enforcement"] != after["enforcement"] {
        out.push(Change::Enforcement {
            from: before["enforcement"].clone(),
            to: after["enforcement"].clone(),
        });
    }
    let empty = Map::new();
    let packs = |doc: &Value| doc["packs"].as_object().cloned().unwrap_or_default();
    let (old, new) = (packs(before), packs(after));
    for (name, pack) in &old {
        match new.get(name) {
            None => out.push(Change::PackRemoved {
                pack: name.clone(),
                version: pack["version"].clone(),
            }),
            Some(next) => pack_changes(name, pack, next, &mut out),
        }
    }
    for (name, pack) in new.iter().filter(|(name, _)| !old.contains_key(*name)) {
        out.push(Change::PackAdded {
            pack: name.clone(),
            version: pack["version"].clone(),
        });
    }
    let rest = |doc: &Value| {
        let mut map = doc.as_object().cloned().unwrap_or_else(|| empty.clone());
        map.remove("enforcement");
        map.remove("packs");
        Value::Object(map)
    };
    out.extend(others("", &rest(before), &rest(after)));
    out
}

fn pack_changes(name: &str, before: &Value, after: &Value, out: &mut Vec<Change>) {
    let pack = name.to_owned();
    if before["version"] != after["version"] {
        out.push(Change::PackVersion {
            pack: pack.clone(),
            from: before["version"].clone(),
            to: after["version"].clone(),
        });
    }
    if before["enabled"] != after["enabled"] {
        out.push(Change::PackEnabled {
            pack: pack.clone(),
            from: before["enabled"].clone(),
            to: after["enabled"].clone(),
        });
    }
    chain_changes(&pack, &before["chain"], &after["chain"], out);
    for change in diff::changes(&before["settings"], &after["settings"]) {
        let mut segments = change.pointer.trim_start_matches('/').splitn(2, '/');
        let policy = segments
            .next()
            .unwrap_or_default()
            .replace("~1", "/")
            .replace("~0", "~");
        let setting = segments
            .next()
            .map_or_else(|| "*".to_owned(), |s| s.replace('/', "."));
        out.push(Change::Setting {
            pack: pack.clone(),
            policy,
            setting,
            from: change.from,
            to: change.to,
        });
    }
    let rest = |doc: &Value| {
        let mut map = doc.as_object().cloned().unwrap_or_default();
        for known in ["version", "enabled", "chain", "settings"] {
            map.remove(known);
        }
        Value::Object(map)
    };
    out.extend(others(
        &format!("/packs/{name}"),
        &rest(before),
        &rest(after),
    ));
}

fn chain_changes(pack: &str, before: &Value, after: &Value, out: &mut Vec<Change>) {
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (old, new) = (names(before), names(after));
    // NB: sets, so a chain of 100,000 names is linear, not 10¹⁰
    // comparisons; a policy named twice is added or removed once.
    let (in_old, in_new): (HashSet<&String>, HashSet<&String>) =
        (old.iter().collect(), new.iter().collect());
    let mut reported = HashSet::new();
    for policy in old.iter().filter(|p| !in_new.contains(p)) {
        if reported.insert(policy) {
            out.push(Change::PolicyRemoved {
                pack: pack.to_owned(),
                policy: policy.clone(),
            });
        }
    }
    for policy in new.iter().filter(|p| !in_old.contains(p)) {
        if reported.insert(policy) {
            out.push(Change::PolicyAdded {
                pack: pack.to_owned(),
                policy: policy.clone(),
            });
        }
    }
    let kept_old: Vec<&String> = old.iter().filter(|p| in_new.contains(p)).collect();
    let kept_new: Vec<&String> = new.iter().filter(|p| in_old.contains(p)).collect();
    if kept_old != kept_new {
        out.push(Change::ChainReordered {
            pack: pack.to_owned(),
            from: before.clone(),
            to: after.clone(),
        });
    }
}

fn others(prefix: &str, before: &Value, after: &Value) -> Vec<Change> {
    diff::changes(before, after)
        .into_iter()
        .map(|c| Change::Other {
            pointer: format!("{prefix}{}", c.pointer),
            from: c.from,
            to: c.to,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_named_many_times_is_one_change() {
        let chain = Value::from(vec!["x-a"; 100_000]);
        let mut out = Vec::new();
        chain_changes("p", &Value::from(Vec::<&str>::new()), &chain, &mut out);
        assert_eq!(out.len(), 1, "one x-a added, not 100,000");
    }
    use serde_json::json;

    fn doc(enforcement: &str, chain: &[&str], pii: &str, retention: u32, enabled: bool) -> Value {
        json!({
            "enforcement": enforcement,
            "format": "sluice.dev/policy/v1",
            "packs": {"baseline": {
                "chain": chain,
                "enabled": enabled,
                "settings": {
                    "pii-detector": {"action": pii},
                    "audit-logger": {"retention_days": retention}
                },
                "version": "1.4.0"
            }}
        })
    }

    fn weakenings(before: &Value, after: &Value) -> Vec<String> {
        changes(before, after)
            .iter()
            .filter_map(Change::weakening)
            .collect()
    }

    const CHAIN: &[&str] = &["audit-logger", "pii-detector"];

    #[test]
    fn each_kind_of_weakening_is_called_out() {
        let base = doc("enforce", CHAIN, "block", 365, true);
        let cases = [
            (
                doc("monitor", CHAIN, "block", 365, true),
                "enforcement lowered",
            ),
            (
                doc("enforce", &["audit-logger"], "block", 365, true),
                "no longer runs in pack",
            ),
            (doc("enforce", CHAIN, "redact", 365, true), "block → redact"),
            (
                doc("enforce", CHAIN, "block", 30, true),
                "retention shortened",
            ),
            (doc("enforce", CHAIN, "block", 365, false), "disabled"),
        ];
        for (after, expected) in cases {
            let found = weakenings(&base, &after);
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].contains(expected), "{found:?} lacks {expected}");
        }
    }

    #[test]
    fn strengthening_changes_are_not_weakening() {
        let base = doc("monitor", &["audit-logger"], "redact", 30, false);
        let after = doc("enforce", CHAIN, "block", 365, true);
        assert!(weakenings(&base, &after).is_empty());
        let kinds: Vec<String> = changes(&base, &after)
            .iter()
            .map(Change::describe)
            .collect();
        assert!(
            kinds.contains(&"pii-detector added to the chain of baseline".to_owned()),
            "{kinds:?}"
        );
    }

    #[test]
    fn a_reorder_is_neither_an_addition_nor_a_removal() {
        let base = doc("enforce", CHAIN, "block", 365, true);
        let after = doc(
            "enforce",
            &["pii-detector", "audit-logger"],
            "block",
            365,
            true,
        );
        let found = changes(&base, &after);
        assert_eq!(found.len(), 1);
        assert!(matches!(found[0], Change::ChainReordered { .. }));
    }

    #[test]
    fn versions_packs_and_settings_are_named() {
        let base = doc("enforce", CHAIN, "block", 365, true);
        let mut after = base.clone();
        after["packs"]["baseline"]["version"] = json!("1.5.0");
        after["packs"]["extra"] =
            json!({"chain": [], "enabled": true, "settings": {}, "version": "0.1.0"});
        let described: Vec<String> = changes(&base, &after)
            .iter()
            .map(Change::describe)
            .collect();
        assert_eq!(
            described,
            [
                r#"pack baseline version "1.4.0" → "1.5.0""#,
                r#"pack extra "0.1.0" added"#
            ]
        );
    }
}
