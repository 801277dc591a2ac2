//! The reconciler in process: fake gateways (in memory, edited by hand or
//! made to refuse), the in-memory ledger and a manual clock drive `pass`
//! with no process, file or socket. The process-level tests (`tests/it`)
//! run the same passes through the real drivers.

use super::*;
use crate::{config::Limits, gateway::Problem, ledger::MemoryLedger, source::WorkTree};
use async_trait::async_trait;
use serde_json::Value;
use std::{sync::atomic::AtomicUsize, time::Duration};

/// A gateway that keeps its config in memory, and enforces it on chat
/// calls with the reference gateway's engine.
#[derive(Default)]
struct Fake {
    running: Mutex<Option<(Digest, Arc<str>)>>,
    applies: AtomicUsize,
    /// Refuses every apply (a `422`).
    refuse: AtomicBool,
    counters: Mutex<crate::enforce::Counters>,
    resets: AtomicUsize,
    chats: AtomicUsize,
}

impl Fake {
    /// What an operator does by hand: the gateway now runs `body`.
    fn edit(&self, body: &str) {
        let digest = Digest::of_json(body).expect("JSON");
        *self.running.lock().unwrap() = Some((digest, body.into()));
    }

    /// It restarted with nothing.
    fn empty(&self) {
        *self.running.lock().unwrap() = None;
    }

    fn digest(&self) -> Option<Digest> {
        self.running
            .lock()
            .unwrap()
            .as_ref()
            .map(|(d, _)| d.clone())
    }

    fn applies(&self) -> usize {
        self.applies.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Gateway for Fake {
    async fn live(&self) -> Result<Live, GatewayError> {
        Ok(Live {
            digest: self.digest(),
            generation: None,
        })
    }

    async fn projection(&self) -> Result<Option<Value>, GatewayError> {
        let running = self.running.lock().unwrap();
        Ok(running
            .as_ref()
            .map(|(_, body)| serde_json::from_str(body).unwrap_or(Value::Null)))
    }

    async fn apply(
        &self,
        desired: &Desired,
        expected: Option<&Digest>,
        _generation: u64,
    ) -> Result<Applied, GatewayError> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(GatewayError::Refused {
                problems: vec![Problem {
                    path: "/packs".into(),
                    message: "not today".into(),
                }],
            });
        }
        let mut running = self.running.lock().unwrap();
        let now = running.as_ref().map(|(d, _)| d);
        if now != expected {
            return Err(GatewayError::Changed {
                expected: expected.map(Digest::to_string).unwrap_or_default(),
            });
        }
        *running = Some((desired.digest.clone(), desired.body.clone()));
        self.applies.fetch_add(1, Ordering::SeqCst);
        Ok(Applied::Swapped {
            digest: desired.digest.clone(),
        })
    }

    async fn chat(&self, body: &Value) -> Result<crate::gateway::ChatReply, GatewayError> {
        use crate::enforce::{Engine, Outcome};
        self.chats.fetch_add(1, Ordering::SeqCst);
        let (digest, document) = self.running.lock().unwrap().clone().expect("runs a config");
        let engine = Engine::from_document(&serde_json::from_str(&document).unwrap()).unwrap();
        let request = serde_json::from_value(body.clone()).unwrap();
        let evaluation = engine.evaluate(
            &mut self.counters.lock().unwrap(),
            &request,
            std::time::Instant::now(),
        );
        let status = match evaluation.outcome {
            Outcome::Blocked | Outcome::RefusedModel => 403,
            Outcome::RateLimited => 429,
            _ => 200,
        };
        Ok(crate::gateway::ChatReply {
            status,
            outcome: Some(evaluation.outcome.as_str().to_owned()),
            policies: Some(
                evaluation
                    .policies()
                    .iter()
                    .map(|p| p.to_string())
                    .collect(),
            ),
            digest: Some(digest.to_string()),
            body: crate::gateway::ChatBody::Json(
                serde_json::json!({"sluice": {"forwarded": evaluation.forwarded}}),
            ),
        })
    }

    async fn reset_runtime(&self) -> Result<(), GatewayError> {
        self.resets.fetch_add(1, Ordering::SeqCst);
        *self.counters.lock().unwrap() = Default::default();
        Ok(())
    }
}

impl Fake {
    fn resets(&self) -> usize {
        self.resets.load(Ordering::SeqCst)
    }
}

/// Alerts, kept.
#[derive(Default)]
struct Kept(Mutex<Vec<crate::drift::Alert>>);

impl crate::drift::Alerts for Kept {
    fn send(&self, alert: crate::drift::Alert) {
        self.0.lock().unwrap().push(alert);
    }
}

impl Kept {
    fn events(&self) -> Vec<&'static str> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|a| a.event.as_str())
            .collect()
    }
}

/// (environment, gateway).
type Key = (String, String);

/// The fakes by (environment, gateway), made when the reconciler first
/// connects to one; every connect is counted.
#[derive(Default, Clone)]
struct Fakes {
    gateways: Arc<Mutex<HashMap<Key, Arc<Fake>>>>,
    connects: Arc<AtomicUsize>,
}

impl Fakes {
    fn connect(&self) -> Arc<Connect> {
        let fakes = self.clone();
        Arc::new(move |environment, spec, _context| {
            fakes.connects.fetch_add(1, Ordering::SeqCst);
            Ok(fakes.get(environment, spec.name()) as Arc<dyn Gateway>)
        })
    }

    fn get(&self, environment: &str, gateway: &str) -> Arc<Fake> {
        let mut gateways = self.gateways.lock().unwrap();
        let key = (environment.to_owned(), gateway.to_owned());
        gateways.entry(key).or_default().clone()
    }

    fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }
}

/// A reconciler over fakes, the in-memory ledger and a clock at t = 1 h.
struct World {
    reconciler: Reconciler,
    ledger: Arc<MemoryLedger>,
    clock: Arc<ManualClock>,
    fakes: Fakes,
}

impl World {
    fn new() -> World {
        let ledger = Arc::new(MemoryLedger::new());
        let clock = Arc::new(ManualClock::at(3_600_000));
        let fakes = Fakes::default();
        let options = Options {
            concurrency: 4,
            backoff: Backoff {
                attempts: 1,
                base: Duration::ZERO,
                max: Duration::ZERO,
            },
        };
        let reconciler = Reconciler::new(
            ledger.clone(),
            clock.clone(),
            DriverContext::new(std::env::temp_dir()),
            options,
        )
        .with_connect(fakes.connect());
        World {
            reconciler,
            ledger,
            clock,
            fakes,
        }
    }

    async fn pass(
        &self,
        loaded: &Loaded,
        trigger: Trigger,
        only: Option<&str>,
    ) -> Vec<EnvironmentReport> {
        match self
            .reconciler
            .pass(loaded, trigger, only, &NoProgress)
            .await
        {
            Ok(Pass::Reconciled { environments, .. }) => environments,
            other => panic!("not reconciled: {other:?}"),
        }
    }

    /// The gateway's newest attempt.
    fn newest(&self, env: &str, gw: &str) -> Attempt {
        let history = self.ledger.history(env, Some(gw), 1).unwrap();
        history.into_iter().next().expect("an attempt")
    }

    /// Drift episodes of `env` (or all), open only or all.
    fn episodes(&self, env: Option<&str>, open_only: bool) -> Vec<DriftEpisode> {
        self.ledger.drift_episodes(env, open_only, 10).unwrap()
    }

    fn drivers(&self) -> usize {
        self.reconciler.drivers.lock().unwrap().len()
    }
}

/// The bundled example with `files` written over it, loaded.
pub(crate) fn example(files: &[(&str, &str)]) -> Loaded {
    let dir = crate::config::copy_example();
    for (path, text) in files {
        std::fs::write(dir.path().join(path), text).unwrap();
    }
    let tree = WorkTree::open(dir.path()).unwrap();
    let loaded = crate::config::load(&tree, &Limits::default()).unwrap();
    assert!(
        loaded.repository.is_some(),
        "the example is valid: {:?}",
        loaded.findings
    );
    loaded
}

fn gateway<'a>(reports: &'a [EnvironmentReport], env: &str, gw: &str) -> &'a GatewayReport {
    reports
        .iter()
        .find(|e| e.environment == env)
        .and_then(|e| e.gateways.iter().find(|g| g.gateway == gw))
        .unwrap_or_else(|| panic!("no report of {env}/{gw}: {reports:?}"))
}

const EDITED: &str = r#"{"enforcement":"monitor","packs":[]}"#;

#[tokio::test]
async fn a_pass_applies_and_verifies_every_gateway_then_leaves_them_be() {
    let world = World::new();
    let loaded = example(&[]);
    let reports = world
        .pass(&loaded, Trigger::Startup, Some("production"))
        .await;
    for name in ["prod-eu-1", "prod-us-1"] {
        let report = gateway(&reports, "production", name);
        assert_eq!(report.state, GatewayState::InSync, "{report:?}");
        assert!(report.applied && report.drift.is_none(), "{report:?}");
        let fake = world.fakes.get("production", name);
        assert_eq!(fake.digest().as_ref(), Some(&report.desired));
        let history = world.ledger.history("production", Some(name), 10).unwrap();
        assert_eq!(history.len(), 1, "{history:?}");
        assert_eq!(history[0].start.trigger, Trigger::Startup);
        assert_eq!(history[0].outcome, Some(Outcome::Applied));
    }
    let records = world.ledger.gateways(Some("production")).unwrap();
    assert!(
        records.iter().all(|r| r.state == GatewayState::InSync),
        "{records:?}"
    );
    let deployments = world.ledger.deployments("production", 10).unwrap();
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0].verified_at, world.clock.now());

    // Nothing changed: read, not applied, no new attempt.
    let reports = world.pass(&loaded, Trigger::Poll, Some("production")).await;
    assert!(
        reports[0]
            .gateways
            .iter()
            .all(|g| !g.applied && g.state == GatewayState::InSync)
    );
    for name in ["prod-eu-1", "prod-us-1"] {
        assert_eq!(world.fakes.get("production", name).applies(), 1);
        assert_eq!(
            world
                .ledger
                .history("production", Some(name), 10)
                .unwrap()
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn a_hand_edit_is_healed_under_heal_and_left_under_detect_until_a_sync() {
    let world = World::new();
    let loaded = example(&[]);
    world.pass(&loaded, Trigger::Startup, None).await;

    // Production heals: put back at the scan, as trigger drift.
    let edited = world.fakes.get("production", "prod-eu-1");
    edited.edit(EDITED);
    let reports = world
        .pass(&loaded, Trigger::Drift, Some("production"))
        .await;
    let healed = gateway(&reports, "production", "prod-eu-1");
    assert_eq!(healed.state, GatewayState::InSync, "{healed:?}");
    assert!(healed.applied, "{healed:?}");
    let drift = healed.drift.as_ref().expect("reported as drift");
    assert!(!drift.changes.is_empty(), "{drift:?}");
    assert_eq!(edited.digest().as_ref(), Some(&healed.desired));
    let newest = world.newest("production", "prod-eu-1");
    assert_eq!(newest.start.trigger, Trigger::Drift);
    let episodes = world.episodes(Some("production"), false);
    assert_eq!(episodes.len(), 1, "{episodes:?}");
    assert_eq!(episodes[0].resolution, Some(Resolution::Healed));
    assert!(!gateway(&reports, "production", "prod-us-1").applied);

    // Development detects: recorded and left as it runs.
    let edited = world.fakes.get("development", "dev-1");
    edited.edit(EDITED);
    let reports = world
        .pass(&loaded, Trigger::Drift, Some("development"))
        .await;
    let left = gateway(&reports, "development", "dev-1");
    assert_eq!(left.state, GatewayState::Drifted, "{left:?}");
    assert!(!left.applied && left.drift.is_some(), "{left:?}");
    assert_eq!(edited.digest(), Digest::of_json(EDITED));
    let open = world.episodes(Some("development"), true);
    assert_eq!(open.len(), 1, "{open:?}");
    // The next scan finds the same episode open, not a second one.
    let reports = world
        .pass(&loaded, Trigger::Drift, Some("development"))
        .await;
    assert!(
        !gateway(&reports, "development", "dev-1")
            .drift
            .as_ref()
            .unwrap()
            .new_episode
    );

    // A manual sync puts it back whatever the policy.
    let reports = world
        .pass(&loaded, Trigger::Manual, Some("development"))
        .await;
    let synced = gateway(&reports, "development", "dev-1");
    assert!(
        synced.applied && synced.state == GatewayState::InSync,
        "{synced:?}"
    );
    let newest = world.newest("development", "dev-1");
    assert_eq!(newest.start.trigger, Trigger::Manual);
    assert!(world.episodes(Some("development"), true).is_empty());
}

#[tokio::test]
async fn a_gateway_that_restarted_empty_is_pushed_without_being_called_drift() {
    let world = World::new();
    let loaded = example(&[]);
    world
        .pass(&loaded, Trigger::Startup, Some("development"))
        .await;
    let fake = world.fakes.get("development", "dev-1");
    fake.empty();
    let reports = world
        .pass(&loaded, Trigger::Drift, Some("development"))
        .await;
    let pushed = gateway(&reports, "development", "dev-1");
    assert!(pushed.applied && pushed.drift.is_none(), "{pushed:?}");
    assert_eq!(fake.applies(), 2);
    assert!(world.episodes(None, false).is_empty());
}

#[tokio::test]
async fn a_refused_apply_fails_the_gateway_and_the_next_pass_retries_it() {
    let world = World::new();
    let loaded = example(&[]);
    let fake = world.fakes.get("development", "dev-1");
    fake.refuse.store(true, Ordering::SeqCst);
    let reports = world
        .pass(&loaded, Trigger::Startup, Some("development"))
        .await;
    let failed = gateway(&reports, "development", "dev-1");
    assert_eq!(failed.state, GatewayState::Failed, "{failed:?}");
    assert!(
        failed
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("not today"),
        "{failed:?}"
    );
    assert_eq!(fake.digest(), None, "nothing was swapped in");
    let attempt = world.newest("development", "dev-1");
    assert_eq!(attempt.outcome, Some(Outcome::Failed));
    assert!(
        world
            .ledger
            .deployments("development", 1)
            .unwrap()
            .is_empty()
    );

    fake.refuse.store(false, Ordering::SeqCst);
    let reports = world
        .pass(&loaded, Trigger::Poll, Some("development"))
        .await;
    assert_eq!(
        gateway(&reports, "development", "dev-1").state,
        GatewayState::InSync
    );
    assert_eq!(world.ledger.deployments("development", 1).unwrap().len(), 1);
}

#[tokio::test]
async fn the_soak_gate_holds_production_until_the_clock_has_passed_it() {
    let environment = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/config-repo/environments/production/environment.yaml"),
    )
    .unwrap()
    .replace("  # soak: 1h", "  soak: 1h");
    let loaded = example(&[("environments/production/environment.yaml", &environment)]);
    let world = World::new();

    // Staging takes it at once; production waits for staging to run it.
    let reports = world.pass(&loaded, Trigger::Startup, None).await;
    assert_eq!(
        gateway(&reports, "staging", "staging-1").state,
        GatewayState::InSync
    );
    let held = gateway(&reports, "production", "prod-eu-1");
    assert_eq!(held.state, GatewayState::Gated, "{held:?}");
    assert!(held.gated.is_some() && !held.applied);
    assert_eq!(world.fakes.get("production", "prod-eu-1").applies(), 0);

    // An hour less a second of staging running it: still soaking.
    world.clock.advance(Duration::from_secs(3599));
    let reports = world.pass(&loaded, Trigger::Poll, Some("production")).await;
    let soaking = gateway(&reports, "production", "prod-eu-1");
    assert_eq!(soaking.state, GatewayState::Gated, "{soaking:?}");
    assert!(
        soaking.gated.as_deref().unwrap().contains("soaking"),
        "{soaking:?}"
    );

    world.clock.advance(Duration::from_secs(1));
    let reports = world.pass(&loaded, Trigger::Poll, Some("production")).await;
    for name in ["prod-eu-1", "prod-us-1"] {
        let applied = gateway(&reports, "production", name);
        assert!(
            applied.applied && applied.state == GatewayState::InSync,
            "{applied:?}"
        );
    }
}

/// Production's gateways as `http` ones whose token is in variable `token`.
fn production_over_http(token: &str, gateways: &[&str]) -> Loaded {
    let listed: String = gateways
        .iter()
        .map(|name| {
            format!("  - name: {name}\n    driver: http\n    url: http://127.0.0.1:9\n    tokenEnv: {token}\n")
        })
        .collect();
    example(&[(
        "environments/production/gateways.yaml",
        &format!("gateways:\n{listed}"),
    )])
}

#[tokio::test]
async fn a_rotated_token_replaces_the_driver_rather_than_adding_one() {
    let world = World::new();
    let gateways = ["prod-eu-1", "prod-us-1"];
    world
        .pass(
            &production_over_http("PROD_TOKEN_A", &gateways),
            Trigger::Startup,
            Some("production"),
        )
        .await;
    assert_eq!((world.drivers(), world.fakes.connects()), (2, 2));
    // Unchanged specs reuse their drivers.
    world
        .pass(
            &production_over_http("PROD_TOKEN_A", &gateways),
            Trigger::Poll,
            Some("production"),
        )
        .await;
    assert_eq!((world.drivers(), world.fakes.connects()), (2, 2));
    // A rotated token (a new name for the Secret's new version, as the
    // controller writes it) makes new drivers in place of the old.
    for rotation in ["PROD_TOKEN_B", "PROD_TOKEN_C"] {
        world
            .pass(
                &production_over_http(rotation, &gateways),
                Trigger::Poll,
                Some("production"),
            )
            .await;
        assert_eq!(world.drivers(), 2, "after {rotation}");
    }
    assert_eq!(world.fakes.connects(), 6);
    // A gateway gone from the repository drops its driver; another
    // environment's are not touched.
    world
        .pass(&example(&[]), Trigger::Poll, Some("development"))
        .await;
    world
        .pass(
            &production_over_http("PROD_TOKEN_C", &["prod-eu-1"]),
            Trigger::Poll,
            Some("production"),
        )
        .await;
    assert_eq!(world.drivers(), 2, "prod-eu-1 and dev-1");
}

/// Pinned revisions, by commit, loaded as a pass asks for them.
#[derive(Default)]
struct Repo {
    commits: Mutex<HashMap<String, Arc<Loaded>>>,
    loads: AtomicUsize,
}

#[async_trait]
impl Revisions for Repo {
    async fn load(&self, commit: &str) -> Result<Arc<Loaded>, String> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let commits = self.commits.lock().unwrap();
        commits
            .get(commit)
            .cloned()
            .ok_or_else(|| format!("no commit {commit}"))
    }
}

/// The example at commit `hex` repeated, with `files` over it.
fn commit(hex: char, files: &[(&str, &str)]) -> Arc<Loaded> {
    let mut loaded = example(files);
    loaded.revision = crate::source::Revision::Commit(hex.to_string().repeat(40));
    Arc::new(loaded)
}

/// Production's baseline with a longer retention: another version.
fn longer_retention() -> (&'static str, String) {
    let path = "environments/production/packs/baseline.yaml";
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/config-repo")
            .join(path),
    )
    .unwrap()
    .replace("retention_days: 365", "retention_days: 400");
    (path, text)
}

fn pinned_world(commits: &[&Arc<Loaded>]) -> (World, Arc<Repo>) {
    let mut world = World::new();
    let repo = Arc::new(Repo::default());
    for loaded in commits {
        repo.commits
            .lock()
            .unwrap()
            .insert(loaded.revision.to_string(), (*loaded).clone());
    }
    world.reconciler = world.reconciler.with_revisions(repo.clone());
    (world, repo)
}

fn pin_at(deployment: &Deployment, by: &str, at: crate::ledger::Millis) -> crate::ledger::Pin {
    crate::ledger::Pin {
        environment: deployment.environment.clone(),
        digest: deployment.digest.clone(),
        revision: deployment.revision.clone(),
        reason: Some("incident 7: rollback in review".into()),
        by: by.into(),
        at,
        held_since: None,
        ended_at: None,
        ended_by: None,
        end_reason: None,
    }
}

#[tokio::test]
async fn a_pinned_environment_keeps_its_version_while_the_head_moves_heals_to_it_and_unpins_when_the_head_catches_up()
 {
    let (path, text) = longer_retention();
    let a = commit('a', &[]);
    let b = commit('b', &[(path, &text)]);
    let (world, repo) = pinned_world(&[&a]);
    world.pass(&a, Trigger::Startup, Some("production")).await;
    let ran = world.ledger.deployments("production", 1).unwrap().remove(0);
    world
        .ledger
        .pin(&pin_at(&ran, "alice", world.clock.now()))
        .unwrap();
    // The head still renders it: nothing held back yet, and the pin stays.
    let reports = world.pass(&a, Trigger::Poll, Some("production")).await;
    assert_eq!(
        gateway(&reports, "production", "prod-eu-1").state,
        GatewayState::Pinned
    );
    assert_eq!(world.ledger.pins(None).unwrap()[0].held_since, None);

    // The head moves: the pin holds the gateways where they are.
    let reports = world.pass(&b, Trigger::Poll, Some("production")).await;
    let head = world
        .fakes
        .get("production", "prod-eu-1")
        .digest()
        .expect("runs something");
    assert_eq!(head.as_str(), ran.digest.as_str());
    for name in ["prod-eu-1", "prod-us-1"] {
        let held = gateway(&reports, "production", name);
        assert_eq!(held.state, GatewayState::Pinned, "{held:?}");
        assert!(!held.applied, "{held:?}");
        assert_eq!(held.desired.as_str(), ran.digest.as_str());
        let message = held.pinned.as_deref().unwrap();
        assert!(
            message.contains("alice") && message.contains("(bbbbbbbb) would apply"),
            "{message}"
        );
        assert_eq!(world.fakes.get("production", name).applies(), 1);
    }
    let records = world.ledger.gateways(Some("production")).unwrap();
    assert!(
        records.iter().all(|r| r.state == GatewayState::Pinned
            && r.desired_digest.as_ref() == Some(&ran.digest)
            && r.desired_revision.as_deref() == Some(ran.revision.as_str())),
        "{records:?}"
    );
    assert!(reports[0].converged(), "a pinned environment is settled");

    // A hand edit is put back to the pin, not to the head.
    let edited = world.fakes.get("production", "prod-eu-1");
    edited.edit(EDITED);
    let reports = world.pass(&b, Trigger::Drift, Some("production")).await;
    let healed = gateway(&reports, "production", "prod-eu-1");
    assert!(healed.applied && healed.drift.is_some(), "{healed:?}");
    assert_eq!(healed.state, GatewayState::Pinned);
    assert_eq!(edited.digest().unwrap().as_str(), ran.digest.as_str());
    assert_eq!(
        world.newest("production", "prod-eu-1").start.revision,
        ran.revision
    );
    assert_eq!(
        world.episodes(Some("production"), false)[0].resolution,
        Some(Resolution::Healed)
    );
    assert_eq!(
        repo.loads.load(Ordering::SeqCst),
        1,
        "loaded once while pinned"
    );

    // The branch's head renders the pinned version again: the pin ends.
    let c = commit('c', &[]);
    let reports = world.pass(&c, Trigger::Poll, Some("production")).await;
    assert!(world.ledger.pins(None).unwrap().is_empty());
    let ended = world.ledger.pin_history("production", 1).unwrap().remove(0);
    assert_eq!(ended.end_reason, Some(crate::ledger::PinEnd::CaughtUp));
    assert_eq!(ended.ended_by.as_deref(), Some("sluice"));
    for name in ["prod-eu-1", "prod-us-1"] {
        let report = gateway(&reports, "production", name);
        assert_eq!(report.state, GatewayState::InSync, "{report:?}");
        assert!(report.pinned.is_none() && !report.applied, "{report:?}");
    }
}

#[tokio::test]
async fn a_pin_to_an_older_version_applies_it_and_unpinning_lets_the_head_back() {
    let (path, text) = longer_retention();
    let a = commit('a', &[]);
    let b = commit('b', &[(path, &text)]);
    let (world, _repo) = pinned_world(&[&a]);
    world.pass(&a, Trigger::Startup, Some("production")).await;
    let older = world.ledger.deployments("production", 1).unwrap().remove(0);
    world.pass(&b, Trigger::Poll, Some("production")).await;
    let newer = world.ledger.deployments("production", 1).unwrap().remove(0);
    assert_ne!(older.digest, newer.digest);

    world
        .ledger
        .pin(&pin_at(&older, "bob", world.clock.now()))
        .unwrap();
    let reports = world.pass(&b, Trigger::Poll, Some("production")).await;
    for name in ["prod-eu-1", "prod-us-1"] {
        let back = gateway(&reports, "production", name);
        assert!(
            back.applied && back.state == GatewayState::Pinned,
            "{back:?}"
        );
        let fake = world.fakes.get("production", name);
        assert_eq!(fake.digest().unwrap().as_str(), older.digest.as_str());
    }
    let now_runs = world.ledger.deployments("production", 1).unwrap().remove(0);
    assert_eq!(
        (now_runs.digest.as_str(), now_runs.revision.as_str()),
        (older.digest.as_str(), older.revision.as_str()),
        "the pinned version, from its revision, is what it runs whole"
    );

    world
        .ledger
        .unpin(
            "production",
            world.clock.now(),
            "bob",
            crate::ledger::PinEnd::Unpinned,
        )
        .unwrap();
    let reports = world.pass(&b, Trigger::Poll, Some("production")).await;
    for name in ["prod-eu-1", "prod-us-1"] {
        let head = gateway(&reports, "production", name);
        assert!(
            head.applied && head.state == GatewayState::InSync,
            "{head:?}"
        );
        assert_eq!(head.desired.as_str(), newer.digest.as_str());
    }
}

#[tokio::test]
async fn a_pin_whose_revision_does_not_render_its_digest_holds_and_says_why() {
    let (path, text) = longer_retention();
    let a = commit('a', &[]);
    let b = commit('b', &[(path, &text)]);
    let (world, _repo) = pinned_world(&[&a]);
    world.pass(&a, Trigger::Startup, Some("production")).await;
    let mut wrong = world.ledger.deployments("production", 1).unwrap().remove(0);
    wrong.digest = format!("sha256:{}", "0".repeat(64)).into();
    world.ledger.pin(&pin_at(&wrong, "carol", 0)).unwrap();
    let ran = world.fakes.get("production", "prod-eu-1").digest();

    let reports = world.pass(&b, Trigger::Poll, Some("production")).await;
    let held = gateway(&reports, "production", "prod-eu-1");
    assert_eq!(held.state, GatewayState::Pinned, "{held:?}");
    assert!(!held.applied);
    let why = held.gated.as_deref().unwrap();
    assert!(
        why.contains("renders") && why.contains("nothing applied"),
        "{why}"
    );
    assert_eq!(world.fakes.get("production", "prod-eu-1").digest(), ran);

    // Without a way to load revisions, a pin to another holds too.
    let world = World::new();
    world.pass(&a, Trigger::Startup, Some("production")).await;
    let ran = world.ledger.deployments("production", 1).unwrap().remove(0);
    world.ledger.pin(&pin_at(&ran, "carol", 0)).unwrap();
    let reports = world.pass(&b, Trigger::Poll, Some("production")).await;
    let held = gateway(&reports, "production", "prod-us-1");
    assert!(
        !held.applied && held.state == GatewayState::Pinned,
        "{held:?}"
    );
    assert!(held.gated.as_deref().unwrap().contains("cannot be read"));
}

/// The example's production with `extra` in its environment.yaml.
fn production_spec(extra: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/config-repo/environments/production/environment.yaml");
    format!("{}{extra}", std::fs::read_to_string(path).unwrap())
}

const PRODUCTION_SPEC: &str = "environments/production/environment.yaml";

/// A suite production passes as the example has it: a card is blocked.
const CARDS: &str = "suite: cards\ncases:\n  - name: a card is blocked\n    fixture: ticket-with-card\n    expect: { outcome: blocked, policies: [pii-detector] }\n";

#[tokio::test]
async fn an_eval_environment_runs_every_suite_on_a_new_version_after_a_reset_and_records_it() {
    let world = World::new();
    let loaded = example(&[]);
    world.pass(&loaded, Trigger::Startup, Some("eval")).await;
    let runs = world.ledger.eval_runs("eval", None, 10).unwrap();
    let mut suites: Vec<(&str, u32, u32)> = runs
        .iter()
        .map(|r| (r.suite.as_str(), r.passed, r.failed))
        .collect();
    suites.sort();
    assert_eq!(
        suites,
        [("injection", 2, 0), ("models", 2, 0), ("pii", 3, 0)],
        "{runs:?}"
    );
    let deployed = world.ledger.deployments("eval", 1).unwrap().remove(0);
    assert!(
        runs.iter()
            .all(|r| r.digest == deployed.digest && r.packs == deployed.packs)
    );
    let gateway = world.fakes.get("eval", "eval-1");
    assert_eq!(gateway.resets(), 3, "reset before each suite");

    // The same version again: nothing runs.
    world.pass(&loaded, Trigger::Poll, Some("eval")).await;
    assert_eq!(world.ledger.eval_runs("eval", None, 10).unwrap().len(), 3);
    assert_eq!(gateway.resets(), 3);

    // Another version: reset and run again; production, never verified, is not.
    let (path, text) = longer_retention();
    let eval_path = path.replace("production", "eval");
    world
        .pass(&example(&[(&eval_path, &text)]), Trigger::Poll, None)
        .await;
    assert_eq!(world.ledger.eval_runs("eval", None, 10).unwrap().len(), 6);
    assert_eq!(gateway.resets(), 6);
    assert!(
        world
            .ledger
            .eval_runs("production", None, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        world.fakes.get("production", "prod-eu-1").resets(),
        0,
        "never reset"
    );
}

#[tokio::test]
async fn a_verification_failure_in_production_rolls_back_pins_and_alerts_and_keeps_every_record() {
    let spec = production_spec("verify: { suites: [cards], onFailure: rollback }\n");
    let good = commit(
        'a',
        &[(PRODUCTION_SPEC, &spec), ("evals/cards.eval.yaml", CARDS)],
    );
    // A change that stops detecting cards in production.
    let overlay = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/config-repo/environments/production/packs/baseline.yaml"),
    )
    .unwrap()
    .replace(
        "    action: block\n    pci_mode",
        "    action: block\n    detect_patterns: [email]\n    pci_mode",
    );
    let bad = commit(
        'b',
        &[
            (PRODUCTION_SPEC, &spec),
            ("evals/cards.eval.yaml", CARDS),
            ("environments/production/packs/baseline.yaml", &overlay),
        ],
    );
    let (mut world, _repo) = pinned_world(&[&good]);
    let alerts = Arc::new(Kept::default());
    world.reconciler = world.reconciler.with_alerts(alerts.clone());
    world
        .pass(&good, Trigger::Startup, Some("production"))
        .await;
    let v1 = world.ledger.deployments("production", 1).unwrap().remove(0);
    let runs = world
        .ledger
        .eval_runs("production", Some("cards"), 10)
        .unwrap();
    assert_eq!((runs[0].passed, runs[0].failed), (2, 0), "{runs:?}");
    assert!(alerts.events().is_empty());

    world.clock.advance(Duration::from_secs(60));
    let reports = world.pass(&bad, Trigger::Poll, Some("production")).await;
    // It ran the bad version whole, the suite caught it, and it is back.
    let deployments = world.ledger.deployments("production", 10).unwrap();
    assert_eq!(deployments.len(), 3, "v1, v2, v1 again: {deployments:?}");
    assert_eq!(deployments[0].digest, v1.digest);
    assert_ne!(deployments[1].digest, v1.digest);
    let v2 = &deployments[1];
    for name in ["prod-eu-1", "prod-us-1"] {
        let fake = world.fakes.get("production", name);
        assert_eq!(
            fake.digest().unwrap().as_str(),
            v1.digest.as_str(),
            "{name} is back on v1"
        );
        assert_eq!(fake.applies(), 3);
        let report = gateway(&reports, "production", name);
        assert_eq!(report.state, GatewayState::Pinned, "{report:?}");
    }
    let failed = world
        .ledger
        .eval_runs("production", Some("cards"), 10)
        .unwrap();
    // Newest first: v1 checked again once back, after v2 failed.
    assert_eq!(failed[0].digest, v1.digest);
    assert_eq!(failed[0].failed, 0);
    let failed = &failed[1..];
    assert_eq!(failed[0].digest, v2.digest);
    assert_eq!(failed[0].failed, 2, "both gateways let the card through");
    assert!(
        failed[0].failures[0]
            .reason
            .contains("outcome: expected blocked, found allowed")
    );
    let pin = world.ledger.pins(Some("production")).unwrap().remove(0);
    assert_eq!(
        (pin.digest.as_str(), pin.by.as_str()),
        (v1.digest.as_str(), "sluice")
    );
    assert!(
        pin.reason
            .as_deref()
            .unwrap()
            .contains("suite cards: 2 of 2 cases failed"),
        "{pin:?}"
    );
    assert_eq!(alerts.events(), ["verification-failed", "rolled-back"]);
    // Every attempt is in the ledger, finished: v1, v2, and v1 on rollback.
    let history = world
        .ledger
        .history("production", Some("prod-eu-1"), 10)
        .unwrap();
    let triggers: Vec<(&str, &str)> = history
        .iter()
        .map(|a| (a.start.trigger.as_str(), a.start.digest.as_str()))
        .collect();
    assert_eq!(
        triggers,
        [
            ("rollback", v1.digest.as_str()),
            ("poll", v2.digest.as_str()),
            ("startup", v1.digest.as_str())
        ]
    );
    assert!(
        history.iter().all(|a| a.finished_at.is_some()),
        "{history:?}"
    );

    // The bad head stays held back; nothing more runs or alerts.
    world.pass(&bad, Trigger::Poll, Some("production")).await;
    assert_eq!(world.fakes.get("production", "prod-eu-1").applies(), 3);
    assert_eq!(alerts.events().len(), 2);
}

#[tokio::test]
async fn an_eval_gate_holds_production_until_the_suites_passed_in_staging_on_the_same_packs() {
    let spec =
        production_spec("").replace("  from: staging\n", "  from: staging\n  evals: [models]\n");
    let first = example(&[(PRODUCTION_SPEC, &spec)]);
    let world = World::new();
    let reports = world.pass(&first, Trigger::Startup, None).await;
    // Staging ran it and its suites; production could not know yet.
    let held = gateway(&reports, "production", "prod-eu-1");
    assert_eq!(held.state, GatewayState::Gated, "{held:?}");
    assert!(
        held.gated
            .as_deref()
            .unwrap_or_default()
            .contains("baseline 1.4.0 (sha256:b44571af3fe6): staging does not run it"),
        "{held:?}"
    );
    let staging = world
        .ledger
        .eval_runs("staging", Some("models"), 1)
        .unwrap();
    assert_eq!(staging[0].failed, 0, "{staging:?}");
    let reports = world.pass(&first, Trigger::Poll, None).await;
    assert_eq!(
        gateway(&reports, "production", "prod-eu-1").state,
        GatewayState::InSync
    );
    let v1 = world.fakes.get("production", "prod-eu-1").digest();

    // A base change that breaks the suite in staging never reaches production.
    let models = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/config-repo/base/packs/models.yaml"),
    )
    .unwrap()
    .replace("version: 2.1.0", "version: 2.2.0")
    .replace(
        "models: [gpt-4o, gpt-4o-mini, claude-sonnet-4]",
        "models: [gpt-4o, gpt-4o-mini]",
    );
    let second = example(&[
        (PRODUCTION_SPEC, &spec),
        ("base/packs/models.yaml", &models),
    ]);
    world.pass(&second, Trigger::Poll, None).await;
    let reports = world.pass(&second, Trigger::Poll, None).await;
    let held = gateway(&reports, "production", "prod-eu-1");
    assert_eq!(held.state, GatewayState::Gated, "{held:?}");
    assert!(
        held.gated
            .as_deref()
            .unwrap_or_default()
            .contains("suite models failed in staging (1 failed: an approved model is served)"),
        "{held:?}"
    );
    assert_eq!(
        world.fakes.get("production", "prod-eu-1").digest(),
        v1,
        "production keeps v1"
    );
}
