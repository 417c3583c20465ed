//! What every instance publishes as registration (`--registration`), built once per fleet.
//!
//! Stages: [`RegistrationConfig`] (flags, environment, Choria config keys; see `config.rs`) →
//! [`Registrar::new`] renders the template once: for `filecontent` the whole payload (one
//! compressed body for the fleet); for `inventorycontent` the part every instance shares
//! (agents, collectives, build info, the facts that do not depend on the instance) as one
//! compressed gzip member → at each deadline of the fleet's scheduler (`schedule.rs`),
//! [`Registrar::message`] appends the instance's own small part (its varying facts, classes,
//! status) as a second gzip member in stored blocks, and wraps the payload in a Choria request
//! to agent `registration`, reply-to `dev.null`.
//!
//! Nothing is kept per instance: the per-instance member is a few hundred bytes rendered at
//! publish time, without a compressor.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agents::AgentId;
use agents::registration::{self, Body, Kind, Sender};
use serde_json::Value;

use crate::facts::{FactsTemplate, Subject};

/// How the instances register.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationConfig {
    pub kind: Kind,
    /// Between two registrations of one instance (`registerinterval`).
    pub interval: Duration,
    /// First registration after a random delay within the interval (`registration_splay`).
    pub splay: bool,
    /// Collective of the requests (`registration_collective`); `None`: the main collective.
    pub collective: Option<String>,
    /// Subject instead of `<collective>.broadcast.agent.registration`.
    pub target: Option<String>,
    /// `filecontent`: the file, and its bytes and mtime as read at start.
    pub file: Option<RegistrationFile>,
    /// Gzip the content into `zcontent` (`plugin.choria.registration.<plugin>.compression`).
    pub compression: bool,
    /// Unix milliseconds the schedule counts from (the supervisor passes its own to workers).
    pub epoch_ms: u64,
}

/// The file a `filecontent` registration publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationFile {
    pub path: PathBuf,
    pub content: Arc<Vec<u8>>,
    pub mtime: i64,
}

impl RegistrationFile {
    /// Reads `path` (its bytes and modification time).
    pub fn read(path: PathBuf) -> std::io::Result<RegistrationFile> {
        let content = std::fs::read(&path)?;
        let mtime = std::fs::metadata(&path)?
            .modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        Ok(RegistrationFile {
            path,
            content: Arc::new(content),
            mtime,
        })
    }
}

impl RegistrationConfig {
    /// `kind` every `interval`, with go-choria's defaults: splay on, the main collective, the
    /// default subject, compression on, the schedule counted from now.
    pub fn new(kind: Kind, interval: Duration) -> RegistrationConfig {
        RegistrationConfig {
            kind,
            interval,
            splay: true,
            collective: None,
            target: None,
            file: None,
            compression: true,
            epoch_ms: crate::schedule::unix_ms(),
        }
    }
}

/// The fleet's registration template.
pub(crate) struct Registrar {
    subject: String,
    collective: String,
    body: Template,
}

enum Template {
    /// The whole payload, the same for every instance.
    File(String),
    Inventory {
        /// The shared start of the content: a gzip member, or plain JSON text.
        shared: Vec<u8>,
        compressed: bool,
        /// Facts whose value depends on the instance, rendered at publish time.
        varying_facts: Vec<String>,
        /// Whether the shared part already holds a fact (the next one needs a comma).
        shared_has_facts: bool,
    },
}

impl Registrar {
    /// Renders the template for the fleet of `name` with `collectives` and `agent_ids`.
    pub(crate) fn new(
        config: &RegistrationConfig,
        name: &str,
        collectives: &[String],
        agent_ids: &[AgentId],
        facts: &FactsTemplate,
    ) -> Registrar {
        let collective = config
            .collective
            .clone()
            .or_else(|| collectives.first().cloned())
            .unwrap_or_else(|| "mcollective".to_owned());
        let subject = config
            .target
            .clone()
            .unwrap_or_else(|| registration::subject(&collective));
        let body = match config.kind {
            Kind::FileContent => {
                let (path, content, mtime) = match &config.file {
                    Some(f) => (f.path.display().to_string(), f.content.as_slice(), f.mtime),
                    None => (String::new(), &[][..], 0),
                };
                let zipped;
                let body = if config.compression {
                    zipped = registration::gzip_member(content);
                    Body::Gzip(&zipped)
                } else {
                    Body::Plain(content)
                };
                // `updated` is only ever true when the file's mtime grows between two
                // publishes; the emulator reads the file once.
                Template::File(registration::file_message(&path, mtime, false, body))
            }
            Kind::InventoryContent => {
                let (prefix, varying_facts, shared_has_facts) =
                    inventory_prefix(name, collectives, agent_ids, facts);
                let shared = if config.compression {
                    registration::gzip_member(prefix.as_bytes())
                } else {
                    prefix.into_bytes()
                };
                Template::Inventory {
                    shared,
                    compressed: config.compression,
                    varying_facts,
                    shared_has_facts,
                }
            }
        };
        Registrar {
            subject,
            collective,
            body,
        }
    }

    /// Where the requests go.
    pub(crate) fn subject(&self) -> &str {
        &self.subject
    }

    /// The NATS body of one registration of `s`.
    pub(crate) fn message(&self, s: Subject<'_>, facts: &FactsTemplate, now: i64) -> Vec<u8> {
        let requestid = format!("{:032x}", rand::random::<u128>());
        let sender = Sender {
            identity: s.identity,
            collective: &self.collective,
            requestid: &requestid,
            time: now,
        };
        match &self.body {
            Template::File(payload) => registration::encode_request(&sender, payload),
            Template::Inventory {
                shared,
                compressed,
                varying_facts,
                shared_has_facts,
            } => {
                let suffix = inventory_suffix(s, facts, varying_facts, *shared_has_facts);
                let payload = if *compressed {
                    let mut stream = Vec::with_capacity(shared.len() + suffix.len() + 32);
                    stream.extend_from_slice(shared);
                    stream.extend(registration::gzip_stored_member(suffix.as_bytes()));
                    registration::inventory_message(Body::Gzip(&stream))
                } else {
                    let mut text = shared.clone();
                    text.extend_from_slice(suffix.as_bytes());
                    registration::inventory_message(Body::Plain(&text))
                };
                registration::encode_request(&sender, &payload)
            }
        }
    }
}

fn json(value: &impl serde::Serialize) -> String {
    // Plain strings, numbers and maps of them always serialise.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// The shared start of the inventory content, up to and inside `"facts":{`, with the facts
/// that are the same for every instance; and the names of the others.
fn inventory_prefix(
    name: &str,
    collectives: &[String],
    agent_ids: &[AgentId],
    facts: &FactsTemplate,
) -> (String, Vec<String>, bool) {
    let agents: Vec<agents::ddl::Metadata> = agent_ids.iter().map(|a| a.metadata()).collect();
    let build = registration::BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        sha: String::new(),
    };
    let (id0, id1) = (format!("{name}-0"), format!("{name}-1"));
    let first = facts.facts(Subject {
        index: 0,
        identity: &id0,
        name,
    });
    let second = facts.facts(Subject {
        index: 1,
        identity: &id1,
        name,
    });
    let mut prefix = format!(
        "{{\"agents\":{},\"collectives\":{},\"build_info\":{},\"machines\":[],\"facts\":{{",
        json(&agents),
        json(&collectives),
        json(&build)
    );
    let mut varying = Vec::new();
    let mut any = false;
    for (key, value) in &first {
        // A value that differs between instances 0 and 1 uses {index}, {identity} or {shard}.
        if second.get(key) == Some(value) {
            if any {
                prefix.push(',');
            }
            prefix.push_str(&json(key));
            prefix.push(':');
            prefix.push_str(&json(value));
            any = true;
        } else {
            varying.push(key.clone());
        }
    }
    (prefix, varying, any)
}

/// The instance's own end of the content: its varying facts, classes and status.
fn inventory_suffix(
    s: Subject<'_>,
    facts: &FactsTemplate,
    varying: &[String],
    mut comma: bool,
) -> String {
    let mut out = String::with_capacity(256);
    for key in varying {
        let value = facts.fact(key, s).unwrap_or(Value::Null);
        if comma {
            out.push(',');
        }
        out.push_str(&json(key));
        out.push(':');
        out.push_str(&json(&value));
        comma = true;
    }
    let status = registration::InstanceStatus {
        identity: s.identity.to_owned(),
        provisioning_mode: false,
    };
    out.push_str("},\"classes\":");
    out.push_str(&json(&facts.classes(s)));
    out.push_str(",\"status\":");
    out.push_str(&json(&status));
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use agents::registration::Registration;

    #[test]
    fn inventory_holds_each_instances_own_facts_and_classes() {
        let facts = FactsTemplate::plain(vec!["emulator".into(), "shard_{shard}".into()], 4);
        for compression in [true, false] {
            let mut config =
                RegistrationConfig::new(Kind::InventoryContent, Duration::from_secs(1));
            config.compression = compression;
            let collectives = vec!["mcollective".to_owned(), "collective1".to_owned()];
            let ids = AgentId::all(2);
            let r = Registrar::new(&config, "emu", &collectives, &ids, &facts);
            assert_eq!(r.subject(), "mcollective.broadcast.agent.registration");
            for index in [0u32, 1, 6] {
                let identity = format!("emu-{index}");
                let s = Subject {
                    index,
                    identity: &identity,
                    name: "emu",
                };
                let body = r.message(s, &facts, 1_700_000_000);
                let (request, reg) =
                    registration::decode(&body, agents::codec::DEFAULT_MAX_MESSAGE).unwrap();
                assert_eq!(request.senderid, identity);
                assert_eq!(request.collective, "mcollective");
                assert_eq!(request.requestid.len(), 32);
                let Registration::Inventory { data, compressed } = reg else {
                    panic!("inventory expected");
                };
                assert_eq!(compressed, compression);
                assert_eq!(
                    Value::Object(data.facts.clone()),
                    Value::Object(facts.facts(s))
                );
                assert_eq!(data.classes, facts.classes(s));
                assert_eq!(data.collectives, collectives);
                assert_eq!(data.status.unwrap().identity, identity);
                let names: Vec<&str> = data.agents.iter().map(|a| a.name.as_str()).collect();
                assert_eq!(names, ["discovery", "rpcutil", "emulated0", "emulated1"]);
                assert_eq!(data.build_info.unwrap().version, env!("CARGO_PKG_VERSION"));
            }
        }
    }
}
