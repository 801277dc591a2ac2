//! `--watch FILE`: the reference gateway as the gateway behind a `file`
//! driver. It runs what the file holds, reloading it when it changes, as a
//! gateway that hot-reloads its config file would; its chat endpoint then
//! enforces what Sluice wrote there, so suites can check a file gateway too
//! (`chat:` in gateways.yaml names where it answers).
//!
//! A change is seen by polling the file's length and modification time (no
//! inotify: it works on every filesystem, and the file driver replaces the
//! file by rename, so a half-written file is never read). A file that is
//! not a valid document is refused like a bad `PUT`: the last good config
//! keeps running, and `status.lastError` says why.

use super::{Shared, applies::Via, replace_config};
use axum::body::Bytes;
use std::{path::PathBuf, sync::Arc, time::Duration, time::SystemTime};

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(200);

/// Follows `path` until the gateway shuts down.
pub(super) async fn follow(shared: Arc<Shared>, path: PathBuf) {
    let mut shutdown = shared.shutdown.clone();
    let mut seen: Option<(u64, SystemTime)> = None;
    loop {
        if let Ok(meta) = tokio::fs::metadata(&path).await {
            let stamp = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            if seen != Some(stamp) {
                seen = Some(stamp);
                match tokio::fs::read(&path).await {
                    Ok(body) => {
                        let answer =
                            replace_config(shared.clone(), Bytes::from(body), Via::Watch).await;
                        if answer.status() == axum::http::StatusCode::TOO_MANY_REQUESTS {
                            // A reload in progress: look again next time.
                            seen = None;
                        } else if answer.status().is_client_error() {
                            eprintln!(
                                "{}: not a config this gateway runs ({}); the last good one keeps running",
                                path.display(),
                                answer.status()
                            );
                        }
                    }
                    // NB: gone between the two calls (a rename in
                    // flight): the next poll reads the new one.
                    Err(_) => seen = None,
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
}
