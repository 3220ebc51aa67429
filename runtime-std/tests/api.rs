//! The std runtime's public API over loopback: timed receives, sender handles,
//! backpressure and blocked writes (issue 13).

use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use sockeye_std::{
    Client, CloseCode, Config, ConnectionError, Error, Message, Recv, Server, WebSocket,
};

/// A server that echoes one message, then closes the connection normally.
fn echo_once_then_close() -> sockeye_std::ServerHandle {
    Server::bind("127.0.0.1:0", Config::default())
        .unwrap()
        .spawn(|mut ws| {
            if let Ok(Some(message)) = ws.recv() {
                let _ = ws.send(message);
            }
            let _ = ws.close(CloseCode::NORMAL, "bye");
            while let Ok(Some(_)) = ws.recv() {}
        })
        .unwrap()
}

#[test]
fn a_loop_over_recv_timeout_ends_when_the_connection_does() {
    let server = echo_once_then_close();
    let url = format!("ws://{}/", server.local_addr());
    let mut ws = Client::connect(&url, Config::default()).unwrap();
    // Nothing was sent yet: the deadline passes, the connection stays open.
    assert_eq!(
        ws.recv_timeout(Duration::from_millis(1)).unwrap(),
        Recv::TimedOut
    );
    ws.send(Message::text("hi")).unwrap();
    let mut messages = Vec::new();
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls < 100_000, "the loop spun after the close");
        match ws.recv_timeout(Duration::from_millis(10)).unwrap() {
            Recv::Ready(message) => messages.push(message),
            Recv::TimedOut => continue,
            Recv::Closed => break,
        }
    }
    assert_eq!(messages, [Message::text("hi")]);
    assert!(ws.close_info().is_some_and(|c| c.is_clean()));
    // Every later call says the same, without waiting.
    assert_eq!(
        ws.recv_timeout(Duration::from_secs(60)).unwrap(),
        Recv::Closed
    );
    let later = ws.now() + Duration::from_secs(60);
    assert_eq!(ws.recv_event_until(Some(later)).unwrap(), Recv::Closed);
    assert_eq!(ws.recv().unwrap(), None);
}

#[test]
fn recv_event_until_reports_the_close_once_then_closed() {
    let server = echo_once_then_close();
    let url = format!("ws://{}/", server.local_addr());
    let mut ws = Client::connect(&url, Config::default()).unwrap();
    ws.send(Message::binary(vec![1, 2, 3])).unwrap();
    let mut closed_events = 0;
    loop {
        let deadline = ws.now() + Duration::from_millis(10);
        match ws.recv_event_until(Some(deadline)).unwrap() {
            Recv::Ready(sockeye_std::Event::Closed(close)) => {
                assert!(close.is_clean());
                closed_events += 1;
            }
            Recv::Ready(_) | Recv::TimedOut => {}
            Recv::Closed => break,
        }
    }
    assert_eq!(closed_events, 1);
}

/// A server-side connection whose client completed the handshake and then reads
/// nothing, ever: the raw stream is returned to keep it open.
fn server_with_deaf_client(config: Config) -> (WebSocket, TcpStream) {
    let server = Server::bind("127.0.0.1:0", config).unwrap();
    let mut peer = TcpStream::connect(server.local_addr().unwrap()).unwrap();
    peer.write_all(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    (server.accept().unwrap().upgrade().unwrap(), peer)
}

#[test]
fn a_send_to_a_peer_that_reads_nothing_fails_with_a_write_timeout_and_recv_agrees() {
    let mut config = Config::default();
    config.pong_timeout = Duration::from_millis(200);
    config.ping_interval = None;
    let (mut ws, peer) = server_with_deaf_client(config);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let message = Message::binary(vec![0u8; 1 << 20]);
        let mut sent = 0;
        let error = loop {
            match ws.send(message.clone()) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(
                sent < 4096,
                "the kernel took 4 GiB for a peer that reads nothing"
            );
        };
        let after = ws.recv();
        let _ = tx.send((error, after, ws.close_info().cloned()));
    });
    // A generous bound on the whole test, not a measure of the timeout.
    let (error, after, close) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the send never failed");
    assert!(
        matches!(error, Error::Connection(ConnectionError::WriteTimeout)),
        "{error:?}"
    );
    assert!(
        matches!(after, Err(Error::Connection(ConnectionError::WriteTimeout))),
        "{after:?}"
    );
    let close = close.expect("recv reported the end");
    assert_eq!(close.error, Some(ConnectionError::WriteTimeout));
    drop(peer);
}

/// A config with no keepalive, so that nothing but a sender's wake-up can end a wait.
fn quiet_config() -> Config {
    let mut config = Config::default();
    config.ping_interval = None;
    config
}

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

#[test]
fn a_writer_thread_sends_while_the_reader_blocks_in_recv() {
    let server = Server::bind("127.0.0.1:0", quiet_config())
        .unwrap()
        .spawn(|mut ws| {
            while let Ok(Some(message)) = ws.recv() {
                if ws.send(message).is_err() {
                    break;
                }
            }
        })
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let received = bounded(move || {
        let mut ws = Client::connect(&url, quiet_config()).unwrap();
        let sender = ws.sender().unwrap();
        let writer = thread::spawn(move || {
            for i in 0..100 {
                sender.send(Message::text(format!("{i}"))).unwrap();
            }
            // Clones feed the same connection, from any thread.
            let clone = sender.clone();
            thread::spawn(move || clone.send(Message::text("last")).unwrap())
                .join()
                .unwrap();
            sender
        });
        let mut received = Vec::new();
        while let Some(message) = ws.recv().unwrap() {
            received.push(message.as_text().unwrap().to_string());
            if received.len() == 101 {
                let sender = writer.join().unwrap();
                sender.close(CloseCode::NORMAL, "done").unwrap();
                assert!(matches!(
                    sender.send(Message::text("too late")),
                    Err(Error::Send(sockeye_std::SendError::Closed))
                ));
                // Block in `recv` until the close completes.
                assert_eq!(ws.recv().unwrap(), None);
                assert!(ws.close_info().is_some_and(|c| c.is_clean()));
                break;
            }
        }
        received
    });
    let expected: Vec<String> = (0..100)
        .map(|i| i.to_string())
        .chain(["last".to_string()])
        .collect();
    assert_eq!(received, expected);
}

#[test]
fn a_server_handler_pushes_from_another_thread_while_it_reads() {
    let server = Server::bind("127.0.0.1:0", quiet_config())
        .unwrap()
        .spawn(|mut ws| {
            let sender = ws.sender().unwrap();
            let pusher = thread::spawn(move || {
                for i in 0..10 {
                    if sender.send(Message::text(format!("tick {i}"))).is_err() {
                        break;
                    }
                }
            });
            while let Ok(Some(_)) = ws.recv() {}
            let _ = pusher.join();
        })
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    bounded(move || {
        let mut ws = Client::connect(&url, quiet_config()).unwrap();
        for i in 0..10 {
            let message = ws.recv().unwrap().expect("a tick");
            assert_eq!(message, Message::text(format!("tick {i}")));
        }
        ws.close(CloseCode::NORMAL, "").unwrap();
        assert_eq!(ws.recv().unwrap(), None);
    });
}

#[test]
fn a_full_sender_hands_the_message_back() {
    let mut config = quiet_config();
    config.max_send_queue_bytes = 100;
    let server = Server::bind("127.0.0.1:0", config.clone())
        .unwrap()
        .spawn(|mut ws| while let Ok(Some(_)) = ws.recv() {})
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    bounded(move || {
        let mut ws = Client::connect(&url, config).unwrap();
        let sender = ws.sender().unwrap();
        let message = Message::binary(vec![7u8; 60]);
        // The owner is not receiving, so nothing moves: the second message is over the
        // limit and comes back.
        sender.try_send(message.clone()).unwrap();
        match sender.try_send(message.clone()) {
            Err(Error::Full(back)) => assert_eq!(back, message),
            other => panic!("expected Full, got {other:?}"),
        }
        // Once the owner runs, the queue drains and takes the message again.
        assert_eq!(
            ws.recv_timeout(Duration::from_millis(1)).unwrap(),
            Recv::TimedOut
        );
        sender.try_send(message).unwrap();
        // A sender blocked on a full queue is released when the owner goes away.
        let blocked = {
            let sender = sender.clone();
            thread::spawn(move || {
                let big = Message::binary(vec![0u8; 1000]);
                loop {
                    if let Err(e) = sender.send(big.clone()) {
                        return e;
                    }
                }
            })
        };
        drop(ws);
        let error = blocked.join().unwrap();
        assert!(
            matches!(error, Error::Send(sockeye_std::SendError::Closed)),
            "{error:?}"
        );
    });
}

#[test]
fn a_sender_crosses_threads() {
    fn send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    send_sync_clone::<sockeye_std::Sender>();
}

#[test]
fn a_full_reliable_window_hands_the_message_back_on_both_sides() {
    use sockeye_std::{ReliableClient, ReliableOptions, ReliableServer, SessionConfig};
    bounded(|| {
        let mut session = SessionConfig::default();
        session.window_messages = 1;
        let server = ReliableServer::bind("127.0.0.1:0", quiet_config(), session.clone()).unwrap();
        let registry = server.registry();
        let url = format!("ws://{}/", server.local_addr().unwrap());
        let _accepting = server.spawn().unwrap();
        let options = ReliableOptions {
            config: quiet_config(),
            session,
            ..ReliableOptions::default()
        };
        let mut client = ReliableClient::connect(&url, options).unwrap();
        let id = client.session_id().expect("established");
        // Nothing drives either side in between, so no ack can make room.
        client.try_send(Message::text("one")).unwrap();
        match client.try_send(Message::text("two")) {
            Err(Error::Full(back)) => assert_eq!(back, Message::text("two")),
            other => panic!("expected Full, got {other:?}"),
        }
        registry.try_send(id, Message::binary(vec![1])).unwrap();
        match registry.try_send(id, Message::binary(vec![2])) {
            Err(Error::Full(back)) => assert_eq!(back, Message::binary(vec![2])),
            other => panic!("expected Full, got {other:?}"),
        }
    });
}

#[test]
fn senders_to_a_peer_that_reads_nothing_are_held_back_then_released() {
    let mut config = quiet_config();
    config.pong_timeout = Duration::from_millis(200);
    config.max_send_queue_bytes = 1 << 20;
    let (mut ws, peer) = server_with_deaf_client(config);
    let sender = ws.sender().unwrap();
    let (error, sender_error) = bounded(move || {
        let writer = thread::spawn(move || {
            let message = Message::binary(vec![0u8; 1 << 20]);
            for _ in 0..4096 {
                if let Err(e) = sender.send(message.clone()) {
                    return e;
                }
            }
            panic!("4 GiB went to a peer that reads nothing");
        });
        // The owner writes while it waits for input, and gives up on the peer.
        let error = ws.recv().unwrap_err();
        (error, writer.join().unwrap())
    });
    assert!(
        matches!(error, Error::Connection(ConnectionError::WriteTimeout)),
        "{error:?}"
    );
    assert!(
        matches!(sender_error, Error::Send(sockeye_std::SendError::Closed)),
        "{sender_error:?}"
    );
    drop(peer);
}

#[test]
fn a_reliable_connect_to_a_refused_port_times_out_saying_why() {
    use sockeye_std::{ReliableClient, ReliableError, ReliableOptions};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = ReliableOptions {
        connect_timeout: Duration::from_millis(300),
        ..ReliableOptions::default()
    };
    let error = bounded(move || {
        ReliableClient::connect(&format!("ws://127.0.0.1:{port}/"), options).unwrap_err()
    });
    assert!(
        error
            .to_string()
            .to_lowercase()
            .contains("connection refused"),
        "{error}"
    );
    match &error {
        Error::Reliable(ReliableError::Timeout { last: Some(last) }) => {
            assert!(matches!(**last, Error::Io(_)), "{last:?}");
        }
        other => panic!("expected a timeout with its cause, got {other:?}"),
    }
    let source = std::error::Error::source(&error).expect("the cause is kept");
    assert!(source
        .to_string()
        .to_lowercase()
        .contains("connection refused"));
}

#[test]
fn server_and_reliable_constructors_share_the_crates_result() {
    // `bind`, `serve`, `spawn` and the reliable server's answer `sockeye_std::Result`,
    // so one `?` serves them all next to `accept` and `recv`.
    fn start() -> sockeye_std::Result<(sockeye_std::ServerHandle, sockeye_std::ServerHandle)> {
        let plain = Server::bind("127.0.0.1:0", Config::default())?.spawn(|_| {})?;
        let reliable = sockeye_std::ReliableServer::bind(
            "127.0.0.1:0",
            Config::default(),
            sockeye_std::SessionConfig::default(),
        )?
        .spawn()?;
        Ok((plain, reliable))
    }
    let (plain, reliable) = start().unwrap();
    assert_eq!(plain.shutdown(), 0);
    assert_eq!(reliable.shutdown(), 0);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = Server::bind(taken.local_addr().unwrap(), Config::default()).unwrap_err();
    assert!(matches!(busy, Error::Io(_)), "{busy:?}");
}

/// Messages from `count` senders, `each` apiece, in the order they are sent.
fn messages(count: usize, each: usize) -> Vec<Message> {
    (0..count * each)
        .map(|i| Message::text(format!("sender {} message {}", i % count, i / count)))
        .collect()
}

#[test]
fn messages_queued_when_the_owner_drops_its_websocket_come_back_from_take_unsent_in_order() {
    let server = Server::bind("127.0.0.1:0", quiet_config())
        .unwrap()
        .spawn(|mut ws| while let Ok(Some(_)) = ws.recv() {})
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    bounded(move || {
        let mut ws = Client::connect(&url, quiet_config()).unwrap();
        let senders = [ws.sender().unwrap(), ws.sender().unwrap().clone()];
        let queued = messages(senders.len(), 3);
        // The owner is not receiving: all of them stay in the outbox.
        for (i, message) in queued.iter().enumerate() {
            let sender = &senders[i % senders.len()];
            if i % 2 == 0 {
                sender.try_send(message.clone()).unwrap();
            } else {
                sender.send(message.clone()).unwrap();
            }
        }
        // Still the connection's to send: none is given back yet.
        assert!(senders[0].take_unsent().is_empty());
        drop(ws);
        assert!(matches!(
            senders[1].try_send(Message::text("after the end")),
            Err(Error::Send(sockeye_std::SendError::Closed))
        ));
        // Any sender of the connection takes them all, once.
        assert_eq!(senders[1].take_unsent(), queued);
        assert!(senders[0].take_unsent().is_empty());
        assert!(senders[1].take_unsent().is_empty());
    });
}

#[test]
fn messages_held_back_when_the_peer_closes_come_back_from_take_unsent_and_sent_ones_do_not() {
    // A server that answers one message, then closes when told to.
    let (close_now, told) = mpsc::channel::<()>();
    let told = std::sync::Mutex::new(told);
    let server = Server::bind("127.0.0.1:0", quiet_config())
        .unwrap()
        .spawn(move |mut ws| {
            assert_eq!(ws.recv().unwrap(), Some(Message::text("sent")));
            ws.send(Message::text("seen")).unwrap();
            told.lock().unwrap().recv().unwrap();
            ws.close(CloseCode::NORMAL, "bye").unwrap();
            while let Ok(Some(_)) = ws.recv() {}
        })
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    bounded(move || {
        let mut ws = Client::connect(&url, quiet_config()).unwrap();
        let sender = ws.sender().unwrap();
        sender.send(Message::text("sent")).unwrap();
        assert_eq!(ws.recv().unwrap(), Some(Message::text("seen")));
        // The owner's own fragmented message holds the senders' messages back.
        ws.send_fragment(sockeye_std::MessageKind::Text, "part".into(), false)
            .unwrap();
        let held = messages(1, 3);
        for message in &held {
            sender.try_send(message.clone()).unwrap();
        }
        // The peer closes; the owner sees the end.
        close_now.send(()).unwrap();
        assert_eq!(ws.recv().unwrap(), None);
        assert_eq!(ws.close_info().unwrap().code, CloseCode::NORMAL);
        assert_eq!(sender.take_unsent(), held);
        assert!(sender.take_unsent().is_empty());
    });
}

#[test]
fn messages_held_back_when_the_owner_closes_come_back_from_take_unsent() {
    let server = Server::bind("127.0.0.1:0", quiet_config())
        .unwrap()
        .spawn(|mut ws| while let Ok(Some(_)) = ws.recv() {})
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    bounded(move || {
        let mut ws = Client::connect(&url, quiet_config()).unwrap();
        let sender = ws.sender().unwrap();
        ws.send_fragment(sockeye_std::MessageKind::Text, "part".into(), false)
            .unwrap();
        let held = messages(1, 3);
        for message in &held {
            sender.try_send(message.clone()).unwrap();
        }
        // The close cuts the fragmented message short; the connection takes nothing
        // more, so the held messages never go.
        ws.close(CloseCode::NORMAL, "done").unwrap();
        while ws.recv().unwrap().is_some() {}
        assert_eq!(sender.take_unsent(), held);
        assert!(sender.take_unsent().is_empty());
    });
}
