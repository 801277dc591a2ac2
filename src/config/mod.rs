//! The config repository: its files as types, loading from a snapshot,
//! validation in two passes, rendering and digests.
//!
//! ```text
//! Snapshot ─► collect files ─► parse YAML ─► pass 1: JSON Schema ─┐
//!   (git or work tree)   (size, symlinks,   (bounded,          (per file,
//!                         UTF-8)             located)           in parallel)
//!                                                               ▼
//!           render ◄─ Repository ◄─ pass 2: semantic rules ◄─ merge overlays
//!      (canonical JSON,            (slugs, chains, promotion,
//!       sha256 digest)              uniqueness, cycles)
//! ```
//!
//! Everything after the snapshot is a pure function over data.

pub mod allow;
pub mod catalog;
pub mod diff;
pub mod document;
pub mod finding;
mod load;
pub mod merge;
pub mod model;
mod parallel;
pub mod render;
mod reuse;
mod salvage;
pub mod schema;
mod validate;
pub mod yaml;

pub use allow::Allowances;
pub use finding::{Finding, Position, Severity};
pub use load::{Limits, Loaded, load, load_reusing, load_with};
pub use render::{Digest, RenderedGateway, Version, render_all};
pub use reuse::Reuse;

use crate::source::Revision;
use model::{Enforcement, EnvironmentSpec, Gateway, Manifest, Pack};
use std::{collections::BTreeMap, sync::Arc};

/// A repository at one revision, as far as it loaded. When its [`Loaded`]
/// has no error findings, every part is present and valid.
#[derive(Debug, Clone)]
pub struct Repository {
    pub revision: Revision,
    pub manifest: Manifest,
    /// Shared packs by name.
    pub base_packs: BTreeMap<String, PackFile>,
    /// Environments by slug (their directory name).
    pub environments: BTreeMap<String, Environment>,
    /// Eval suites by name (`evals/<name>.eval.yaml`).
    pub suites: BTreeMap<String, crate::eval::SuiteFile>,
    /// Eval fixtures by name (`fixtures/<name>.fixture.yaml`).
    pub fixtures: BTreeMap<String, crate::eval::FixtureFile>,
}

/// A pack and the file it was read from.
#[derive(Debug, Clone)]
pub struct PackFile {
    pub file: String,
    pub pack: Arc<Pack>,
}

#[derive(Debug, Clone)]
pub struct Environment {
    pub slug: String,
    /// `environments/<slug>/environment.yaml`.
    pub spec_file: String,
    pub spec: EnvironmentSpec,
    pub gateways_file: String,
    pub gateways: Vec<Gateway>,
    /// Every pack in effect here: inherited base packs, overlays and the
    /// environment's own, by name.
    pub packs: BTreeMap<String, EffectivePack>,
    /// `environments/<slug>/litellm.yaml`, where the environment has one.
    pub litellm: Option<Arc<model::LitellmSettings>>,
}

/// A pack as one environment runs it.
#[derive(Debug, Clone)]
pub struct EffectivePack {
    /// Shared: a base pack is the same value in every environment inheriting it.
    pub pack: Arc<Pack>,
    pub source: PackSource,
}

/// Where an environment's pack comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackSource {
    /// Inherited unchanged from `base/packs/`.
    Base { file: String },
    /// A base pack with the environment's merge patch applied.
    Overlay { base: String, overlay: String },
    /// A whole pack of the environment's own.
    Own { file: String },
}

impl Environment {
    /// `environments/<slug>/litellm.yaml`, beside environment.yaml.
    pub fn litellm_file(&self) -> String {
        let dir = self.spec_file.rsplit_once('/').map_or("", |(dir, _)| dir);
        format!("{dir}/{}", load::LITELLM_FILE)
    }

    /// How long the ledger keeps this environment's records.
    pub fn retention(&self) -> std::time::Duration {
        self.spec
            .retention
            .as_ref()
            .and_then(|r| r.parse())
            .unwrap_or_else(|| crate::ledger::default_retention(self.spec.is_production))
    }

    /// What to do on drift: the environment's, else the repository default,
    /// else `detect`.
    pub fn drift_policy(&self, manifest: &Manifest) -> model::DriftPolicy {
        self.drift_setting(manifest, |d| d.policy)
            .unwrap_or(model::DriftPolicy::Detect)
    }

    /// How often live state is read back (default one minute; never more
    /// often than every second, whatever a default in sluice.yaml says).
    pub fn drift_interval(&self, manifest: &Manifest) -> std::time::Duration {
        self.drift_setting(manifest, |d| d.interval.as_ref().and_then(|i| i.parse()))
            .unwrap_or(std::time::Duration::from_secs(60))
            .max(std::time::Duration::from_secs(1))
    }

    fn drift_setting<T>(
        &self,
        manifest: &Manifest,
        pick: impl Fn(&model::DriftSpec) -> Option<T>,
    ) -> Option<T> {
        self.spec
            .drift
            .as_ref()
            .and_then(&pick)
            .or_else(|| manifest.defaults.drift.as_ref().and_then(&pick))
    }

    /// The enforcement in force: the environment's own, else the
    /// repository default, else `enforce`.
    pub fn enforcement(&self, manifest: &Manifest) -> Enforcement {
        self.spec
            .enforcement
            .or(manifest.defaults.enforcement)
            .unwrap_or(Enforcement::Enforce)
    }
}

/// What to tell someone who named an environment that is none of `known`
/// (a repository's or a ledger's): the closest name, then every one, so
/// a typo is fixed without a second command.
pub fn environment_hint<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.into_iter().collect();
    let close = schema::did_you_mean(name, known.iter().copied())
        .map(|m| format!("did you mean `{m}`? "))
        .unwrap_or_default();
    match known.as_slice() {
        [] => format!("{close}there are no environments yet"),
        known => format!("{close}the environments are: {}", known.join(", ")),
    }
}

/// A copy of the bundled example in a new temporary directory, for tests
/// that change it.
#[cfg(test)]
pub(crate) fn copy_example() -> tempfile::TempDir {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo");
    let dir = tempfile::tempdir().unwrap();
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(example.join("."))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(copied.success(), "copying {}", example.display());
    dir
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn retention_comes_from_the_environment_or_its_kind() {
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo");
        let tree = crate::source::WorkTree::open(&example).unwrap();
        let loaded = super::load(&tree, &super::Limits::default()).unwrap();
        let repo = loaded.repository.unwrap();
        let days = |env: &str| repo.environments[env].retention() / 86_400;
        assert_eq!(days("production"), Duration::from_secs(400));
        assert_eq!(days("staging"), Duration::from_secs(90));
    }

    #[test]
    fn an_unknown_environment_is_answered_with_the_closest_and_all() {
        let known = ["development", "production", "staging"];
        assert_eq!(
            super::environment_hint("prodution", known),
            "did you mean `production`? the environments are: development, production, staging"
        );
        assert_eq!(
            super::environment_hint("qa", known),
            "the environments are: development, production, staging"
        );
        assert_eq!(
            super::environment_hint("qa", []),
            "there are no environments yet"
        );
    }
}
