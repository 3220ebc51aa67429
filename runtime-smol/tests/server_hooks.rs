//! The async server's hooks over loopback (issue 13, point 6): a refusal with the
//! status the application chose, the connection limit, and connection ids.

use std::time::Duration;

use futures_lite::future;
use sockeye_smol::{Client, Config, Error, HandshakeError, Message, Refusal, Server};

/// Fails a test that would otherwise hang: a generous bound, not a measure of speed.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    future::or(f, async {
        async_io::Timer::after(Duration::from_secs(60)).await;
        panic!("the test hung");
    })
    .await
}

#[test]
fn upgrade_with_refuses_with_the_status_and_headers_it_chose() {
    let server = Server::bind("127.0.0.1:0", Config::default()).unwrap();
    let addr = server.local_addr().unwrap();
    smol::block_on(bounded(async {
        let serve = smol::spawn(async move {
            let incoming = server.accept().await.unwrap();
            incoming
                .upgrade_with(|request| match request.query_raw("token") {
                    Some("good") => Ok(None),
                    _ => Err(Refusal::new(401).with_header("WWW-Authenticate", "Bearer")),
                })
                .await
        });
        let url = format!("ws://{addr}/?token=bad");
        let refused = Client::connect(&url, Config::default()).await.unwrap_err();
        assert!(
            matches!(
                refused,
                Error::Handshake(HandshakeError::UnexpectedStatus(401))
            ),
            "{refused:?}"
        );
        let served = serve.await.unwrap_err();
        assert!(
            matches!(&served, Error::Refused(r) if r.status() == 401),
            "{served:?}"
        );
    }));
}

#[test]
fn over_the_limit_an_upgrade_is_answered_503_and_ids_are_unique() {
    let server = Server::bind("127.0.0.1:0", Config::default())
        .unwrap()
        .max_connections(1);
    let addr = server.local_addr().unwrap();
    smol::block_on(bounded(async {
        let serve = smol::spawn(async move {
            let first = server.accept().await.unwrap();
            let first_id = first.id();
            let mut first = first.upgrade().await.unwrap();
            assert_eq!(first.id(), Some(first_id));
            let second = server.accept().await.unwrap();
            assert_ne!(second.id(), first_id);
            let refused = second.upgrade().await.unwrap_err();
            assert!(
                matches!(&refused, Error::Refused(r) if r.status() == 503),
                "{refused:?}"
            );
            // The open connection goes on; once dropped, its place is free.
            let message = first.recv().await.unwrap().unwrap();
            first.send(message).await.unwrap();
            drop(first);
            let third = server.accept().await.unwrap().upgrade().await.unwrap();
            third.id().unwrap()
        });
        let url = format!("ws://{addr}/");
        let mut first = Client::connect(&url, Config::default()).await.unwrap();
        assert_eq!(first.id(), None);
        let refused = Client::connect(&url, Config::default()).await.unwrap_err();
        assert!(
            matches!(
                refused,
                Error::Handshake(HandshakeError::UnexpectedStatus(503))
            ),
            "{refused:?}"
        );
        first.send(Message::text("still here")).await.unwrap();
        assert_eq!(
            first.recv().await.unwrap(),
            Some(Message::text("still here"))
        );
        let _third = Client::connect(&url, Config::default()).await.unwrap();
        assert_eq!(serve.await.get(), 3);
    }));
}

#[test]
fn a_session_registry_refuses_with_the_status_its_check_chose_and_attaches_nothing() {
    use sockeye_smol::{SessionConfig, SessionRegistry, Upgrade};

    let server = Server::bind("127.0.0.1:0", Config::default()).unwrap();
    let addr = server.local_addr().unwrap();
    let registry = SessionRegistry::new(SessionConfig::default()).unwrap();
    smol::block_on(bounded(async {
        let serving = registry.clone();
        let serve = smol::spawn(async move {
            let mut outcomes = Vec::new();
            for _ in 0..2 {
                let incoming = server.accept().await.unwrap();
                let upgraded = serving
                    .upgrade_with(incoming, |request| match request.query_raw("token") {
                        Some("good") => Ok(()),
                        _ => Err(Refusal::new(401).with_body("who are you?\n")),
                    })
                    .await;
                outcomes.push(upgraded);
            }
            outcomes
        });
        let refused = Client::connect(&format!("ws://{addr}/?token=bad"), Config::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                refused,
                Error::Handshake(HandshakeError::UnexpectedStatus(401))
            ),
            "{refused:?}"
        );
        // Let through, and not `sockeye.v1`: a plain WebSocket for the application.
        let _plain = Client::connect(&format!("ws://{addr}/?token=good"), Config::default())
            .await
            .unwrap();
        let outcomes = serve.await;
        assert!(
            matches!(&outcomes[0], Err(Error::Refused(r)) if r.status() == 401),
            "{:?}",
            outcomes[0]
        );
        assert!(matches!(outcomes[1], Ok(Upgrade::Plain(_))));
    }));
    assert!(registry.is_empty(), "no session was created for either");
}
