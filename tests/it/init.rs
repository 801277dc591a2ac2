//! `sluice init`: a working repository with its first commit.

use crate::support::sluice;

#[test]
fn scaffolds_a_valid_committed_repository() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("policy");
    let target = target.to_str().unwrap();
    let run = sluice(&["init", target]);
    assert_eq!(run.code, 0, "{}", run.stderr);
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
