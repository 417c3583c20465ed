//! State shared by every instance of the fleet: configuration, counters, log limiters, TLS.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agents::{AgentId, Limits};

use crate::config::{Config, TlsConfig};
use crate::stats::Stats;

/// Read-mostly state every instance holds an `Arc` of.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) stats: Stats,
    pub(crate) agent_ids: Vec<AgentId>,
    pub(crate) start_time: i64,
    pub(crate) config_file: String,
    pub(crate) limits: Limits,
    /// The rustls configuration of every connection, when TLS is on.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    /// Limits debug logs of refused messages (garbage on every subject must not flood the log).
    pub(crate) invalid_log: LogLimiter,
    /// Limits warnings about connection problems during a broker outage.
    pub(crate) connect_log: LogLimiter,
    /// The private brokers, for `/debug/vars` (empty with `--server`).
    pub(crate) brokers: std::sync::Mutex<Vec<agents::debug_vars::BrokerInfo>>,
    /// Which instance misbehaves how, and what the faults did.
    pub(crate) faults: crate::faults::Assignment,
    pub(crate) fault_counters: crate::faults::FaultCounters,
    /// The latest error of an initial connection attempt, for the periodic summary line.
    pub(crate) last_connect_error: std::sync::Mutex<Option<String>>,
    /// With `--registration`: the fleet's template and the instances' wake-up slots.
    pub(crate) registration: Option<(
        crate::registration::Registrar,
        Arc<crate::schedule::Schedule>,
    )>,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Result<Shared, TlsError> {
        let tls = config
            .tls
            .as_ref()
            .map(|t| client_config(t).map(Arc::new))
            .transpose()?;
        let agent_ids = AgentId::all(config.agents);
        let registration = config.registration.as_ref().map(|r| {
            (
                crate::registration::Registrar::new(
                    r,
                    &config.name,
                    &config.collectives,
                    &agent_ids,
                    &config.facts,
                ),
                Arc::new(crate::schedule::Schedule::new(config.instances)),
            )
        });
        Ok(Shared {
            registration,
            stats: Stats::new(config.instances, config.agents),
            agent_ids,
            start_time: agents::clock::unix_now(),
            config_file: config
                .config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            limits: Limits::default(),
            tls,
            invalid_log: LogLimiter::new(10),
            connect_log: LogLimiter::new(5),
            last_connect_error: std::sync::Mutex::new(None),
            brokers: std::sync::Mutex::new(Vec::new()),
            faults: crate::faults::Assignment::new(
                &config.faults,
                config.fleet_instances,
                config.seed,
            ),
            fault_counters: crate::faults::FaultCounters::default(),
            config,
        })
    }
}

impl Shared {
    /// Per fault kind: instances of this process that have it and events it caused.
    pub(crate) fn fault_counts(
        &self,
    ) -> std::collections::BTreeMap<String, agents::debug_vars::FaultCounters> {
        let first = self.config.index_offset;
        let instances = self
            .faults
            .counts_in(first..first.saturating_add(self.config.instances));
        crate::faults::KINDS
            .iter()
            .zip(instances.into_iter().zip(self.fault_counters.events()))
            .map(|(kind, (instances, events))| {
                (
                    (*kind).to_owned(),
                    agents::debug_vars::FaultCounters { instances, events },
                )
            })
            .collect()
    }
}

/// Lets at most `per_second` events through each second.
pub(crate) struct LogLimiter {
    per_second: u64,
    /// `second << 20 | count`.
    window: AtomicU64,
}

impl LogLimiter {
    pub(crate) fn new(per_second: u64) -> LogLimiter {
        LogLimiter {
            per_second,
            window: AtomicU64::new(0),
        }
    }

    /// True when this event may be logged.
    pub(crate) fn allow(&self) -> bool {
        let now = agents::clock::unix_now() as u64;
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (second, count) = (current >> 20, current & 0xfffff);
            let next = if second == now {
                if count >= self.per_second {
                    return false;
                }
                current + 1
            } else {
                (now << 20) | 1
            };
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }
}

/// A TLS set-up that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("TLS verification needs a CA certificate")]
    VerifyWithoutCa,
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The rustls configuration of the instances' connections: verified against the CA
/// (`--verify`), or accepting any certificate (the original emulator's `--tls` without
/// `--verify`); with a client certificate when one is given. Always the ring provider.
fn client_config(config: &TlsConfig) -> Result<rustls::ClientConfig, TlsError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    // The measuring client (async-nats) in the same binary builds its configurations from the
    // process-wide provider, and with both ring and aws-lc-rs compiled in (reqwest brings the
    // latter) rustls cannot pick one by itself. An error only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pem = |path: &std::path::Path, e: &dyn std::fmt::Display| TlsError::Pem {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let versions = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match (&config.ca, config.verify) {
        (Some(ca), true) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| pem(ca, &e))? {
                roots.add(cert.map_err(|e| pem(ca, &e))?)?;
            }
            versions.with_root_certificates(roots)
        }
        (None, true) => return Err(TlsError::VerifyWithoutCa),
        (_, false) => versions
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider))),
    };
    match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .map_err(|e| pem(cert, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem(cert, &e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem(key, &e))?;
            Ok(builder.with_client_auth_cert(certs, key)?)
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// Accepts any server certificate: `--tls` without `--verify`.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
