//! The YAML loader with spans: `config::yaml::decode` and `parse`, the span
//! index over the same text, and the human rendering of what they find.
//! Properties: no panic; every position a finding or the index gives is a
//! place in the text as YAML counts its lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::config::{
    Finding,
    finding::{Palette, render_human},
    yaml::{self, SpanIndex},
};
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    let text = match yaml::decode("fuzz.yaml", data.to_vec()) {
        Ok(text) => text,
        Err(finding) => {
            check(&String::from_utf8_lossy(data), &finding);
            return;
        }
    };
    let value = yaml::parse("fuzz.yaml", &text);
    if let Err(finding) = &value {
        check(&text, finding);
        let sources = HashMap::from([("fuzz.yaml".to_owned(), text.clone())]);
        let shown = render_human(std::slice::from_ref(finding), &sources, Palette::PLAIN);
        assert!(shown.contains(finding.rule), "{shown}");
    }
    let index = SpanIndex::build(&text);
    let lines: Vec<usize> = yaml::split_lines(&text)
        .map(|l| l.chars().count())
        .collect();
    for pointer in [
        "",
        "/pack",
        "/pack/name",
        "/policies/chain/0",
        "/0",
        "/a/b/c",
    ] {
        for key in [false, true] {
            if let Some(at) = index.locate(pointer, key) {
                in_text(&lines, at.line, at.column, &text);
            }
        }
    }
});

fn check(text: &str, finding: &Finding) {
    let lines: Vec<usize> = yaml::split_lines(text).map(|l| l.chars().count()).collect();
    if let (Some(line), Some(column)) = (finding.line, finding.column) {
        in_text(&lines, line, column, text);
    }
}

/// Line `line` exists and column `column` is on it or just past its end.
fn in_text(lines: &[usize], line: u32, column: u32, text: &str) {
    assert!(line >= 1, "line 0 in {text:?}");
    let Some(&chars) = lines.get(line as usize - 1) else {
        panic!("line {line} of a text of {} lines: {text:?}", lines.len());
    };
    assert!(
        column >= 1 && column as usize <= chars + 2,
        "column {column} of line {line} ({chars} chars): {text:?}"
    );
}
