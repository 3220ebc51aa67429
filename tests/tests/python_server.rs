//! The sockeye-std client against a Python `websockets` echo server.

use std::time::Duration;

use bytes::Bytes;
use sockeye_std::{Client, CloseCode, Event, Message, MessageKind, WebSocket};
use sockeye_tests::{bounded, echo, payload, test_config, Peer};

/// Starts `peers/echo_server.py`, connects to it, and runs `body` with the connection.
fn with_python_server(body: impl FnOnce(&mut WebSocket) + Send + 'static) {
    bounded(Duration::from_secs(60), move || {
        let server = Peer::python("echo_server.py", &[]);
        let line = server
            .line(Duration::from_secs(30))
            .expect("echo_server.py did not print its port");
        let port = line.strip_prefix("PORT ").expect("a PORT line");
        let url = format!("ws://127.0.0.1:{port}/");
        let mut ws = Client::connect(&url, test_config()).expect("connect");
        body(&mut ws);
        drop(server);
    })
}

#[test]
fn text_and_binary_echo() {
    with_python_server(|ws| {
        echo(ws, Message::text("hello"));
        echo(ws, Message::text("héllo wörld ☃ 😀"));
        for len in [0, 125, 126, 65535, 65536] {
            echo(ws, payload(len, 1, true));
            echo(ws, payload(len, 2, false));
        }
        ws.close(CloseCode::NORMAL, "").unwrap();
        assert_eq!(ws.recv().unwrap(), None);
    });
}

#[test]
fn one_mebibyte_messages_echo() {
    with_python_server(|ws| {
        echo(ws, payload(1 << 20, 3, false));
        echo(ws, payload(1 << 20, 4, true));
    });
}

#[test]
fn fragments_both_ways() {
    with_python_server(|ws| {
        ws.send_fragment(MessageKind::Binary, Bytes::from_static(b"ab"), false)
            .unwrap();
        ws.send_fragment(MessageKind::Binary, Bytes::new(), false)
            .unwrap();
        ws.send_fragment(MessageKind::Binary, Bytes::from(vec![7u8; 70000]), true)
            .unwrap();
        let mut expected = b"ab".to_vec();
        expected.extend(vec![7u8; 70000]);
        assert!(ws.recv().unwrap() == Some(Message::binary(expected)));

        ws.send(Message::text("fragments:one |two |three")).unwrap();
        assert_eq!(ws.recv().unwrap(), Some(Message::text("one two three")));
    });
}

#[test]
fn pings_both_ways() {
    with_python_server(|ws| {
        ws.ping(Bytes::from_static(b"are you there")).unwrap();
        match ws.recv_event().unwrap() {
            Some(Event::Pong { payload, .. }) => assert_eq!(&payload[..], b"are you there"),
            other => panic!("expected a pong, got {other:?}"),
        }
        // The server pings us; the core answers, the server reports the pong.
        ws.send(Message::text("ping:xyz")).unwrap();
        assert_eq!(ws.recv().unwrap(), Some(Message::text("pong:xyz")));
    });
}

#[test]
fn client_close_codes_are_echoed() {
    for code in [1000, 4000] {
        with_python_server(move |ws| {
            ws.close(CloseCode::new(code), "bye").unwrap();
            assert_eq!(ws.recv().unwrap(), None);
            let close = ws.close_info().expect("close info");
            assert_eq!(close.code.as_u16(), code);
            assert!(!close.initiated_by_peer);
            assert!(close.is_clean());
        });
    }
}

#[test]
fn server_close_reaches_the_client() {
    with_python_server(|ws| {
        ws.send(Message::text("close:4001:python says bye"))
            .unwrap();
        assert_eq!(ws.recv().unwrap(), None);
        let close = ws.close_info().expect("close info");
        assert_eq!(close.code.as_u16(), 4001);
        assert_eq!(close.reason, "python says bye");
        assert!(close.initiated_by_peer);
        assert!(close.is_clean());
        assert!(matches!(
            ws.send(Message::text("late")),
            Err(sockeye_std::Error::Send(_))
        ));
    });
}
