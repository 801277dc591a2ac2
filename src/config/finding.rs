//! Findings: what validation says about a repository, each tied to a file,
//! a position, a JSON pointer and a stable rule id.

use serde::{Deserialize, Serialize};
use std::{collections::HashMap, fmt::Write as _};

/// How serious a finding is. Only errors make a revision invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A place in a source file: 1-based line and column, and how many
/// characters the offending token covers on that line (for the caret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub line: u32,
    pub column: u32,
    pub width: u32,
}

/// One thing validation found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub severity: Severity,
    /// A stable id, listed in docs/rules.md, that CI can match on.
    pub rule: &'static str,
    /// Path relative to the repository root.
    pub file: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
    /// JSON pointer to the offending node within the file ("" is the whole file).
    pub pointer: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip)]
    pub width: u32,
    /// The source line may hold a secret: show it with its value masked.
    #[serde(skip)]
    pub redact: bool,
    /// Locate the pointer's key rather than its value (unknown keys).
    #[serde(skip)]
    pub at_key: bool,
}

impl Finding {
    pub fn error(rule: &'static str, file: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Error,
            rule,
            file: file.into(),
            line: None,
            column: None,
            pointer: String::new(),
            message: message.into(),
            hint: None,
            width: 0,
            redact: false,
            at_key: false,
        }
    }

    pub fn warning(
        rule: &'static str,
        file: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            severity: Severity::Warning,
            ..Finding::error(rule, file, message)
        }
    }

    pub fn at(mut self, position: Option<Position>) -> Self {
        self.place(position);
        self
    }

    pub fn place(&mut self, position: Option<Position>) {
        if let Some(p) = position {
            self.line = Some(p.line);
            self.column = Some(p.column);
            self.width = p.width;
        }
    }

    pub fn pointer(mut self, pointer: impl Into<String>) -> Self {
        self.pointer = pointer.into();
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint.or(self.hint);
        self
    }

    pub fn at_key(mut self) -> Self {
        self.at_key = true;
        self
    }

    pub fn redacted(mut self) -> Self {
        self.redact = true;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:column`, as far as it is known.
    pub fn location(&self) -> String {
        match (self.line, self.column) {
            (Some(line), Some(column)) => format!("{}:{line}:{column}", self.file),
            _ => self.file.clone(),
        }
    }

    fn sort_key(&self) -> (&str, u32, u32, &'static str, &str) {
        (
            &self.file,
            self.line.unwrap_or(0),
            self.column.unwrap_or(0),
            self.rule,
            &self.message,
        )
    }
}

/// Puts findings in the stable order output promises: by file, position, rule.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
}

/// Styles for human output; all empty when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Palette {
    pub error: &'static str,
    pub warning: &'static str,
    pub accent: &'static str,
    pub success: &'static str,
    pub bold: &'static str,
    pub reset: &'static str,
}

impl Palette {
    pub const PLAIN: Palette = Palette {
        error: "",
        warning: "",
        accent: "",
        success: "",
        bold: "",
        reset: "",
    };
    pub const ANSI: Palette = Palette {
        error: "\x1b[1;31m",
        warning: "\x1b[1;33m",
        accent: "\x1b[1;34m",
        success: "\x1b[32m",
        bold: "\x1b[1m",
        reset: "\x1b[0m",
    };
}

/// Findings of one rule in one file shown before the rest are counted:
/// a thousand duplicates say nothing ten do not.
pub const MAX_SHOWN_PER_RULE_AND_FILE: usize = 10;
/// Characters of a source line shown around the offending token.
pub const MAX_LINE_CHARS: usize = 120;
/// Bytes of a message, hint or pointer shown.
const MAX_TEXT_BYTES: usize = 1024;
/// Bytes of human output before the rest is only counted. NB: findings
/// come from the repository, and one 500 KB line repeated for each of
/// 100,000 findings once asked for 50 GB; `-o json` has them all.
pub const MAX_HUMAN_BYTES: usize = 256 << 10;

/// Human output in the style of rustc: the rule, the message, the location,
/// the source line with a caret under the offending token, and the hint.
/// Bounded: at most [`MAX_SHOWN_PER_RULE_AND_FILE`] findings per rule and
/// file, [`MAX_LINE_CHARS`] of each line and [`MAX_HUMAN_BYTES`] in all;
/// what is left out is counted at the end.
pub fn render_human(findings: &[Finding], sources: &HashMap<String, String>, p: Palette) -> String {
    let mut out = String::new();
    let mut shown: HashMap<(&str, &str), usize> = HashMap::new();
    // NB: (rule, file) → findings left out, in a stable order.
    let mut held: std::collections::BTreeMap<(&str, &str), usize> = Default::default();
    let mut lines: HashMap<&str, Lines<'_>> = HashMap::new();
    let mut cut_off = 0;
    for finding in findings {
        if out.len() >= MAX_HUMAN_BYTES {
            cut_off += 1;
            continue;
        }
        let key = (finding.rule, finding.file.as_str());
        let count = shown.entry(key).or_default();
        if *count >= MAX_SHOWN_PER_RULE_AND_FILE {
            *held.entry(key).or_default() += 1;
            continue;
        }
        *count += 1;
        let (label, colour) = match finding.severity {
            Severity::Error => ("error", p.error),
            Severity::Warning => ("warning", p.warning),
        };
        let _ = writeln!(
            out,
            "{colour}{label}[{}]{reset}{bold}: {}{reset}",
            finding.rule,
            bounded(&finding.message),
            reset = p.reset,
            bold = p.bold
        );
        let _ = writeln!(
            out,
            "  {}-->{} {}",
            p.accent,
            p.reset,
            bounded(&finding.location())
        );
        if let (Some(line), Some(column), Some(source)) =
            (finding.line, finding.column, sources.get(&finding.file))
            && let Some(text) = lines
                .entry(finding.file.as_str())
                .or_insert_with(|| Lines::new(source))
                .get(line)
        {
            let text = if finding.redact {
                redact_value(text)
            } else {
                text.to_owned()
            };
            let (text, pad) = window(&text.replace('\t', " "), column as usize);
            let gutter = " ".repeat(line.to_string().len());
            let width =
                (finding.width.max(1) as usize).min(MAX_LINE_CHARS.saturating_sub(pad).max(1));
            let _ = writeln!(out, "{gutter} {}|{}", p.accent, p.reset);
            let _ = writeln!(out, "{}{line} |{} {text}", p.accent, p.reset);
            let _ = writeln!(
                out,
                "{gutter} {}|{} {}{colour}{}{reset}",
                p.accent,
                p.reset,
                " ".repeat(pad),
                "^".repeat(width),
                reset = p.reset
            );
        }
        if !finding.pointer.is_empty() {
            let _ = writeln!(
                out,
                "  {}= at:{} {}",
                p.accent,
                p.reset,
                bounded(&finding.pointer)
            );
        }
        if let Some(hint) = &finding.hint {
            let _ = writeln!(out, "  {}= hint:{} {}", p.accent, p.reset, bounded(hint));
        }
        out.push('\n');
    }
    for ((rule, file), more) in held {
        let _ = writeln!(out, "… {more} more [{rule}] in {} not shown", bounded(file));
    }
    if cut_off > 0 {
        let _ = writeln!(
            out,
            "… {cut_off} more findings not shown: output is cut at {} KiB (`-o json` has every finding)",
            MAX_HUMAN_BYTES >> 10
        );
    }
    out
}

/// A message, hint or path as shown: at most [`MAX_TEXT_BYTES`].
fn bounded(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_TEXT_BYTES {
        return text.into();
    }
    let mut cut = crate::drift::shortened(text.to_owned(), MAX_TEXT_BYTES);
    cut.push('…');
    cut.into()
}

/// At most [`MAX_LINE_CHARS`] of `line` around 1-based character `column`,
/// with `…` where it was cut, and the caret's padding within what is shown.
fn window(line: &str, column: usize) -> (String, usize) {
    let at = column.saturating_sub(1);
    // NB: some context before the token, most of the room after it.
    let start = at.saturating_sub(MAX_LINE_CHARS / 4);
    let mut chars = line.chars().skip(start);
    let mut text: String = chars.by_ref().take(MAX_LINE_CHARS).collect();
    let mut pad = at - start;
    if start > 0 {
        text.insert(0, '…');
        pad += 1;
    }
    if chars.next().is_some() {
        text.push('…');
    }
    (text, pad)
}

/// A file's lines by number, indexed once: looking each finding's line up
/// with `lines().nth()` costs the file once per finding. Lines break where
/// YAML breaks them ([`super::yaml::split_lines`]), so line N is the
/// parser's line N.
struct Lines<'a> {
    lines: Vec<&'a str>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines {
            lines: super::yaml::split_lines(text).collect(),
        }
    }

    /// Line `number` (1-based), without its line ending.
    fn get(&self, number: u32) -> Option<&'a str> {
        let i = (number as usize).checked_sub(1)?;
        self.lines.get(i).copied()
    }
}

/// Masks whatever follows the key on a `key: value` line; a line holding
/// only a key (its value on the lines below) has nothing to mask, and stays
/// as it is so the caret still points at the key.
fn redact_value(line: &str) -> String {
    match line.find(':') {
        Some(i) if line[i + 1..].trim().is_empty() => line.to_owned(),
        Some(i) => format!("{}: ****", &line[..i]),
        None => "****".to_owned(),
    }
}

/// One line that counts what was found, for the end of human output.
pub fn summary(findings: &[Finding]) -> String {
    let errors = findings.iter().filter(|f| f.is_error()).count();
    let warnings = findings.len() - errors;
    format!("{}, {}", count(errors, "error"), count(warnings, "warning"))
}

/// `1 error`, `2 errors`: a count with its noun (regular plurals only).
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_output_points_at_the_token() {
        let finding = Finding::error(
            "env.enforcement",
            "environments/dev/environment.yaml",
            "bad",
        )
        .at(Some(Position {
            line: 2,
            column: 14,
            width: 4,
        }))
        .hint("use enforce");
        let sources = HashMap::from([(
            "environments/dev/environment.yaml".to_owned(),
            "slug: dev\nenforcement: lots\n".to_owned(),
        )]);
        let text = render_human(&[finding], &sources, Palette::PLAIN);
        assert!(
            text.contains("2 | enforcement: lots\n  |              ^^^^\n"),
            "{text}"
        );
        assert!(text.contains("= hint: use enforce"));
    }

    /// `count` findings of `rule` on line 2 of `file`, whose line is `width` long.
    fn on_a_long_line(rule: &'static str, count: usize, width: usize) -> (Vec<Finding>, String) {
        let line = format!("chain: [{}]", vec!["x-a"; width / 5].join(", "));
        let findings = (0..count)
            .map(|i| {
                Finding::error(rule, "packs/p.yaml", "duplicate").at(Some(Position {
                    line: 2,
                    column: 9 + 5 * (i % (width / 5)) as u32,
                    width: 3,
                }))
            })
            .collect();
        (findings, format!("pack: {{}}\n{line}\n"))
    }

    #[test]
    fn many_findings_on_a_long_line_print_a_bounded_text() {
        // NB: unbounded, this printed 2,000 copies of a 100 KB line (200 MB).
        let (findings, text) = on_a_long_line("pack.chain-duplicate", 2_000, 100_000);
        let sources = HashMap::from([("packs/p.yaml".to_owned(), text)]);
        let out = render_human(&findings, &sources, Palette::PLAIN);
        assert!(out.len() < 8 << 10, "{} bytes", out.len());
        assert_eq!(out.matches("error[pack.chain-duplicate]").count(), 10);
        assert!(
            out.contains("… 1990 more [pack.chain-duplicate] in packs/p.yaml not shown"),
            "{out}"
        );
        let longest = out.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(
            longest < MAX_LINE_CHARS + 20,
            "a line of {longest} characters"
        );
    }

    #[test]
    fn the_caret_stays_under_the_token_in_a_cut_line() {
        let (findings, text) = on_a_long_line("pack.chain-duplicate", 1, 100_000);
        let mut finding = findings[0].clone();
        finding.column = Some(50_001);
        let source = text.lines().nth(1).unwrap();
        let token: String = source.chars().skip(50_000).take(3).collect();
        let sources = HashMap::from([("packs/p.yaml".to_owned(), text.clone())]);
        let out = render_human(&[finding], &sources, Palette::PLAIN);
        let lines: Vec<&str> = out.lines().collect();
        let shown = lines.iter().find(|l| l.starts_with("2 |")).unwrap();
        let caret = lines.iter().find(|l| l.contains('^')).unwrap();
        let at = caret.chars().position(|c| c == '^').unwrap();
        let under: String = shown.chars().skip(at).take(3).collect();
        assert_eq!(under, token, "\n{shown}\n{caret}");
        assert!(
            shown.starts_with("2 | …") && shown.ends_with('…'),
            "{shown}"
        );
    }

    #[test]
    fn output_past_its_bound_counts_what_it_left_out() {
        // NB: distinct rules and files, so only the total bound applies.
        let findings: Vec<Finding> = (0..20_000)
            .map(|i| Finding::error("schema.invalid", format!("f{i}.yaml"), "x".repeat(100)))
            .collect();
        let out = render_human(&findings, &HashMap::new(), Palette::PLAIN);
        assert!(
            out.len() < MAX_HUMAN_BYTES + (4 << 10),
            "{} bytes",
            out.len()
        );
        assert!(
            out.contains("more findings not shown"),
            "{}",
            &out[out.len() - 300..]
        );
    }

    #[test]
    fn redacted_lines_never_show_the_value() {
        assert_eq!(redact_value("    token: sk-live-123"), "    token: ****");
        assert_eq!(redact_value("  audit-loger:"), "  audit-loger:");
    }
}
