//! [`Server`]: a listening socket, the server handshake (after TLS's, for a TLS
//! server), and a thread per connection.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use sockeye_core::handshake::Request;
use sockeye_core::{Config, HandshakeError, ServerHandshake};

use crate::accept;
use crate::error::{Error, Result};
use crate::stream::Stream;
use crate::time::Clock;
use crate::transport::{write_timeout, Input, Transport};
use crate::websocket::WebSocket;

type OriginPolicy = dyn Fn(Option<&str>) -> bool + Send + Sync;
type ProtocolPolicy = dyn Fn(&Request) -> Option<String> + Send + Sync;
/// What turns an accepted TCP connection into the stream the WebSocket runs over: the
/// identity, or a TLS handshake. Runs on the connection's own thread.
type Wrap<S> = dyn Fn(TcpStream, &Config) -> io::Result<S> + Send + Sync;

/// The application's say in a handshake: which origins to allow, which subprotocol to
/// pick, whether to compress. Everything else about the handshake is the core's.
struct Policy {
    origin: Box<OriginPolicy>,
    protocol: Box<ProtocolPolicy>,
    #[cfg(feature = "deflate")]
    deflate: sockeye_core::handshake::DeflateConfig,
}

/// A WebSocket server: accepts TCP connections and upgrades them; a `Server<TlsStream>`
/// (`Server::tls`, feature `tls`) runs a TLS handshake first, on the connection's
/// thread. [`upgrade`](Self::upgrade) runs the handshake with this server's policy over
/// a stream accepted elsewhere (a Unix socket).
///
/// ```no_run
/// use sockeye_std::{Config, Server};
///
/// let server = Server::bind("127.0.0.1:9001", Config::default())?
///     .check_origin(|origin| origin.is_none_or(|o| o == "https://example.com"))
///     .select_protocol(|request| request.protocols().find(|p| *p == "chat").map(String::from));
/// server.serve(|mut ws| {
///     while let Ok(Some(message)) = ws.recv() {
///         if ws.send(message).is_err() {
///             break;
///         }
///     }
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Server<S = TcpStream> {
    listener: TcpListener,
    config: Config,
    policy: Policy,
    wrap: Arc<Wrap<S>>,
}

impl<S> fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Listens on `addr` (port 0 picks a free one; see [`local_addr`](Self::local_addr)).
    /// By default every origin is allowed and no subprotocol is chosen.
    pub fn bind(addr: impl ToSocketAddrs, config: Config) -> io::Result<Server> {
        Ok(Server {
            listener: TcpListener::bind(addr)?,
            config,
            policy: Policy {
                origin: Box::new(|_| true),
                protocol: Box::new(|_| None),
                #[cfg(feature = "deflate")]
                deflate: sockeye_core::handshake::DeflateConfig::OFF,
            },
            wrap: Arc::new(|stream, _| Ok(stream)),
        })
    }

    /// Serves `wss://`: every accepted connection first completes a TLS handshake with
    /// `tls` (bounded by `Config::handshake_timeout`, on the connection's thread), then
    /// the WebSocket handshake over it. Build `tls` with
    /// [`tls::server_config_from_pem`](crate::tls::server_config_from_pem) or as any
    /// rustls `ServerConfig`.
    ///
    /// ```no_run
    /// use sockeye_std::{tls, Config, Server};
    ///
    /// let tls = tls::server_config_from_pem("fullchain.pem", "privkey.pem")?;
    /// Server::bind("0.0.0.0:443", Config::default())?.tls(tls).serve(|mut ws| {
    ///     while let Ok(Some(message)) = ws.recv() {
    ///         if ws.send(message).is_err() {
    ///             break;
    ///         }
    ///     }
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(self, tls: Arc<rustls::ServerConfig>) -> Server<crate::tls::TlsStream> {
        Server {
            listener: self.listener,
            config: self.config,
            policy: self.policy,
            wrap: Arc::new(move |stream, config| {
                crate::tls::TlsStream::accept(Arc::clone(&tls), stream, config.handshake_timeout)
            }),
        }
    }
}

impl<S: Stream> Server<S> {
    /// Sets the origin policy: `check(origin)` returns whether to accept a request whose
    /// `Origin` header is `origin` (`None` when absent, as from non-browser clients).
    /// Refused requests are answered 403.
    pub fn check_origin(
        mut self,
        check: impl Fn(Option<&str>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.policy.origin = Box::new(check);
        self
    }

    /// Sets the subprotocol choice: `select(request)` returns one of the protocols the
    /// client offered ([`Request::protocols`]), or `None` to answer without one.
    pub fn select_protocol(
        mut self,
        select: impl Fn(&Request) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.policy.protocol = Box::new(select);
        self
    }

    /// Sets the permessage-deflate policy (RFC 7692; off by default): a client's offer
    /// is answered by it ([`DeflateConfig::accept_offers`]), and
    /// [`WebSocket::deflate_params`] tells each connection what was agreed. A compressor
    /// that keeps its context holds about 312 KiB per connection
    /// ([`DeflateConfig::keep_compressor`]).
    ///
    /// [`DeflateConfig::accept_offers`]: sockeye_core::handshake::DeflateConfig::accept_offers
    /// [`DeflateConfig::keep_compressor`]: sockeye_core::handshake::DeflateConfig::keep_compressor
    #[cfg(feature = "deflate")]
    pub fn deflate(mut self, policy: sockeye_core::handshake::DeflateConfig) -> Self {
        self.policy.deflate = policy;
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The configuration every connection gets.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Accepts one TCP connection and performs its handshake on the calling thread.
    ///
    /// A failed handshake (answered with its HTTP error) is returned as
    /// [`Error::Handshake`]; the server itself is unaffected.
    pub fn accept(&self) -> Result<WebSocket<S>> {
        let (stream, _) = self.listener.accept()?;
        let stream = (self.wrap)(stream, &self.config)?;
        handshake(stream, &self.config, &self.policy)
    }

    /// Performs the server handshake with this server's policy over `stream`, a
    /// connection accepted elsewhere (a `UnixListener`, your own TLS), on the calling
    /// thread. The stream is put in non-blocking mode.
    pub fn upgrade<T: Stream>(&self, stream: T) -> Result<WebSocket<T>> {
        handshake(stream, &self.config, &self.policy)
    }

    /// Runs the accept loop forever, one thread per connection: each thread performs the
    /// handshake and, if it succeeds, calls `handler` with the open [`WebSocket`].
    ///
    /// Returns only if the listener fails in a way retrying cannot fix.
    pub fn serve<F>(self, handler: F) -> io::Result<()>
    where
        F: Fn(WebSocket<S>) + Send + Sync + 'static,
    {
        let Server {
            listener,
            config,
            policy,
            wrap,
        } = self;
        let on_stream = Arc::new(move |stream| {
            let Ok(stream) = wrap(stream, &config) else {
                return;
            };
            if let Ok(ws) = handshake(stream, &config, &policy) {
                handler(ws);
            }
        });
        // Nothing stops it but the listener failing; `spawn` is the stoppable form.
        accept_loop(&listener, on_stream, &AtomicBool::new(false))
    }

    /// Runs [`serve`](Self::serve) on a background thread and returns a handle that
    /// stops it when dropped. Connections already open run to their end.
    pub fn spawn<F>(self, handler: F) -> io::Result<ServerHandle>
    where
        F: Fn(WebSocket<S>) + Send + Sync + 'static,
    {
        let Server {
            listener,
            config,
            policy,
            wrap,
        } = self;
        spawn_accept_loop(listener, move |stream| {
            let Ok(stream) = wrap(stream, &config) else {
                return;
            };
            if let Ok(ws) = handshake(stream, &config, &policy) {
                handler(ws);
            }
        })
    }
}

impl<S: Stream> WebSocket<S> {
    /// Performs the server handshake over `stream`, a connection you accepted yourself
    /// (a `UnixStream`, a TLS session of your own), and returns the open WebSocket over
    /// it: every origin allowed, no subprotocol chosen (a [`Server`]'s
    /// [`upgrade`](Server::upgrade) applies its policy instead). The stream is put in
    /// non-blocking mode; the request must arrive within `config.handshake_timeout`, and
    /// a bad one is answered with its HTTP error. See [`WebSocket::client`] for an
    /// example.
    pub fn server(stream: S, config: Config) -> Result<WebSocket<S>> {
        let policy = Policy {
            origin: Box::new(|_| true),
            protocol: Box::new(|_| None),
            #[cfg(feature = "deflate")]
            deflate: sockeye_core::handshake::DeflateConfig::OFF,
        };
        handshake(stream, &config, &policy)
    }
}

/// Runs [`accept_loop`] on a background thread; the handle stops it when dropped.
pub(crate) fn spawn_accept_loop(
    listener: TcpListener,
    on_stream: impl Fn(TcpStream) + Send + Sync + 'static,
) -> io::Result<ServerHandle> {
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        thread::Builder::new()
            .name(format!("sockeye-accept-{addr}"))
            .spawn(move || {
                let _ = accept_loop(&listener, Arc::new(on_stream), &stop);
            })?
    };
    Ok(ServerHandle {
        addr,
        stop,
        thread: Some(thread),
    })
}

/// Accepts connections until `stop` is set, calling `on_stream` for each on a thread of
/// its own. Returns only if the listener fails in a way retrying cannot fix.
pub(crate) fn accept_loop<F>(
    listener: &TcpListener,
    on_stream: Arc<F>,
    stop: &AtomicBool,
) -> io::Result<()>
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let on_stream = |stream| {
        let on_stream = Arc::clone(&on_stream);
        let spawned = thread::Builder::new()
            .name("sockeye-conn".into())
            .spawn(move || on_stream(stream));
        if let Err(e) = spawned {
            // Out of threads: the stream was dropped with the closure, closing it.
            log::warn!("cannot start a connection thread: {e}");
            thread::sleep(accept::ACCEPT_BACKOFF);
        }
        true
    };
    accept::accept_until(listener, stop, on_stream, |e| {
        log::warn!("accept failed: {e}")
    })
}

/// Performs the server handshake on `stream`: reads the request under the core's deadline,
/// applies the policy, and writes the core's answer.
fn handshake<S: Stream>(stream: S, config: &Config, policy: &Policy) -> Result<WebSocket<S>> {
    // Each connection is driven alone: its own clock.
    let clock = Clock::new();
    let (mut transport, request) = read_request(stream, config, clock)?;
    if !(policy.origin)(request.origin()) {
        let e = HandshakeError::OriginRefused;
        transport.queue(request.reject(&e));
        return Err(refuse(transport, e, config));
    }
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
    WebSocket::new(conn, transport, config.close_timeout, Some(path), protocol)
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

/// A server running on a background thread (see [`Server::spawn`]); dropping it stops the
/// accept loop.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for the accept loop to end.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::Release);
            // Wake the blocking accept with a connection of our own.
            accept::wake(self.addr);
            let _ = thread.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}
