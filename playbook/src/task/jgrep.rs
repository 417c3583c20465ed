//! The JGrep-like expression subset used by the `mcollective` task's `assert`.
//!
//! Grammar: `key=value`, `key!=value`, `key<N`, `key>N`, `key<=N`, `key>=N`,
//! `key=~/regex/`, dotted paths (`summary.failed=0`), `+key` (present), `-key` (absent),
//! `and`, `or`, `not` / `!`, and parentheses. `and` binds tighter than `or`. Values may be
//! quoted with `"` or `'` to include spaces. Numbers compare numerically, `true`/`false`
//! match booleans, and a list value matches `=` when any element does.

use std::cmp::Ordering;

use regex::Regex;
use serde_json::Value;

/// A parse error in an expression.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("Invalid assert expression {expr:?}: {reason}")]
pub struct ExprError {
    expr: String,
    reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Match,
}

/// A parsed expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// Both sides hold.
    And(Box<Expr>, Box<Expr>),
    /// Either side holds.
    Or(Box<Expr>, Box<Expr>),
    /// The inner expression does not hold.
    Not(Box<Expr>),
    /// `+path` (true) or `-path` (false).
    Present(Vec<String>, bool),
    /// `path op value`.
    Compare(Vec<String>, CompareOp, String),
}

/// A comparison with its compiled regex if any.
#[derive(Debug, Clone)]
pub struct CompareOp {
    op: Op,
    regex: Option<Regex>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    Word(String),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push(Token::Open);
            i += 1;
        } else if c == ')' {
            out.push(Token::Close);
            i += 1;
        } else if c == '!' && chars.get(i + 1).is_none_or(|n| *n != '=') {
            out.push(Token::Not);
            i += 1;
        } else {
            let mut word = String::new();
            let mut quote: Option<char> = None;
            while i < chars.len() {
                let c = chars[i];
                match quote {
                    Some(q) if c == q => quote = None,
                    Some(_) => word.push(c),
                    None if c == '"' || c == '\'' => quote = Some(c),
                    None if c.is_whitespace() || c == ')' || c == '(' => break,
                    None => word.push(c),
                }
                i += 1;
            }
            if quote.is_some() {
                return Err("unterminated quote".to_string());
            }
            out.push(match word.as_str() {
                "and" => Token::And,
                "or" => Token::Or,
                "not" => Token::Not,
                _ => Token::Word(word),
            });
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Token::And) {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Token::Not) => Ok(Expr::Not(Box::new(self.unary()?))),
            Some(Token::Open) => {
                let inner = self.or()?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err("missing )".to_string()),
                }
            }
            Some(Token::Word(w)) => self.statement(w),
            Some(Token::Close) => Err("unexpected )".to_string()),
            Some(Token::And | Token::Or) => Err("unexpected and/or".to_string()),
            None => Err("unexpected end of expression".to_string()),
        }
    }

    fn statement(&mut self, mut word: String) -> Result<Expr, String> {
        if let Some(p) = word.strip_prefix('+') {
            return Ok(Expr::Present(path(p)?, true));
        }
        if let Some(p) = word.strip_prefix('-') {
            return Ok(Expr::Present(path(p)?, false));
        }
        // Allow `key = value` with spaces around the operator.
        if find_op(&word).is_none()
            && let Some(Token::Word(op)) = self.peek().cloned()
            && find_op(&op).is_some_and(|(at, _, _)| at == 0)
        {
            self.pos += 1;
            word.push_str(&op);
            if find_op(&op).is_some_and(|(_, _, len)| len == op.len())
                && let Some(Token::Word(v)) = self.peek().cloned()
            {
                self.pos += 1;
                word.push_str(&v);
            }
        }
        let Some((at, op, len)) = find_op(&word) else {
            return Err(format!("{word} is not a comparison"));
        };
        let key = &word[..at];
        let value = word[at + len..].to_string();
        let regex = match op {
            Op::Match => {
                let inner = value
                    .strip_prefix('/')
                    .and_then(|v| v.strip_suffix('/'))
                    .unwrap_or(&value);
                Some(Regex::new(inner).map_err(|e| format!("bad regex {value}: {e}"))?)
            }
            Op::Eq | Op::Ne | Op::Lt | Op::Gt | Op::Le | Op::Ge => None,
        };
        Ok(Expr::Compare(path(key)?, CompareOp { op, regex }, value))
    }
}

fn path(text: &str) -> Result<Vec<String>, String> {
    if text.is_empty() || text.split('.').any(str::is_empty) {
        return Err(format!("invalid key {text:?}"));
    }
    Ok(text.split('.').map(str::to_string).collect())
}

/// Finds the first operator: (byte offset, operator, length).
fn find_op(word: &str) -> Option<(usize, Op, usize)> {
    for (i, byte) in word.bytes().enumerate() {
        let two = word.get(i..i + 2);
        let found = match two {
            Some("<=") => Some((Op::Le, 2)),
            Some(">=") => Some((Op::Ge, 2)),
            Some("!=") => Some((Op::Ne, 2)),
            Some("==") => Some((Op::Eq, 2)),
            Some("=~") => Some((Op::Match, 2)),
            _ => match byte {
                b'=' => Some((Op::Eq, 1)),
                b'<' => Some((Op::Lt, 1)),
                b'>' => Some((Op::Gt, 1)),
                _ => None,
            },
        };
        if let Some((op, len)) = found {
            return Some((i, op, len));
        }
    }
    None
}

/// Parses an expression.
pub fn parse(text: &str) -> Result<Expr, ExprError> {
    let err = |reason: String| ExprError {
        expr: text.to_string(),
        reason,
    };
    let tokens = tokenize(text).map_err(err)?;
    let mut p = Parser { tokens, pos: 0 };
    let expr = p.or().map_err(err)?;
    if p.pos < p.tokens.len() {
        return Err(err("trailing input".to_string()));
    }
    Ok(expr)
}

fn lookup<'a>(data: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(data, |v, k| match v {
        Value::Object(m) => m.get(k),
        Value::Array(items) => k.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn compare_one(actual: &Value, op: &CompareOp, expected: &str) -> bool {
    if let Some(re) = &op.regex {
        return match actual {
            Value::String(s) => re.is_match(s),
            Value::Array(items) => items.iter().any(|i| compare_one(i, op, expected)),
            other => re.is_match(&other.to_string()),
        };
    }
    if let Value::Array(items) = actual {
        return match op.op {
            Op::Ne => !items.iter().any(|i| compare_one(i, &eq(), expected)),
            _ => items.iter().any(|i| compare_one(i, op, expected)),
        };
    }
    let ordering: Option<Ordering> = match actual {
        Value::Number(n) => match (n.as_f64(), expected.trim().parse::<f64>()) {
            (Some(a), Ok(b)) => a.partial_cmp(&b),
            _ => None,
        },
        Value::Bool(b) => match expected {
            "true" => Some(b.cmp(&true)),
            "false" => Some(b.cmp(&false)),
            _ => None,
        },
        Value::String(s) => match (s.trim().parse::<f64>(), expected.trim().parse::<f64>()) {
            (Ok(a), Ok(b)) => a.partial_cmp(&b),
            _ => match op.op {
                Op::Eq | Op::Ne => Some(s.as_str().cmp(expected)),
                _ => None,
            },
        },
        Value::Null => (expected == "nil" || expected == "null").then_some(Ordering::Equal),
        Value::Object(_) | Value::Array(_) => None,
    };
    match (op.op, ordering) {
        (Op::Eq, Some(o)) => o == Ordering::Equal,
        (Op::Ne, Some(o)) => o != Ordering::Equal,
        (Op::Ne, None) => true,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        (Op::Ge, Some(o)) => o != Ordering::Less,
        (Op::Eq | Op::Lt | Op::Gt | Op::Le | Op::Ge | Op::Match, None) => false,
        (Op::Match, Some(_)) => false,
    }
}

fn eq() -> CompareOp {
    CompareOp {
        op: Op::Eq,
        regex: None,
    }
}

impl Expr {
    /// Whether `data` (one reply's data) satisfies the expression.
    pub fn matches(&self, data: &Value) -> bool {
        match self {
            Self::And(a, b) => a.matches(data) && b.matches(data),
            Self::Or(a, b) => a.matches(data) || b.matches(data),
            Self::Not(e) => !e.matches(data),
            Self::Present(p, want) => lookup(data, p).is_some() == *want,
            Self::Compare(p, op, value) => match lookup(data, p) {
                Some(actual) => compare_one(actual, op, value),
                None => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(expr: &str, data: &Value) -> bool {
        parse(expr).expect("parses").matches(data)
    }

    #[test]
    fn expressions() {
        let d = json!({"enabled": true, "count": 5, "name": "web 1",
            "summary": {"resources": {"failed": 0}}, "tags": ["a", "b"]});
        assert!(check("enabled=true", &d));
        assert!(check("count>4 and count<=5", &d));
        assert!(check("count = 5", &d));
        assert!(!check("count>=6", &d));
        assert!(check("summary.resources.failed=0", &d));
        assert!(check("name=\"web 1\"", &d));
        assert!(check("name=~/^web/", &d));
        assert!(check("+count and -missing", &d));
        assert!(check("!(count=4) or missing=1", &d));
        assert!(check("not count=4", &d));
        assert!(check("tags=b", &d));
        assert!(!check("(count=4 or count=3) and enabled=true", &d));
        assert!(check("count!=4", &d));
        assert!(parse("count=").is_ok());
        assert!(parse("(count=1").is_err());
        assert!(parse("count").is_err());
        assert!(parse("a=1 b=2").is_err());
        assert!(parse("x=~/(/").is_err());
    }
}
