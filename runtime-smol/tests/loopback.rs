//! The async runtime against itself and against `sockeye-std` over loopback, under a
//! single-threaded and a multi-threaded executor.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_executor::Executor;
use futures_lite::future;
use sockeye_smol::{
    Client, ClientOptions, CloseCode, Config, Error, HandshakeError, Message, Server,
};

/// An echo server on its own thread, one task per connection.
fn spawn_echo() -> std::net::SocketAddr {
    let server = Server::bind("127.0.0.1:0", Config::default()).unwrap();
    let addr = server.local_addr().unwrap();
    std::thread::spawn(move || {
        smol::block_on(async {
            loop {
                let Ok(incoming) = server.accept().await else {
                    return;
                };
                smol::spawn(common::echo(incoming)).detach();
            }
        })
    });
    addr
}

fn message(i: usize) -> Message {
    if i % 3 == 0 {
        Message::binary(vec![i as u8; i % 700])
    } else {
        Message::text(format!("message {i}"))
    }
}

#[test]
fn echoes_text_binary_and_a_large_message_under_block_on() {
    let addr = spawn_echo();
    smol::block_on(async {
        let url = format!("ws://{addr}/echo");
        let mut ws = Client::connect(&url, Config::default()).await.unwrap();
        for i in 0..200 {
            ws.send(message(i)).await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), Some(message(i)));
        }
        let big = Message::binary(vec![7u8; 3 << 20]);
        ws.send(big.clone()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(big));
        ws.close(CloseCode::NORMAL, "done").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), None);
        assert_eq!(ws.close_info().map(|c| c.code), Some(CloseCode::NORMAL));
    });
}

#[test]
fn many_clients_on_a_multi_threaded_executor() {
    let addr = spawn_echo();
    let ex = Arc::new(Executor::new());
    let (stop, stopped) = async_channel::unbounded::<()>();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let ex = Arc::clone(&ex);
            let stopped = stopped.clone();
            std::thread::spawn(move || smol::block_on(ex.run(stopped.recv())))
        })
        .collect();
    let clients: Vec<_> = (0..16)
        .map(|c| {
            ex.spawn(async move {
                let url = format!("ws://{addr}/c{c}");
                let mut ws = Client::connect(&url, Config::default()).await?;
                // Pipelined: a window of 8 messages in flight.
                let (mut sent, mut got) = (0, 0);
                while got < 300 {
                    while sent < 300 && sent - got < 8 {
                        ws.send(message(sent + c)).await?;
                        sent += 1;
                    }
                    assert_eq!(ws.recv().await?, Some(message(got + c)));
                    got += 1;
                }
                ws.close(CloseCode::NORMAL, "").await?;
                while ws.recv().await?.is_some() {}
                Ok::<usize, Error>(got)
            })
        })
        .collect();
    let total: usize = smol::block_on(async {
        let mut total = 0;
        for client in clients {
            total += client.await.unwrap();
        }
        total
    });
    assert_eq!(total, 16 * 300);
    drop(stop);
    for t in threads {
        let _ = t.join().unwrap();
    }
}

#[test]
fn try_send_hands_the_message_back_when_the_queue_is_full() {
    let addr = spawn_echo();
    smol::block_on(async {
        let mut config = Config::default();
        config.max_send_queue_bytes = 64 * 1024;
        let url = format!("ws://{addr}/");
        let mut ws = Client::connect(&url, config).await.unwrap();
        let chunk = Message::binary(vec![1u8; 20 * 1024]);
        let mut queued = 0;
        let back = loop {
            match ws.try_send(chunk.clone()) {
                Ok(()) => queued += 1,
                Err(Error::Full(back)) => break back,
                Err(e) => panic!("{e}"),
            }
            assert!(queued < 10, "the queue never filled");
        };
        assert_eq!(back, chunk, "the refused message comes back whole");
        // Waiting for room writes the queue out; then the message fits.
        ws.ready().await.unwrap();
        ws.try_send(back).unwrap();
        queued += 1;
        for _ in 0..queued {
            assert_eq!(ws.recv().await.unwrap(), Some(chunk.clone()));
        }
    });
}

#[test]
fn a_dropped_recv_loses_nothing() {
    // A server that sends 300 messages with a pause after each, then closes.
    let server = Server::bind("127.0.0.1:0", Config::default()).unwrap();
    let addr = server.local_addr().unwrap();
    std::thread::spawn(move || {
        smol::block_on(async {
            let mut ws = server.accept().await.unwrap().upgrade().await.unwrap();
            for i in 0..300 {
                ws.send(message(i)).await.unwrap();
                smol::Timer::after(Duration::from_micros(300)).await;
            }
            ws.close(CloseCode::NORMAL, "").await.unwrap();
            while ws.recv().await.unwrap().is_some() {}
        })
    });
    smol::block_on(async {
        let url = format!("ws://{addr}/");
        let mut ws = Client::connect(&url, Config::default()).await.unwrap();
        // Every recv races a future that is ready on its second poll: whenever the
        // socket has nothing at once, the recv future is dropped mid-way, and the next
        // one must carry on where it stopped.
        let (mut got, mut cancelled) = (0, 0);
        loop {
            let recv = async { Some(ws.recv().await) };
            let give_up = async {
                future::yield_now().await;
                None
            };
            match future::or(recv, give_up).await {
                Some(Ok(Some(received))) => {
                    assert_eq!(received, message(got));
                    got += 1;
                }
                Some(Ok(None)) => break,
                Some(Err(e)) => panic!("{e}"),
                None => cancelled += 1,
            }
        }
        assert_eq!(got, 300);
        println!("300 messages, {cancelled} recv futures dropped mid-way");
    });
}

#[test]
fn a_refused_upgrade_is_answered_with_its_status() {
    let server = Server::bind("127.0.0.1:0", Config::default()).unwrap();
    let addr = server.local_addr().unwrap();
    smol::block_on(async {
        let serve = smol::spawn(async move {
            let incoming = server.accept().await.unwrap();
            incoming
                .upgrade_with(|request| match request.origin() {
                    Some("https://good.example") => Ok(Some("chat".to_string())),
                    _ => Err(HandshakeError::OriginRefused.into()),
                })
                .await
        });
        let url = format!("ws://{addr}/");
        let options = ClientOptions {
            protocols: &["chat"],
            origin: Some("https://evil.example"),
            ..ClientOptions::default()
        };
        let refused = Client::connect_with(&url, Config::default(), options).await;
        match refused {
            Err(Error::Handshake(HandshakeError::UnexpectedStatus(status))) => {
                assert_eq!(status, 403)
            }
            other => panic!("expected a 403, got {other:?}"),
        }
        assert!(matches!(
            serve.await,
            Err(Error::Refused(refusal)) if refusal.status() == 403
        ));
    });
}

#[test]
fn the_std_runtime_and_this_one_talk() {
    // A std echo server, a smol client.
    let std_server = sockeye_std::Server::bind("127.0.0.1:0", Config::default())
        .unwrap()
        .spawn(|mut ws| {
            while let Ok(Some(m)) = ws.recv() {
                if ws.send(m).is_err() {
                    break;
                }
            }
        })
        .unwrap();
    smol::block_on(async {
        let url = format!("ws://{}/", std_server.local_addr());
        let mut ws = Client::connect(&url, Config::default()).await.unwrap();
        ws.send(Message::text("to std")).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::text("to std")));
        // A deadline on the connection's own clock passes with nothing to read.
        let quiet = ws.recv_event_until(Some(ws.now() + Duration::from_millis(20)));
        assert_eq!(quiet.await.unwrap(), sockeye_std::Recv::TimedOut);
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), None);
    });
    // A smol echo server, a std client.
    let addr = spawn_echo();
    let mut ws = sockeye_std::Client::connect(&format!("ws://{addr}/"), Config::default()).unwrap();
    ws.send(Message::text("to smol")).unwrap();
    assert_eq!(ws.recv().unwrap(), Some(Message::text("to smol")));
}

#[test]
fn a_loop_over_recv_timeout_ends_when_the_connection_does() {
    use sockeye_smol::Recv;
    // A std server that echoes one message and closes.
    let server = sockeye_std::Server::bind("127.0.0.1:0", Config::default())
        .unwrap()
        .spawn(|mut ws| {
            if let Ok(Some(message)) = ws.recv() {
                let _ = ws.send(message);
            }
            let _ = ws.close(CloseCode::NORMAL, "bye");
            while let Ok(Some(_)) = ws.recv() {}
        })
        .unwrap();
    smol::block_on(async {
        let url = format!("ws://{}/", server.local_addr());
        let mut ws = Client::connect(&url, Config::default()).await.unwrap();
        let quiet = ws.recv_timeout(Duration::from_millis(1)).await.unwrap();
        assert_eq!(quiet, Recv::TimedOut);
        ws.send(Message::text("hi")).await.unwrap();
        let mut messages = Vec::new();
        let mut calls = 0;
        loop {
            calls += 1;
            assert!(calls < 100_000, "the loop spun after the close");
            match ws.recv_timeout(Duration::from_millis(10)).await.unwrap() {
                Recv::Ready(message) => messages.push(message),
                Recv::TimedOut => continue,
                Recv::Closed => break,
            }
        }
        assert_eq!(messages, [Message::text("hi")]);
        let later = ws.now() + Duration::from_secs(60);
        assert_eq!(
            ws.recv_event_until(Some(later)).await.unwrap(),
            Recv::Closed
        );
    });
}

#[test]
fn a_send_to_a_peer_that_reads_nothing_fails_with_a_write_timeout_and_recv_agrees() {
    use sockeye_smol::ConnectionError;
    use std::io::Write;
    let mut config = Config::default();
    config.pong_timeout = Duration::from_millis(200);
    config.ping_interval = None;
    let server = Server::bind("127.0.0.1:0", config).unwrap();
    let mut peer = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
    peer.write_all(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        smol::block_on(async {
            let mut ws = server.accept().await.unwrap().upgrade().await.unwrap();
            let message = Message::binary(vec![0u8; 1 << 20]);
            let mut sent = 0;
            let error = loop {
                match ws.send(message.clone()).await {
                    Ok(()) => sent += 1,
                    Err(e) => break e,
                }
                assert!(sent < 4096, "4 GiB went to a peer that reads nothing");
            };
            let after = ws.recv().await;
            let _ = tx.send((error, after));
        })
    });
    // A generous bound on the whole test, not a measure of the timeout.
    let (error, after) = rx
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
    drop(peer);
}

/// A message and then a broken frame in one write: the echo server's answer to the
/// message (deferred while more read input waits) still goes out, before the close
/// frame, although the peer sends nothing more until it has them. It was lost once.
#[test]
fn an_answer_before_a_protocol_error_is_written_before_the_close() {
    use std::io::{Read, Write};
    let addr = spawn_echo();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    // "hi" (masked with key 0), then a text frame with RSV1 set, which nothing agreed to.
    let mut wire = vec![0x81, 0x82, 0, 0, 0, 0, b'h', b'i'];
    wire.extend_from_slice(&[0xC1, 0x81, 0, 0, 0, 0, b'x']);
    s.write_all(&wire).unwrap();
    let mut answer = [0u8; 4];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(answer, [0x81, 2, b'h', b'i'], "the echo comes first");
    let mut close = [0u8; 2];
    s.read_exact(&mut close).unwrap();
    assert_eq!(close[0], 0x88, "then the close frame");
}

#[test]
fn the_keepalive_ping_goes_out_once_the_traffic_stops() {
    use sockeye_smol::{Event, Recv};
    // The connection keeps one timer, armed for the keepalive deadline of its first
    // wait; every echo moves the deadline later, so the timer fires early and must be
    // armed again for the ping to go out once the traffic stops.
    let addr = spawn_echo();
    smol::block_on(async {
        let mut config = Config::default();
        config.ping_interval = Some(Duration::from_millis(100));
        let url = format!("ws://{addr}/echo");
        let mut ws = Client::connect(&url, config).await.unwrap();
        for i in 0..20 {
            ws.send(message(i)).await.unwrap();
            assert_eq!(ws.recv().await.unwrap(), Some(message(i)));
            async_io::Timer::after(Duration::from_millis(15)).await;
        }
        let deadline = ws.now() + Duration::from_secs(5);
        match ws.recv_event_until(Some(deadline)).await.unwrap() {
            Recv::Ready(Event::Pong { rtt: Some(_), .. }) => {}
            Recv::Ready(other) => panic!("unexpected {other:?}"),
            Recv::TimedOut | Recv::Closed => panic!("no keepalive pong in 5 s"),
        }
    });
}
