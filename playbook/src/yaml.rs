//! The only module that talks to the YAML parser (stage **load**).
//!
//! It turns YAML text into a positioned [`Node`] tree: every node knows the line and column it
//! started at, anchors and aliases are resolved, merge keys (`<<:`) are applied, and Ruby-symbol
//! style mapping keys (`:message:`) lose their leading colon. Plain scalars are resolved the way
//! Ruby's Psych loader did (YAML 1.1 booleans such as `yes`/`no`, integers, floats, `~`/`null`).
//!
//! Writing YAML (reports, file data stores) goes through [`to_yaml_string`], also here, so the
//! choice of YAML crates is confined to this file.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};
use serde_json::Value;

/// Upper bound on nodes produced by alias expansion (guards against "billion laughs").
const MAX_NODES: usize = 1_000_000;

/// Upper bound on nesting (guards the recursive tree builder's stack).
const MAX_DEPTH: usize = 200;

/// A position in a source file; both numbers are 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number, starting at 1.
    pub column: usize,
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// The shape of one YAML node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string; `plain` is true for unquoted scalars (so `:sym` can be told from `":sym"`).
    Str {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A YAML node with the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) mark: Mark,
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// Where the parser gave up.
    pub mark: Mark,
    /// What went wrong.
    pub message: String,
}

impl Node {
    pub(crate) fn new(kind: Kind, mark: Mark) -> Self {
        Self { kind, mark }
    }

    /// The name of this node's type as used in error messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "boolean",
            Kind::Int(_) => "integer",
            Kind::Float(_) => "float",
            Kind::Str { .. } => "string",
            Kind::Seq(_) => "array",
            Kind::Map(_) => "hash",
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str { text, .. } => Some(text),
            _ => None,
        }
    }

    pub(crate) fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub(crate) fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// Text of a scalar key (numbers and booleans are rendered, as Ruby would for `to_s`).
    pub(crate) fn key_text(&self) -> String {
        match &self.kind {
            Kind::Str { text, .. } => text.clone(),
            Kind::Null => String::new(),
            Kind::Bool(b) => b.to_string(),
            Kind::Int(i) => i.to_string(),
            Kind::Float(f) => f.to_string(),
            Kind::Seq(_) | Kind::Map(_) => self.to_value().to_string(),
        }
    }

    /// Looks a key up in a mapping node.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.key_text() == key)
            .map(|(_, v)| v)
    }

    /// Converts to a JSON value (positions are dropped).
    pub(crate) fn to_value(&self) -> Value {
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Kind::Str { text, .. } => Value::String(text.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Kind::Map(pairs) => Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (k.key_text(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

/// Parses the first document of `text` into a node tree. An empty document is `Null`.
pub(crate) fn parse(text: &str) -> Result<Node, YamlError> {
    let mut events = Vec::new();
    for item in Parser::new_from_str(text) {
        match item {
            Ok((event, span)) => events.push((event, span)),
            Err(e) => return Err(scan_error(&e)),
        }
    }
    let mut builder = Builder {
        events,
        pos: 0,
        anchors: HashMap::new(),
        produced: 0,
        depth: 0,
    };
    builder.document()
}

/// Serialises a value as YAML text.
pub(crate) fn to_yaml_string<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, String> {
    yaml_serde::to_string(value).map_err(|e| e.to_string())
}

fn scan_error(e: &ScanError) -> YamlError {
    YamlError {
        mark: Mark {
            line: e.marker().line(),
            column: e.marker().col() + 1,
        },
        message: e.info().to_string(),
    }
}

fn mark_of(span: &Span) -> Mark {
    Mark {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

struct Builder<'a> {
    events: Vec<(Event<'a>, Span)>,
    pos: usize,
    anchors: HashMap<usize, Node>,
    produced: usize,
    depth: usize,
}

impl Builder<'_> {
    fn document(&mut self) -> Result<Node, YamlError> {
        // Skip stream/document starts until the first node.
        while let Some((event, span)) = self.events.get(self.pos) {
            match event {
                Event::StreamStart | Event::DocumentStart(_) | Event::Nothing => self.pos += 1,
                Event::StreamEnd | Event::DocumentEnd => {
                    return Ok(Node::new(Kind::Null, mark_of(span)));
                }
                _ => return self.node(),
            }
        }
        Ok(Node::new(Kind::Null, Mark { line: 1, column: 1 }))
    }

    fn error(&self, mark: Mark, message: impl Into<String>) -> YamlError {
        YamlError {
            mark,
            message: message.into(),
        }
    }

    fn count(&mut self, mark: Mark, n: usize) -> Result<(), YamlError> {
        self.produced = self.produced.saturating_add(n);
        if self.produced > MAX_NODES {
            return Err(self.error(mark, "document expands to too many nodes (alias bomb?)"));
        }
        Ok(())
    }

    /// Mapping keys that are plain scalars keep their text (`on:` stays "on", not `true`).
    fn key_node(&mut self) -> Result<Node, YamlError> {
        if let Some((Event::Scalar(text, ScalarStyle::Plain, 0, None), span)) =
            self.events.get(self.pos)
        {
            let node = Node::new(
                Kind::Str {
                    text: text.to_string(),
                    plain: true,
                },
                mark_of(span),
            );
            self.pos += 1;
            self.count(node.mark, 1)?;
            return Ok(node);
        }
        self.node()
    }

    fn node(&mut self) -> Result<Node, YamlError> {
        self.depth += 1;
        let result = self.node_inner();
        self.depth -= 1;
        result
    }

    fn node_inner(&mut self) -> Result<Node, YamlError> {
        let Some((event, span)) = self.events.get(self.pos) else {
            return Err(self.error(Mark::default(), "unexpected end of YAML input"));
        };
        let mark = mark_of(span);
        if self.depth > MAX_DEPTH {
            return Err(self.error(mark, "document is nested too deeply"));
        }
        self.pos += 1;
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let node = Node::new(resolve_scalar(text, *style, is_str_tag), mark);
                let anchor = *anchor;
                self.count(mark, 1)?;
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                Ok(node)
            }
            Event::Alias(id) => {
                let id = *id;
                match self.anchors.get(&id) {
                    Some(found) => {
                        let mut node = found.clone();
                        let size = node_size(&node);
                        self.count(mark, size)?;
                        node.mark = mark;
                        Ok(node)
                    }
                    None => Err(self.error(mark, "alias refers to an unknown anchor")),
                }
            }
            Event::SequenceStart(anchor, _) => {
                let anchor = *anchor;
                let mut items = Vec::new();
                loop {
                    match self.events.get(self.pos) {
                        Some((Event::SequenceEnd, _)) => {
                            self.pos += 1;
                            break;
                        }
                        Some(_) => items.push(self.node()?),
                        None => return Err(self.error(mark, "unterminated sequence")),
                    }
                }
                let node = Node::new(Kind::Seq(items), mark);
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                Ok(node)
            }
            Event::MappingStart(anchor, _) => {
                let anchor = *anchor;
                let mut pairs: Vec<(Node, Node)> = Vec::new();
                let mut merged: Vec<(Node, Node)> = Vec::new();
                loop {
                    match self.events.get(self.pos) {
                        Some((Event::MappingEnd, _)) => {
                            self.pos += 1;
                            break;
                        }
                        Some(_) => {
                            let mut key = self.key_node()?;
                            let value = self.node()?;
                            if let Kind::Str { text, plain: true } = &key.kind {
                                if text == "<<" {
                                    collect_merge(&value, &mut merged);
                                    continue;
                                }
                                if let Some(stripped) = text.strip_prefix(':')
                                    && !stripped.is_empty()
                                {
                                    key.kind = Kind::Str {
                                        text: stripped.to_string(),
                                        plain: true,
                                    };
                                }
                            }
                            let text = key.key_text();
                            // Later duplicates win, as with Ruby's loader.
                            pairs.retain(|(k, _)| k.key_text() != text);
                            pairs.push((key, value));
                        }
                        None => return Err(self.error(mark, "unterminated mapping")),
                    }
                }
                for (k, v) in merged {
                    let text = k.key_text();
                    if !pairs.iter().any(|(pk, _)| pk.key_text() == text) {
                        pairs.push((k, v));
                    }
                }
                let node = Node::new(Kind::Map(pairs), mark);
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                Ok(node)
            }
            Event::SequenceEnd
            | Event::MappingEnd
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => Err(self.error(mark, "unexpected YAML structure")),
        }
    }
}

fn node_size(node: &Node) -> usize {
    match &node.kind {
        Kind::Seq(items) => 1 + items.iter().map(node_size).sum::<usize>(),
        Kind::Map(pairs) => {
            1 + pairs
                .iter()
                .map(|(k, v)| node_size(k) + node_size(v))
                .sum::<usize>()
        }
        Kind::Null | Kind::Bool(_) | Kind::Int(_) | Kind::Float(_) | Kind::Str { .. } => 1,
    }
}

/// Merge-key sources: a mapping or a list of mappings (earlier ones win).
fn collect_merge(value: &Node, merged: &mut Vec<(Node, Node)>) {
    let mut add = |pairs: &[(Node, Node)]| {
        for (k, v) in pairs {
            let text = k.key_text();
            if !merged.iter().any(|(mk, _)| mk.key_text() == text) {
                merged.push((k.clone(), v.clone()));
            }
        }
    };
    match &value.kind {
        Kind::Map(pairs) => add(pairs),
        Kind::Seq(items) => {
            for item in items {
                if let Kind::Map(pairs) = &item.kind {
                    add(pairs);
                }
            }
        }
        Kind::Null | Kind::Bool(_) | Kind::Int(_) | Kind::Float(_) | Kind::Str { .. } => {}
    }
}

/// Resolves a scalar like Ruby's Psych (YAML 1.1 core types).
fn resolve_scalar(text: &str, style: ScalarStyle, str_tag: bool) -> Kind {
    if style != ScalarStyle::Plain || str_tag {
        return Kind::Str {
            text: text.to_string(),
            plain: false,
        };
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
            return Kind::Bool(true);
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            return Kind::Bool(false);
        }
        ".inf" | "+.inf" | ".Inf" | "+.Inf" => return Kind::Float(f64::INFINITY),
        "-.inf" | "-.Inf" => return Kind::Float(f64::NEG_INFINITY),
        _ => {}
    }
    if let Some(i) = parse_int(text) {
        return Kind::Int(i);
    }
    if looks_like_float(text)
        && let Ok(f) = text.replace('_', "").parse::<f64>()
    {
        return Kind::Float(f);
    }
    Kind::Str {
        text: text.to_string(),
        plain: true,
    }
}

fn parse_int(text: &str) -> Option<i64> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if body.is_empty() {
        return None;
    }
    let value = if let Some(hex) = body.strip_prefix("0x") {
        i64::from_str_radix(&hex.replace('_', ""), 16).ok()?
    } else if let Some(oct) = body.strip_prefix("0o") {
        i64::from_str_radix(&oct.replace('_', ""), 8).ok()?
    } else {
        if !body.chars().all(|c| c.is_ascii_digit() || c == '_') || body.starts_with('_') {
            return None;
        }
        body.replace('_', "").parse::<i64>().ok()?
    };
    Some(if neg { -value } else { value })
}

fn looks_like_float(text: &str) -> bool {
    let body = text.trim_start_matches(['-', '+']);
    let mut dots = 0;
    let mut digits = 0;
    let mut exp = false;
    for c in body.chars() {
        match c {
            '0'..='9' => digits += 1,
            '.' => dots += 1,
            'e' | 'E' => exp = true,
            '_' | '+' | '-' if exp || c == '_' => {}
            _ => return false,
        }
    }
    digits > 0 && dots <= 1 && (dots == 1 || exp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let node = parse("a: 1\nb:\n  - x\n").expect("parses");
        let b = node.get("b").expect("b");
        assert_eq!(b.mark.line, 3);
        let first = &b.as_seq().expect("seq")[0];
        assert_eq!((first.mark.line, first.mark.column), (3, 5));
    }

    #[test]
    fn scalars_resolve_like_psych() {
        let node = parse("a: yes\nb: 10\nc: 1.1.2\nd: '10'\ne: 2.5\nf: ~\n").expect("parses");
        assert_eq!(node.get("a").map(|n| &n.kind), Some(&Kind::Bool(true)));
        assert_eq!(node.get("b").map(|n| &n.kind), Some(&Kind::Int(10)));
        assert_eq!(node.get("c").and_then(Node::as_str), Some("1.1.2"));
        assert_eq!(node.get("d").and_then(Node::as_str), Some("10"));
        assert_eq!(node.get("e").map(|n| &n.kind), Some(&Kind::Float(2.5)));
        assert_eq!(node.get("f").map(|n| &n.kind), Some(&Kind::Null));
    }

    #[test]
    fn plain_keys_keep_their_text() {
        let node = parse("on: 1\nyes: 2\n10: 3\n").expect("parses");
        assert!(node.get("on").is_some());
        assert!(node.get("yes").is_some());
        assert!(node.get("10").is_some());
    }

    #[test]
    fn symbol_keys_lose_their_colon() {
        let node = parse(":message: hi\n").expect("parses");
        assert_eq!(node.get("message").and_then(Node::as_str), Some("hi"));
    }

    #[test]
    fn anchors_and_merges() {
        let text = "m: &base\n  a: 1\n  b: 2\nx:\n  <<: *base\n  b: 3\n";
        let node = parse(text).expect("parses");
        let x = node.get("x").expect("x").to_value();
        assert_eq!(x, serde_json::json!({"a": 1, "b": 3}));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").expect_err("must fail");
        assert!(err.mark.line >= 1, "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(5000);
        assert!(parse(&text).is_err());
        let text = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
        assert!(parse(&text).is_err());
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for name in 'b'..='k' {
            text.push_str(&format!(
                "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = name;
        }
        assert!(parse(&text).is_err());
    }
}
