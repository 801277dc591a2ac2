//! `sluice init`: a working repository with its first commit.

use crate::support::sluice;

#[test]
fn scaffolds_a_valid_committed_repository() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("policy");
    let target = target.to_str().unwrap();
    let run = sluice(&["init", target]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    crate::assert_stable!(target, "init_text", &run.stdout);
    let validate = sluice(&["validate", "--rev", "HEAD", "--repo", target]);
    assert_eq!(validate.code, 0, "{}{}", validate.stdout, validate.stderr);
    assert!(validate.stdout.contains("4 environments"));
    for env in ["development", "staging", "production", "eval"] {
        let render = sluice(&["render", env, "--rev", "HEAD", "--repo", target]);
        assert_eq!(render.code, 0, "{env}: {}", render.stderr);
        assert!(render.stdout.contains("driver: file"));
    }
    let log = std::process::Command::new("git")
        .args(["-C", target, "log", "--oneline"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&log.stdout).lines().count(), 1);
}

#[test]
fn refuses_to_overwrite_a_repository() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().to_str().unwrap();
    assert_eq!(sluice(&["init", target]).code, 0);
    let again = sluice(&["init", target]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("already holds a sluice.yaml"));
}

/// A new user's first minutes: `init` (git configured with no
/// `init.defaultBranch`, or another one), then `sync` and `status` by
/// `--repo` from another directory. The branch is the one the other
/// commands follow, the ledger is found from `--repo`, and the data
/// directory never shows as a change to commit.
#[test]
fn init_then_sync_and_status_by_repo_work_from_anywhere() {
    for default_branch in [None, Some("trunk")] {
        let home = tempfile::tempdir().unwrap();
        if let Some(branch) = default_branch {
            std::fs::write(
                home.path().join(".gitconfig"),
                format!("[init]\n\tdefaultBranch = {branch}\n"),
            )
            .unwrap();
        }
        let elsewhere = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("policy");
        let target = target.to_str().unwrap();
        let isolated = |args: &[&str]| {
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(args)
                .current_dir(elsewhere.path())
                .env("HOME", home.path())
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env_remove("SLUICE_DATA_DIR")
                .env_remove("SLUICE_REPO")
                .envs(crate::support::OPERATOR)
                .output()
                .unwrap();
            (
                output.status.code(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            )
        };
        let (code, out) = isolated(&["init", target]);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("on main"), "{out}");
        let (code, out) = isolated(&["sync", "--repo", target]);
        assert_eq!(code, Some(0), "{default_branch:?}: {out}");
        let (code, out) = isolated(&["--repo", target, "status"]);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("in-sync"), "{out}");
        assert!(
            std::path::Path::new(target)
                .join(".sluice/state.db")
                .is_file()
        );
        assert!(!elsewhere.path().join(".sluice").exists());
        let status = std::process::Command::new("git")
            .args(["-C", target, "status", "--porcelain"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&status.stdout),
            "",
            "nothing to commit"
        );
    }
}
