//! The `litellm` driver: a LiteLLM proxy process. LiteLLM reads its
//! config.yaml only when it starts (no reload endpoint, no file watch;
//! docs/litellm.md), so an apply is: write the config (format from
//! [`super::litellm`]) and its audit callback atomically where the proxy
//! reads them, restart the proxy through the operator's hook
//! ([`super::restart`]), wait until it answers with the new version's
//! stamp, and read back what it runs from its admin API with the master
//! key. A config that does not come up (LiteLLM refuses it, crashes, or the
//! hook fails) is put back to the previous file and restarted again, and
//! the apply fails with why: the last good config keeps serving.
//!
//! | read | from |
//! | ---- | ---- |
//! | version ([`Gateway::live`]) | the stamp `/model/info` echoes, and the file: the stamped version only when the proxy was started from that file unchanged ([`litellm::running_version`]) |
//! | verified version, projection | also `/guardrails/list`, `/policies/list`, `/policies/attachments/list`, `/get/config/callbacks`, `/health/readiness/details`: what it enforces ([`litellm::project_served`]) must be what the file says |
//!
//! A proxy that does not answer while there is no config file yet is one
//! Sluice has not configured: it runs nothing, so the first apply writes
//! the file and starts it through the hook.

use super::{
    Applied, Desired, DriverContext, Gateway, GatewayError, Live, Problem, file, format,
    http::HttpGateway,
    litellm::{self, SERVED_PATHS, Served},
    restart::{Restarts, Target},
};
use crate::config::{Digest, model};
use async_trait::async_trait;
use serde_json::Value;
use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

/// How long a proxy may take to answer ready after a restart, by default:
/// LiteLLM 1.108.7 takes 7–10 s on two busy cores.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How often readiness is polled during the wait.
const READY_POLL: Duration = Duration::from_millis(100);

pub struct LitellmProxy {
    environment: String,
    name: String,
    path: PathBuf,
    hook: String,
    /// The admin API, with the master key as its bearer.
    api: HttpGateway,
    ready_timeout: Duration,
    restarts: Arc<Restarts>,
}

impl LitellmProxy {
    pub fn new(
        environment: &str,
        spec: &model::LitellmGateway,
        path: PathBuf,
        context: &DriverContext,
    ) -> Result<Self, GatewayError> {
        // NB: the API client is the `http` driver's: the same URL
        // allowances, timeout and token handling (kept sensitive, scrubbed).
        let api = HttpGateway::new(
            environment,
            &model::HttpGateway {
                name: spec.name.clone(),
                url: spec.url.clone(),
                token_env: spec.master_key_env.clone(),
                timeout: spec.timeout.clone(),
            },
            context,
        )?;
        let ready_timeout = match &spec.ready_timeout {
            None => READY_TIMEOUT,
            Some(text) => text.parse().filter(|d| !d.is_zero()).ok_or_else(|| {
                GatewayError::Config(format!(
                    "gateway `{}`: readyTimeout `{}`: {}",
                    spec.name,
                    text.0,
                    model::DURATION_HINT
                ))
            })?,
        };
        Ok(LitellmProxy {
            environment: environment.to_owned(),
            name: spec.name.clone(),
            path,
            hook: spec.restart_hook.clone(),
            api,
            ready_timeout,
            restarts: context.restarts.clone(),
        })
    }

    async fn file(&self) -> Result<Option<String>, GatewayError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || file::read(&path))
            .await
            .map_err(|e| GatewayError::Io(e.to_string()))?
    }

    /// The stamp the proxy serves; `Ok(None)` when it serves none.
    async fn stamp(&self) -> Result<Option<(String, String, String)>, GatewayError> {
        let models = self.api.get_json(SERVED_PATHS[0]).await?;
        Ok(litellm::served_stamp(&models))
    }

    /// Everything the admin API tells about what runs.
    async fn served(&self) -> Result<Served, GatewayError> {
        let answers =
            futures::future::try_join_all(SERVED_PATHS.map(|path| self.api.get_json(path))).await?;
        let answers: [Value; 6] = answers.try_into().expect("one answer per path");
        Ok(Served::from(answers))
    }

    /// The config file and everything the API serves; `None` for a proxy
    /// Sluice has not configured yet (no file, nothing answering).
    async fn observed(&self) -> Result<Option<(Option<String>, Served)>, GatewayError> {
        let file = self.file().await?;
        match self.served().await {
            Ok(served) => Ok(Some((file, served))),
            Err(GatewayError::Unreachable(_)) if file.is_none() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The version it runs, from the file and the served stamp.
    async fn version(&self) -> Result<Option<Digest>, GatewayError> {
        let file = self.file().await?;
        match self.stamp().await {
            Ok(stamp) => Ok(litellm::running_version(file.as_deref(), stamp.as_ref())),
            // NB: nothing on disk and nothing answering: a proxy Sluice has
            // not configured yet, which the first apply starts.
            Err(GatewayError::Unreachable(_)) if file.is_none() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `config` (or removes the file, for `None`) and the audit
    /// callback beside it.
    async fn write(&self, config: Option<&str>) -> Result<(), GatewayError> {
        let writer = Writer {
            path: self.path.clone(),
            config: config.map(str::to_owned),
        };
        tokio::task::spawn_blocking(move || writer.write())
            .await
            .map_err(|e| GatewayError::Io(e.to_string()))?
    }

    /// Restarts the proxy and waits until it serves `want` (the stamped
    /// version; `None`: until it answers at all). `Err` says why not.
    async fn restart(&self, want: Option<&Digest>) -> Result<(), String> {
        let started = Instant::now();
        let target = Target {
            environment: &self.environment,
            gateway: &self.name,
            config: &self.path,
        };
        self.restarts
            .run(&self.hook, &target, self.ready_timeout)
            .await
            .map_err(|e| self.api.scrubbed(&e.to_string()))?;
        loop {
            let last = match self.stamp().await {
                Ok(stamp) => {
                    let serves = stamp.as_ref().map(|s| s.0.as_str());
                    if want.is_none_or(|w| serves == Some(w.as_str())) {
                        return Ok(());
                    }
                    format!("it serves {}", serves.unwrap_or("no stamped version"))
                }
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= self.ready_timeout {
                return Err(format!(
                    "it did not answer with the new config within {:?} (last: {last})",
                    self.ready_timeout
                ));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Puts `previous` back after a config that did not come up, and
    /// restarts the proxy on it; says how that went.
    async fn restore(&self, previous: Option<&str>) -> String {
        if let Err(e) = self.write(previous).await {
            return format!("the previous config could not be put back: {e}");
        }
        let Some(previous) = previous else {
            return "there was no previous config to put back".into();
        };
        let version = litellm::config_version(previous);
        match self.restart(Some(&version)).await {
            Ok(()) => format!(
                "the previous config ({}) was put back and serves again",
                version.short()
            ),
            Err(why) => format!(
                "the previous config was put back, but LiteLLM did not come back up on it: {why}"
            ),
        }
    }
}

/// A write of a proxy's files, movable into a blocking task.
struct Writer {
    path: PathBuf,
    config: Option<String>,
}

impl Writer {
    fn write(&self) -> Result<(), GatewayError> {
        let callback = self.path.with_file_name(litellm::AUDIT_CALLBACK_FILE);
        if file::read(&callback)?.as_deref() != Some(litellm::AUDIT_CALLBACK) {
            file::write_atomically(&callback, litellm::AUDIT_CALLBACK.as_bytes())
                .map_err(|e| file::io(&callback, e))?;
        }
        match &self.config {
            Some(text) => file::write_atomically(&self.path, text.as_bytes())
                .map_err(|e| file::io(&self.path, e)),
            None => match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(file::io(&self.path, e)),
                _ => Ok(()),
            },
        }
    }
}

#[async_trait]
impl Gateway for LitellmProxy {
    async fn live(&self) -> Result<Live, GatewayError> {
        Ok(Live {
            digest: self.version().await?,
            generation: None,
        })
    }

    /// NB: the stamp says which version the proxy was started with; what
    /// it enforces (guardrails, policies, models, callbacks) must also be
    /// what that file says, or it runs something else.
    async fn verified(&self) -> Result<Live, GatewayError> {
        // NB: one read of the file and of the API serves both checks.
        let Some((file, served)) = self.observed().await? else {
            return Ok(Live {
                digest: None,
                generation: None,
            });
        };
        let stamp = litellm::served_stamp(&served.models);
        let Some(digest) = litellm::running_version(file.as_deref(), stamp.as_ref()) else {
            return Ok(Live {
                digest: None,
                generation: None,
            });
        };
        let running = litellm::project_served(&served);
        let written = file.as_deref().map(litellm::project).and_then(Result::ok);
        let digest = if written.is_some_and(|w| litellm::serves(&w, &running)) {
            digest
        } else {
            tracing::warn!(
                environment = %self.environment,
                gateway = %self.name,
                "the LiteLLM proxy enforces something other than its config file says"
            );
            Digest::of(format!("litellm: serves {running}").as_bytes())
        };
        Ok(Live {
            digest: Some(digest),
            generation: None,
        })
    }

    /// What the proxy enforces, from its API; when its config file says
    /// otherwise (edited since it started), the file's projection marked
    /// `restart_pending`: that is what it runs after its next restart.
    async fn projection(&self) -> Result<Option<Value>, GatewayError> {
        let Some((file, served)) = self.observed().await? else {
            return Ok(None);
        };
        let running = litellm::project_served(&served);
        let written = file.as_deref().map(|text| {
            litellm::project(text).unwrap_or_else(|e| Value::String(format!("<unreadable: {e}>")))
        });
        Ok(Some(match written {
            Some(Value::Object(mut on_disk)) if Value::Object(on_disk.clone()) != running => {
                on_disk.insert("restart_pending".into(), Value::Bool(true));
                Value::Object(on_disk)
            }
            _ => running,
        }))
    }

    /// Through the proxy's URL with the master key as the bearer, as its
    /// admin API is read. NB: LiteLLM has no runtime reset: the default
    /// [`GatewayError::Unsupported`] stands.
    async fn chat(&self, body: &Value) -> Result<super::ChatReply, GatewayError> {
        self.api.chat(body).await
    }

    fn projected(&self, desired: &Desired) -> Value {
        match format::litellm_document(desired) {
            Ok((document, base)) => litellm::projected(&document, &base),
            Err(_) => Value::Null,
        }
    }

    async fn apply(
        &self,
        desired: &Desired,
        expected: Option<&Digest>,
        _generation: u64,
    ) -> Result<Applied, GatewayError> {
        let config = format::render(model::FileFormat::Litellm, desired)?;
        // NB: the turn is held from the check to the end of the readiness
        // wait: at most the bound of this environment's proxies are down.
        let _turn = self.restarts.turn(&self.environment).await;
        let current = self.version().await?;
        if current.as_ref() == Some(&desired.digest) {
            return Ok(Applied::Unchanged);
        }
        if current.as_ref() != expected {
            return Err(GatewayError::Changed {
                expected: expected.map_or("nothing".into(), |d| d.to_string()),
            });
        }
        let previous = self.file().await?;
        self.write(Some(&config)).await?;
        if let Err(why) = self.restart(Some(&desired.digest)).await {
            let restored = self.restore(previous.as_deref()).await;
            tracing::warn!(
                environment = %self.environment,
                gateway = %self.name,
                error = %why,
                "LiteLLM did not come up with the new config; {restored}"
            );
            return Err(GatewayError::Refused {
                problems: vec![Problem {
                    path: self.path.display().to_string(),
                    message: format!("LiteLLM did not come up with this config: {why}; {restored}"),
                }],
            });
        }
        match self.verified().await?.digest {
            Some(digest) if digest == desired.digest => Ok(Applied::Swapped { digest }),
            other => Err(GatewayError::Mismatch {
                applied: desired.digest.to_string(),
                reported: other.map_or("nothing".into(), |d| d.to_string()),
            }),
        }
    }
}
