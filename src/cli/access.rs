//! Who may use the HTTP API and the git webhook of `sluice run` and
//! `sluice controller`: the same flags for both, read the same way.

use crate::server::Tokens;
use anyhow::Context as _;
use std::{net::SocketAddr, path::PathBuf};

#[derive(Debug, clap::Args)]
pub struct AccessArgs {
    /// Environment variable holding the git webhook's secret; the hook is off without it.
    #[arg(long, default_value = "SLUICE_WEBHOOK_SECRET")]
    pub webhook_secret_env: String,
    /// Environment variable holding API tokens, `SCOPE:TOKEN,…` (SCOPE: admin or an environment).
    #[arg(long, default_value = "SLUICE_API_TOKENS")]
    pub tokens_env: String,
    /// File of API tokens, one `SCOPE TOKEN` per line.
    #[arg(long)]
    pub tokens_file: Option<PathBuf>,
    /// Serve the API without tokens on a non-loopback address (anyone who
    /// reaches it may read every status and start reconciles). Without
    /// this, such a server refuses to start.
    #[arg(long)]
    pub allow_open_api: bool,
}

impl AccessArgs {
    /// The names of the variables these flags read, which no repository
    /// may name (see `Allowances::reserve`).
    pub fn own_variables(&self) -> [&str; 2] {
        [self.tokens_env.as_str(), self.webhook_secret_env.as_str()]
    }

    /// The API tokens, checked against the addresses the server listens
    /// on: an open API beyond loopback needs --allow-open-api.
    pub fn tokens(&self, listen: impl IntoIterator<Item = SocketAddr>) -> anyhow::Result<Tokens> {
        let mut text = std::env::var(&self.tokens_env).unwrap_or_default();
        if let Some(file) = &self.tokens_file {
            let content = std::fs::read_to_string(file)
                .with_context(|| format!("reading tokens from {}", file.display()))?;
            text.push('\n');
            text.push_str(&content);
        }
        let tokens = Tokens::parse(&text)?;
        tokens.check_exposure(listen, self.allow_open_api)?;
        if tokens.is_empty() {
            tracing::warn!(
                "no API tokens: the API is open to anyone who reaches it (set {} or --tokens-file)",
                self.tokens_env
            );
        }
        Ok(tokens)
    }

    /// The git webhook's shared secret, when one is set; without one the
    /// hook is off, which is said at start, since a push then waits for
    /// the next poll.
    pub fn webhook_secret(&self) -> Option<String> {
        let secret = std::env::var(&self.webhook_secret_env)
            .ok()
            .filter(|s| !s.is_empty());
        if secret.is_none() {
            tracing::warn!(
                "no webhook secret: the git webhook is off (set {}); changes are seen at the next poll",
                self.webhook_secret_env
            );
        }
        secret
    }
}
