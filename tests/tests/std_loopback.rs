//! The sockeye-std client against the sockeye-std server over 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use sockeye_std::{
    Client, ClientOptions, CloseCode, ConnectionError, Error, Event, HandshakeError, Message,
    MessageKind, Server, UrlError, WebSocket,
};
use sockeye_tests::{bounded, echo, payload, spawn_std_echo_server, test_config};

/// Connects a std client to a fresh std echo server and runs `body` with it.
fn with_echo(body: impl FnOnce(&mut WebSocket) + Send + 'static) {
    bounded(Duration::from_secs(30), move || {
        let server = spawn_std_echo_server(test_config());
        let url = format!("ws://{}/loop?x=1", server.local_addr());
        let mut ws = Client::connect(&url, test_config()).expect("connect");
        body(&mut ws);
    })
}

#[test]
fn every_length_form_echoes() {
    with_echo(|ws| {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 1 << 20] {
            echo(ws, payload(len, len as u8, false));
            echo(ws, payload(len, len as u8, true));
        }
    });
}

#[test]
fn fragmented_messages_both_ways() {
    with_echo(|ws| {
        for (i, part) in ["a", "", "bc", "d"].into_iter().enumerate() {
            ws.send_fragment(MessageKind::Text, Bytes::from(part), i == 3)
                .unwrap();
        }
        // A ping between fragments is allowed (§5.4) and answered before the message.
        ws.send_fragment(MessageKind::Binary, Bytes::from_static(b"12"), false)
            .unwrap();
        ws.ping(Bytes::from_static(b"mid")).unwrap();
        ws.send_fragment(MessageKind::Binary, Bytes::from(vec![3u8; 100_000]), true)
            .unwrap();
        // The server's core answers the ping as soon as it reads it, so the pong may come
        // before the echo of the text message sent earlier; collect events in any order.
        let mut expected = b"12".to_vec();
        expected.extend(vec![3u8; 100_000]);
        let (mut text, mut pong, mut binary) = (false, false, false);
        while !(text && pong && binary) {
            match ws.recv_event().unwrap() {
                Some(Event::Message(m)) if m == Message::text("abcd") => text = true,
                Some(Event::Message(m)) => {
                    assert!(text, "binary echo before the text echo");
                    assert!(
                        m == Message::binary(expected.clone()),
                        "binary echo differs"
                    );
                    binary = true;
                }
                Some(Event::Pong { payload, .. }) => {
                    assert_eq!(&payload[..], b"mid");
                    pong = true;
                }
                other => panic!("unexpected {other:?}"),
            }
        }

        ws.send(Message::text("fragments:x|y|z")).unwrap();
        assert_eq!(ws.recv().unwrap(), Some(Message::text("xyz")));
    });
}

#[test]
fn pings_both_ways() {
    with_echo(|ws| {
        ws.ping(Bytes::from(vec![9u8; 125])).unwrap();
        match ws.recv_event().unwrap() {
            Some(Event::Pong { payload, .. }) => assert_eq!(payload.len(), 125),
            other => panic!("expected a pong, got {other:?}"),
        }
        assert!(ws.ping(Bytes::from(vec![0u8; 126])).is_err());
        ws.send(Message::text("ping:from server")).unwrap();
        match ws.recv_event().unwrap() {
            Some(Event::Ping(payload)) => assert_eq!(&payload[..], b"from server"),
            other => panic!("expected a ping, got {other:?}"),
        }
        echo(ws, Message::text("still open"));
    });
}

#[test]
fn client_closes() {
    for code in [1000, 4000] {
        with_echo(move |ws| {
            ws.close(CloseCode::new(code), "client bye").unwrap();
            assert!(ws.send(Message::text("too late")).is_err());
            assert_eq!(ws.recv().unwrap(), None);
            let close = ws.close_info().unwrap();
            assert_eq!(close.code.as_u16(), code);
            assert!(!close.initiated_by_peer && close.is_clean());
            assert_eq!(ws.recv().unwrap(), None);
        });
    }
}

#[test]
fn server_closes() {
    with_echo(|ws| {
        ws.send(Message::text("close:4002:server bye")).unwrap();
        assert_eq!(ws.recv().unwrap(), None);
        let close = ws.close_info().unwrap();
        assert_eq!(
            (close.code.as_u16(), close.reason.as_str()),
            (4002, "server bye")
        );
        assert!(close.initiated_by_peer && close.is_clean());
    });
}

#[test]
fn messages_before_a_server_close_arrive_first() {
    with_echo(|ws| {
        ws.send(Message::text("one")).unwrap();
        ws.send(Message::text("two")).unwrap();
        ws.send(Message::text("close:1000:")).unwrap();
        assert_eq!(ws.recv().unwrap(), Some(Message::text("one")));
        assert_eq!(ws.recv().unwrap(), Some(Message::text("two")));
        assert_eq!(ws.recv().unwrap(), None);
        assert_eq!(ws.close_info().unwrap().code.as_u16(), 1000);
    });
}

#[test]
fn server_sees_path_and_chosen_protocol() {
    bounded(Duration::from_secs(30), || {
        let server = Server::bind("127.0.0.1:0", test_config())
            .unwrap()
            .select_protocol(|req| req.protocols().find(|p| *p == "chat").map(String::from))
            .spawn(|mut ws| {
                let info = format!("{:?} {:?}", ws.path(), ws.protocol());
                let _ = ws.send(Message::text(info));
                while let Ok(Some(_)) = ws.recv() {}
            })
            .unwrap();
        let url = format!("ws://{}/room/7?user=a", server.local_addr());
        let options = ClientOptions {
            protocols: &["superchat", "chat"],
            ..ClientOptions::default()
        };
        let mut ws = Client::connect_with(&url, test_config(), options).unwrap();
        assert_eq!(ws.protocol(), Some("chat"));
        assert_eq!(
            ws.recv().unwrap(),
            Some(Message::text(r#"Some("/room/7?user=a") Some("chat")"#))
        );
    });
}

#[test]
fn origin_policy_refuses_with_403() {
    bounded(Duration::from_secs(30), || {
        let server = Server::bind("127.0.0.1:0", test_config())
            .unwrap()
            .check_origin(|origin| origin == Some("http://good.example"))
            .spawn(|_| {})
            .unwrap();
        let url = format!("ws://{}/", server.local_addr());
        let bad = ClientOptions {
            origin: Some("http://evil.example"),
            ..ClientOptions::default()
        };
        match Client::connect_with(&url, test_config(), bad) {
            Err(Error::Handshake(HandshakeError::UnexpectedStatus(403))) => {}
            other => panic!("expected a 403, got {other:?}"),
        }
        let good = ClientOptions {
            origin: Some("http://good.example"),
            ..ClientOptions::default()
        };
        assert!(Client::connect_with(&url, test_config(), good).is_ok());
    });
}

#[test]
fn plain_http_gets_an_http_error_not_a_hang() {
    bounded(Duration::from_secs(30), || {
        let server = spawn_std_echo_server(test_config());
        let mut tcp = TcpStream::connect(server.local_addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 4"), "{answer:?}");
    });
}

#[test]
fn wss_and_bad_urls_are_refused() {
    for (url, why) in [
        ("wss://example.com/", UrlError::ExpectedWs),
        ("http://example.com/", UrlError::UnsupportedScheme),
        ("ws://", UrlError::InvalidHost),
    ] {
        match Client::connect(url, test_config()) {
            Err(Error::Url(e)) => assert_eq!(e, why, "{url}"),
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[test]
fn connection_refused_is_an_io_error() {
    // Bind then drop a listener to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/");
    assert!(matches!(
        Client::connect(&url, test_config()),
        Err(Error::Io(_))
    ));
}

/// A raw TCP client that sends the RFC 6455 §1.3 upgrade request and nothing else; what
/// it reads afterwards, if anything, is up to the test.
fn raw_upgrade(addr: std::net::SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    tcp
}

#[test]
fn a_peer_that_stops_reading_fails_the_send_instead_of_hanging() {
    bounded(Duration::from_secs(30), || {
        let mut config = test_config();
        config.pong_timeout = Duration::from_millis(500);
        let (tx, rx) = std::sync::mpsc::channel();
        let server = Server::bind("127.0.0.1:0", config)
            .unwrap()
            .spawn(move |mut ws| {
                let big = payload(1 << 20, 0, false);
                let result = (0..1000).try_for_each(|_| ws.send(big.clone()));
                let _ = tx.send(result);
            })
            .unwrap();
        // A client that completes the handshake and then never reads.
        let tcp = raw_upgrade(server.local_addr());
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Err(Error::Connection(ConnectionError::WriteTimeout))) => {}
            other => panic!("expected the send to fail with a write timeout, got {other:?}"),
        }
        drop(tcp);
    });
}

#[test]
fn keepalive_pings_fire_while_waiting_in_recv() {
    bounded(Duration::from_secs(30), || {
        let mut config = test_config();
        config.ping_interval = Some(Duration::from_millis(100));
        let server = Server::bind("127.0.0.1:0", config)
            .unwrap()
            .spawn(|mut ws| {
                while let Ok(Some(_)) = ws.recv() {
                    let measured = ws.rtt().is_some();
                    if ws
                        .send(Message::text(format!("rtt measured: {measured}")))
                        .is_err()
                    {
                        break;
                    }
                }
            })
            .unwrap();
        let mut client_config = test_config();
        client_config.ping_interval = None;
        let url = format!("ws://{}/", server.local_addr());
        let mut ws = Client::connect(&url, client_config).unwrap();
        // The server's keepalive ping arrives without either side sending anything.
        match ws.recv_event().unwrap() {
            Some(Event::Ping(_)) => {}
            other => panic!("expected the server's keepalive ping, got {other:?}"),
        }
        ws.send(Message::text("rtt?")).unwrap();
        assert_eq!(
            ws.recv().unwrap(),
            Some(Message::text("rtt measured: true"))
        );
    });
}

#[test]
fn a_peer_that_never_answers_pings_is_dropped() {
    bounded(Duration::from_secs(30), || {
        let mut config = test_config();
        config.ping_interval = Some(Duration::from_millis(100));
        config.pong_timeout = Duration::from_millis(200);
        let (tx, rx) = std::sync::mpsc::channel();
        let server = Server::bind("127.0.0.1:0", config)
            .unwrap()
            .spawn(move |mut ws| {
                let _ = tx.send(ws.recv());
            })
            .unwrap();
        let mut tcp = raw_upgrade(server.local_addr());
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Err(Error::Connection(ConnectionError::KeepaliveTimeout))) => {}
            other => panic!("expected a keepalive timeout, got {other:?}"),
        }
        // The server sent 101, a ping, then a 1001 close, then closed the socket.
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut received = Vec::new();
        tcp.read_to_end(&mut received).unwrap();
        let close = [0x88, 0x02, 0x03, 0xe9];
        assert!(received.ends_with(&close), "no 1001 close at the end");
    });
}

#[test]
fn a_silent_client_gets_408_after_the_handshake_timeout() {
    bounded(Duration::from_secs(30), || {
        let mut config = test_config();
        config.handshake_timeout = Duration::from_millis(200);
        let server = spawn_std_echo_server(config);
        let mut tcp = TcpStream::connect(server.local_addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    });
}

#[test]
fn a_silent_server_fails_the_client_handshake_in_time() {
    bounded(Duration::from_secs(30), || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let mut config = test_config();
        config.handshake_timeout = Duration::from_millis(200);
        match Client::connect(&url, config) {
            Err(Error::Handshake(HandshakeError::Timeout)) => {}
            other => panic!("expected a handshake timeout, got {other:?}"),
        }
        drop(listener);
    });
}

#[test]
fn dropping_the_server_handle_stops_accepting() {
    bounded(Duration::from_secs(30), || {
        let server = spawn_std_echo_server(test_config());
        let url = format!("ws://{}/", server.local_addr());
        assert!(Client::connect(&url, test_config()).is_ok());
        drop(server);
        assert!(matches!(
            Client::connect(&url, test_config()),
            Err(Error::Io(_))
        ));
    });
}
