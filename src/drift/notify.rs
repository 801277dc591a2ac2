//! Delivering alerts to the sinks an environment names under `alerts`:
//! a generic JSON webhook or a Slack-compatible incoming webhook.
//!
//! URLs and signing secrets come from environment variables (the repository
//! only names them) and never appear in logs. Only variables the operator
//! allows the alert's environment are read, and only URLs it allows there
//! are posted to (`--allow-env`, `--allow-url`; see [`crate::config::allow`]). Delivery runs on a task of its
//! own with retries and backoff, behind a bounded queue: a slow or dead sink
//! costs alerts, never a pass or unbounded memory.
//!
//! The generic payload is the [`Alert`] as JSON (camelCase): `event`
//! (`drift-detected`, `drift-resolved`, `apply-failed`, `promotion-gated`), `environment`,
//! `gateway`, `revision`, `desiredVersion`, `liveVersion`, `changes`
//! (`[{pointer, kind, pack, policy, setting, from, to}]`), `diff`, `detail`,
//! `at` (ms since the epoch). With `secretEnv`, the body is signed:
//! `X-Sluice-Signature-256: sha256=<hex HMAC-SHA256>`.

use super::{Alert, AlertEvent, Alerts};
use crate::{
    config::model::{AlertSpec, WebhookFormat},
    gateway::Secrets,
    reconcile::retry::Backoff,
};
use serde_json::json;
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::sync::{Notify, mpsc};

/// Alerts waiting for delivery at most; more are dropped (and counted).
const QUEUE: usize = 1024;
/// Longest wait for one delivery request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack renders at most 3,000 characters in a section.
const SLACK_SECTION: usize = 2_900;

/// Sends alerts from a background task; see the module docs for the payload.
pub struct Notifier {
    queue: mpsc::Sender<Alert>,
    /// Alerts queued or being delivered.
    pending: Arc<AtomicUsize>,
    idle: Arc<Notify>,
    dropped: AtomicU64,
}

impl Notifier {
    /// Starts delivery on the current Tokio runtime.
    pub fn start(secrets: Secrets, backoff: Backoff) -> Arc<Notifier> {
        let (queue, mut alerts) = mpsc::channel::<Alert>(QUEUE);
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap_or_default();
        let pending = Arc::new(AtomicUsize::new(0));
        let idle = Arc::new(Notify::new());
        let (left, done) = (pending.clone(), idle.clone());
        tokio::spawn(async move {
            while let Some(alert) = alerts.recv().await {
                for sink in alert.sinks.iter() {
                    deliver(&client, &secrets, backoff, sink, &alert).await;
                }
                left.fetch_sub(1, Ordering::SeqCst);
                done.notify_waiters();
            }
        });
        Arc::new(Notifier {
            queue,
            pending,
            idle,
            dropped: AtomicU64::new(0),
        })
    }

    /// Alerts dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits, up to `grace`, until every queued alert is delivered or given up.
    pub async fn flush(&self, grace: Duration) {
        let drained = async {
            loop {
                let notified = self.idle.notified();
                if self.pending.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::warn!(?grace, "alerts still undelivered");
        }
    }
}

impl Alerts for Notifier {
    fn send(&self, alert: Alert) {
        if alert.sinks.is_empty() {
            return;
        }
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.queue.try_send(alert).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("alert queue full; an alert was dropped");
        }
    }
}

async fn deliver(
    client: &reqwest::Client,
    secrets: &Secrets,
    backoff: Backoff,
    sink: &AlertSpec,
    alert: &Alert,
) {
    let hook = &sink.webhook;
    let sink_name = hook.url_env.0.as_str();
    let environment = alert.environment.as_str();
    let url = match secrets.read(environment, sink_name) {
        Ok(Some(url)) if !url.is_empty() => url,
        Ok(_) => {
            tracing::warn!(
                sink = sink_name,
                "alert sink not configured: the variable is not set"
            );
            return;
        }
        Err(denied) => {
            tracing::warn!(sink = sink_name, error = %denied, "alert sink refused");
            return;
        }
    };
    // NB: the URL is the operator's, but the repository chose the variable:
    // it is posted to only where this environment may reach.
    if let Err(denied) = secrets.allowances().url(environment, &url) {
        tracing::warn!(sink = sink_name, error = %denied, "alert sink refused (--allow-url)");
        return;
    }
    let body = payload(hook.format, alert).to_string();
    let key = match hook
        .secret_env
        .as_ref()
        .map(|v| secrets.read(environment, &v.0))
    {
        None => None,
        Some(Ok(key)) => key,
        Some(Err(denied)) => {
            tracing::warn!(sink = sink_name, error = %denied, "alert sink refused");
            return;
        }
    };
    let signature = key.map(|key| crate::server::webhook::github_signature(&key, body.as_bytes()));
    for attempt in 1..=backoff.attempts {
        let mut request = client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Sluice-Event", alert.event.as_str())
            .body(body.clone());
        if let Some(signature) = &signature {
            request = request.header("X-Sluice-Signature-256", signature);
        }
        // NB: errors are described without the URL, which is a secret.
        let retry = match request.send().await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                let status = response.status();
                tracing::warn!(
                    sink = sink_name,
                    status = status.as_u16(),
                    attempt,
                    "alert refused"
                );
                status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            }
            Err(e) => {
                let reason = if e.is_timeout() {
                    "timed out"
                } else {
                    "unreachable"
                };
                tracing::warn!(sink = sink_name, reason, attempt, "alert not delivered");
                true
            }
        };
        if !retry || attempt == backoff.attempts {
            break;
        }
        tokio::time::sleep(backoff.delay(attempt, rand::random::<f64>(), None)).await;
    }
    tracing::error!(
        sink = sink_name,
        event = alert.event.as_str(),
        environment = %alert.environment,
        gateway = %alert.gateway,
        "alert lost after retries"
    );
}

/// The body for a sink's format.
pub fn payload(format: WebhookFormat, alert: &Alert) -> serde_json::Value {
    match format {
        WebhookFormat::Generic => serde_json::to_value(alert).unwrap_or_default(),
        WebhookFormat::Slack => slack(alert),
    }
}

fn headline(alert: &Alert) -> String {
    let place = format!("{}/{}", alert.environment, alert.gateway);
    let live = alert.live_version.as_deref().unwrap_or("nothing readable");
    match alert.event {
        AlertEvent::DriftDetected => format!(
            ":warning: Drift on {place}: runs {live}, Sluice verified {}",
            alert.desired_version
        ),
        AlertEvent::DriftResolved => format!(
            ":white_check_mark: Drift on {place} resolved ({}): runs {}",
            alert.detail.as_deref().unwrap_or("resolved"),
            alert.desired_version
        ),
        AlertEvent::PromotionGated => format!(
            ":hourglass: Promotion to {} held: {}",
            alert.environment,
            alert.detail.as_deref().unwrap_or("gated")
        ),
        AlertEvent::ApplyFailed => format!(
            ":x: Apply of {} to {place} failed: {}",
            alert.desired_version,
            alert.detail.as_deref().unwrap_or("unknown error")
        ),
    }
}

fn slack(alert: &Alert) -> serde_json::Value {
    let mut headline = headline(alert);
    if super::cut(&mut headline, SLACK_SECTION) {
        headline.push('…');
    }
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": headline},
    })];
    if !alert.changes.is_empty() {
        let lines: Vec<String> = alert.changes.iter().map(|c| c.describe()).collect();
        let mut text = lines.join("\n");
        if super::cut(&mut text, SLACK_SECTION) {
            text.push('…');
        }
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("```{text}```")},
        }));
    }
    json!({"text": headline, "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diff::{ChangeKind, changes};

    fn alert(event: AlertEvent) -> Alert {
        let before =
            json!({"packs": {"baseline": {"settings": {"pii-detector": {"action": "block"}}}}});
        let after =
            json!({"packs": {"baseline": {"settings": {"pii-detector": {"action": "redact"}}}}});
        Alert {
            event,
            environment: "production".into(),
            gateway: "prod-eu-1".into(),
            revision: "9f8e7d6c5b4a".into(),
            desired_version: "sha256:aaaaaaaaaaaa@9f8e7d6c".into(),
            live_version: Some("sha256:bbbbbbbbbbbb".into()),
            changes: changes(&before, &after),
            diff: String::new(),
            detail: None,
            at: 1_750_000_000_000,
            sinks: Arc::from(vec![]),
        }
    }

    #[test]
    fn the_generic_payload_carries_the_documented_fields() {
        let body = payload(WebhookFormat::Generic, &alert(AlertEvent::DriftDetected));
        for field in [
            "event",
            "environment",
            "gateway",
            "revision",
            "desiredVersion",
            "liveVersion",
            "changes",
            "diff",
            "at",
        ] {
            assert!(body.get(field).is_some(), "{field} missing from {body}");
        }
        assert_eq!(body["event"], "drift-detected");
        assert_eq!(body["changes"][0]["policy"], "pii-detector");
        assert_eq!(body["changes"][0]["kind"], json!(ChangeKind::Changed));
    }

    #[test]
    fn the_slack_payload_has_text_and_the_changes() {
        let body = payload(WebhookFormat::Slack, &alert(AlertEvent::DriftDetected));
        let text = body["text"].as_str().unwrap();
        assert!(text.contains("production/prod-eu-1"), "{text}");
        let changes = body["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(changes.contains(r#"pii-detector.action (pack baseline): "block" → "redact""#));
    }
}
