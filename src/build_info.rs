//! What the binary knows of its own build (set by build.rs): the crate's
//! version, the git commit it was built from and when. Shared by `sluice
//! version` and the `sluice_build_info` metric, so the two never disagree.

/// The crate's version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The full commit id, or `unknown` for a build outside git.
pub const COMMIT: &str = env!("SLUICE_GIT_COMMIT");
/// The commit's first 12 characters (or `unknown`).
pub const COMMIT_SHORT: &str = env!("SLUICE_GIT_COMMIT_SHORT");
/// When it was built: RFC 3339, UTC (SOURCE_DATE_EPOCH when set).
pub const DATE: &str = env!("SLUICE_BUILD_DATE");
