//! Delivering alerts to the sinks an environment names under `alerts`:
//! a generic JSON webhook or a Slack-compatible incoming webhook.
//!
//! URLs and signing secrets come from environment variables (the repository
//! only names them) and never appear in logs. Only variables the operator
//! allows the alert's environment are read, and only URLs it allows there
//! are posted to (`--allow-env`, `--allow-url`; see [`crate::config::allow`]).
//! Each sink's alerts are
//! delivered in order on a task of its own, retried with exponential backoff
//! and jitter for minutes ([`Delivery`]), behind bounded queues: a slow or
//! dead sink costs its own alerts (counted in `sluice_alerts_total`,
//! [`AlertCounters`]), never another sink's, a pass or unbounded memory.
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
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use serde_json::json;
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::{
    sync::{Notify, mpsc},
    time::Instant,
};

/// Alerts waiting to be sorted out to their sinks at most; more are dropped
/// (and counted).
const QUEUE: usize = 1024;
/// Deliveries waiting for one sink at most: a dead sink loses its own
/// alerts, never another sink's.
const SINK_QUEUE: usize = 256;
/// Longest wait for one delivery request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack renders at most 3,000 characters in a section.
const SLACK_SECTION: usize = 2_900;

/// How long one delivery is retried, and how far apart.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// The first wait (before jitter); each next one doubles, up to `max`.
    pub base: Duration,
    pub max: Duration,
    /// A delivery still failing this long after its first try is dropped.
    pub give_up_after: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        // NB: a sink that is down for a deploy or a restart comes back
        // within minutes; an alert is worth that wait.
        Delivery {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
            give_up_after: Duration::from_secs(5 * 60),
        }
    }
}

impl Delivery {
    fn backoff(&self) -> Backoff {
        Backoff {
            attempts: u32::MAX,
            base: self.base,
            max: self.max,
        }
    }
}

/// What became of one alert at one sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Delivered (a 2xx answer).
    Sent,
    /// Tried and not delivered: the sink refused it in a way retrying
    /// cannot fix, or it was still failing when its retry window ended.
    Failed,
    /// Never tried: a full queue, or a sink Sluice may not or cannot post
    /// to (its variable unset, or outside `--allow-env`/`--allow-url`).
    Dropped,
}

impl Fate {
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Sent => "sent",
            Fate::Failed => "failed",
            Fate::Dropped => "dropped",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub environment: String,
    /// The variable naming the sink's URL: the sink's name (never the URL).
    pub sink: String,
    pub event: String,
    /// A [`Fate`].
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: String,
}

/// What became of alerts, for `/metrics`. Series are bounded by the sinks
/// the repository names and the events there are.
#[derive(Debug, Clone, Default)]
pub struct AlertCounters {
    /// Each alert once per sink, by its [`Fate`] once that is known.
    pub alerts: Family<AlertLabels, Counter>,
    /// Tries that failed, by sink (each retry counts): a sink that is down
    /// shows here at once, in `alerts` only when the retry window ends.
    pub failed_attempts: Family<SinkLabels, Counter>,
}

impl AlertCounters {
    fn count(&self, alert: &Alert, sink: &AlertSpec, fate: Fate) {
        self.alerts
            .get_or_create(&AlertLabels {
                environment: alert.environment.clone(),
                sink: sink.webhook.url_env.0.clone(),
                event: alert.event.as_str().to_owned(),
                outcome: fate.as_str().to_owned(),
            })
            .inc();
    }

    fn failed_attempt(&self, sink: &AlertSpec) {
        self.failed_attempts
            .get_or_create(&SinkLabels {
                sink: sink.webhook.url_env.0.clone(),
            })
            .inc();
    }
}

/// Sends alerts from background tasks (one per sink, so a sink that is
/// down delays only its own alerts, in order); see the module docs for the
/// payload.
pub struct Notifier {
    queue: mpsc::Sender<Alert>,
    /// Alerts queued, and deliveries queued or under way.
    pending: Arc<AtomicUsize>,
    idle: Arc<Notify>,
    counters: AlertCounters,
}

/// One alert for one sink.
struct Job {
    alert: Arc<Alert>,
    sink: AlertSpec,
}

impl Notifier {
    /// Starts delivery on the current Tokio runtime.
    pub fn start(secrets: Secrets, delivery: Delivery) -> Arc<Notifier> {
        let (queue, mut alerts) = mpsc::channel::<Alert>(QUEUE);
        // NB: no redirects: a sink that redirects would pass the alert and
        // its signature to a host no --allow-url admits.
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let pending = Arc::new(AtomicUsize::new(0));
        let idle = Arc::new(Notify::new());
        let counters = AlertCounters::default();
        let (left, done, count) = (pending.clone(), idle.clone(), counters.clone());
        tokio::spawn(async move {
            // By the variable naming the sink's URL: that is the sink.
            let mut sinks: HashMap<String, mpsc::Sender<Job>> = HashMap::new();
            while let Some(alert) = alerts.recv().await {
                let alert = Arc::new(alert);
                for sink in alert.sinks.iter() {
                    let name = sink.webhook.url_env.0.clone();
                    let worker = sinks.entry(name).or_insert_with(|| {
                        let (jobs, queue) = mpsc::channel(SINK_QUEUE);
                        tokio::spawn(worker(
                            queue,
                            client.clone(),
                            secrets.clone(),
                            delivery,
                            count.clone(),
                            left.clone(),
                            done.clone(),
                        ));
                        jobs
                    });
                    left.fetch_add(1, Ordering::SeqCst);
                    let job = Job {
                        alert: alert.clone(),
                        sink: sink.clone(),
                    };
                    if worker.try_send(job).is_err() {
                        left.fetch_sub(1, Ordering::SeqCst);
                        count.count(&alert, sink, Fate::Dropped);
                        tracing::warn!(
                            environment = %alert.environment,
                            sink = sink.webhook.url_env.0.as_str(),
                            "alert sink's queue full; an alert was dropped"
                        );
                    }
                }
                left.fetch_sub(1, Ordering::SeqCst);
                done.notify_waiters();
            }
        });
        Arc::new(Notifier {
            queue,
            pending,
            idle,
            counters,
        })
    }

    /// The counters, to register with the process's metrics.
    pub fn counters(&self) -> &AlertCounters {
        &self.counters
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
        if let Err(full) = self.queue.try_send(alert) {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            let alert = full.into_inner();
            for sink in alert.sinks.iter() {
                self.counters.count(&alert, sink, Fate::Dropped);
            }
            tracing::warn!(environment = %alert.environment, "alert queue full; an alert was dropped");
        }
    }
}

/// Delivers one sink's alerts in order.
async fn worker(
    mut jobs: mpsc::Receiver<Job>,
    client: reqwest::Client,
    secrets: Secrets,
    delivery: Delivery,
    counters: AlertCounters,
    pending: Arc<AtomicUsize>,
    idle: Arc<Notify>,
) {
    while let Some(job) = jobs.recv().await {
        deliver(
            &client, &secrets, delivery, &counters, &job.sink, &job.alert,
        )
        .await;
        pending.fetch_sub(1, Ordering::SeqCst);
        idle.notify_waiters();
    }
}

async fn deliver(
    client: &reqwest::Client,
    secrets: &Secrets,
    delivery: Delivery,
    counters: &AlertCounters,
    sink: &AlertSpec,
    alert: &Alert,
) {
    let hook = &sink.webhook;
    let sink_name = hook.url_env.0.as_str();
    let environment = alert.environment.as_str();
    let url = match secrets.read(environment, sink_name) {
        Ok(Some(url)) if !url.is_empty() => url,
        Ok(_) => {
            counters.count(alert, sink, Fate::Dropped);
            tracing::warn!(
                environment,
                sink = sink_name,
                "alert sink not configured: the variable is not set"
            );
            return;
        }
        Err(denied) => {
            counters.count(alert, sink, Fate::Dropped);
            tracing::warn!(environment, sink = sink_name, error = %denied, "alert sink refused");
            return;
        }
    };
    // NB: the URL is the operator's, but the repository chose the variable:
    // it is posted to only where this environment may reach.
    if let Err(denied) = secrets.allowances().url(environment, &url) {
        counters.count(alert, sink, Fate::Dropped);
        tracing::warn!(environment, sink = sink_name, error = %denied, "alert sink refused (--allow-url)");
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
            counters.count(alert, sink, Fate::Dropped);
            tracing::warn!(environment, sink = sink_name, error = %denied, "alert sink refused");
            return;
        }
    };
    let signature = key.map(|key| crate::server::webhook::github_signature(&key, body.as_bytes()));
    let backoff = delivery.backoff();
    let give_up = Instant::now() + delivery.give_up_after;
    let mut attempt = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        let mut request = client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Sluice-Event", alert.event.as_str())
            .body(body.clone());
        if let Some(signature) = &signature {
            request = request.header("X-Sluice-Signature-256", signature);
        }
        // NB: errors are described without the URL, which is a secret.
        let (retry, hint) = match request.send().await {
            Ok(response) if response.status().is_success() => {
                counters.count(alert, sink, Fate::Sent);
                return;
            }
            Ok(response) => {
                let status = response.status();
                tracing::warn!(
                    environment,
                    sink = sink_name,
                    status = status.as_u16(),
                    attempt,
                    "alert refused"
                );
                let hint = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let retry = status.is_server_error()
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT;
                (retry, hint)
            }
            Err(e) => {
                let reason = if e.is_timeout() {
                    "timed out"
                } else {
                    "unreachable"
                };
                tracing::warn!(
                    environment,
                    sink = sink_name,
                    reason,
                    attempt,
                    "alert not delivered"
                );
                (true, None)
            }
        };
        counters.failed_attempt(sink);
        let wait = backoff.delay(attempt, rand::random::<f64>(), hint);
        if !retry || Instant::now() + wait >= give_up {
            break;
        }
        tokio::time::sleep(wait).await;
    }
    counters.count(alert, sink, Fate::Failed);
    tracing::error!(
        sink = sink_name,
        event = alert.event.as_str(),
        environment = %alert.environment,
        gateway = %alert.gateway,
        attempts = attempt,
        "alert not delivered: given up"
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
        AlertEvent::VerificationFailed => format!(
            ":x: Verification of {} in {} failed: {}",
            alert.desired_version,
            alert.environment,
            alert.detail.as_deref().unwrap_or("a suite failed")
        ),
        AlertEvent::RolledBack => format!(
            ":rewind: {} rolled back to {}: {}",
            alert.environment,
            alert.desired_version,
            alert.detail.as_deref().unwrap_or("verification failed")
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

    /// A real HTTP sink on loopback that answers `500` to its first
    /// `failures` deliveries (`u32::MAX`: all of them), then `200`.
    struct Sink {
        url: String,
        received: Arc<AtomicUsize>,
    }

    impl Sink {
        async fn start(failures: u32) -> Sink {
            let received = Arc::new(AtomicUsize::new(0));
            let seen = received.clone();
            let app = axum::Router::new().route(
                "/hook",
                axum::routing::post(move || {
                    let seen = seen.clone();
                    async move {
                        let n = seen.fetch_add(1, Ordering::SeqCst) as u32;
                        if n < failures {
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR
                        } else {
                            axum::http::StatusCode::OK
                        }
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/hook", listener.local_addr().unwrap());
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Sink { url, received }
        }

        fn received(&self) -> usize {
            self.received.load(Ordering::SeqCst)
        }
    }

    fn sink_spec(url_env: &str) -> AlertSpec {
        serde_json::from_value(json!({"webhook": {"urlEnv": url_env}})).unwrap()
    }

    /// A notifier whose sinks `SINK_A` and `SINK_B` are `a` and `b`.
    fn notifier(a: &Sink, b: Option<&Sink>, delivery: Delivery) -> Arc<Notifier> {
        let urls: HashMap<String, String> = [("SINK_A", Some(a)), ("SINK_B", b)]
            .into_iter()
            .filter_map(|(name, sink)| Some((name.to_owned(), sink?.url.clone())))
            .collect();
        let allowances = crate::config::Allowances::new(
            vec!["*=SINK_*".parse().unwrap()],
            vec!["*=http://127.0.0.1:*".parse().unwrap()],
        );
        Notifier::start(
            Secrets::new(
                Arc::new(move |name| urls.get(name).cloned()),
                Arc::new(allowances),
            ),
            delivery,
        )
    }

    fn to(sink: &str) -> Alert {
        Alert {
            sinks: Arc::from(vec![sink_spec(sink)]),
            ..alert(AlertEvent::ApplyFailed)
        }
    }

    /// Polls `check` until it holds, for at most a generous `seconds`.
    async fn eventually(seconds: u64, what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Alerts of [`to`] (to any of the tests' sinks) whose fate was `fate`.
    fn fates(notifier: &Notifier, fate: Fate) -> u64 {
        ["SINK_A", "SINK_B", "SLUICE_WEBHOOK_SECRET"]
            .into_iter()
            .filter_map(|sink| {
                let labels = AlertLabels {
                    environment: "production".into(),
                    sink: sink.into(),
                    event: "apply-failed".into(),
                    outcome: fate.as_str().into(),
                };
                Some(notifier.counters().alerts.get(&labels)?.get())
            })
            .sum()
    }

    /// Failed tries at the sink `SINK_A`.
    fn failed_tries(notifier: &Notifier) -> u64 {
        let labels = SinkLabels {
            sink: "SINK_A".into(),
        };
        notifier
            .counters()
            .failed_attempts
            .get(&labels)
            .map_or(0, |c| c.get())
    }

    const QUICK: Delivery = Delivery {
        base: Duration::from_millis(10),
        max: Duration::from_millis(40),
        give_up_after: Duration::from_secs(120),
    };

    #[tokio::test]
    async fn a_failing_sink_is_retried_until_it_takes_the_alert() {
        // More failures than the old four tries could outlast.
        let sink = Sink::start(8).await;
        let notifier = notifier(&sink, None, QUICK);
        notifier.send(to("SINK_A"));
        eventually(60, "the delivery", || fates(&notifier, Fate::Sent) == 1).await;
        assert_eq!(sink.received(), 9);
        assert_eq!(failed_tries(&notifier), 8);
        assert_eq!(fates(&notifier, Fate::Failed), 0);
        assert_eq!(fates(&notifier, Fate::Dropped), 0);
    }

    #[tokio::test]
    async fn a_dead_sink_holds_up_no_other_sink() {
        let dead = Sink::start(u32::MAX).await;
        let alive = Sink::start(0).await;
        let notifier = notifier(&dead, Some(&alive), QUICK);
        notifier.send(to("SINK_A"));
        eventually(60, "a failed try", || dead.received() >= 1).await;
        notifier.send(to("SINK_B"));
        eventually(60, "the other sink's alert", || alive.received() == 1).await;
        // The first alert is still being retried, not given up.
        assert_eq!(fates(&notifier, Fate::Sent), 1);
        assert_eq!(fates(&notifier, Fate::Failed), 0);
        assert_eq!(fates(&notifier, Fate::Dropped), 0);
    }

    /// Issue 16: a repository names the variable, the operator's variable
    /// holds the URL: neither a variable nor a URL outside the allowances
    /// is used, and nothing is sent.
    #[tokio::test]
    async fn a_sink_outside_the_allowances_is_never_posted_to() {
        let sink = Sink::start(0).await;
        let urls: HashMap<String, String> = [
            ("SINK_A".to_owned(), sink.url.clone()),
            ("SLUICE_WEBHOOK_SECRET".to_owned(), sink.url.clone()),
        ]
        .into();
        let allowances = crate::config::Allowances::new(
            vec!["*=SINK_*".parse().unwrap()],
            vec!["*=https://alerts.example.com".parse().unwrap()],
        );
        let notifier = Notifier::start(
            Secrets::new(
                Arc::new(move |name| urls.get(name).cloned()),
                Arc::new(allowances),
            ),
            QUICK,
        );
        notifier.send(to("SINK_A")); // an allowed variable, a URL that is not
        notifier.send(to("SLUICE_WEBHOOK_SECRET")); // Sluice's own variable
        notifier.flush(Duration::from_secs(60)).await;
        assert_eq!(sink.received(), 0);
        assert_eq!(fates(&notifier, Fate::Dropped), 2);
        assert_eq!(fates(&notifier, Fate::Sent), 0);
    }

    #[tokio::test]
    async fn a_delivery_still_failing_when_its_time_is_up_is_given_up_and_counted_failed() {
        let dead = Sink::start(u32::MAX).await;
        let delivery = Delivery {
            give_up_after: Duration::from_millis(300),
            ..QUICK
        };
        let notifier = notifier(&dead, None, delivery);
        notifier.send(to("SINK_A"));
        notifier.flush(Duration::from_secs(60)).await;
        assert_eq!(fates(&notifier, Fate::Failed), 1);
        assert_eq!(fates(&notifier, Fate::Sent), 0);
        assert_eq!(fates(&notifier, Fate::Dropped), 0);
        assert!(failed_tries(&notifier) >= 2);
        assert_eq!(failed_tries(&notifier), dead.received() as u64);
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
