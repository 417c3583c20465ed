//! A real PuppetDB (Debian `puppetdb`, 7.x) backed by a real PostgreSQL, both on free loopback
//! ports with their data in a temporary directory, loaded with a fixed set of nodes.
//!
//! Stages of [`PuppetDb::start`]:
//! 1. **initdb**: a PostgreSQL cluster in `<tmp>/pg/data` (as the `postgres` user when the
//!    tests run as root, since `initdb` refuses root), superuser `puppetdb`, trust auth.
//! 2. **postgres**: listening on 127.0.0.1 and a free port, its unix socket in `<tmp>/pg/sock`;
//!    `psql` creates the `puppetdb` database and the `pg_trgm` extension.
//! 3. **puppetdb**: `java ... puppetlabs.puppetdb.core services` with a generated config
//!    directory (plain HTTP on 127.0.0.1 and a free port; HTTPS on another port with a
//!    generated CA, server certificate and required client certificates, see [`Pki`]; the
//!    database above), waited for until `/status/v1/services/puppetdb-status` says `running`.
//! 4. **load**: `replace facts` (v5) and `replace catalog` (v9) for the [`fixture`] nodes
//!    through the command API, then the query API is polled until every command is stored.
//!
//! Both servers are children tied to this process (`natsproc::process::spawn_tied`, SIGKILL
//! when it dies) in process groups of their own. [`Drop`] stops PuppetDB (SIGTERM), then
//! PostgreSQL (SIGINT, a fast shutdown), then kills what is left of each group. A small
//! clean-up shell, which waits for its stdin to close, removes the temporary directory and
//! PostgreSQL's System V segment even when the test process dies without dropping (the
//! [`PuppetDb::shared`] instance lives in a static and is never dropped).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use natsproc::process::{Signal, spawn_tied};

/// Where the Debian package puts PuppetDB.
pub const PUPPETDB_JAR: &str = "/usr/share/puppetdb/puppetdb.jar";

/// Generous bound for PuppetDB's start-up: about 45 s on a quiet 2-core machine, 160 s at a
/// load average of 14 (see docs/benchmarks.md).
const START_LIMIT: Duration = Duration::from_secs(480);

/// The roles of the fixture nodes, twelve nodes each.
pub const ROLES: [&str; 3] = ["web", "db", "app"];

/// Nodes per role.
pub const NODES_PER_ROLE: u32 = 12;

/// One node loaded into PuppetDB by [`PuppetDb::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureNode {
    /// `web01.example.net` ... `app12.example.net`.
    pub certname: String,
    /// Fact `role` (`web`, `db`, `app`); its catalog has `Class[Role::<Role>]`.
    pub role: &'static str,
    /// Fact `datacenter`: `east` for odd ordinals, `west` for even ones.
    pub datacenter: &'static str,
    /// Fact `ordinal` (an integer, 1 to 12 within the role).
    pub ordinal: u32,
}

/// The 36 nodes every instance holds. Every node has facts `role`, `datacenter`, `ordinal`
/// and `os` (`{"family": "Debian", "release": {"major": "12"}}`), and a catalog with
/// `Class[Main]`, `Class[Profile::Base]`, `Class[Role::<Role>]` and one resource per role:
/// `Package[nginx]` (web), `Service[postgresql]` (db), `File[/etc/app.conf]` (app).
pub fn fixture() -> Vec<FixtureNode> {
    let mut out = Vec::new();
    for role in ROLES {
        for ordinal in 1..=NODES_PER_ROLE {
            out.push(FixtureNode {
                certname: format!("{role}{ordinal:02}.example.net"),
                role,
                datacenter: if ordinal % 2 == 1 { "east" } else { "west" },
                ordinal,
            });
        }
    }
    out
}

/// The certnames of the fixture nodes that `keep` selects, sorted.
pub fn certnames(keep: impl Fn(&FixtureNode) -> bool) -> Vec<String> {
    let mut names: Vec<String> = fixture()
        .into_iter()
        .filter(|n| keep(n))
        .map(|n| n.certname)
        .collect();
    names.sort();
    names
}

/// A running PuppetDB with its PostgreSQL.
pub struct PuppetDb {
    puppetdb: Child,
    postgres: Child,
    cleaner: Option<(Child, ChildStdin)>,
    port: u16,
    ssl_port: u16,
    pki: Pki,
    dir: PathBuf,
    started_in: Duration,
}

/// PEM files of the HTTPS listener: a CA, a server certificate for `127.0.0.1`, and a client
/// certificate (CN `tester.mcollective`) signed by the same CA. PuppetDB requires a client
/// certificate on HTTPS (`client-auth = need`).
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The client certificate.
    pub certificate: PathBuf,
    /// The client certificate's private key (PKCS#8).
    pub key: PathBuf,
    server_certificate: PathBuf,
    server_key: PathBuf,
}

impl Pki {
    fn generate(dir: &Path) -> Result<Pki, String> {
        let err = |e: rcgen::Error| format!("certificate generation: {e}");
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let ca_key = rcgen::KeyPair::generate().map_err(err)?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "testkit PuppetDB CA");
        let ca = ca_params.self_signed(&ca_key).map_err(err)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, cn: &str| -> Result<(String, String), String> {
            let key = rcgen::KeyPair::generate().map_err(err)?;
            let mut params = rcgen::CertificateParams::new(names).map_err(err)?;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            let cert = params.signed_by(&key, &issuer).map_err(err)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let (server, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()], "127.0.0.1")?;
        let (client, client_key) = leaf(vec!["tester.mcollective".into()], "tester.mcollective")?;
        let pki = Pki {
            ca: dir.join("ca.pem"),
            certificate: dir.join("client.pem"),
            key: dir.join("client-key.pem"),
            server_certificate: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
        };
        for (path, text) in [
            (&pki.ca, ca.pem()),
            (&pki.certificate, client),
            (&pki.key, client_key),
            (&pki.server_certificate, server),
            (&pki.server_key, server_key),
        ] {
            std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
        }
        Ok(pki)
    }
}

impl PuppetDb {
    /// One instance per test binary, started on first use (start-up takes tens of seconds).
    /// It is never dropped: its servers die with the process (PDEATHSIG) and the clean-up
    /// shell removes the directory.
    pub fn shared() -> &'static PuppetDb {
        static SHARED: OnceLock<PuppetDb> = OnceLock::new();
        SHARED.get_or_init(PuppetDb::start)
    }

    /// Starts PostgreSQL and PuppetDB and loads the [`fixture`]; panics with the reason and
    /// the end of the servers' logs if it cannot.
    pub fn start() -> PuppetDb {
        match Self::try_start() {
            Ok(pdb) => pdb,
            Err(e) => panic!("cannot start PuppetDB for the test: {e}"),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The HTTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:<ssl port>` (needs [`PuppetDb::pki`]'s CA and client certificate).
    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.ssl_port)
    }

    /// The certificates of the HTTPS listener.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// From the first command to the fixture being queryable.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Runs a PQL query (POST `/pdb/query/v4`) and returns the status and the body.
    pub fn query(&self, pql: &str) -> (u16, String) {
        let body = serde_json::json!({ "query": pql }).to_string();
        http(self.port, "POST", "/pdb/query/v4", Some(&body))
            .unwrap_or_else(|e| panic!("PuppetDB query {pql:?}: {e}"))
    }

    fn try_start() -> Result<PuppetDb, String> {
        let begin = Instant::now();
        if !Path::new(PUPPETDB_JAR).is_file() {
            return Err(format!(
                "{PUPPETDB_JAR} is missing: run scripts/setup (Debian packages postgresql, puppetdb)"
            ));
        }
        let pg_bin = postgres_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("testkit-puppetdb-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?
            .keep();
        let cleaner = start_cleaner(&dir)?;
        // Guards the directory (through the cleaner) until the servers are owned by `PuppetDb`.
        let mut partial = Partial {
            cleaner: Some(cleaner),
            postgres: None,
            java: None,
        };
        let owner = postgres_owner();
        let pg_dir = dir.join("pg");
        for d in [&pg_dir, &pg_dir.join("sock")] {
            std::fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(d, Some(uid), Some(gid))
                    .map_err(|e| format!("chown {}: {e}", d.display()))?;
            }
        }
        // The postgres user must be able to reach its directories.
        set_mode(&dir, 0o755)?;
        let data = pg_dir.join("data");
        let mut initdb = Command::new(pg_bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "puppetdb", "--auth=trust", "-E", "UTF8"])
            .args(["--locale=C.UTF-8", "--no-sync"])
            .stdin(Stdio::null())
            .stdout(log_file(&dir, "initdb.log")?)
            .stderr(log_file(&dir, "initdb.log")?);
        as_owner(&mut initdb, owner);
        let status = initdb.status().map_err(|e| format!("run initdb: {e}"))?;
        if !status.success() {
            return Err(format!(
                "initdb failed ({status}): {}",
                tail(&dir.join("initdb.log"))
            ));
        }

        let pg_port = crate::port_for_child();
        let mut postgres = Command::new(pg_bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(pg_port.to_string())
            .arg("-k")
            .arg(pg_dir.join("sock"))
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .stdin(Stdio::null())
            .stdout(log_file(&dir, "postgres.log")?)
            .stderr(log_file(&dir, "postgres.log")?)
            .process_group(0);
        as_owner(&mut postgres, owner);
        let postgres = spawn_tied(postgres).map_err(|e| format!("run postgres: {e}"))?;
        note_group(&dir, "postgres", &postgres)?;
        partial.postgres = Some(postgres);
        let psql = |database: &str, sql: &str| {
            Command::new(pg_bin.join("psql"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &pg_port.to_string(),
                    "-U",
                    "puppetdb",
                ])
                .args(["-d", database, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
                .stdin(Stdio::null())
                .output()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            partial.check_running(&dir)?;
            match psql("postgres", "CREATE DATABASE puppetdb") {
                Ok(out) if out.status.success() => break,
                Ok(out) if Instant::now() > deadline => {
                    return Err(format!(
                        "PostgreSQL did not accept connections: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                Err(e) => return Err(format!("run psql: {e}")),
                Ok(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        match psql("puppetdb", "CREATE EXTENSION pg_trgm") {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return Err(format!(
                    "CREATE EXTENSION pg_trgm: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Err(e) => return Err(format!("run psql: {e}")),
        }

        let postgres_ready = begin.elapsed();
        let port = crate::port_for_child();
        let ssl_port = crate::port_for_child();
        let pki = Pki::generate(&dir.join("pki"))?;
        let conf = write_config(&dir, pg_port, (port, ssl_port), &pki)?;
        let mut java = Command::new("java");
        java.args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
            .arg("-Djava.security.egd=file:/dev/urandom")
            .args(["-cp", PUPPETDB_JAR, "clojure.main", "-m"])
            .args(["puppetlabs.puppetdb.core", "services", "--config"])
            .arg(&conf)
            .arg("--bootstrap-config")
            .arg(dir.join("bootstrap.cfg"))
            .stdin(Stdio::null())
            .stdout(log_file(&dir, "puppetdb.log")?)
            .stderr(log_file(&dir, "puppetdb.log")?)
            .process_group(0);
        let java = spawn_tied(java).map_err(|e| format!("run java (is a JRE installed?): {e}"))?;
        note_group(&dir, "puppetdb", &java)?;
        partial.java = Some(java);
        let deadline = Instant::now() + START_LIMIT;
        loop {
            partial.check_running(&dir)?;
            let status = http(port, "GET", "/status/v1/services/puppetdb-status", None);
            if let Ok((200, body)) = &status
                && body.contains("\"state\":\"running\"")
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "PuppetDB not running after {START_LIMIT:?} (last answer {status:?}): {}",
                    tail(&dir.join("puppetdb.log"))
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let puppetdb_ready = begin.elapsed();
        load_fixture(port)?;
        let started_in = begin.elapsed();
        eprintln!(
            "testkit: PuppetDB ready on 127.0.0.1:{port} in {:.1} s (PostgreSQL {:.1} s, PuppetDB running {:.1} s, {} nodes loaded {:.1} s)",
            started_in.as_secs_f64(),
            postgres_ready.as_secs_f64(),
            (puppetdb_ready - postgres_ready).as_secs_f64(),
            fixture().len(),
            (started_in - puppetdb_ready).as_secs_f64(),
        );
        let (Some(postgres), Some(java), Some(cleaner)) = (
            partial.postgres.take(),
            partial.java.take(),
            partial.cleaner.take(),
        ) else {
            return Err("lost track of the servers it started".to_string());
        };
        Ok(PuppetDb {
            puppetdb: java,
            postgres,
            cleaner: Some(cleaner),
            port,
            ssl_port,
            pki,
            dir,
            started_in,
        })
    }
}

impl Drop for PuppetDb {
    fn drop(&mut self) {
        stop(&mut self.puppetdb, Signal::TERM, Duration::from_secs(20));
        stop(&mut self.postgres, Signal::INT, Duration::from_secs(10));
        if let Some((mut child, stdin)) = self.cleaner.take() {
            drop(stdin);
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What `try_start` has started so far, stopped if it fails.
struct Partial {
    cleaner: Option<(Child, ChildStdin)>,
    postgres: Option<Child>,
    java: Option<Child>,
}

impl Partial {
    /// An error when a server exited early, with the end of its log.
    fn check_running(&mut self, dir: &Path) -> Result<(), String> {
        for (child, log) in [
            (&mut self.postgres, "postgres.log"),
            (&mut self.java, "puppetdb.log"),
        ] {
            if let Some(child) = child
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "server exited early ({status}), {log}: {}",
                    tail(&dir.join(log))
                ));
            }
        }
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(mut java) = self.java.take() {
            stop(&mut java, Signal::TERM, Duration::from_secs(20));
        }
        if let Some(mut postgres) = self.postgres.take() {
            stop(&mut postgres, Signal::INT, Duration::from_secs(10));
        }
        if let Some((mut child, stdin)) = self.cleaner.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// Records a server's process group for the clean-up shell.
fn note_group(dir: &Path, name: &str, child: &Child) -> Result<(), String> {
    std::fs::write(dir.join(format!("{name}.pgid")), child.id().to_string())
        .map_err(|e| format!("write {name}.pgid: {e}"))
}

/// Signals a server's process group, waits up to `grace`, then kills the group and reaps.
fn stop(child: &mut Child, signal: Signal, grace: Duration) {
    let Ok(pgid) = i32::try_from(child.id()) else {
        return;
    };
    if child.try_wait().ok().flatten().is_none() {
        signal_group(pgid, signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Whatever is left of the group (PostgreSQL's backends, a stuck JVM).
    signal_group(pgid, Signal::KILL);
    let _ = child.kill();
    let _ = child.wait();
}

fn signal_group(pgid: i32, signal: Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// A shell in its own process group that waits for its stdin to close (when the `PuppetDb` is
/// dropped or this process dies, however), then kills what is left of the servers, removes
/// PostgreSQL's System V segment (its id is on line 7 of `postmaster.pid`) and the directory.
fn start_cleaner(dir: &Path) -> Result<(Child, ChildStdin), String> {
    const SCRIPT: &str = r#"cat >/dev/null
dir=$1
for f in "$dir"/*.pgid; do [ -f "$f" ] && kill -KILL -- "-$(cat "$f")" 2>/dev/null; done
pid=$(sed -n 1p "$dir/pg/data/postmaster.pid" 2>/dev/null)
i=0
while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
shm=$(sed -n 7p "$dir/pg/data/postmaster.pid" 2>/dev/null | awk '{print $2}')
[ -n "$shm" ] && ipcrm -m "$shm" 2>/dev/null
rm -rf "$dir"
"#;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("testkit-puppetdb-cleaner")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("run sh: {e}"))?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| "the clean-up shell has no stdin".to_string())?;
    Ok((child, stdin))
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`.
fn postgres_bin() -> Result<PathBuf, String> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("/usr/lib/postgresql: {e} (run scripts/setup)"))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no /usr/lib/postgresql/*/bin/initdb (run scripts/setup)".to_string())
}

/// The `postgres` user's uid and gid when this process runs as root (initdb refuses root).
fn postgres_owner() -> Option<(u32, u32)> {
    let euid = std::fs::metadata("/proc/self").ok()?.uid();
    if euid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    })
}

fn as_owner(command: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .map_err(|e| format!("open {name}: {e}"))
}

/// The last lines of a log, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Writes the bootstrap file and the config directory; returns the directory.
fn write_config(
    dir: &Path,
    pg_port: u16,
    (port, ssl_port): (u16, u16),
    pki: &Pki,
) -> Result<PathBuf, String> {
    let conf = dir.join("conf.d");
    std::fs::create_dir_all(&conf).map_err(|e| format!("mkdir {}: {e}", conf.display()))?;
    let vardir = dir.join("var");
    std::fs::create_dir_all(&vardir).map_err(|e| format!("mkdir {}: {e}", vardir.display()))?;
    let files = [
        (
            dir.join("bootstrap.cfg"),
            "puppetlabs.trapperkeeper.services.webserver.jetty9-service/jetty9-service\n\
             puppetlabs.trapperkeeper.services.webrouting.webrouting-service/webrouting-service\n\
             puppetlabs.trapperkeeper.services.authorization.authorization-service/authorization-service\n\
             puppetlabs.trapperkeeper.services.metrics.metrics-service/metrics-webservice\n\
             puppetlabs.trapperkeeper.services.status.status-service/status-service\n\
             puppetlabs.trapperkeeper.services.scheduler.scheduler-service/scheduler-service\n\
             puppetlabs.puppetdb.cli.services/puppetdb-service\n\
             puppetlabs.puppetdb.command/command-service\n\
             puppetlabs.puppetdb.pdb-routing/maint-mode-service\n\
             puppetlabs.puppetdb.pdb-routing/pdb-routing-service\n\
             puppetlabs.puppetdb.config/config-service\n"
                .to_string(),
        ),
        (
            dir.join("logback.xml"),
            "<configuration>\n  <appender name=\"STDOUT\" class=\"ch.qos.logback.core.ConsoleAppender\">\n    \
             <encoder><pattern>%d %-5p [%c{2}] %m%n</pattern></encoder>\n  </appender>\n  \
             <root level=\"warn\"><appender-ref ref=\"STDOUT\"/></root>\n</configuration>\n"
                .to_string(),
        ),
        (
            conf.join("config.ini"),
            format!(
                "[global]\nvardir = {}\nlogging-config = {}\n\n[command-processing]\nthreads = 1\n\n\
                 [database]\nsubname = //127.0.0.1:{pg_port}/puppetdb\nusername = puppetdb\npassword = unused\n\n\
                 [jetty]\nhost = 127.0.0.1\nport = {port}\nssl-host = 127.0.0.1\nssl-port = {ssl_port}\n\
                 ssl-cert = {}\nssl-key = {}\nssl-ca-cert = {}\nclient-auth = need\n\n\
                 [nrepl]\nenabled = false\n",
                vardir.display(),
                dir.join("logback.xml").display(),
                pki.server_certificate.display(),
                pki.server_key.display(),
                pki.ca.display(),
            ),
        ),
        (
            conf.join("auth.conf"),
            "authorization: {\n  version: 1\n  rules: [\n    {\n      match-request: { path: \"/\", type: path }\n      \
             allow-unauthenticated: true\n      sort-order: 500\n      name: \"testkit: everything\"\n    }\n  ]\n}\n"
                .to_string(),
        ),
    ];
    for (path, text) in files {
        std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(conf)
}

/// Sends `replace facts` and `replace catalog` for every fixture node and waits until the
/// query API sees all of them.
fn load_fixture(port: u16) -> Result<(), String> {
    let nodes = fixture();
    let now = "2026-01-01T00:00:00.000Z";
    for n in &nodes {
        let facts = serde_json::json!({
            "certname": n.certname,
            "environment": "production",
            "producer_timestamp": now,
            "producer": "testkit",
            "values": {
                "role": n.role,
                "datacenter": n.datacenter,
                "ordinal": n.ordinal,
                "os": {"family": "Debian", "release": {"major": "12"}},
            },
        });
        command(port, "replace_facts", 5, &n.certname, &facts)?;
        let role_class = format!("Role::{}{}", n.role[..1].to_uppercase(), &n.role[1..]);
        let own = match n.role {
            "web" => ("Package", "nginx"),
            "db" => ("Service", "postgresql"),
            _ => ("File", "/etc/app.conf"),
        };
        let resources: Vec<serde_json::Value> = [
            ("Class", "Main"),
            ("Class", "Profile::Base"),
            ("Class", role_class.as_str()),
            own,
        ]
        .iter()
        .map(|(kind, title)| {
            serde_json::json!({
                "type": kind,
                "title": title,
                "exported": false,
                // Tags must match `[a-z0-9_][a-z0-9_:.-]*` or the command is rejected.
                "tags": [kind.to_lowercase(), "testkit"],
                "parameters": {},
            })
        })
        .collect();
        let catalog = serde_json::json!({
            "certname": n.certname,
            "version": "1",
            "environment": "production",
            "transaction_uuid": uuid::Uuid::new_v4().to_string(),
            "catalog_uuid": uuid::Uuid::new_v4().to_string(),
            "code_id": null,
            "job_id": null,
            "producer_timestamp": now,
            "producer": "testkit",
            "resources": resources,
            "edges": [],
        });
        command(port, "replace_catalog", 9, &n.certname, &catalog)?;
    }
    let want = nodes.len().to_string();
    let counts = [
        "nodes[count()] { facts_timestamp is not null }",
        "resources[count()] { type = \"Class\" and title = \"Main\" }",
    ];
    let deadline = Instant::now() + Duration::from_secs(120);
    for pql in counts {
        loop {
            let body = serde_json::json!({ "query": pql }).to_string();
            let answer = http(port, "POST", "/pdb/query/v4", Some(&body));
            if let Ok((200, text)) = &answer
                && text.replace(' ', "").contains(&format!("\"count\":{want}"))
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "PuppetDB did not store the fixture: {pql} answered {answer:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

fn command(
    port: u16,
    name: &str,
    version: u32,
    certname: &str,
    payload: &serde_json::Value,
) -> Result<(), String> {
    let path = format!(
        "/pdb/cmd/v1?command={name}&version={version}&certname={certname}&producer-timestamp=2026-01-01T00:00:00.000Z"
    );
    match http(port, "POST", &path, Some(&payload.to_string()))? {
        (200, _) => Ok(()),
        (status, body) => Err(format!("{name} for {certname}: HTTP {status}: {body}")),
    }
}

/// A minimal HTTP/1.0 request (no chunked replies, the server closes the connection), so the
/// helper works with or without an async runtime around it.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP reply: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_string()))
}
