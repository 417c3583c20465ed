//! Reading a Choria-style `key = value` configuration file (`client.conf`, `server.conf`).
//!
//! Every program of the workspace reads the keys it knows and ignores the rest, so an existing
//! Choria configuration can be passed as is. `/dev/null` is a valid, empty file. Lines starting
//! with `#` or `;` are comments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A configuration file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The OS error is part of the message, not a `source`, so that it is printed once.
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}:{line}: expected `key = value`, found {text:?}")]
    Syntax {
        path: PathBuf,
        line: usize,
        text: String,
    },
}

/// The key/value pairs of a Choria configuration file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChoriaConfig {
    values: BTreeMap<String, String>,
}

impl ChoriaConfig {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<ChoriaConfig, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigFileError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<ChoriaConfig, ConfigFileError> {
        let mut values = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(ConfigFileError::Syntax {
                    path: path.to_owned(),
                    line: i + 1,
                    text: raw.to_owned(),
                });
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(ConfigFileError::Syntax {
                    path: path.to_owned(),
                    line: i + 1,
                    text: raw.to_owned(),
                });
            }
            values.insert(key.to_owned(), value.trim().to_owned());
        }
        Ok(ChoriaConfig { values })
    }

    /// The value of `key`, if set and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A Boolean value (`true`/`yes`/`1`, `false`/`no`/`0`); `None` when unset or not Boolean.
    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key)?.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Some(true),
            "false" | "no" | "0" | "off" => Some(false),
            _ => None,
        }
    }

    /// Sets `key` (used by tests and by programs that write a config for a child).
    pub fn set(&mut self, key: &str, value: &str) {
        self.values.insert(key.to_owned(), value.to_owned());
    }

    /// A comma-separated value as a list.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_choria_style_files() {
        let text = "# comment\nplugin.choria.middleware_hosts = nats1:4222, nats2:4222\n\nloglevel=debug\nidentity = x\n";
        let cfg = ChoriaConfig::parse(text, Path::new("c.cfg")).unwrap();
        assert_eq!(
            cfg.list("plugin.choria.middleware_hosts"),
            vec!["nats1:4222", "nats2:4222"]
        );
        assert_eq!(cfg.get("loglevel"), Some("debug"));
        assert_eq!(cfg.get("missing"), None);
    }

    #[test]
    fn reports_the_bad_line() {
        let err = ChoriaConfig::parse("a = 1\nnonsense\n", Path::new("c.cfg")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.cfg:2: expected `key = value`, found \"nonsense\""
        );
    }
}
