//! The sockeye-std client against a Python `websockets` echo server.

use std::time::Duration;

use bytes::Bytes;
use sockeye_std::{
    Client, ClientOptions, CloseCode, Compression, DeflateConfig, DeflateParams, Event, Message,
    MessageKind, WebSocket,
};
use sockeye_tests::{bounded, echo, payload, test_config, Peer};

/// Starts `peers/echo_server.py`, connects to it, and runs `body` with the connection.
fn with_python_server(body: impl FnOnce(&mut WebSocket) + Send + 'static) {
    with_python_server_offering(None, body)
}

/// [`with_python_server`], the server answering permessage-deflate offers (websockets'
/// defaults) and our client offering `deflate` when given.
fn with_python_server_offering(
    deflate: Option<DeflateConfig>,
    body: impl FnOnce(&mut WebSocket) + Send + 'static,
) {
    bounded(Duration::from_secs(60), move || {
        let args: &[&str] = if deflate.is_some() { &["deflate"] } else { &[] };
        let server = Peer::python("echo_server.py", args);
        let line = server
            .line(Duration::from_secs(30))
            .expect("echo_server.py did not print its port");
        let port = line.strip_prefix("PORT ").expect("a PORT line");
        let url = format!("ws://127.0.0.1:{port}/");
        let options = ClientOptions {
            deflate: deflate.as_ref(),
            ..ClientOptions::default()
        };
        let mut ws = Client::connect_with(&url, test_config(), options).expect("connect");
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

/// Text that compresses well: log lines that repeat, near and far.
fn log_lines(len: usize) -> String {
    let mut text = String::new();
    let mut i = 0;
    while text.len() < len {
        text.push_str(&format!("line {} of the log, status {}\n", i % 97, i % 7));
        i += 1;
    }
    text.truncate(len);
    text
}

#[test]
fn deflate_is_negotiated_with_a_python_server_and_messages_round_trip() {
    with_python_server_offering(Some(DeflateConfig::on()), |ws| {
        // websockets answers with a 12-bit window each way: the server announces its own
        // limit unasked, and limits ours (we offer client_max_window_bits).
        assert_eq!(
            ws.deflate_params(),
            Some(&DeflateParams {
                server_no_context_takeover: false,
                client_no_context_takeover: false,
                server_max_window_bits: 12,
                client_max_window_bits: 12,
            })
        );
        echo(ws, Message::text("hi"));
        assert_eq!(
            ws.deflate_memory().compressor,
            0,
            "under min_compress_bytes: sent as it is"
        );
        // 1 MiB that compresses, compressed by us in 4 KiB contexts (our 12-bit window)
        // and by websockets on the way back.
        echo(ws, Message::text(log_lines(1 << 20)));
        let memory = ws.deflate_memory();
        assert!(memory.compressor > 0, "we compressed: {memory:?}");
        assert!(
            memory.decompressor > 0,
            "the echo came compressed: {memory:?}"
        );
        echo(ws, payload(65536, 9, false));
        // Fragments from us, compressed as they go; fragments from websockets.
        let text = log_lines(70_000);
        ws.send_fragment(
            MessageKind::Text,
            Bytes::from(text[..30_000].to_string()),
            false,
        )
        .unwrap();
        ws.send_fragment(
            MessageKind::Text,
            Bytes::from(text[30_000..].to_string()),
            true,
        )
        .unwrap();
        assert_eq!(ws.recv().unwrap(), Some(Message::text(text)));
        ws.send(Message::text("fragments:one |two |three")).unwrap();
        assert_eq!(ws.recv().unwrap(), Some(Message::text("one two three")));
        // A message we choose not to compress still round-trips.
        let secret = Message::text(log_lines(5000));
        ws.send_with(secret.clone(), Compression::Never).unwrap();
        assert_eq!(ws.recv().unwrap(), Some(secret));
        ws.close(CloseCode::NORMAL, "").unwrap();
        assert_eq!(ws.recv().unwrap(), None);
        assert_eq!(ws.deflate_memory().total(), 0, "freed once closed");
    });
}

#[test]
fn a_python_server_without_compression_declines_our_offer() {
    bounded(Duration::from_secs(60), || {
        let server = Peer::python("echo_server.py", &[]);
        let line = server.line(Duration::from_secs(30)).expect("a PORT line");
        let url = format!("ws://127.0.0.1:{}/", line.strip_prefix("PORT ").unwrap());
        let policy = DeflateConfig::on();
        let options = ClientOptions {
            deflate: Some(&policy),
            ..ClientOptions::default()
        };
        let mut ws = Client::connect_with(&url, test_config(), options).expect("connect");
        assert_eq!(ws.deflate_params(), None);
        echo(&mut ws, Message::text(log_lines(100_000)));
        assert_eq!(ws.deflate_memory().total(), 0);
    });
}
