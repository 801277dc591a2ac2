//! Helpers the benchmarks share: writing a generated repository and
//! committing it with the real git.

use std::{fs, path::Path, process::Command};

pub fn write(repo: &Path, path: &str, content: &str) {
    let target = repo.join(path);
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    fs::write(target, content).unwrap();
}

pub fn git(repo: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=bench", "-c", "user.email=bench@sluice.dev"])
        .args(args)
        .current_dir(repo)
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?}");
}
