//! WebSockets over streams other than the runtime's own TCP (issue 13): a Unix socket
//! pair, a boxed stream, and TLS (feature `tls`) with a certificate made here by rcgen.

use std::os::unix::net::UnixStream;
use std::thread;

use sockeye_std::{ClientOptions, CloseCode, Config, Message, Server, Stream, WebSocket};

/// Echoes every message on `ws` until the peer closes.
fn echo<S: Stream>(mut ws: WebSocket<S>) -> sockeye_std::Result<u32> {
    let mut echoed = 0;
    while let Some(message) = ws.recv()? {
        ws.send(message)?;
        echoed += 1;
    }
    Ok(echoed)
}

/// Sends `count` messages of growing size (some larger than a TLS record and a socket
/// buffer), checks each echo, then closes.
fn talk<S: Stream>(ws: &mut WebSocket<S>, count: usize) {
    for i in 0..count {
        let payload = vec![b'a' + (i % 26) as u8; i * 7919];
        ws.send(Message::binary(payload.clone())).unwrap();
        assert_eq!(
            ws.recv().unwrap(),
            Some(Message::binary(payload)),
            "echo {i}"
        );
    }
    ws.close(CloseCode::NORMAL, "done").unwrap();
    assert_eq!(ws.recv().unwrap(), None);
    assert_eq!(ws.close_info().unwrap().code, CloseCode::NORMAL);
}

#[test]
fn a_unix_socket_pair_carries_both_roles() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let server = thread::spawn(move || echo(WebSocket::server(theirs, Config::default())?));
    let mut ws = WebSocket::client(
        ours,
        "ws://localhost/over-unix",
        Config::default(),
        ClientOptions::default(),
    )
    .unwrap();
    talk(&mut ws, 40);
    assert_eq!(server.join().unwrap().unwrap(), 40);
}

#[test]
fn a_server_upgrades_a_unix_stream_with_its_policy() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let server = Server::bind("127.0.0.1:0", Config::default())
        .unwrap()
        .select_protocol(|r| r.protocols().find(|p| *p == "chat").map(String::from));
    let upgraded = thread::spawn(move || {
        let ws = server.upgrade(theirs)?;
        assert_eq!(ws.protocol(), Some("chat"));
        assert_eq!(ws.path(), Some("/room"));
        echo(ws)
    });
    let options = ClientOptions {
        protocols: &["other", "chat"],
        ..ClientOptions::default()
    };
    let mut ws = WebSocket::client(ours, "ws://h/room", Config::default(), options).unwrap();
    assert_eq!(ws.protocol(), Some("chat"));
    talk(&mut ws, 3);
    assert_eq!(upgraded.join().unwrap().unwrap(), 3);
}

#[test]
fn a_boxed_stream_works_like_its_inner_one() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let theirs: Box<dyn Stream> = Box::new(theirs);
    let server = thread::spawn(move || echo(WebSocket::server(theirs, Config::default())?));
    let ours: Box<dyn Stream> = Box::new(ours);
    let mut ws =
        WebSocket::client(ours, "ws://h/", Config::default(), ClientOptions::default()).unwrap();
    talk(&mut ws, 5);
    assert_eq!(server.join().unwrap().unwrap(), 5);
}

#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use std::sync::Arc;

    use sockeye_std::tls::{client_config, server_config};
    use sockeye_std::{Client, Error, UrlError};

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

    #[test]
    fn a_wss_client_talks_to_a_tls_server_on_loopback() {
        let (server_tls, client_tls) = certificate();
        let server = Server::bind("127.0.0.1:0", Config::default())
            .unwrap()
            .tls(server_tls)
            .spawn(|ws| {
                let _ = echo(ws);
            })
            .unwrap();
        for host in ["localhost", "127.0.0.1"] {
            let url = format!("wss://{host}:{}/secure", server.local_addr().port());
            let options = ClientOptions {
                tls: Some(&client_tls),
                ..ClientOptions::default()
            };
            let mut ws = Client::connect_tls(&url, Config::default(), options).unwrap();
            assert!(ws.get_ref().connection().protocol_version().is_some());
            assert!(ws.peer_addr().unwrap().ip().is_loopback());
            talk(&mut ws, 30);

            // The same through `open`, which picks TLS by the scheme.
            let mut ws = Client::open(&url, Config::default(), options).unwrap();
            talk(&mut ws, 2);
        }
    }

    #[test]
    fn a_client_refuses_a_certificate_it_does_not_trust() {
        let (server_tls, _) = certificate();
        let (_, other_roots) = certificate();
        let server = Server::bind("127.0.0.1:0", Config::default())
            .unwrap()
            .tls(server_tls)
            .spawn(|ws| {
                let _ = echo(ws);
            })
            .unwrap();
        let url = format!("wss://localhost:{}/", server.local_addr().port());
        let options = ClientOptions {
            tls: Some(&other_roots),
            ..ClientOptions::default()
        };
        match Client::connect_tls(&url, Config::default(), options) {
            Err(Error::Io(e)) => {
                let tls = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
                assert!(
                    matches!(tls, Some(rustls::Error::InvalidCertificate(_))),
                    "{e:?}"
                );
            }
            other => panic!("connected to an untrusted server: {other:?}"),
        }
    }

    #[test]
    fn ws_urls_and_wss_urls_go_to_their_own_constructors() {
        assert!(matches!(
            Client::connect("wss://localhost:1/", Config::default()),
            Err(Error::Url(UrlError::ExpectedWs))
        ));
        assert!(matches!(
            Client::connect_tls("ws://localhost:1/", Config::default(), Default::default()),
            Err(Error::Url(UrlError::ExpectedWss))
        ));
    }

    #[test]
    fn a_tls_stream_over_a_unix_socket_pair() {
        let (server_tls, client_tls) = certificate();
        let (ours, theirs) = UnixStream::pair().unwrap();
        let timeout = std::time::Duration::from_secs(10);
        let server = thread::spawn(move || {
            let tls = sockeye_std::TlsStream::accept(server_tls, theirs, timeout)?;
            echo(WebSocket::server(tls, Config::default())?)
        });
        let tls = sockeye_std::TlsStream::connect(client_tls, "localhost", ours, timeout).unwrap();
        let mut ws = WebSocket::client(
            tls,
            "wss://localhost/",
            Config::default(),
            Default::default(),
        )
        .unwrap();
        talk(&mut ws, 10);
        assert_eq!(server.join().unwrap().unwrap(), 10);
    }

    /// The write timeout holds over TLS: a peer that completed both handshakes and then
    /// reads nothing fails a blocked send with `WriteTimeout`, however much ciphertext
    /// the session buffered.
    #[test]
    fn a_send_to_a_tls_peer_that_reads_nothing_fails_with_a_write_timeout() {
        use sockeye_std::ConnectionError;
        let (server_tls, client_tls) = certificate();
        let (ours, theirs) = UnixStream::pair().unwrap();
        let timeout = std::time::Duration::from_secs(10);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        // The deaf peer: both handshakes, then it holds the stream without reading.
        let deaf = thread::spawn(move || {
            let tls = sockeye_std::TlsStream::accept(server_tls, theirs, timeout).unwrap();
            let ws = WebSocket::server(tls, Config::default()).unwrap();
            let _ = done_rx.recv();
            drop(ws);
        });
        let mut config = Config::default();
        config.pong_timeout = std::time::Duration::from_millis(200);
        config.ping_interval = None;
        let tls = sockeye_std::TlsStream::connect(client_tls, "localhost", ours, timeout).unwrap();
        let mut ws =
            WebSocket::client(tls, "wss://localhost/", config, Default::default()).unwrap();
        let message = Message::binary(vec![0u8; 1 << 20]);
        let mut sent = 0;
        let error = loop {
            match ws.send(message.clone()) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 4096, "4 GiB taken for a peer that reads nothing");
        };
        assert!(
            matches!(error, Error::Connection(ConnectionError::WriteTimeout)),
            "{error:?}"
        );
        assert!(matches!(
            ws.recv(),
            Err(Error::Connection(ConnectionError::WriteTimeout))
        ));
        done_tx.send(()).unwrap();
        deaf.join().unwrap();
    }
}

/// A Unix stream that counts the `write` and `write_vectored` calls made on it.
struct CountingWrites {
    inner: UnixStream,
    writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl std::io::Read for CountingWrites {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::io::Read::read(&mut self.inner, buf)
    }
}

impl std::io::Write for CountingWrites {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::io::Write::write(&mut self.inner, buf)
    }
    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::io::Write::write_vectored(&mut self.inner, bufs)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::Write::flush(&mut self.inner)
    }
}

impl std::os::fd::AsFd for CountingWrites {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl Stream for CountingWrites {}

#[test]
fn an_echo_of_messages_that_came_in_one_read_goes_out_in_one_write() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    const MESSAGES: usize = 10;
    let (ours, theirs) = UnixStream::pair().unwrap();
    let writes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&writes);
    let (go, wait) = mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let stream = CountingWrites {
            inner: theirs,
            writes: Arc::clone(&counted),
        };
        let mut ws = WebSocket::server(stream, Config::default()).unwrap();
        // Every message is in the socket before the first read after the handshake.
        wait.recv().unwrap();
        let before = counted.load(Ordering::SeqCst);
        for _ in 0..MESSAGES {
            let message = ws.recv().unwrap().expect("a message");
            ws.send(message).unwrap();
        }
        let during = counted.load(Ordering::SeqCst) - before;
        while ws.recv().unwrap().is_some() {}
        during
    });
    let mut ws = WebSocket::client(
        ours,
        "ws://localhost/",
        Config::default(),
        ClientOptions::default(),
    )
    .unwrap();
    for i in 0..MESSAGES {
        ws.send(Message::text(format!("message {i}"))).unwrap();
    }
    go.send(()).unwrap();
    for i in 0..MESSAGES {
        assert_eq!(
            ws.recv().unwrap(),
            Some(Message::text(format!("message {i}")))
        );
    }
    ws.close(CloseCode::NORMAL, "done").unwrap();
    assert_eq!(ws.recv().unwrap(), None);
    let during = server.join().unwrap();
    assert_eq!(during, 1, "ten echoes in one write, not {during}");
    assert!(writes.load(Ordering::SeqCst) > during);
}
