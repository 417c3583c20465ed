//! `pql` node sets: the templated `query` is sent to PuppetDB ([`crate::puppetdb`]) and the
//! certnames of the result rows become the set, in PuppetDB's order; the common options are
//! applied afterwards by [`super::discover`].

use super::NodeSetError;
use crate::puppetdb::PuppetDb;
use crate::schema::nodes::PqlProps;

/// Runs the set's query.
pub(crate) async fn discover(
    props: &PqlProps,
    puppetdb: &PuppetDb,
) -> Result<Vec<String>, NodeSetError> {
    let query = props.query.as_str().trim();
    if query.is_empty() {
        return Err(NodeSetError::Failed(
            "the query of a pql node set must not be empty".to_string(),
        ));
    }
    Ok(puppetdb.certnames(query).await?)
}
