//! The servers a fleet connects to, and how each connection picks the next one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::Error;

/// How a connection picks a server from the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// A random server first, then the others: the NATS and Choria default.
    #[default]
    Random,
    /// One pool-wide cursor: connections are spread evenly over the servers, at connect time and
    /// after failures (dead servers are skipped by the failed attempt).
    RoundRobin,
    /// The first reachable server in list order. A connection that failed over stays where it
    /// is and goes back to the first server only on its next reconnect.
    Ordered,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [Strategy::Random, Strategy::RoundRobin, Strategy::Ordered];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Random => "random",
            Strategy::RoundRobin => "round-robin",
            Strategy::Ordered => "ordered",
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Strategy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Strategy, Error> {
        Strategy::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::Strategy(s.to_owned()))
    }
}

/// One server of the pool.
#[derive(Debug, PartialEq, Eq)]
pub struct Server {
    /// `nats://host:port` (or `tls://`), the key of per-server counters.
    pub url: Arc<str>,
    pub host: String,
    pub port: u16,
    /// Learned from a server's INFO `connect_urls`, not configured.
    pub discovered: bool,
    /// Credentials given in the URL (`nats://user:pass@host:port`).
    pub(crate) user: Option<(String, String)>,
}

impl Server {
    /// Parses `nats://[user:pass@]host[:port]`, `tls://...` or `host[:port]` (port 4222).
    pub fn parse(url: &str) -> Result<Server, Error> {
        let err = |reason: &str| Error::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = url.trim();
        let (scheme, rest) = match trimmed.split_once("://") {
            Some((s, r)) => (s, r),
            None => ("nats", trimmed),
        };
        if !matches!(scheme, "nats" | "tls") {
            return Err(err("the scheme must be nats:// or tls://"));
        }
        let rest = rest.trim_end_matches('/');
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((cred, hp)) => {
                let (u, p) = cred.split_once(':').unwrap_or((cred, ""));
                (Some((u.to_owned(), p.to_owned())), hp)
            }
            None => (None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| err("unclosed '['"))?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(err("no host"));
        }
        if host.contains(['/', '?', ' ']) {
            return Err(err("a server URL has no path or query"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| err("the port is not a number 0-65535"))?,
            None => 4222,
        };
        let shown_host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Ok(Server {
            url: format!("{scheme}://{shown_host}:{port}").into(),
            host: host.to_owned(),
            port,
            discovered: false,
            user,
        })
    }
}

/// The servers of one fleet, shared by all its connections.
#[derive(Debug)]
pub struct Pool {
    strategy: Strategy,
    servers: RwLock<Vec<Arc<Server>>>,
    cursor: AtomicUsize,
}

impl Pool {
    pub fn new(urls: &[String], strategy: Strategy) -> Result<Pool, Error> {
        let mut servers: Vec<Arc<Server>> = Vec::new();
        for u in urls {
            let s = Server::parse(u)?;
            if !servers.iter().any(|o| o.host == s.host && o.port == s.port) {
                servers.push(Arc::new(s));
            }
        }
        if servers.is_empty() {
            return Err(Error::NoServers);
        }
        Ok(Pool {
            strategy,
            servers: RwLock::new(servers),
            cursor: AtomicUsize::new(0),
        })
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Every server, configured first, then discovered, in order.
    pub fn servers(&self) -> Vec<Arc<Server>> {
        match self.servers.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn len(&self) -> usize {
        match self.servers.read() {
            Ok(s) => s.len(),
            Err(p) => p.into_inner().len(),
        }
    }

    fn get(&self, i: usize) -> Arc<Server> {
        let s = match self.servers.read() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        Arc::clone(&s[i % s.len()])
    }

    /// Adds the servers of an INFO `connect_urls` that are not in the pool yet.
    pub(crate) fn discover(&self, urls: &[String], tls: bool) {
        let parsed: Vec<Server> = urls
            .iter()
            .filter_map(|u| {
                let u = if u.contains("://") {
                    u.clone()
                } else if tls {
                    format!("tls://{u}")
                } else {
                    format!("nats://{u}")
                };
                Server::parse(&u).ok()
            })
            .collect();
        let known = |list: &[Arc<Server>], s: &Server| {
            list.iter().any(|o| o.host == s.host && o.port == s.port)
        };
        {
            let list = match self.servers.read() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            if parsed.iter().all(|s| known(&list, s)) {
                return;
            }
        }
        let mut list = match self.servers.write() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        for mut s in parsed {
            if !known(&list, &s) {
                tracing::debug!(server = %s.url, "discovered a cluster member");
                s.discovered = true;
                list.push(Arc::new(s));
            }
        }
    }
}

/// Where one connection is in its walk over the pool.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// Attempts since the last successful connection.
    attempts: u32,
    /// Full passes over the pool since the last successful connection.
    cycles: u32,
    start: usize,
}

impl Cursor {
    /// The server for the next attempt.
    pub(crate) fn next(&mut self, pool: &Pool) -> Arc<Server> {
        let len = pool.len().max(1);
        let i = match pool.strategy {
            Strategy::Ordered => self.attempts as usize % len,
            Strategy::RoundRobin => pool.cursor.fetch_add(1, Ordering::Relaxed),
            Strategy::Random => {
                if (self.attempts as usize).is_multiple_of(len) {
                    use rand::RngExt as _;
                    self.start = rand::rng().random_range(0..len);
                }
                self.start + self.attempts as usize % len
            }
        };
        self.attempts = self.attempts.saturating_add(1);
        pool.get(i)
    }

    /// After a failed attempt: how long to wait before the next one. Zero while the current pass
    /// over the pool is not complete; after each full pass, exponential backoff from 100 ms with
    /// full jitter, bounded by `max`.
    pub(crate) fn failed(&mut self, pool: &Pool, max: Duration) -> Duration {
        let len = pool.len().max(1) as u32;
        if !self.attempts.is_multiple_of(len) {
            return Duration::ZERO;
        }
        self.cycles = self.cycles.saturating_add(1);
        backoff(self.cycles, max)
    }

    /// After a successful connection: the next failure starts a new walk (for `ordered`, from the
    /// first server again).
    pub(crate) fn connected(&mut self) {
        self.attempts = 0;
        self.cycles = 0;
    }
}

/// Full-jitter exponential backoff: a random delay between zero and `min(max, 100 ms · 2^(n-1))`.
pub fn backoff(n: u32, max: Duration) -> Duration {
    use rand::RngExt as _;
    let exp = n.saturating_sub(1).min(20);
    let ceiling = Duration::from_millis(100u64 << exp).min(max);
    let ms = ceiling.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let s = Server::parse("nats://u:p@127.0.0.1:4333").unwrap();
        assert_eq!(&*s.url, "nats://127.0.0.1:4333");
        assert_eq!(s.user, Some(("u".into(), "p".into())));
        assert_eq!(Server::parse("localhost").unwrap().port, 4222);
        assert_eq!(
            &*Server::parse("tls://[::1]:5").unwrap().url,
            "tls://[::1]:5"
        );
        assert!(Server::parse("http://x:1").is_err());
        assert!(Server::parse("nats://x:99999").is_err());
        assert!(Server::parse("nats://:1").is_err());
    }

    fn pool(n: usize, strategy: Strategy) -> Pool {
        let urls: Vec<String> = (0..n)
            .map(|i| format!("nats://127.0.0.1:{}", 5000 + i))
            .collect();
        Pool::new(&urls, strategy).unwrap()
    }

    #[test]
    fn ordered_walks_in_order_and_restarts_after_a_connection() {
        let p = pool(3, Strategy::Ordered);
        let mut c = Cursor::default();
        let ports: Vec<u16> = (0..4).map(|_| c.next(&p).port).collect();
        assert_eq!(ports, [5000, 5001, 5002, 5000]);
        c.connected();
        assert_eq!(c.next(&p).port, 5000);
    }

    #[test]
    fn round_robin_is_pool_wide() {
        let p = pool(3, Strategy::RoundRobin);
        let mut counts = [0; 3];
        for _ in 0..30 {
            let mut c = Cursor::default();
            counts[(c.next(&p).port - 5000) as usize] += 1;
        }
        assert_eq!(counts, [10, 10, 10]);
    }

    #[test]
    fn random_visits_every_server_in_one_pass() {
        let p = pool(4, Strategy::Random);
        let mut c = Cursor::default();
        let mut ports: Vec<u16> = (0..4).map(|_| c.next(&p).port).collect();
        ports.sort_unstable();
        assert_eq!(ports, [5000, 5001, 5002, 5003]);
    }

    #[test]
    fn backoff_waits_only_after_a_full_pass_and_is_bounded() {
        let p = pool(2, Strategy::Ordered);
        let mut c = Cursor::default();
        c.next(&p);
        assert_eq!(c.failed(&p, Duration::from_secs(20)), Duration::ZERO);
        c.next(&p);
        assert!(c.failed(&p, Duration::from_secs(20)) <= Duration::from_millis(100));
        for n in 1..40 {
            assert!(backoff(n, Duration::from_secs(20)) <= Duration::from_secs(20));
        }
    }

    #[test]
    fn discovered_servers_join_the_pool_once() {
        let p = pool(1, Strategy::Random);
        p.discover(&["127.0.0.1:6000".into(), "127.0.0.1:5000".into()], false);
        p.discover(&["127.0.0.1:6000".into()], false);
        let s = p.servers();
        assert_eq!(s.len(), 2);
        assert!(s[1].discovered);
        assert_eq!(&*s[1].url, "nats://127.0.0.1:6000");
    }
}
