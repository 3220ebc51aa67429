//! TLS against real peers, both ways: our clients (std and smol) against Python
//! `websockets` and Node `ws` servers over `wss://`, and their clients against our std
//! and smol servers and the `sockeye` server (in process) serving TLS. Every certificate is made by the test.

use std::process::Command;
use std::time::Duration;

use sockeye_std::{Client, ClientOptions, CloseCode, Message, Server};
use sockeye_tests::{bounded, echo, node, payload, peers_dir, python, test_config, Peer, TestCert};

/// Messages every exchange goes through: text, binary, and ones larger than a TLS
/// record and a socket buffer.
fn exchange(ws: &mut sockeye_std::WebSocket<sockeye_std::TlsStream>) {
    echo(ws, Message::text("hello over tls"));
    for len in [0, 125, 16 * 1024 + 1, 65536, 1 << 20] {
        echo(ws, payload(len, 1, true));
        echo(ws, payload(len, 2, false));
    }
    ws.close(CloseCode::NORMAL, "done").unwrap();
    assert_eq!(ws.recv().unwrap(), None);
    assert_eq!(ws.close_info().unwrap().code, CloseCode::NORMAL);
}

/// A peer server started by `command` that prints `PORT <n>`; its port.
fn port_of(peer: &Peer) -> u16 {
    let line = peer
        .line(Duration::from_secs(30))
        .expect("the peer did not print its port");
    line.strip_prefix("PORT ")
        .expect("a PORT line")
        .parse()
        .unwrap()
}

#[test]
fn std_and_smol_clients_against_a_python_wss_server() {
    bounded(Duration::from_secs(60), || {
        let cert = TestCert::new("py-server");
        let mut command = Command::new(python());
        command
            .arg(peers_dir().join("echo_server.py"))
            .env("PEER_TIMEOUT", "60")
            .env("PEER_TLS_CERT", &cert.cert_pem)
            .env("PEER_TLS_KEY", &cert.key_pem);
        let server = Peer::spawn(command);
        let url = format!("wss://localhost:{}/", port_of(&server));
        let options = ClientOptions {
            tls: Some(&cert.client),
            ..ClientOptions::default()
        };
        let mut ws = Client::connect_tls(&url, test_config(), options).expect("std connect");
        exchange(&mut ws);

        smol::block_on(async {
            let mut ws = sockeye_smol::Client::connect_tls(&url, test_config(), options)
                .await
                .expect("smol connect");
            let big = payload(1 << 20, 9, false);
            ws.send(big.clone()).await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), Some(big));
            ws.close(CloseCode::NORMAL, "done").await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), None);
        });
    });
}

/// Runs `peers/tls_client.py URL CA SCENARIO` trusting `cert`; asserts it ended well
/// with a normal close.
fn python_client(url: &str, scenario: &str, cert: &TestCert) {
    let mut command = Command::new(python());
    command
        .arg(peers_dir().join("tls_client.py"))
        .arg(url)
        .arg(&cert.cert_pem)
        .arg(scenario)
        .env("PEER_TIMEOUT", "60");
    let (status, lines, stderr) = Peer::spawn(command).finish(Duration::from_secs(45));
    assert!(
        status.success(),
        "tls_client.py {scenario} failed:\n{stderr}"
    );
    assert_eq!(lines, ["ok=True close=1000"], "{stderr}");
}

/// A std TLS echo server with `cert`.
fn std_tls_echo(cert: &TestCert) -> sockeye_std::ServerHandle {
    Server::bind("127.0.0.1:0", test_config())
        .unwrap()
        .tls(std::sync::Arc::clone(&cert.server))
        .spawn(|mut ws| {
            while let Ok(Some(message)) = ws.recv() {
                if ws.send(message).is_err() {
                    break;
                }
            }
        })
        .unwrap()
}

#[test]
fn a_python_client_against_the_std_tls_server() {
    bounded(Duration::from_secs(60), || {
        let cert = TestCert::new("py-client");
        let server = std_tls_echo(&cert);
        let url = format!("wss://localhost:{}/echo", server.local_addr().port());
        python_client(&url, "echo", &cert);
    });
}

#[test]
fn std_client_against_a_node_ws_tls_server() {
    bounded(Duration::from_secs(60), || {
        let cert = TestCert::new("node-server");
        let mut command = Command::new(node());
        command
            .arg(peers_dir().join("ws_tls_echo_server.mjs"))
            .arg(&cert.cert_pem)
            .arg(&cert.key_pem)
            .env("PEER_TIMEOUT", "60");
        let server = Peer::spawn(command);
        let url = format!("wss://localhost:{}/", port_of(&server));
        let options = ClientOptions {
            tls: Some(&cert.client),
            ..ClientOptions::default()
        };
        let mut ws = Client::connect_tls(&url, test_config(), options).expect("connect");
        exchange(&mut ws);
    });
}

/// Runs `peers/ws_tls_client.mjs URL CA [MODE]` trusting `cert`; asserts it saw every
/// echo (or, with `welcome`, a greeting) and a normal close.
fn node_client_in(url: &str, cert: &TestCert, mode: &[&str]) {
    let mut command = Command::new(node());
    command
        .arg(peers_dir().join("ws_tls_client.mjs"))
        .arg(url)
        .arg(&cert.cert_pem)
        .args(mode)
        .env("PEER_TIMEOUT", "60");
    let (status, lines, stderr) = Peer::spawn(command).finish(Duration::from_secs(45));
    assert!(status.success(), "ws_tls_client.mjs failed:\n{stderr}");
    assert_eq!(lines, ["ok=true close=1000"], "{stderr}");
}

fn node_client(url: &str, cert: &TestCert) {
    node_client_in(url, cert, &[]);
}

#[test]
fn a_node_ws_client_against_the_std_and_smol_tls_servers() {
    bounded(Duration::from_secs(60), || {
        let cert = TestCert::new("node-client");
        let server = std_tls_echo(&cert);
        node_client(
            &format!("wss://localhost:{}/", server.local_addr().port()),
            &cert,
        );

        let smol_server = sockeye_smol::Server::bind("127.0.0.1:0", test_config()).unwrap();
        let port = smol_server.local_addr().unwrap().port();
        let tls = std::sync::Arc::clone(&cert.server);
        std::thread::spawn(move || {
            smol::block_on(async {
                while let Ok(incoming) = smol_server.accept().await {
                    let tls = std::sync::Arc::clone(&tls);
                    smol::spawn(async move {
                        let Ok(mut ws) = incoming.upgrade_tls(tls).await else {
                            return;
                        };
                        while let Ok(Some(message)) = ws.recv().await {
                            if ws.send(message).await.is_err() {
                                break;
                            }
                        }
                    })
                    .detach();
                }
            })
        });
        node_client(&format!("wss://localhost:{port}/"), &cert);
    });
}

#[test]
fn python_and_node_clients_against_the_sockeye_server_over_tls_on_both_runtimes() {
    bounded(Duration::from_secs(60), || {
        let cert = TestCert::new("binary");
        for runtime in ["smol", "threads"] {
            let mut config = sockeye_tests::server::server_config();
            config.tls_cert = Some(cert.cert_pem.clone());
            config.tls_key = Some(cert.key_pem.clone());
            config.runtime = match runtime {
                "smol" => sockeye::Runtime::Smol,
                _ => sockeye::Runtime::Threads,
            };
            let server = sockeye::start(config).expect("start the server with TLS");
            let port = server.local_addr().port();
            // The binary's /ws speaks plain JSON mode, which does not echo: the client
            // opens the connection and closes it cleanly.
            let url = format!("wss://localhost:{port}/ws?user=py");
            python_client(&url, "open", &cert);
            let url = format!("wss://localhost:{port}/ws?user=node");
            node_client_in(&url, &cert, &["welcome"]);
            server.shutdown();
        }
    });
}

/// One HTTPS `POST /api/push` to the server at `port`, trusting `cert`; its status.
fn https_push(port: u16, cert: &TestCert, body: &str) -> u16 {
    use std::io::{Read, Write};
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::clone(&cert.client), name).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let request = format!(
        "POST /api/push HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    // The server may end the TCP stream without close_notify after `Connection: close`.
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The number in the `data` of a pushed message a reliable client was delivered (`None`
/// for the server's other messages, such as its welcome).
fn pushed_number(payload: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(payload).unwrap();
    value["data"].as_u64()
}

/// Reliable clients (smol and std) over `wss://` through a proxy that cuts their
/// connections: each reconnects, redoes the TLS handshake, resumes its session, and
/// receives every push once and in order.
#[test]
fn reliable_clients_resume_over_wss_through_cuts() {
    use sockeye_std::{ReconnectConfig, ReliableOptions, SessionEvent};
    const PUSHES: u64 = 200;
    bounded(Duration::from_secs(60), || {
        let cert = TestCert::new("reliable");
        let mut config = sockeye_tests::server::server_config();
        config.tls_cert = Some(cert.cert_pem.clone());
        config.tls_key = Some(cert.key_pem.clone());
        let server = sockeye::start(config).expect("start the server with TLS");
        let port = server.local_addr().port();
        let mut reconnect = ReconnectConfig::default();
        reconnect.initial_delay = Duration::from_millis(5);
        reconnect.max_delay = Duration::from_millis(50);
        let options = ReliableOptions {
            reconnect,
            tls: Some(std::sync::Arc::clone(&cert.client)),
            ..ReliableOptions::default()
        };
        let push_all = |user: &str| {
            for i in 0..PUSHES {
                let body = format!(r#"{{"user":"{user}","data":{i}}}"#);
                assert_eq!(https_push(port, &cert, &body), 202, "push {i}");
            }
        };

        // smol: cuts in the TLS handshake of the first connection and mid-stream.
        let proxy =
            sockeye_tests::CuttingProxy::start(server.local_addr(), vec![700, 9_000, 30_000]);
        let url = format!("wss://localhost:{}/ws?user=ann", proxy.addr().port());
        let mut ann = smol::block_on(sockeye_smol::ReliableClient::connect(&url, options.clone()))
            .expect("smol reliable wss");
        let got = std::thread::scope(|s| {
            s.spawn(|| push_all("ann"));
            smol::block_on(async {
                let mut got = Vec::new();
                while (got.len() as u64) < PUSHES {
                    match ann
                        .next_event(Some(Duration::from_millis(100)))
                        .await
                        .unwrap()
                    {
                        Some(SessionEvent::Delivered { payload, .. }) => {
                            got.extend(pushed_number(&payload))
                        }
                        Some(SessionEvent::SessionLost { .. }) => panic!("session lost"),
                        _ => {}
                    }
                }
                got
            })
        });
        assert_eq!(got, (0..PUSHES).collect::<Vec<_>>());
        assert!(proxy.cuts_done() >= 1, "no cut happened");
        assert!(ann.connections() > 1, "never reconnected");

        // std, the same.
        let proxy =
            sockeye_tests::CuttingProxy::start(server.local_addr(), vec![700, 9_000, 30_000]);
        let url = format!("wss://localhost:{}/ws?user=bo", proxy.addr().port());
        let mut bo = sockeye_std::ReliableClient::connect(&url, options).expect("std reliable wss");
        let got = std::thread::scope(|s| {
            s.spawn(|| push_all("bo"));
            let mut got = Vec::new();
            while (got.len() as u64) < PUSHES {
                match bo.next_event(Some(Duration::from_millis(100))).unwrap() {
                    Some(SessionEvent::Delivered { payload, .. }) => {
                        got.extend(pushed_number(&payload))
                    }
                    Some(SessionEvent::SessionLost { .. }) => panic!("session lost"),
                    _ => {}
                }
            }
            got
        });
        assert_eq!(got, (0..PUSHES).collect::<Vec<_>>());
        assert!(proxy.cuts_done() >= 1, "no cut happened");
        assert!(bo.connections() > 1, "never reconnected");
        server.shutdown();
    });
}
