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

/// Why a compound expression cannot be used, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {position}: {message}")]
pub struct CompoundError {
    /// 1-based character column where the problem is; one past the last character when the
    /// expression ended too early.
    pub position: usize,
    pub message: String,
}

impl CompoundError {
    fn at(position: usize, message: impl Into<String>) -> CompoundError {
        CompoundError {
            position,
            message: message.into(),
        }
    }
}

/// Checks `expr` without a node: it must parse in the supported subset and, as far as can be
/// told before facts are known, evaluate to a boolean. An expression [`evaluate`] accepts on
/// some node always passes; one refused here is refused by every node.
pub fn check(expr: &str) -> Result<(), CompoundError> {
    let tokens = tokenize_spanned(expr)?;
    let mut checker = Checker {
        tokens,
        pos: 0,
        depth: 0,
        end: expr.chars().count() + 1,
    };
    let (kind, column) = checker.or()?;
    if let Some((tok, column)) = checker.tokens.get(checker.pos) {
        return Err(CompoundError::at(
            *column,
            format!("unexpected {} after a complete expression", describe(tok)),
        ));
    }
    boolean(kind, column, "the expression")
}

/// What a value is known to be before a node is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Text,
    Number,
    List,
    /// A fact: any JSON value.
    Unknown,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Bool => "a boolean",
            Kind::Text => "a string",
            Kind::Number => "a number",
            Kind::List => "a list",
            Kind::Unknown => "a fact",
        }
    }
}

fn boolean(kind: Kind, column: usize, what: &str) -> Result<(), CompoundError> {
    match kind {
        Kind::Bool | Kind::Unknown => Ok(()),
        Kind::Text | Kind::Number | Kind::List => Err(CompoundError::at(
            column,
            format!(
                "{what} must be a boolean (a comparison, with(), include(), true or false), found {}",
                kind.name()
            ),
        )),
    }
}

fn scalar(kind: Kind, column: usize, what: &str) -> Result<(), CompoundError> {
    match kind {
        Kind::List => Err(CompoundError::at(
            column,
            format!("{what} cannot be a list"),
        )),
        Kind::Bool | Kind::Text | Kind::Number | Kind::Unknown => Ok(()),
    }
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Num(n) => format!("number {n}"),
        Tok::Ident(w) => format!("`{w}`"),
        Tok::Op(op) => format!("`{op}`"),
        Tok::LParen => "`(`".to_owned(),
        Tok::RParen => "`)`".to_owned(),
        Tok::LBracket => "`[`".to_owned(),
        Tok::RBracket => "`]`".to_owned(),
        Tok::Dot => "`.`".to_owned(),
        Tok::Comma => "`,`".to_owned(),
    }
}

/// The grammar of [`Parser`] walked without a node, each value's [`Kind`] tracked.
struct Checker {
    tokens: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
    /// The column one past the end of the expression.
    end: usize,
}

impl Checker {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    fn column(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(_, c)| *c)
    }

    fn found(&self) -> String {
        self.peek()
            .map_or("the end of the expression".to_owned(), describe)
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), CompoundError> {
        if self.peek() == Some(tok) {
            self.pos += 1;
            Ok(())
        } else {
            Err(CompoundError::at(
                self.column(),
                format!("expected {what}, found {}", self.found()),
            ))
        }
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w == word)
    }

    fn deeper(&mut self) -> Result<(), CompoundError> {
        self.depth += 1;
        if self.depth > 64 {
            return Err(CompoundError::at(
                self.column(),
                "the expression is nested more than 64 deep",
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<(Kind, usize), CompoundError> {
        self.deeper()?;
        let (mut left, column) = self.and()?;
        while self.is_word("or") || self.peek() == Some(&Tok::Op("||")) {
            boolean(left, column, "the left side of `or`")?;
            self.pos += 1;
            let (right, at) = self.and()?;
            boolean(right, at, "the right side of `or`")?;
            left = Kind::Bool;
        }
        self.depth -= 1;
        Ok((left, column))
    }

    fn and(&mut self) -> Result<(Kind, usize), CompoundError> {
        let (mut left, column) = self.unary()?;
        while self.is_word("and") || self.peek() == Some(&Tok::Op("&&")) {
            boolean(left, column, "the left side of `and`")?;
            self.pos += 1;
            let (right, at) = self.unary()?;
            boolean(right, at, "the right side of `and`")?;
            left = Kind::Bool;
        }
        Ok((left, column))
    }

    fn unary(&mut self) -> Result<(Kind, usize), CompoundError> {
        if self.is_word("not") || self.peek() == Some(&Tok::Op("!")) {
            let column = self.column();
            self.pos += 1;
            self.deeper()?;
            let (v, at) = self.unary()?;
            boolean(v, at, "what `not` negates")?;
            self.depth -= 1;
            return Ok((Kind::Bool, column));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<(Kind, usize), CompoundError> {
        let (left, column) = self.value()?;
        let op = match self.peek() {
            Some(Tok::Op(op @ ("==" | "!=" | "<" | ">" | "<=" | ">=" | "=~"))) => *op,
            Some(Tok::Ident(w)) if w == "matches" => "=~",
            Some(Tok::Ident(w)) if w == "in" => "in",
            Some(Tok::Ident(w)) if w == "contains" => "contains",
            _ => return Ok((left, column)),
        };
        self.pos += 1;
        let right_column = self.column();
        let right_token = self.peek().cloned();
        let (right, right_column) = match self.value() {
            Ok(v) => v,
            Err(_) if right_token.is_none() => {
                return Err(CompoundError::at(
                    right_column,
                    format!("expected a value after `{op}`, found the end of the expression"),
                ));
            }
            Err(e) => return Err(e),
        };
        match op {
            "in" => check_membership(right, right_column, left, column)?,
            "contains" => check_membership(left, column, right, right_column)?,
            "=~" => {
                scalar(left, column, "the left side of a regular expression match")?;
                scalar(right, right_column, "a regular expression")?;
                if let Some(Tok::Str(pattern)) = &right_token {
                    cached_regex(pattern, false).map_err(|_| {
                        CompoundError::at(
                            right_column,
                            format!("invalid regular expression {pattern:?}"),
                        )
                    })?;
                }
            }
            _ => {
                scalar(left, column, &format!("the left side of `{op}`"))?;
                scalar(right, right_column, &format!("the right side of `{op}`"))?;
            }
        }
        Ok((Kind::Bool, column))
    }

    fn value(&mut self) -> Result<(Kind, usize), CompoundError> {
        let column = self.column();
        let Some(tok) = self.peek().cloned() else {
            return Err(CompoundError::at(
                column,
                "expected a value, found the end of the expression",
            ));
        };
        self.pos += 1;
        let kind = match tok {
            Tok::LParen => {
                let (v, _) = self.or()?;
                self.expect(&Tok::RParen, "`)`")?;
                v
            }
            Tok::Str(_) => Kind::Text,
            Tok::Num(_) => Kind::Number,
            Tok::Ident(word) => self.word(&word, column)?,
            other @ (Tok::Op(_)
            | Tok::RParen
            | Tok::LBracket
            | Tok::RBracket
            | Tok::Dot
            | Tok::Comma) => {
                return Err(CompoundError::at(
                    column,
                    format!("expected a value, found {}", describe(&other)),
                ));
            }
        };
        Ok((kind, column))
    }

    fn string_arg(&mut self, function: &str) -> Result<String, CompoundError> {
        match self.peek().cloned() {
            Some(Tok::Str(s)) => {
                self.pos += 1;
                Ok(s)
            }
            _ => Err(CompoundError::at(
                self.column(),
                format!("{function}() takes a quoted string, found {}", self.found()),
            )),
        }
    }

    fn word(&mut self, word: &str, column: usize) -> Result<Kind, CompoundError> {
        match word {
            "true" | "false" => Ok(Kind::Bool),
            "identity" => Ok(Kind::Text),
            "agents" | "classes" => Ok(Kind::List),
            "facts" => {
                let mut parts = 0;
                loop {
                    match self.peek() {
                        Some(Tok::Dot) => {
                            self.pos += 1;
                            match self.peek() {
                                Some(Tok::Ident(_)) => self.pos += 1,
                                _ => {
                                    return Err(CompoundError::at(
                                        self.column(),
                                        format!(
                                            "expected a fact name after `.`, found {}",
                                            self.found()
                                        ),
                                    ));
                                }
                            }
                        }
                        Some(Tok::LBracket) => {
                            self.pos += 1;
                            self.string_arg("facts[...]")?;
                            self.expect(&Tok::RBracket, "`]`")?;
                        }
                        _ => break,
                    }
                    parts += 1;
                }
                if parts == 0 {
                    return Err(CompoundError::at(
                        self.column(),
                        format!(
                            "expected `.NAME` or `[\"NAME\"]` after `facts`, found {}",
                            self.found()
                        ),
                    ));
                }
                Ok(Kind::Unknown)
            }
            "fact" => {
                self.expect(&Tok::LParen, "`(` after `fact`")?;
                self.string_arg("fact")?;
                self.expect(&Tok::RParen, "`)`")?;
                Ok(Kind::Unknown)
            }
            "with" => {
                self.expect(&Tok::LParen, "`(` after `with`")?;
                let at = self.column();
                let what = self.string_arg("with")?;
                if let Some(re) = crate::matching::slashed(&what)
                    && cached_regex(re, true).is_err()
                {
                    return Err(CompoundError::at(
                        at,
                        format!("invalid regular expression {what:?}"),
                    ));
                }
                self.expect(&Tok::RParen, "`)`")?;
                Ok(Kind::Bool)
            }
            "include" => {
                self.expect(&Tok::LParen, "`(` after `include`")?;
                let (list, list_column) = self.or()?;
                self.expect(&Tok::Comma, "`,` between the arguments of include()")?;
                let (item, item_column) = self.or()?;
                self.expect(&Tok::RParen, "`)`")?;
                check_membership(list, list_column, item, item_column)?;
                Ok(Kind::Bool)
            }
            other => Err(CompoundError::at(
                column,
                format!(
                    "unknown name `{other}` (known: identity, agents, classes, facts.NAME, fact(), with(), include(), true, false, and, or, not)"
                ),
            )),
        }
    }
}

/// `item in list` / `list contains item`, as [`membership`] evaluates it.
fn check_membership(
    list: Kind,
    list_column: usize,
    item: Kind,
    item_column: usize,
) -> Result<(), CompoundError> {
    scalar(item, item_column, "the item looked for")?;
    match list {
        Kind::List | Kind::Text | Kind::Unknown => Ok(()),
        Kind::Bool | Kind::Number => Err(CompoundError::at(
            list_column,
            format!(
                "membership needs a list or a string to look in, found {}",
                list.name()
            ),
        )),
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

/// Longest expression accepted.
const MAX_EXPRESSION: usize = 4096;

fn tokenize(expr: &str) -> Result<Vec<Tok>, Invalid> {
    tokenize_spanned(expr)
        .map(|tokens| tokens.into_iter().map(|(t, _)| t).collect())
        .map_err(|_| Invalid::UnsupportedFilter)
}

/// The tokens of `expr`, each with the 1-based character column it starts at.
fn tokenize_spanned(expr: &str) -> Result<Vec<(Tok, usize)>, CompoundError> {
    if expr.len() > MAX_EXPRESSION {
        return Err(CompoundError::at(
            MAX_EXPRESSION + 1,
            format!("the expression is longer than {MAX_EXPRESSION} bytes"),
        ));
    }
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            '\'' | '"' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(CompoundError::at(
                                column,
                                format!("unterminated string: no closing {quote}"),
                            ));
                        }
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
                Tok::Str(s)
            }
            '(' | ')' | '[' | ']' | '.' | ',' => {
                i += 1;
                match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '[' => Tok::LBracket,
                    ']' => Tok::RBracket,
                    '.' => Tok::Dot,
                    _ => Tok::Comma,
                }
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                Tok::Num(
                    text.parse()
                        .map_err(|_| CompoundError::at(column, format!("bad number {text:?}")))?,
                )
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                Tok::Ident(chars[start..i].iter().collect())
            }
            _ => {
                let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
                let op = OPERATORS
                    .iter()
                    .find(|op| rest.starts_with(**op))
                    .ok_or_else(|| {
                        let hint = if c == '=' {
                            " (compare with `==`, match with `=~`)"
                        } else {
                            ""
                        };
                        CompoundError::at(column, format!("unexpected {c:?}{hint}"))
                    })?;
                i += op.chars().count();
                Tok::Op(op)
            }
        };
        out.push((tok, column));
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::borrow::Cow;

    struct N;

    impl Node for N {
        fn identity(&self) -> &str {
            "web-1"
        }
        fn agents(&self) -> Vec<Cow<'_, str>> {
            vec!["discovery".into(), "emulated0".into()]
        }
        fn has_agent(&self, a: &str) -> bool {
            a == "discovery" || a == "emulated0"
        }
        fn classes(&self) -> Vec<Cow<'_, str>> {
            vec!["web".into()]
        }
        fn fact(&self, name: &str) -> Option<serde_json::Value> {
            match name {
                "shard" => Some(serde_json::json!(3)),
                "country" => Some(serde_json::json!("uk")),
                "up" => Some(serde_json::json!(true)),
                "net" => Some(serde_json::json!({"ifaces": ["eth0", "lo"]})),
                _ => None,
            }
        }
        fn facts(&self) -> serde_json::Map<String, serde_json::Value> {
            serde_json::Map::new()
        }
        fn collectives(&self) -> Vec<Cow<'_, str>> {
            vec!["mcollective".into()]
        }
    }

    #[test]
    fn valid_expressions_pass_and_evaluate() {
        for expr in [
            "with('web')",
            "facts.shard == 3 and with('emulated0')",
            "not (facts.country == 'de') || identity =~ '^web'",
            "'eth0' in facts.net.ifaces",
            "agents contains 'discovery'",
            "include(classes, 'web') && facts[\"up\"]",
            "fact('shard') >= 2",
            "facts.up",
            "with('country=uk') and !false",
            "identity matches '/web-[0-9]+/'",
        ] {
            assert_eq!(check(expr), Ok(()), "{expr}");
            assert!(evaluate(expr, &N).is_ok(), "{expr}");
        }
    }

    fn error(expr: &str) -> (usize, String) {
        let e = check(expr).expect_err(expr);
        assert!(
            evaluate(expr, &N).is_err(),
            "{expr} is also refused by a node"
        );
        (e.position, e.message)
    }

    #[test]
    fn syntax_errors_name_the_column() {
        let (at, message) = error("facts.shard == 3 and (with('web')");
        assert_eq!(at, 34, "one past the end");
        assert_eq!(message, "expected `)`, found the end of the expression");

        let (at, message) = error("with('web') andd identity == 'x'");
        assert_eq!(at, 13);
        assert!(message.contains("unexpected `andd`"), "{message}");

        let (at, message) = error("facts.shard === 3");
        assert_eq!(at, 15);
        assert_eq!(
            message,
            "unexpected '=' (compare with `==`, match with `=~`)"
        );

        let (at, message) = error("identity == 'web-1");
        assert_eq!(at, 13);
        assert!(message.starts_with("unterminated string"), "{message}");

        let (at, message) = error("bogus('x')");
        assert_eq!(at, 1);
        assert!(message.starts_with("unknown name `bogus`"), "{message}");

        let (at, message) = error("with('web') and $x");
        assert_eq!(at, 17);
        assert_eq!(message, "unexpected '$'");

        let (at, _) = error("facts. == 1");
        assert_eq!(at, 8);

        let (at, message) = error("identity =~ '(unclosed'");
        assert_eq!(at, 13);
        assert!(
            message.starts_with("invalid regular expression"),
            "{message}"
        );

        let (at, message) = error("");
        assert_eq!(at, 1);
        assert_eq!(message, "expected a value, found the end of the expression");
    }

    #[test]
    fn values_that_cannot_be_booleans_are_refused() {
        let (at, message) = error("identity");
        assert_eq!(at, 1);
        assert!(message.contains("found a string"), "{message}");
        let (at, message) = error("with('web') and 'yes'");
        assert_eq!(at, 17);
        assert!(message.contains("right side of `and`"), "{message}");
        let (at, message) = error("classes == 'web'");
        assert_eq!(at, 1);
        assert!(message.contains("cannot be a list"), "{message}");
        let (at, _) = error("'x' in 3");
        assert_eq!(at, 8);
        let deep = format!("{}true{}", "(".repeat(70), ")".repeat(70));
        assert!(check(&deep).unwrap_err().message.contains("nested"));
        assert!(check(&"x".repeat(5000)).is_err());
    }

    #[test]
    fn the_error_reads_with_its_column() {
        assert_eq!(
            check("with(web)").unwrap_err().to_string(),
            "column 6: with() takes a quoted string, found `web`"
        );
    }

    proptest! {
        /// `check` never refuses what a node accepts, and never panics.
        #[test]
        fn check_never_refuses_what_a_node_accepts(
            expr in "[a-z_\\.\\[\\]\\(\\)'\" =!<>~&|0-9,]{0,60}"
        ) {
            let checked = check(&expr);
            if evaluate(&expr, &N).is_ok() {
                prop_assert_eq!(checked, Ok(()));
            }
            if let Err(e) = check(&expr) {
                prop_assert!(e.position >= 1 && e.position <= expr.chars().count() + 1);
            }
        }

        #[test]
        fn check_accepts_generated_valid_expressions(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "with('web')", "facts.shard > 1", "identity == 'web-1'", "true",
                    "'lo' in facts.net.ifaces", "not facts.up", "(false or with('emulated0'))",
                ]),
                1..6,
            ),
            ors in proptest::collection::vec(any::<bool>(), 6),
        ) {
            let mut expr = String::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    expr.push_str(if ors[i] { " or " } else { " && " });
                }
                expr.push_str(p);
            }
            prop_assert_eq!(check(&expr), Ok(()));
            prop_assert!(evaluate(&expr, &N).is_ok());
        }
    }
}
