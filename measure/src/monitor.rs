//! What the broker was doing during a measurement: nats-server `/varz` sampled while the
//! requests run (`--broker-monitor`), or the broker lines of an `emulator scrape` that ran
//! alongside (`--scrape-samples`), on the same time axis as the replies.
//!
//! Stages: [`Sampler::start`] when the first request is sent → one `/varz` per monitor URL per
//! `--monitor-interval` → [`Sampler::finish`] when the last request ended → [`BrokerSample`]s
//! (seconds since the first request) → counters turned into rates ([`rates`]) → the report's
//! broker plots.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::error::MeasureError;

/// One reading of one broker's `/varz`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BrokerSample {
    /// Seconds since the run's first request began.
    pub t: f64,
    /// The monitor URL (or the scrape's source) the sample is from.
    pub source: String,
    pub connections: f64,
    /// Messages in and out since the server started (counters).
    pub in_msgs: f64,
    pub out_msgs: f64,
    /// Slow consumers since the server started (a counter).
    pub slow_consumers: f64,
    /// CPU of the nats-server process in percent of one core (absent in scrape files).
    pub cpu: Option<f64>,
    pub mem_bytes: f64,
}

impl BrokerSample {
    fn from_varz(t: f64, source: &str, varz: &Value) -> BrokerSample {
        let f = |k: &str| varz[k].as_f64().unwrap_or(0.0);
        BrokerSample {
            t,
            source: source.to_owned(),
            connections: f("connections"),
            in_msgs: f("in_msgs"),
            out_msgs: f("out_msgs"),
            slow_consumers: f("slow_consumers"),
            cpu: varz["cpu"].as_f64(),
            mem_bytes: f("mem"),
        }
    }
}

/// Seconds since the Unix epoch, as `emulator scrape` writes them beside each sample.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Per-second rates of a counter between consecutive samples of one source: (t, rate).
pub fn rates(samples: &[&BrokerSample], counter: fn(&BrokerSample) -> f64) -> Vec<(f64, f64)> {
    samples
        .windows(2)
        .map(|w| {
            let dt = (w[1].t - w[0].t).max(1e-9);
            (w[1].t, ((counter(w[1]) - counter(w[0])) / dt).max(0.0))
        })
        .collect()
}

/// `/varz` of each monitor URL, sampled in the background.
pub struct Sampler {
    /// Set when the run ended; a watch channel, so that the task wakes at once.
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<(Vec<BrokerSample>, usize)>,
}

fn varz_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/varz") {
        base.to_owned()
    } else {
        format!("{base}/varz")
    }
}

impl Sampler {
    /// Starts sampling `urls` every `interval`, with times measured from `origin`.
    pub fn start(
        urls: &[String],
        interval: Duration,
        origin: Instant,
    ) -> Result<Sampler, MeasureError> {
        let http = reqwest::Client::builder()
            .timeout(interval.max(Duration::from_secs(1)))
            .no_proxy()
            .build()
            .map_err(|e| MeasureError::Http(e.to_string()))?;
        let urls: Vec<String> = urls.to_vec();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut failures = 0usize;
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => break,
                }
                for url in &urls {
                    let t = origin.elapsed().as_secs_f64();
                    let got = async {
                        http.get(varz_url(url))
                            .send()
                            .await?
                            .error_for_status()?
                            .json::<Value>()
                            .await
                    };
                    match got.await {
                        Ok(varz) => samples.push(BrokerSample::from_varz(t, url, &varz)),
                        Err(e) => {
                            failures += 1;
                            tracing::warn!(url = %url, error = %e, "broker monitor sample failed");
                        }
                    }
                }
            }
            (samples, failures)
        });
        Ok(Sampler { stop, task })
    }

    /// Stops sampling and returns every sample, with the number of failed ones.
    pub async fn finish(self) -> (Vec<BrokerSample>, usize) {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// The broker samples (`kind` `nats`) of an `emulator scrape` samples.jsonl, put on the run's
/// axis by wall clock: `origin_unix` is when the run's first request began. Lines without the
/// `unix` time (scrapes by older versions) cannot be placed and are counted as skipped.
pub fn read_scrape_samples(
    path: &Path,
    origin_unix: f64,
) -> Result<(Vec<BrokerSample>, usize), MeasureError> {
    let text = std::fs::read_to_string(path).map_err(|source| MeasureError::ReadInput {
        flag: "--scrape-samples",
        path: path.to_owned(),
        source,
    })?;
    let mut samples = Vec::new();
    let mut skipped = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            skipped += 1;
            continue;
        };
        if v["kind"] != "nats" || v.get("fields").is_none() {
            continue;
        }
        let Some(unix) = v["unix"].as_f64() else {
            skipped += 1;
            continue;
        };
        let f = &v["fields"];
        let n = |k: &str| f[k].as_f64().unwrap_or(0.0);
        samples.push(BrokerSample {
            t: unix - origin_unix,
            source: v["source"].as_str().unwrap_or_default().to_owned(),
            connections: n("connections"),
            in_msgs: n("in_msgs"),
            out_msgs: n("out_msgs"),
            slow_consumers: n("slow_consumers"),
            cpu: f["cpu"].as_f64(),
            mem_bytes: n("mem_bytes"),
        });
    }
    Ok((samples, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_consecutive_samples() {
        let a = BrokerSample {
            t: 1.0,
            in_msgs: 100.0,
            ..BrokerSample::default()
        };
        let b = BrokerSample {
            t: 3.0,
            in_msgs: 300.0,
            ..BrokerSample::default()
        };
        assert_eq!(rates(&[&a, &b], |s| s.in_msgs), vec![(3.0, 100.0)]);
        assert_eq!(varz_url("http://h:8222/"), "http://h:8222/varz");
        assert_eq!(varz_url("http://h:8222/varz"), "http://h:8222/varz");
    }

    #[test]
    fn scrape_lines_are_placed_by_wall_clock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"t":0.0,"unix":1000.5,"kind":"nats","source":"m","fields":{"connections":3,"in_msgs":10,"cpu":1.5,"mem_bytes":7}}"#,
                "\n",
                r#"{"t":0.0,"unix":1000.5,"kind":"emulator","source":"e","fields":{"connected":3}}"#,
                "\n",
                r#"{"t":1.0,"kind":"nats","source":"m","fields":{"connections":3}}"#,
                "\n",
                "not json\n",
            ),
        )
        .unwrap();
        let (samples, skipped) = read_scrape_samples(&path, 1000.0).unwrap();
        assert_eq!(skipped, 2);
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].t, 0.5);
        assert_eq!(samples[0].connections, 3.0);
        assert_eq!(samples[0].cpu, Some(1.5));
        assert_eq!(samples[0].mem_bytes, 7.0);
    }
}
