//! `WebSocket::sender`: handles that send from other threads and tasks while the owner
//! awaits `recv`, on a client and on a server.
//!
//! No connection here has a deadline of its own (`ping_interval: None`), so an owner
//! that a sender failed to wake would wait for ever; `bounded` turns that into a failure.

mod common;

use std::future::Future;
use std::time::Duration;

use futures_lite::future;
use sockeye_smol::{Client, CloseCode, Config, Error, Message, MessageKind, SendError, Server};

/// Longer than any of these tests takes: a bound on a hang, not a speed requirement.
const HANG: Duration = Duration::from_secs(60);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    future::or(f, async {
        async_io::Timer::after(HANG).await;
        panic!("{what} never finished");
    })
    .await
}

fn quiet() -> Config {
    let mut config = Config::default();
    config.ping_interval = None;
    config
}

/// [`quiet`], with a send queue of `bytes`.
fn queue_of(bytes: usize) -> Config {
    let mut config = quiet();
    config.max_send_queue_bytes = bytes;
    config
}

/// An echo server on its own thread, one task per connection.
fn spawn_echo() -> std::net::SocketAddr {
    let server = Server::bind("127.0.0.1:0", quiet()).unwrap();
    let addr = server.local_addr().unwrap();
    std::thread::spawn(move || {
        smol::block_on(async {
            while let Ok(incoming) = server.accept().await {
                smol::spawn(common::echo(incoming)).detach();
            }
        })
    });
    addr
}

#[test]
fn a_sender_on_another_thread_wakes_the_client_in_recv_and_keeps_its_order() {
    let addr = spawn_echo();
    smol::block_on(async {
        // A small queue, so the thread's sends wait for room as the owner moves them on.
        let config = queue_of(64);
        let mut ws = Client::connect(&format!("ws://{addr}/"), config)
            .await
            .unwrap();
        let sender = ws.sender();
        let (go, start) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            // Sends only once the owner is (about to be) in `recv`: from then on, only the
            // wake gets the first message out.
            start.recv().unwrap();
            smol::block_on(async {
                for i in 0..100 {
                    sender
                        .send(Message::text(format!("{i:020}")))
                        .await
                        .unwrap();
                }
            })
        });
        go.send(()).unwrap();
        for i in 0..100 {
            let echo = bounded("recv", ws.recv()).await.unwrap();
            assert_eq!(echo, Some(Message::text(format!("{i:020}"))));
        }
        thread.join().unwrap();
    });
}

#[test]
fn a_sender_wakes_the_server_side_owner_in_recv() {
    let server = Server::bind("127.0.0.1:0", quiet()).unwrap();
    let addr = server.local_addr().unwrap();
    let serving = std::thread::spawn(move || {
        smol::block_on(async {
            let mut ws = server.accept().await.unwrap().upgrade().await.unwrap();
            // Another task of the same executor pushes; the client says nothing until it
            // has the push, so only the sender's wake gets it out of this `recv`.
            let sender = ws.sender();
            let pusher = smol::spawn(async move { sender.send(Message::text("push")).await });
            let answer = bounded("server recv", ws.recv()).await.unwrap();
            pusher.await.unwrap();
            assert_eq!(answer, Some(Message::text("thanks")));
        })
    });
    smol::block_on(async {
        let mut ws = Client::connect(&format!("ws://{addr}/"), quiet())
            .await
            .unwrap();
        let push = bounded("client recv", ws.recv()).await.unwrap();
        assert_eq!(push, Some(Message::text("push")));
        ws.send(Message::text("thanks")).await.unwrap();
    });
    serving.join().unwrap();
}

#[test]
fn try_send_on_a_full_queue_hands_the_message_back() {
    let addr = spawn_echo();
    smol::block_on(async {
        let config = queue_of(100);
        let mut ws = Client::connect(&format!("ws://{addr}/"), config)
            .await
            .unwrap();
        let sender = ws.sender();
        // The owner is not receiving: nothing moves the queue on.
        sender.try_send(Message::binary(vec![1; 80])).unwrap();
        let second = Message::binary(vec![2; 80]);
        match sender.try_send(second.clone()) {
            Err(Error::Full(back)) => assert_eq!(back, second),
            other => panic!("expected Full, got {other:?}"),
        }
        // Once the owner receives, the queued one goes out and there is room again.
        let echo = bounded("recv", ws.recv()).await.unwrap();
        assert_eq!(echo, Some(Message::binary(vec![1; 80])));
        sender.try_send(second.clone()).unwrap();
        assert_eq!(bounded("recv", ws.recv()).await.unwrap(), Some(second));
    });
}

fn assert_closed(result: sockeye_smol::Result<()>) {
    assert!(
        matches!(result, Err(Error::Send(SendError::Closed))),
        "expected Closed, got {result:?}"
    );
}

#[test]
fn sends_after_the_close_or_the_drop_fail_with_closed() {
    let addr = spawn_echo();
    smol::block_on(async {
        let url = format!("ws://{addr}/");
        // The owner closes.
        let mut ws = Client::connect(&url, quiet()).await.unwrap();
        let sender = ws.sender();
        ws.close(CloseCode::NORMAL, "done").await.unwrap();
        assert_closed(sender.try_send(Message::text("late")));
        assert_closed(sender.send(Message::text("late")).await);
        assert_closed(sender.close(CloseCode::NORMAL, "again"));
        assert_eq!(bounded("recv", ws.recv()).await.unwrap(), None);
        // A sender made after the end fails too.
        assert_closed(ws.sender().try_send(Message::text("later")));

        // A sender closes from another thread: the owner sees the handshake complete.
        let mut ws = Client::connect(&url, quiet()).await.unwrap();
        let sender = ws.sender();
        sender.send(Message::text("before")).await.unwrap();
        std::thread::spawn(move || sender.close(CloseCode::NORMAL, "bye"))
            .join()
            .unwrap()
            .unwrap();
        let sender = ws.sender();
        assert_closed(sender.try_send(Message::text("after")));
        let before = bounded("recv", ws.recv()).await.unwrap();
        assert_eq!(before, Some(Message::text("before")));
        assert_eq!(bounded("recv", ws.recv()).await.unwrap(), None);

        // The owner drops its WebSocket, a sender perhaps waiting for room meanwhile.
        let config = queue_of(10);
        let ws = Client::connect(&url, config).await.unwrap();
        let sender = ws.sender();
        sender.try_send(Message::binary(vec![0; 10])).unwrap();
        let waiting = {
            let sender = sender.clone();
            smol::spawn(async move { sender.send(Message::binary(vec![0; 10])).await })
        };
        future::yield_now().await;
        drop(ws);
        assert_closed(bounded("waiting send", waiting).await);
        assert_closed(sender.try_send(Message::text("gone")));
    });
}

/// Messages from `count` senders, `each` apiece, in the order they are sent.
fn messages(count: usize, each: usize) -> Vec<Message> {
    (0..count * each)
        .map(|i| Message::text(format!("sender {} message {}", i % count, i / count)))
        .collect()
}

#[test]
fn messages_queued_when_the_owner_drops_its_websocket_come_back_from_take_unsent_in_order() {
    let addr = spawn_echo();
    smol::block_on(bounded("the test", async {
        let ws = Client::connect(&format!("ws://{addr}/"), quiet())
            .await
            .unwrap();
        let senders = [ws.sender(), ws.sender().clone()];
        let queued = messages(senders.len(), 3);
        // The owner is not receiving: all of them stay in the outbox.
        for (i, message) in queued.iter().enumerate() {
            let sender = &senders[i % senders.len()];
            if i % 2 == 0 {
                sender.try_send(message.clone()).unwrap();
            } else {
                sender.send(message.clone()).await.unwrap();
            }
        }
        // Still the connection's to send: none is given back yet.
        assert!(senders[0].take_unsent().is_empty());
        drop(ws);
        assert_closed(senders[1].try_send(Message::text("after the end")));
        // Any sender of the connection takes them all, once.
        assert_eq!(senders[1].take_unsent(), queued);
        assert!(senders[0].take_unsent().is_empty());
        assert!(senders[1].take_unsent().is_empty());
    }));
}

#[test]
fn messages_held_back_when_the_peer_closes_come_back_from_take_unsent_and_sent_ones_do_not() {
    // A server that answers one message, then closes when told to.
    let server = Server::bind("127.0.0.1:0", quiet()).unwrap();
    let addr = server.local_addr().unwrap();
    let (close_now, told) = std::sync::mpsc::channel::<()>();
    let serving = std::thread::spawn(move || {
        smol::block_on(async {
            let mut ws = server.accept().await?.upgrade().await?;
            let first = ws.recv().await?;
            assert_eq!(first, Some(Message::text("sent")));
            ws.send(Message::text("seen")).await?;
            told.recv().expect("the test tells the server to close");
            ws.close(CloseCode::NORMAL, "bye").await?;
            while ws.recv().await?.is_some() {}
            Ok::<(), Error>(())
        })
    });
    smol::block_on(bounded("the test", async {
        let mut ws = Client::connect(&format!("ws://{addr}/"), quiet())
            .await
            .unwrap();
        let sender = ws.sender();
        sender.send(Message::text("sent")).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::text("seen")));
        // The owner's own fragmented message holds the senders' messages back.
        ws.send_fragment(MessageKind::Text, "part".into(), false)
            .await
            .unwrap();
        let held = messages(1, 3);
        for message in &held {
            sender.try_send(message.clone()).unwrap();
        }
        // The peer closes; the owner sees the end.
        close_now.send(()).unwrap();
        assert_eq!(ws.recv().await.unwrap(), None);
        assert_eq!(ws.close_info().unwrap().code, CloseCode::NORMAL);
        assert_eq!(sender.take_unsent(), held);
        assert!(sender.take_unsent().is_empty());
    }));
    serving.join().unwrap().unwrap();
}

#[test]
fn messages_held_back_when_the_owner_closes_come_back_from_take_unsent() {
    let addr = spawn_echo();
    smol::block_on(bounded("the test", async {
        let mut ws = Client::connect(&format!("ws://{addr}/"), quiet())
            .await
            .unwrap();
        let sender = ws.sender();
        ws.send_fragment(MessageKind::Text, "part".into(), false)
            .await
            .unwrap();
        let held = messages(1, 3);
        for message in &held {
            sender.try_send(message.clone()).unwrap();
        }
        // The close cuts the fragmented message short; the connection takes nothing
        // more, so the held messages never go.
        ws.close(CloseCode::NORMAL, "done").await.unwrap();
        while ws.recv().await.unwrap().is_some() {}
        assert_eq!(sender.take_unsent(), held);
        assert!(sender.take_unsent().is_empty());
    }));
}
