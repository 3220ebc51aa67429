//! Two `sockeye` nodes on a real `redis-server` reached over TLS (`--redis rediss://…`,
//! `--redis-ca-cert`) and on one that wants a password (`redis://:PASSWORD@…`,
//! `redis://USER:PASSWORD@…`): pushes cross nodes as on a plain Redis. A node given a
//! Redis certificate its CA did not sign, or the wrong password, never takes the backend
//! as up: `/healthz` and pushes answer 503. Runs on the runtime `SOCKEYE_RUNTIME` names.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sockeye::RunningServer;
use sockeye_tests::redis::{wait_until, RedisServer, RedisTls};
use sockeye_tests::server::JsonClient;
use sockeye_tests::server::{body, get, metric, push, server_config, start_server, status};
use sockeye_tests::{bounded, TestCert};

/// Every test's bound: a hang fails instead.
const LIMIT: Duration = Duration::from_secs(60);
/// How long a condition that depends on Redis may take to hold.
const SETTLE: Duration = Duration::from_secs(15);

/// A CA of this test and a certificate it signed for `127.0.0.1` and `localhost`, as
/// PEM files in a directory of their own.
struct TestCa {
    dir: PathBuf,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let dir = std::env::temp_dir().join(format!("sockeye-ca-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the certificates");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "sockeye test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("a CA key");
        let ca = ca.self_signed(&ca_key).expect("the CA certificate");
        let server = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("server parameters");
        let key = KeyPair::generate().expect("a server key");
        let cert = server
            .signed_by(&key, &ca, &ca_key)
            .expect("the server certificate");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca.pem");
        std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert.pem");
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key.pem");
        TestCa { dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn redis_tls(&self) -> RedisTls {
        RedisTls {
            cert: self.dir.join("cert.pem"),
            key: self.dir.join("key.pem"),
            ca: self.ca(),
        }
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn node(url: &str, ca_cert: Option<&Path>) -> RunningServer {
    let mut config = server_config();
    config.redis = Some(url.to_string());
    config.redis_ca_cert = ca_cert.map(Path::to_path_buf);
    config.redis_prefix = "test:".into();
    start_server(config)
}

/// A node configured by the flags `args` (as the binary parses them), on a free port.
fn node_from_flags(args: &[&str]) -> RunningServer {
    let defaults = server_config();
    let mut flags = vec!["--listen", "127.0.0.1:0", "--redis-prefix", "test:"];
    flags.extend(args);
    let sockeye::Command::Run(mut config) = sockeye::parse(flags.iter().map(|a| a.to_string()))
        .unwrap_or_else(|e| panic!("{flags:?}: {e}"))
    else {
        panic!("{flags:?} is not a run");
    };
    (config.log_level, config.runtime) = (defaults.log_level, defaults.runtime);
    start_server(*config)
}

/// Waits until node `addr` has `count` confirmed subscriptions.
fn subscribed(addr: SocketAddr, count: u64) {
    wait_until(
        SETTLE,
        &format!("{addr} subscribed to {count} channels"),
        || {
            metric(
                body(&get(addr, "/metrics")),
                "sockeye_cluster_subscriptions",
            ) == count
        },
    );
}

fn accepted(response: &str) -> Value {
    assert_eq!(status(response), 202, "{response}");
    serde_json::from_str(body(response)).expect("a JSON answer")
}

fn cluster_metric(addr: SocketAddr, name: &str) -> u64 {
    metric(body(&get(addr, "/metrics")), name)
}

/// Waits until both nodes are up and subscribed to `all`, `nodes` and their own channel.
fn both_up(a: &RunningServer, b: &RunningServer) {
    subscribed(a.local_addr(), 3);
    subscribed(b.local_addr(), 3);
}

/// A push from node `from` to `user`, connected to node `to` only, arrives: the two
/// share the backend (after [`both_up`]). The user's connection is returned, so that
/// the count of subscriptions only grows.
fn push_crosses(from: SocketAddr, to: SocketAddr, user: &str) -> JsonClient {
    let before = cluster_metric(to, "sockeye_cluster_subscriptions");
    let mut client = JsonClient::connect(to, &format!("user={user}"));
    subscribed(to, before + 1);
    let answer = accepted(&push(
        from,
        "",
        &format!(r#"{{"user":"{user}","data":"to {user}"}}"#),
    ));
    assert_eq!(answer["queued"]["remote_nodes"], 1, "{answer}");
    assert_eq!(client.recv_type("message")["data"], format!("to {user}"));
    client
}

/// Node `addr` takes its backend as down: `/healthz` and pushes answer 503.
fn backend_down(addr: SocketAddr) {
    let health = get(addr, "/healthz");
    assert_eq!(status(&health), 503, "{health}");
    assert!(body(&health).contains("redis unreachable"), "{health}");
    let refused = push(addr, "", r#"{"user":"kim","data":"refused"}"#);
    assert_eq!(status(&refused), 503, "{refused}");
    assert!(body(&refused).contains("unreachable"), "{refused}");
}

#[test]
fn two_nodes_share_pushes_over_tls_to_redis_verified_by_its_ca() {
    bounded(LIMIT, || {
        let ca = TestCa::new("rediss");
        let redis = RedisServer::start_tls(ca.redis_tls());
        assert!(redis.url().starts_with("rediss://127.0.0.1:"));
        let a = node(&redis.url(), Some(&ca.ca()));
        let ca_file = ca.ca().display().to_string();
        let b = node_from_flags(&["--redis", &redis.url(), "--redis-ca-cert", &ca_file]);
        both_up(&a, &b);
        let _kim = push_crosses(a.local_addr(), b.local_addr(), "kim");
        let _lee = push_crosses(b.local_addr(), a.local_addr(), "lee");
    });
}

/// A TLS server that is not Redis: it shows a self-signed certificate and reports how
/// each handshake ended.
fn tls_server_reporting_handshakes() -> (SocketAddr, mpsc::Receiver<String>) {
    let cert = TestCert::new("not-redis");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let (report, handshakes) = mpsc::channel();
    let config: Arc<rustls::ServerConfig> = cert.server;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut tls = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let outcome = loop {
                match tls.complete_io(&mut stream) {
                    Ok(_) if !tls.is_handshaking() => break "handshake done".to_string(),
                    Ok((0, 0)) => break "closed".to_string(),
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break "timed out".into(),
                    Err(e) => break e.to_string(),
                }
            };
            if report.send(outcome).is_err() {
                return;
            }
        }
    });
    (addr, handshakes)
}

#[test]
fn a_rediss_node_refuses_a_certificate_its_roots_did_not_sign() {
    bounded(LIMIT, || {
        let (addr, handshakes) = tls_server_reporting_handshakes();
        let url = format!("rediss://{addr}");
        let ca = TestCa::new("other");
        // Trusting this test's CA only, and trusting the platform's roots: neither
        // signed the server's self-signed certificate.
        for ca_cert in [Some(ca.ca()), None] {
            let lonely = node(&url, ca_cert.as_deref());
            let outcome = handshakes
                .recv_timeout(SETTLE)
                .expect("the node tried a handshake");
            assert!(
                outcome.contains("UnknownCA") || outcome.contains("BadCertificate"),
                "{ca_cert:?}: the handshake ended: {outcome}"
            );
            backend_down(lonely.local_addr());
            drop(lonely);
            // The rest of this node's attempts.
            while handshakes.try_recv().is_ok() {}
        }
    });
}

#[test]
fn a_ca_file_without_a_certificate_fails_the_start() {
    let ca = TestCa::new("empty");
    let empty = ca.dir.join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    for (path, why) in [
        (empty, "no PEM certificate"),
        (ca.dir.join("missing.pem"), "missing.pem"),
    ] {
        let mut config = server_config();
        config.redis = Some("rediss://127.0.0.1:1".into());
        config.redis_ca_cert = Some(path);
        let Err(e) = sockeye::start(config) else {
            panic!("started with --redis-ca-cert {why}");
        };
        let e = e.to_string();
        assert!(e.contains("--redis-ca-cert") && e.contains(why), "{e}");
    }
}

#[test]
fn two_nodes_share_pushes_on_a_redis_with_a_password_and_a_wrong_one_is_down() {
    bounded(LIMIT, || {
        // As written in the URL: `:`, `/` and `@` in a password need no escaping.
        let password = "pa:ss/w@rd";
        let redis = RedisServer::start_with_password(password);
        // Both forms: a password alone, and the `default` user with it (ACL `AUTH`).
        let a = node(&redis.url(), None);
        let with_user = redis.url().replacen("redis://:", "redis://default:", 1);
        let b = node(&with_user, None);
        both_up(&a, &b);
        let _kim = push_crosses(a.local_addr(), b.local_addr(), "kim");
        let _lee = push_crosses(b.local_addr(), a.local_addr(), "lee");

        let refused_before = redis.auth_failures();
        let wrong = node(&redis.url_with_password("wrong"), None);
        // Both of its connections asked and were refused; it is never up.
        wait_until(SETTLE, "redis refused the wrong password twice", || {
            redis.auth_failures() >= refused_before + 2
        });
        backend_down(wrong.local_addr());
        // The others are unaffected.
        let _max = push_crosses(a.local_addr(), b.local_addr(), "max");
    });
}
