//! The command line's conventions, across commands (issue 15): closed
//! pipes, one colour decision for output and logs.

use crate::support::{OPERATOR, example_dir};

use std::process::{Command, Stdio};

/// `sluice … | head -1`: the reader is gone before Sluice writes. The
/// process ends quietly with SIGPIPE's shell code, never a panic (101).
#[test]
fn no_command_panics_on_a_closed_pipe() {
    let example = example_dir();
    let repo = example.to_str().unwrap();
    for args in [
        vec!["render", "--repo", repo, "-o", "json"],
        vec!["validate", "--repo", repo],
        vec!["schema"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(&args)
            .envs(OPERATOR)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // NB: the read end closes before the process can write anything.
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// Logs follow `--color` and NO_COLOR like the rest of the output: no
/// escapes in a redirected stderr under `auto` or `never`, escapes only
/// when forced.
#[test]
fn logs_are_coloured_by_the_same_decision_as_output() {
    let repo = crate::support::TestRepo::example();
    let sync = |colour: &str, no_color: bool| {
        // NB: a fresh ledger each time, so there is an apply to log.
        let data = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .args(["sync", "--env", "production", "--color", colour, "--repo"])
            .arg(repo.path())
            .arg("--data-dir")
            .arg(data.path())
            .envs(OPERATOR)
            .env("SLUICE_LOG", "info")
            .env_remove("NO_COLOR");
        if no_color {
            command.env("NO_COLOR", "1");
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(stderr.contains("INFO"), "{:?}: {stderr}", output.status);
        stderr.contains('\u{1b}')
    };
    assert!(!sync("auto", false), "auto colours a stderr that is a file");
    assert!(!sync("never", false));
    assert!(!sync("always", true) || sync("always", false));
    assert!(sync("always", false), "always colours logs too");
}
