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
        let on = match self {
            Colour::Always => true,
            Colour::Never => false,
            Colour::Auto => {
                stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        };
        if on { Palette::ANSI } else { Palette::PLAIN }
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
