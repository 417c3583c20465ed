//! Shared HTTP clients for webhook, slack and graphite tasks (created on first use, because
//! building a TLS client is comparatively slow).

use std::sync::OnceLock;
use std::time::Duration;

use super::TaskError;

/// Header value sent as `User-Agent`.
pub(crate) const USER_AGENT: &str = "Choria Playbooks http://choria.io";

/// Lazily built clients: one verifying TLS certificates and one not.
#[derive(Default)]
pub(crate) struct HttpClients {
    verify: OnceLock<reqwest::Client>,
    insecure: OnceLock<reqwest::Client>,
}

impl HttpClients {
    pub(crate) fn get(&self, verify_ssl: bool) -> Result<&reqwest::Client, TaskError> {
        let cell = if verify_ssl {
            &self.verify
        } else {
            &self.insecure
        };
        if let Some(c) = cell.get() {
            return Ok(c);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .tls_danger_accept_invalid_certs(!verify_ssl)
            .build()
            .map_err(|error| TaskError::HttpClient { error })?;
        Ok(cell.get_or_init(|| client))
    }
}
