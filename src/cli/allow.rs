//! `--allow-env` and `--allow-url`: the operator's allowances, shared by
//! every command that validates for, or acts on, gateways and alert sinks.

use crate::config::{
    Allowances,
    allow::{AllowError, UrlRule, VariableRule},
};

/// What each environment of the repository may use (deny-by-default).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AllowArgs {
    /// ENV=GLOB: environment ENV's gateways and alert sinks may name the
    /// variables GLOB matches (`*` is any run of characters; ENV is a slug
    /// or a glob such as `*`), e.g. `production=PROD_GW_*`. Repeatable, or
    /// comma-separated in SLUICE_ALLOW_ENV. Without one, no variable may be
    /// named; Sluice's own (SLUICE_*, and the variables holding its API
    /// tokens, webhook secret and git token) never may.
    #[arg(
        long = "allow-env",
        value_name = "ENV=GLOB",
        env = "SLUICE_ALLOW_ENV",
        value_delimiter = ',',
        value_parser = rule::<VariableRule>
    )]
    pub variables: Vec<Option<VariableRule>>,
    /// ENV=URL: environment ENV's gateways and alert sinks may reach URLs
    /// matching scheme://host[:port][/path] (`*` within one host label;
    /// port `*` for any; a path admits what lies below it; `*` alone is any
    /// URL), e.g. `production=https://gw-*.internal:8443`. Repeatable, or
    /// comma-separated in SLUICE_ALLOW_URL. Without one, no URL may be reached.
    #[arg(
        long = "allow-url",
        value_name = "ENV=URL",
        env = "SLUICE_ALLOW_URL",
        value_delimiter = ',',
        value_parser = rule::<UrlRule>
    )]
    pub urls: Vec<Option<UrlRule>>,
}

impl AllowArgs {
    /// The allowances, with `own` (the variables Sluice itself reads in
    /// this command) never allowed.
    pub fn allowances<'a>(&self, own: impl IntoIterator<Item = &'a str>) -> Allowances {
        own.into_iter().fold(
            Allowances::new(
                self.variables.iter().flatten().cloned().collect(),
                self.urls.iter().flatten().cloned().collect(),
            ),
            Allowances::reserve,
        )
    }
}

/// One rule; a blank item allows nothing (so `SLUICE_ALLOW_ENV=""`, as a
/// chart with an empty list sets it, is "none" rather than a usage error).
fn rule<R>(text: &str) -> Result<Option<R>, AllowError>
where
    R: std::str::FromStr<Err = AllowError>,
{
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some)
}
