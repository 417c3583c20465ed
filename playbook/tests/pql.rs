//! `pql` node sets against a real PuppetDB (`testkit::PuppetDb::shared`, one per test binary,
//! holding 36 nodes: `web01`..`web12`, `db01`..`db12`, `app01`..`app12` `.example.net`).

use testkit::PuppetDb;
use testkit::puppetdb::certnames;

use crate::test::Test;

/// A playbook with one pql node set `web` (extra properties in `props`, indented four spaces)
/// and a task printing the set.
fn playbook(query: &str, props: &str) -> String {
    format!(
        "nodes:\n  web:\n    type: pql\n    query: '{query}'\n{props}tasks:\n  - shell:\n      command: echo found={{{{{{ nodes.web }}}}}}\n"
    )
}

/// What the shell task prints for `names`.
fn found(names: &[String]) -> String {
    format!("found={}", names.join(", "))
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn the_fixture_is_queryable() {
    let pdb = PuppetDb::shared();
    let (status, body) =
        pdb.query("nodes[certname] { facts { name = \"role\" and value = \"web\" } }");
    assert_eq!(status, 200, "{body}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).expect("JSON rows");
    let mut names: Vec<String> = rows
        .iter()
        .map(|r| r["certname"].as_str().expect("certname").to_string())
        .collect();
    names.sort();
    assert_eq!(names, certnames(|n| n.role == "web"));
    assert_eq!(names.len(), 12);
}

#[test]
fn a_fact_query_selects_the_nodes_with_that_fact() {
    let pdb = PuppetDb::shared();
    let query =
        r#"nodes[certname] { facts { name = "role" and value = "web" } order by certname }"#;
    Test::new()
        .playbook(&playbook(query, ""))
        .args(&["run", "pb.yaml", "--puppetdb", &pdb.url()])
        .stderr_has(&found(&certnames(|n| n.role == "web")))
        .stderr_has("Discovered 12 node(s) in node set web")
        .run();
    // Rows of other entities count when they carry a certname (facts rows do), and the URL may
    // come from the environment; a templated query is expanded first.
    let query =
        r#"facts { name = "datacenter" and value = "{{{ inputs.dc }}}" order by certname }"#;
    let body = format!(
        "inputs:\n  dc:\n    description: datacenter\n    type: String\n{}",
        playbook(query, "")
    );
    Test::new()
        .playbook(&body)
        .env("CHORIA_PUPPETDB_URL", &pdb.url())
        .args(&["run", "pb.yaml", "--dc", "west"])
        .stderr_has(&found(&certnames(|n| n.datacenter == "west")))
        .stderr_has("Discovered 18 node(s) in node set web")
        .run();
}

#[test]
fn a_class_query_selects_the_nodes_whose_catalog_has_the_class() {
    let pdb = PuppetDb::shared();
    let query =
        r#"resources[certname] { type = "Class" and title = "Role::Db" order by certname }"#;
    Test::new()
        .playbook(&playbook(query, ""))
        .args(&["run", "pb.yaml", "--puppetdb", &pdb.url()])
        .stderr_has(&found(&certnames(|n| n.role == "db")))
        .run();
    // A resource and a fact together, then `limit` keeps the first nodes in PuppetDB's order.
    let query = r#"nodes[certname] { resources { type = "Package" and title = "nginx" } and facts { name = "datacenter" and value = "east" } order by certname }"#;
    let east_web = certnames(|n| n.role == "web" && n.datacenter == "east");
    assert_eq!(east_web.len(), 6);
    Test::new()
        .playbook(&playbook(query, "    limit: 4\n"))
        .args(&["run", "pb.yaml", "--puppetdb", &pdb.url()])
        .stderr_has(&found(&east_web[..4]))
        .stderr_has("Discovered 4 node(s) in node set web")
        .run();
}

#[test]
fn an_empty_result_follows_when_empty() {
    let pdb = PuppetDb::shared();
    let query = r#"nodes[certname] { facts { name = "role" and value = "mail" } }"#;
    Test::new()
        .playbook(&playbook(query, ""))
        .args(&["run", "pb.yaml", "--puppetdb", &pdb.url()])
        .status(1)
        .stdout_has("NodeSetError: Did not discover any nodes for nodeset web")
        .stderr_lacks("found=")
        .run();
    Test::new()
        .playbook(&playbook(
            query,
            "    when_empty: no mail servers in PuppetDB\n",
        ))
        .args(&["run", "pb.yaml", "--puppetdb", &pdb.url()])
        .status(1)
        .stdout_has("NodeSetError: no mail servers in PuppetDB")
        .stderr_lacks("found=")
        .run();
    // `empty_ok` (Choria's later option) lets the run go on with no nodes.
    Test::new()
        .playbook(&playbook(query, "    empty_ok: true\n"))
        .args(&["run", "pb.yaml", "--puppetdb", &pdb.url()])
        .stderr_has("found=")
        .stderr_has("Discovered 0 node(s) in node set web")
        .run();
}

#[test]
fn too_few_nodes_fail_at_least() {
    let pdb = PuppetDb::shared();
    let query = r#"nodes[certname] { facts { name = "role" and value = "web" } and facts { name = "datacenter" and value = "east" } }"#;
    Test::new()
        .playbook(&playbook(query, "    at_least: 7\n"))
        .args(&["run", "pb.yaml", "--puppetdb", &pdb.url()])
        .status(1)
        .stdout_has("NodeSetError: Node set web needs at least 7 nodes, got 6")
        .stderr_lacks("found=")
        .run();
    Test::new()
        .playbook(&playbook(query, "    at_least: 6\n"))
        .args(&["run", "pb.yaml", "--puppetdb", &pdb.url()])
        .stderr_has("Discovered 6 node(s) in node set web")
        .run();
}

#[test]
fn rows_without_certnames_and_refused_queries_are_errors_naming_the_query() {
    let pdb = PuppetDb::shared();
    let query = r#"facts[name, value] { name = "role" }"#;
    Test::new()
        .playbook(&playbook(query, ""))
        .args(&["run", "pb.yaml", "--puppetdb", &pdb.url()])
        .status(1)
        .stdout_has(&format!(
            "NodeSetError: pql query {query:?} returned a row that is not a certname"
        ))
        .stdout_has("select certnames, e.g. nodes[certname]")
        .stderr_lacks("found=")
        .run();
    let query = "nodes[certname] { bogus";
    Test::new()
        .playbook(&playbook(query, ""))
        .args(&["run", "pb.yaml", "--puppetdb", &pdb.url()])
        .status(1)
        .stdout_has(&format!(
            "NodeSetError: PuppetDB at {} refused pql query {query:?}: HTTP 400: PQL parse error at line 1, column 24",
            pdb.url()
        ))
        .stderr_lacks("found=")
        .run();
}

#[test]
fn an_unreachable_puppetdb_fails_before_any_task() {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}");
    let body = format!(
        "hooks:\n  pre_book:\n    - shell:\n        command: echo pre-book-ran\n{}",
        playbook("nodes[certname] {}", "")
    );
    Test::new()
        .playbook(&body)
        .args(&["run", "pb.yaml", "--puppetdb", &url])
        .status(1)
        .stdout_has(&format!(
            "NodeSetError: cannot reach PuppetDB at {url} (from --puppetdb) for pql query \"nodes[certname] {{}}\""
        ))
        .stderr_lacks("pre-book-ran")
        .stderr_lacks("found=")
        .run();
    // From the Choria config file: https on the configured host and port.
    Test::new()
        .file(
            "client.conf",
            &format!("plugin.choria.puppetdb_host = 127.0.0.1\nplugin.choria.puppetdb_port = {port}\n"),
        )
        .playbook(&body)
        .env("CHORIA_PUPPETDB_URL", "http://127.0.0.1:9")
        .args(&["run", "pb.yaml", "--config", "client.conf"])
        .status(1)
        .stdout_has(&format!(
            "NodeSetError: cannot reach PuppetDB at https://127.0.0.1:{port} (from plugin.choria.puppetdb_host/port)"
        ))
        .stderr_lacks("pre-book-ran")
        .run();
    Test::new()
        .playbook(&body)
        .args(&["run", "pb.yaml", "--puppetdb", "ftp://127.0.0.1"])
        .status(2)
        .stderr_has("playbook: PuppetDB URL \"ftp://127.0.0.1\" from --puppetdb is not http(s)://HOST[:PORT] or HOST[:PORT]")
        .run();
}

#[test]
fn https_uses_the_tls_files_of_choria_s_security_provider() {
    let pdb = PuppetDb::shared();
    let pki = pdb.pki();
    let port = pdb
        .https_url()
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    let query = r#"nodes[certname] { facts { name = "role" and value = "db" } order by certname }"#;
    let file_provider = |ca: bool, identity: bool| {
        let mut conf = format!(
            "plugin.choria.puppetdb_host = 127.0.0.1\nplugin.choria.puppetdb_port = {port}\nplugin.security.provider = file\n"
        );
        if ca {
            conf.push_str(&format!("plugin.security.file.ca = {}\n", pki.ca.display()));
        }
        if identity {
            conf.push_str(&format!(
                "plugin.security.file.certificate = {}\nplugin.security.file.key = {}\n",
                pki.certificate.display(),
                pki.key.display()
            ));
        }
        conf
    };
    Test::new()
        .file("client.conf", &file_provider(true, true))
        .playbook(&playbook(query, ""))
        .args(&["run", "pb.yaml", "--config", "client.conf"])
        .stderr_has(&found(&certnames(|n| n.role == "db")))
        .run();
    // PuppetDB requires a client certificate; without the CA the server is not trusted.
    for (ca, identity) in [(true, false), (false, true)] {
        Test::new()
            .file("client.conf", &file_provider(ca, identity))
            .playbook(&playbook(query, ""))
            .args(&["run", "pb.yaml", "--config", "client.conf"])
            .status(1)
            .stdout_has(&format!(
                "NodeSetError: cannot reach PuppetDB at {} (from plugin.choria.puppetdb_host/port)",
                pdb.https_url()
            ))
            .stderr_lacks("found=")
            .run();
    }
    // The puppet provider's layout: <ssldir>/certs/ca.pem, certs/<certname>.pem and
    // private_keys/<certname>.pem.
    let test = Test::new();
    let ssl = test.path().join("ssl");
    std::fs::create_dir_all(ssl.join("certs")).expect("mkdir");
    std::fs::create_dir_all(ssl.join("private_keys")).expect("mkdir");
    std::fs::copy(&pki.ca, ssl.join("certs/ca.pem")).expect("copy");
    std::fs::copy(&pki.certificate, ssl.join("certs/tester.mcollective.pem")).expect("copy");
    std::fs::copy(&pki.key, ssl.join("private_keys/tester.mcollective.pem")).expect("copy");
    test.file(
        "client.conf",
        &format!("plugin.choria.ssldir = {}\n", ssl.display()),
    )
    .playbook(&playbook(query, ""))
    .env("MCOLLECTIVE_CERTNAME", "tester.mcollective")
    .args(&[
        "run",
        "pb.yaml",
        "--config",
        "client.conf",
        "--puppetdb",
        &pdb.https_url(),
    ])
    .stderr_has(&found(&certnames(|n| n.role == "db")))
    .run();
}

#[test]
fn validate_refuses_an_empty_query_with_its_position() {
    Test::new()
        .playbook("nodes:\n  web:\n    type: pql\n    query: ' '\n    at_least: many\ntasks: []\n")
        .args(&["validate", "pb.yaml"])
        .status(1)
        .stdout_has("pb.yaml: invalid (2 error(s)")
        .stderr_has("pb.yaml:9:12: error: query of node set web must not be empty")
        .stderr_has("pb.yaml:10:15: error:")
        .run();
    Test::new()
        .playbook("nodes:\n  web:\n    type: pql\n    query: 'nodes[certname] {}'\n    limit: 2\n    uses: [rpcutil]\ntasks: []\n")
        .args(&["validate", "pb.yaml"])
        .stdout_has("pb.yaml: ok (0 warning(s))")
        .run();
}
