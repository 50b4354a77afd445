//! YAML text to a tree of located nodes: every scalar, list and mapping keeps its span.
//!
//! serde_yaml reports where syntax breaks but forgets where values came from; the checks after
//! parsing (duplicate stage names, `needs`, cycles, unset variables) must point at the source too.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

use super::diag::Diagnostic;
use super::source::Span;

/// Nesting deeper than this is refused rather than risking the stack of later recursive passes.
const MAX_DEPTH: usize = 64;
/// Aliases may multiply nodes exponentially ("billion laughs"); refuse trees larger than this.
const MAX_NODES: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// `plain` scalars (unquoted) may be read as numbers or booleans; quoted ones are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match &mut self.value {
            Value::Map(entries) => entries.iter_mut().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The key node for `key`, to point at the key rather than its value.
    pub fn key(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(k, _)| k)
    }

    /// What kind of YAML value this is, for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null => "nothing (null)".into(),
            Value::Scalar { text, .. } => format!("`{}`", truncate(text, 40)),
            Value::Seq(_) => "a list".into(),
            Value::Map(_) => "a mapping".into(),
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

/// Parses one YAML document. An empty document is a `Null` node.
pub fn parse(text: &str) -> Result<Node, Diagnostic> {
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder::default();
    loop {
        let (event, mark) = parser.next_token().map_err(|e| scan_error(text, &e))?;
        if builder.push(event, mark)? {
            break;
        }
    }
    Ok(builder.root.unwrap_or(Node { value: Value::Null, span: Span::new(1, 1, 1) }))
}

fn span_of(mark: Marker, len: usize) -> Span {
    Span::new(mark.line().max(1), mark.col() + 1, len)
}

fn scan_error(text: &str, e: &ScanError) -> Diagnostic {
    let span = span_of(*e.marker(), 1);
    let line = text.lines().nth(span.line.saturating_sub(1)).unwrap_or("");
    let mut d = Diagnostic::new(format!("invalid YAML: {}", e.info())).at(span);
    if line.contains('\t') {
        let col = line.find('\t').map(|b| line[..b].chars().count() + 1).unwrap_or(span.col);
        d = d.at(Span::new(span.line, col, 1)).help("YAML does not allow tabs for indentation; use spaces");
    }
    d
}

enum Open {
    Seq { items: Vec<Node>, span: Span, anchor: usize },
    Map { entries: Vec<(Node, Node)>, pending_key: Option<Node>, span: Span, anchor: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    documents: usize,
}

impl Builder {
    /// Feeds one event; returns true at the end of the stream.
    fn push(&mut self, event: Event, mark: Marker) -> Result<bool, Diagnostic> {
        match event {
            Event::StreamEnd => return Ok(true),
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Diagnostic::new("more than one YAML document in this file")
                        .at(span_of(mark, 3))
                        .expected("a single document")
                        .help("remove the `---` separator and merge the documents"));
                }
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let len = if style == TScalarStyle::Plain { text.chars().count() } else { 1 };
                let value = if style == TScalarStyle::Plain && is_null(&text) {
                    Value::Null
                } else {
                    Value::Scalar { text, plain: style == TScalarStyle::Plain }
                };
                self.add(Node { value, span: span_of(mark, len) }, anchor)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.open(Open::Seq { items: Vec::new(), span: span_of(mark, 1), anchor }, mark)?
            }
            Event::MappingStart(anchor, _) => {
                self.open(Open::Map { entries: Vec::new(), pending_key: None, span: span_of(mark, 1), anchor }, mark)?
            }
            Event::SequenceEnd | Event::MappingEnd => self.close()?,
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| Diagnostic::new("alias refers to an unknown anchor").at(span_of(mark, 1)))?;
                self.nodes += count(&node);
                self.add(node, 0)?;
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
        }
        Ok(false)
    }

    fn open(&mut self, open: Open, mark: Marker) -> Result<(), Diagnostic> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Diagnostic::new(format!("nesting deeper than {MAX_DEPTH} levels"))
                .at(span_of(mark, 1))
                .help("pipeline.yaml never needs this depth; check for runaway brackets"));
        }
        self.stack.push(open);
        Ok(())
    }

    fn close(&mut self) -> Result<(), Diagnostic> {
        let node = match self.stack.pop() {
            Some(Open::Seq { items, span, anchor }) => (Node { value: Value::Seq(items), span }, anchor),
            Some(Open::Map { entries, span, anchor, .. }) => (Node { value: Value::Map(entries), span }, anchor),
            None => return Ok(()),
        };
        self.add(node.0, node.1)
    }

    fn add(&mut self, node: Node, anchor: usize) -> Result<(), Diagnostic> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(Diagnostic::new(format!("document expands to more than {MAX_NODES} nodes"))
                .at(node.span)
                .help("aliases that expand exponentially are not supported"));
        }
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map { entries, pending_key, .. }) => match pending_key.take() {
                None => {
                    if !matches!(node.value, Value::Scalar { .. }) {
                        return Err(Diagnostic::new("mapping keys must be plain text")
                            .at(node.span)
                            .found(node.describe()));
                    }
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.as_str() == node.as_str()) {
                        return Err(Diagnostic::new(format!("duplicate key `{}`", node.as_str().unwrap_or_default()))
                            .at(node.span)
                            .note(format!("first defined at line {}", first.span.line))
                            .help("each key may appear once in a mapping; remove or rename one"));
                    }
                    *pending_key = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
        Ok(())
    }
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn count(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|(k, v)| count(k) + count(v)).sum::<usize>(),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions() {
        let root = parse("version: 1\nstages:\n  - name: a\n").unwrap();
        let name = &root.get("stages").unwrap().as_seq().unwrap()[0].get("name").unwrap();
        assert_eq!(name.span, Span::new(3, 11, 1));
        assert_eq!(root.key("stages").unwrap().span, Span::new(2, 1, 6));
    }

    #[test]
    fn rejects_duplicate_keys() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.message, "duplicate key `a`");
        assert_eq!(err.span, Some(Span::new(3, 1, 1)));
    }

    #[test]
    fn tabs_get_a_hint() {
        let err = parse("a:\n\tb: 1\n").unwrap_err();
        assert!(err.help.as_deref().unwrap_or_default().contains("tabs"), "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(10_000);
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("nesting") || err.message.contains("recursion"), "{err:?}");
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            text += &format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", "));
        }
        assert!(parse(&text).unwrap_err().message.contains("expands"));
    }
}
