//! The Sluice gateway protocol over HTTP, shared by the `http` driver and the
//! reference gateway (`sluice gateway`). Learned from Kong DB-less (`POST
//! /config`, a configuration hash in `/status`), APISIX standalone (digest
//! headers), Envoy xDS (a refused config leaves the last good one running).
//!
//! | request | answers |
//! | ------- | ------- |
//! | `GET /sluice/v1/config` | `200` body + `ETag: "<digest>"`; `404` when it runs nothing |
//! | `HEAD /sluice/v1/config` | the same headers, no body: a cheap drift poll |
//! | `GET /sluice/v1/status` | [`Status`]: an empty digest after a restart means "push again" |
//! | `PUT /sluice/v1/config` + `If-Match`, `Sluice-Generation` | `200` swapped (`ETag` new digest); `304` same digest; `412` changed meanwhile; `409` older generation; `422` [`Refused`]; `429` + `Retry-After` while reloading |
//! | `POST /sluice/v1/config:validate` | `200`, or `422` [`Refused`] |
//!
//! Every request carries `Authorization: Bearer <token>` when the gateway has
//! a token; the token is scoped to one environment and never logged.

pub use crate::config::document::Problem;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const CONFIG_PATH: &str = "/sluice/v1/config";
pub const VALIDATE_PATH: &str = "/sluice/v1/config:validate";
pub const STATUS_PATH: &str = "/sluice/v1/status";
pub const GENERATION_HEADER: &str = "sluice-generation";

/// `GET /sluice/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Digest of the running config; empty when it runs nothing.
    pub digest: String,
    /// Generation of the running config; 0 when it runs nothing.
    pub generation: u64,
    /// Version of each running pack, by name.
    #[serde(default)]
    pub packs: BTreeMap<String, String>,
    /// RFC 3339 time of the last swap.
    pub applied_at: Option<String>,
    /// RFC 3339 time the gateway process started.
    pub started_at: String,
    /// Why the last refused or failed apply failed.
    pub last_error: Option<String>,
}

/// The body of a `422`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub problems: Vec<Problem>,
}

/// `"sha256:…"`: a digest as an entity tag.
pub fn etag(digest: &str) -> String {
    format!("\"{digest}\"")
}

/// The digest inside an entity tag (weak tags included).
pub fn digest_of_etag(tag: &str) -> &str {
    tag.trim().trim_start_matches("W/").trim_matches('"')
}
