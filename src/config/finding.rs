//! Findings: what validation says about a repository, each tied to a file,
//! a position, a JSON pointer and a stable rule id.

use serde::Serialize;
use std::{collections::HashMap, fmt::Write as _};

/// How serious a finding is. Only errors make a revision invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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

/// Human output in the style of rustc: the rule, the message, the location,
/// the source line with a caret under the offending token, and the hint.
pub fn render_human(findings: &[Finding], sources: &HashMap<String, String>, p: Palette) -> String {
    let mut out = String::new();
    for finding in findings {
        let (label, colour) = match finding.severity {
            Severity::Error => ("error", p.error),
            Severity::Warning => ("warning", p.warning),
        };
        let _ = writeln!(
            out,
            "{colour}{label}[{}]{reset}{bold}: {}{reset}",
            finding.rule,
            finding.message,
            reset = p.reset,
            bold = p.bold
        );
        let _ = writeln!(out, "  {}-->{} {}", p.accent, p.reset, finding.location());
        if let (Some(line), Some(column), Some(source)) =
            (finding.line, finding.column, sources.get(&finding.file))
            && let Some(text) = source.lines().nth(line.saturating_sub(1) as usize)
        {
            let text = if finding.redact {
                redact_value(text)
            } else {
                text.to_owned()
            };
            let text = text.replace('\t', " ");
            let gutter = " ".repeat(line.to_string().len());
            let pad = " ".repeat(column.saturating_sub(1) as usize);
            let width = finding.width.max(1) as usize;
            let _ = writeln!(out, "{gutter} {}|{}", p.accent, p.reset);
            let _ = writeln!(out, "{}{line} |{} {text}", p.accent, p.reset);
            let _ = writeln!(
                out,
                "{gutter} {}|{} {pad}{colour}{}{reset}",
                p.accent,
                p.reset,
                "^".repeat(width),
                reset = p.reset
            );
        }
        if !finding.pointer.is_empty() {
            let _ = writeln!(out, "  {}= at:{} {}", p.accent, p.reset, finding.pointer);
        }
        if let Some(hint) = &finding.hint {
            let _ = writeln!(out, "  {}= hint:{} {hint}", p.accent, p.reset);
        }
        out.push('\n');
    }
    out
}

/// Masks whatever follows the key on a `key: value` line.
fn redact_value(line: &str) -> String {
    match line.find(':') {
        Some(i) if i + 1 < line.len() => format!("{}: ****", &line[..i]),
        _ => "****".to_owned(),
    }
}

/// One line that counts what was found, for the end of human output.
pub fn summary(findings: &[Finding]) -> String {
    let errors = findings.iter().filter(|f| f.is_error()).count();
    let warnings = findings.len() - errors;
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("{n} {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    format!(
        "{}, {}",
        plural(errors, "error"),
        plural(warnings, "warning")
    )
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

    #[test]
    fn redacted_lines_never_show_the_value() {
        assert_eq!(redact_value("    token: sk-live-123"), "    token: ****");
    }
}
