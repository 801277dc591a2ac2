//! Shared pieces of human and machine output.

use crate::config::{
    Loaded,
    finding::{self, Palette},
};
use clap::ValueEnum;
use std::io::IsTerminal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Colour {
    Auto,
    Always,
    Never,
}

impl Colour {
    /// The palette for a stream: colour only on a terminal, and never when
    /// NO_COLOR is set (https://no-color.org), unless forced with `always`.
    pub fn palette(self, stream_is_terminal: bool) -> Palette {
        if self.on(stream_is_terminal) {
            Palette::ANSI
        } else {
            Palette::PLAIN
        }
    }

    /// Whether a stream gets colour: one decision for output and logs.
    pub fn on(self, stream_is_terminal: bool) -> bool {
        match self {
            Colour::Always => true,
            Colour::Never => false,
            Colour::Auto => {
                stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }

    pub fn stdout(self) -> Palette {
        self.palette(std::io::stdout().is_terminal())
    }

    pub fn stderr(self) -> Palette {
        self.palette(std::io::stderr().is_terminal())
    }
}

/// Findings for people on standard error, with a summary line.
pub fn print_findings(loaded: &Loaded, palette: Palette) {
    if loaded.findings.is_empty() {
        return;
    }
    eprint!(
        "{}",
        finding::render_human(&loaded.findings, &loaded.sources, palette)
    );
    eprintln!("{}", finding::summary(&loaded.findings));
}

/// An aligned table: a header row and columns padded to their widest cell.
/// Rows are arrays or vectors of `&str` or `String`; a short row leaves its
/// last cells empty.
pub fn table<S: AsRef<str>>(header: &[&str], rows: &[impl AsRef<[S]>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row.as_ref()) {
            *width = (*width).max(cell.as_ref().chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.as_ref().iter().map(AsRef::as_ref));
    }
    out
}

/// A unified diff for people: headers bold, additions green, removals
/// red, hunk lines in the accent colour (none with a plain palette).
pub fn coloured_diff(diff: &str, palette: Palette) -> String {
    diff.lines()
        .map(|line| {
            let colour = match line.as_bytes().first() {
                _ if line.starts_with("+++") || line.starts_with("---") => palette.bold,
                Some(b'+') => palette.success,
                Some(b'-') => palette.error,
                Some(b'@') => palette.accent,
                _ => "",
            };
            let reset = if colour.is_empty() { "" } else { palette.reset };
            format!("{colour}{line}{reset}\n")
        })
        .collect()
}

/// A duration as flags take it: `500ms`, `30s`, `5m`, `2h`.
pub fn duration(duration: std::time::Duration) -> String {
    match duration.as_millis() {
        ms if ms < 1000 => format!("{ms}ms"),
        ms => crate::reconcile::clock::age(i64::try_from(ms).unwrap_or(i64::MAX)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align() {
        let text = super::table(&["A", "LONG"], &[["wide cell", "x"], ["b", "y"]]);
        assert_eq!(text, "A          LONG\nwide cell  x\nb          y\n");
        let owned = super::table(&["A", "B"], &[vec!["x".to_owned(), "y".to_owned()]]);
        assert_eq!(owned, "A  B\nx  y\n");
    }
}

/// `-o text|json|yaml`: human text, or a document for machines.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TextOrData {
    Text,
    Json,
    Yaml,
}

/// Prints `value` as the JSON every command and the API share (camelCase
/// keys, RFC 3339 times, nested documents), pretty.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints `value` as YAML: the same document as [`print_json`].
pub fn print_yaml(value: &impl serde::Serialize) -> anyhow::Result<()> {
    print!("{}", serde_saphyr::to_string(value)?);
    Ok(())
}
