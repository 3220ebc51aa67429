//! The std server's hooks over loopback (issue 13, point 6): the accept hook's refusals,
//! the connection limit, connection ids, a shutdown that closes open connections, and
//! handshakes that run off the accept thread.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use sockeye_std::{
    Client, CloseCode, Config, Error, HandshakeError, Message, Refusal, Server, WebSocket,
};

const UPGRADE: &str = "Host: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

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

/// Echoes every message until the connection ends.
fn echo(mut ws: WebSocket) {
    while let Ok(Some(message)) = ws.recv() {
        if ws.send(message).is_err() {
            break;
        }
    }
}

/// Sends an upgrade request for `target` by hand and returns the whole answer.
fn raw_upgrade(addr: std::net::SocketAddr, target: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(format!("GET {target} HTTP/1.1\r\n{UPGRADE}").as_bytes())
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn the_accept_hook_refuses_with_the_status_headers_and_body_it_chose() {
    let server = Server::bind("127.0.0.1:0", Config::default())
        .unwrap()
        .on_request(|request| {
            if request.query_raw("token") == Some("good") && request.header("x-app").is_some() {
                return Ok(());
            }
            Err(Refusal::new(401)
                .with_header("WWW-Authenticate", "Bearer")
                .with_header("Content-Type", "application/json")
                .with_body(format!(r#"{{"path":"{}"}}"#, request.path())))
        })
        .spawn(echo)
        .unwrap();
    let addr = server.local_addr();
    let answer = bounded(move || raw_upgrade(addr, "/chat?token=bad"));
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

    // A client sees the status; a request the hook likes gets through.
    let url = format!("ws://{addr}/chat?token=good");
    let refused = Client::connect(&url, Config::default()).unwrap_err();
    assert!(
        matches!(
            refused,
            Error::Handshake(HandshakeError::UnexpectedStatus(401))
        ),
        "{refused:?}"
    );
    let answer = bounded(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        let request = format!("GET /chat?token=good HTTP/1.1\r\nX-App: 1\r\n{UPGRADE}");
        stream.write_all(request.as_bytes()).unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).unwrap();
        head
    });
    assert_eq!(&answer, b"HTTP/1.1 101");
}

#[test]
fn incoming_upgrade_returns_the_hooks_refusal() {
    let server = Server::bind("127.0.0.1:0", Config::default())
        .unwrap()
        .on_request(|_| Err(Refusal::new(429)));
    let addr = server.local_addr().unwrap();
    let client = thread::spawn(move || raw_upgrade(addr, "/"));
    let refused = server.accept().unwrap().upgrade().unwrap_err();
    assert!(
        matches!(&refused, Error::Refused(r) if r.status() == 429),
        "{refused:?}"
    );
    assert!(client.join().unwrap().starts_with("HTTP/1.1 429 "));
}

#[test]
fn over_the_limit_an_upgrade_is_answered_503_and_open_connections_go_on() {
    let server = Server::bind("127.0.0.1:0", Config::default())
        .unwrap()
        .max_connections(1)
        .spawn(echo)
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    bounded(move || {
        let mut first = Client::connect(&url, Config::default()).unwrap();
        let refused = Client::connect(&url, Config::default()).unwrap_err();
        assert!(
            matches!(
                refused,
                Error::Handshake(HandshakeError::UnexpectedStatus(503))
            ),
            "{refused:?}"
        );
        // The open connection did not notice.
        first.send(Message::text("still here")).unwrap();
        assert_eq!(first.recv().unwrap(), Some(Message::text("still here")));
        first.close(CloseCode::NORMAL, "done").unwrap();
        assert_eq!(first.recv().unwrap(), None);
        // Its place is free again once the server side has dropped it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Client::connect(&url, Config::default()) {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    assert!(matches!(
                        e,
                        Error::Handshake(HandshakeError::UnexpectedStatus(503))
                    ));
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("the place was never freed: {e}"),
            }
        }
    });
}

#[test]
fn each_connection_has_an_id_of_its_own_that_the_handler_sees() {
    let server = Server::bind("127.0.0.1:0", Config::default())
        .unwrap()
        .spawn(|mut ws| {
            let id = ws.id().expect("a server's connection has an id");
            let _ = ws.send(Message::text(id.to_string()));
            echo(ws);
        })
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let ids = bounded(move || {
        let mut ids = Vec::new();
        let mut open = Vec::new();
        for _ in 0..3 {
            let mut ws = Client::connect(&url, Config::default()).unwrap();
            assert_eq!(ws.id(), None, "a client's connection has none");
            let id = ws.recv().unwrap().unwrap();
            ids.push(id.as_text().unwrap().parse::<u64>().unwrap());
            open.push(ws);
        }
        ids
    });
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 3, "{ids:?}");
}

#[test]
fn shutdown_closes_open_connections_with_1001_and_waits_for_them() {
    let server = Server::bind("127.0.0.1:0", Config::default())
        .unwrap()
        .spawn(echo)
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let mut ws = Client::connect(&url, Config::default()).unwrap();
    ws.send(Message::text("hi")).unwrap();
    assert_eq!(ws.recv().unwrap(), Some(Message::text("hi")));
    let stopping = thread::spawn(move || {
        let started = Instant::now();
        (server.shutdown(), started.elapsed())
    });
    let close = bounded(move || {
        assert_eq!(ws.recv().unwrap(), None);
        ws.close_info().cloned().unwrap()
    });
    assert_eq!(close.code, CloseCode::GOING_AWAY, "{close:?}");
    assert!(close.initiated_by_peer && close.is_clean(), "{close:?}");
    let (left, took) = stopping.join().unwrap();
    assert_eq!(left, 0, "every connection ended");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn shutdown_gives_up_on_a_handler_that_never_receives() {
    let (release, held) = mpsc::channel::<()>();
    let held = std::sync::Mutex::new(held);
    let server = Server::bind("127.0.0.1:0", Config::default())
        .unwrap()
        .spawn(move |ws| {
            // Holds the connection without ever calling `recv`.
            let _ = held.lock().unwrap().recv();
            drop(ws);
        })
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let _ws = Client::connect(&url, Config::default()).unwrap();
    let started = Instant::now();
    assert_eq!(server.shutdown_within(Duration::from_millis(200)), 1);
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(release);
}

#[test]
fn a_client_that_sends_half_a_request_does_not_hold_up_the_next_accept() {
    let mut config = Config::default();
    config.handshake_timeout = Duration::from_secs(30);
    let server = Server::bind("127.0.0.1:0", config).unwrap();
    let addr = server.local_addr().unwrap();
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: loc").unwrap();
    let fast = thread::spawn(move || {
        let url = format!("ws://{addr}/");
        let mut ws = Client::connect(&url, Config::default()).unwrap();
        ws.send(Message::text("fast")).unwrap();
        ws.recv().unwrap()
    });
    let started = Instant::now();
    let first = server.accept().unwrap();
    let second = server.accept().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(first.id() < second.id());
    // The slow one's handshake waits on a thread of its own.
    let slow_upgrade = thread::spawn(move || first.upgrade().map(|_| ()));
    thread::spawn(move || {
        if let Ok(ws) = second.upgrade() {
            echo(ws);
        }
    });
    let echoed = bounded(move || fast.join().unwrap());
    assert_eq!(echoed, Some(Message::text("fast")));
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(slow);
    assert!(slow_upgrade.join().unwrap().is_err());
}
