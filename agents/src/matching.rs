//! The comparisons filters are made of, shared by the filter sections ([`crate::filter`]) and
//! compound expressions ([`crate::compound`]): exact or `/regex/` text, fact operators, and the
//! process-wide regular-expression cache.
//!
//! Every distinct pattern is compiled at most once per process, whether it compiles or not, and
//! its cost is bounded ([`MAX_PATTERN_LEN`], [`REGEX_SIZE_LIMIT`]): thousands of instances
//! evaluate the same broadcast, and one hostile pattern must not be compiled by each of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use regex::{Regex, RegexBuilder};

use crate::codec::Invalid;
use crate::node::Node;
use crate::protocol::FactFilter;

/// Longest regular expression accepted in a filter, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;
/// Largest compiled program of a filter regex (the `regex` crate's size limit), in bytes.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
const REGEX_CACHE_LIMIT: usize = 512;

/// Exact comparison, or a regular expression when `pattern` is written `/like this/`.
pub(crate) fn text_matches(pattern: &str, value: &str, icase: bool) -> Result<bool, Invalid> {
    match slashed(pattern) {
        Some(re) => Ok(cached_regex(re, icase)?.is_match(value)),
        None if icase => Ok(pattern.eq_ignore_ascii_case(value)),
        None => Ok(pattern == value),
    }
}

pub(crate) fn slashed(pattern: &str) -> Option<&str> {
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

type Compiled = Arc<OnceLock<Result<Regex, Invalid>>>;

static REGEX_CACHE: LazyLock<Mutex<HashMap<(String, bool), Compiled>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
static COMPILES: AtomicU64 = AtomicU64::new(0);

/// How many regular expressions this process has compiled (or tried to) for filters.
pub fn regex_compiles() -> u64 {
    COMPILES.load(Ordering::Relaxed)
}

/// Compiles a filter regex once per process; failures are cached too. Concurrent callers with
/// the same pattern wait for the one compile instead of each starting their own.
pub(crate) fn cached_regex(pattern: &str, icase: bool) -> Result<Regex, Invalid> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(Invalid::UnsupportedFilter);
    }
    let key = (pattern.to_owned(), icase);
    let cell = {
        let mut cache = REGEX_CACHE.lock().unwrap_or_else(|p| p.into_inner());
        if !cache.contains_key(&key) && cache.len() >= REGEX_CACHE_LIMIT {
            cache.clear();
        }
        Arc::clone(cache.entry(key).or_default())
    };
    cell.get_or_init(|| {
        COMPILES.fetch_add(1, Ordering::Relaxed);
        RegexBuilder::new(pattern)
            .case_insensitive(icase)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .nest_limit(64)
            .build()
            .map_err(|_| Invalid::UnsupportedFilter)
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_pattern_is_compiled_once() {
        let hostile = r"(\w{100}){100}";
        assert!(matches!(
            cached_regex(hostile, false),
            Err(Invalid::UnsupportedFilter)
        ));
        let before = regex_compiles();
        for _ in 0..100 {
            assert!(matches!(
                cached_regex(hostile, false),
                Err(Invalid::UnsupportedFilter)
            ));
        }
        assert_eq!(regex_compiles(), before, "failures must be cached");
        assert!(cached_regex(&"a".repeat(MAX_PATTERN_LEN + 1), false).is_err());
        assert!(
            cached_regex("^web[0-9]+$", false)
                .unwrap()
                .is_match("web12")
        );
    }
}
