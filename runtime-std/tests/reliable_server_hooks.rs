//! The reliable server's hooks over loopback, as `server_hooks.rs` checks them for the
//! plain `Server`: the accept hook's refusals, the connection limit, connection ids, and
//! a shutdown that closes open reliable connections while their sessions stay.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use sockeye_std::{
    Client, ClientOptions, CloseCode, Config, Refusal, ReliableClient, ReliableOptions,
    ReliableServer, SessionConfig, SessionEvent, SessionId, SessionRegistry, Upgrade, WebSocket,
};

/// An upgrade request offering `sockeye.v1`, after its request line.
const UPGRADE: &str = "Host: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Protocol: sockeye.v1\r\n";

/// Runs `f` on a thread and fails if it has not finished within a minute: a generous
/// bound on a test that would otherwise hang, not a measure of its speed.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the test hung (or panicked)")
}

/// A plain client offering `sockeye.v1`: it sees the server's close code, which a
/// `ReliableClient` keeps to itself (it reconnects instead).
fn sockeye_v1_client(addr: SocketAddr) -> WebSocket {
    let options = ClientOptions {
        protocols: &["sockeye.v1"],
        ..ClientOptions::default()
    };
    Client::connect_with(&format!("ws://{addr}/"), Config::default(), options).unwrap()
}

/// Sends an upgrade request for `target` (with `extra` header lines) by hand and
/// returns the answer: all of it for a refusal, the status line and headers for a 101.
fn raw_upgrade(addr: SocketAddr, target: &str, extra: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    let request = format!("GET {target} HTTP/1.1\r\n{UPGRADE}{extra}\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    // A 101 is followed by the session's frames: stop at the end of its head.
    while stream.read(&mut byte).unwrap() == 1 {
        answer.push(byte[0]);
        if answer.starts_with(b"HTTP/1.1 101") && answer.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8(answer).unwrap()
}

/// A reliable client's options that wait long enough for a place to free up: a bound on
/// a test that would otherwise fail, not a measure of its speed.
fn patient() -> ReliableOptions {
    ReliableOptions {
        connect_timeout: Duration::from_secs(30),
        ..ReliableOptions::default()
    }
}

/// Waits for the registry's next `Established` event and returns its session.
fn next_established(registry: &SessionRegistry) -> SessionId {
    loop {
        match registry.next_event(None) {
            Some((id, SessionEvent::Established { .. })) => return id,
            Some(_) => continue,
            None => panic!("the registry's event queue ended"),
        }
    }
}

#[test]
fn shutdown_closes_an_open_reliable_connection_with_1001_and_keeps_its_session() {
    let server =
        ReliableServer::bind("127.0.0.1:0", Config::default(), SessionConfig::default()).unwrap();
    let registry = server.registry();
    let handle = server.spawn().unwrap();
    let addr = handle.local_addr();
    let (id, close, left) = bounded(move || {
        let mut ws = sockeye_v1_client(addr);
        // The session is attached and its connection running once its WELCOME arrives.
        assert!(ws.recv().unwrap().is_some(), "no WELCOME");
        let id = next_established(&registry);
        assert!(registry.is_connected(id));
        let stopping = thread::spawn(move || handle.shutdown());
        // The client answers the close while it reads; anything else is the session's.
        while ws.recv().unwrap().is_some() {}
        let close = ws.close_info().cloned().unwrap();
        let left = stopping.join().unwrap();
        (id, close, (left, registry))
    });
    let (left, registry) = left;
    assert_eq!(close.code, CloseCode::GOING_AWAY, "{close:?}");
    assert!(close.initiated_by_peer && close.is_clean(), "{close:?}");
    assert_eq!(left, 0, "every connection ended");
    // The session outlives its connection, for a resume.
    assert_eq!(registry.len(), 1);
    assert!(!registry.is_connected(id));
}

#[test]
fn the_accept_hook_refuses_with_the_status_headers_and_body_it_chose() {
    let server = ReliableServer::bind("127.0.0.1:0", Config::default(), SessionConfig::default())
        .unwrap()
        .check_origin(|origin| origin != Some("https://evil.example"))
        .on_request(|request| {
            if request.header("sockeye-token") == Some(&b"good"[..]) {
                return Ok(());
            }
            Err(Refusal::new(401)
                .with_header("WWW-Authenticate", "Bearer")
                .with_header("Content-Type", "application/json")
                .with_body(format!(r#"{{"path":"{}"}}"#, request.path())))
        });
    let registry = server.registry();
    let handle = server.spawn().unwrap();
    let addr = handle.local_addr();
    let answer = bounded(move || raw_upgrade(addr, "/chat?token=bad", ""));
    assert!(
        answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("\r\nWWW-Authenticate: Bearer\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\nContent-Type: application/json\r\n"));
    assert!(answer.ends_with("\r\n\r\n{\"path\":\"/chat?token=bad\"}"));
    // The origin policy comes first, answered 403.
    let evil = "Sockeye-Token: good\r\nOrigin: https://evil.example\r\n";
    let answer = bounded(move || raw_upgrade(addr, "/", evil));
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
    // A refused upgrade attached no session.
    assert!(registry.is_empty());

    // A request the hook likes gets through and gets a session.
    let options = ReliableOptions {
        headers: vec![("Sockeye-Token".into(), "good".into())],
        ..ReliableOptions::default()
    };
    let url = format!("ws://{addr}/");
    let client = bounded(move || ReliableClient::connect(&url, options).unwrap());
    assert!(client.is_established());
    assert_eq!(registry.len(), 1);
}

#[test]
fn over_the_limit_an_upgrade_is_answered_503_until_the_open_connection_ends() {
    let server = ReliableServer::bind("127.0.0.1:0", Config::default(), SessionConfig::default())
        .unwrap()
        .max_connections(1);
    let registry = server.registry();
    let handle = server.spawn().unwrap();
    let addr = handle.local_addr();
    bounded(move || {
        let url = format!("ws://{addr}/");
        let mut first = ReliableClient::connect(&url, ReliableOptions::default()).unwrap();
        let answer = raw_upgrade(addr, "/", "");
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert!(answer.ends_with("too many connections\n"), "{answer}");
        // The open connection did not notice.
        first.send("still here".into(), true).unwrap();
        assert!(first.wait_acked(None).unwrap());
        assert_eq!(registry.len(), 1, "the refused upgrade attached no session");
        first.close().unwrap();
        // Its place is free once its `run` has ended: this client's attempts are
        // answered 503, and it retries (its reconnect policy), until then.
        let second = ReliableClient::connect(&url, patient()).unwrap();
        assert!(second.is_established());
    });
}

#[test]
fn each_connection_has_an_id_of_its_own() {
    let server =
        ReliableServer::bind("127.0.0.1:0", Config::default(), SessionConfig::default()).unwrap();
    let registry = server.registry();
    let handle = server.spawn().unwrap();
    let url = format!("ws://{}/", handle.local_addr());
    let (mut ids, registry) = bounded(move || {
        let mut ids = Vec::new();
        let mut open = Vec::new();
        for _ in 0..3 {
            let client = ReliableClient::connect(&url, ReliableOptions::default()).unwrap();
            let session = client.session_id().unwrap();
            let id = registry.connection_id(session);
            ids.push(id.expect("a connected session names its connection"));
            open.push(client);
        }
        (ids, registry)
    });
    // A connection the application upgrades itself takes the registry's next id.
    let own = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = own.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    let serving = {
        let registry = registry.clone();
        thread::spawn(move || {
            let (stream, _) = own.accept().unwrap();
            let Ok(Upgrade::Reliable(conn)) = registry.upgrade(stream, &Config::default()) else {
                panic!("not a reliable upgrade");
            };
            tx.send((conn.connection_id(), conn.session_id())).unwrap();
            let _ = conn.run();
        })
    };
    let mut ws = bounded(move || sockeye_v1_client(addr));
    let (own_id, session) = rx.recv().unwrap();
    assert!(ws.recv().unwrap().is_some(), "no WELCOME");
    assert_eq!(registry.connection_id(session), Some(own_id));
    ws.close(CloseCode::NORMAL, "done").unwrap();
    while ws.recv().unwrap().is_some() {}
    serving.join().unwrap();

    ids.push(own_id);
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 4, "{ids:?}");
}
