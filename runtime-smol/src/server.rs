//! [`Server`]: accept connections and perform the server handshake (after TLS's, for
//! [`Incoming::upgrade_tls`]), asynchronously.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;

use async_io::Async;
use sockeye_core::handshake::Request;
use sockeye_core::{Config, HandshakeError, ServerHandshake};
use sockeye_std::{Clock, ConnectionId, Error, Refusal, Result};

use crate::connections::{Connections, Slot};
use crate::handshake_io::{self, Input};
use crate::shutdown::ShutdownHandle;
use crate::stream::AsyncStream;
use crate::websocket::{Parts, WebSocket};

/// A listening socket. [`accept`](Self::accept) hands out each new connection as an
/// [`Incoming`] whose handshake runs wherever it is awaited (spawn a task per
/// connection), so one slow client never holds up the accept loop. Every connection gets
/// a [`ConnectionId`] ([`Incoming::id`], [`WebSocket::id`]) and counts towards
/// [`max_connections`](Self::max_connections) until its `WebSocket` is dropped.
///
/// ```no_run
/// use std::rc::Rc;
/// use sockeye_smol::{Config, Server};
///
/// let ex = Rc::new(async_executor::LocalExecutor::new());
/// let served: sockeye_smol::Result<()> = async_io::block_on(ex.run(async {
///     let server = Server::bind("127.0.0.1:9001", Config::default())?;
///     loop {
///         let incoming = server.accept().await?;
///         ex.spawn(async move {
///             let Ok(mut ws) = incoming.upgrade().await else { return };
///             while let Ok(Some(message)) = ws.recv().await {
///                 if ws.send(message).await.is_err() {
///                     break;
///                 }
///             }
///         })
///         .detach();
///     }
/// }));
/// served?;
/// # Ok::<(), sockeye_smol::Error>(())
/// ```
#[derive(Debug)]
pub struct Server {
    listener: Async<TcpListener>,
    config: Config,
    #[cfg(feature = "deflate")]
    deflate: sockeye_core::handshake::DeflateConfig,
    connections: Arc<Connections>,
}

impl Server {
    /// Listens on `addr` (port 0 picks a free one; see [`local_addr`](Self::local_addr)).
    pub fn bind(addr: impl ToSocketAddrs, config: Config) -> Result<Server> {
        let listener = TcpListener::bind(addr)?;
        Ok(Server {
            listener: Async::new(listener)?,
            config,
            #[cfg(feature = "deflate")]
            deflate: sockeye_core::handshake::DeflateConfig::OFF,
            connections: Connections::new(),
        })
    }

    /// Allows at most `max` connections open at once: over it, an upgrade is answered
    /// 503 (before `upgrade_with`'s `decide` sees it) and the connections already open
    /// are unaffected. A connection counts from its upgrade until its [`WebSocket`] is
    /// dropped.
    pub fn max_connections(self, max: usize) -> Self {
        self.connections.set_max(max);
        self
    }

    /// Sets the permessage-deflate policy (RFC 7692; off by default) every upgrade
    /// answers offers by, as `sockeye_std::Server::deflate` does;
    /// [`WebSocket::deflate_params`] tells each connection what was agreed.
    #[cfg(feature = "deflate")]
    pub fn deflate(mut self, policy: sockeye_core::handshake::DeflateConfig) -> Self {
        self.deflate = policy;
        self
    }

    /// A handle that shuts this server down from any task or thread: ends the accept
    /// loop ([`accept`](Self::accept) answers [`Error::ShutDown`]), refuses upgrades and
    /// closes open connections with 1001 (see [`ShutdownHandle::shutdown`]). From the
    /// first call on, each connection upgraded holds a [`Sender`](crate::Sender) for it
    /// (one small shared outbox per connection).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle::new(
            Arc::clone(&self.connections),
            self.config.close_timeout.saturating_mul(2),
        )
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.get_ref().local_addr()
    }

    /// Waits for the next connection. Its handshake has not started: await
    /// [`Incoming::upgrade`] (in a task of its own). Cancel-safe: an `accept` dropped
    /// before it completed took no connection.
    ///
    /// Once a [`ShutdownHandle::shutdown`] began, a pending `accept` and every later one
    /// answer [`Error::ShutDown`] at once, so `while let Ok(incoming) =
    /// server.accept().await` ends. A connection it hands out in the same instant as
    /// the shutdown is answered 503 by its upgrade.
    pub async fn accept(&self) -> Result<Incoming> {
        // The shutdown first: once it began, no connection is taken from the listener.
        let stopped = async {
            self.connections.stopped().await;
            Err(Error::ShutDown)
        };
        let accepted = async { Ok(self.listener.accept().await?) };
        let (stream, peer) = futures_lite::future::or(stopped, accepted).await?;
        let _ = stream.get_ref().set_nodelay(true);
        Ok(Incoming {
            stream,
            peer,
            id: self.connections.next_id(),
            config: self.config.clone(),
            #[cfg(feature = "deflate")]
            deflate: self.deflate.clone(),
            connections: Arc::clone(&self.connections),
        })
    }
}

/// A connection accepted by [`Server::accept`], before its handshake.
#[derive(Debug)]
pub struct Incoming {
    stream: Async<TcpStream>,
    peer: SocketAddr,
    id: ConnectionId,
    config: Config,
    #[cfg(feature = "deflate")]
    deflate: sockeye_core::handshake::DeflateConfig,
    connections: Arc<Connections>,
}

impl Incoming {
    /// The id the connection keeps once upgraded ([`WebSocket::id`]): unique among its
    /// server's connections.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Reads the upgrade request (bounded by `handshake_timeout` and the head limits)
    /// and accepts it: any origin, no subprotocol. A bad request is answered with its
    /// HTTP error before the error is returned.
    pub async fn upgrade(self) -> Result<WebSocket> {
        self.upgrade_with(|_| Ok(None)).await
    }

    /// Like [`upgrade`](Self::upgrade), with `decide` looking at the request (path and
    /// query, headers, origin, offered protocols) first: it returns the subprotocol to
    /// select (`Ok(None)`: none), or the [`Refusal`] to answer: any HTTP status, with
    /// headers and a body (`HandshakeError::OriginRefused.into()` is a 403). A refused
    /// upgrade returns [`Error::Refused`].
    ///
    /// ```no_run
    /// use sockeye_smol::{Config, Refusal, Server};
    ///
    /// async_io::block_on(async {
    ///     let server = Server::bind("127.0.0.1:9001", Config::default())?;
    ///     let incoming = server.accept().await?;
    ///     let mut ws = incoming
    ///         .upgrade_with(|request| match request.header("authorization") {
    ///             Some(b"Bearer let-me-in") => Ok(None),
    ///             _ => Err(Refusal::new(401).with_header("WWW-Authenticate", "Bearer")),
    ///         })
    ///         .await?;
    ///     ws.send(sockeye_smol::Message::text("welcome")).await
    /// })?;
    /// # Ok::<(), sockeye_smol::Error>(())
    /// ```
    pub async fn upgrade_with(
        self,
        decide: impl FnOnce(&Request) -> std::result::Result<Option<String>, Refusal>,
    ) -> Result<WebSocket> {
        let decide = |request: &Request| decide(request).map_err(Refuse::Policy);
        self.upgrade_on(Clock::new(), decide).await
    }

    /// [`upgrade_with`](Self::upgrade_with) on `clock`, so the connection's deadlines
    /// compare with instants its caller (a session registry) already holds.
    pub(crate) async fn upgrade_on(
        self,
        clock: Clock,
        decide: impl FnOnce(&Request) -> std::result::Result<Option<String>, Refuse>,
    ) -> Result<WebSocket> {
        let policy = Policy {
            config: &self.config,
            #[cfg(feature = "deflate")]
            deflate: &self.deflate,
            server: Some((&self.connections, self.id)),
        };
        upgrade_stream(self.stream, policy, clock, decide).await
    }

    /// The accepted socket, to run a handshake of your own over it (your own TLS, then
    /// [`WebSocket::server`]).
    pub fn into_stream(self) -> Async<TcpStream> {
        self.stream
    }

    /// Completes a TLS handshake with `tls` (bounded by `handshake_timeout`), then
    /// [`upgrade`](Self::upgrade)s over it: a `wss://` server. Build `tls` with
    /// `sockeye_std::tls::server_config_from_pem` or as any rustls `ServerConfig`.
    ///
    /// ```no_run
    /// use sockeye_smol::{Config, Server};
    ///
    /// async_io::block_on(async {
    ///     let tls = sockeye_std::tls::server_config_from_pem("fullchain.pem", "privkey.pem")?;
    ///     let server = Server::bind("0.0.0.0:443", Config::default())?;
    ///     let incoming = server.accept().await?;
    ///     // In a task of its own, in a real server:
    ///     let mut ws = incoming.upgrade_tls(tls).await?;
    ///     while let Some(message) = ws.recv().await? {
    ///         ws.send(message).await?;
    ///     }
    ///     Ok::<(), sockeye_smol::Error>(())
    /// })?;
    /// # Ok::<(), sockeye_smol::Error>(())
    /// ```
    #[cfg(feature = "tls")]
    pub async fn upgrade_tls(
        self,
        tls: std::sync::Arc<rustls::ServerConfig>,
    ) -> Result<WebSocket<futures_rustls::server::TlsStream<Async<TcpStream>>>> {
        let accept = futures_rustls::TlsAcceptor::from(tls).accept(self.stream);
        let timeout = async {
            async_io::Timer::after(self.config.handshake_timeout).await;
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the TLS handshake did not complete in time",
            ))
        };
        let stream = futures_lite::future::or(accept, timeout)
            .await
            .inspect_err(|e| log::debug!("TLS handshake with a client failed: {e}"))?;
        let policy = Policy {
            config: &self.config,
            #[cfg(feature = "deflate")]
            deflate: &self.deflate,
            server: Some((&self.connections, self.id)),
        };
        upgrade_stream(stream, policy, Clock::new(), |_| Ok(None)).await
    }
}

impl<S: AsyncStream> WebSocket<S> {
    /// Performs the server handshake over `stream`, a connection you accepted yourself
    /// (an `Async<UnixStream>`, a TLS session of your own), and returns the open
    /// WebSocket over it: any origin, no subprotocol, no id. The request must arrive within
    /// `config.handshake_timeout`; a bad one is answered with its HTTP error. See
    /// [`WebSocket::client`] for an example.
    pub async fn server(stream: S, config: Config) -> Result<WebSocket<S>> {
        #[cfg(feature = "deflate")]
        let off = sockeye_core::handshake::DeflateConfig::OFF;
        let policy = Policy {
            config: &config,
            #[cfg(feature = "deflate")]
            deflate: &off,
            server: None,
        };
        upgrade_stream(stream, policy, Clock::new(), |_| Ok(None)).await
    }
}

/// What an upgrade answers by besides the request.
struct Policy<'a> {
    config: &'a Config,
    #[cfg(feature = "deflate")]
    deflate: &'a sockeye_core::handshake::DeflateConfig,
    /// The server's connections, which the upgrade takes a place among, and its id.
    server: Option<(&'a Arc<Connections>, ConnectionId)>,
}

/// Reads the upgrade request from `stream` (bounded by `handshake_timeout` and the head
/// limits), lets `decide` answer it, and writes the answer.
async fn upgrade_stream<S: AsyncStream>(
    mut stream: S,
    policy: Policy<'_>,
    clock: Clock,
    decide: impl FnOnce(&Request) -> std::result::Result<Option<String>, Refuse>,
) -> Result<WebSocket<S>> {
    let config = policy.config;
    let mut handshake = ServerHandshake::new(config, clock.now());
    let mut buf = vec![0u8; 4096];
    let outcome = loop {
        let deadline = handshake.poll_timeout();
        let input = handshake_io::read(&mut stream, &mut buf, deadline, clock).await?;
        let step = match input {
            Input::Bytes(n) => handshake.handle_bytes(clock.now(), &buf[..n]),
            Input::Eof => handshake.handle_eof(clock.now()).map(|()| None),
            Input::Timeout => handshake.handle_timeout(clock.now()).map(|()| None),
        };
        match step {
            Ok(Some(request)) => break Ok(request),
            Ok(None) => continue,
            Err(e) => break Err(e),
        }
    };
    let request = match outcome {
        Ok(request) => request,
        Err(HandshakeError::UnexpectedEof) => return Err(HandshakeError::UnexpectedEof.into()),
        Err(e) => {
            let answer = e.response();
            return Err(refuse(&mut stream, config, &answer, e.into()).await);
        }
    };
    let slot: Option<Slot> = match policy.server.map(|(conns, id)| conns.admit(id)) {
        None => None,
        Some(Ok(slot)) => Some(slot),
        Some(Err(refusal)) => {
            let answer = refusal.response();
            return Err(refuse(&mut stream, config, &answer, Error::Refused(refusal)).await);
        }
    };
    let protocol = match decide(&request) {
        Ok(protocol) => protocol,
        Err(Refuse::Policy(refusal)) => {
            let answer = refusal.response();
            return Err(refuse(&mut stream, config, &answer, Error::Refused(refusal)).await);
        }
        Err(Refuse::Answer { answer, error }) => {
            return Err(refuse(&mut stream, config, &answer, error).await);
        }
    };
    let path = request.path().to_string();
    let parts = Parts {
        clock,
        max_queue_bytes: config.max_send_queue_bytes,
        write_timeout: config.pong_timeout,
        linger: config.close_timeout,
        path: Some(path),
        protocol: protocol.clone(),
        slot,
    };
    #[cfg(feature = "deflate")]
    let conn = request.accept_deflate(
        clock.now(),
        protocol.as_deref(),
        config.clone(),
        policy.deflate,
    );
    #[cfg(not(feature = "deflate"))]
    let conn = request.accept(clock.now(), protocol.as_deref(), config.clone());
    let mut ws = WebSocket::new(conn, stream, parts);
    if let Some((connections, id)) = policy.server {
        if connections.closable() {
            connections.register(id, ws.sender());
        }
    }
    // The 101 goes out now, not with the application's first call.
    ws.flush().await?;
    Ok(ws)
}

/// Writes an HTTP refusal, closes, and returns `e`.
async fn refuse<S: AsyncStream>(stream: &mut S, config: &Config, answer: &[u8], e: Error) -> Error {
    log::debug!("handshake refused: {e}");
    let limit = config.close_timeout;
    if handshake_io::write_all(stream, answer, limit).await.is_ok() {
        let clock = Clock::new();
        let until = clock.now() + limit;
        let closed = futures_lite::future::or(
            async { futures_lite::AsyncWriteExt::close(stream).await },
            async {
                async_io::Timer::after(limit).await;
                Err(io::ErrorKind::TimedOut.into())
            },
        )
        .await;
        if closed.is_ok() && stream.shutdown_write().is_ok() {
            // Read what the client still sends until it closes, so our answer is not
            // destroyed by a reset (bounded by the linger).
            let mut sink = [0u8; 1024];
            while let Ok(Input::Bytes(_)) =
                handshake_io::read(stream, &mut sink, Some(until), clock).await
            {}
        }
    }
    e
}

/// Why an upgrade is refused, and with what answer.
pub(crate) enum Refuse {
    /// The application's refusal.
    Policy(Refusal),
    /// Another refusal (a session store's), with its HTTP answer.
    Answer {
        /// The whole HTTP response.
        answer: bytes::Bytes,
        /// What the upgrade returns.
        error: Error,
    },
}
