//! `sluice pin` and `sluice unpin` against a real `sluice run`, a real git
//! repository and a reference gateway: the pin holds the gateway while the
//! branch moves, status says so, and unpinning lets it converge.

use crate::support::{GatewayProcess, TestRepo, eventually, http, sluice_with};
use serde_json::Value;
use tempfile::TempDir;

const TOKEN_ENV: &str = "PROD_GATEWAY_TOKEN";
const TOKEN: &str = "prod-gw-token-5e1a";
const API_TOKEN: &str = "pin-api-token-77c2";
const ADMIN_TOKEN: &str = "pin-admin-token-03f9";

struct World {
    repo: TestRepo,
    data: TempDir,
    gateway: GatewayProcess,
    _gateway_dir: TempDir,
}

impl World {
    fn new() -> World {
        let repo = TestRepo::example();
        let gateway_dir = tempfile::tempdir().unwrap();
        let gateway = GatewayProcess::start(
            &[
                "--token-env",
                TOKEN_ENV,
                "--data",
                gateway_dir.path().to_str().unwrap(),
            ],
            &[(TOKEN_ENV, TOKEN)],
        );
        repo.write(
            "environments/production/gateways.yaml",
            format!(
                "gateways:\n  - name: gw-0\n    driver: http\n    url: {}\n    tokenEnv: {TOKEN_ENV}\n    timeout: 2s\n",
                gateway.url
            ),
        );
        repo.commit("production on a reference gateway");
        World {
            repo,
            data: tempfile::tempdir().unwrap(),
            gateway,
            _gateway_dir: gateway_dir,
        }
    }

    fn sluice(&self, args: &[&str]) -> crate::support::Run {
        let mut all = args.to_vec();
        all.extend([
            "--repo",
            self.repo.path().to_str().unwrap(),
            "--data-dir",
            self.data.path().to_str().unwrap(),
        ]);
        sluice_with(
            &all,
            &[
                (TOKEN_ENV, TOKEN),
                ("SLUICE_API_TOKEN", API_TOKEN),
                ("USER", "oncall-bob"),
            ],
        )
    }

    fn run(&self) -> GatewayProcess {
        let tokens = format!("alice@production:{API_TOKEN},admin:{ADMIN_TOKEN}");
        GatewayProcess::spawn(
            &[
                "run",
                "--repo",
                self.repo.path().to_str().unwrap(),
                "--data-dir",
                self.data.path().to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--interval",
                "1h",
            ],
            &[(TOKEN_ENV, TOKEN), ("SLUICE_API_TOKENS", &tokens)],
        )
    }

    fn desired(&self) -> String {
        let render = self.repo.sluice(&[
            "render",
            "production",
            "--gateway",
            "gw-0",
            "--rev",
            "HEAD",
            "-o",
            "json",
        ]);
        render.json()[0]["digest"].as_str().unwrap().to_owned()
    }

    fn live(&self) -> String {
        let auth = format!("Bearer {TOKEN}");
        let (_, body) = http(
            "GET",
            &format!("{}/sluice/v1/status", self.gateway.url),
            &[("authorization", &auth)],
            "",
        );
        let status: Value = serde_json::from_str(&body).unwrap_or_default();
        status["digest"].as_str().unwrap_or_default().to_owned()
    }

    fn status(&self, server: &str) -> Value {
        let run = self.sluice(&[
            "status",
            "--env",
            "production",
            "--server",
            server,
            "-o",
            "json",
        ]);
        assert!(run.code <= 1, "{}{}", run.stdout, run.stderr);
        run.json()
    }
}

fn sync(server: &str) {
    let auth = format!("Bearer {API_TOKEN}");
    let (status, body) = http(
        "POST",
        &format!("{server}/api/v1/sync?env=production"),
        &[("authorization", &auth)],
        "",
    );
    assert_eq!(status, 202, "{body}");
}

fn head(repo: &TestRepo) -> String {
    repo.git(&["rev-parse", "HEAD"]).trim().to_owned()
}

#[test]
fn a_pin_holds_the_gateway_while_the_branch_moves_and_unpin_lets_it_converge() {
    let world = World::new();
    let v1 = world.desired();
    let first = head(&world.repo);
    let run = world.run();
    let server = format!("http://{}", run.address());
    eventually(30, "production runs the head", || world.live() == v1);
    eventually(30, "production's version is recorded", || {
        world.status(&server)["gateways"][0]["state"] == "in-sync"
    });

    // Pinned through the API: the token's name is who.
    let pinned = world.sluice(&[
        "pin",
        "production",
        "--reason",
        "incident 7: rollback in review",
        "--server",
        &server,
        "-o",
        "json",
    ]);
    assert_eq!(pinned.code, 0, "{}{}", pinned.stdout, pinned.stderr);
    let pin = &pinned.json()["pin"];
    assert_eq!(pin["by"], "alice", "{pin}");
    assert_eq!(pin["digest"], v1.as_str());
    assert_eq!(pin["revision"], first.as_str());

    // The API asks for a token whose scope covers the environment.
    let pin_url = |env: &str| format!("{server}/api/v1/environments/{env}/pin");
    let bearer = |token: &str| format!("Bearer {token}");
    let (code, _) = http("GET", &pin_url("production"), &[], "");
    assert_eq!(code, 401);
    let alice = bearer(API_TOKEN);
    let (code, _) = http(
        "DELETE",
        &pin_url("staging"),
        &[("authorization", &alice)],
        "",
    );
    assert_eq!(code, 403);
    let admin = bearer(ADMIN_TOKEN);
    let (code, _) = http("GET", &pin_url("nowhere"), &[("authorization", &admin)], "");
    assert_eq!(code, 404);
    let (code, body) = http(
        "GET",
        &pin_url("production"),
        &[("authorization", &alice)],
        "",
    );
    assert_eq!(code, 200, "{body}");
    let shown: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(shown["pin"]["reason"], "incident 7: rollback in review");

    // A version the environment never ran is refused, naming what it ran.
    let never = world.sluice(&["pin", "production", "--to", "deadbeef", "--server", &server]);
    assert_ne!(never.code, 0);
    assert!(never.stderr.contains(&first[..8]), "{}", never.stderr);

    // The branch moves on; the gateway stays on the pin.
    let overlay = world
        .repo
        .read("environments/production/packs/baseline.yaml");
    world.repo.write(
        "environments/production/packs/baseline.yaml",
        overlay.replace("retention_days: 365", "retention_days: 400"),
    );
    let second = world.repo.commit("production keeps 400 days");
    let v2 = world.desired();
    assert_ne!(v1, v2);
    sync(&server);
    // NB: the revision is recorded as the pass starts and the gateway's
    // record as it ends: wait for the note naming what the new head renders.
    eventually(30, "the pass over the new head", || {
        let status = world.status(&server);
        status["revision"]["commit"] == second.as_str()
            && status["gateways"][0]["state"] == "pinned"
            && status["gateways"][0]["error"]
                .as_str()
                .is_some_and(|note| note.contains(&v2[..19]))
    });
    assert_eq!(world.live(), v1, "the head's version is not applied");
    let status = world.status(&server);
    let gateway = &status["gateways"][0];
    assert_eq!(gateway["desiredDigest"], v1.as_str(), "{status}");
    let note = gateway["error"].as_str().unwrap();
    assert!(
        note.contains(&v2[..19]),
        "what the head would apply: {note}"
    );
    assert_eq!(
        status["pins"][0]["reason"],
        "incident 7: rollback in review"
    );
    let table = world.sluice(&["status", "--server", &server, "--env", "production"]);
    assert!(
        table.stdout.contains("production is PINNED") && table.stdout.contains("alice"),
        "{}",
        table.stdout
    );

    // Unpinned in the ledger file (beside the running server), as the OS user.
    let unpinned = world.sluice(&["unpin", "production", "-o", "json"]);
    assert_eq!(unpinned.code, 0, "{}{}", unpinned.stdout, unpinned.stderr);
    assert_eq!(unpinned.json()["unpinned"]["endedBy"], "oncall-bob");
    sync(&server);
    eventually(30, "production converges on the head", || {
        world.live() == v2
    });
    eventually(30, "and says so", || {
        let status = world.status(&server);
        status["gateways"][0]["state"] == "in-sync" && status["pins"].is_null()
    });
    let again = world.sluice(&["unpin", "production"]);
    assert!(again.stdout.contains("was not pinned"), "{}", again.stdout);
}
