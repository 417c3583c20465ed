//! Operating-system limits that decide how many instances one process can run.
//!
//! Each instance holds one socket, so the open-file limit caps the fleet. The process raises its
//! soft limit to the hard limit (Rust does not do this by itself, unlike Go) and refuses, before
//! connecting anything, an `--instances` that cannot fit. Each (source address, broker address)
//! pair also has only the ephemeral port range to draw from; `--bind` spreads instances over
//! several source addresses.

use rustix::process::{Resource, getrlimit, setrlimit};

/// File descriptors kept free for the HTTP listener, logs, the private nats-server's pipes and
/// the runtime.
pub const RESERVED_FDS: u64 = 64;

/// Most worker processes one supervised fleet starts on one machine.
pub const MAX_WORKERS: u32 = 32;

/// Why the requested fleet does not fit.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error(
        "--instances {instances} needs {workers} worker processes of at most {per_process} instances, but one machine runs at most {max} (about {max_instances} instances); lower --instances or spread the fleet over several hosts (docs/ec2-50k.md)"
    )]
    Workers {
        instances: u64,
        workers: u32,
        per_process: u64,
        max: u32,
        max_instances: u64,
    },
    #[error(
        "--instances {instances} needs about {needed} open files, but this process may open at most {limit} (the hard limit); lower --instances to {max} or run several emulator processes (and raise `ulimit -Hn` where you are allowed to)"
    )]
    Files {
        instances: u64,
        needed: u64,
        limit: u64,
        max: u64,
    },
    #[error(
        "--instances {instances} would need {per_source} connections from one source address to one broker address, but the ephemeral port range has only {ports} ports; add source addresses with --bind (e.g. --bind 127.0.0.2-127.0.0.{suggest}) or more --server addresses"
    )]
    Ports {
        instances: u64,
        per_source: u64,
        ports: u64,
        suggest: u64,
    },
}

/// Raises the soft open-file limit to the hard limit and returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let current = getrlimit(Resource::Nofile);
    let Some(hard) = current.maximum else {
        // Unlimited hard limit: take a generous, kernel-accepted value.
        let wanted = rustix::process::Rlimit {
            current: Some(1 << 20),
            maximum: None,
        };
        let _ = setrlimit(Resource::Nofile, wanted);
        return getrlimit(Resource::Nofile).current.unwrap_or(1 << 20);
    };
    if current.current != Some(hard) {
        let wanted = rustix::process::Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        };
        if let Err(e) = setrlimit(Resource::Nofile, wanted) {
            tracing::warn!(error = %e, "could not raise the open-file soft limit");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(hard)
}

/// The size of the kernel's ephemeral port range.
pub fn ephemeral_ports() -> u64 {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut parts = text
        .split_whitespace()
        .filter_map(|p| p.parse::<u64>().ok());
    match (parts.next(), parts.next()) {
        (Some(lo), Some(hi)) if hi >= lo => hi - lo + 1,
        _ => 28_232,
    }
}

/// Connections one loopback source address comfortably carries to one broker address.
///
/// Linux hands out even ports to `connect()` and odd ones to `bind()`, so once about half of the
/// ephemeral range is in use each new connection has to search for a port and the ramp slows
/// down sharply (measured: 14,000 connections in 2.3 s, 19,000 in 11 s from one address).
/// Staying at 40 % of the range per address keeps every connection cheap.
pub fn comfortable_per_source(ports: u64) -> u64 {
    (ports * 2 / 5).max(1)
}

/// Source addresses to spread `instances` over when every broker is on loopback and the user
/// gave no `--bind`: `127.0.0.1`, `127.0.0.2`, ... (the whole 127.0.0.0/8 is local on Linux).
pub fn auto_loopback_sources(instances: u64, ports: u64) -> Vec<std::net::IpAddr> {
    let per = comfortable_per_source(ports);
    if instances <= per {
        return Vec::new();
    }
    let count = instances.div_ceil(per).min(254);
    (1..=count)
        .map(|i| std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, i as u8)))
        .collect()
}

/// True when `url` (`nats://host:port`) names a loopback host.
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks that `instances` fit the open-file limit and the port budget.
pub fn check_fit(
    instances: u64,
    nofile: u64,
    source_addresses: u64,
    broker_addresses: u64,
    ports: u64,
) -> Result<(), FitError> {
    let needed = instances + RESERVED_FDS;
    if needed > nofile {
        return Err(FitError::Files {
            instances,
            needed,
            limit: nofile,
            max: nofile.saturating_sub(RESERVED_FDS),
        });
    }
    let pairs = source_addresses.max(1) * broker_addresses.max(1);
    let per_source = instances.div_ceil(pairs);
    if per_source > ports {
        let sources_needed = instances.div_ceil(ports * broker_addresses.max(1));
        return Err(FitError::Ports {
            instances,
            per_source,
            ports,
            suggest: (1 + sources_needed).min(254),
        });
    }
    Ok(())
}

/// Sends `signal` to process `pid`, ignoring errors (the process may be gone).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_checks_files_and_ports() {
        assert!(check_fit(19_000, 20_000, 1, 1, 28_232).is_ok());
        let err = check_fit(19_990, 20_000, 1, 1, 28_232).unwrap_err();
        assert!(
            err.to_string().contains("lower --instances to 19936"),
            "{err}"
        );
        let err = check_fit(50_000, 100_000, 1, 1, 28_232).unwrap_err();
        assert!(matches!(err, FitError::Ports { .. }), "{err}");
        assert!(check_fit(50_000, 100_000, 2, 1, 28_232).is_ok());
    }

    #[test]
    fn loopback_fleets_are_spread_over_source_addresses() {
        assert!(auto_loopback_sources(10_000, 28_232).is_empty());
        let sources = auto_loopback_sources(19_000, 28_232);
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[1].to_string(), "127.0.0.2");
        assert!(is_loopback_url("nats://127.0.0.1:4222"));
        assert!(is_loopback_url("nats://localhost:4222"));
        assert!(!is_loopback_url("nats://10.0.0.1:4222"));
    }

    #[test]
    fn raising_never_lowers() {
        let before = getrlimit(Resource::Nofile).current.unwrap_or(0);
        assert!(raise_nofile() >= before);
    }
}
