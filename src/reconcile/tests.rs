//! The reconciler in process: fake gateways (in memory, edited by hand or
//! made to refuse), the in-memory ledger and a manual clock drive `pass`
//! with no process, file or socket. The process-level tests (`tests/it`)
//! run the same passes through the real drivers.

use super::*;
use crate::{config::Limits, gateway::Problem, ledger::MemoryLedger, source::WorkTree};
use async_trait::async_trait;
use serde_json::Value;
use std::{sync::atomic::AtomicUsize, time::Duration};

/// A gateway that keeps its config in memory.
#[derive(Default)]
struct Fake {
    running: Mutex<Option<(Digest, Arc<str>)>>,
    applies: AtomicUsize,
    /// Refuses every apply (a `422`).
    refuse: AtomicBool,
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
fn example(files: &[(&str, &str)]) -> Loaded {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo");
    let dir = tempfile::tempdir().unwrap();
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(example.join("."))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(copied.success());
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
    assert_eq!(head.as_str(), ran.digest);
    for name in ["prod-eu-1", "prod-us-1"] {
        let held = gateway(&reports, "production", name);
        assert_eq!(held.state, GatewayState::Pinned, "{held:?}");
        assert!(!held.applied, "{held:?}");
        assert_eq!(held.desired.as_str(), ran.digest);
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
            && r.desired_digest.as_deref() == Some(ran.digest.as_str())
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
    assert_eq!(edited.digest().unwrap().as_str(), ran.digest);
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
        assert_eq!(fake.digest().unwrap().as_str(), older.digest);
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
        assert_eq!(head.desired.as_str(), newer.digest);
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
    wrong.digest = format!("sha256:{}", "0".repeat(64));
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
