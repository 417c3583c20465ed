//! The client against real nats-server processes (and two hostile plain TCP listeners).

use std::io::{Read as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use natsclient::{Client, Config, Error, Event, Handler, Message, Outbox, Pool, Strategy};
use testkit::{LocalNatsOptions, NatsServer};
use tokio::sync::oneshot;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    sid: u64,
    subject: String,
    reply: Option<String>,
    headers: Option<Vec<u8>>,
    payload: Vec<u8>,
}

#[derive(Debug, Default)]
struct Log {
    messages: Vec<Got>,
    connected: Vec<(String, bool)>,
    disconnected: Vec<(String, String)>,
    server_errors: Vec<String>,
    connect_failures: Vec<String>,
}

/// Records everything; answers messages that have a reply subject when `echo_replies`.
#[derive(Clone, Default)]
struct Recorder {
    log: Arc<Mutex<Log>>,
    echo_replies: bool,
}

impl Recorder {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap()
    }
}

impl Handler for Recorder {
    fn message(&mut self, msg: Message<'_>, out: &mut Outbox<'_>) {
        if self.echo_replies
            && let Some(r) = msg.reply
        {
            out.publish(r, None, msg.payload).unwrap();
        }
        self.log().messages.push(Got {
            sid: msg.sid,
            subject: msg.subject.to_owned(),
            reply: msg.reply.map(str::to_owned),
            headers: msg.headers.map(<[u8]>::to_vec),
            payload: msg.payload.to_vec(),
        });
    }

    fn event(&mut self, event: Event<'_>) {
        let mut log = self.log();
        match event {
            Event::Connected { server, reconnect } => {
                log.connected.push((server.url.to_string(), reconnect));
            }
            Event::Disconnected { server, error } => {
                log.disconnected
                    .push((server.url.to_string(), error.to_string()));
            }
            Event::ConnectFailed { error } => log.connect_failures.push(error.to_string()),
            Event::ServerError { message, .. } => log.server_errors.push(message.to_owned()),
            Event::LameDuck { .. } => {}
        }
    }
}

fn config(urls: &[String]) -> Config {
    Config::new(Arc::new(Pool::new(urls, Strategy::Ordered).unwrap()))
}

async fn connected(config: Config, name: &str) -> (Client, Recorder) {
    let mut client = Client::new(Arc::new(config), name, None);
    client.try_connect().await.unwrap();
    (client, Recorder::default())
}

/// Runs the client in a task until the returned sender fires or is dropped.
fn spawn(
    mut client: Client,
    mut handler: Recorder,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<(Client, Recorder)>,
) {
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        client
            .run(&mut handler, async {
                let _ = rx.await;
            })
            .await;
        (client, handler)
    });
    (tx, task)
}

async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn conf_file(dir: &tempfile::TempDir, text: &str) -> LocalNatsOptions {
    let path = dir.path().join("nats.conf");
    std::fs::write(&path, text).unwrap();
    LocalNatsOptions {
        config_file: Some(path),
        ..LocalNatsOptions::default()
    }
}

#[tokio::test]
async fn messages_with_and_without_headers_and_replies_round_trip() {
    let nats = NatsServer::start();
    let (mut sub, rec) = connected(config(&[nats.url()]), "sub").await;
    let sid = sub.subscribe("a.>", None).unwrap();
    let mut rec2 = rec.clone();
    sub.flush(&mut rec2).await.unwrap();
    let (stop, task) = spawn(sub, rec.clone());

    let (mut publisher, mut prec) = connected(config(&[nats.url()]), "pub").await;
    publisher.publish("a.b", Some("r.1"), b"hello").unwrap();
    publisher.publish("a.c", None, b"").unwrap();
    publisher.flush(&mut prec).await.unwrap();
    // HPUB from a raw connection: the client must parse HMSG.
    let mut raw = std::net::TcpStream::connect(nats.url().trim_start_matches("nats://")).unwrap();
    let mut info = [0u8; 4096];
    let _ = raw.read(&mut info).unwrap();
    raw.write_all(
        b"CONNECT {\"verbose\":false,\"headers\":true}\r\nHPUB a.h 18 20\r\nNATS/1.0\r\nX: y\r\n\r\nhi\r\nPING\r\n",
    )
    .unwrap();
    let n = raw.read(&mut info).unwrap();
    assert!(info[..n].starts_with(b"PONG"), "{:?}", &info[..n]);

    eventually("three messages", Duration::from_secs(5), || {
        rec.log().messages.len() == 3
    })
    .await;
    let got = rec.log().messages.clone();
    assert_eq!(
        got[0],
        Got {
            sid,
            subject: "a.b".into(),
            reply: Some("r.1".into()),
            headers: None,
            payload: b"hello".to_vec()
        }
    );
    assert_eq!(got[1].payload, b"");
    assert_eq!(
        got[2].headers.as_deref(),
        Some(&b"NATS/1.0\r\nX: y\r\n\r\n"[..])
    );
    assert_eq!(got[2].payload, b"hi");
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_bad_subject_gets_err_and_the_connection_stays() {
    let nats = NatsServer::start();
    let (mut client, mut rec) = connected(config(&[nats.url()]), "bad").await;
    client.subscribe("a..b", None).unwrap();
    client.flush(&mut rec).await.unwrap();
    assert_eq!(rec.log().server_errors, ["Invalid Subject"]);
    assert!(client.is_connected());
    // Subjects that would break the framing never reach the server.
    assert!(matches!(
        client.subscribe("a b", None),
        Err(Error::InvalidSubject(_))
    ));
    assert!(matches!(
        client.publish("a\r\nPUB", None, b""),
        Err(Error::InvalidSubject(_))
    ));
    client.flush(&mut rec).await.unwrap();
    assert_eq!(rec.log().disconnected.len(), 0);
}

#[tokio::test]
async fn publishes_over_max_payload_are_refused_locally() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_with(&conf_file(&dir, "max_payload: 1024\n"));
    let (mut sub, mut srec) = connected(config(&[nats.url()]), "sub").await;
    sub.subscribe("big", None).unwrap();
    sub.flush(&mut srec).await.unwrap();
    let (mut client, mut rec) = connected(config(&[nats.url()]), "pub").await;
    assert_eq!(client.max_payload(), 1024);
    match client.publish("big", None, &[b'x'; 1025]) {
        Err(Error::MaxPayload {
            size: 1025,
            max: 1024,
        }) => {}
        other => panic!("{other:?}"),
    }
    client.publish("big", None, &[b'y'; 1024]).unwrap();
    client.flush(&mut rec).await.unwrap();
    assert!(client.is_connected(), "the server did not close us");
    sub.flush(&mut srec).await.unwrap();
    let log = srec.log();
    assert_eq!(log.messages.len(), 1);
    assert_eq!(log.messages[0].payload, vec![b'y'; 1024]);
}

#[tokio::test]
async fn server_pings_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_with(&conf_file(&dir, "ping_interval: \"100ms\"\nping_max: 2\n"));
    let mut cfg = config(&[nats.url()]);
    cfg.ping_interval = Duration::from_secs(3600);
    let (client, rec) = connected(cfg, "pinged").await;
    let (stop, task) = spawn(client, rec.clone());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stop.send(()).unwrap();
    let (client, rec) = task.await.unwrap();
    assert!(client.is_connected());
    assert!(
        client.server_pings() >= 5,
        "{} pings",
        client.server_pings()
    );
    assert_eq!(rec.log().disconnected, Vec::<(String, String)>::new());
    assert_eq!(nats.connections().await.len(), 1);
}

#[tokio::test]
async fn a_server_that_stops_answering_pings_is_left() {
    // Sends INFO, answers the handshake PING, then goes silent.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"INFO {\"max_payload\":1048576}\r\n").unwrap();
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        while !seen.windows(6).any(|w| w == b"PING\r\n") {
            let n = s.read(&mut buf).unwrap();
            seen.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"PONG\r\n").unwrap();
        std::thread::sleep(Duration::from_secs(10));
    });
    let mut cfg = config(&[format!("nats://{addr}")]);
    cfg.ping_interval = Duration::from_millis(100);
    cfg.handshake_timeout = Duration::from_millis(500);
    let (client, rec) = connected(cfg, "stale").await;
    let (_stop, _task) = spawn(client, rec.clone());
    eventually("a stale disconnect", Duration::from_secs(3), || {
        !rec.log().disconnected.is_empty()
    })
    .await;
    let (_, why) = rec.log().disconnected[0].clone();
    assert!(
        why.contains("stale connection, 2 pings unanswered"),
        "{why}"
    );
}

#[tokio::test]
async fn an_authorization_violation_is_a_connect_error() {
    let nats = NatsServer::start_with(&LocalNatsOptions {
        extra_args: ["--user", "u", "--pass", "right"]
            .map(String::from)
            .to_vec(),
        ..LocalNatsOptions::default()
    });
    let mut cfg = config(&[nats.url()]);
    cfg.user = Some(("u".into(), "wrong".into()));
    let mut client = Client::new(Arc::new(cfg.clone()), "bad-auth", None);
    match client.try_connect().await {
        Err(Error::Server { message, .. }) => assert_eq!(message, "Authorization Violation"),
        other => panic!("{other:?}"),
    }
    assert!(!client.is_connected());
    cfg.user = Some(("u".into(), "right".into()));
    connected(cfg, "good-auth").await;
    // Credentials in the URL are used too.
    let url = nats.url().replace("nats://", "nats://u:right@");
    connected(config(&[url]), "url-auth").await;
}

#[tokio::test]
async fn a_server_that_never_sends_info_times_out_the_handshake() {
    // The kernel completes the TCP handshake into the backlog; nothing is ever sent.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = config(&[format!("nats://{}", listener.local_addr().unwrap())]);
    cfg.handshake_timeout = Duration::from_millis(300);
    let mut client = Client::new(Arc::new(cfg), "mute", None);
    let begun = Instant::now();
    match client.try_connect().await {
        Err(Error::HandshakeTimeout { timeout, .. }) => {
            assert_eq!(timeout, Duration::from_millis(300));
        }
        other => panic!("{other:?}"),
    }
    assert!(begun.elapsed() < Duration::from_secs(2));
    assert!(!client.is_connected());
    drop(listener);
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_then_reconnects_and_resubscribes() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_with(&conf_file(
        &dir,
        "max_pending: 65536\nmax_payload: 65536\nwrite_deadline: \"500ms\"\n",
    ));
    let (mut slow, mut srec) = connected(config(&[nats.url()]), "slow").await;
    slow.subscribe("flood", None).unwrap();
    slow.flush(&mut srec).await.unwrap();
    // The slow client does not read while a publisher floods it.
    let (mut publisher, mut prec) = connected(config(&[nats.url()]), "flooder").await;
    let chunk = vec![b'z'; 60 * 1024];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for _ in 0..50 {
            publisher.publish("flood", None, &chunk).unwrap();
        }
        publisher.flush(&mut prec).await.unwrap();
        let varz = nats.monitor("/varz").await;
        if varz["slow_consumers"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no slow consumer: {varz}");
    }
    let (stop, task) = spawn(slow, srec.clone());
    eventually("a reconnect", Duration::from_secs(10), || {
        srec.log().connected.iter().any(|(_, re)| *re)
    })
    .await;
    assert_eq!(srec.log().disconnected.len(), 1);
    // Resubscribed: a new message arrives.
    srec.log().messages.clear();
    publisher.publish("flood", None, b"after").unwrap();
    publisher.flush(&mut prec).await.unwrap();
    eventually(
        "the message after reconnect",
        Duration::from_secs(5),
        || srec.log().messages.iter().any(|m| m.payload == b"after"),
    )
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();
}

struct Pki {
    dir: tempfile::TempDir,
    ca: rustls::pki_types::CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "natsclient test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server-key.pem"), key.serialize_pem()).unwrap();
        let conf = format!(
            "tls {{\n  cert_file: \"{0}/server.pem\"\n  key_file: \"{0}/server-key.pem\"\n}}\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("nats.conf"), conf).unwrap();
        Pki {
            ca: ca.der().clone(),
            dir,
        }
    }
}

fn tls_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[tokio::test]
async fn tls_verification_succeeds_with_the_ca_and_fails_without() {
    let pki = Pki::new();
    let nats = NatsServer::start_with(&LocalNatsOptions {
        config_file: Some(pki.dir.path().join("nats.conf")),
        ..LocalNatsOptions::default()
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let mut cfg = config(&[nats.url()]);
    cfg.tls = Some(tls_config(roots));
    // Echo on: the client receives its own publish.
    cfg.echo = true;
    let (mut client, mut rec) = connected(cfg, "tls-ok").await;
    client.subscribe("t", None).unwrap();
    client.publish("t", None, b"over tls").unwrap();
    let (stop, task) = spawn(client, rec.clone());
    eventually("a message over TLS", Duration::from_secs(5), || {
        rec.log().messages.len() == 1
    })
    .await;
    let connz = nats.monitor("/connz").await;
    assert!(
        connz["connections"][0]["tls_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{connz}"
    );
    stop.send(()).unwrap();
    let (mut client, _) = task.await.unwrap();
    client.drain(&mut rec).await.unwrap();

    // Another CA: the certificate is refused.
    let other = Pki::new();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(other.ca.clone()).unwrap();
    let mut cfg = config(&[nats.url()]);
    cfg.tls = Some(tls_config(roots));
    let mut client = Client::new(Arc::new(cfg), "tls-bad", None);
    match client.try_connect().await {
        Err(Error::Tls { source, .. }) => {
            assert!(source.to_string().contains("certificate"), "{source}");
        }
        other => panic!("{other:?}"),
    }
    // No TLS configured against a TLS server.
    let mut client = Client::new(Arc::new(config(&[nats.url()])), "plain", None);
    assert!(matches!(
        client.try_connect().await,
        Err(Error::TlsRequired { .. })
    ));
}

#[tokio::test]
async fn reconnects_after_a_broker_restart_and_resubscribes() {
    let mut nats = NatsServer::start();
    let port = nats.inner().client_port();
    let (mut client, mut rec) = connected(config(&[nats.url()]), "restart").await;
    client.subscribe("r.>", None).unwrap();
    client.subscribe("s", Some("q")).unwrap();
    client.flush(&mut rec).await.unwrap();
    let (stop, task) = spawn(client, rec.clone());
    nats.inner().stop();
    eventually("the disconnect", Duration::from_secs(5), || {
        !rec.log().disconnected.is_empty()
    })
    .await;
    let nats = NatsServer::start_with(&LocalNatsOptions {
        port: Some(port),
        ..LocalNatsOptions::default()
    });
    eventually("the reconnect", Duration::from_secs(10), || {
        rec.log().connected.iter().any(|(_, re)| *re)
    })
    .await;
    let conns = nats.connections().await;
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].subscriptions, 2);
    let mut subjects = conns[0].subjects.clone();
    subjects.sort();
    assert_eq!(subjects, ["r.>", "s"]);
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn cluster_members_from_connect_urls_join_the_pool_and_take_over() {
    let (pa, pb) = (testkit::port_for_child(), testkit::port_for_child());
    let member = |own: u16, other: u16| LocalNatsOptions {
        extra_args: vec![
            "--cluster_name".into(),
            "t".into(),
            "--cluster".into(),
            format!("nats://127.0.0.1:{own}"),
            "--routes".into(),
            format!("nats://127.0.0.1:{other}"),
        ],
        ..LocalNatsOptions::default()
    };
    let mut a = NatsServer::start_with(&member(pa, pb));
    let b = NatsServer::start_with(&member(pb, pa));
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.monitor("/routez").await["num_routes"].as_u64() != Some(1) {
        assert!(Instant::now() < deadline, "no route");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pool = Arc::new(Pool::new(&[a.url()], Strategy::Ordered).unwrap());
    let mut client = Client::new(Arc::new(Config::new(Arc::clone(&pool))), "c", None);
    client.try_connect().await.unwrap();
    let rec = Recorder::default();
    client.subscribe("x", None).unwrap();
    let (stop, task) = spawn(client, rec.clone());
    eventually("b in the pool", Duration::from_secs(5), || {
        pool.servers()
            .iter()
            .any(|s| s.discovered && *s.url == *b.url())
    })
    .await;
    a.inner().stop();
    eventually("a reconnect to b", Duration::from_secs(10), || {
        rec.log()
            .connected
            .iter()
            .any(|(url, re)| *re && *url == b.url())
    })
    .await;
    assert_eq!(b.connections().await[0].subjects, ["x"]);
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn replies_from_the_handler_go_out_on_the_same_connection() {
    let nats = NatsServer::start();
    let (mut responder, mut rec) = connected(config(&[nats.url()]), "responder").await;
    rec.echo_replies = true;
    responder.subscribe("svc", None).unwrap();
    responder.flush(&mut rec).await.unwrap();
    let (stop, task) = spawn(responder, rec.clone());
    let (mut asker, mut arec) = connected(config(&[nats.url()]), "asker").await;
    asker.subscribe("inbox.1", None).unwrap();
    for i in 0..200 {
        asker
            .publish("svc", Some("inbox.1"), format!("q{i}").as_bytes())
            .unwrap();
    }
    let (astop, atask) = spawn(asker, arec.clone());
    eventually("200 replies", Duration::from_secs(5), || {
        arec.log().messages.len() == 200
    })
    .await;
    assert_eq!(arec.log().messages[199].payload, b"q199");
    astop.send(()).unwrap();
    let (mut asker, _) = atask.await.unwrap();
    asker.drain(&mut arec).await.unwrap();
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn handshakes_wait_for_a_permit_of_the_shared_cap() {
    let nats = NatsServer::start();
    let limit = Arc::new(tokio::sync::Semaphore::new(1));
    let mut cfg = config(&[nats.url()]);
    cfg.in_flight = Some(Arc::clone(&limit));
    let mut client = Client::new(Arc::new(cfg), "capped", None);
    let held = Arc::clone(&limit).acquire_owned().await.unwrap();
    let blocked = tokio::time::timeout(Duration::from_millis(500), client.try_connect()).await;
    assert!(blocked.is_err(), "connected without a permit");
    assert!(nats.connections().await.is_empty());
    drop(held);
    client.try_connect().await.unwrap();
    // The permit is returned once the handshake is over.
    assert_eq!(limit.available_permits(), 1);
}

#[tokio::test]
async fn subscriptions_made_before_connecting_are_held_when_connect_returns() {
    let nats = NatsServer::start();
    let mut client = Client::new(Arc::new(config(&[nats.url()])), "early", None);
    client.subscribe("e.1", None).unwrap();
    client.subscribe("e.2", Some("g")).unwrap();
    let mut rec = Recorder::default();
    assert!(client.connect(&mut rec, std::future::pending()).await);
    // No flush: the handshake's PONG came after the SUBs.
    let conns = nats.connections().await;
    assert_eq!(conns[0].subscriptions, 2);
    assert_eq!(rec.log().connected, [(nats.url(), false)]);
    // A subscription the server refuses in the handshake does not fail the connection.
    let mut client = Client::new(Arc::new(config(&[nats.url()])), "early-bad", None);
    client.subscribe("bad..subject", None).unwrap();
    client.subscribe("good", None).unwrap();
    client.try_connect().await.unwrap();
    let conns = nats.connections_by_name().await;
    assert_eq!(conns["early-bad"].subjects, ["good"]);
}
