//! Talking to a running `sluice run` (`--server URL`).

use super::Outcome;
use crate::{ledger::Attempt, reconcile::status::StatusView};
use anyhow::{Context, bail};
use serde::de::DeserializeOwned;

fn client(token_env: &str) -> anyhow::Result<(reqwest::Client, Option<String>)> {
    let token = std::env::var(token_env).ok().filter(|t| !t.is_empty());
    Ok((reqwest::Client::builder().build()?, token))
}

async fn send<T: DeserializeOwned>(
    request: reqwest::RequestBuilder,
    token: Option<String>,
) -> anyhow::Result<T> {
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request
        .send()
        .await
        .context("cannot reach the Sluice server")?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("the Sluice server answered {status}: {}", body.trim());
    }
    Ok(response.json().await?)
}

fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

pub async fn trigger_sync(
    server: &str,
    token_env: &str,
    env: Option<&str>,
) -> anyhow::Result<Outcome> {
    let (client, token) = client(token_env)?;
    let mut request = client.post(format!("{}/api/v1/sync", server.trim_end_matches('/')));
    if let Some(env) = env {
        request = request.query(&[("env", env)]);
    }
    let _: serde_json::Value = send(request, token).await?;
    println!("reconcile requested");
    Ok(Outcome::Clean)
}

pub fn status(server: &str, token_env: &str, env: Option<&str>) -> anyhow::Result<StatusView> {
    block_on(async {
        let (client, token) = client(token_env)?;
        let mut request = client.get(format!("{}/api/v1/status", server.trim_end_matches('/')));
        if let Some(env) = env {
            request = request.query(&[("env", env)]);
        }
        send(request, token).await
    })
}

pub fn history(
    server: &str,
    token_env: &str,
    env: &str,
    gateway: Option<&str>,
    limit: usize,
) -> anyhow::Result<Vec<Attempt>> {
    block_on(async {
        let (client, token) = client(token_env)?;
        let mut request = client
            .get(format!(
                "{}/api/v1/environments/{env}/history",
                server.trim_end_matches('/')
            ))
            .query(&[("limit", limit.to_string())]);
        if let Some(gateway) = gateway {
            request = request.query(&[("gateway", gateway)]);
        }
        send(request, token).await
    })
}

pub fn pin(
    server: &str,
    token_env: &str,
    env: &str,
    to: Option<&str>,
    reason: Option<&str>,
) -> anyhow::Result<super::pin::Pinned> {
    block_on(async {
        let (client, token) = client(token_env)?;
        let request = client
            .put(format!(
                "{}/api/v1/environments/{env}/pin",
                server.trim_end_matches('/')
            ))
            .json(&serde_json::json!({ "to": to, "reason": reason }));
        send(request, token).await
    })
}

pub fn unpin(server: &str, token_env: &str, env: &str) -> anyhow::Result<super::pin::Unpinned> {
    block_on(async {
        let (client, token) = client(token_env)?;
        let request = client.delete(format!(
            "{}/api/v1/environments/{env}/pin",
            server.trim_end_matches('/')
        ));
        send(request, token).await
    })
}
