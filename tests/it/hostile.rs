//! A hostile-repository corpus: small repositories (a few MiB of `.git`)
//! built to exhaust memory or time. Each runs the real binary and asserts
//! generous bounds on its peak RSS (`wait4`'s rusage of that one child) and
//! wall time that the unbounded reads broke by far.

use crate::support::TestRepo;
use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// What one measured run of `sluice` did.
struct Measured {
    code: i32,
    stdout: String,
    stderr: String,
    /// Peak resident set of the sluice process, in MiB.
    peak_mib: u64,
    elapsed: Duration,
}

impl Measured {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }

    /// The findings of `rule`, from `-o json` output.
    fn findings(&self, rule: &str) -> Vec<serde_json::Value> {
        let json = self.json();
        let all = json.as_array().cloned().unwrap_or_default();
        all.into_iter().filter(|f| f["rule"] == rule).collect()
    }
}

/// Runs `sluice ARGS --repo REPO` and reaps it with `wait4`, which reports
/// the rusage of that child alone (RUSAGE_CHILDREN would include git's).
/// NB: std spawns with vfork, and Linux carries the test process's own
/// peak into the child's `ru_maxrss` at exec: the tests here never hold a
/// large buffer (they stream with [`repeat`]), so that floor stays small.
#[allow(
    clippy::zombie_processes,
    reason = "reaped by wait4, which std cannot do"
)]
fn measure(repo: &TestRepo, args: &[&str]) -> Measured {
    let out = tempfile::tempdir().unwrap();
    let stdout = out.path().join("stdout");
    let stderr = out.path().join("stderr");
    let started = Instant::now();
    // NB: SLUICE_HOSTILE_BIN runs the corpus against another build (a
    // release one for figures, an older one to see it fail).
    let bin = std::env::var("SLUICE_HOSTILE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sluice").to_owned());
    let child = Command::new(bin)
        .args(args)
        .arg("--repo")
        .arg(repo.path())
        .envs(crate::support::OPERATOR.iter().copied())
        .env_remove("SLUICE_REPO")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("sluice starts");
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our child's, not yet reaped (std only reaps on wait).
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 reaps sluice");
    let elapsed = started.elapsed();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    let peak_mib = usage.ru_maxrss as u64 / 1024;
    eprintln!("sluice {args:?}: exit {code}, {elapsed:?}, peak RSS {peak_mib} MiB");
    Measured {
        code,
        stdout: std::fs::read_to_string(stdout).unwrap(),
        stderr: std::fs::read_to_string(stderr).unwrap(),
        // NB: Linux reports ru_maxrss in KiB.
        peak_mib,
        elapsed,
    }
}

/// Adds a commit on `main` (over the example) written by `git fast-import`
/// from `stream`, so huge objects are made without huge files on disk.
fn fast_import(repo: &TestRepo, message: Data<'_>, files: impl FnOnce(&mut dyn Write)) {
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet", "--done"])
        .current_dir(repo.path())
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import runs");
    {
        let mut stdin = std::io::BufWriter::new(child.stdin.take().unwrap());
        let out: &mut dyn Write = &mut stdin;
        writeln!(
            out,
            "commit refs/heads/main\ncommitter T <t@example> 0 +0000"
        )
        .unwrap();
        message.write(out);
        writeln!(out, "from refs/heads/main^0").unwrap();
        files(out);
        writeln!(out, "done").unwrap();
    }
    assert!(child.wait().unwrap().success(), "git fast-import succeeds");
}

/// The content of a fast-import `data` command.
enum Data<'a> {
    Bytes(&'a [u8]),
    /// `len` copies of one byte, written in chunks.
    Repeat(u8, usize),
}

impl Data<'_> {
    fn write(&self, out: &mut dyn Write) {
        match self {
            Data::Bytes(bytes) => {
                writeln!(out, "data {}", bytes.len()).unwrap();
                out.write_all(bytes).unwrap();
            }
            Data::Repeat(byte, len) => {
                writeln!(out, "data {len}").unwrap();
                let chunk = vec![*byte; 1 << 20];
                let mut left = *len;
                while left > 0 {
                    let n = left.min(chunk.len());
                    out.write_all(&chunk[..n]).unwrap();
                    left -= n;
                }
            }
        }
        writeln!(out).unwrap();
    }
}

/// A file of the commit: `path` may hold C-style escapes, as fast-import reads it.
fn file(out: &mut dyn Write, mode: &str, path: &str, content: Data<'_>) {
    writeln!(out, "M {mode} inline \"{path}\"").unwrap();
    content.write(out);
}

fn pack(name: &str) -> Vec<u8> {
    format!("pack:\n  name: {name}\n  version: 1.0.0\npolicies:\n  chain: [audit-logger]\n")
        .into_bytes()
}

/// Bounds every run here must keep: the unbounded reads used gigabytes.
const MAX_MIB: u64 = 250;

#[test]
fn a_directory_of_20000_packs_reads_in_linear_time() {
    let repo = TestRepo::example();
    fast_import(&repo, Data::Bytes(b"many packs"), |out| {
        for i in 0..20_000 {
            let name = format!("p{i:05}");
            let path = format!("environments/development/packs/{name}.yaml");
            file(out, "100644", &path, Data::Bytes(&pack(&name)));
        }
    });
    let run = measure(&repo, &["validate", "--rev", "HEAD", "-o", "json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    // NB: quadratic, this took 147 s in release; linear, a few seconds in
    // debug. The bound is generous for a shared 2-core machine.
    assert!(
        run.elapsed < Duration::from_secs(40),
        "20,000 packs took {:?}",
        run.elapsed
    );
    assert!(run.peak_mib < MAX_MIB, "peak RSS {} MiB", run.peak_mib);
}

#[test]
fn a_huge_symlink_target_is_a_finding_not_a_read() {
    let repo = TestRepo::example();
    fast_import(&repo, Data::Bytes(b"a huge link"), |out| {
        let path = "environments/development/packs/link.yaml";
        file(out, "120000", path, Data::Repeat(b'a', 256 << 20));
    });
    let run = measure(&repo, &["validate", "--rev", "HEAD", "-o", "json"]);
    assert_eq!(run.code, 1, "invalid: {}\n{}", run.stdout, run.stderr);
    let found = run.findings("file.too-large");
    assert_eq!(found.len(), 1, "{}", run.stdout);
    assert_eq!(found[0]["file"], "environments/development/packs/link.yaml");
    assert!(run.peak_mib < MAX_MIB, "peak RSS {} MiB", run.peak_mib);
}

#[test]
fn a_huge_commit_message_is_refused_unread() {
    let repo = TestRepo::example();
    fast_import(&repo, Data::Repeat(b'm', 256 << 20), |_| {});
    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_str().unwrap();
    // NB: `sync` follows the branch (fetch, then snapshot), as `run` does.
    for args in [
        &["validate", "--rev", "HEAD"][..],
        &["sync", "--data-dir", data],
    ] {
        let run = measure(&repo, args);
        assert_eq!(run.code, 2, "{args:?}: {}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("over the 16777216-byte limit"),
            "{}",
            run.stderr
        );
        assert!(run.peak_mib < MAX_MIB, "peak RSS {} MiB", run.peak_mib);
    }
}

#[test]
fn names_that_are_not_utf8_are_findings_in_git_and_the_work_tree() {
    let repo = TestRepo::example();
    // NB: \377 is a lone 0xff byte: never UTF-8.
    let env = std::fs::read(repo.path().join("environments/staging/environment.yaml")).unwrap();
    fast_import(&repo, Data::Bytes(b"unreadable names"), |out| {
        let pack = pack("p");
        let packs = "environments/development/packs";
        file(
            out,
            "100644",
            &format!("{packs}/p\\377.yaml"),
            Data::Bytes(&pack),
        );
        let staging = "environments/st\\377ging/environment.yaml";
        file(out, "100644", staging, Data::Bytes(&env));
    });
    let from_git = measure(&repo, &["validate", "--rev", "HEAD", "-o", "json"]);
    repo.git(&["checkout", "-q", "-f", "main"]);
    let from_disk = measure(&repo, &["validate", "-o", "json"]);
    for run in [from_git, from_disk] {
        assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
        let mut files: Vec<String> = run
            .findings("file.name-not-utf8")
            .iter()
            .map(|f| f["file"].as_str().unwrap().to_owned())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                "environments/development/packs/p\u{fffd}.yaml",
                "environments/st\u{fffd}ging"
            ],
            "{}",
            run.stdout
        );
    }
}
