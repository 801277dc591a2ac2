//! Reading one YAML file safely: UTF-8 and emptiness checks, a bounded parse
//! with serde-saphyr (duplicate keys, alias bombs and deep nesting are
//! errors, not hangs), and an index from JSON pointers back to source
//! positions so later passes can say where a value came from.

use super::finding::{Finding, Position};
use granit_parser::{Event, Parser, Span};
use serde_json::Value;
use serde_saphyr::{Budget, Error as YamlError, Options};
use std::collections::HashMap;

/// Nesting deeper than any real configuration needs, and shallow enough that
/// no recursive pass over the value can exhaust the stack.
const MAX_DEPTH: usize = 48;
/// Aliases are rare in config; a few thousand is generous and stops billion-laughs.
const MAX_ALIASES: usize = 2_000;
const MAX_REPLAYED_EVENTS: usize = 100_000;

/// Decodes a file's bytes, refusing what is not UTF-8.
pub fn decode(file: &str, bytes: Vec<u8>) -> Result<String, Box<Finding>> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let text = String::from_utf8_lossy(valid);
        let (line, last) = split_lines(&text)
            .enumerate()
            .last()
            .expect("split_lines yields at least one line");
        let (line, column) = (line as u32 + 1, last.chars().count() as u32 + 1);
        Box::new(
            Finding::error("file.not-utf8", file, "file is not valid UTF-8")
                .at(Some(Position {
                    line,
                    column,
                    width: 1,
                }))
                .hint("save the file as UTF-8"),
        )
    })
}

fn options() -> Options {
    let mut options = Options::default();
    options.strict_booleans = true;
    options.with_snippet = false;
    options.emit_comments = false;
    let mut budget = Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_aliases = MAX_ALIASES;
    budget.flow_nesting_limit = MAX_DEPTH;
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    options
}

/// Parses a YAML document into a JSON value.
pub fn parse(file: &str, text: &str) -> Result<Value, Box<Finding>> {
    if text.trim().is_empty() {
        return Err(Box::new(
            Finding::error("file.empty", file, "file is empty")
                .hint("an empty file configures nothing; delete it or fill it in"),
        ));
    }
    match serde_saphyr::from_str_with_options::<Value>(text, options()) {
        Ok(Value::Null) => Err(Box::new(Finding::error(
            "file.empty",
            file,
            "file holds no YAML document (only comments or `null`)",
        ))),
        Ok(value) => Ok(value),
        Err(error) => Err(Box::new(
            tab_indentation(file, text).unwrap_or_else(|| yaml_finding(file, &error)),
        )),
    }
}

/// The error inside serde-saphyr's wrappers (snippets, alias locations).
fn innermost(mut error: &YamlError) -> &YamlError {
    while let YamlError::AliasError { error: inner, .. }
    | YamlError::WithSnippet { error: inner, .. } = error
    {
        error = inner;
    }
    error
}

fn yaml_finding(file: &str, error: &YamlError) -> Finding {
    let location = error.location();
    let error = innermost(error);
    let text = error.to_string();
    let limit_hit = text.contains("limit exceeded");
    let (rule, hint) = match error {
        YamlError::DuplicateMappingKey { .. } => (
            "yaml.duplicate-key",
            Some("a key may appear once in a mapping; remove or merge the repeats"),
        ),
        YamlError::Budget { .. }
        | YamlError::AliasReplayLimitExceeded { .. }
        | YamlError::AliasExpansionLimitExceeded { .. }
        | YamlError::AliasReplayStackDepthExceeded { .. }
        | YamlError::AliasReplayCounterOverflow { .. } => (
            "yaml.limit",
            Some("the document is nested too deeply or expands too many aliases"),
        ),
        YamlError::MultipleDocuments { .. } => (
            "yaml.multiple-documents",
            Some("keep one document per file (no `---` separators)"),
        ),
        _ if limit_hit => (
            "yaml.limit",
            Some("the document is nested too deeply or expands too many aliases"),
        ),
        _ => ("yaml.syntax", None),
    };
    let message = text.lines().next().unwrap_or("invalid YAML").to_owned();
    let position = location.and_then(|l| {
        (l.line() > 0).then(|| Position {
            line: l.line() as u32,
            column: l.column().max(1) as u32,
            width: 1,
        })
    });
    let finding = Finding::error(rule, file, message).at(position);
    match hint {
        Some(hint) => finding.hint(hint),
        None => finding,
    }
}

/// YAML forbids tabs in indentation; say so plainly rather than as a parse error.
fn tab_indentation(file: &str, text: &str) -> Option<Finding> {
    split_lines(text).enumerate().find_map(|(i, line)| {
        let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
        let column = indent.find('\t')?;
        Some(
            Finding::error("yaml.tab", file, "tab character in indentation")
                .at(Some(Position {
                    line: i as u32 + 1,
                    column: column as u32 + 1,
                    width: 1,
                }))
                .hint("indent YAML with spaces only"),
        )
    })
}

/// A text's lines as YAML counts them, without their endings: `\r\n`,
/// `\n` and a lone `\r` each end one, so line N here is the parser's line
/// N (`str::lines` does not break at a lone `\r`: a finding after one showed
/// the wrong source line; found by fuzzing). Like `split`, a text ending in
/// a line break ends with an empty line, and there is always one.
pub fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(text)
            }
            Some(end) => {
                let skip = if text[end..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&text[end + skip..]);
                Some(&text[..end])
            }
        }
    })
}

/// Where each node of a document sits, by JSON pointer: its key (for
/// mapping entries) and its value.
#[derive(Debug, Default)]
pub struct SpanIndex {
    nodes: HashMap<String, NodeSpan>,
}

#[derive(Debug, Clone, Copy)]
struct NodeSpan {
    key: Option<Position>,
    value: Position,
}

enum Frame {
    Map {
        pointer: String,
        key: Option<(String, Position)>,
    },
    Seq {
        pointer: String,
        next: usize,
    },
    /// A collection used as a mapping key: nothing inside it is addressable.
    Opaque,
}

impl SpanIndex {
    /// Indexes a document that has already parsed; on a parse error the
    /// index holds whatever came before it.
    pub fn build(text: &str) -> SpanIndex {
        let mut index = SpanIndex::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(text);
        while let Some(Ok((event, span))) = parser.next_event() {
            match event {
                Event::Scalar(value, ..) => {
                    index.place(&mut stack, &span, Some(&value));
                }
                Event::Alias(_) => {
                    index.place(&mut stack, &span, None);
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let frame = match index.place(&mut stack, &span, None) {
                        Some(pointer) if matches!(event, Event::MappingStart(..)) => {
                            Frame::Map { pointer, key: None }
                        }
                        Some(pointer) => Frame::Seq { pointer, next: 0 },
                        None => Frame::Opaque,
                    };
                    stack.push(frame);
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        index
    }

    /// Records a node at its place in the enclosing collection and returns
    /// its pointer; `None` for mapping keys and for nodes inside complex keys.
    fn place(&mut self, stack: &mut [Frame], span: &Span, scalar: Option<&str>) -> Option<String> {
        let position = position(span);
        let (pointer, key) = match stack.last_mut() {
            None => (String::new(), None),
            Some(Frame::Opaque) => return None,
            Some(Frame::Seq { pointer, next }) => {
                *next += 1;
                (format!("{pointer}/{}", *next - 1), None)
            }
            Some(Frame::Map { pointer, key }) => match key.take() {
                None => {
                    *key = Some((scalar.unwrap_or("").to_owned(), position));
                    return None;
                }
                Some((name, key_position)) => {
                    (format!("{pointer}/{}", escape(&name)), Some(key_position))
                }
            },
        };
        self.nodes.insert(
            pointer.clone(),
            NodeSpan {
                key,
                value: position,
            },
        );
        Some(pointer)
    }

    /// The position of the node at `pointer`, or of its nearest recorded
    /// ancestor. With `key`, a mapping entry's key rather than its value.
    pub fn locate(&self, pointer: &str, key: bool) -> Option<Position> {
        let mut pointer = pointer;
        loop {
            if let Some(node) = self.nodes.get(pointer) {
                return Some(if key {
                    node.key.unwrap_or(node.value)
                } else {
                    node.value
                });
            }
            let cut = pointer.rfind('/')?;
            pointer = &pointer[..cut];
        }
    }
}

fn position(span: &Span) -> Position {
    let (start, end) = (span.start, span.end);
    let width = if end.line() == start.line() && end.col() > start.col() {
        end.col() - start.col()
    } else {
        1
    };
    Position {
        line: start.line() as u32,
        column: start.col() as u32 + 1,
        width: width as u32,
    }
}

/// Escapes one JSON pointer segment (RFC 6901).
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_finds_keys_and_values() {
        let text = "pack:\n  name: support\npolicies:\n  chain: [audit-logger, pii-detector]\n";
        let index = SpanIndex::build(text);
        let at = |p: &str, key: bool| index.locate(p, key).map(|p| (p.line, p.column, p.width));
        assert_eq!(at("/pack/name", true), Some((2, 3, 4)));
        assert_eq!(at("/pack/name", false), Some((2, 9, 7)));
        assert_eq!(at("/policies/chain/1", false), Some((4, 25, 12)));
        // Unknown pointers fall back to the nearest ancestor.
        assert_eq!(at("/pack/version", false), at("/pack", false));
    }

    #[test]
    fn duplicate_keys_are_findings() {
        let finding = parse("a.yaml", "a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(finding.rule, "yaml.duplicate-key");
        assert_eq!(finding.line, Some(3));
    }

    #[test]
    fn alias_bombs_are_refused_quickly() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let finding = parse("bomb.yaml", &text).unwrap_err();
        assert_eq!(finding.rule, "yaml.limit", "{finding:?}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(10_000) + &"]".repeat(10_000);
        let finding = parse("deep.yaml", &text).unwrap_err();
        assert_eq!(finding.rule, "yaml.limit", "{finding:?}");
    }

    #[test]
    fn tabs_in_indentation_are_named() {
        let finding = parse("t.yaml", "pack:\n\tname: x\n").unwrap_err();
        assert_eq!(finding.rule, "yaml.tab");
        assert_eq!((finding.line, finding.column), (Some(2), Some(1)));
    }

    #[test]
    fn lines_break_where_yaml_breaks_them() {
        let lines = |text| split_lines(text).collect::<Vec<_>>();
        assert_eq!(lines("a\nb\r\nc\rd"), ["a", "b", "c", "d"]);
        assert_eq!(lines("a\n"), ["a", ""]);
        assert_eq!(lines(""), [""]);
        assert_eq!(lines("\r\r\n"), ["", "", ""]);
    }

    /// Found by fuzzing: a lone `\r` ends a line for the parser, so the
    /// line it reports is one the caret must find.
    #[test]
    fn a_finding_after_a_lone_carriage_return_points_at_its_line() {
        let text = "a: 1\rb: [\n";
        let finding = parse("cr.yaml", text).unwrap_err();
        let line = finding.line.expect("a syntax error has a line");
        let expected = split_lines(text).nth(line as usize - 1).unwrap();
        let sources = std::collections::HashMap::from([("cr.yaml".to_owned(), text.to_owned())]);
        let shown = super::super::finding::render_human(
            std::slice::from_ref(&*finding),
            &sources,
            super::super::finding::Palette::PLAIN,
        );
        assert!(
            shown.contains(&format!("{line} | {expected}\n")),
            "line {line} is {expected:?}: {shown}"
        );
        let tab = parse("t.yaml", "a: 1\rb:\r\tc: 2\n").unwrap_err();
        assert_eq!((tab.rule, tab.line), ("yaml.tab", Some(3)));
        let bad = decode("x.yaml", b"a: 1\rb: \xff\n".to_vec()).unwrap_err();
        assert_eq!((bad.line, bad.column), (Some(2), Some(4)));
    }

    #[test]
    fn non_utf8_is_located() {
        let finding = decode("x.yaml", b"a: 1\nb: \xff\n".to_vec()).unwrap_err();
        assert_eq!(finding.rule, "file.not-utf8");
        assert_eq!((finding.line, finding.column), (Some(2), Some(4)));
    }
}
