//! What of a file that fails its schema can still be checked: the nodes
//! the schema findings point at are cut away until the rest meets the
//! schema, so the semantic rules run over that rest and every finding that
//! can still be computed comes at once (a chain naming an unknown policy
//! beside a mistyped setting). The revision stays invalid: a salvaged file
//! is only ever checked, never rendered.
//!
//! ```text
//!  file ──schema──▶ findings ──cut their nodes──▶ rest ──schema──▶ clean? ──▶ typed, checked
//!                                                    ▲                │ no
//!                                                    └────────────────┘ (a few rounds)
//! ```
//!
//! A semantic finding about the rest is reported only when it cannot be
//! an artifact of the cut: not about a node that was cut, nor about one
//! that held it (a "no gateways" about a list whose one gateway was cut).
//! Its pointer is put back into the file's coordinates (a cut array item
//! shifts the items after it).

use super::{
    finding::Finding,
    schema::{self, FileKind},
};
use serde_json::Value;

/// Rounds of cutting before giving up on a file: each round cuts what the
/// schema still refuses (an item left without a required key, then the
/// list that required an item, …); a real file needs two or three.
const ROUNDS: usize = 8;

/// One node cut away, by its pointer at the time of the cut.
#[derive(Debug, Clone)]
pub struct Cut {
    segments: Vec<String>,
    /// Its parent is an array: the items after it moved up by one.
    item: bool,
}

/// A file's value with what its schema refused cut away.
pub struct Salvaged {
    pub value: Value,
    pub cuts: Vec<Cut>,
}

/// The part of `value` that meets `kind`'s schema, given the findings of
/// its first check; `None` when nothing meaningful is left.
pub fn salvage(
    kind: FileKind,
    file: &str,
    value: &Value,
    findings: &[Finding],
) -> Option<Salvaged> {
    let mut value = value.clone();
    let mut cuts = Vec::new();
    let mut refused: Vec<String> = findings.iter().map(|f| f.pointer.clone()).collect();
    for _ in 0..ROUNDS {
        let mut targets: Vec<Vec<String>> = refused.iter().map(|p| segments(p)).collect();
        // NB: the whole file refused is nothing left to check.
        if targets.iter().any(Vec::is_empty) {
            return None;
        }
        // NB: a node under another target goes with it; the rest is cut
        // from the last item to the first, so a cut never moves the
        // target of a later one.
        targets.sort_by(|a, b| compare(b, a));
        targets.dedup();
        let before = cuts.len();
        for target in targets.iter().filter(|t| {
            !targets
                .iter()
                .any(|o| o.len() < t.len() && t.starts_with(o))
        }) {
            if let Some(item) = cut(&mut value, target) {
                cuts.push(Cut {
                    segments: target.clone(),
                    item,
                });
            }
        }
        if cuts.len() == before {
            return None;
        }
        let again = schema::check(kind, file, &value);
        if again.is_empty() {
            return Some(Salvaged { value, cuts });
        }
        refused = again.into_iter().map(|f| f.pointer).collect();
    }
    None
}

/// A semantic finding's pointer in the file as written, or `None` when the
/// finding may come from a cut (it is about a cut node, or one holding it).
pub fn restore(pointer: &str, cuts: &[Cut]) -> Option<String> {
    let mut at = segments(pointer);
    for cut in cuts.iter().rev() {
        let (parent, last) = cut.segments.split_at(cut.segments.len() - 1);
        let holds = cut.segments.starts_with(&at) && at.len() < cut.segments.len();
        let within = !cut.item && at.starts_with(&cut.segments);
        if holds || within {
            return None;
        }
        if cut.item && at.len() > parent.len() && at.starts_with(parent) {
            let removed: usize = last[0].parse().unwrap_or(usize::MAX);
            if let Ok(index) = at[parent.len()].parse::<usize>()
                && index >= removed
            {
                at[parent.len()] = (index + 1).to_string();
            }
        }
    }
    Some(at.iter().map(|s| format!("/{s}")).collect())
}

/// A JSON pointer's segments, still escaped (`~0`, `~1`).
fn segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(str::to_owned)
        .collect::<Vec<_>>()
}

/// Orders pointers segment by segment, array indices as numbers.
fn compare(a: &[String], b: &[String]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = match (x.parse::<usize>(), y.parse::<usize>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if order.is_ne() {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// Cuts the node at `target`; whether it was an array item, or `None` when
/// there is no such node.
fn cut(value: &mut Value, target: &[String]) -> Option<bool> {
    let (last, parent) = target.split_last()?;
    let mut node = value;
    for segment in parent {
        node = match node {
            Value::Object(map) => map.get_mut(&unescape(segment))?,
            Value::Array(items) => items.get_mut(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match node {
        Value::Object(map) => map.remove(&unescape(last)).map(|_| false),
        Value::Array(items) => {
            let index = last.parse::<usize>().ok().filter(|i| *i < items.len())?;
            items.remove(index);
            Some(true)
        }
        _ => None,
    }
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cuts(pointers: &[(&str, bool)]) -> Vec<Cut> {
        pointers
            .iter()
            .map(|(p, item)| Cut {
                segments: segments(p),
                item: *item,
            })
            .collect()
    }

    #[test]
    fn a_mistyped_setting_is_cut_and_the_rest_of_the_pack_kept() {
        let pack = json!({
            "pack": {"name": "p", "version": "1.0.0"},
            "policies": {"chain": ["audit-logger", "pii-detectr"]},
            "policy": {"audit-logger": {"retention_days": "thirty"}}
        });
        let findings = schema::check(FileKind::Pack, "p.yaml", &pack);
        assert!(!findings.is_empty());
        let salvaged = salvage(FileKind::Pack, "p.yaml", &pack, &findings).unwrap();
        assert_eq!(
            salvaged.value["policies"]["chain"],
            json!(["audit-logger", "pii-detectr"])
        );
        assert!(
            salvaged.value["policy"]["audit-logger"]
                .get("retention_days")
                .is_none()
        );
    }

    #[test]
    fn a_file_whose_root_is_refused_is_not_salvaged() {
        let findings = schema::check(FileKind::Pack, "p.yaml", &json!("text"));
        assert!(salvage(FileKind::Pack, "p.yaml", &json!("text"), &findings).is_none());
    }

    #[test]
    fn pointers_after_a_cut_item_move_back_and_those_holding_it_are_dropped() {
        let cut = cuts(&[("/gateways/0", true)]);
        assert_eq!(
            restore("/gateways/0/url", &cut).as_deref(),
            Some("/gateways/1/url")
        );
        assert_eq!(restore("/gateways", &cut), None);
        assert_eq!(restore("", &cut), None);
        let cut = cuts(&[("/policy/audit-logger/retention_days", false)]);
        assert_eq!(restore("/policy/audit-logger/retention_days", &cut), None);
        assert_eq!(
            restore("/policies/chain/1", &cut).as_deref(),
            Some("/policies/chain/1")
        );
    }

    #[test]
    fn cuts_are_undone_in_reverse() {
        // Item 2 cut first, then item 0 of what was left: the old item 3
        // is now item 1.
        let cut = cuts(&[("/gateways/2", true), ("/gateways/0", true)]);
        assert_eq!(
            restore("/gateways/1/url", &cut).as_deref(),
            Some("/gateways/3/url")
        );
        assert_eq!(
            restore("/gateways/0/url", &cut).as_deref(),
            Some("/gateways/1/url")
        );
    }
}
