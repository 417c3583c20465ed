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
//!
//! A `filecontent` file is watched as go-choria does: its modification time is checked (at
//! most once a second for the whole fleet); when it grew, the file is read again and the next
//! registration of every instance carries the new content with `updated: true`. Since each
//! instance publishes exactly once per interval, "the next registration of every instance" is
//! every publish within one interval after the change: no per-instance state is needed.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

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
    /// `filecontent`: the file, and its bytes and mtime as read at start (read again whenever
    /// its mtime grows).
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
        let mtime = mtime(&path)?;
        let content = std::fs::read(&path)?;
        Ok(RegistrationFile {
            path,
            content: Arc::new(content),
            mtime,
        })
    }
}

/// Modification time of `path` in Unix seconds, as go-choria sends it.
fn mtime(path: &std::path::Path) -> std::io::Result<i64> {
    Ok(std::fs::metadata(path)?
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0)))
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
    /// Unix seconds when the template was made (the process start): `status.uptime` counts
    /// from it.
    started: i64,
}

enum Template {
    /// The whole payload, the same for every instance.
    File(FileTemplate),
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
            Kind::FileContent => Template::File(FileTemplate::new(config)),
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
            started: i64::try_from(crate::schedule::unix_ms() / 1000).unwrap_or(0),
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
            Template::File(file) => registration::encode_request(&sender, &file.payload()),
            Template::Inventory {
                shared,
                compressed,
                varying_facts,
                shared_has_facts,
            } => {
                let uptime = now.saturating_sub(self.started).max(0);
                let suffix = inventory_suffix(s, facts, varying_facts, *shared_has_facts, uptime);
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

/// How often the fleet looks at a `filecontent` file's modification time.
const FILE_CHECK: Duration = Duration::from_secs(1);

/// The `filecontent` payload of the fleet, rendered again when the file changes.
struct FileTemplate {
    path: Option<PathBuf>,
    compression: bool,
    interval: Duration,
    check_every: Duration,
    state: RwLock<FileState>,
}

struct FileState {
    /// The payload with `updated: false`, and with `updated: true`.
    plain: Arc<String>,
    updated: Arc<String>,
    mtime: i64,
    /// When a newer file was read: publishes within one interval after it say `updated`.
    changed_at: Option<Instant>,
    checked_at: Instant,
}

impl FileTemplate {
    fn new(config: &RegistrationConfig) -> FileTemplate {
        let (path, content, mtime) = match &config.file {
            Some(f) => (Some(f.path.clone()), f.content.as_slice(), f.mtime),
            None => (None, &[][..], 0),
        };
        let (plain, updated) = render_file(path.as_deref(), content, mtime, config.compression);
        FileTemplate {
            path,
            compression: config.compression,
            interval: config.interval,
            check_every: FILE_CHECK,
            state: RwLock::new(FileState {
                plain,
                updated,
                mtime,
                changed_at: None,
                checked_at: Instant::now(),
            }),
        }
    }

    /// The payload to publish now; reads the file again first when its mtime grew.
    fn payload(&self) -> Arc<String> {
        let now = Instant::now();
        let due = self.state.read().map_or(true, |s| {
            now.duration_since(s.checked_at) >= self.check_every
        });
        if due {
            self.refresh(now);
        }
        let Ok(state) = self.state.read() else {
            return Arc::new(String::new());
        };
        let updated = state
            .changed_at
            .is_some_and(|at| now.duration_since(at) < self.interval);
        Arc::clone(if updated {
            &state.updated
        } else {
            &state.plain
        })
    }

    fn refresh(&self, now: Instant) {
        let Some(path) = &self.path else { return };
        let Ok(mut state) = self.state.write() else {
            return;
        };
        if now.duration_since(state.checked_at) < self.check_every {
            return; // another publisher checked meanwhile
        }
        state.checked_at = now;
        let known = state.mtime;
        let newer = mtime(path).and_then(|m| {
            if m > known {
                std::fs::read(path).map(|content| Some((m, content)))
            } else {
                Ok(None)
            }
        });
        match newer {
            Ok(None) => {}
            Ok(Some((grown, content))) => {
                let (plain, updated) = render_file(Some(path), &content, grown, self.compression);
                tracing::info!(file = %path.display(), mtime = grown, bytes = content.len(), "registration file changed; publishing its new content");
                *state = FileState {
                    plain,
                    updated,
                    mtime: grown,
                    changed_at: Some(now),
                    checked_at: now,
                };
            }
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "cannot read the registration file; publishing what was read before");
            }
        }
    }
}

/// The `filecontent` payloads of `content` (`updated` false and true).
fn render_file(
    path: Option<&std::path::Path>,
    content: &[u8],
    mtime: i64,
    compression: bool,
) -> (Arc<String>, Arc<String>) {
    let path = path.map(|p| p.display().to_string()).unwrap_or_default();
    let zipped;
    let body = if compression {
        zipped = registration::gzip_member(content);
        Body::Gzip(&zipped)
    } else {
        Body::Plain(content)
    };
    (
        Arc::new(registration::file_message(&path, mtime, false, body)),
        Arc::new(registration::file_message(&path, mtime, true, body)),
    )
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
    uptime: i64,
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
        uptime,
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
                let status = data.status.unwrap();
                assert_eq!(status.identity, identity);
                // `now` is before the template was made: never a negative uptime.
                assert_eq!(status.uptime, 0);
                let later = r.message(s, &facts, r.started + 42);
                let (_, Registration::Inventory { data, .. }) =
                    registration::decode(&later, agents::codec::DEFAULT_MAX_MESSAGE).unwrap()
                else {
                    panic!("inventory expected");
                };
                assert_eq!(data.status.unwrap().uptime, 42);
                let names: Vec<&str> = data.agents.iter().map(|a| a.name.as_str()).collect();
                assert_eq!(names, ["discovery", "rpcutil", "emulated0", "emulated1"]);
                assert_eq!(data.build_info.unwrap().version, env!("CARGO_PKG_VERSION"));
            }
        }
    }

    #[test]
    fn a_file_that_grows_newer_is_read_again_and_marked_updated_for_one_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.json");
        std::fs::write(&path, b"first").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        let t0 = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        file.set_modified(t0).unwrap();
        let mut config = RegistrationConfig::new(Kind::FileContent, Duration::from_millis(300));
        config.file = Some(RegistrationFile::read(path.clone()).unwrap());
        let facts = FactsTemplate::plain(vec![], 1);
        let mut r = Registrar::new(&config, "emu", &["mcollective".into()], &[], &facts);
        if let Template::File(f) = &mut r.body {
            f.check_every = Duration::ZERO;
        }
        let publish = |r: &Registrar| {
            let s = Subject {
                index: 0,
                identity: "emu-0",
                name: "emu",
            };
            let body = r.message(s, &facts, 1_700_000_000);
            match registration::decode(&body, agents::codec::DEFAULT_MAX_MESSAGE).unwrap() {
                (_, Registration::File(f)) => f,
                other => panic!("file content expected: {other:?}"),
            }
        };
        let first = publish(&r);
        assert_eq!(
            (first.content.as_slice(), first.mtime, first.updated),
            (&b"first"[..], 1_700_000_000, false),
            "never updated on the first publish"
        );
        // Rewritten without a newer mtime: go-choria does not notice, neither does the fleet.
        std::fs::write(&path, b"same mtime").unwrap();
        file.set_modified(t0).unwrap();
        assert_eq!(publish(&r).content, b"first");
        // A newer file: read again, updated for one interval, then plain again.
        std::fs::write(&path, b"second").unwrap();
        file.set_modified(t0 + Duration::from_secs(60)).unwrap();
        let changed = publish(&r);
        assert_eq!(
            (changed.content.as_slice(), changed.mtime, changed.updated),
            (&b"second"[..], 1_700_000_060, true)
        );
        assert!(publish(&r).updated, "still within the interval");
        std::thread::sleep(Duration::from_millis(350));
        let later = publish(&r);
        assert_eq!(
            (later.content.as_slice(), later.updated),
            (&b"second"[..], false)
        );
        // A file that disappears keeps the last content.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(publish(&r).content, b"second");
    }
}
