//! NATS server addresses as Choria writes them, and where a client finds them.
//!
//! `host:port`, `nats://host:port` and `tls://host:port` are accepted; a bare `host:port` gets
//! `tls://` when TLS is on, else `nats://`. A client resolves its servers from, in this order:
//! command-line flags, a Choria config file (`plugin.choria.middleware_hosts`), the
//! `CHORIA_SERVERS` environment variable, then `NATS_URL`.

use crate::config::ChoriaConfig;

/// A server address that is not `host:port` with an optional `nats://` or `tls://`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid server {0:?}: expected host:port or nats://host:port")]
pub struct BadServer(pub String);

/// Normalises one address to `nats://host:port` or `tls://host:port`.
pub fn normalise(raw: &str, tls: bool) -> Result<String, BadServer> {
    let raw = raw.trim();
    let (scheme, rest) = match raw.split_once("://") {
        Some((scheme @ ("nats" | "tls"), rest)) => (scheme, rest),
        Some(_) => return Err(BadServer(raw.to_owned())),
        None => (if tls { "tls" } else { "nats" }, raw),
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(BadServer(raw.to_owned()));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(BadServer(raw.to_owned()));
    }
    Ok(format!("{scheme}://{host}:{port}"))
}

/// Splits a comma list, dropping empty items.
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Where a client's servers came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flags,
    ConfigFile,
    ChoriaServers,
    NatsUrl,
    /// Nothing was configured anywhere.
    None,
}

/// Resolves a client's servers: flags, then the config file, then `CHORIA_SERVERS`, then
/// `NATS_URL`. Each item may itself be a comma list. Every address is normalised.
pub fn resolve(
    flags: &[String],
    config: &ChoriaConfig,
    tls: bool,
) -> Result<(Vec<String>, Source), BadServer> {
    resolve_with(flags, config, tls, |name| std::env::var(name).ok())
}

/// [`resolve`] with the environment given as a function (for tests).
pub fn resolve_with(
    flags: &[String],
    config: &ChoriaConfig,
    tls: bool,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Vec<String>, Source), BadServer> {
    let env_list = |name: &str| env(name).map(|v| split_list(&v)).filter(|v| !v.is_empty());
    let flag_list: Vec<String> = flags.iter().flat_map(|s| split_list(s)).collect();
    let (raw, source) = if !flag_list.is_empty() {
        (flag_list, Source::Flags)
    } else if let list @ [_, ..] = config.list("plugin.choria.middleware_hosts").as_slice() {
        (list.to_vec(), Source::ConfigFile)
    } else if let Some(v) = env_list("CHORIA_SERVERS") {
        (v, Source::ChoriaServers)
    } else if let Some(v) = env_list("NATS_URL") {
        (v, Source::NatsUrl)
    } else {
        (Vec::new(), Source::None)
    };
    let servers = raw
        .iter()
        .map(|s| normalise(s, tls))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((servers, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn normalises_addresses() {
        assert_eq!(normalise("a:4222", false).unwrap(), "nats://a:4222");
        assert_eq!(normalise("a:4222", true).unwrap(), "tls://a:4222");
        assert_eq!(normalise(" nats://b:1 ", true).unwrap(), "nats://b:1");
        for bad in ["nohost", ":4222", "a:port", "http://a:1", "a:70000"] {
            assert!(normalise(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_then_config_then_environment() {
        let file = ChoriaConfig::parse(
            "plugin.choria.middleware_hosts = c:1, d:2\n",
            Path::new("c.conf"),
        )
        .unwrap();
        let env = |name: &str| match name {
            "CHORIA_SERVERS" => Some("e:3".to_owned()),
            "NATS_URL" => Some("nats://f:4".to_owned()),
            _ => None,
        };
        let (s, src) = resolve_with(&["a:1,b:2".into()], &file, false, env).unwrap();
        assert_eq!(
            (s, src),
            (
                vec!["nats://a:1".into(), "nats://b:2".into()],
                Source::Flags
            )
        );
        let (s, src) = resolve_with(&[], &file, false, env).unwrap();
        assert_eq!(s, vec!["nats://c:1", "nats://d:2"]);
        assert_eq!(src, Source::ConfigFile);
        let empty = ChoriaConfig::default();
        let (s, src) = resolve_with(&[], &empty, false, env).unwrap();
        assert_eq!((s, src), (vec!["nats://e:3".into()], Source::ChoriaServers));
        let (s, src) = resolve_with(&[], &empty, false, |n| {
            (n == "NATS_URL").then(|| "f:4".to_owned())
        })
        .unwrap();
        assert_eq!((s, src), (vec!["nats://f:4".into()], Source::NatsUrl));
        let (s, src) = resolve_with(&[], &empty, false, |_| None).unwrap();
        assert!(s.is_empty());
        assert_eq!(src, Source::None);
        assert!(resolve_with(&["bad".into()], &empty, false, |_| None).is_err());
    }
}
