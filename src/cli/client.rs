//! Talking to a running `sluice run` or `sluice controller` (`--server URL`).

use crate::{ledger::Attempt, reconcile::status::StatusView, version::Build};
use anyhow::{Context, bail};
use serde::{Deserialize, de::DeserializeOwned};
use std::time::Duration;

/// A server and the token to show it.
pub struct Server {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

impl Server {
    /// `url` with the token in the environment variable `token_env`, if set.
    pub fn new(url: &str, token_env: &str) -> anyhow::Result<Server> {
        Ok(Server {
            base: url.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder().build()?,
            token: std::env::var(token_env).ok().filter(|t| !t.is_empty()),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// The response to `request`, refused unless its status is a success;
    /// a refusal says what the server said (its `error`, not its JSON).
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the Sluice server at {}", self.base))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let said = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
                .unwrap_or(body);
            bail!("the Sluice server answered {status}: {}", said.trim());
        }
        Ok(response)
    }

    async fn get<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        Ok(self.send(request).await?.json().await?)
    }

    /// `POST /api/v1/sync`: a reconcile asked for.
    pub async fn request_sync(&self, env: Option<&str>) -> anyhow::Result<SyncAnswer> {
        let mut request = self.request(reqwest::Method::POST, "/api/v1/sync");
        if let Some(env) = env {
            request = request.query(&[("env", env)]);
        }
        let raw: serde_json::Value = self.get(request).await?;
        let mut answer: SyncAnswer = serde_json::from_value(raw.clone())
            .context("the Sluice server's answer to a sync request")?;
        answer.raw = raw;
        Ok(answer)
    }

    /// `GET /api/v1/sync/{request}`: the pass of a sync request once it
    /// finished, waiting up to `wait` on the server for it; `None` while it
    /// is queued or running.
    pub async fn pass(
        &self,
        request: u64,
        env: Option<&str>,
        wait: Duration,
    ) -> anyhow::Result<Option<serde_json::Value>> {
        let mut asked = self
            .request(reqwest::Method::GET, &format!("/api/v1/sync/{request}"))
            .query(&[("wait", format!("{}ms", wait.as_millis()))]);
        if let Some(env) = env {
            asked = asked.query(&[("env", env)]);
        }
        let response = self.send(asked).await?;
        if response.status() == reqwest::StatusCode::ACCEPTED {
            return Ok(None);
        }
        Ok(Some(response.json().await?))
    }

    pub async fn status(&self, env: Option<&str>) -> anyhow::Result<StatusView> {
        let mut request = self.request(reqwest::Method::GET, "/api/v1/status");
        if let Some(env) = env {
            request = request.query(&[("env", env)]);
        }
        self.get(request).await
    }
}

/// What the server said to a sync request.
#[derive(Debug, Deserialize)]
pub struct SyncAnswer {
    /// Its number, to ask for its pass with; a server that does not keep
    /// its passes (`sluice controller`) gives none.
    pub request: Option<u64>,
    /// The environment it reconciles (a scoped token's own), `None`: all.
    pub environment: Option<String>,
    /// The answer as it came, for `--no-wait -o json`.
    #[serde(skip)]
    pub raw: serde_json::Value,
}

fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

pub fn status(server: &str, token_env: &str, env: Option<&str>) -> anyhow::Result<StatusView> {
    let server = Server::new(server, token_env)?;
    block_on(server.status(env))
}

/// `GET /api/v1/version`: the server's build.
pub fn version(server: &str, token_env: &str) -> anyhow::Result<Build> {
    let server = Server::new(server, token_env)?;
    block_on(server.get(server.request(reqwest::Method::GET, "/api/v1/version")))
}

pub fn history(
    server: &str,
    token_env: &str,
    env: &str,
    gateway: Option<&str>,
    limit: usize,
) -> anyhow::Result<Vec<Attempt>> {
    let server = Server::new(server, token_env)?;
    let mut request = server
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/environments/{env}/history"),
        )
        .query(&[("limit", limit.to_string())]);
    if let Some(gateway) = gateway {
        request = request.query(&[("gateway", gateway)]);
    }
    block_on(server.get(request))
}

pub fn pin(
    server: &str,
    token_env: &str,
    env: &str,
    to: Option<&str>,
    reason: Option<&str>,
) -> anyhow::Result<super::pin::Pinned> {
    let server = Server::new(server, token_env)?;
    let request = server
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/environments/{env}/pin"),
        )
        .json(&serde_json::json!({ "to": to, "reason": reason }));
    block_on(server.get(request))
}

pub fn unpin(server: &str, token_env: &str, env: &str) -> anyhow::Result<super::pin::Unpinned> {
    let server = Server::new(server, token_env)?;
    let request = server.request(
        reqwest::Method::DELETE,
        &format!("/api/v1/environments/{env}/pin"),
    );
    block_on(server.get(request))
}
