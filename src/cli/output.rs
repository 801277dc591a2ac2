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
pub fn table<const N: usize>(header: &[&str; N], rows: &[[&str; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
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
    }
}

/// `-o text|json`: human text, or JSON for machines.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TextOrJson {
    Text,
    Json,
}
