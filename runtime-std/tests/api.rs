//! The std runtime's public API over loopback: timed receives, sender handles,
//! backpressure and blocked writes (issue 13).

use std::time::Duration;

use sockeye_std::{Client, CloseCode, Config, Message, Recv, Server};

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
