//! Evaluating a request's discovery filter against a [`Node`].
//!
//! Sections combine with AND; inside a section identities combine with OR and everything else
//! with AND, as in go-choria. A filter this node cannot evaluate (a compound statement outside
//! the supported subset, an invalid regular expression) is an error, never a silent match.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use regex::{Regex, RegexBuilder};

use crate::codec::Invalid;
use crate::compound;
use crate::node::Node;
use crate::protocol::{FactFilter, Filter};

/// Whether `node` should answer a request carrying `filter`.
pub fn matches(filter: &Filter, node: &dyn Node) -> Result<bool, Invalid> {
    if filter.is_empty() {
        return Ok(true);
    }
    if !filter.identity.is_empty() {
        let mut any = false;
        for pattern in &filter.identity {
            if text_matches(pattern, node.identity(), false)? {
                any = true;
                break;
            }
        }
        if !any {
            return Ok(false);
        }
    }
    for pattern in &filter.agent {
        if !agent_matches(pattern, node)? {
            return Ok(false);
        }
    }
    if !filter.cf_class.is_empty() {
        let classes = node.classes();
        for pattern in &filter.cf_class {
            let mut found = false;
            for class in &classes {
                if text_matches(pattern, class, true)? {
                    found = true;
                    break;
                }
            }
            if !found {
                return Ok(false);
            }
        }
    }
    for fact in &filter.fact {
        if !fact_matches(fact, node)? {
            return Ok(false);
        }
    }
    for statement in &filter.compound {
        if !compound::matches_statement(statement, node)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn agent_matches(pattern: &str, node: &dyn Node) -> Result<bool, Invalid> {
    if let Some(re) = slashed(pattern) {
        let re = cached_regex(re, false)?;
        Ok(node.agents().iter().any(|a| re.is_match(a)))
    } else {
        Ok(node.has_agent(pattern))
    }
}

/// Exact comparison, or a regular expression when `pattern` is written `/like this/`.
pub(crate) fn text_matches(pattern: &str, value: &str, icase: bool) -> Result<bool, Invalid> {
    match slashed(pattern) {
        Some(re) => Ok(cached_regex(re, icase)?.is_match(value)),
        None if icase => Ok(pattern.eq_ignore_ascii_case(value)),
        None => Ok(pattern == value),
    }
}

fn slashed(pattern: &str) -> Option<&str> {
    if pattern.len() >= 2 && pattern.starts_with('/') && pattern.ends_with('/') {
        Some(&pattern[1..pattern.len() - 1])
    } else {
        None
    }
}

/// Compares a fact of `node` with the operator and value of `filter`.
pub fn fact_matches(filter: &FactFilter, node: &dyn Node) -> Result<bool, Invalid> {
    let Some(actual) = node.fact(&filter.fact) else {
        return Ok(false);
    };
    compare(&actual, &filter.operator, &filter.value)
}

/// Applies a fact operator (`== != < > <= >= =~`) to a fact value and a filter value.
pub(crate) fn compare(
    actual: &serde_json::Value,
    operator: &str,
    expected: &str,
) -> Result<bool, Invalid> {
    let actual_text = match actual {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let numeric = match (actual_text.parse::<f64>(), expected.parse::<f64>()) {
        (Ok(a), Ok(b)) => Some((a, b)),
        _ => None,
    };
    let ordering = match numeric {
        Some((a, b)) => a.partial_cmp(&b),
        None => Some(actual_text.as_str().cmp(expected)),
    };
    use std::cmp::Ordering::{Equal, Greater, Less};
    Ok(match operator {
        "==" | "=" => match numeric {
            Some((a, b)) => a == b,
            None => actual_text == expected,
        },
        "!=" => match numeric {
            Some((a, b)) => a != b,
            None => actual_text != expected,
        },
        "<" => ordering == Some(Less),
        ">" => ordering == Some(Greater),
        "<=" => matches!(ordering, Some(Less | Equal)),
        ">=" => matches!(ordering, Some(Greater | Equal)),
        "=~" => {
            let re = slashed(expected).unwrap_or(expected);
            cached_regex(re, true)?.is_match(&actual_text)
        }
        _ => return Err(Invalid::UnsupportedFilter),
    })
}

const REGEX_CACHE_LIMIT: usize = 512;

static REGEX_CACHE: LazyLock<Mutex<HashMap<(String, bool), Regex>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Compiles a filter regex once per process: thousands of instances evaluate the same broadcast.
pub(crate) fn cached_regex(pattern: &str, icase: bool) -> Result<Regex, Invalid> {
    let key = (pattern.to_owned(), icase);
    if let Ok(cache) = REGEX_CACHE.lock()
        && let Some(re) = cache.get(&key)
    {
        return Ok(re.clone());
    }
    let re = RegexBuilder::new(pattern)
        .case_insensitive(icase)
        .size_limit(1 << 20)
        .build()
        .map_err(|_| Invalid::UnsupportedFilter)?;
    if let Ok(mut cache) = REGEX_CACHE.lock() {
        if cache.len() >= REGEX_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, re.clone());
    }
    Ok(re)
}
