//! Rendering: the desired state of each gateway as a canonical JSON document
//! (keys sorted, no insignificant whitespace) and its sha256 digest, the
//! identity of a version. The document holds policy only (enforcement and
//! packs), not the environment's or gateway's name, so two environments that
//! run the same policy run the same version: promotion and drift compare
//! digests, not commits.

use super::{
    Environment, PackSource, Repository,
    document::{DocumentPack, FORMAT, PolicyDocument},
    model::Pack,
    parallel,
};
use crate::source::Revision;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::{
    fmt::{self, Write as _},
    sync::Arc,
};

/// `sha256:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Digest(String);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        let hash = Sha256::digest(bytes);
        let mut text = String::with_capacity(7 + 64);
        text.push_str("sha256:");
        for byte in hash {
            let _ = write!(text, "{byte:02x}");
        }
        Digest(text)
    }

    /// Reads `sha256:<64 lowercase hex>`.
    pub fn parse(text: &str) -> Option<Digest> {
        let hex = text.strip_prefix("sha256:")?;
        (hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Digest(text.to_owned()))
    }

    /// The digest of a JSON text's canonical form: formatting and key order
    /// in `text` do not matter. `None` when it is not JSON.
    pub fn of_json(text: &str) -> Option<Digest> {
        let value: Value = serde_json::from_str(text).ok()?;
        Some(Digest::of(canonical_json(&value).as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `sha256:` and the first 12 hex digits.
    pub fn short(&self) -> &str {
        short_digest(&self.0)
    }
}

/// A digest as every output shows it: `sha256:` and the first 12 hex
/// digits (text from elsewhere is cut on a character boundary).
pub fn short_digest(digest: &str) -> &str {
    crate::source::prefix(digest, 7 + 12)
}

/// Tests name versions: `"v1".into()` is the digest of `v1`, so two
/// records built from one name hold one digest.
#[cfg(test)]
impl From<&str> for Digest {
    fn from(name: &str) -> Digest {
        Digest::parse(name).unwrap_or_else(|| Digest::of(name.as_bytes()))
    }
}

#[cfg(test)]
impl From<String> for Digest {
    fn from(name: String) -> Digest {
        Digest::from(name.as_str())
    }
}

/// Tests compare a digest with a name as they build it: `"v1"`.
#[cfg(test)]
impl PartialEq<&str> for Digest {
    fn eq(&self, name: &&str) -> bool {
        self.0 == *name || self.0 == Digest::of(name.as_bytes()).0
    }
}

/// Read back only as what it is: a stored or received `sha256:<64 hex>`
/// that is anything else is an error, not a version nobody has.
impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{}` is not a digest (sha256:<64 hex>)",
                crate::source::prefix(&text, 80)
            ))
        })
    }
}

/// A digest in a schema (the CRDs' status ledger): the API server refuses
/// anything else.
impl schemars::JsonSchema for Digest {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Digest".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^sha256:[0-9a-f]{64}$",
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A digest and the revision it came from: `sha256:<12 hex>@<commit 8 hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version<'a> {
    pub digest: &'a Digest,
    pub revision: &'a Revision,
}

impl fmt::Display for Version<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.digest.short(), self.revision.short())
    }
}

/// The desired state of one gateway.
#[derive(Debug, Clone)]
pub struct RenderedGateway {
    pub environment: String,
    pub gateway: String,
    pub driver: &'static str,
    pub digest: Digest,
    /// Digest of each pack's canonical JSON, by pack name (what promotion compares).
    pub packs: Arc<[PackDigest]>,
    /// The document as the exact bytes the digest covers, shared by the
    /// environment's gateways (kept as text: a large repository renders
    /// thousands of gateways, and the tree form is several times larger).
    pub canonical: Arc<str>,
}

impl RenderedGateway {
    /// The document as a JSON value.
    pub fn config(&self) -> Value {
        serde_json::from_str(&self.canonical).expect("canonical JSON written by render parses")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackDigest {
    pub name: String,
    pub version: String,
    pub digest: Digest,
    /// What promotion compares across environments: the shared base pack
    /// for an inherited or overlaid pack (an environment's own patch is its
    /// own business), the pack itself for an environment's own pack.
    pub source: Digest,
}

/// The policy document of an environment, shared by all its gateways.
pub fn document(repo: &Repository, env: &Environment) -> Value {
    serde_json::to_value(policy_document(repo, env)).expect("a policy document serializes")
}

/// [`document`], typed.
pub fn policy_document(repo: &Repository, env: &Environment) -> PolicyDocument {
    PolicyDocument {
        packs: env
            .packs
            .iter()
            .map(|(name, effective)| (name.clone(), DocumentPack::from_pack(&effective.pack)))
            .collect(),
        ..policy_document_without_packs(repo, env)
    }
}

fn pack_document(pack: &Pack) -> Value {
    serde_json::to_value(DocumentPack::from_pack(pack)).expect("a pack serializes")
}

/// Renders every gateway of every environment (or of `only`), in order of
/// environment then gateway.
pub fn render_all(repo: &Repository, only: Option<&str>) -> Vec<RenderedGateway> {
    let envs: Vec<&Environment> = repo
        .environments
        .values()
        .filter(|e| only.is_none_or(|o| o == e.slug))
        .collect();
    parallel::map(&envs, |env| render_environment(repo, env))
        .into_iter()
        .flatten()
        .collect()
}

/// Each environment's digest (the document its gateways all run), by slug;
/// environments without gateways too.
pub fn environment_digests(repo: &Repository) -> std::collections::BTreeMap<String, Digest> {
    repo.environments
        .iter()
        .map(|(slug, env)| (slug.clone(), environment_version(repo, env).1))
        .collect()
}

/// The digest of each pack an environment runs, by pack name: what
/// promotion compares (an environment without gateways has them too).
pub fn pack_digests(repo: &Repository, env: &Environment) -> Vec<PackDigest> {
    canonical_packs(repo, env)
        .into_iter()
        .map(|(_, digest)| digest)
        .collect()
}

/// Each pack of an environment in canonical form, with its digests.
fn canonical_packs(repo: &Repository, env: &Environment) -> Vec<(Arc<str>, PackDigest)> {
    let canonical = |pack: &Pack| {
        pack.memo
            .rendered(|| {
                let text = canonical_json(&pack_document(pack));
                let digest = Digest::of(text.as_bytes());
                (text.into(), digest)
            })
            .clone()
    };
    env.packs
        .iter()
        .map(|(name, effective)| {
            let (text, digest) = canonical(&effective.pack);
            let source = match &effective.source {
                PackSource::Own { .. } => digest.clone(),
                PackSource::Base { .. } | PackSource::Overlay { .. } => {
                    match repo.base_packs.get(name) {
                        // NB: an inherited pack is the base pack itself:
                        // not written a second time.
                        Some(base) if Arc::ptr_eq(&base.pack, &effective.pack) => digest.clone(),
                        Some(base) => canonical(&base.pack).1,
                        None => digest.clone(),
                    }
                }
            };
            let digest = PackDigest {
                name: name.clone(),
                version: effective.pack.pack.version.clone(),
                digest,
                source,
            };
            (text, digest)
        })
        .collect()
}

/// An environment's version: its canonical document (what all its
/// gateways run), that document's digest, and its packs.
pub fn environment_version(
    repo: &Repository,
    env: &Environment,
) -> (Arc<str>, Digest, Arc<[PackDigest]>) {
    // NB: each pack is written in canonical form once, for its digest and
    // for the document, which holds those same forms under `packs`: the
    // document is written without its packs and they are put in place.
    let packs = canonical_packs(repo, env);
    let shell = policy_document_without_packs(repo, env);
    let mut canonical =
        canonical_json(&serde_json::to_value(shell).expect("a policy document serializes"));
    // `packs` sorts after every other key of the document, so the empty
    // map it was written with closes the text. NB: should a field ever sort
    // after it, the document is written whole, never spliced wrongly.
    let Some(open) = canonical
        .strip_suffix("{}}")
        .filter(|s| s.ends_with("\"packs\":"))
    else {
        let canonical: Arc<str> = canonical_json(&document(repo, env)).into();
        let digest = Digest::of(canonical.as_bytes());
        return (
            canonical,
            digest,
            packs.into_iter().map(|(_, d)| d).collect(),
        );
    };
    canonical.truncate(open.len());
    canonical.push('{');
    for (i, (text, pack)) in packs.iter().enumerate() {
        if i > 0 {
            canonical.push(',');
        }
        canonical.push_str(&Value::String(pack.name.clone()).to_string());
        canonical.push(':');
        canonical.push_str(text);
    }
    canonical.push_str("}}");
    let canonical: Arc<str> = canonical.into();
    let digest = Digest::of(canonical.as_bytes());
    let packs: Arc<[PackDigest]> = packs.into_iter().map(|(_, digest)| digest).collect();
    (canonical, digest, packs)
}

/// [`policy_document`] with no packs: the shell [`environment_version`]
/// writes the packs into.
fn policy_document_without_packs(repo: &Repository, env: &Environment) -> PolicyDocument {
    PolicyDocument {
        format: FORMAT.to_owned(),
        enforcement: env.enforcement(&repo.manifest),
        packs: Default::default(),
        litellm: env.litellm.as_deref().cloned(),
    }
}

fn render_environment(repo: &Repository, env: &Environment) -> Vec<RenderedGateway> {
    let (canonical, digest, packs) = environment_version(repo, env);
    env.gateways
        .iter()
        .map(|gateway| RenderedGateway {
            environment: env.slug.clone(),
            gateway: gateway.name().to_owned(),
            driver: gateway.driver(),
            digest: digest.clone(),
            packs: packs.clone(),
            canonical: canonical.clone(),
        })
        .collect()
}

/// Canonical JSON: object keys sorted by code point, no whitespace, strings
/// and numbers as serde_json writes them. Sorting is done here rather than
/// relying on serde_json's map type, which a feature flag could change.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_and_compacts() {
        let value = serde_json::json!({"b": [1, {"z": 1, "a": "x"}], "a": null});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":null,"b":[1,{"a":"x","z":1}]}"#
        );
    }

    /// The document written from its packs' canonical forms is the
    /// canonical form of the whole document, byte for byte (the example
    /// repositories hold inherited, overlaid and own packs, and LiteLLM
    /// settings).
    #[test]
    fn an_environment_version_is_the_canonical_form_of_its_document() {
        for example in ["examples/config-repo", "examples/litellm/repo"] {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(example);
            let tree = crate::source::WorkTree::open(&root).unwrap();
            let loaded = crate::config::load(&tree, &crate::config::Limits::default()).unwrap();
            let repo = loaded.repository.expect("the example is valid");
            for env in repo.environments.values() {
                let (canonical, digest, packs) = environment_version(&repo, env);
                assert_eq!(
                    &*canonical,
                    canonical_json(&document(&repo, env)),
                    "{example}"
                );
                assert_eq!(digest, Digest::of(canonical.as_bytes()));
                assert_eq!(packs.len(), env.packs.len());
                for pack in packs.iter() {
                    let effective = &env.packs[&pack.name].pack;
                    let own = Digest::of(canonical_json(&pack_document(effective)).as_bytes());
                    assert_eq!(pack.digest, own);
                    let base = repo
                        .base_packs
                        .get(&pack.name)
                        .map(|b| Digest::of(canonical_json(&pack_document(&b.pack)).as_bytes()));
                    match &env.packs[&pack.name].source {
                        PackSource::Own { .. } => assert_eq!(pack.source, own),
                        _ => assert_eq!(Some(&pack.source), base.as_ref()),
                    }
                }
            }
        }
    }

    #[test]
    fn digest_and_version_forms() {
        let digest = Digest::of(b"");
        assert_eq!(
            digest.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let revision = Revision::Commit("9f8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6".into());
        let version = Version {
            digest: &digest,
            revision: &revision,
        };
        assert_eq!(version.to_string(), "sha256:e3b0c44298fc@9f8e7d6c");
    }
}
