//! `/metrics`: the fleet's counters in Prometheus text exposition format, rendered from the same
//! [`Counters`] snapshot as `/debug/vars`, so a single process and a supervisor of workers (which
//! sums its workers' snapshots) expose the same series.

use std::fmt::Write as _;

use agents::debug_vars::Counters;

/// Renders `counters` (and the resident memory of the processes behind them).
pub fn prometheus(counters: &Counters, rss_bytes: u64) -> String {
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP emulator_{name} {help}");
        let _ = writeln!(out, "# TYPE emulator_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "emulator_{name}{labels} {value}");
        }
    };
    let plain = |v: u64| vec![(String::new(), v)];
    let labelled = |label: &str, pairs: &mut dyn Iterator<Item = (&String, u64)>| {
        pairs
            .map(|(k, v)| (format!("{{{label}=\"{k}\"}}"), v))
            .collect::<Vec<_>>()
    };
    let i = &counters.instances;
    let r = &counters.requests;
    metric(
        "instances_configured",
        "gauge",
        "Instances this fleet runs.",
        &plain(i.configured),
    );
    metric(
        "instances_connected",
        "gauge",
        "Instances currently connected to NATS.",
        &plain(i.connected),
    );
    metric(
        "connect_failures_total",
        "counter",
        "Failed initial connection attempts.",
        &plain(i.connect_failures),
    );
    metric(
        "disconnects_total",
        "counter",
        "Connections lost.",
        &plain(i.disconnects),
    );
    metric(
        "reconnects_total",
        "counter",
        "Connections re-established.",
        &plain(i.reconnects),
    );
    let server = |url: &String| format!("{{server=\"{}\"}}", url.replace(['\\', '"'], "_"));
    metric(
        "server_instances_connected",
        "gauge",
        "Instances currently connected, per NATS server.",
        &counters
            .servers
            .iter()
            .map(|(url, c)| (server(url), c.connected))
            .collect::<Vec<_>>(),
    );
    metric(
        "server_reconnects_total",
        "counter",
        "Connections re-established, per NATS server.",
        &counters
            .servers
            .iter()
            .map(|(url, c)| (server(url), c.reconnects))
            .collect::<Vec<_>>(),
    );
    metric(
        "slow_consumers_total",
        "counter",
        "Connections the NATS server cut off as slow consumers.",
        &plain(i.slow_consumers),
    );
    metric(
        "messages_received_total",
        "counter",
        "NATS messages received by all instances.",
        &plain(r.received),
    );
    let results = [
        ("valid", r.valid),
        ("invalid", r.invalid),
        ("expired", r.expired),
        ("filtered", r.filtered),
        ("passed", r.passed),
    ]
    .map(|(k, v)| (format!("{{result=\"{k}\"}}"), v));
    metric(
        "requests_total",
        "counter",
        "Requests by outcome.",
        &results,
    );
    metric(
        "invalid_total",
        "counter",
        "Refused messages by reason.",
        &labelled(
            "reason",
            &mut r.invalid_by_reason.iter().map(|(k, v)| (k, *v)),
        ),
    );
    metric(
        "agent_requests_total",
        "counter",
        "Requests that reached an agent.",
        &labelled(
            "agent",
            &mut counters.agents.iter().map(|(k, c)| (k, c.requests)),
        ),
    );
    metric(
        "agent_replies_total",
        "counter",
        "Requests an agent answered.",
        &labelled(
            "agent",
            &mut counters.agents.iter().map(|(k, c)| (k, c.answered)),
        ),
    );
    metric(
        "replies_sent_total",
        "counter",
        "Replies published.",
        &plain(counters.replies.sent),
    );
    metric(
        "publish_errors_total",
        "counter",
        "Replies that could not be published.",
        &plain(counters.replies.publish_errors),
    );
    metric(
        "bytes_in_total",
        "counter",
        "Bytes of request bodies received.",
        &plain(counters.bytes.bytes_in),
    );
    metric(
        "bytes_out_total",
        "counter",
        "Bytes of reply bodies published.",
        &plain(counters.bytes.bytes_out),
    );
    let reg = &counters.registration;
    metric(
        "registrations_published_total",
        "counter",
        "Registration requests published (--registration).",
        &plain(reg.published),
    );
    metric(
        "registration_bytes_total",
        "counter",
        "Bytes of registration requests published.",
        &plain(reg.bytes),
    );
    metric(
        "registration_publish_errors_total",
        "counter",
        "Registration requests that could not be published.",
        &plain(reg.publish_errors),
    );
    metric(
        "fault_instances",
        "gauge",
        "Instances given each injected fault (--faults).",
        &labelled(
            "fault",
            &mut counters.faults.iter().map(|(k, f)| (k, f.instances)),
        ),
    );
    metric(
        "fault_events_total",
        "counter",
        "Requests (flap: disconnections) affected by each injected fault.",
        &labelled(
            "fault",
            &mut counters.faults.iter().map(|(k, f)| (k, f.events)),
        ),
    );
    metric(
        "resident_memory_bytes",
        "gauge",
        "Resident set size of the emulator processes.",
        &plain(rss_bytes),
    );
    out
}
