//! `Server::shutdown_handle`: a shutdown closes open connections with 1001 and refuses
//! new upgrades.

use std::time::Duration;

use futures_lite::future;
use sockeye_smol::{Client, CloseCode, Config, Message, Server};

/// Longer than the test takes: a bound on a hang, not a speed requirement.
const HANG: Duration = Duration::from_secs(60);

#[test]
fn shutdown_closes_open_connections_with_1001_and_refuses_new_ones() {
    let mut config = Config::default();
    // No deadline of the connections' own wakes them: only the shutdown's close does.
    config.ping_interval = None;
    let server = Server::bind("127.0.0.1:0", config.clone()).unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    let serving = std::thread::spawn(move || {
        smol::block_on(async {
            while let Ok(incoming) = server.accept().await {
                smol::spawn(async move {
                    let Ok(mut ws) = incoming.upgrade().await else {
                        return;
                    };
                    while let Ok(Some(message)) = ws.recv().await {
                        if ws.send(message).await.is_err() {
                            break;
                        }
                    }
                })
                .detach();
            }
        })
    });
    smol::block_on(future::or(
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
            let refused = Client::connect(&url, config.clone()).await.unwrap_err();
            assert!(refused.to_string().contains("503"), "{refused}");
        },
        async {
            async_io::Timer::after(HANG).await;
            panic!("the shutdown never finished");
        },
    ));
    drop(serving);
}
