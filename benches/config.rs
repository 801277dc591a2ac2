//! Benchmark of loading, validating and rendering a large repository.
//!
//! `cargo bench --bench config` generates a synthetic repository of 100
//! environments × 100 pack files (10,000 packs, 10 gateways each, 1,000
//! gateways in all), commits it, and measures, each in a fresh process so
//! every run is cold:
//!
//! - validate + render of the whole repository from git objects (median of
//!   5 runs) and the peak RSS of that process;
//! - the same after a one-file change, cold, and in a long-running process
//!   that loaded the commit before it (files reused by git blob id, as
//!   `sluice run` and the controller do; median of 5, each in its own
//!   process);
//! - the `sluice validate --rev HEAD` command end to end;
//! - `sluice plan` between the last two revisions, end to end;
//! - `check-jsonschema` (PyPI) on the same files, when it is installed.
//!
//! Figures are written to BENCHMARKS.md by hand from this output.

mod common;

use common::{git, write};

use sluice::{
    config::{Allowances, Limits, Reuse, load, load_reusing, load_with, render_all},
    source::GitSnapshot,
};
use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

/// The operator's allowances of the benchmark: its gateways are on loopback
/// and their token is `GW_TOKEN`; production alerts go to `ALERT_URL`.
const OPERATOR: [(&str, &str); 2] = [
    ("SLUICE_ALLOW_ENV", "*=GW_TOKEN,*=ALERT_URL"),
    ("SLUICE_ALLOW_URL", "*=http://127.0.0.1:*"),
];

const ENVIRONMENTS: usize = 100;
const PACKS_PER_ENVIRONMENT: usize = 100;
const BASE_PACKS: usize = 10;
const GATEWAYS_PER_ENVIRONMENT: usize = 10;
const RUNS: usize = 5;

fn main() {
    // Child mode: one cold load + render, reporting time and peak RSS.
    if let Ok(repo) = std::env::var("SLUICE_BENCH_CHILD") {
        child(Path::new(&repo));
        return;
    }
    if let Ok(repo) = std::env::var("SLUICE_BENCH_REUSE_CHILD") {
        reuse_child(Path::new(&repo));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // SLUICE_BENCH_DIR keeps the generated repository for profiling.
    let dir = tempfile::tempdir().expect("temp dir");
    let kept = std::env::var_os("SLUICE_BENCH_DIR").map(PathBuf::from);
    if let Some(kept) = &kept {
        let _ = fs::remove_dir_all(kept);
        fs::create_dir_all(kept).unwrap();
    }
    let repo = kept.as_deref().unwrap_or(dir.path());
    let started = Instant::now();
    generate(repo);
    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "synthetic"]);
    println!(
        "generated {ENVIRONMENTS} environments × {PACKS_PER_ENVIRONMENT} packs in {:.1?}",
        started.elapsed()
    );

    measure(
        repo,
        "cold validate + render, fresh commit (10,000 loose objects)",
    );
    git(repo, &["gc", "-q"]);
    measure(
        repo,
        "cold validate + render, packed objects (as after a fetch)",
    );
    let env0 = repo.join("environments/env-000/packs/pack-050.yaml");
    let text = fs::read_to_string(&env0).unwrap();
    fs::write(
        &env0,
        text.replace("requests_per_minute: 51", "requests_per_minute: 52"),
    )
    .unwrap();
    git(repo, &["commit", "-q", "-am", "one file"]);
    measure(repo, "re-validate + render after a one-file change");
    measure_reuse(repo);

    let binary = sluice_binary();
    let cli = median(|| {
        let start = Instant::now();
        let status = Command::new(&binary)
            .envs(OPERATOR)
            .args(["validate", "--rev", "HEAD", "--repo"])
            .arg(repo)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("sluice runs");
        assert!(status.success());
        start.elapsed()
    });
    println!("`sluice validate --rev HEAD` end to end: median {cli:.1?}");
    let plan = median(|| {
        let start = Instant::now();
        let status = Command::new(&binary)
            .args(["plan", "--base", "HEAD~1", "--head", "HEAD", "--repo"])
            .arg(repo)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("sluice runs");
        assert!(status.success());
        start.elapsed()
    });
    println!(
        "`sluice plan --base HEAD~1 --head HEAD` (two full revisions) end to end: median {plan:.1?} (goal < 2 s)"
    );
    check_jsonschema(repo, &binary, cli);
}

/// Runs this executable as the child `mode` names (an environment variable
/// set to the repository) and returns the numbers it printed.
fn run_child(mode: &str, repo: &Path) -> Vec<u64> {
    let output = Command::new(std::env::current_exe().unwrap())
        .env(mode, repo)
        .output()
        .expect("bench child runs");
    assert!(
        output.status.success(),
        "bench child: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(|f| f.parse().expect("a number"))
        .collect()
}

/// Runs the child mode RUNS times and prints the median time and peak RSS.
fn measure(repo: &Path, label: &str) -> Duration {
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..RUNS {
        let fields = run_child("SLUICE_BENCH_CHILD", repo);
        let (micros, kib) = (fields[0], fields[1]);
        times.push(Duration::from_micros(micros));
        rss.push(kib);
    }
    times.sort();
    rss.sort();
    let median = times[RUNS / 2];
    println!(
        "{label}: median {median:.1?} (min {:.1?}, max {:.1?}), peak RSS {} MiB",
        times[0],
        times[RUNS - 1],
        rss[RUNS - 1] / 1024
    );
    median
}

fn child(repo: &Path) {
    let start = Instant::now();
    let snapshot = GitSnapshot::open(repo, "HEAD").expect("open");
    let loaded = load(&snapshot, &Limits::default()).expect("load");
    assert!(
        !loaded.has_errors(),
        "{:?}",
        &loaded.findings[..3.min(loaded.findings.len())]
    );
    let repository = loaded.repository.as_ref().unwrap();
    let rendered = render_all(repository, None);
    assert_eq!(rendered.len(), ENVIRONMENTS * GATEWAYS_PER_ENVIRONMENT);
    let elapsed = start.elapsed();
    println!("{} {}", elapsed.as_micros(), peak_rss_kib());
}

/// The operator's allowances, as `OPERATOR` gives them to the binary.
fn allowances() -> Allowances {
    Allowances::new(
        vec![
            "*=GW_TOKEN".parse().unwrap(),
            "*=ALERT_URL".parse().unwrap(),
        ],
        vec!["*=http://127.0.0.1:*".parse().unwrap()],
    )
}

/// A long-running process's view of a one-file change: HEAD~1 loaded
/// first (as the revision running), then HEAD validated and rendered
/// reusing its files, then HEAD again without reuse, for the side by side.
fn reuse_child(repo: &Path) {
    let limits = Limits::default();
    let allowances = allowances();
    let reuse = Reuse::new();
    let before = GitSnapshot::open(repo, "HEAD~1").expect("open");
    let loaded = load_reusing(&before, &limits, &allowances, &reuse).expect("load");
    assert!(!loaded.has_errors());
    // As the running revision, it was rendered too.
    render_all(loaded.repository.as_ref().unwrap(), None);
    drop(loaded);
    let timed = |reuse: Option<&Reuse>| {
        let start = Instant::now();
        let snapshot = GitSnapshot::open(repo, "HEAD").expect("open");
        let loaded = match reuse {
            Some(reuse) => load_reusing(&snapshot, &limits, &allowances, reuse),
            None => load_with(&snapshot, &limits, &allowances),
        }
        .expect("load");
        assert!(!loaded.has_errors());
        let validated = start.elapsed();
        let rendered = render_all(loaded.repository.as_ref().unwrap(), None);
        assert_eq!(rendered.len(), ENVIRONMENTS * GATEWAYS_PER_ENVIRONMENT);
        (start.elapsed(), validated)
    };
    let (reused, validated) = timed(Some(&reuse));
    // SLUICE_BENCH_REPEAT=N loads HEAD N more times, every file reused, for
    // a profile of what reuse leaves.
    let repeat: usize = std::env::var("SLUICE_BENCH_REPEAT").map_or(0, |n| n.parse().unwrap());
    for _ in 0..repeat {
        timed(Some(&reuse));
    }
    let (fresh, _) = timed(None);
    println!(
        "{} {} {} {} {}",
        reused.as_micros(),
        fresh.as_micros(),
        peak_rss_kib(),
        reuse.text_bytes(),
        validated.as_micros()
    );
}

/// Runs the reuse child RUNS times: the one-file change reusing the
/// commit before it, against a fresh load in the same process.
fn measure_reuse(repo: &Path) {
    let mut reused = Vec::new();
    let mut validated = Vec::new();
    let mut fresh = Vec::new();
    let mut rss = 0;
    let mut kept = 0;
    for _ in 0..RUNS {
        let fields = run_child("SLUICE_BENCH_REUSE_CHILD", repo);
        reused.push(Duration::from_micros(fields[0]));
        fresh.push(Duration::from_micros(fields[1]));
        rss = rss.max(fields[2]);
        kept = fields[3];
        validated.push(Duration::from_micros(fields[4]));
    }
    reused.sort();
    validated.sort();
    fresh.sort();
    println!(
        "one-file change in a long-running process, files reused by blob id: median {:.1?} (min {:.1?}, max {:.1?}; goal < 100 ms), of which validation {:.1?}; the same load fresh in that process: median {:.1?}; peak RSS {} MiB, {} KiB of file text kept",
        reused[RUNS / 2],
        reused[0],
        reused[RUNS - 1],
        validated[RUNS / 2],
        fresh[RUNS / 2],
        rss / 1024,
        kept / 1024
    );
}

/// VmHWM: the process's peak resident set, in KiB.
fn peak_rss_kib() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut f: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS).map(|_| f()).collect();
    times.sort();
    times[RUNS / 2]
}

fn generate(repo: &Path) {
    let order: Vec<String> = (0..3).map(|i| format!("env-{i:03}")).collect();
    write(
        repo,
        "sluice.yaml",
        &format!("promotion:\n  order: [{}]\n", order.join(", ")),
    );
    for b in 0..BASE_PACKS {
        write(
            repo,
            &format!("base/packs/base-{b:02}.yaml"),
            &pack(&format!("base-{b:02}"), b),
        );
    }
    for e in 0..ENVIRONMENTS {
        let slug = format!("env-{e:03}");
        let dir = format!("environments/{slug}");
        let mut env = format!("slug: {slug}\nname: Environment {e}\nenforcement: enforce\n");
        if (1..3).contains(&e) {
            let _ = writeln!(env, "promotion: {{ from: env-{:03}, soak: 1h }}", e - 1);
        }
        if e % 10 == 0 {
            env.push_str(
                "isProduction: true\nalerts:\n  - webhook: { urlEnv: ALERT_URL, format: slack }\n",
            );
        }
        write(repo, &format!("{dir}/environment.yaml"), &env);
        let mut gateways = String::from("gateways:\n");
        for g in 0..GATEWAYS_PER_ENVIRONMENT {
            let _ = write!(
                gateways,
                "  - name: gw-{g:02}\n    driver: http\n    url: http://127.0.0.1:{}\n    tokenEnv: GW_TOKEN\n",
                9000 + g
            );
        }
        write(repo, &format!("{dir}/gateways.yaml"), &gateways);
        for b in 0..BASE_PACKS {
            write(
                repo,
                &format!("{dir}/packs/base-{b:02}.yaml"),
                &format!("policy:\n  audit-logger:\n    retention_days: {}\n", 30 + e),
            );
        }
        for p in BASE_PACKS..PACKS_PER_ENVIRONMENT {
            write(
                repo,
                &format!("{dir}/packs/pack-{p:03}.yaml"),
                &pack(&format!("pack-{p:03}"), p),
            );
        }
    }
}

/// A realistic pack of about 600 bytes.
fn pack(name: &str, n: usize) -> String {
    let rpm = n + 1;
    format!(
        "# generated pack {n}\npack:\n  name: {name}\n  version: 1.{n}.0\n  description: Synthetic pack number {n}\npolicies:\n  chain: [audit-logger, pii-detector, prompt-injection, model-allowlist, rate-limit, x-custom-{n}]\npolicy:\n  audit-logger:\n    retention_days: 90\n    immutable: true\n  pii-detector:\n    action: redact\n    detect_patterns: [email, phone, credit_card]\n    pci_mode: false\n  prompt-injection:\n    action: block\n    threshold: 0.75\n  model-allowlist:\n    models: [gpt-4o, gpt-4o-mini, claude-sonnet-4]\n  rate-limit:\n    requests_per_minute: {rpm}\n  x-custom-{n}:\n    mode: strict\n    labels: [a, b, c]\n"
    )
}

/// The release binary beside this bench executable (target/release/sluice).
fn sluice_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let release = exe.parent().and_then(Path::parent).expect("target/release");
    let binary = release.join("sluice");
    if !binary.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--bin", "sluice"])
            .status()
            .expect("cargo builds");
        assert!(status.success());
    }
    binary
}

/// The tool a team would otherwise run in CI for schema checks, on the same
/// files with the same schemas.
fn check_jsonschema(repo: &Path, binary: &Path, sluice_time: Duration) {
    let probe = Command::new("check-jsonschema").arg("--version").output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!(
            "check-jsonschema not installed (pip install check-jsonschema): comparison skipped"
        );
        return;
    }
    let schemas = repo.join(".schemas");
    let status = Command::new(binary)
        .args(["schema", "--out"])
        .arg(&schemas)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut groups: Vec<(&str, Vec<PathBuf>)> = vec![
        ("sluice.schema.json", vec![repo.join("sluice.yaml")]),
        ("environment.schema.json", Vec::new()),
        ("gateways.schema.json", Vec::new()),
        ("pack.schema.json", Vec::new()),
        ("pack-overlay.schema.json", Vec::new()),
    ];
    for b in 0..BASE_PACKS {
        groups[3]
            .1
            .push(repo.join(format!("base/packs/base-{b:02}.yaml")));
    }
    for e in 0..ENVIRONMENTS {
        let dir = repo.join(format!("environments/env-{e:03}"));
        groups[1].1.push(dir.join("environment.yaml"));
        groups[2].1.push(dir.join("gateways.yaml"));
        for b in 0..BASE_PACKS {
            groups[4]
                .1
                .push(dir.join(format!("packs/base-{b:02}.yaml")));
        }
        for p in BASE_PACKS..PACKS_PER_ENVIRONMENT {
            groups[3]
                .1
                .push(dir.join(format!("packs/pack-{p:03}.yaml")));
        }
    }
    let time = median(|| {
        let start = Instant::now();
        for (schema, files) in &groups {
            let output = Command::new("check-jsonschema")
                .arg("--schemafile")
                .arg(schemas.join(schema))
                .args(files)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "check-jsonschema {schema}: {}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        start.elapsed()
    });
    println!(
        "check-jsonschema, schema pass only, same files: median {time:.0?}; sluice validate (both passes + from git objects) is {:.1}× faster",
        time.as_secs_f64() / sluice_time.as_secs_f64()
    );
}
