//! Async WebSockets over streams other than `Async<TcpStream>` (issue 13): a Unix socket
//! pair, and TLS (feature `tls`) with a certificate made here by rcgen, against this
//! runtime and against sockeye-std.

use std::os::unix::net::UnixStream;

use async_io::Async;
use futures_lite::future;
use sockeye_smol::{AsyncStream, CloseCode, Config, Message, WebSocket};

/// Echoes every message on `ws` until the peer closes; answers how many.
async fn echo<S: AsyncStream>(mut ws: WebSocket<S>) -> sockeye_smol::Result<u32> {
    let mut echoed = 0;
    while let Some(message) = ws.recv().await? {
        ws.send(message).await?;
        echoed += 1;
    }
    Ok(echoed)
}

/// Sends `count` messages of growing size (some larger than a TLS record and a socket
/// buffer), checks each echo, then closes.
async fn talk<S: AsyncStream>(ws: &mut WebSocket<S>, count: usize) {
    for i in 0..count {
        let payload = vec![b'a' + (i % 26) as u8; i * 7919];
        ws.send(Message::binary(payload.clone())).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap(),
            Some(Message::binary(payload)),
            "echo {i}"
        );
    }
    ws.close(CloseCode::NORMAL, "done").await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), None);
    assert_eq!(ws.close_info().unwrap().code, CloseCode::NORMAL);
}

#[test]
fn a_unix_socket_pair_carries_both_roles() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (ours, theirs) = (Async::new(ours).unwrap(), Async::new(theirs).unwrap());
    smol::block_on(async {
        let server = async { echo(WebSocket::server(theirs, Config::default()).await?).await };
        let client = async {
            let mut ws = WebSocket::client(
                ours,
                "ws://localhost/",
                Config::default(),
                Default::default(),
            )
            .await
            .unwrap();
            assert!(ws.stream().get_ref().peer_addr().is_ok());
            talk(&mut ws, 40).await;
        };
        let (served, ()) = future::zip(server, client).await;
        assert_eq!(served.unwrap(), 40);
    });
}

#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use std::sync::Arc;

    use sockeye_smol::{Client, ClientOptions, Error, Server};
    use sockeye_std::tls::{client_config, server_config};

    /// A self-signed certificate for `localhost` and 127.0.0.1: the server's
    /// configuration, and a client configuration that trusts exactly it.
    fn certificate() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
        let server = server_config(vec![cert.der().clone()], key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        (server, client_config(roots))
    }

    /// A smol TLS echo server on its own thread, one task per connection.
    fn spawn_tls_echo(tls: Arc<rustls::ServerConfig>) -> std::net::SocketAddr {
        let server = Server::bind("127.0.0.1:0", Config::default()).unwrap();
        let addr = server.local_addr().unwrap();
        std::thread::spawn(move || {
            smol::block_on(async {
                while let Ok(incoming) = server.accept().await {
                    let tls = Arc::clone(&tls);
                    smol::spawn(async move {
                        if let Ok(ws) = incoming.upgrade_tls(tls).await {
                            let _ = echo(ws).await;
                        }
                    })
                    .detach();
                }
            })
        });
        addr
    }

    #[test]
    fn a_wss_client_talks_to_a_smol_tls_server() {
        let (server_tls, client_tls) = certificate();
        let addr = spawn_tls_echo(server_tls);
        smol::block_on(async {
            let url = format!("wss://localhost:{}/secure", addr.port());
            let options = ClientOptions {
                tls: Some(&client_tls),
                ..ClientOptions::default()
            };
            let mut ws = Client::connect_tls(&url, Config::default(), options)
                .await
                .unwrap();
            assert!(ws.stream().get_ref().1.protocol_version().is_some());
            talk(&mut ws, 30).await;
            let mut ws = Client::open(&url, Config::default(), options)
                .await
                .unwrap();
            talk(&mut ws, 3).await;
        });
    }

    #[test]
    fn smol_and_std_talk_over_tls_both_ways() {
        let (server_tls, client_tls) = certificate();
        // smol client → std server.
        let std_server = sockeye_std::Server::bind("127.0.0.1:0", Config::default())
            .unwrap()
            .tls(Arc::clone(&server_tls))
            .spawn(|mut ws| {
                while let Ok(Some(message)) = ws.recv() {
                    if ws.send(message).is_err() {
                        break;
                    }
                }
            })
            .unwrap();
        let options = ClientOptions {
            tls: Some(&client_tls),
            ..ClientOptions::default()
        };
        smol::block_on(async {
            let url = format!("wss://127.0.0.1:{}/", std_server.local_addr().port());
            let mut ws = Client::connect_tls(&url, Config::default(), options)
                .await
                .unwrap();
            talk(&mut ws, 20).await;
        });
        // std client → smol server.
        let addr = spawn_tls_echo(server_tls);
        let url = format!("wss://localhost:{}/", addr.port());
        let mut ws = sockeye_std::Client::connect_tls(&url, Config::default(), options).unwrap();
        for i in 0..20 {
            let payload = vec![b'z'; i * 5003];
            ws.send(Message::binary(payload.clone())).unwrap();
            assert_eq!(ws.recv().unwrap(), Some(Message::binary(payload)));
        }
        ws.close(CloseCode::NORMAL, "done").unwrap();
        assert_eq!(ws.recv().unwrap(), None);
        assert_eq!(ws.close_info().unwrap().code, CloseCode::NORMAL);
    }

    #[test]
    fn a_client_refuses_a_certificate_it_does_not_trust() {
        let (server_tls, _) = certificate();
        let (_, other_roots) = certificate();
        let addr = spawn_tls_echo(server_tls);
        smol::block_on(async {
            let url = format!("wss://localhost:{}/", addr.port());
            let options = ClientOptions {
                tls: Some(&other_roots),
                ..ClientOptions::default()
            };
            match Client::connect_tls(&url, Config::default(), options).await {
                Err(Error::Io(e)) => {
                    let tls = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
                    assert!(
                        matches!(tls, Some(rustls::Error::InvalidCertificate(_))),
                        "{e:?}"
                    );
                }
                other => panic!("connected to an untrusted server: {other:?}"),
            }
        });
    }

    /// The write timeout holds over TLS: a peer that completed both handshakes and then
    /// reads nothing fails a blocked send with `WriteTimeout`.
    #[test]
    fn a_send_to_a_tls_peer_that_reads_nothing_fails_with_a_write_timeout() {
        use sockeye_smol::ConnectionError;
        let (server_tls, client_tls) = certificate();
        let server = Server::bind("127.0.0.1:0", Config::default()).unwrap();
        let port = server.local_addr().unwrap().port();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let deaf = std::thread::spawn(move || {
            smol::block_on(async {
                let incoming = server.accept().await.unwrap();
                let ws = incoming.upgrade_tls(server_tls).await.unwrap();
                // Holds the connection without reading.
                let _ = done_rx.recv();
                drop(ws);
            })
        });
        let mut config = Config::default();
        config.pong_timeout = std::time::Duration::from_millis(200);
        config.ping_interval = None;
        smol::block_on(async {
            let url = format!("wss://localhost:{port}/");
            let options = ClientOptions {
                tls: Some(&client_tls),
                ..ClientOptions::default()
            };
            let mut ws = Client::connect_tls(&url, config, options).await.unwrap();
            let message = Message::binary(vec![0u8; 1 << 20]);
            let mut sent = 0;
            let error = loop {
                match ws.send(message.clone()).await {
                    Ok(()) => sent += 1,
                    Err(e) => break e,
                }
                assert!(sent < 4096, "4 GiB taken for a peer that reads nothing");
            };
            assert!(
                matches!(error, Error::Connection(ConnectionError::WriteTimeout)),
                "{error:?}"
            );
        });
        done_tx.send(()).unwrap();
        deaf.join().unwrap();
    }
}
