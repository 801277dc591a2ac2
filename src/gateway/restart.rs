//! Restarting gateways that read their config only when they start (the
//! LiteLLM proxy has no reload): the operator's restart hooks, and how many
//! of one environment's gateways may be restarting at once.
//!
//! The repository names a hook; only the operator says what it runs
//! (`--restart-hook NAME=COMMAND`), so whoever can merge to the config
//! repository cannot run commands on the Sluice host. A hook defined as
//! `ENV/NAME=COMMAND` serves only environment ENV's gateways, so the author
//! of another environment cannot restart (or hand their config to) a
//! proxy of that one by naming its hook; an unqualified `NAME` serves every
//! environment, and the qualified one wins where both exist. A hook runs with
//! `sh -c COMMAND`, stdin closed, and `SLUICE_ENVIRONMENT`,
//! `SLUICE_GATEWAY`, `SLUICE_CONFIG` (the config file's path) set. It
//! should return once the gateway was (re)started: exit 0, or non-zero with
//! why on its output (the last lines become the gateway's error).

use std::{
    collections::{BTreeMap, HashMap},
    io::{Read, Seek, SeekFrom},
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How much of a hook's output is kept for its error: the end, where a
/// failing program says why.
const OUTPUT_TAIL_BYTES: u64 = 2048;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RestartError {
    #[error(
        "no restart hook named `{hook}` for environment {environment}: the operator defines it with --restart-hook {environment}/{hook}=COMMAND"
    )]
    NoHook { environment: String, hook: String },
    #[error("restart hook `{hook}` could not start: {reason}")]
    Spawn { hook: String, reason: String },
    #[error("restart hook `{hook}` failed ({status}){}", tail(.output))]
    Failed {
        hook: String,
        status: String,
        output: String,
    },
    #[error("restart hook `{hook}` did not finish within {after:?}{}", tail(.output))]
    TimedOut {
        hook: String,
        after: Duration,
        output: String,
    },
}

fn tail(output: &str) -> String {
    if output.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", output.trim())
    }
}

/// A parsed `--restart-hook [ENV/]NAME=COMMAND`, keyed `[ENV/]NAME`.
pub fn parse_hook(text: &str) -> Result<(String, String), String> {
    let (key, command) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not [ENV/]NAME=COMMAND"))?;
    let (environment, name) = key
        .split_once('/')
        .map_or((None, key), |(e, n)| (Some(e), n));
    if let Some(environment) = environment {
        let slug = !environment.is_empty()
            && environment
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !slug {
            return Err(format!(
                "`{environment}` in `{key}` is not an environment slug"
            ));
        }
    }
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid {
        return Err(format!(
            "hook name `{name}` must be letters, digits, `.`, `_` or `-` (at most 63)"
        ));
    }
    if command.trim().is_empty() {
        return Err(format!("hook `{key}` has no command"));
    }
    Ok((key.to_owned(), command.to_owned()))
}

/// The operator's restart hooks and the per-environment bound.
pub struct Restarts {
    hooks: BTreeMap<String, String>,
    per_environment: usize,
    lanes: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Default for Restarts {
    fn default() -> Self {
        Restarts::new(BTreeMap::new(), 1)
    }
}

impl std::fmt::Debug for Restarts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // NB: names only; a command line may carry a credential.
        f.debug_struct("Restarts")
            .field("hooks", &self.hooks.keys().collect::<Vec<_>>())
            .field("per_environment", &self.per_environment)
            .finish()
    }
}

/// What a hook is told about the gateway it restarts.
pub struct Target<'a> {
    pub environment: &'a str,
    pub gateway: &'a str,
    pub config: &'a Path,
}

impl Restarts {
    /// `hooks` by name; at most `per_environment` (at least 1) of one
    /// environment's gateways restart at once.
    pub fn new(hooks: BTreeMap<String, String>, per_environment: usize) -> Self {
        Restarts {
            hooks,
            per_environment: per_environment.max(1),
            lanes: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a turn to restart one of `environment`'s gateways; the
    /// turn lasts while the permit lives (through the readiness wait), so
    /// an environment never has more than the bound down at once.
    pub async fn turn(&self, environment: &str) -> OwnedSemaphorePermit {
        let lane = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
            lanes
                .entry(environment.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_environment)))
                .clone()
        };
        lane.acquire_owned()
            .await
            .expect("restart lanes are never closed")
    }

    /// Runs hook `name` for `target`, killed after `deadline`.
    pub async fn run(
        &self,
        name: &str,
        target: &Target<'_>,
        deadline: Duration,
    ) -> Result<(), RestartError> {
        let command = self
            .hooks
            .get(&format!("{}/{name}", target.environment))
            .or_else(|| self.hooks.get(name))
            .ok_or_else(|| RestartError::NoHook {
                environment: target.environment.to_owned(),
                hook: name.to_owned(),
            })?;
        let spawn = |reason: std::io::Error| RestartError::Spawn {
            hook: name.to_owned(),
            reason: reason.to_string(),
        };
        // NB: output goes to an unlinked file, not a pipe: a hook that
        // starts the gateway in the background hands it its output, and a
        // pipe would block it (or kill it with SIGPIPE) once we stop reading.
        let mut output = output_file().map_err(spawn)?;
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("SLUICE_ENVIRONMENT", target.environment)
            .env("SLUICE_GATEWAY", target.gateway)
            .env("SLUICE_CONFIG", target.config)
            .stdin(Stdio::null())
            .stdout(output.try_clone().map_err(spawn)?)
            .stderr(output.try_clone().map_err(spawn)?)
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn)?;
        let status = tokio::time::timeout(deadline, child.wait()).await;
        let text = read_tail(&mut output);
        match status {
            Err(_) => {
                let _ = child.kill().await;
                Err(RestartError::TimedOut {
                    hook: name.to_owned(),
                    after: deadline,
                    output: text,
                })
            }
            Ok(Err(e)) => Err(spawn(e)),
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(RestartError::Failed {
                hook: name.to_owned(),
                status: status.to_string(),
                output: text,
            }),
        }
    }
}

/// A file for a hook's output, already unlinked.
fn output_file() -> std::io::Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!(
        "sluice-hook-{}-{:016x}.log",
        std::process::id(),
        rand::random::<u64>()
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// The last [`OUTPUT_TAIL_BYTES`] a hook wrote, as text.
fn read_tail(file: &mut std::fs::File) -> String {
    let length = file.metadata().map_or(0, |m| m.len());
    let start = length.saturating_sub(OUTPUT_TAIL_BYTES);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_ok() {
        let _ = file.take(OUTPUT_TAIL_BYTES).read_to_end(&mut bytes);
    }
    let text = String::from_utf8_lossy(&bytes);
    if start > 0 {
        format!("…{text}")
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restarts(hooks: &[(&str, &str)], per_environment: usize) -> Restarts {
        Restarts::new(
            hooks
                .iter()
                .map(|(n, c)| ((*n).to_owned(), (*c).to_owned()))
                .collect(),
            per_environment,
        )
    }

    fn target() -> Target<'static> {
        Target {
            environment: "staging",
            gateway: "litellm-1",
            config: Path::new("/srv/litellm/config.yaml"),
        }
    }

    #[test]
    fn hooks_are_parsed_as_name_equals_command() {
        assert_eq!(
            parse_hook("eu-1=systemctl restart litellm-eu-1"),
            Ok(("eu-1".into(), "systemctl restart litellm-eu-1".into()))
        );
        assert!(parse_hook("no-command=").is_err());
        assert!(parse_hook("just-a-name").is_err());
        assert!(parse_hook("bad name=true").is_err());
        assert_eq!(
            parse_hook("production/prod-1=systemctl restart litellm-prod-1"),
            Ok((
                "production/prod-1".into(),
                "systemctl restart litellm-prod-1".into()
            ))
        );
        assert!(parse_hook("Prod Env/prod-1=true").is_err());
    }

    #[tokio::test]
    async fn an_environment_qualified_hook_serves_only_that_environment() {
        let hooks = restarts(&[("staging/proxy", "true"), ("shared", "true")], 1);
        let deadline = Duration::from_secs(20);
        assert_eq!(hooks.run("proxy", &target(), deadline).await, Ok(()));
        assert_eq!(hooks.run("shared", &target(), deadline).await, Ok(()));
        let production = Target {
            environment: "production",
            ..target()
        };
        assert_eq!(
            hooks.run("proxy", &production, deadline).await,
            Err(RestartError::NoHook {
                environment: "production".into(),
                hook: "proxy".into()
            })
        );
    }

    #[tokio::test]
    async fn a_hook_sees_its_target_and_a_failure_carries_its_output() {
        let hooks = restarts(
            &[
                (
                    "ok",
                    r#"test "$SLUICE_GATEWAY@$SLUICE_ENVIRONMENT:$SLUICE_CONFIG" = "litellm-1@staging:/srv/litellm/config.yaml""#,
                ),
                (
                    "fails",
                    "echo 'litellm: exit 3, Policy validation failed' >&2; exit 3",
                ),
                ("slow", "sleep 30"),
            ],
            1,
        );
        let deadline = Duration::from_secs(20);
        assert_eq!(hooks.run("ok", &target(), deadline).await, Ok(()));
        let failed = hooks.run("fails", &target(), deadline).await.unwrap_err();
        let text = failed.to_string();
        assert!(
            text.contains("exit status: 3") && text.contains("Policy validation failed"),
            "{text}"
        );
        assert_eq!(
            hooks.run("missing", &target(), deadline).await,
            Err(RestartError::NoHook {
                environment: "staging".into(),
                hook: "missing".into()
            })
        );
        let slow = hooks
            .run("slow", &target(), Duration::from_millis(200))
            .await;
        assert!(
            matches!(slow, Err(RestartError::TimedOut { .. })),
            "{slow:?}"
        );
    }

    #[tokio::test]
    async fn a_hook_that_leaves_a_process_behind_returns_when_it_exits() {
        // A hook starting the gateway in the background keeps its output
        // open; the run must not wait for that process.
        let hooks = restarts(&[("bg", "sleep 30 & echo started")], 1);
        let started = std::time::Instant::now();
        assert_eq!(
            hooks.run("bg", &target(), Duration::from_secs(20)).await,
            Ok(())
        );
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[tokio::test]
    async fn one_environment_restarts_at_most_the_bound_at_once() {
        let hooks = Arc::new(restarts(&[], 1));
        let first = hooks.turn("staging").await;
        // Another environment is not held up...
        let other = tokio::time::timeout(Duration::from_secs(5), hooks.turn("production")).await;
        assert!(other.is_ok());
        // ...the same one waits until the first turn ends.
        let waiting = {
            let hooks = hooks.clone();
            tokio::spawn(async move { hooks.turn("staging").await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        let _second = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the second turn comes once the first ends")
            .unwrap();
    }
}
