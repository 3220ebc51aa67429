//! `Server::shutdown_handle`: a shutdown ends the accept loop, closes open connections
//! with 1001 and refuses new upgrades (503).

mod common;

use std::future::Future;
use std::time::Duration;

use futures_lite::future;
use sockeye_smol::{Client, CloseCode, Config, Error, Message, Server};

/// Longer than the test takes: a bound on a hang, not a speed requirement.
const HANG: Duration = Duration::from_secs(60);

/// `f`, or a panic naming `what` if it hangs (10 s: a bound, not a speed requirement).
async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    future::or(f, async {
        async_io::Timer::after(Duration::from_secs(10)).await;
        panic!("{what} hung");
    })
    .await
}

/// An echo loop over `server.accept()`, as an application writes it; returns the error
/// that ended it and how many connections it accepted.
async fn accept_loop(server: &Server) -> (Error, usize) {
    let mut accepted = 0;
    loop {
        match server.accept().await {
            Ok(incoming) => {
                accepted += 1;
                smol::spawn(common::echo(incoming)).detach();
            }
            Err(e) => return (e, accepted),
        }
    }
}

#[test]
fn a_shutdown_ends_the_accept_loop_and_every_later_accept() {
    let server = std::sync::Arc::new(Server::bind("127.0.0.1:0", Config::default()).unwrap());
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    smol::block_on(async {
        let serving = smol::spawn({
            let server = std::sync::Arc::clone(&server);
            async move { accept_loop(&server).await }
        });
        // The loop is running: it served this client, then went back to `accept`.
        let mut ws = Client::connect(&format!("ws://{addr}/"), Config::default())
            .await
            .unwrap();
        ws.send(Message::text("before")).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Message::text("before")));
        let shutdown = smol::spawn(async move { handle.shutdown().await });
        let (ended, accepted) = bounded("the accept loop", serving).await;
        assert!(matches!(ended, Error::ShutDown), "{ended:?}");
        assert_eq!(ended.to_string(), "server shut down");
        assert_eq!(accepted, 1);
        // A later accept answers at once too, with no connection waiting.
        let later = bounded("a later accept", server.accept()).await;
        assert!(matches!(later, Err(Error::ShutDown)), "{later:?}");
        assert_eq!(ws.recv().await.unwrap(), None);
        assert_eq!(ws.close_info().unwrap().code, CloseCode::GOING_AWAY);
        assert_eq!(bounded("the shutdown", shutdown).await, 0);
    });
}

#[test]
fn a_shutdown_wakes_an_accept_already_waiting() {
    let server = Server::bind("127.0.0.1:0", Config::default()).unwrap();
    let handle = server.shutdown_handle();
    smol::block_on(async {
        let mut accept = Box::pin(server.accept());
        // Nobody connects: the accept waits.
        assert!(future::poll_once(&mut accept).await.is_none());
        assert_eq!(handle.shutdown().await, 0);
        let accepted = bounded("the waiting accept", accept).await;
        assert!(matches!(accepted, Err(Error::ShutDown)), "{accepted:?}");
    });
}

#[test]
fn a_dropped_shutdown_future_polled_once_has_still_ended_the_accept_loop() {
    let server = Server::bind("127.0.0.1:0", Config::default()).unwrap();
    let handle = server.shutdown_handle();
    smol::block_on(async {
        let mut accept = Box::pin(server.accept());
        assert!(future::poll_once(&mut accept).await.is_none());
        // Polled once (it then waits for the connections), then dropped.
        let mut shutdown = Box::pin(handle.shutdown());
        let _ = future::poll_once(&mut shutdown).await;
        drop(shutdown);
        let accepted = bounded("the waiting accept", accept).await;
        assert!(matches!(accepted, Err(Error::ShutDown)), "{accepted:?}");
    });
}

#[test]
fn shutdown_closes_open_connections_with_1001_and_ends_the_serving_thread() {
    let mut config = Config::default();
    // No deadline of the connections' own wakes them: only the shutdown's close does.
    config.ping_interval = None;
    let server = Server::bind("127.0.0.1:0", config.clone()).unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    let serving = std::thread::spawn(move || {
        smol::block_on(async {
            while let Ok(incoming) = server.accept().await {
                smol::spawn(common::echo(incoming)).detach();
            }
        })
    });
    let served = smol::block_on(future::or(
        async {
            let url = format!("ws://{addr}/");
            let mut clients = Vec::new();
            for i in 0..3 {
                let mut ws = Client::connect(&url, config.clone()).await.unwrap();
                // Each is open and served before the shutdown.
                ws.send(Message::text(format!("{i}"))).await.unwrap();
                assert_eq!(
                    ws.recv().await.unwrap(),
                    Some(Message::text(format!("{i}")))
                );
                clients.push(ws);
            }
            let shutdown = smol::spawn(async move { handle.shutdown().await });
            for ws in &mut clients {
                assert_eq!(ws.recv().await.unwrap(), None);
                let close = ws.close_info().expect("a close");
                assert_eq!(close.code, CloseCode::GOING_AWAY);
            }
            assert_eq!(shutdown.await, 0);
            // The shutdown ended the accept loop: the serving thread returns, dropping
            // the server, so nothing listens any more.
            let served = bounded("the accept loop", smol::unblock(move || serving.join())).await;
            let refused = Client::connect(&url, config.clone()).await.unwrap_err();
            assert!(matches!(refused, Error::Io(_)), "{refused}");
            served
        },
        async {
            async_io::Timer::after(HANG).await;
            panic!("the shutdown never finished");
        },
    ));
    served.expect("the serving thread panicked");
}

#[test]
fn a_connection_accepted_before_the_shutdown_and_upgraded_after_is_answered_503() {
    let server = Server::bind("127.0.0.1:0", Config::default()).unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    smol::block_on(bounded("the refused upgrade", async {
        let url = format!("ws://{addr}/");
        let client = smol::spawn(async move { Client::connect(&url, Config::default()).await });
        let incoming = server.accept().await.unwrap();
        assert_eq!(handle.shutdown().await, 0);
        let upgraded = incoming.upgrade().await;
        assert!(matches!(upgraded, Err(Error::Refused(_))), "{upgraded:?}");
        let refused = client.await.unwrap_err();
        assert!(refused.to_string().contains("503"), "{refused}");
    }));
}
