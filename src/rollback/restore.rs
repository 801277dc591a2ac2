//! What a rollback writes besides the environment's old directory: shared
//! files that changed since are materialised into the environment, so it
//! renders its old version while every other environment keeps the new
//! shared content. Pure: two loaded repositories in, file contents out.
//!
//! ```text
//!  target revision                         base branch head
//!  environments/<env>/  ───── copied ────► environments/<env>/
//!  base/packs/p.yaml (as <env> ran it) ──► environments/<env>/packs/p.yaml
//!        (only where base/packs/p.yaml differs at head; merged with
//!         <env>'s overlay; `null` for keys the head's base adds)
//!  sluice.yaml defaults.enforcement ─────► environment.yaml `enforcement:`
//!        (only where the default changed and <env> set none)
//! ```

use super::RollbackError;
use crate::config::{
    EffectivePack, PackSource, Repository,
    model::{Enforcement, EnvironmentSpec},
    yaml,
};
use serde_json::{Map, Value};

/// A file the rollback writes into the environment's directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Materialised {
    pub pack: String,
    /// The file written, relative to the config repository.
    pub file: String,
    /// The shared file whose old content it carries.
    pub base: String,
    #[serde(skip)]
    pub content: String,
}

/// Everything beyond the copied directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub materialised: Vec<Materialised>,
    /// The enforcement the environment ran by default and must now name.
    pub pinned: Option<Enforcement>,
}

/// Decides what to materialise for `environment`, which ran `target` whole,
/// on top of `head`. `revision` is the target's commit (for the notes in
/// the files).
pub fn plan(
    environment: &str,
    target: &Repository,
    head: &Repository,
    revision: &str,
) -> Result<Plan, RollbackError> {
    let env =
        target
            .environments
            .get(environment)
            .ok_or_else(|| RollbackError::UnknownEnvironment {
                environment: environment.to_owned(),
                revision: revision.to_owned(),
            })?;
    // NB: an environment cannot opt out of a base pack; one added since
    // would reach it whatever the rollback writes.
    let added: Vec<String> = head
        .base_packs
        .keys()
        .filter(|name| !env.packs.contains_key(*name))
        .cloned()
        .collect();
    if !added.is_empty() {
        return Err(RollbackError::BasePackAdded {
            environment: environment.to_owned(),
            packs: added,
        });
    }
    let mut materialised = Vec::new();
    for (name, effective) in &env.packs {
        let head_base = head.base_packs.get(name);
        let changed = match &effective.source {
            PackSource::Base { .. } | PackSource::Overlay { .. } => {
                let old = target.base_packs.get(name).map(|b| &b.pack);
                head_base.map(|b| &b.pack) != old
            }
            // An own pack becomes an overlay once a base pack takes its name.
            PackSource::Own { .. } => head_base.is_some(),
        };
        if !changed {
            continue;
        }
        let head_value = head_base.map(|b| to_value(&b.pack));
        let base_file = match (&effective.source, head_base) {
            (PackSource::Base { file } | PackSource::Overlay { base: file, .. }, _) => file.clone(),
            (PackSource::Own { .. }, Some(head_base)) => head_base.file.clone(),
            (PackSource::Own { file }, None) => file.clone(),
        };
        let file = match &effective.source {
            PackSource::Base { .. } => format!("environments/{environment}/packs/{name}.yaml"),
            PackSource::Overlay { overlay, .. } => overlay.clone(),
            PackSource::Own { file } => file.clone(),
        };
        let content = pack_file(
            environment,
            name,
            effective,
            head_value.as_ref(),
            revision,
            &base_file,
        )?;
        materialised.push(Materialised {
            pack: name.clone(),
            file,
            base: base_file,
            content,
        });
    }
    let old = env.enforcement(&target.manifest);
    let pinned = (env.spec.enforcement.is_none()
        && head
            .manifest
            .defaults
            .enforcement
            .unwrap_or(Enforcement::Enforce)
            != old)
        .then_some(old);
    Ok(Plan {
        materialised,
        pinned,
    })
}

fn to_value(pack: &crate::config::model::Pack) -> Value {
    serde_json::to_value(pack).expect("a pack serializes")
}

/// The environment's file for a pack: the whole pack as it ran, plus a
/// `null` for every key the head's base pack has that it lacked (the file
/// is a merge patch over that base pack when one exists).
fn pack_file(
    environment: &str,
    name: &str,
    effective: &EffectivePack,
    head_base: Option<&Value>,
    revision: &str,
    base_file: &str,
) -> Result<String, RollbackError> {
    let value = overlay_for(&to_value(&effective.pack), head_base);
    let body = serde_saphyr::to_string(&value).map_err(|e| RollbackError::Serialize {
        what: format!("pack `{name}`"),
        message: e.to_string(),
    })?;
    let rev8 = crate::source::prefix(revision, 8);
    let mut note = format!(
        "# Written by `sluice rollback {environment}`: pack `{name}` whole, as {environment}\n\
         # ran it at revision {rev8}, so later changes to {base_file}\n\
         # do not reach {environment}.\n"
    );
    if head_base.is_some() {
        note.push_str(&format!(
            "# Read as a merge patch over {base_file}, which it replaces\n\
             # whole: `null` removes what that file added since.\n"
        ));
    }
    Ok(note + &body)
}

/// A merge patch that turns `base` into exactly `wanted`: `wanted` itself,
/// with `null` for each key `base` has and `wanted` lacks, at every depth
/// where both are objects. Without a base it is `wanted`.
pub fn overlay_for(wanted: &Value, base: Option<&Value>) -> Value {
    match (wanted, base) {
        (Value::Object(wanted), Some(Value::Object(base))) => {
            let mut patch = Map::new();
            for (key, value) in wanted {
                patch.insert(key.clone(), overlay_for(value, base.get(key)));
            }
            for key in base.keys().filter(|k| !wanted.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        (wanted, _) => wanted.clone(),
    }
}

/// `environment.yaml` with `enforcement` named: appended as a line when the
/// file is a block mapping (keeping its comments), else written anew.
pub fn pin_enforcement(
    path: &str,
    text: &str,
    spec: &EnvironmentSpec,
    enforcement: Enforcement,
) -> Result<String, RollbackError> {
    let word = serde_json::to_value(enforcement).expect("an enforcement serializes");
    let word = word.as_str().unwrap_or("enforce");
    let mut appended = text.to_owned();
    if !appended.ends_with('\n') && !appended.is_empty() {
        appended.push('\n');
    }
    appended.push_str(&format!(
        "# Pinned by `sluice rollback`: the repository default this environment ran by has changed since.\nenforcement: {word}\n"
    ));
    let mut expected = serde_json::to_value(spec).expect("a spec serializes");
    if let Value::Object(map) = &mut expected {
        map.insert("enforcement".into(), Value::String(word.to_owned()));
    }
    let reads_back = yaml::parse(path, &appended)
        .ok()
        .and_then(|v| read_spec(&v))
        .is_some_and(|spec| serde_json::to_value(spec).ok().as_ref() == Some(&expected));
    if reads_back {
        return Ok(appended);
    }
    if let Value::Object(map) = &mut expected {
        map.retain(|_, v| !v.is_null());
    }
    serde_saphyr::to_string(&expected).map_err(|e| RollbackError::Serialize {
        what: path.to_owned(),
        message: e.to_string(),
    })
}

fn read_spec(value: &Value) -> Option<EnvironmentSpec> {
    serde::Deserialize::deserialize(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::merge::merge_patch;
    use serde_json::json;

    #[test]
    fn the_overlay_turns_the_new_base_into_the_old_pack() {
        let old = json!({
            "pack": {"name": "baseline", "version": "1.4.0", "enabled": true},
            "policies": {"chain": ["audit-logger", "pii-detector"]},
            "policy": {"audit-logger": {"retention_days": 365}, "pii-detector": {"action": "block"}}
        });
        let new_base = json!({
            "pack": {"name": "baseline", "version": "1.5.0", "enabled": true, "description": "new"},
            "policies": {"chain": ["audit-logger", "pii-detector", "rate-limit"]},
            "policy": {
                "audit-logger": {"retention_days": 30, "immutable": true},
                "pii-detector": {"action": "redact"},
                "rate-limit": {"requests_per_minute": 10}
            }
        });
        let patch = overlay_for(&old, Some(&new_base));
        assert_eq!(patch["pack"]["description"], Value::Null);
        assert_eq!(patch["policy"]["rate-limit"], Value::Null);
        assert_eq!(patch["policy"]["audit-logger"]["immutable"], Value::Null);
        let mut merged = new_base.clone();
        merge_patch(&mut merged, &patch);
        assert_eq!(merged, old);
        assert_eq!(overlay_for(&old, None), old);
    }

    fn spec(text: &str) -> EnvironmentSpec {
        read_spec(&yaml::parse("e.yaml", text).unwrap()).unwrap()
    }

    #[test]
    fn enforcement_is_pinned_by_a_line_when_the_file_allows() {
        let text = "# Staging\nslug: staging\nname: Staging\n";
        let pinned = pin_enforcement("e.yaml", text, &spec(text), Enforcement::Alert).unwrap();
        assert!(pinned.starts_with(text), "{pinned}");
        assert_eq!(spec(&pinned).enforcement, Some(Enforcement::Alert));
    }

    #[test]
    fn a_flow_mapping_is_written_anew() {
        let text = "{slug: staging, name: Staging}";
        let pinned = pin_enforcement("e.yaml", text, &spec(text), Enforcement::Monitor).unwrap();
        let read = spec(&pinned);
        assert_eq!(read.enforcement, Some(Enforcement::Monitor));
        assert_eq!(read.slug, "staging");
    }
}
