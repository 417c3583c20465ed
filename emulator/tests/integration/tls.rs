//! TLS on the NATS connections: verified against a CA, and unverified as the original allowed.

use std::time::Duration;

use testkit::{LocalNatsOptions, NatsServer};

use crate::common::start_emulator;

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "loadlab test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server-key.pem"), key.serialize_pem()).unwrap();
        let conf = format!(
            "tls {{\n  cert_file: \"{0}/server.pem\"\n  key_file: \"{0}/server-key.pem\"\n}}\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("nats.conf"), conf).unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_connect_over_tls_with_and_without_verification() {
    let pki = Pki::new();
    let nats = NatsServer::start_with(&LocalNatsOptions {
        config_file: Some(pki.dir.path().join("nats.conf")),
        ..LocalNatsOptions::default()
    });
    let verified = start_emulator(
        &nats.url(),
        "tlsv",
        3,
        &["--tls", "--verify", "--tls-ca", &pki.path("ca.pem")],
    )
    .await;
    assert_eq!(verified.debug_vars().config.tls_verify, 1);
    let unverified = start_emulator(&nats.url(), "tlsu", 2, &["--tls"]).await;
    assert_eq!(unverified.debug_vars().config.tls, 1);
    assert_eq!(unverified.debug_vars().config.tls_verify, 0);
    nats.wait_connections(5, Duration::from_secs(10)).await;
    let conns = nats.monitor("/connz").await;
    for c in conns["connections"].as_array().unwrap() {
        assert!(
            c["tls_version"]
                .as_str()
                .is_some_and(|v| v.starts_with("1.")),
            "TLS in use: {c}"
        );
    }
    verified.stop(Duration::from_secs(5)).await;
    unverified.stop(Duration::from_secs(5)).await;
}
