//! Choria templates (`{{{ expr }}}` / `{{ expr }}`), used by the **compile** and **execute**
//! stages.
//!
//! The Choria expression language is tiny: `inputs.X` (or `input.X`), `nodes.X`, `metadata.X`,
//! `previous_task.X`, `date(FMT)`, `utc_date(FMT)`, `elapsed_time` and `uuid`. Expressions are
//! parsed here into [`Expr`]; the runner resolves each one to a JSON value, and the final text is
//! rendered by a [`handlebars`] registry with HTML escaping off and strict mode on.
//!
//! Type rules: a string that is exactly one template keeps the native type of its value (a list
//! stays a list); otherwise values are stringified (lists joined with `", "`, maps as JSON).
//! Anything between braces that is not one of the expressions above is left untouched.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use handlebars::Handlebars;
use regex::Regex;
use serde_json::{Map, Value};

/// One Choria template expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expr {
    /// `inputs.NAME` or `input.NAME`.
    Input(String),
    /// `nodes.SET`.
    Nodes(String),
    /// `metadata.ITEM`.
    Metadata(String),
    /// `previous_task.FIELD`.
    PreviousTask(String),
    /// `date(FMT)` (local time) or `utc_date(FMT)`.
    Date {
        /// True for `utc_date`.
        utc: bool,
        /// A strftime format.
        format: String,
    },
    /// `elapsed_time`: seconds since the run started.
    ElapsedTime,
    /// `uuid`: a fresh random UUID.
    Uuid,
}

/// Errors found while parsing or rendering a template.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    /// A `date()`/`utc_date()` without a usable format.
    #[error("invalid date format `{0}` in template")]
    BadDateFormat(String),
    /// The handlebars renderer refused the template.
    #[error("template rendering failed: {0}")]
    Render(String),
    /// An expression had no resolved value (a bug in the caller).
    #[error("template expression {0:?} was not resolved")]
    Unresolved(Expr),
}

/// A parsed template string.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part {
    Text(String),
    Expr(Expr),
}

static EXPR_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\{\{\{?\s*(?:(?P<ns>inputs|input|nodes|metadata|previous_task)\.(?P<name>[A-Za-z0-9_-]+)|(?P<func>utc_date|date)\((?P<fmt>[^)]*)\)|(?P<word>elapsed_time|uuid))\s*\}\}\}?",
    )
    .expect("static regex is valid")
});

/// The namespaces and helpers of the expression language.
pub(crate) const ROOTS: &[&str] = &[
    "inputs",
    "input",
    "nodes",
    "metadata",
    "previous_task",
    "date",
    "utc_date",
    "elapsed_time",
    "uuid",
];

/// Any `{{ ... }}` or `{{{ ... }}}` group.
static GROUP_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{\{\{?(?P<body>[^{}]*?)\}\}\}?").expect("static regex is valid")
});

/// A group body shaped like an expression: a name, optionally followed by `.more` or `(args)`.
static EXPR_LIKE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?P<root>[A-Za-z_][A-Za-z0-9_]*)\s*(?:\..*|\(.*\))?$")
        .expect("static regex is valid")
});

/// What one `{{ ... }}` group of a string is (checked by the spec stage).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Group {
    /// A Choria expression.
    Expr(Expr),
    /// A namespace or helper of the language in a form it does not have, e.g. `inputs` or
    /// `uuid()`: Choria would leave the text as it is.
    Malformed(String),
    /// A name that is not part of the language, in the form of an expression (`nodez.x`,
    /// `utc_dat(%F)`): Choria would leave the text as it is.
    Unknown {
        /// The leading name.
        root: String,
        /// The whole group body, trimmed.
        body: String,
    },
}

/// Every expression-like `{{ ... }}` group of `text` with its byte offset and text; groups
/// that do not look like expressions at all (e.g. Go templates such as `{{ .Name }}`) are left
/// out, as they are left alone when rendering.
pub(crate) fn groups(text: &str) -> Vec<(usize, &str, Result<Group, TemplateError>)> {
    let mut out = Vec::new();
    if !text.contains("{{") {
        return out;
    }
    for m in GROUP_RE.find_iter(text) {
        let whole = m.as_str();
        let group = match parse(whole) {
            Err(e) => Err(e),
            Ok(parts) => match parts.as_slice() {
                [Part::Expr(e)] => Ok(Group::Expr(e.clone())),
                _ => {
                    let body = whole.trim_matches(['{', '}']).trim();
                    let Some(caps) = EXPR_LIKE_RE.captures(body) else {
                        continue;
                    };
                    let root = caps["root"].to_string();
                    if ROOTS.contains(&root.as_str()) {
                        Ok(Group::Malformed(body.to_string()))
                    } else {
                        Ok(Group::Unknown {
                            root,
                            body: body.to_string(),
                        })
                    }
                }
            },
        };
        out.push((m.start(), whole, group));
    }
    out
}

/// Splits a string into text and expressions. Strings without templates give one text part.
pub(crate) fn parse(text: &str) -> Result<Vec<Part>, TemplateError> {
    if !text.contains("{{") {
        return Ok(vec![Part::Text(text.to_string())]);
    }
    let mut parts = Vec::new();
    let mut last = 0;
    for caps in EXPR_RE.captures_iter(text) {
        let Some(whole) = caps.get(0) else { continue };
        if whole.start() > last {
            parts.push(Part::Text(text[last..whole.start()].to_string()));
        }
        last = whole.end();
        let expr = if let (Some(ns), Some(name)) = (caps.name("ns"), caps.name("name")) {
            let name = name.as_str().to_string();
            match ns.as_str() {
                "nodes" => Expr::Nodes(name),
                "metadata" => Expr::Metadata(name),
                "previous_task" => Expr::PreviousTask(name),
                _ => Expr::Input(name),
            }
        } else if let (Some(func), Some(fmt)) = (caps.name("func"), caps.name("fmt")) {
            let format = unquote(fmt.as_str().trim()).to_string();
            check_date_format(&format)?;
            Expr::Date {
                utc: func.as_str() == "utc_date",
                format,
            }
        } else if caps.name("word").is_some_and(|w| w.as_str() == "uuid") {
            Expr::Uuid
        } else {
            Expr::ElapsedTime
        };
        parts.push(Part::Expr(expr));
    }
    if last < text.len() {
        parts.push(Part::Text(text[last..].to_string()));
    }
    Ok(parts)
}

fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

fn check_date_format(format: &str) -> Result<(), TemplateError> {
    use chrono::format::{Item, StrftimeItems};
    if format.is_empty() || StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
        return Err(TemplateError::BadDateFormat(format.to_string()));
    }
    Ok(())
}

/// Formats the current time with a strftime format already checked by [`parse`].
pub(crate) fn format_now(utc: bool, format: &str) -> Result<String, TemplateError> {
    use std::fmt::Write as _;
    check_date_format(format)?;
    let mut out = String::new();
    let written = if utc {
        write!(out, "{}", chrono::Utc::now().format(format))
    } else {
        write!(out, "{}", chrono::Local::now().format(format))
    };
    written.map_err(|_| TemplateError::BadDateFormat(format.to_string()))?;
    Ok(out)
}

/// Collects every expression used in the string values of `value` (keys are never templated).
pub(crate) fn collect(value: &Value, out: &mut Vec<Expr>) -> Result<(), TemplateError> {
    match value {
        Value::String(s) => {
            for part in parse(s)? {
                if let Part::Expr(e) = part
                    && !out.contains(&e)
                {
                    out.push(e);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                collect(item, out)?;
            }
        }
        Value::Object(map) => {
            for v in map.values() {
                collect(v, out)?;
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// Renders values the way Choria embeds them in text.
pub(crate) fn stringify(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => items.iter().map(stringify).collect::<Vec<_>>().join(", "),
        Value::Object(_) => value.to_string(),
    }
}

/// The renderer: a handlebars registry with escaping off and strict mode on.
pub(crate) struct Renderer {
    registry: Handlebars<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        let mut registry = Handlebars::new();
        registry.register_escape_fn(handlebars::no_escape);
        registry.set_strict_mode(true);
        Self { registry }
    }
}

impl Renderer {
    /// Expands every template in `value` using already-resolved expression values.
    pub(crate) fn expand(
        &self,
        value: &Value,
        resolved: &BTreeMap<Expr, Value>,
    ) -> Result<Value, TemplateError> {
        match value {
            Value::String(s) => self.expand_str(s, resolved),
            Value::Array(items) => items
                .iter()
                .map(|v| self.expand(v, resolved))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    out.insert(k.clone(), self.expand(v, resolved)?);
                }
                Ok(Value::Object(out))
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => Ok(value.clone()),
        }
    }

    /// Expands one string. A string that is exactly one expression keeps the value's type.
    pub(crate) fn expand_str(
        &self,
        text: &str,
        resolved: &BTreeMap<Expr, Value>,
    ) -> Result<Value, TemplateError> {
        let parts = parse(text)?;
        let lookup = |e: &Expr| {
            resolved
                .get(e)
                .ok_or_else(|| TemplateError::Unresolved(e.clone()))
        };
        match parts.as_slice() {
            [Part::Text(t)] => return Ok(Value::String(t.clone())),
            [Part::Expr(e)] => return lookup(e).cloned(),
            _ => {}
        }
        // Build a handlebars source made only of triple-stash lookups, so that literal text
        // never needs escaping, and a data object holding the stringified pieces.
        let mut source = String::new();
        let mut pieces = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let piece = match part {
                Part::Text(t) => t.clone(),
                Part::Expr(e) => stringify(lookup(e)?),
            };
            pieces.push(Value::String(piece));
            source.push_str(&format!("{{{{{{parts.[{i}]}}}}}}"));
        }
        let data = serde_json::json!({ "parts": pieces });
        self.registry
            .render_template(&source, &data)
            .map(Value::String)
            .map_err(|e| TemplateError::Render(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resolved() -> BTreeMap<Expr, Value> {
        let mut m = BTreeMap::new();
        m.insert(Expr::Nodes("web".into()), json!(["a", "b"]));
        m.insert(Expr::Input("port".into()), json!(4222));
        m.insert(Expr::Input("html".into()), json!("<a & b>"));
        m
    }

    #[test]
    fn parses_all_expression_forms() {
        let parts = parse("{{{ inputs.a }}}{{input.b}}{{ nodes.c }}{{{metadata.name}}}{{{ previous_task.msg }}}{{{ utc_date(%FT%T) }}}{{ date('%F') }}{{{ elapsed_time }}}{{{ uuid }}}").expect("parses");
        let exprs: Vec<_> = parts
            .into_iter()
            .filter_map(|p| match p {
                Part::Expr(e) => Some(e),
                Part::Text(_) => None,
            })
            .collect();
        assert_eq!(exprs.len(), 9);
        assert_eq!(exprs[1], Expr::Input("b".into()));
        assert_eq!(
            exprs[6],
            Expr::Date {
                utc: false,
                format: "%F".into()
            }
        );
    }

    #[test]
    fn unknown_forms_are_left_alone() {
        let r = Renderer::default();
        let v = r
            .expand_str("{{ foo }} and { input.x }", &resolved())
            .expect("ok");
        assert_eq!(v, json!("{{ foo }} and { input.x }"));
    }

    #[test]
    fn whole_templates_keep_their_type() {
        let r = Renderer::default();
        assert_eq!(
            r.expand_str("{{{ nodes.web }}}", &resolved()).expect("ok"),
            json!(["a", "b"])
        );
        assert_eq!(
            r.expand_str("{{ inputs.port }}", &resolved()).expect("ok"),
            json!(4222)
        );
    }

    #[test]
    fn embedded_lists_join_and_nothing_is_escaped() {
        let r = Renderer::default();
        let v = r
            .expand_str(
                "nodes: {{{ nodes.web }}} port {{ inputs.port }} {{inputs.html}}",
                &resolved(),
            )
            .expect("ok");
        assert_eq!(v, json!("nodes: a, b port 4222 <a & b>"));
    }

    #[test]
    fn groups_classify_every_expression_like_text() {
        let found =
            groups("a {{{ inputs.x }}} {{ nodez.n }} {{{uuid()}}} {{ .Name }} {{ utc_dat(%F) }}");
        let kinds: Vec<_> = found.iter().map(|(at, _, g)| (*at, g.clone())).collect();
        assert_eq!(
            kinds,
            vec![
                (2, Ok(Group::Expr(Expr::Input("x".into())))),
                (
                    19,
                    Ok(Group::Unknown {
                        root: "nodez".into(),
                        body: "nodez.n".into()
                    })
                ),
                (33, Ok(Group::Malformed("uuid()".into()))),
                (
                    58,
                    Ok(Group::Unknown {
                        root: "utc_dat".into(),
                        body: "utc_dat(%F)".into()
                    })
                ),
            ]
        );
    }

    #[test]
    fn bad_date_formats_are_errors() {
        assert!(parse("{{{ utc_date() }}}").is_err());
        assert!(format_now(true, "%Y-%m-%d").is_ok());
    }
}
