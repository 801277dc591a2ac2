//! The `file` driver: a file holding Sluice's policy document, which a
//! gateway hot-reloads, or (`format: litellm`) a LiteLLM proxy config.yaml
//! with its audit callback beside it, for a LiteLLM its user restarts.
//! Written atomically — temp file in the same
//! directory, fsync, rename, fsync of the directory — so a reader never sees
//! half a config, and read back to verify.

use super::{
    Applied, ChatReply, Desired, Gateway, GatewayError, Live,
    format::{self, version_of},
    http::HttpGateway,
    litellm,
};
use crate::config::{Digest, model::FileFormat};
use async_trait::async_trait;
use std::{
    fs,
    io::{ErrorKind, Write},
    path::{Path, PathBuf},
};

pub struct FileGateway {
    path: PathBuf,
    format: FileFormat,
    /// The gateway behind the file, where it answers model calls (`chat:`):
    /// an http client to it, held to the same allowances and secrets.
    chat: Option<HttpGateway>,
    /// The version that gateway was last seen running, so a suite's cases
    /// do not each ask again.
    loaded: std::sync::Mutex<Option<Digest>>,
}

/// How long a chat call waits for the gateway behind the file to load it.
const LOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl FileGateway {
    /// Waits (bounded) until the gateway behind the file reports running
    /// what the file holds: it reloads the file in its own time, and a
    /// suite run right after an apply must judge the new version, not the
    /// old one or none. A gateway that does not report what it runs
    /// (no Sluice status endpoint) is not waited for.
    async fn loaded_by(&self, chat: &HttpGateway) {
        let path = self.path.clone();
        let Ok(Ok(Some(text))) = tokio::task::spawn_blocking(move || read(&path)).await else {
            return;
        };
        let want = version_of(self.format, &text);
        let seen = |loaded: &std::sync::Mutex<Option<Digest>>| {
            loaded.lock().unwrap_or_else(|e| e.into_inner()).as_ref() == Some(&want)
        };
        if seen(&self.loaded) {
            return;
        }
        let deadline = tokio::time::Instant::now() + LOAD_WAIT;
        loop {
            match chat.live().await {
                Ok(live) if live.digest.as_ref() == Some(&want) => {
                    *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = Some(want);
                    return;
                }
                Ok(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                _ => return,
            }
        }
    }

    pub fn new(path: PathBuf, format: FileFormat) -> Self {
        FileGateway {
            path,
            format,
            chat: None,
            loaded: std::sync::Mutex::new(None),
        }
    }

    /// Chat calls and runtime resets go to `chat` (an http client of the
    /// gateway that runs the file); writes still go to the file.
    pub fn with_chat(mut self, chat: HttpGateway) -> Self {
        self.chat = Some(chat);
        self
    }
}

pub(crate) fn io(path: &Path, e: std::io::Error) -> GatewayError {
    GatewayError::Io(format!("{}: {e}", path.display()))
}

/// The file's text, or `None` when there is no file.
pub(crate) fn read(path: &Path) -> Result<Option<String>, GatewayError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path, e)),
    }
}

/// Replaces `path` with `body` atomically.
pub fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("config");
    // NB: unique per write, so concurrent writers never share a temp file.
    let temp = dir.join(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut file = fs::File::create(&temp)?;
    file.write_all(body)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path)?;
    // NB: the rename is durable only once the directory entry is.
    fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl Gateway for FileGateway {
    async fn live(&self) -> Result<Live, GatewayError> {
        let path = self.path.clone();
        let text = tokio::task::spawn_blocking(move || read(&path))
            .await
            .map_err(|e| GatewayError::Io(e.to_string()))??;
        Ok(Live {
            digest: text.as_deref().map(|t| version_of(self.format, t)),
            generation: None,
        })
    }

    async fn projection(&self) -> Result<Option<serde_json::Value>, GatewayError> {
        let path = self.path.clone();
        let text = tokio::task::spawn_blocking(move || read(&path))
            .await
            .map_err(|e| GatewayError::Io(e.to_string()))??;
        Ok(text
            .as_deref()
            .map(|text| format::projection(self.format, text)))
    }

    fn projected(&self, desired: &Desired) -> serde_json::Value {
        format::projected(self.format, desired)
    }

    async fn apply(
        &self,
        desired: &Desired,
        expected: Option<&Digest>,
        _generation: u64,
    ) -> Result<Applied, GatewayError> {
        let path = self.path.clone();
        let body = format::render(self.format, desired)?;
        let want = desired.digest.clone();
        let expected = expected.cloned();
        let format = self.format;
        let version = move |text: &str| version_of(format, text);
        tokio::task::spawn_blocking(move || {
            if format == FileFormat::Litellm {
                // NB: LiteLLM loads the audit callback from beside its config.
                let callback = path.with_file_name(litellm::AUDIT_CALLBACK_FILE);
                if read(&callback)?.as_deref() != Some(litellm::AUDIT_CALLBACK) {
                    write_atomically(&callback, litellm::AUDIT_CALLBACK.as_bytes())
                        .map_err(|e| io(&callback, e))?;
                }
            }
            let current = read(&path)?.as_deref().map(version);
            if current.as_ref() == Some(&want) {
                return Ok(Applied::Unchanged);
            }
            if current != expected {
                return Err(GatewayError::Changed {
                    expected: expected.map_or("nothing".into(), |d| d.to_string()),
                });
            }
            write_atomically(&path, body.as_bytes()).map_err(|e| io(&path, e))?;
            let reported = read(&path)?.as_deref().map(version);
            match reported {
                Some(digest) if digest == want => Ok(Applied::Swapped { digest }),
                other => Err(GatewayError::Mismatch {
                    applied: want.to_string(),
                    reported: other.map_or("nothing".into(), |d| d.to_string()),
                }),
            }
        })
        .await
        .map_err(|e| GatewayError::Io(e.to_string()))?
    }

    async fn chat(&self, body: &serde_json::Value) -> Result<ChatReply, GatewayError> {
        match &self.chat {
            Some(chat) => {
                self.loaded_by(chat).await;
                chat.chat(body).await
            }
            None => Err(GatewayError::Unsupported(
                "chat endpoint (a file gateway needs `chat:` in gateways.yaml)",
            )),
        }
    }

    async fn reset_runtime(&self) -> Result<(), GatewayError> {
        match &self.chat {
            Some(chat) => chat.reset_runtime().await,
            None => Err(GatewayError::Unsupported("runtime reset")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(body: &str) -> Desired {
        Desired::of_body(body)
    }

    #[tokio::test]
    async fn applies_verifies_and_detects_hand_edits() {
        let dir = tempfile::tempdir().unwrap();
        let gateway = FileGateway::new(dir.path().join("gw/policy.json"), FileFormat::Sluice);
        assert_eq!(gateway.live().await.unwrap().digest, None);

        let first = desired(r#"{"a":1}"#);
        let applied = gateway.apply(&first, None, 1).await.unwrap();
        assert_eq!(
            applied,
            Applied::Swapped {
                digest: first.digest.clone()
            }
        );
        assert_eq!(
            gateway.live().await.unwrap().digest,
            Some(first.digest.clone())
        );
        assert_eq!(
            gateway.apply(&first, Some(&first.digest), 2).await.unwrap(),
            Applied::Unchanged
        );

        // A hand edit: reformatting alone is not a change...
        fs::write(dir.path().join("gw/policy.json"), "{ \"a\" : 1 }\n").unwrap();
        assert_eq!(
            gateway.live().await.unwrap().digest,
            Some(first.digest.clone())
        );
        // ...a new value is, and an apply expecting the old digest refuses.
        fs::write(dir.path().join("gw/policy.json"), r#"{"a":2}"#).unwrap();
        let second = desired(r#"{"a":3}"#);
        assert!(matches!(
            gateway.apply(&second, Some(&first.digest), 3).await,
            Err(GatewayError::Changed { .. })
        ));
        let live = gateway.live().await.unwrap().digest;
        assert_eq!(
            gateway.apply(&second, live.as_ref(), 3).await.unwrap(),
            Applied::Swapped {
                digest: second.digest.clone()
            }
        );
        // No temp files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("gw"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["policy.json"]);
    }
}
