//! Helpers: temp git repositories and running the binary.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};
use tempfile::TempDir;

/// The bundled example, the base most tests start from.
pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo")
}

/// A git repository in a temp dir, driven with the real `git`.
pub struct TestRepo {
    dir: TempDir,
}

impl TestRepo {
    pub fn empty() -> TestRepo {
        let repo = TestRepo {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// A repository holding the bundled example, committed.
    pub fn example() -> TestRepo {
        let repo = TestRepo::empty();
        copy_tree(&example_dir(), repo.path());
        repo.commit("example");
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, path: &str, content: impl AsRef<[u8]>) {
        let target = self.path().join(path);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::write(target, content).unwrap();
    }

    pub fn read(&self, path: &str) -> String {
        fs::read_to_string(self.path().join(path)).unwrap()
    }

    pub fn remove(&self, path: &str) {
        let target = self.path().join(path);
        if target.is_dir() {
            fs::remove_dir_all(target).unwrap();
        } else {
            fs::remove_file(target).unwrap();
        }
    }

    pub fn symlink(&self, link: &str, target: &str) {
        let at = self.path().join(link);
        fs::create_dir_all(at.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&at);
        std::os::unix::fs::symlink(target, at).unwrap();
    }

    /// Commits everything and returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    pub fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .args([
                "-c",
                "user.name=Sluice Test",
                "-c",
                "user.email=test@sluice.dev",
            ])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(self.path())
            .output()
            .expect("git runs");
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs `sluice ARGS --repo <this repo>`.
    pub fn sluice(&self, args: &[&str]) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        let repo = self.path().to_str().unwrap().to_owned();
        all.extend(["--repo", &repo]);
        sluice(&all)
    }
}

/// What one run of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

pub fn sluice(args: &[&str]) -> Run {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_remove("SLUICE_REPO")
        .env("NO_COLOR", "1")
        .output()
        .expect("sluice runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn copy_tree(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}
