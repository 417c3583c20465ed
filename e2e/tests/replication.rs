//! `playbooks/registration-replication.yaml` run for real with its default source: an
//! `emulator` fleet of 200 daemons registering every 2 s on a site nats-server (JetStream),
//! `stream-replicator adapter` into the site stream, `stream-replicator` to a central
//! nats-server (JetStream), all started by the playbook's shell tasks. Afterwards the central
//! store, reopened by the test, must hold a subject for every one of the 200 identities, and
//! nothing the playbook started may be running.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use natsproc::process::{Signal, is_alive, send_signal};
use testkit::{NatsServer, port_for_child, workspace_binary};

const INSTANCES: u32 = 200;
const INTERVAL: u64 = 2;
const NAME: &str = "e2err";
/// The whole playbook run, post_book included (about 6 s on a quiet machine).
const RUN_LIMIT: Duration = Duration::from_secs(90);

fn playbook_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("playbooks")
        .join("registration-replication.yaml")
}

fn path_arg(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_owned()
}

/// Runs `playbook run FILE ARGS`, its stdout and stderr into files under `logs`. Past `limit`
/// it gets SIGTERM (its post_book still runs, under the runner's 10 s deadline) and the test
/// fails. Returns whether it succeeded and its stdout followed by its stderr.
fn run_playbook(args: &[String], logs: &Path, limit: Duration) -> (bool, String) {
    let (out, err) = (logs.join("playbook.out"), logs.join("playbook.err"));
    let mut child = Command::new(workspace_binary("playbook"))
        .arg("run")
        .arg(playbook_file())
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start playbook");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            natsproc::terminate(&mut child, Duration::from_secs(15));
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = format!(
        "{}\n{}",
        std::fs::read_to_string(&out).unwrap_or_default(),
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    let Some(status) = status else {
        panic!("the playbook ran longer than {limit:?}:\n{text}");
    };
    (status.success(), text)
}

/// Live processes (not this one) whose command line contains one of `markers`.
fn processes_with(markers: &[String]) -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if markers.iter().any(|m| cmdline.contains(m.as_str())) && is_alive(pid) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// The subjects of stream REGISTRATION in a JetStream store, read by a nats-server of our own.
async fn registration_subjects(store: &Path) -> (BTreeSet<String>, u64) {
    let nats = NatsServer::start_jetstream(store);
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream("REGISTRATION")
        .await
        .expect("the central store holds stream REGISTRATION");
    let messages = stream.info().await.expect("stream info").state.messages;
    let mut subjects = stream
        .info_with_subjects("choria.stream.input.registration.>")
        .await
        .expect("stream subjects");
    let mut out = BTreeSet::new();
    while let Some(entry) = subjects.next().await {
        out.insert(entry.expect("stream subjects").0);
    }
    (out, messages)
}

/// The number after `key` in `line` (`... stalest sender 1.9s`).
fn number_after(line: &str, key: &str) -> f64 {
    let rest = &line[line
        .find(key)
        .unwrap_or_else(|| panic!("{key:?} in {line:?}"))
        + key.len()..];
    rest.trim_start()
        .trim_end_matches('s')
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number after {key:?} in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_replication_playbook_brings_every_emulated_sender_to_the_central_stream() {
    let _heavy = crate::node::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("rr");
    let (site, central, monitor) = (port_for_child(), port_for_child(), port_for_child());
    let nats_bin = natsproc::nats_server_binary().expect("nats-server");
    let args: Vec<String> = [
        ("work_dir", path_arg(&work)),
        ("instances", INSTANCES.to_string()),
        ("name", NAME.into()),
        ("interval", INTERVAL.to_string()),
        ("wait", "30".into()),
        ("site_port", site.to_string()),
        ("central_port", central.to_string()),
        ("monitor_port", monitor.to_string()),
        ("http_port", "0".into()),
        ("emulator_bin", path_arg(&workspace_binary("emulator"))),
        (
            "replicator_bin",
            path_arg(&workspace_binary("stream-replicator")),
        ),
        ("nats_bin", path_arg(&nats_bin)),
    ]
    .into_iter()
    .flat_map(|(k, v)| [format!("--{k}"), v])
    .collect();

    let logs = dir.path().to_owned();
    let (ok, output) = tokio::task::spawn_blocking(move || run_playbook(&args, &logs, RUN_LIMIT))
        .await
        .unwrap();

    // Nothing the playbook started is left: the nats-servers (their stores under work_dir),
    // the replicator (its config there), the emulator (its identity prefix) and the adapter
    // (the site URL). Command lines read from /proc end every argument with a space here.
    let markers = [
        path_arg(&work),
        format!("--name {NAME} "),
        format!("--source-url nats://127.0.0.1:{site} "),
    ];
    let left = processes_with(&markers);
    for (pid, _) in &left {
        send_signal(i32::try_from(*pid).unwrap(), Signal::KILL);
    }
    assert!(ok, "the playbook failed:\n{output}");
    assert!(
        left.is_empty(),
        "left running after the playbook: {left:#?}"
    );

    // The playbook's own check: every sender central, at first arrival and one interval later.
    let summaries: Vec<&str> = output
        .lines()
        .filter(|l| l.contains(&format!("REGISTRATION: {INSTANCES} senders")))
        .collect();
    assert_eq!(summaries.len(), 2, "two senders summaries in:\n{output}");
    // One interval after all arrived, every sender has registered again: its newest copy is
    // at most an interval plus the replication lag old (a generous margin for a busy machine).
    let stalest = number_after(summaries[1], "stalest sender");
    assert!(
        stalest < (INTERVAL + 8) as f64,
        "stalest sender {stalest}s old one interval later:\n{output}"
    );
    assert!(
        output.contains(
            "stream_replicator_failed_total{replicator=\"site1\",stream=\"REGISTRATION\"} 0"
        ),
        "{output}"
    );
    assert!(
        output.contains("emulator_registration_publish_errors_total 0"),
        "{output}"
    );

    // The central store itself, reopened: one subject per emulated identity, no other.
    let (subjects, messages) = registration_subjects(&work.join("central")).await;
    let expected: BTreeSet<String> = (0..INSTANCES)
        .map(|i| format!("choria.stream.input.registration.{NAME}-{i}"))
        .collect();
    let missing: Vec<_> = expected.difference(&subjects).collect();
    let extra: Vec<_> = subjects.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "central stream: {} missing {missing:?}, {} unexpected {extra:?}",
        missing.len(),
        extra.len()
    );
    assert!(
        messages >= 2 * u64::from(INSTANCES),
        "every identity registered at least twice: {messages} messages"
    );
}
