//! Compound filters: the `[[{"expr": "..."}]]` form go-choria clients send.
//!
//! Supported expression subset (anything else is refused with [`Invalid::UnsupportedFilter`]):
//!
//! ```text
//! expr    := or
//! or      := and  (("or"  | "||") and)*
//! and     := unary (("and" | "&&") unary)*
//! unary   := ("not" | "!") unary | compare
//! compare := value [op value]        op: == != < > <= >= =~ matches in contains
//! value   := "(" expr ")" | 'str' | "str" | number | true | false
//!          | identity | agents | classes | facts.NAME[.NAME...] | facts["NAME"]
//!          | with("X") | include(LIST, "X") | fact("NAME")
//! ```
//!
//! `with("X")` is true when X is a class or agent of the node (exact or `/regex/`), or, when X
//! contains a fact operator (`country=uk`, `cores>=4`), when that fact comparison holds.
//! `A in LIST` and `LIST contains A` test membership; `=~`/`matches` take a regular expression.
//! The whole expression must evaluate to a boolean.

use crate::codec::Invalid;
use crate::matching::{cached_regex, compare, fact_matches, text_matches};
use crate::node::Node;

/// Evaluates one element of a request's `compound` list.
///
/// Each element must be a list of `{"expr": "..."}` objects; all of them must hold.
pub fn matches_statement(statement: &serde_json::Value, node: &dyn Node) -> Result<bool, Invalid> {
    let items = statement.as_array().ok_or(Invalid::UnsupportedFilter)?;
    for item in items {
        let expr = item
            .as_object()
            .and_then(|o| if o.len() == 1 { o.get("expr") } else { None })
            .and_then(|e| e.as_str())
            .ok_or(Invalid::UnsupportedFilter)?;
        if !evaluate(expr, node)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Parses and evaluates one expression against `node`.
pub fn evaluate(expr: &str, node: &dyn Node) -> Result<bool, Invalid> {
    let tokens = tokenize(expr)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        node,
        depth: 0,
    };
    let value = parser.or()?;
    if parser.pos != parser.tokens.len() {
        return Err(Invalid::UnsupportedFilter);
    }
    match value {
        Val::Bool(b) => Ok(b),
        Val::Str(_) | Val::Num(_) | Val::List(_) | Val::Null => Err(Invalid::UnsupportedFilter),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Num(f64),
    Ident(String),
    Op(&'static str),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Comma,
}

const OPERATORS: [&str; 12] = [
    "==", "!=", "<=", ">=", "=~", "&&", "||", "<", ">", "!", "(", ")",
];

fn tokenize(expr: &str) -> Result<Vec<Tok>, Invalid> {
    if expr.len() > 4096 {
        return Err(Invalid::UnsupportedFilter);
    }
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        match c {
            '\'' | '"' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(Invalid::UnsupportedFilter),
                        Some(&ch) if ch == quote => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            if let Some(&next) = chars.get(i + 1) {
                                s.push(next);
                            }
                            i += 2;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(s));
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            '[' => {
                out.push(Tok::LBracket);
                i += 1;
            }
            ']' => {
                out.push(Tok::RBracket);
                i += 1;
            }
            '.' => {
                out.push(Tok::Dot);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                out.push(Tok::Num(
                    text.parse().map_err(|_| Invalid::UnsupportedFilter)?,
                ));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            _ => {
                let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
                let op = OPERATORS
                    .iter()
                    .find(|op| rest.starts_with(**op))
                    .ok_or(Invalid::UnsupportedFilter)?;
                out.push(Tok::Op(op));
                i += op.chars().count();
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Bool(bool),
    Str(String),
    Num(f64),
    List(Vec<String>),
    Null,
}

impl Val {
    fn from_json(v: serde_json::Value) -> Val {
        match v {
            serde_json::Value::Null => Val::Null,
            serde_json::Value::Bool(b) => Val::Bool(b),
            serde_json::Value::Number(n) => Val::Num(n.as_f64().unwrap_or(0.0)),
            serde_json::Value::String(s) => Val::Str(s),
            serde_json::Value::Array(items) => Val::List(
                items
                    .into_iter()
                    .map(|i| match i {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect(),
            ),
            serde_json::Value::Object(o) => Val::Str(serde_json::Value::Object(o).to_string()),
        }
    }

    fn text(&self) -> Result<String, Invalid> {
        match self {
            Val::Str(s) => Ok(s.clone()),
            Val::Num(n) => Ok(n.to_string()),
            Val::Bool(b) => Ok(b.to_string()),
            Val::Null => Ok(String::new()),
            Val::List(_) => Err(Invalid::UnsupportedFilter),
        }
    }

    fn truthy(&self) -> Result<bool, Invalid> {
        match self {
            Val::Bool(b) => Ok(*b),
            Val::Str(_) | Val::Num(_) | Val::List(_) | Val::Null => Err(Invalid::UnsupportedFilter),
        }
    }
}

struct Parser<'n> {
    tokens: Vec<Tok>,
    pos: usize,
    node: &'n dyn Node,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, tok: &Tok) -> Result<(), Invalid> {
        if self.next().as_ref() == Some(tok) {
            Ok(())
        } else {
            Err(Invalid::UnsupportedFilter)
        }
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w == word)
    }

    fn or(&mut self) -> Result<Val, Invalid> {
        self.depth += 1;
        if self.depth > 64 {
            return Err(Invalid::UnsupportedFilter);
        }
        let mut left = self.and()?;
        while self.is_word("or") || self.peek() == Some(&Tok::Op("||")) {
            self.pos += 1;
            let right = self.and()?;
            left = Val::Bool(left.truthy()? | right.truthy()?);
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> Result<Val, Invalid> {
        let mut left = self.unary()?;
        while self.is_word("and") || self.peek() == Some(&Tok::Op("&&")) {
            self.pos += 1;
            let right = self.unary()?;
            left = Val::Bool(left.truthy()? & right.truthy()?);
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Val, Invalid> {
        if self.is_word("not") || self.peek() == Some(&Tok::Op("!")) {
            self.pos += 1;
            self.depth += 1;
            if self.depth > 64 {
                return Err(Invalid::UnsupportedFilter);
            }
            let v = self.unary()?;
            self.depth -= 1;
            return Ok(Val::Bool(!v.truthy()?));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Val, Invalid> {
        let left = self.value()?;
        let op = match self.peek() {
            Some(Tok::Op(op @ ("==" | "!=" | "<" | ">" | "<=" | ">=" | "=~"))) => *op,
            Some(Tok::Ident(w)) if w == "matches" => "=~",
            Some(Tok::Ident(w)) if w == "in" => "in",
            Some(Tok::Ident(w)) if w == "contains" => "contains",
            _ => return Ok(left),
        };
        self.pos += 1;
        let right = self.value()?;
        match op {
            "in" => membership(&right, &left),
            "contains" => membership(&left, &right),
            "=~" => {
                let re = cached_regex(&right.text()?, false)?;
                Ok(Val::Bool(re.is_match(&left.text()?)))
            }
            _ => {
                let actual = match left {
                    Val::Str(s) => serde_json::Value::String(s),
                    Val::Num(n) => serde_json::json!(n),
                    Val::Bool(b) => serde_json::Value::Bool(b),
                    Val::Null => serde_json::Value::Null,
                    Val::List(_) => return Err(Invalid::UnsupportedFilter),
                };
                Ok(Val::Bool(compare(&actual, op, &right.text()?)?))
            }
        }
    }

    fn value(&mut self) -> Result<Val, Invalid> {
        match self.next() {
            Some(Tok::LParen) => {
                let v = self.or()?;
                self.expect(&Tok::RParen)?;
                Ok(v)
            }
            Some(Tok::Str(s)) => Ok(Val::Str(s)),
            Some(Tok::Num(n)) => Ok(Val::Num(n)),
            Some(Tok::Ident(word)) => self.word(&word),
            _ => Err(Invalid::UnsupportedFilter),
        }
    }

    fn string_arg(&mut self) -> Result<String, Invalid> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(s),
            _ => Err(Invalid::UnsupportedFilter),
        }
    }

    fn word(&mut self, word: &str) -> Result<Val, Invalid> {
        match word {
            "true" => Ok(Val::Bool(true)),
            "false" => Ok(Val::Bool(false)),
            "identity" => Ok(Val::Str(self.node.identity().to_owned())),
            "agents" => Ok(Val::List(
                self.node
                    .agents()
                    .into_iter()
                    .map(|a| a.into_owned())
                    .collect(),
            )),
            "classes" => Ok(Val::List(
                self.node
                    .classes()
                    .into_iter()
                    .map(|a| a.into_owned())
                    .collect(),
            )),
            "facts" => self.fact_path(),
            "fact" => {
                self.expect(&Tok::LParen)?;
                let name = self.string_arg()?;
                self.expect(&Tok::RParen)?;
                Ok(self
                    .node
                    .fact(&name)
                    .map(Val::from_json)
                    .unwrap_or(Val::Null))
            }
            "with" => {
                self.expect(&Tok::LParen)?;
                let what = self.string_arg()?;
                self.expect(&Tok::RParen)?;
                with(&what, self.node).map(Val::Bool)
            }
            "include" => {
                self.expect(&Tok::LParen)?;
                let list = self.or()?;
                self.expect(&Tok::Comma)?;
                let item = self.or()?;
                self.expect(&Tok::RParen)?;
                membership(&list, &item)
            }
            _ => Err(Invalid::UnsupportedFilter),
        }
    }

    fn fact_path(&mut self) -> Result<Val, Invalid> {
        let mut path = Vec::new();
        loop {
            match self.peek() {
                Some(Tok::Dot) => {
                    self.pos += 1;
                    match self.next() {
                        Some(Tok::Ident(name)) => path.push(name),
                        _ => return Err(Invalid::UnsupportedFilter),
                    }
                }
                Some(Tok::LBracket) => {
                    self.pos += 1;
                    let name = self.string_arg()?;
                    self.expect(&Tok::RBracket)?;
                    path.push(name);
                }
                _ => break,
            }
        }
        let Some((first, rest)) = path.split_first() else {
            return Err(Invalid::UnsupportedFilter);
        };
        let mut value = match self.node.fact(first) {
            Some(v) => v,
            None => return Ok(Val::Null),
        };
        for key in rest {
            value = match value.get(key) {
                Some(v) => v.clone(),
                None => return Ok(Val::Null),
            };
        }
        Ok(Val::from_json(value))
    }
}

fn membership(list: &Val, item: &Val) -> Result<Val, Invalid> {
    let needle = item.text()?;
    match list {
        Val::List(items) => Ok(Val::Bool(items.contains(&needle))),
        Val::Str(s) => Ok(Val::Bool(s.contains(&needle))),
        Val::Null => Ok(Val::Bool(false)),
        Val::Bool(_) | Val::Num(_) => Err(Invalid::UnsupportedFilter),
    }
}

const FACT_OPERATORS: [&str; 8] = ["==", "!=", "<=", ">=", "=~", "=", "<", ">"];

fn with(what: &str, node: &dyn Node) -> Result<bool, Invalid> {
    if !what.starts_with('/') {
        for op in FACT_OPERATORS {
            if let Some((name, value)) = what.split_once(op) {
                let fact = crate::protocol::FactFilter {
                    fact: name.trim().to_owned(),
                    operator: op.to_owned(),
                    value: value.trim().to_owned(),
                };
                return fact_matches(&fact, node);
            }
        }
    }
    for class in node.classes() {
        if text_matches(what, &class, true)? {
            return Ok(true);
        }
    }
    for agent in node.agents() {
        if text_matches(what, &agent, false)? {
            return Ok(true);
        }
    }
    Ok(false)
}
