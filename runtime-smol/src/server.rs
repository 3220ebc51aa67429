//! [`Server`]: accept connections and perform the server handshake, asynchronously.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};

use async_io::Async;
use sockeye_core::handshake::Request;
use sockeye_core::{Config, HandshakeError, ServerHandshake};
use sockeye_std::{Clock, Error, Result};

use crate::handshake_io::{self, Input};
use crate::websocket::{Parts, WebSocket};

/// A listening socket. [`accept`](Self::accept) hands out each new connection as an
/// [`Incoming`] whose handshake runs wherever it is awaited (spawn a task per
/// connection), so one slow client never holds up the accept loop.
///
/// ```no_run
/// use std::rc::Rc;
/// use sockeye_smol::{Config, Server};
///
/// let ex = Rc::new(async_executor::LocalExecutor::new());
/// let served: std::io::Result<()> = async_io::block_on(ex.run(async {
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
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Server {
    listener: Async<TcpListener>,
    config: Config,
    #[cfg(feature = "deflate")]
    deflate: sockeye_core::handshake::DeflateConfig,
}

impl Server {
    /// Listens on `addr` (port 0 picks a free one; see [`local_addr`](Self::local_addr)).
    pub fn bind(addr: impl ToSocketAddrs, config: Config) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        Ok(Server {
            listener: Async::new(listener)?,
            config,
            #[cfg(feature = "deflate")]
            deflate: sockeye_core::handshake::DeflateConfig::OFF,
        })
    }

    /// Sets the permessage-deflate policy (RFC 7692; off by default) every upgrade
    /// answers offers by, as `sockeye_std::Server::deflate` does;
    /// [`WebSocket::deflate_params`] tells each connection what was agreed.
    #[cfg(feature = "deflate")]
    pub fn deflate(mut self, policy: sockeye_core::handshake::DeflateConfig) -> Self {
        self.deflate = policy;
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.get_ref().local_addr()
    }

    /// Waits for the next connection. Its handshake has not started: await
    /// [`Incoming::upgrade`] (in a task of its own). Cancel-safe.
    pub async fn accept(&self) -> io::Result<Incoming> {
        let (stream, peer) = self.listener.accept().await?;
        let _ = stream.get_ref().set_nodelay(true);
        Ok(Incoming {
            stream,
            peer,
            config: self.config.clone(),
            #[cfg(feature = "deflate")]
            deflate: self.deflate.clone(),
        })
    }
}

/// A connection accepted by [`Server::accept`], before its handshake.
#[derive(Debug)]
pub struct Incoming {
    stream: Async<TcpStream>,
    peer: SocketAddr,
    config: Config,
    #[cfg(feature = "deflate")]
    deflate: sockeye_core::handshake::DeflateConfig,
}

impl Incoming {
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

    /// Like [`upgrade`](Self::upgrade), with `decide` looking at the request first: it
    /// returns the subprotocol to select (`Ok(None)`: none), or the refusal to answer
    /// (for example [`HandshakeError::OriginRefused`], answered 403).
    pub async fn upgrade_with(
        self,
        decide: impl FnOnce(&Request) -> std::result::Result<Option<String>, HandshakeError>,
    ) -> Result<WebSocket> {
        let decide = |request: &Request| decide(request).map_err(Refusal::Handshake);
        self.upgrade_on(Clock::new(), decide).await
    }

    /// [`upgrade_with`](Self::upgrade_with) on `clock`, so the connection's deadlines
    /// compare with instants its caller (a session registry) already holds.
    pub(crate) async fn upgrade_on(
        mut self,
        clock: Clock,
        decide: impl FnOnce(&Request) -> std::result::Result<Option<String>, Refusal>,
    ) -> Result<WebSocket> {
        let config = &self.config;
        let mut handshake = ServerHandshake::new(config, clock.now());
        let mut buf = vec![0u8; 4096];
        let outcome = loop {
            let deadline = handshake.poll_timeout();
            let input = handshake_io::read(&mut self.stream, &mut buf, deadline, clock).await?;
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
                return Err(self.refuse(&answer, e.into()).await);
            }
        };
        let protocol = match decide(&request) {
            Ok(protocol) => protocol,
            Err(Refusal::Handshake(e)) => {
                let answer = request.reject(&e);
                return Err(self.refuse(&answer, e.into()).await);
            }
            Err(Refusal::Answer { answer, error }) => {
                return Err(self.refuse(&answer, error).await);
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
        };
        #[cfg(feature = "deflate")]
        let conn = request.accept_deflate(
            clock.now(),
            protocol.as_deref(),
            config.clone(),
            &self.deflate,
        );
        #[cfg(not(feature = "deflate"))]
        let conn = request.accept(clock.now(), protocol.as_deref(), config.clone());
        let mut ws = WebSocket::new(conn, self.stream, parts);
        // The 101 goes out now, not with the application's first call.
        ws.flush().await?;
        Ok(ws)
    }

    /// Writes an HTTP refusal, closes, and returns `e`.
    async fn refuse(&mut self, answer: &[u8], e: Error) -> Error {
        let limit = self.config.close_timeout;
        if handshake_io::write_all(&mut self.stream, answer, limit)
            .await
            .is_ok()
        {
            let _ = self.stream.get_ref().shutdown(std::net::Shutdown::Write);
            // Read what the client still sends until it closes, so our answer is not
            // destroyed by a reset (bounded by the linger).
            let mut sink = [0u8; 1024];
            let clock = Clock::new();
            let until = clock.now() + limit;
            while let Ok(Input::Bytes(_)) =
                handshake_io::read(&mut self.stream, &mut sink, Some(until), clock).await
            {
            }
        }
        e
    }
}

/// Why an upgrade is refused, and with what answer.
pub(crate) enum Refusal {
    /// A handshake refusal: the request's own answer for it.
    Handshake(HandshakeError),
    /// Another refusal (a session store's), with its HTTP answer.
    Answer {
        /// The whole HTTP response.
        answer: bytes::Bytes,
        /// What the upgrade returns.
        error: Error,
    },
}
