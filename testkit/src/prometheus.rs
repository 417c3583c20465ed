//! Prometheus as it is used against `/metrics`: `promtool check metrics` on an exposition text,
//! and a real Prometheus server (2.42, Debian package `prometheus`) scraping targets on loopback.
//!
//! Stages of [`Prometheus::start`]: a free port for the server → a temporary directory holding
//! the generated scrape configuration and the TSDB → `prometheus` started → wait for `/-/ready`
//! → [`Prometheus::query`] through `/api/v1/query` → killed and its directory removed on drop.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::port_for_child;

/// Seconds between scrapes in the generated configuration: short, so that a test sees samples
/// within a few seconds.
pub const SCRAPE_INTERVAL_SECONDS: u64 = 1;

/// Runs `promtool check metrics` on `text`; `Err` holds promtool's complaints (or why it could
/// not run).
pub fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run promtool (scripts/setup installs prometheus): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("cannot write to promtool: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("promtool did not finish: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "promtool check metrics failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A real Prometheus server for one test.
pub struct Prometheus {
    child: Child,
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// The scrape configuration for `targets` (`host:port`, scraped at `/metrics`).
pub fn scrape_config(targets: &[String]) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "global:\n  scrape_interval: {i}s\n  scrape_timeout: {i}s\n  evaluation_interval: {i}s\nscrape_configs:\n  - job_name: fleet\n    metrics_path: /metrics\n    static_configs:\n      - targets: [{}]\n",
        list.join(", "),
        i = SCRAPE_INTERVAL_SECONDS
    )
}

/// A minimal HTTP/1.0 GET: the status line's code, for the readiness check.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// `text` as a URL query value: unreserved characters kept, every other byte `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`) every second; panics with the reason
    /// if it cannot (e.g. `prometheus` is not installed).
    pub fn start(targets: &[String]) -> Prometheus {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(targets) {
                Ok(p) => return p,
                Err(e) => last = e,
            }
        }
        panic!("cannot start prometheus for the test: {last}");
    }

    fn try_start(targets: &[String]) -> Result<Prometheus, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, scrape_config(targets)).map_err(|e| e.to_string())?;
        let port = port_for_child();
        let mut child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run prometheus (scripts/setup installs it): {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("prometheus exited early with {status}"));
            }
            if http_status(port, "/-/ready") == Some(200) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("prometheus was not ready within 30s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .no_proxy()
                .build()
                .map_err(|e| e.to_string())?,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The `data` of an instant query through `/api/v1/query`; `Err` when Prometheus refuses
    /// it or does not answer.
    pub async fn query(&self, expr: &str) -> Result<serde_json::Value, String> {
        let url = format!("{}/api/v1/query?query={}", self.url, percent_encode(expr));
        let body: serde_json::Value = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("GET {url}: not JSON: {e}"))?;
        if body["status"] != "success" {
            return Err(format!("query {expr:?} refused: {body}"));
        }
        Ok(body["data"].clone())
    }

    /// The value of the first sample of an instant query, if it returned any.
    pub async fn query_value(&self, expr: &str) -> Result<Option<f64>, String> {
        let data = self.query(expr).await?;
        Ok(data["result"]
            .as_array()
            .and_then(|r| r.first())
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse().ok()))
    }

    /// Waits until the first sample of `expr` satisfies `accept`, returning it; `Err` with the
    /// last value seen after `limit`.
    pub async fn wait_value(
        &self,
        expr: &str,
        limit: Duration,
        accept: impl Fn(f64) -> bool,
    ) -> Result<f64, String> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = None;
        loop {
            last = self.query_value(expr).await?.or(last);
            if let Some(v) = last
                && accept(v)
            {
                return Ok(v);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("{expr}: last value {last:?} after {limit:?}"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
