//! What this build of Sluice is: its version, the git commit it was built
//! from and when (see build.rs). `sluice version` prints it and the server
//! answers it at `GET /api/v1/version`, so a client can say which version
//! it talks to.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// A build of Sluice, this one ([`BUILD`]) or a server's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Build {
    pub version: Cow<'static, str>,
    /// The full commit id, or `unknown` for a build outside git.
    pub commit: Cow<'static, str>,
    /// RFC 3339.
    pub build_date: Cow<'static, str>,
}

/// The crate's version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The full commit id, or `unknown` for a build outside git.
pub const COMMIT: &str = env!("SLUICE_GIT_COMMIT");
/// When it was built: RFC 3339, UTC (SOURCE_DATE_EPOCH when set).
pub const DATE: &str = env!("SLUICE_BUILD_DATE");

/// This binary (also the `sluice_build_info` metric's labels).
pub const BUILD: Build = Build {
    version: Cow::Borrowed(VERSION),
    commit: Cow::Borrowed(COMMIT),
    build_date: Cow::Borrowed(DATE),
};

/// What `--version` prints after the name.
pub const LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SLUICE_GIT_COMMIT_SHORT"),
    ", built ",
    env!("SLUICE_BUILD_DATE"),
    ")"
);
