//! [`Server`]: a listening socket and its handshake policy: the application's accept
//! hook, a connection limit, and a thread per connection (the handshakes themselves run
//! in [`Incoming`](crate::Incoming), on the connection's thread).

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use sockeye_core::handshake::Request;
use sockeye_core::Config;

use crate::connections::Connections;
use crate::error::Result;
use crate::incoming::{handshake, Acceptor, Incoming, Policy};
use crate::refusal::Refusal;
use crate::server_handle::{accept_loop, spawn_accept_loop, ServerHandle};
use crate::stream::Stream;
use crate::websocket::WebSocket;

/// A WebSocket server: accepts TCP connections and upgrades them; a `Server<TlsStream>`
/// (`Server::tls`, feature `tls`) runs a TLS handshake first.
///
/// [`serve`](Self::serve) and [`spawn`](Self::spawn) run a thread per connection, which
/// performs the handshake and then calls the handler; [`accept`](Self::accept) hands
/// out each connection as an [`Incoming`] to upgrade on a thread of your choosing;
/// [`upgrade`](Self::upgrade) runs the handshake with this server's policy over a stream
/// accepted elsewhere (a Unix socket). Every connection gets a
/// [`ConnectionId`](crate::ConnectionId) ([`WebSocket::id`]), and counts towards
/// [`max_connections`](Self::max_connections) until its `WebSocket` is dropped.
///
/// ```no_run
/// use sockeye_std::{Config, Refusal, Server};
///
/// let server = Server::bind("127.0.0.1:9001", Config::default())?
///     .max_connections(10_000)
///     .check_origin(|origin| origin.is_none_or(|o| o == "https://example.com"))
///     .on_request(|request| match request.query_raw("token") {
///         Some("let-me-in") => Ok(()),
///         _ => Err(Refusal::new(401).with_header("WWW-Authenticate", "Bearer")),
///     })
///     .select_protocol(|request| request.protocols().find(|p| *p == "chat").map(String::from));
/// server.serve(|mut ws| {
///     println!("connection {:?} on {:?}", ws.id(), ws.path());
///     while let Ok(Some(message)) = ws.recv() {
///         if ws.send(message).is_err() {
///             break;
///         }
///     }
/// })?;
/// # Ok::<(), sockeye_std::Error>(())
/// ```
pub struct Server<S = TcpStream> {
    listener: TcpListener,
    acceptor: Acceptor<S>,
}

impl<S> fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("config", &self.acceptor.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Listens on `addr` (port 0 picks a free one; see [`local_addr`](Self::local_addr)).
    /// By default every origin and request is allowed, no subprotocol is chosen, and the
    /// number of connections is not limited.
    pub fn bind(addr: impl ToSocketAddrs, config: Config) -> Result<Server> {
        Ok(Server {
            listener: TcpListener::bind(addr)?,
            acceptor: Acceptor {
                config,
                policy: Arc::new(Policy::open()),
                wrap: Arc::new(|stream, _| Ok(stream)),
                connections: Connections::new(),
            },
        })
    }

    /// Serves `wss://`: every connection first completes a TLS handshake with `tls`
    /// (bounded by `Config::handshake_timeout`, on the connection's thread, inside
    /// [`Incoming::upgrade`]), then the WebSocket handshake over it. Build `tls` with
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
    /// # Ok::<(), sockeye_std::Error>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(self, tls: Arc<rustls::ServerConfig>) -> Server<crate::tls::TlsStream> {
        let Acceptor {
            config,
            policy,
            connections,
            wrap: _,
        } = self.acceptor;
        Server {
            listener: self.listener,
            acceptor: Acceptor {
                config,
                policy,
                connections,
                wrap: Arc::new(move |stream, config| {
                    crate::tls::TlsStream::accept(
                        Arc::clone(&tls),
                        stream,
                        config.handshake_timeout,
                    )
                }),
            },
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
        Arc::make_mut(&mut self.acceptor.policy).origin = Arc::new(check);
        self
    }

    /// Sets the accept hook: `hook(request)` sees every upgrade request (its path and
    /// query, [`Request::query_raw`], and headers, [`Request::header`]) after the origin
    /// policy, and either lets it through (`Ok(())`) or refuses it with a [`Refusal`]:
    /// any HTTP status, with headers and a body of its choosing. A refused upgrade is
    /// answered with the refusal and closed; [`Incoming::upgrade`] returns it as
    /// [`Error::Refused`](crate::Error::Refused).
    pub fn on_request(
        mut self,
        hook: impl Fn(&Request) -> std::result::Result<(), Refusal> + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.acceptor.policy).hook = Arc::new(hook);
        self
    }

    /// Sets the subprotocol choice: `select(request)` returns one of the protocols the
    /// client offered ([`Request::protocols`]), or `None` to answer without one.
    pub fn select_protocol(
        mut self,
        select: impl Fn(&Request) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.acceptor.policy).protocol = Arc::new(select);
        self
    }

    /// Allows at most `max` connections open at once: over it, an upgrade is answered
    /// 503 (before the origin policy and the accept hook see it) and the connections
    /// already open are unaffected. A connection counts from its upgrade until its
    /// [`WebSocket`] is dropped.
    pub fn max_connections(self, max: usize) -> Self {
        self.acceptor.connections.set_max(max);
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
        Arc::make_mut(&mut self.acceptor.policy).deflate = policy;
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The configuration every connection gets.
    pub fn config(&self) -> &Config {
        &self.acceptor.config
    }

    /// Waits for the next TCP connection and returns it before any handshake: call
    /// [`Incoming::upgrade`] on the thread that serves it, so that a client slow to send
    /// its request holds up only that thread (for at most `Config::handshake_timeout`),
    /// never the next `accept`.
    pub fn accept(&self) -> Result<Incoming<S>> {
        let (stream, peer) = self.listener.accept()?;
        Ok(Incoming::new(stream, peer, self.acceptor.clone()))
    }

    /// Performs the server handshake with this server's policy and connection limit over
    /// `stream`, a connection accepted elsewhere (a `UnixListener`, your own TLS), on the
    /// calling thread; the connection gets an id of this server's. The stream is put in
    /// non-blocking mode.
    pub fn upgrade<T: Stream>(&self, stream: T) -> Result<WebSocket<T>> {
        let id = self.acceptor.connections.next_id();
        self.acceptor.upgrade(stream, id)
    }

    /// Runs the accept loop forever, one thread per connection: each thread performs the
    /// handshake and, if it succeeds, calls `handler` with the open [`WebSocket`].
    ///
    /// Returns only if the listener fails in a way retrying cannot fix.
    pub fn serve<F>(self, handler: F) -> Result<()>
    where
        F: Fn(WebSocket<S>) + Send + Sync + 'static,
    {
        let Server { listener, acceptor } = self;
        let on_stream = Arc::new(move |stream| {
            let id = acceptor.connections.next_id();
            if let Ok(ws) = acceptor.upgrade_tcp(stream, id) {
                handler(ws);
            }
        });
        // Nothing stops it but the listener failing; `spawn` is the stoppable form.
        Ok(accept_loop(&listener, on_stream, &AtomicBool::new(false))?)
    }

    /// Runs [`serve`](Self::serve) on a background thread and returns a handle that
    /// stops it when dropped; [`ServerHandle::shutdown`] also closes the open
    /// connections with 1001 (going away) and waits for them.
    ///
    /// Each connection of a spawned server holds a [`Sender`](crate::Sender) for the
    /// shutdown to close it with: two more file descriptors per connection.
    pub fn spawn<F>(self, handler: F) -> Result<ServerHandle>
    where
        F: Fn(WebSocket<S>) + Send + Sync + 'static,
    {
        let Server { listener, acceptor } = self;
        acceptor.connections.make_closable();
        let connections = Arc::clone(&acceptor.connections);
        let grace = acceptor.config.close_timeout * 2;
        let on_stream = move |stream| {
            let id = acceptor.connections.next_id();
            if let Ok(ws) = acceptor.upgrade_tcp(stream, id) {
                handler(ws);
            }
        };
        Ok(spawn_accept_loop(
            listener,
            on_stream,
            Some(connections),
            grace,
        )?)
    }
}

impl<S: Stream> WebSocket<S> {
    /// Performs the server handshake over `stream`, a connection you accepted yourself
    /// (a `UnixStream`, a TLS session of your own), and returns the open WebSocket over
    /// it: every origin allowed, no subprotocol chosen, no id (a [`Server`]'s
    /// [`upgrade`](Server::upgrade) applies its policy instead). The stream is put in
    /// non-blocking mode; the request must arrive within `config.handshake_timeout`, and
    /// a bad one is answered with its HTTP error. See [`WebSocket::client`] for an
    /// example.
    pub fn server(stream: S, config: Config) -> Result<WebSocket<S>> {
        handshake(stream, &config, &Policy::open(), None)
    }
}
