//! `mcollective` node sets: Choria broadcast discovery, the `test: true` connectivity ping and
//! the `uses` agent-version check against `rpcutil.agent_inventory`.

use std::collections::BTreeMap;
use std::time::Duration;

use agents::client::{Call, ReplyOutcome, Targets};
use agents::{FactFilter, Filter};
use serde_json::{Map, Value};

use super::NodeSetError;
use super::versions::{Range, parse_version};
use crate::choria::Broker;
use crate::schema::nodes::McollectiveProps;
use crate::schema::values::Names;

/// Default discovery timeout.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(2);

fn list_prop(value: &Option<Names>) -> Vec<String> {
    value.as_ref().map(|n| n.0.clone()).unwrap_or_default()
}

/// Parses `fact=value`, `fact==value`, `fact!=value`, `fact<=N`, `fact=~/re/`... as every
/// Choria tool of the workspace does ([`FactFilter::parse`]).
pub(crate) fn fact_filter(text: &str) -> Result<FactFilter, NodeSetError> {
    FactFilter::parse(text).map_err(|e| {
        NodeSetError::Failed(format!(
            "Could not parse fact filter {text}: expected fact=value or fact<op>value ({e})"
        ))
    })
}

/// Builds the discovery filter of a node set.
pub(crate) fn filter(props: &McollectiveProps) -> Result<Filter, NodeSetError> {
    let mut agents = list_prop(&props.agents);
    if agents.is_empty() {
        agents.push("rpcutil".to_string());
    }
    let fact = list_prop(&props.facts)
        .iter()
        .map(|f| fact_filter(f))
        .collect::<Result<Vec<_>, _>>()?;
    let compound = match &props.compound {
        Some(expr) if !expr.as_str().trim().is_empty() => {
            vec![Value::Array(vec![
                serde_json::json!({ "expr": expr.as_str() }),
            ])]
        }
        _ => Vec::new(),
    };
    Ok(Filter {
        fact,
        cf_class: list_prop(&props.classes),
        agent: agents,
        identity: list_prop(&props.identities),
        compound,
    })
}

/// Broadcast discovery with the set's filter.
pub(crate) async fn discover(
    props: &McollectiveProps,
    broker: &Broker,
) -> Result<Vec<String>, NodeSetError> {
    if let Some(method) = props.discovery_method.as_ref().map(|m| m.as_str())
        && method != "mc"
        && method != "broadcast"
    {
        return Err(NodeSetError::Failed(format!(
            "discovery_method {method} is not supported; only mc (broadcast) discovery is available"
        )));
    }
    let filter = filter(props)?;
    let timeout = props
        .discovery_timeout
        .map_or(DISCOVERY_TIMEOUT, |s| crate::seconds(s.0));
    let client = broker
        .client()
        .await
        .map_err(|e| NodeSetError::Failed(e.to_string()))?;
    tracing::debug!(?filter, ?timeout, "broadcast discovery");
    client
        .discover(filter, timeout, None)
        .await
        .map_err(|e| NodeSetError::Failed(format!("Discovery failed: {e}")))
}

/// Sends `rpcutil.<action>` to `nodes`; returns OK replies' data by sender and the nodes that
/// did not answer OK.
async fn rpcutil(
    broker: &Broker,
    action: &str,
    nodes: &[String],
) -> Result<(BTreeMap<String, Value>, Vec<String>), NodeSetError> {
    let client = broker
        .client()
        .await
        .map_err(|e| NodeSetError::Failed(e.to_string()))?;
    let mut call = Call::rpc(
        "rpcutil",
        action,
        Map::new(),
        Targets::Direct(nodes.to_vec()),
        broker.rpc_timeout("rpcutil"),
    );
    call.expected = Some(nodes.len());
    let collected = client
        .call(&call)
        .await
        .map_err(|e| NodeSetError::Failed(format!("rpcutil.{action} failed: {e}")))?;
    let mut ok = BTreeMap::new();
    for event in collected.replies.iter().filter(|e| !e.late) {
        if let ReplyOutcome::Ok(r) = &event.outcome
            && let Ok(v) = serde_json::from_str::<Value>(&r.body)
            && v.get("statuscode").and_then(Value::as_i64) == Some(0)
        {
            ok.insert(
                r.sender.clone(),
                v.get("data").cloned().unwrap_or(Value::Null),
            );
        }
    }
    let missing = nodes
        .iter()
        .filter(|n| !ok.contains_key(*n))
        .cloned()
        .collect();
    Ok((ok, missing))
}

/// `test: true`: one `rpcutil.ping` to every node; any failure lists the nodes.
pub(crate) async fn ping_test(broker: &Broker, nodes: &[String]) -> Result<(), NodeSetError> {
    if nodes.is_empty() {
        return Ok(());
    }
    let (_, missing) = rpcutil(broker, "ping", nodes).await?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(NodeSetError::Failed(format!(
            "Connectivity test failed for some nodes: {}",
            missing.join(", ")
        )))
    }
}

/// Checks that every node reports every agent of `required` at a version satisfying the
/// playbook's `uses` range.
pub(crate) async fn check_agents(
    broker: &Broker,
    uses: &BTreeMap<String, String>,
    nodes: &[String],
    required: &[String],
) -> Result<(), NodeSetError> {
    if nodes.is_empty() || required.is_empty() {
        return Ok(());
    }
    let mut ranges = Vec::new();
    for agent in required {
        let Some(range_text) = uses.get(agent) else {
            return Err(NodeSetError::Failed(format!(
                "Agent {agent} is used by a node set but has no version in the playbook's uses"
            )));
        };
        let range = Range::parse(range_text)
            .map_err(|e| NodeSetError::Failed(format!("Agent {agent} has an {e} in uses")))?;
        ranges.push((agent, range_text, range));
    }
    let (inventory, missing) = rpcutil(broker, "agent_inventory", nodes).await?;
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("no inventory from {}", missing.join(", ")));
    }
    for (node, data) in &inventory {
        let agents = data.get("agents").and_then(Value::as_array);
        for (agent, range_text, range) in &ranges {
            let version = agents.and_then(|list| {
                list.iter()
                    .find(|e| {
                        e.get("agent").and_then(Value::as_str) == Some(agent.as_str())
                            || e.get("name").and_then(Value::as_str) == Some(agent.as_str())
                    })
                    .and_then(|e| e.get("version").and_then(Value::as_str))
            });
            match version {
                None => problems.push(format!("{node} does not have agent {agent}")),
                Some(v) => match parse_version(v) {
                    Some(parsed) if range.matches(parsed) => {}
                    _ => problems.push(format!(
                        "{node} has {agent} {v} which does not satisfy {range_text}"
                    )),
                },
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(NodeSetError::Failed(format!(
            "Agent versions did not match on some nodes: {}",
            problems.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters() {
        let props: McollectiveProps = crate::schema::parse(&json!({
            "facts": ["shard=3", "index<=5", "role=~/emu/"],
            "classes": ["emulator"], "compound": "shard=1"}))
        .expect("props");
        let f = filter(&props).expect("filter");
        assert_eq!(f.agent, vec!["rpcutil"]);
        assert_eq!(f.fact[0].operator, "==");
        assert_eq!(f.fact[1].operator, "<=");
        assert_eq!(f.fact[2].operator, "=~");
        assert_eq!(f.compound, vec![json!([{"expr": "shard=1"}])]);
        assert!(fact_filter("nothing").is_err());
        assert!(fact_filter("=x").is_err());
    }
}
