//! [`Incoming`]: a connection a [`Server`](crate::Server) accepted, whose handshake runs
//! wherever its [`upgrade`](Incoming::upgrade) is called; and the server handshake
//! itself, with the application's policy and the server's connection limit.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use sockeye_core::handshake::Request;
use sockeye_core::{Config, HandshakeError, ServerHandshake};

use crate::connections::{Closer, ConnectionId, Connections, Slot};
use crate::error::{Error, Result};
use crate::refusal::Refusal;
use crate::stream::Stream;
use crate::time::Clock;
use crate::transport::{write_timeout, Input, Transport};
use crate::websocket::WebSocket;

type OriginPolicy = dyn Fn(Option<&str>) -> bool + Send + Sync;
type RequestHook = dyn Fn(&Request) -> std::result::Result<(), Refusal> + Send + Sync;
type ProtocolPolicy = dyn Fn(&Request) -> Option<String> + Send + Sync;
/// What turns an accepted TCP connection into the stream the WebSocket runs over: the
/// identity, or a TLS handshake. Runs where the handshake does.
pub(crate) type Wrap<S> = dyn Fn(TcpStream, &Config) -> io::Result<S> + Send + Sync;

/// The application's say in a handshake: which origins to allow, which requests to
/// refuse and how, which subprotocol to pick, whether to compress. Everything else about
/// the handshake is the core's.
#[derive(Clone)]
pub(crate) struct Policy {
    pub(crate) origin: Arc<OriginPolicy>,
    pub(crate) hook: Arc<RequestHook>,
    pub(crate) protocol: Arc<ProtocolPolicy>,
    #[cfg(feature = "deflate")]
    pub(crate) deflate: sockeye_core::handshake::DeflateConfig,
}

impl Policy {
    /// Every origin and request allowed, no subprotocol chosen, no compression.
    pub(crate) fn open() -> Policy {
        Policy {
            origin: Arc::new(|_| true),
            hook: Arc::new(|_| Ok(())),
            protocol: Arc::new(|_| None),
            #[cfg(feature = "deflate")]
            deflate: sockeye_core::handshake::DeflateConfig::OFF,
        }
    }
}

/// Everything a server's handshake needs besides the stream, shared by the server and
/// every connection it accepted.
pub(crate) struct Acceptor<S> {
    pub(crate) config: Config,
    pub(crate) policy: Arc<Policy>,
    pub(crate) wrap: Arc<Wrap<S>>,
    pub(crate) connections: Arc<Connections>,
}

impl<S> Clone for Acceptor<S> {
    fn clone(&self) -> Self {
        Acceptor {
            config: self.config.clone(),
            policy: Arc::clone(&self.policy),
            wrap: Arc::clone(&self.wrap),
            connections: Arc::clone(&self.connections),
        }
    }
}

impl<S: Stream> Acceptor<S> {
    /// Wraps `stream` (TLS) and runs the handshake on it, on the calling thread.
    pub(crate) fn upgrade_tcp(&self, stream: TcpStream, id: ConnectionId) -> Result<WebSocket<S>> {
        let stream = (self.wrap)(stream, &self.config)?;
        self.upgrade(stream, id)
    }

    /// Runs the handshake on `stream` as connection `id` of this server.
    pub(crate) fn upgrade<T: Stream>(&self, stream: T, id: ConnectionId) -> Result<WebSocket<T>> {
        handshake(
            stream,
            &self.config,
            &self.policy,
            Some((&self.connections, id)),
        )
    }
}

/// A connection [`Server::accept`](crate::Server::accept) took from the listener, before
/// any handshake: call [`upgrade`](Self::upgrade) on the thread that will serve it, so
/// a slow client holds up only that thread, never the accept loop.
///
/// ```no_run
/// use std::thread;
/// use sockeye_std::{Config, Server};
///
/// let server = Server::bind("127.0.0.1:9001", Config::default())?;
/// loop {
///     let incoming = server.accept()?;
///     thread::spawn(move || {
///         let Ok(mut ws) = incoming.upgrade() else { return };
///         while let Ok(Some(message)) = ws.recv() {
///             if ws.send(message).is_err() {
///                 break;
///             }
///         }
///     });
/// }
/// # Ok::<(), sockeye_std::Error>(())
/// ```
pub struct Incoming<S = TcpStream> {
    stream: TcpStream,
    peer: SocketAddr,
    id: ConnectionId,
    acceptor: Acceptor<S>,
}

impl<S> fmt::Debug for Incoming<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<S: Stream> Incoming<S> {
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr, acceptor: Acceptor<S>) -> Self {
        let id = acceptor.connections.next_id();
        Incoming {
            stream,
            peer,
            id,
            acceptor,
        }
    }

    /// The id the connection keeps once upgraded ([`WebSocket::id`]).
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Runs the handshake on the calling thread (for a TLS server, the TLS handshake
    /// first), each bounded by `Config::handshake_timeout`, with the server's policy and
    /// connection limit. A refused or failed handshake is answered with its HTTP error
    /// and returned ([`Error::Handshake`], or [`Error::Refused`] for the accept hook's
    /// and the limit's refusals); the server is unaffected.
    pub fn upgrade(self) -> Result<WebSocket<S>> {
        self.acceptor.upgrade_tcp(self.stream, self.id)
    }

    /// The accepted socket, to run a handshake of your own over it.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}

/// Performs the server handshake on `stream`: reads the request under the core's
/// deadline, takes a place among the server's connections (if `server` names them),
/// applies the policy, and writes the core's answer.
pub(crate) fn handshake<S: Stream>(
    stream: S,
    config: &Config,
    policy: &Policy,
    server: Option<(&Arc<Connections>, ConnectionId)>,
) -> Result<WebSocket<S>> {
    // Each connection is driven alone: its own clock.
    let clock = Clock::new();
    let (transport, request) = read_request(stream, config, clock)?;
    let (transport, slot) = admit(transport, &request, config, policy, server)?;
    let protocol = (policy.protocol)(&request);
    let path = request.path().to_string();
    #[cfg(feature = "deflate")]
    let conn = request.accept_deflate(
        clock.now(),
        protocol.as_deref(),
        config.clone(),
        &policy.deflate,
    );
    #[cfg(not(feature = "deflate"))]
    let conn = request.accept(clock.now(), protocol.as_deref(), config.clone());
    let mut ws = WebSocket::new(conn, transport, config.close_timeout, Some(path), protocol)?;
    if let Some(slot) = slot {
        if slot.connections().closable() {
            let sender = ws.sender()?;
            slot.connections()
                .register(slot.id(), Closer::Sender(sender));
        }
        ws.set_slot(slot);
    }
    Ok(ws)
}

/// The server's say over a request it read: a place among its connections, if `server`
/// names them (503 over the limit or once a shutdown began), the origin policy (403),
/// then the accept hook. A refusal is answered (and the stream closed) before it is
/// returned; the place is freed when the returned [`Slot`] is dropped.
pub(crate) fn admit<S: Stream>(
    mut transport: Transport<S>,
    request: &Request,
    config: &Config,
    policy: &Policy,
    server: Option<(&Arc<Connections>, ConnectionId)>,
) -> Result<(Transport<S>, Option<Slot>)> {
    let slot = match server.map(|(connections, id)| connections.admit(id)) {
        None => None,
        Some(Ok(slot)) => Some(slot),
        Some(Err(refusal)) => {
            transport.queue(refusal.response());
            return Err(refuse(transport, Error::Refused(refusal), config));
        }
    };
    if !(policy.origin)(request.origin()) {
        let e = HandshakeError::OriginRefused;
        transport.queue(e.response());
        return Err(refuse(transport, e, config));
    }
    if let Err(refusal) = (policy.hook)(request) {
        transport.queue(refusal.response());
        return Err(refuse(transport, Error::Refused(refusal), config));
    }
    Ok((transport, slot))
}

/// Reads an upgrade request from `stream` under the core's deadline. A bad request is
/// answered with its HTTP error (and the stream closed) before the error is returned.
pub(crate) fn read_request<S: Stream>(
    stream: S,
    config: &Config,
    clock: Clock,
) -> Result<(Transport<S>, Request)> {
    let mut transport = Transport::new(stream, write_timeout(config), clock)?;
    let mut handshake = ServerHandshake::new(config, clock.now());
    let outcome = loop {
        let step = match transport.read(handshake.poll_timeout())? {
            Input::Bytes(data) => handshake.handle_bytes(clock.now(), data),
            Input::Eof => handshake.handle_eof(clock.now()).map(|()| None),
            Input::Timeout => handshake.handle_timeout(clock.now()).map(|()| None),
            Input::Woken | Input::Flushed => Ok(None),
        };
        match step {
            Ok(Some(request)) => break Ok(request),
            Ok(None) => continue,
            Err(e) => break Err(e),
        }
    };
    match outcome {
        Ok(request) => Ok((transport, request)),
        Err(HandshakeError::UnexpectedEof) => Err(HandshakeError::UnexpectedEof.into()),
        Err(e) => {
            transport.queue(e.response());
            Err(refuse(transport, e, config))
        }
    }
}

/// Writes an HTTP error response already queued, closes the stream, and returns `e`.
pub(crate) fn refuse<S: Stream>(
    mut transport: Transport<S>,
    e: impl Into<Error>,
    config: &Config,
) -> Error {
    let e = e.into();
    log::debug!("handshake refused: {e}");
    if transport.flush().is_ok() {
        transport.shutdown(config.close_timeout);
    }
    e
}
