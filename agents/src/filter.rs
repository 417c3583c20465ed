//! Evaluating a request's discovery filter against a [`Node`].
//!
//! Sections combine with AND; inside a section identities combine with OR and everything else
//! with AND, as in go-choria. A filter this node cannot evaluate (a compound statement outside
//! the supported subset, an invalid regular expression) is an error, never a silent match.

use crate::codec::Invalid;
use crate::compound;
pub use crate::matching::fact_matches;
use crate::matching::{cached_regex, slashed, text_matches};
use crate::node::Node;
use crate::protocol::Filter;

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
