//! An [`EvalReport`] as JUnit XML, for CI: one `<testsuite>` per (suite,
//! gateway), one `<testcase>` per case, a `<failure>` with every
//! difference, an `<error>` for a case that got no answer.

use super::run::{CaseRun, EvalReport};
use std::fmt::Write as _;

/// The report as a JUnit XML document.
pub fn render(report: &EvalReport) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let errors = |cases: &[CaseRun]| cases.iter().filter(|c| c.error.is_some()).count();
    let all_errors: usize = report.runs.iter().map(|r| errors(&r.cases)).sum();
    let _ = writeln!(
        out,
        "<testsuites name=\"sluice eval\" tests=\"{}\" failures=\"{}\" errors=\"{all_errors}\">",
        report.totals.passed + report.totals.failed,
        report.totals.failed - all_errors,
    );
    for run in &report.runs {
        let errors = errors(&run.cases);
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{errors}\">",
            escape(&format!("{} on {}", run.suite, run.gateway)),
            run.cases.len(),
            run.totals.failed - errors,
        );
        let _ = writeln!(
            out,
            "    <properties><property name=\"suite\" value=\"{}\"/><property name=\"gateway\" value=\"{}\"/></properties>",
            escape(&run.suite),
            escape(&run.gateway)
        );
        let classname = escape(&format!("{}.{}", run.suite, run.gateway));
        for case in &run.cases {
            let name = escape(&case.name);
            if case.passed {
                let _ = writeln!(
                    out,
                    "    <testcase name=\"{name}\" classname=\"{classname}\"/>"
                );
                continue;
            }
            let _ = writeln!(
                out,
                "    <testcase name=\"{name}\" classname=\"{classname}\">"
            );
            if let Some(error) = &case.error {
                let _ = writeln!(
                    out,
                    "      <error message=\"{}\">{}</error>",
                    escape(error),
                    escape(error)
                );
            } else {
                let lines: Vec<String> = case.differences.iter().map(|d| d.to_string()).collect();
                let _ = writeln!(
                    out,
                    "      <failure message=\"{}\">{}</failure>",
                    escape(&lines.join("; ")),
                    escape(&lines.join("\n"))
                );
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Text safe in XML 1.0 content and attribute values: markup characters
/// as entities, line breaks as character references (kept in attributes),
/// and characters XML cannot carry at all (most control characters) as
/// U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{
        judge::{Check, Difference},
        run::{Reset, SuiteRun, Totals},
    };

    #[test]
    fn markup_and_control_characters_are_escaped() {
        assert_eq!(
            escape("a<b>&\"c\" 'd'\nline\u{1}\u{7f}é"),
            "a&lt;b&gt;&amp;&quot;c&quot; &apos;d&apos;&#10;line\u{FFFD}\u{7f}é"
        );
    }

    #[test]
    fn failures_carry_every_difference() {
        let failing = CaseRun {
            name: "an <SSN> & a \"card\"".into(),
            passed: false,
            sent: 1,
            observed: None,
            differences: vec![
                Difference {
                    check: Check::Outcome,
                    expected: "redacted".into(),
                    found: "allowed".into(),
                },
                Difference {
                    check: Check::ForwardedNotContains,
                    expected: "no \"123-45-6789\"".into(),
                    found: "\"My SSN is 123-45-6789\"".into(),
                },
            ],
            error: None,
        };
        let erring = CaseRun {
            name: "down".into(),
            passed: false,
            sent: 0,
            observed: None,
            differences: vec![],
            error: Some("request 1: gateway is unreachable: refused".into()),
        };
        let passing = CaseRun {
            name: "ok".into(),
            passed: true,
            sent: 1,
            observed: None,
            differences: vec![],
            error: None,
        };
        let report = EvalReport {
            runs: vec![SuiteRun {
                suite: "pii".into(),
                gateway: "gw-0".into(),
                reset: Reset::Done,
                cases: vec![failing, erring, passing],
                totals: Totals {
                    passed: 1,
                    failed: 2,
                },
            }],
            totals: Totals {
                passed: 1,
                failed: 2,
            },
        };
        let xml = render(&report);
        assert!(
            xml.contains(
                "<testsuites name=\"sluice eval\" tests=\"3\" failures=\"1\" errors=\"1\">"
            ),
            "{xml}"
        );
        assert!(
            xml.contains(
                "<testsuite name=\"pii on gw-0\" tests=\"3\" failures=\"1\" errors=\"1\">"
            ),
            "{xml}"
        );
        assert!(
            xml.contains(
                "<testcase name=\"an &lt;SSN&gt; &amp; a &quot;card&quot;\" classname=\"pii.gw-0\">"
            ),
            "{xml}"
        );
        assert!(xml.contains("<failure message=\"outcome: expected redacted, found allowed; forwardedNotContains: expected no &quot;123-45-6789&quot;, found &quot;My SSN is 123-45-6789&quot;\">outcome: expected redacted, found allowed&#10;forwardedNotContains"), "{xml}");
        assert!(
            xml.contains("<error message=\"request 1: gateway is unreachable: refused\">"),
            "{xml}"
        );
        assert!(
            xml.contains("<testcase name=\"ok\" classname=\"pii.gw-0\"/>"),
            "{xml}"
        );
    }
}
