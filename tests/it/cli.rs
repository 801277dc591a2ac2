//! The command line's conventions, across commands (issue 15): closed
//! pipes, one colour decision for output and logs, log lines that say
//! which gateway they are about.

use crate::support::{GatewayProcess, OPERATOR, TestRepo, eventually, example_dir};

use std::{
    path::Path,
    process::{Command, Stdio},
};

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
        vec!["completion", "bash"],
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

/// `sluice ARGS --repo REPO --data-dir DATA` with the default log level
/// unless `log` names one.
fn logged(repo: &TestRepo, data: &Path, args: &[&str], log: Option<&str>) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(args)
        .arg("--repo")
        .arg(repo.path())
        .arg("--data-dir")
        .arg(data)
        .envs(OPERATOR)
        .env("NO_COLOR", "1")
        .env_remove("SLUICE_LOG");
    if let Some(log) = log {
        command.env("SLUICE_LOG", log);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), stderr)
}

/// The log line holding `message`, which must name `environment` and
/// `gateway` as fields.
fn line_about<'a>(stderr: &'a str, message: &str, environment: &str, gateway: &str) -> &'a str {
    let fields = format!("environment={environment} gateway={gateway}");
    stderr
        .lines()
        .find(|line| line.contains(message) && line.contains(&fields))
        .unwrap_or_else(|| panic!("no `{message}` line with {fields}:\n{stderr}"))
}

/// Issue 15, defect 4: a log line about a gateway says which one, at the
/// default level too; applies and heals are logged (at info); `sluice run`
/// says at start that its API is open and its webhook off.
#[test]
fn log_lines_about_a_gateway_name_its_environment_and_gateway() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let (code, stderr) = logged(&repo, data.path(), &["sync"], Some("info"));
    assert_eq!(code, 0, "{stderr}");
    line_about(&stderr, "applied and verified", "production", "prod-eu-1");

    // A hand edit: found at the default level, healed (production heals).
    let hand_edit = || {
        let file = data.path().join("gateways/production/prod-eu-1.json");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("\"enforce\""), "{text}");
        std::fs::write(&file, text.replace("\"enforce\"", "\"monitor\"")).unwrap();
    };
    hand_edit();
    let (code, stderr) = logged(&repo, data.path(), &["sync", "--env", "production"], None);
    assert_eq!(code, 0, "{stderr}");
    let found = line_about(&stderr, "drift:", "production", "prod-eu-1");
    assert!(found.contains("WARN"), "{found}");
    hand_edit();
    let (_, stderr) = logged(
        &repo,
        data.path(),
        &["sync", "--env", "production"],
        Some("info"),
    );
    let healed = line_about(&stderr, "drift resolved", "production", "prod-eu-1");
    assert!(
        healed.contains("INFO") && healed.contains("healed"),
        "{healed}"
    );
    line_about(&stderr, "applied and verified", "production", "prod-eu-1");

    // A gateway that cannot be reached.
    repo.write(
        "environments/development/gateways.yaml",
        "gateways:\n  - name: dev-http\n    driver: http\n    url: http://127.0.0.1:9\n    timeout: 1s\n",
    );
    repo.commit("development on a gateway nobody runs");
    let (code, stderr) = logged(&repo, data.path(), &["sync", "--env", "development"], None);
    assert_eq!(code, 1, "{stderr}");
    line_about(
        &stderr,
        "gateway did not converge",
        "development",
        "dev-http",
    );

    // A daemon logs its applies without being asked, and warns at start.
    let run_data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "1h",
            "--repo",
        ])
        .arg(repo.path())
        .arg("--data-dir")
        .arg(run_data.path())
        .envs(OPERATOR)
        .env("NO_COLOR", "1")
        .env_remove("SLUICE_LOG")
        .env_remove("SLUICE_API_TOKENS")
        .env_remove("SLUICE_WEBHOOK_SECRET");
    let run = GatewayProcess::spawn_command(command, &["run"]);
    // NB: the pass applies one gateway after another: wait for the one
    // the test reads, not for the first.
    eventually(60, "staging-1's apply logged", || {
        run.stderr().lines().any(|line| {
            line.contains("applied and verified")
                && line.contains("environment=staging gateway=staging-1")
        })
    });
    let stderr = run.stderr();
    line_about(&stderr, "applied and verified", "staging", "staging-1");
    for warning in ["no API tokens", "no webhook secret"] {
        let line = stderr
            .lines()
            .find(|line| line.contains(warning))
            .unwrap_or_else(|| panic!("no `{warning}` warning:\n{stderr}"));
        assert!(line.contains("WARN"), "{line}");
    }
}

/// Issue 15, defect 11: every command that takes an environment takes it
/// by name or as `--env`, alike; an unknown one is an error naming the
/// closest and every one.
#[test]
fn every_command_takes_its_environment_by_name_or_as_env() {
    let repo = TestRepo::example();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    // NB: only commands that keep state take --data-dir.
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        if !["render", "eval", "promote"].contains(&args[0]) {
            all.extend(["--data-dir", data_dir]);
        }
        repo.sluice(&all)
    };
    let synced = run(&["sync", "production"]);
    assert_eq!(synced.code, 0, "{}{}", synced.stdout, synced.stderr);
    assert!(!synced.stdout.contains("staging"), "{}", synced.stdout);
    let synced = run(&["sync", "--env", "staging", "-o", "json"]);
    assert_eq!(synced.code, 0, "{}{}", synced.stdout, synced.stderr);

    for command in [
        &["status"][..],
        &["history"],
        &["history", "--drift"],
        &["render", "--rev", "HEAD"],
        &["drift"],
    ] {
        let by_name = run(&[command, &["production", "-o", "json"]].concat());
        let by_flag = run(&[command, &["--env", "production", "-o", "json"]].concat());
        assert_eq!(by_name.code, 0, "{command:?}: {}", by_name.stderr);
        assert_eq!(
            by_name.json(),
            by_flag.json(),
            "{command:?}: {}",
            by_flag.stderr
        );
        let both = run(&[command, &["production", "--env", "staging"]].concat());
        assert_eq!(both.code, 2, "{command:?}: {}", both.stdout);
    }
    let pinned = run(&["pin", "--env", "production"]);
    assert_eq!(pinned.code, 0, "{}", pinned.stderr);
    let unpinned = run(&["unpin", "production"]);
    assert_eq!(unpinned.code, 0, "{}", unpinned.stderr);
    assert!(
        unpinned.stdout.starts_with("unpinned production"),
        "{}",
        unpinned.stdout
    );

    let mut errors = String::new();
    for command in [
        &["status", "prodution"][..],
        &["history", "--env", "prodution"],
        &["history", "prodution", "--evals"],
        &["render", "prodution", "--rev", "HEAD"],
        &["sync", "--env", "prodution"],
        &["drift", "prodution"],
        &["eval", "prodution"],
        &["rollback", "--env", "prodution"],
        &["pin", "prodution"],
        &["unpin", "--env", "prodution"],
        &["promote", "staging", "prodution"],
    ] {
        let refused = run(command);
        assert_eq!(refused.code, 2, "{command:?}: {}", refused.stdout);
        let commit = repo.git(&["rev-parse", "--short=8", "HEAD"]);
        let text = refused.stderr.replace(commit.trim(), "<COMMIT>");
        errors.push_str(&format!("$ sluice {}\n{text}\n", command.join(" ")));
    }
    insta::assert_snapshot!(errors);
}

/// Every command, as `sluice --help` lists them.
fn commands() -> Vec<String> {
    let help = crate::support::sluice(&["--help"]).stdout;
    let listed = help
        .split("Commands:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap_or_default();
    // NB: a name is indented two spaces; a wrapped description further.
    listed
        .lines()
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The flags a command's help shows under `heading` (`Options`, `Global options`).
fn flags_under(help: &str, heading: &str) -> Vec<String> {
    help.split(&format!("\n{heading}:\n"))
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap_or_default()
        .lines()
        .filter(|line| is_option(line))
        .filter_map(|line| line.split_whitespace().find(|w| w.starts_with("--")))
        .map(str::to_owned)
        .collect()
}

/// A line naming an option (indented at most 6), not one of a description.
fn is_option(line: &str) -> bool {
    let text = line.trim_start();
    text.starts_with('-') && line.len() - text.len() <= 6
}

/// Issue 15, defect 14: each command's help has examples, its own flags
/// apart from the global ones, and none that do not apply to it (which
/// are refused, not ignored); every argument is described.
#[test]
fn help_has_examples_and_only_the_flags_that_apply() {
    let commands = commands();
    assert!(commands.len() >= 18, "{commands:?}");
    for command in &commands {
        // NB: `-h`, the summary: one line per option.
        let help = crate::support::sluice(&[command, "-h"]);
        assert_eq!(help.code, 0, "{command}: {}", help.stderr);
        let text = help.stdout;
        assert!(text.contains("\nExamples:\n"), "{command}:\n{text}");
        let global = flags_under(&text, "Global options");
        assert!(global.contains(&"--color".to_owned()), "{command}:\n{text}");
        let own = flags_under(&text, "Options");
        for flag in ["--repo", "--color", "--log-format", "--max-file-size"] {
            assert!(
                !own.contains(&flag.to_owned()),
                "{command}: {flag} among its own"
            );
        }
        // NB: a described option has its text on its line, or (when
        // options are long) on the next one, indented further.
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate().filter(|(_, l)| is_option(l)) {
            let flag_only = line.split_whitespace().count() <= 2;
            let next_described = lines
                .get(i + 1)
                .is_some_and(|next| !next.trim().is_empty() && !is_option(next));
            assert!(
                !flag_only || next_described,
                "{command}: an option without a description: {line}"
            );
        }
    }
    let shows = |command: &str, flag: &str| {
        let help = crate::support::sluice(&[command, "-h"]).stdout;
        [
            flags_under(&help, "Options"),
            flags_under(&help, "Global options"),
        ]
        .concat()
        .contains(&flag.to_owned())
    };
    for (command, flag, rest) in [
        ("gateway", "--repo", &["--ephemeral"][..]),
        ("init", "--repo", &[]),
        ("schema", "--max-file-size", &[]),
        ("crds", "--repo", &[]),
        ("run", "--cluster", &[]),
        ("sync", "--cluster", &[]),
        ("controller", "--repo", &[]),
        ("status", "--max-file-size", &[]),
        ("pin", "--cluster", &["production"]),
    ] {
        assert!(!shows(command, flag), "{command} shows {flag}");
        let given = format!("{flag}=1");
        let refused = crate::support::sluice(&[&[command, given.as_str()][..], rest].concat());
        assert_eq!(refused.code, 2, "{command} {flag}: {}", refused.stdout);
        assert!(
            refused
                .stderr
                .contains(&format!("{flag} does not apply to `sluice {command}`")),
            "{command} {flag}: {}",
            refused.stderr
        );
    }
    for (command, flag) in [
        ("history", "--cluster"),
        ("status", "--repo"),
        ("validate", "--max-file-size"),
    ] {
        assert!(shows(command, flag), "{command} hides {flag}");
    }
    let history = crate::support::sluice(&["history", "--help"]);
    insta::assert_snapshot!(history.stdout);
}

/// The commit the binary was built from, as build.rs finds it.
fn built_from() -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let top = git(&["rev-parse", "--show-toplevel"]).map(std::path::PathBuf::from);
    match top.and_then(|t| t.canonicalize().ok()) {
        Some(top) if Path::new(root).canonicalize().is_ok_and(|r| r == top) => {
            git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
        _ => "unknown".into(),
    }
}

/// Issue 15: `sluice version` and `--version` name the version, the
/// commit and the build date.
#[test]
fn version_names_the_commit_and_the_build_date() {
    let commit = built_from();
    let json = crate::support::sluice(&["version", "-o", "json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let build = json.json();
    assert_eq!(build["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(build["commit"], commit.as_str());
    let date = build["buildDate"].as_str().unwrap();
    assert!(
        date.len() == 20 && date.ends_with('Z') && date.as_bytes()[10] == b'T',
        "{date}"
    );

    let text = crate::support::sluice(&["version"]);
    assert_eq!(
        text.stdout,
        format!(
            "sluice {}\n  commit: {commit}\n  built:  {date}\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    let short = &commit[..commit.len().min(12)];
    for flag in ["--version", "-V"] {
        let line = crate::support::sluice(&[flag]);
        assert_eq!(
            line.stdout,
            format!(
                "sluice {} (commit {short}, built {date})\n",
                env!("CARGO_PKG_VERSION")
            ),
            "{flag}"
        );
    }
}

/// Issue 15: completion scripts for the shells operators use, made from
/// the same definition as the parser (commands, `--env`, no hidden flags).
#[test]
fn completion_scripts_cover_every_command() {
    let commands = commands();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let run = crate::support::sluice(&["completion", shell]);
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        for command in &commands {
            assert!(
                run.stdout.contains(command.as_str()),
                "{shell}: no {command}"
            );
        }
        // NB: fish names a long flag `-l env`.
        assert!(
            run.stdout.contains("--env") || run.stdout.contains("-l env"),
            "{shell}"
        );
    }
    // NB: bash is on every machine that runs these tests; the script parses.
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        script.path(),
        crate::support::sluice(&["completion", "bash"]).stdout,
    )
    .unwrap();
    let parsed = Command::new("bash")
        .arg("-n")
        .arg(script.path())
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let unknown = crate::support::sluice(&["completion", "tcsh"]);
    assert_eq!(unknown.code, 2);
}
