//! PuppetDB's query API for `pql` node sets (stage **execute**, node sets): settings
//! ([`settings`]: URL and TLS files) → an HTTP client built on first use → `POST
//! /pdb/query/v4` with `{"query": PQL}` → the rows turned into certnames.
//!
//! A row is a certname when it is a string or an object with a string `certname` field
//! (`nodes[certname] {...}`, `resources {...}`, `facts {...}`); any other shape, a body that is
//! not a JSON array, an HTTP error or an unreachable PuppetDB is an error naming the query and
//! the URL, raised while node sets are discovered, before any task runs.

pub mod settings;

pub use settings::{PuppetDbSettings, SettingsError, TlsFiles, UrlSource};

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::OnceCell;

/// How long one query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest part of a response body or row quoted in an error.
const QUOTE_LIMIT: usize = 300;

/// PuppetDB failures, each naming where PuppetDB was looked for.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PuppetDbError {
    /// A TLS file could not be read or parsed.
    #[error("cannot use {what} {path} for PuppetDB at {url}: {reason}")]
    Tls {
        /// `CA file`, `client certificate`, `client key`.
        what: &'static str,
        /// The file.
        path: String,
        /// The PuppetDB URL.
        url: String,
        /// Why (the OS or PEM error).
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build an HTTP client for PuppetDB at {url}: {reason}")]
    Client {
        /// The PuppetDB URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// PuppetDB did not answer.
    #[error("cannot reach PuppetDB at {url} (from {}) for pql query {query:?}: {reason}", origin.describe())]
    Unreachable {
        /// The PuppetDB URL.
        url: String,
        /// Where the URL came from.
        origin: UrlSource,
        /// The PQL query.
        query: String,
        /// The transport error.
        reason: String,
    },
    /// PuppetDB answered with an HTTP error (a PQL syntax error is a 400).
    #[error("PuppetDB at {url} refused pql query {query:?}: HTTP {status}: {body}")]
    Status {
        /// The PuppetDB URL.
        url: String,
        /// The PQL query.
        query: String,
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The body was not a JSON array.
    #[error(
        "PuppetDB at {url} answered pql query {query:?} with something that is not a JSON list: {body}"
    )]
    NotAList {
        /// The PuppetDB URL.
        url: String,
        /// The PQL query.
        query: String,
        /// The start of the response body.
        body: String,
    },
    /// A row that is neither a string nor an object with a `certname`.
    #[error(
        "pql query {query:?} returned a row that is not a certname (a string or an object with a certname field): {row}; select certnames, e.g. nodes[certname] {{ ... }}"
    )]
    NotCertnames {
        /// The PQL query.
        query: String,
        /// The offending row (shortened).
        row: String,
    },
}

/// A PuppetDB query client for one run; the HTTP client is built on first use.
#[derive(Debug, Default)]
pub struct PuppetDb {
    settings: PuppetDbSettings,
    client: OnceCell<reqwest::Client>,
}

impl PuppetDb {
    /// A client that connects on first query.
    pub fn new(settings: PuppetDbSettings) -> Self {
        Self {
            settings,
            client: OnceCell::new(),
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &PuppetDbSettings {
        &self.settings
    }

    /// Runs a PQL query and returns the certnames in PuppetDB's order.
    pub async fn certnames(&self, query: &str) -> Result<Vec<String>, PuppetDbError> {
        let url = &self.settings.url;
        let client = self
            .client
            .get_or_try_init(|| async { build_client(&self.settings) })
            .await?;
        let endpoint = format!("{url}/pdb/query/v4");
        tracing::debug!(url = %endpoint, query, "pql query");
        let response = client
            .post(&endpoint)
            .json(&serde_json::json!({ "query": query }))
            .send()
            .await
            .map_err(|e| PuppetDbError::Unreachable {
                url: url.clone(),
                origin: self.settings.source,
                query: query.to_string(),
                reason: error_chain(&e),
            })?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| PuppetDbError::Unreachable {
                url: url.clone(),
                origin: self.settings.source,
                query: query.to_string(),
                reason: error_chain(&e),
            })?;
        if !status.is_success() {
            return Err(PuppetDbError::Status {
                url: url.clone(),
                query: query.to_string(),
                status: status.as_u16(),
                body: quote(body.trim()),
            });
        }
        let rows = match serde_json::from_str::<Value>(&body) {
            Ok(Value::Array(rows)) => rows,
            Ok(_) | Err(_) => {
                return Err(PuppetDbError::NotAList {
                    url: url.clone(),
                    query: query.to_string(),
                    body: quote(body.trim()),
                });
            }
        };
        let names = certnames_of(query, &rows)?;
        tracing::debug!(query, rows = rows.len(), "pql query answered");
        Ok(names)
    }
}

/// Certnames from result rows: strings, or objects with a string `certname`.
pub(crate) fn certnames_of(query: &str, rows: &[Value]) -> Result<Vec<String>, PuppetDbError> {
    rows.iter()
        .map(|row| match row {
            Value::String(name) => Ok(name.clone()),
            Value::Object(fields) => match fields.get("certname") {
                Some(Value::String(name)) => Ok(name.clone()),
                Some(_) | None => Err(not_certname(query, row)),
            },
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::Array(_) => {
                Err(not_certname(query, row))
            }
        })
        .collect()
}

fn not_certname(query: &str, row: &Value) -> PuppetDbError {
    PuppetDbError::NotCertnames {
        query: query.to_string(),
        row: quote(&row.to_string()),
    }
}

/// The first [`QUOTE_LIMIT`] characters of `text`.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// An error with its causes (reqwest's own message is only "error sending request").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ")
}

fn build_client(settings: &PuppetDbSettings) -> Result<reqwest::Client, PuppetDbError> {
    let url = &settings.url;
    let mut builder = reqwest::Client::builder()
        .timeout(QUERY_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(crate::task::USER_AGENT);
    if url.starts_with("https://") {
        let tls = &settings.tls;
        if let Some(ca) = &tls.ca {
            let pem = read(ca, "CA file", url)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| tls_error("CA file", ca, url, e.to_string()))?;
            if certs.is_empty() {
                return Err(tls_error("CA file", ca, url, "no certificate in it".into()));
            }
            builder = builder.tls_certs_only(certs);
        }
        if let (Some(cert), Some(key)) = (&tls.certificate, &tls.key) {
            let mut pem = read(cert, "client certificate", url)?;
            pem.push(b'\n');
            pem.extend(read(key, "client key", url)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| tls_error("client certificate", cert, url, e.to_string()))?;
            builder = builder.identity(identity);
        }
    }
    builder.build().map_err(|e| PuppetDbError::Client {
        url: url.clone(),
        reason: error_chain(&e),
    })
}

fn read(path: &Path, what: &'static str, url: &str) -> Result<Vec<u8>, PuppetDbError> {
    std::fs::read(path).map_err(|e| tls_error(what, path, url, e.to_string()))
}

fn tls_error(what: &'static str, path: &Path, url: &str, reason: String) -> PuppetDbError {
    PuppetDbError::Tls {
        what,
        path: path.display().to_string(),
        url: url.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_become_certnames() {
        let rows = vec![json!("a.example"), json!({"certname": "b.example", "x": 1})];
        assert_eq!(
            certnames_of("q", &rows).expect("ok"),
            vec!["a.example", "b.example"]
        );
        let err = certnames_of("facts[name] {}", &[json!({"name": "role"})]).expect_err("shape");
        assert_eq!(
            err.to_string(),
            "pql query \"facts[name] {}\" returned a row that is not a certname (a string or an object with a certname field): {\"name\":\"role\"}; select certnames, e.g. nodes[certname] { ... }"
        );
        assert!(certnames_of("q", &[json!({"certname": 1})]).is_err());
        assert!(certnames_of("q", &[json!(3)]).is_err());
        assert_eq!(quote(&"x".repeat(400)).len(), QUOTE_LIMIT + 3);
    }
}
