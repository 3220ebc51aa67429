//! The `sockeye` binary serving TLS (`--tls-cert`, `--tls-key`) on both runtimes, with a
//! certificate the test makes (rcgen): `wss://` in plain JSON and reliable mode,
//! `https://` for the push API, and no plaintext on the TLS port.
#![cfg(feature = "tls")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use sockeye_std::{Client, ClientOptions, Config, Message};

/// A self-signed certificate for `localhost` written as PEM files into a fresh
/// directory, and a client configuration that trusts exactly it.
fn certificate(name: &str) -> (PathBuf, PathBuf, Arc<rustls::ClientConfig>) {
    let dir = std::env::temp_dir().join(format!("sockeye-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    (cert_path, key_path, sockeye_std::tls::client_config(roots))
}

/// A child process killed when dropped, so a failing test leaves no server behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary with TLS on `runtime`; returns it and its port (read from its log, which
/// must announce `wss://`).
fn spawn_tls_server(runtime: &str, cert: &PathBuf, key: &PathBuf) -> (Killed, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sockeye"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--runtime",
            runtime,
            "--tls-cert",
        ])
        .arg(cert)
        .env("SOCKEYE_TLS_KEY", key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sockeye");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let _ = tx.send(rest.to_string());
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the server logs its address");
    assert!(line.contains("wss://"), "{line}");
    let addr: std::net::SocketAddr = line.split_whitespace().next().unwrap().parse().unwrap();
    (Killed(child), addr.port())
}

/// One HTTPS request (`Connection: close`) to the server; its status and body.
fn https(port: u16, tls: &Arc<rustls::ClientConfig>, request: &str) -> (u16, String) {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(tls), name).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    // The server may end the TCP stream without close_notify after `Connection: close`.
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("https read: {e}"),
    }
    let answer = String::from_utf8(answer).unwrap();
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn push(port: u16, tls: &Arc<rustls::ClientConfig>, body: &str) -> u16 {
    let request = format!(
        "POST /api/push HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    https(port, tls, &request).0
}

fn serves_wss_https_and_reliable_mode(runtime: &str) {
    let (cert, key, tls) = certificate(runtime);
    let (_server, port) = spawn_tls_server(runtime, &cert, &key);
    let options = ClientOptions {
        tls: Some(&tls),
        ..ClientOptions::default()
    };

    // Plain JSON mode over wss://: the welcome, then a push made over https://.
    let url = format!("wss://localhost:{port}/ws?user=kim");
    let mut kim = Client::connect_tls(&url, Config::default(), options).expect("wss connect");
    assert!(
        matches!(kim.recv().unwrap(), Some(Message::Text(_))),
        "welcome"
    );
    let (status, body) = https(
        port,
        &tls,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    // Pushes that span several TLS records (the push body limit is 64 KiB).
    for i in 0..5 {
        let data = "x".repeat(i * 15_000);
        let body = format!(r#"{{"user":"kim","data":"{data}"}}"#);
        assert_eq!(push(port, &tls, &body), 202);
        let Some(Message::Text(text)) = kim.recv().unwrap() else {
            panic!("kim's connection ended");
        };
        let value: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(value["data"].as_str().unwrap().len(), data.len());
    }

    // Reliable mode over wss://: the server acknowledges what kim's client sends.
    let reliable = sockeye_std::ReliableOptions {
        tls: Some(Arc::clone(&tls)),
        ..Default::default()
    };
    let url = format!("wss://localhost:{port}/ws?user=lee");
    let mut lee = sockeye_std::ReliableClient::connect(&url, reliable).expect("reliable wss");
    lee.send(
        bytes::Bytes::from_static(br#"{"type":"join","room":"r"}"#),
        true,
    )
    .unwrap();
    assert!(lee.wait_acked(Some(Duration::from_secs(10))).unwrap());

    // Plaintext on the TLS port is not served: the handshake fails.
    let plain = format!("ws://127.0.0.1:{port}/ws?user=eve");
    let mut config = Config::default();
    config.handshake_timeout = Duration::from_secs(5);
    assert!(Client::connect(&plain, config).is_err());
}

#[test]
fn the_smol_runtime_serves_tls() {
    serves_wss_https_and_reliable_mode("smol");
}

#[test]
fn the_threads_runtime_serves_tls() {
    serves_wss_https_and_reliable_mode("threads");
}

#[test]
fn a_missing_key_file_stops_the_start_naming_it() {
    let (cert, _, _) = certificate("missing");
    let output = Command::new(env!("CARGO_BIN_EXE_sockeye"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .args(["--tls-key", "/nonexistent/key.pem"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/key.pem"), "{stderr}");
}
