//! The requests of the `emulator` management agent as a closed enum, decoded from inputs that
//! the DDL (`agents/ddl/emulator.json`) has validated and filled with defaults.
//!
//! Decoding never invents a value: an input the action needs that is neither given nor
//! defaulted by the DDL is [`RequestError::Missing`], never a silent `0` or `""`.

use std::fmt;
use std::time::Duration;

use agents::StatusCode;
use agents::ddl::{Ddl, InputError};
use serde_json::{Map, Value};

/// The actions of the `emulator` agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActionName {
    Download,
    Start,
    Stop,
    Status,
    StartNats,
    StopNats,
    StartFederation,
    StopFederation,
    FederationStatus,
}

impl ActionName {
    /// Every action, in DDL order.
    pub const ALL: [ActionName; 9] = [
        ActionName::Download,
        ActionName::Start,
        ActionName::Stop,
        ActionName::Status,
        ActionName::StartNats,
        ActionName::StopNats,
        ActionName::StartFederation,
        ActionName::StopFederation,
        ActionName::FederationStatus,
    ];

    /// The action's name on the wire and in the DDL.
    pub fn name(self) -> &'static str {
        match self {
            ActionName::Download => "download",
            ActionName::Start => "start",
            ActionName::Stop => "stop",
            ActionName::Status => "status",
            ActionName::StartNats => "start_nats",
            ActionName::StopNats => "stop_nats",
            ActionName::StartFederation => "start_federation",
            ActionName::StopFederation => "stop_federation",
            ActionName::FederationStatus => "federation_status",
        }
    }

    /// The action called `name`, if the agent has one.
    pub fn from_name(name: &str) -> Option<ActionName> {
        ActionName::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for ActionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `download`: fetch a URL into the work directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    pub url: String,
    /// A file name inside the work directory (the DDL pattern admits no `/`).
    pub target: String,
    /// Expected SHA-256 in lower-case hex; `None` means no check.
    pub sha256: Option<String>,
    /// The download fails once more than this many bytes arrive.
    pub max_bytes: u64,
    /// The download fails when no data arrives for this long.
    pub idle_timeout: Duration,
}

/// `start`: an emulator fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// Identity prefix; `None` means the node's identity.
    pub name: Option<String>,
    pub instances: u32,
    pub agents: u32,
    pub collectives: u32,
    /// `host:port` NATS servers.
    pub servers: Vec<String>,
    pub tls: bool,
    /// The emulator's `/debug/vars` port.
    pub monitor: u16,
}

/// `start_federation`: a federation broker between two networks (the 2017 agent's inputs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFederation {
    /// Cluster name; `None` means the node's identity.
    pub name: Option<String>,
    pub tls: bool,
    /// `host:port` NATS servers of the federation network.
    pub federation_servers: Vec<String>,
    /// `host:port` NATS servers of the collective network.
    pub collective_servers: Vec<String>,
    /// The broker's `/debug/vars` port; `None` means the daemon's `--federation-monitor`.
    pub monitor: Option<u16>,
}

/// One decoded request of the `emulator` agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Download(Download),
    Start(Start),
    Stop { port: u16 },
    Status { port: u16 },
    StartNats { port: u16, monitor_port: u16 },
    StopNats,
    StartFederation(StartFederation),
    StopFederation,
    FederationStatus { monitor: Option<u16> },
}

impl Request {
    /// The action this request runs.
    pub fn action(&self) -> ActionName {
        match self {
            Request::Download(_) => ActionName::Download,
            Request::Start(_) => ActionName::Start,
            Request::Stop { .. } => ActionName::Stop,
            Request::Status { .. } => ActionName::Status,
            Request::StartNats { .. } => ActionName::StartNats,
            Request::StopNats => ActionName::StopNats,
            Request::StartFederation(_) => ActionName::StartFederation,
            Request::StopFederation => ActionName::StopFederation,
            Request::FederationStatus { .. } => ActionName::FederationStatus,
        }
    }

    /// Validates `data` against the action's DDL entry and decodes it.
    pub fn decode(
        ddl: &Ddl,
        action: &str,
        data: &Map<String, Value>,
    ) -> Result<Request, RequestError> {
        let name = ActionName::from_name(action).ok_or_else(|| RequestError::UnknownAction {
            action: action.to_owned(),
        })?;
        let described = ddl
            .action(name.name())
            .ok_or(RequestError::NotInDdl { action: name })?;
        let map = described
            .validate(data)
            .map_err(|source| RequestError::Invalid {
                action: name,
                source,
            })?;
        let inputs = Inputs { action: name, map };
        Ok(match name {
            ActionName::Download => Request::Download(Download {
                url: inputs.text("url")?,
                target: inputs.text("target")?,
                sha256: inputs
                    .optional_text("sha256")?
                    .map(|s| s.to_ascii_lowercase()),
                max_bytes: inputs.int("max_bytes", 1, i64::MAX)? as u64,
                idle_timeout: Duration::from_secs(inputs.int("idle_timeout", 1, 3600)? as u64),
            }),
            ActionName::Start => Request::Start(Start {
                name: inputs.optional_text("name")?,
                instances: inputs.int("instances", 1, 1_000_000)? as u32,
                agents: inputs.int("agents", 0, 1_000_000)? as u32,
                collectives: inputs.int("collectives", 1, 1_000_000)? as u32,
                servers: inputs.list("servers")?,
                tls: inputs.boolean("tls")?,
                monitor: inputs.port("monitor")?,
            }),
            ActionName::Stop => Request::Stop {
                port: inputs.port("port")?,
            },
            ActionName::Status => Request::Status {
                port: inputs.port("port")?,
            },
            ActionName::StartNats => Request::StartNats {
                port: inputs.port("port")?,
                monitor_port: inputs.port("monitor_port")?,
            },
            ActionName::StopNats => Request::StopNats,
            ActionName::StartFederation => Request::StartFederation(StartFederation {
                name: inputs.optional_text("name")?,
                tls: inputs.boolean("tls")?,
                federation_servers: inputs.list("federation_servers")?,
                collective_servers: inputs.list("collective_servers")?,
                monitor: inputs.optional_port("monitor_port")?,
            }),
            ActionName::StopFederation => Request::StopFederation,
            ActionName::FederationStatus => Request::FederationStatus {
                monitor: inputs.optional_port("monitor_port")?,
            },
        })
    }
}

/// Why a request cannot run; the reply's statuscode is [`RequestError::status`].
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("Unknown action {action} for agent emulator")]
    UnknownAction { action: String },
    #[error("the emulator DDL has no action {action}")]
    NotInDdl { action: ActionName },
    #[error("invalid input for {action}")]
    Invalid {
        action: ActionName,
        #[source]
        source: InputError,
    },
    #[error("input {input} of {action} is missing and the DDL gives no default")]
    Missing {
        action: ActionName,
        input: &'static str,
    },
    #[error("input {input} of {action} must be {expected}, got {got}")]
    Type {
        action: ActionName,
        input: &'static str,
        expected: &'static str,
        got: String,
    },
    #[error("input {input} of {action} must be between {min} and {max}, got {value}")]
    Range {
        action: ActionName,
        input: &'static str,
        value: i64,
        min: i64,
        max: i64,
    },
}

impl RequestError {
    /// The RPC statuscode for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::UnknownAction { .. } | RequestError::NotInDdl { .. } => {
                StatusCode::UnknownAction
            }
            RequestError::Invalid { .. }
            | RequestError::Missing { .. }
            | RequestError::Type { .. }
            | RequestError::Range { .. } => StatusCode::InvalidData,
        }
    }
}

struct Inputs {
    action: ActionName,
    map: Map<String, Value>,
}

impl Inputs {
    fn get(&self, input: &'static str) -> Result<&Value, RequestError> {
        self.map.get(input).ok_or(RequestError::Missing {
            action: self.action,
            input,
        })
    }

    fn wrong(&self, input: &'static str, expected: &'static str, got: &Value) -> RequestError {
        RequestError::Type {
            action: self.action,
            input,
            expected,
            got: got.to_string(),
        }
    }

    fn text(&self, input: &'static str) -> Result<String, RequestError> {
        match self.get(input)? {
            Value::String(s) => Ok(s.clone()),
            other => Err(self.wrong(input, "a string", other)),
        }
    }

    /// An input the DDL marks optional without a default: absent means `None`.
    fn optional_text(&self, input: &'static str) -> Result<Option<String>, RequestError> {
        match self.map.get(input) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.wrong(input, "a string", other)),
        }
    }

    /// A comma separated list (the DDL's pattern admits no empty item).
    fn list(&self, input: &'static str) -> Result<Vec<String>, RequestError> {
        Ok(self.text(input)?.split(',').map(str::to_owned).collect())
    }

    fn boolean(&self, input: &'static str) -> Result<bool, RequestError> {
        match self.get(input)? {
            Value::Bool(b) => Ok(*b),
            other => Err(self.wrong(input, "a boolean", other)),
        }
    }

    fn int(&self, input: &'static str, min: i64, max: i64) -> Result<i64, RequestError> {
        let value = self.get(input)?;
        let n = value
            .as_i64()
            .ok_or_else(|| self.wrong(input, "an integer", value))?;
        if !(min..=max).contains(&n) {
            return Err(RequestError::Range {
                action: self.action,
                input,
                value: n,
                min,
                max,
            });
        }
        Ok(n)
    }

    fn port(&self, input: &'static str) -> Result<u16, RequestError> {
        Ok(self.int(input, 1, 65535)? as u16)
    }

    /// A port the DDL marks optional without a default: absent means `None`.
    fn optional_port(&self, input: &'static str) -> Result<Option<u16>, RequestError> {
        if self.map.contains_key(input) {
            self.port(input).map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(action: &str, data: Value) -> Result<Request, RequestError> {
        let ddl = agents::ddl::builtin("emulator").unwrap();
        Request::decode(ddl, action, data.as_object().unwrap())
    }

    #[test]
    fn every_action_of_the_ddl_is_an_action_name_and_back() {
        let ddl = agents::ddl::builtin("emulator").unwrap();
        let names: Vec<&str> = ddl.actions.iter().map(|a| a.action.as_str()).collect();
        let ours: Vec<&str> = ActionName::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(names, ours);
    }

    #[test]
    fn decodes_typed_requests_with_ddl_defaults() {
        let start = decode(
            "start",
            json!({"servers": "a:4222,b:4223", "instances": "5"}),
        )
        .unwrap();
        assert_eq!(
            start,
            Request::Start(Start {
                name: None,
                instances: 5,
                agents: 1,
                collectives: 1,
                servers: vec!["a:4222".into(), "b:4223".into()],
                tls: false,
                monitor: 8080,
            })
        );
        assert_eq!(
            decode("status", json!({})).unwrap(),
            Request::Status { port: 8080 }
        );
        let Request::Download(d) = decode(
            "download",
            json!({"url": "http://x/y", "target": "t", "sha256": "AB".repeat(32)}),
        )
        .unwrap() else {
            panic!("not a download");
        };
        assert_eq!(d.sha256.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(d.max_bytes, 512 * 1024 * 1024);
        assert_eq!(d.idle_timeout, Duration::from_secs(30));
        assert_eq!(decode("stop_nats", json!({})).unwrap(), Request::StopNats);
    }

    #[test]
    fn decodes_the_federation_actions_with_the_2017_inputs() {
        assert_eq!(
            decode(
                "start_federation",
                json!({"federation_servers": "f1:4222,f2:4223"})
            )
            .unwrap(),
            Request::StartFederation(StartFederation {
                name: None,
                tls: false,
                federation_servers: vec!["f1:4222".into(), "f2:4223".into()],
                collective_servers: vec!["localhost:4222".into()],
                monitor: None,
            })
        );
        let Request::StartFederation(s) = decode(
            "start_federation",
            json!({"federation_servers": "f:1", "collective_servers": "c:2", "name": "net1",
                   "tls": "true", "monitor_port": "9000"}),
        )
        .unwrap() else {
            panic!("not a start_federation");
        };
        assert_eq!(s.name.as_deref(), Some("net1"));
        assert!(s.tls);
        assert_eq!(s.collective_servers, ["c:2"]);
        assert_eq!(s.monitor, Some(9000));
        assert_eq!(
            decode("stop_federation", json!({})).unwrap(),
            Request::StopFederation
        );
        assert_eq!(
            decode("federation_status", json!({})).unwrap(),
            Request::FederationStatus { monitor: None }
        );
        // The federation servers are required; a cluster name is one subject token.
        let err = decode("start_federation", json!({})).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::Invalid {
                    action: ActionName::StartFederation,
                    ..
                }
            ),
            "{err}"
        );
        let err = decode(
            "start_federation",
            json!({"federation_servers": "f:1", "name": "a.b"}),
        )
        .unwrap_err();
        assert!(matches!(err, RequestError::Invalid { .. }), "{err}");
        let err = decode("federation_status", json!({"monitor_port": 0})).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::Range {
                    input: "monitor_port",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn refuses_out_of_range_unknown_and_invalid_input() {
        let err = decode("stop", json!({"port": 70000})).unwrap_err();
        assert_eq!(err.status(), StatusCode::InvalidData);
        assert_eq!(
            err.to_string(),
            "input port of stop must be between 1 and 65535, got 70000"
        );
        let err = decode("start", json!({"servers": "a:1", "instances": 0})).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::Range {
                    input: "instances",
                    ..
                }
            ),
            "{err}"
        );
        let err = decode("reboot", json!({})).unwrap_err();
        assert_eq!(err.status(), StatusCode::UnknownAction);
        let err = decode("start", json!({"servers": "a:1;rm -rf /"})).unwrap_err();
        assert!(matches!(
            err,
            RequestError::Invalid {
                action: ActionName::Start,
                ..
            }
        ));
        let err = decode(
            "download",
            json!({"url": "http://x/", "target": "t", "max_bytes": 0}),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::Range {
                    input: "max_bytes",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_missing_input_is_an_error_never_zero() {
        // A DDL whose `port` is optional without a default: validation passes, decoding must
        // not turn the absence into port 0.
        let mut ddl = agents::ddl::builtin("emulator").unwrap().clone();
        for action in &mut ddl.actions {
            for input in action.input.values_mut() {
                input.default = None;
                input.optional = true;
            }
        }
        let err = Request::decode(&ddl, "stop", &Map::new()).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::Missing {
                    action: ActionName::Stop,
                    input: "port"
                }
            ),
            "{err}"
        );
        let err = Request::decode(&ddl, "download", &Map::new()).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::Missing {
                    input: "url" | "target" | "max_bytes" | "idle_timeout",
                    ..
                }
            ),
            "{err}"
        );
        let err = Request::decode(
            &ddl,
            "start",
            json!({"servers": "a:1"}).as_object().unwrap(),
        )
        .unwrap_err();
        assert!(matches!(err, RequestError::Missing { .. }), "{err}");
    }
}
