//! Where PuppetDB is and which TLS files reach it, resolved once before a run (stage
//! **compile**, beside the broker settings).
//!
//! URL, first match wins: the `--puppetdb URL` flag; the Choria configuration file's
//! `plugin.choria.puppetdb_host` / `plugin.choria.puppetdb_port` (https, port 8081 unless
//! given); the `CHORIA_PUPPETDB_URL` environment variable; `https://puppet:8081`. A value
//! without a scheme (`host:port`) means https; `http://` is allowed. There is no SRV lookup.
//!
//! TLS, used for https URLs only, follows Choria's security provider
//! (`plugin.security.provider`): `file` reads `plugin.security.file.ca`, `.certificate` and
//! `.key`; `puppet` (the default) reads `<ssldir>/certs/ca.pem`, `<ssldir>/certs/<certname>.pem`
//! and `<ssldir>/private_keys/<certname>.pem` where they exist, with `plugin.choria.ssldir`
//! (default `/etc/puppetlabs/puppet/ssl` for root, `~/.puppetlabs/etc/puppet/ssl` otherwise)
//! and the certname from `MCOLLECTIVE_CERTNAME`, else `identity` or the host name for root,
//! else `<user>.mcollective`.

use std::path::{Path, PathBuf};

use agents::ChoriaConfig;

/// The URL used when nothing is configured.
pub const DEFAULT_URL: &str = "https://puppet:8081";

/// The environment variable holding a PuppetDB URL.
pub const ENV_URL: &str = "CHORIA_PUPPETDB_URL";

/// Choria's default PuppetDB port.
pub const DEFAULT_PORT: u16 = 8081;

/// Where the URL came from (shown in errors, so that a user knows what to change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UrlSource {
    /// `--puppetdb`.
    Flag,
    /// `plugin.choria.puppetdb_host` / `_port` in the configuration file.
    Config,
    /// `CHORIA_PUPPETDB_URL`.
    Environment,
    /// [`DEFAULT_URL`].
    #[default]
    Default,
}

impl UrlSource {
    /// How the source is named in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Flag => "--puppetdb",
            Self::Config => "plugin.choria.puppetdb_host/port",
            Self::Environment => ENV_URL,
            Self::Default => "the default",
        }
    }
}

/// PEM files for https (each optional: no CA means the system roots, no certificate means no
/// client certificate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificates to trust instead of the system roots.
    pub ca: Option<PathBuf>,
    /// The client certificate.
    pub certificate: Option<PathBuf>,
    /// The client certificate's private key.
    pub key: Option<PathBuf>,
}

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A URL that is neither `http(s)://host[:port]` nor `host[:port]`.
    #[error("PuppetDB URL {url:?} from {} is not http(s)://HOST[:PORT] or HOST[:PORT]", origin.describe())]
    BadUrl {
        /// The value as given.
        url: String,
        /// Where it came from.
        origin: UrlSource,
    },
    /// `plugin.choria.puppetdb_port` is not a port number.
    #[error("plugin.choria.puppetdb_port = {value:?} is not a port number")]
    BadPort {
        /// The value as given.
        value: String,
    },
    /// `plugin.security.file.certificate` without `.key` or the reverse.
    #[error("plugin.security.file.certificate and plugin.security.file.key must be given together")]
    HalfIdentity,
}

/// Where PuppetDB is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PuppetDbSettings {
    /// Base URL without a trailing slash, e.g. `https://puppet:8081`.
    pub url: String,
    /// Where the URL came from.
    pub source: UrlSource,
    /// Files for https.
    pub tls: TlsFiles,
}

impl Default for PuppetDbSettings {
    fn default() -> Self {
        Self {
            url: DEFAULT_URL.to_string(),
            source: UrlSource::Default,
            tls: TlsFiles::default(),
        }
    }
}

impl PuppetDbSettings {
    /// Resolves the URL (flag, config file, environment, default) and the TLS files.
    pub fn resolve(
        flag: Option<&str>,
        config: &ChoriaConfig,
        env: Option<&str>,
    ) -> Result<Self, SettingsError> {
        let host = config.get("plugin.choria.puppetdb_host");
        let port = config.get("plugin.choria.puppetdb_port");
        let (url, source) = if let Some(flag) = flag {
            (normalise(flag, UrlSource::Flag)?, UrlSource::Flag)
        } else if host.is_some() || port.is_some() {
            let port = match port {
                Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    SettingsError::BadPort {
                        value: p.to_string(),
                    }
                })?,
                None => DEFAULT_PORT,
            };
            let host = host.unwrap_or("puppet");
            (
                normalise(&format!("https://{host}:{port}"), UrlSource::Config)?,
                UrlSource::Config,
            )
        } else if let Some(env) = env.map(str::trim).filter(|e| !e.is_empty()) {
            (
                normalise(env, UrlSource::Environment)?,
                UrlSource::Environment,
            )
        } else {
            (DEFAULT_URL.to_string(), UrlSource::Default)
        };
        Ok(Self {
            url,
            source,
            tls: tls_files(config)?,
        })
    }
}

/// `host[:port]` → `https://host[:port]`; checks the scheme and that a host is present.
fn normalise(raw: &str, source: UrlSource) -> Result<String, SettingsError> {
    let raw = raw.trim().trim_end_matches('/');
    let bad = || SettingsError::BadUrl {
        url: raw.to_string(),
        origin: source,
    };
    let url = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("https://{raw}")
    };
    let parsed = reqwest::Url::parse(&url).map_err(|_| bad())?;
    let scheme_ok = matches!(parsed.scheme(), "http" | "https");
    let path_ok = parsed.path().is_empty() || parsed.path() == "/";
    if !scheme_ok || !path_ok || parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(url)
}

/// The TLS files of Choria's security provider.
fn tls_files(config: &ChoriaConfig) -> Result<TlsFiles, SettingsError> {
    let provider = config.get("plugin.security.provider").unwrap_or("puppet");
    if provider == "file" {
        let path = |key: &str| config.get(key).map(expand_home);
        let files = TlsFiles {
            ca: path("plugin.security.file.ca"),
            certificate: path("plugin.security.file.certificate"),
            key: path("plugin.security.file.key"),
        };
        if files.certificate.is_some() != files.key.is_some() {
            return Err(SettingsError::HalfIdentity);
        }
        return Ok(files);
    }
    let root = is_root();
    let ssldir = match config.get("plugin.choria.ssldir") {
        Some(dir) => expand_home(dir),
        None if root => PathBuf::from("/etc/puppetlabs/puppet/ssl"),
        None => expand_home("~/.puppetlabs/etc/puppet/ssl"),
    };
    let certname = std::env::var("MCOLLECTIVE_CERTNAME")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            if root {
                config.get("identity").map(str::to_string).or_else(hostname)
            } else {
                std::env::var("USER")
                    .ok()
                    .map(|u| format!("{u}.mcollective"))
            }
        });
    let existing = |p: PathBuf| p.is_file().then_some(p);
    let (certificate, key) = match &certname {
        Some(name) => {
            let cert = existing(ssldir.join("certs").join(format!("{name}.pem")));
            let key = existing(ssldir.join("private_keys").join(format!("{name}.pem")));
            match (cert, key) {
                (Some(c), Some(k)) => (Some(c), Some(k)),
                _ => (None, None),
            }
        }
        None => (None, None),
    };
    Ok(TlsFiles {
        ca: existing(ssldir.join("certs").join("ca.pem")),
        certificate,
        key,
    })
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> ChoriaConfig {
        ChoriaConfig::parse(text, Path::new("client.conf")).expect("valid config")
    }

    #[test]
    fn the_url_comes_from_flag_then_config_then_environment_then_default() {
        let cfg = config("plugin.choria.puppetdb_host = pdb.example.net\n");
        let env = Some("http://env.example.net:8080");
        let s = PuppetDbSettings::resolve(Some("flag.example.net:9000"), &cfg, env).expect("ok");
        assert_eq!(
            (s.url.as_str(), s.source),
            ("https://flag.example.net:9000", UrlSource::Flag)
        );
        let s = PuppetDbSettings::resolve(None, &cfg, env).expect("ok");
        assert_eq!(
            (s.url.as_str(), s.source),
            ("https://pdb.example.net:8081", UrlSource::Config)
        );
        let ported =
            config("plugin.choria.puppetdb_host = pdb\nplugin.choria.puppetdb_port = 8443\n");
        let s = PuppetDbSettings::resolve(None, &ported, env).expect("ok");
        assert_eq!(s.url, "https://pdb:8443");
        let empty = ChoriaConfig::default();
        let s = PuppetDbSettings::resolve(None, &empty, env).expect("ok");
        assert_eq!(
            (s.url.as_str(), s.source),
            ("http://env.example.net:8080", UrlSource::Environment)
        );
        let s = PuppetDbSettings::resolve(None, &empty, Some(" ")).expect("ok");
        assert_eq!(
            (s.url.as_str(), s.source),
            (DEFAULT_URL, UrlSource::Default)
        );
    }

    #[test]
    fn bad_values_are_named() {
        let empty = ChoriaConfig::default();
        let err = PuppetDbSettings::resolve(Some("ftp://x"), &empty, None).expect_err("scheme");
        assert_eq!(
            err.to_string(),
            "PuppetDB URL \"ftp://x\" from --puppetdb is not http(s)://HOST[:PORT] or HOST[:PORT]"
        );
        assert!(PuppetDbSettings::resolve(Some("http://x/pdb"), &empty, None).is_err());
        let cfg = config("plugin.choria.puppetdb_port = eighty\n");
        let err = PuppetDbSettings::resolve(None, &cfg, None).expect_err("port");
        assert_eq!(
            err.to_string(),
            "plugin.choria.puppetdb_port = \"eighty\" is not a port number"
        );
    }

    #[test]
    fn tls_files_follow_the_security_provider() {
        let cfg = config(
            "plugin.security.provider = file\nplugin.security.file.ca = /pki/ca.pem\n\
             plugin.security.file.certificate = /pki/me.pem\nplugin.security.file.key = /pki/me.key\n",
        );
        let s = PuppetDbSettings::resolve(None, &cfg, None).expect("ok");
        assert_eq!(s.tls.ca.as_deref(), Some(Path::new("/pki/ca.pem")));
        assert_eq!(s.tls.certificate.as_deref(), Some(Path::new("/pki/me.pem")));
        assert_eq!(s.tls.key.as_deref(), Some(Path::new("/pki/me.key")));
        let half = config("plugin.security.provider = file\nplugin.security.file.key = /k\n");
        assert_eq!(
            PuppetDbSettings::resolve(None, &half, None).expect_err("half"),
            SettingsError::HalfIdentity
        );
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir_all(dir.path().join("certs")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("private_keys")).expect("mkdir");
        std::fs::write(dir.path().join("certs/ca.pem"), "ca").expect("write");
        std::fs::write(dir.path().join("certs/n1.pem"), "cert").expect("write");
        std::fs::write(dir.path().join("private_keys/n1.pem"), "key").expect("write");
        let puppet = config(&format!(
            "plugin.choria.ssldir = {}\nidentity = n1\n",
            dir.path().display()
        ));
        let s = PuppetDbSettings::resolve(None, &puppet, None).expect("ok");
        assert_eq!(s.tls.ca, Some(dir.path().join("certs/ca.pem")));
        if is_root() && std::env::var_os("MCOLLECTIVE_CERTNAME").is_none() {
            assert_eq!(s.tls.certificate, Some(dir.path().join("certs/n1.pem")));
            assert_eq!(s.tls.key, Some(dir.path().join("private_keys/n1.pem")));
        }
    }
}
