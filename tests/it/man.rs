//! `sluice man`: man pages made from the clap definitions.

use crate::support::sluice;

#[test]
fn every_command_gets_a_page_with_its_about_text_and_options() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("man1");
    let run = sluice(&["man", "--out", dir.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("wrote "), "{}", run.stdout);
    let page = |name: &str| {
        std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    // NB: roff escapes a hyphen as `\-`.
    let top = page("sluice.1");
    assert!(top.contains(".TH sluice 1"), "{top}");
    assert!(
        top.contains("GitOps for AI\\-gateway governance policy"),
        "{top}"
    );
    assert!(
        top.contains("sluice\\-diff(1)"),
        "the commands are listed: {top}"
    );
    let diff = page("sluice-diff.1");
    assert!(diff.contains(".TH sluice-diff 1"), "{diff}");
    assert!(
        diff.contains("Show what each gateway runs against what the work tree"),
        "{diff}"
    );
    assert!(diff.contains("\\fB\\-\\-rev\\fR"), "{diff}");
    assert!(diff.contains("Exit codes: 0 no differences"), "{diff}");
    assert!(
        !diff.contains("\\-\\-cluster"),
        "flags that do not apply are not shown"
    );
    for command in ["validate", "run", "sync", "status", "man", "version"] {
        assert!(
            dir.join(format!("sluice-{command}.1")).exists(),
            "{command}"
        );
    }
}
