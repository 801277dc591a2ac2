//! Promotion gates, driven by an injected clock: the reconciler (the
//! library, as `sluice run` uses it) against real reference gateways and a
//! real SQLite ledger. Production waits until staging has run the same
//! pack digests for the soak, then applies by itself.

use crate::support::{GatewayProcess, TestRepo};
use sluice::{
    config::{Limits, load},
    gateway::DriverContext,
    ledger::{GatewayState, SqliteLedger, Trigger},
    reconcile::{ManualClock, NoProgress, Options, Pass, Reconciler},
    source::GitSnapshot,
};
use std::{collections::BTreeMap, sync::Arc, time::Duration};

const TOKEN_ENV: &str = "GATE_GATEWAY_TOKEN";
const TOKEN: &str = "gate-gw-token-31c";
const MINUTE: Duration = Duration::from_secs(60);

struct Setup {
    repo: TestRepo,
    clock: Arc<ManualClock>,
    reconciler: Reconciler,
    _gateways: Vec<GatewayProcess>,
    _dirs: Vec<tempfile::TempDir>,
}

/// Staging and production on one reference gateway each; production
/// promoted from staging with a one-hour soak.
fn setup() -> Setup {
    let repo = TestRepo::example();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let gateways: Vec<GatewayProcess> = dirs
        .iter()
        .map(|d| {
            GatewayProcess::start(
                &[
                    "--data",
                    d.path().to_str().unwrap(),
                    "--token-env",
                    TOKEN_ENV,
                ],
                &[(TOKEN_ENV, TOKEN)],
            )
        })
        .collect();
    for (env, gateway) in ["staging", "production"].iter().zip(&gateways) {
        repo.write(
            &format!("environments/{env}/gateways.yaml"),
            format!(
                "gateways:\n  - name: {env}-1\n    driver: http\n    url: {}\n    tokenEnv: {TOKEN_ENV}\n",
                gateway.url
            ),
        );
    }
    let spec = repo.read("environments/production/environment.yaml");
    repo.write(
        "environments/production/environment.yaml",
        spec.replace("  # soak: 1h ", "  soak: 1h   "),
    );
    repo.commit("gated production");

    let clock = Arc::new(ManualClock::at(1_750_000_000_000));
    let data = tempfile::tempdir().unwrap();
    let ledger = SqliteLedger::open(&data.path().join("state.db")).unwrap();
    let mut context = DriverContext::new(data.path().to_owned());
    let allowances = sluice::config::Allowances::new(
        vec![format!("*={TOKEN_ENV}").parse().unwrap()],
        vec!["*=http://127.0.0.1:*".parse().unwrap()],
    );
    context.secrets = sluice::gateway::Secrets::new(
        Arc::new(|name| (name == TOKEN_ENV).then(|| TOKEN.to_owned())),
        Arc::new(allowances),
    );
    let reconciler = Reconciler::new(Arc::new(ledger), clock.clone(), context, Options::default());
    Setup {
        repo,
        clock,
        reconciler,
        _gateways: gateways,
        _dirs: dirs.into_iter().chain([data]).collect(),
    }
}

impl Setup {
    /// One pass over the branch head; each environment's gateway states.
    fn pass(&self) -> BTreeMap<String, (GatewayState, Option<String>)> {
        let snapshot = GitSnapshot::open(self.repo.path(), "main").unwrap();
        let loaded = load(&snapshot, &Limits::default()).unwrap();
        assert!(loaded.repository.is_some(), "{:?}", loaded.findings);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let pass = runtime
            .block_on(
                self.reconciler
                    .pass(&loaded, Trigger::Poll, None, &NoProgress),
            )
            .unwrap();
        let Pass::Reconciled { environments, .. } = pass else {
            panic!("the revision is valid")
        };
        environments
            .into_iter()
            .flat_map(|e| e.gateways)
            .map(|g| (g.environment, (g.state, g.gated)))
            .collect()
    }

    fn state(&self, env: &str) -> (GatewayState, Option<String>) {
        self.pass().remove(env).unwrap()
    }
}

#[test]
fn production_waits_for_the_staging_soak_then_applies_by_itself() {
    let setup = setup();
    let first = setup.pass();
    assert_eq!(first["staging"].0, GatewayState::InSync);
    let (state, why) = &first["production"];
    assert_eq!(*state, GatewayState::Gated, "nothing has soaked yet");
    let why = why.as_deref().unwrap();
    assert!(why.contains("staging"), "{why}");

    setup.clock.advance(30 * MINUTE);
    let (state, why) = setup.state("production");
    assert_eq!(state, GatewayState::Gated);
    assert!(
        why.as_deref().unwrap().contains("30m of 1h00m to go"),
        "{why:?}"
    );

    setup.clock.advance(31 * MINUTE);
    assert_eq!(setup.state("production").0, GatewayState::InSync);
    let runs = setup
        .reconciler
        .ledger()
        .deployments("production", 1)
        .unwrap();
    assert_eq!(runs.len(), 1, "production ran its first version whole");

    // A change to a shared pack: staging takes it at once, production only
    // that pack's new version after the soak.
    let models = setup.repo.read("base/packs/models.yaml");
    setup
        .repo
        .write("base/packs/models.yaml", models.replace("600", "450"));
    setup.repo.commit("lower the rate limit");
    let after = setup.pass();
    assert_eq!(after["staging"].0, GatewayState::InSync);
    let (state, why) = &after["production"];
    assert_eq!(*state, GatewayState::Gated);
    let why = why.as_deref().unwrap();
    assert!(why.contains("models"), "{why}");
    assert!(
        !why.contains("baseline"),
        "unchanged packs are not held: {why}"
    );

    setup.clock.advance(59 * MINUTE);
    assert_eq!(setup.state("production").0, GatewayState::Gated);
    setup.clock.advance(2 * MINUTE);
    assert_eq!(setup.state("production").0, GatewayState::InSync);
}

#[test]
fn a_merged_promotion_is_held_with_its_source_then_applied() {
    let setup = setup();
    setup.pass();
    setup.clock.advance(61 * MINUTE);
    assert_eq!(setup.state("production").0, GatewayState::InSync);

    // A new pack lands in staging and runs there.
    setup.repo.write(
        "environments/staging/packs/support.yaml",
        "pack:\n  name: support\n  version: 2.4.0\npolicies:\n  chain: [prompt-injection]\npolicy:\n  prompt-injection:\n    action: block\n    threshold: 0.6\n",
    );
    let staged = setup.repo.commit("support pack in staging");
    assert_eq!(setup.state("staging").0, GatewayState::InSync);

    // Promoted by pull request: the branch is merged as it is.
    let promote = setup
        .repo
        .sluice(&["promote", "staging", "production", "-o", "json"]);
    assert_eq!(promote.code, 0, "{}{}", promote.stdout, promote.stderr);
    let branch = promote.json()["branch"].as_str().unwrap().to_owned();
    setup.repo.git(&["merge", "-q", "--ff-only", &branch]);

    let (state, why) = setup.state("production");
    assert_eq!(state, GatewayState::Gated);
    let why = why.unwrap();
    assert!(why.contains("support 2.4.0"), "{why}");
    assert!(
        why.contains(&format!("(promoted from staging@{})", &staged[..8])),
        "the gate read the promotion trailer: {why}"
    );
    setup.clock.advance(61 * MINUTE);
    assert_eq!(setup.state("production").0, GatewayState::InSync);
}
