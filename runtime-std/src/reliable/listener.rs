//! [`ReliableServer`]: a listener whose accept loop drives each reliable connection on
//! its own thread, around one [`SessionRegistry`], with the plain [`Server`]'s
//! handshake policy: an accept hook, an origin policy and a connection limit.
//!
//! [`Server`]: crate::Server

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;

use sockeye_core::handshake::Request;
use sockeye_core::{CloseCode, Config, SessionConfig};

use super::server::{SessionRegistry, Upgrade};
use crate::error::Result;
use crate::incoming::Policy;
use crate::refusal::Refusal;
use crate::server_handle::{spawn_accept_loop, ServerHandle};

/// A listening reliable server: a [`SessionRegistry`] and an accept loop that drives
/// each reliable connection on its own thread, where its handshake runs too.
///
/// Like a [`Server`](crate::Server), it decides who gets in
/// ([`on_request`](Self::on_request), [`check_origin`](Self::check_origin),
/// [`max_connections`](Self::max_connections)); it always selects `sockeye.v1`. Every
/// connection gets a [`ConnectionId`](crate::ConnectionId)
/// ([`SessionRegistry::connection_id`]), and [`ServerHandle::shutdown`] closes the open
/// connections with 1001 (going away) while their sessions stay in the registry.
///
/// ```no_run
/// use sockeye_std::{Config, Refusal, ReliableServer, SessionConfig, SessionEvent};
///
/// let server = ReliableServer::bind("127.0.0.1:9001", Config::default(), SessionConfig::default())?
///     .max_connections(10_000)
///     .on_request(|request| match request.header("sockeye-token") {
///         Some(b"let-me-in") => Ok(()),
///         _ => Err(Refusal::new(401).with_header("WWW-Authenticate", "Bearer")),
///     });
/// let sessions = server.registry();
/// let _handle = server.spawn()?;
/// while let Some((id, event)) = sessions.next_event(None) {
///     if let SessionEvent::Delivered { payload, is_text, .. } = event {
///         let _ = sessions.send(id, payload, is_text); // echo, reliably
///     }
/// }
/// # Ok::<(), sockeye_std::Error>(())
/// ```
pub struct ReliableServer {
    listener: TcpListener,
    config: Config,
    registry: SessionRegistry,
    policy: Policy,
}

impl std::fmt::Debug for ReliableServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReliableServer")
            .field("listener", &self.listener)
            .field("config", &self.config)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl ReliableServer {
    /// Listens on `addr` with a fresh registry whose sessions follow `session`. By
    /// default every origin and request is allowed and the number of connections is not
    /// limited.
    pub fn bind(
        addr: impl ToSocketAddrs,
        config: Config,
        session: SessionConfig,
    ) -> Result<ReliableServer> {
        Ok(ReliableServer {
            listener: TcpListener::bind(addr)?,
            config,
            registry: SessionRegistry::new(session)?,
            policy: Policy::open(),
        })
    }

    /// Sets the origin policy: `check(origin)` returns whether to accept a request whose
    /// `Origin` header is `origin` (`None` when absent, as from non-browser clients).
    /// Refused requests are answered 403. As [`Server::check_origin`](crate::Server::check_origin).
    pub fn check_origin(
        mut self,
        check: impl Fn(Option<&str>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.policy.origin = Arc::new(check);
        self
    }

    /// Sets the accept hook: `hook(request)` sees every upgrade request (its path and
    /// query, [`Request::query_raw`], and headers, [`Request::header`]) after the origin
    /// policy and before a session is attached, on the connection's own thread, and
    /// either lets it through (`Ok(())`) or refuses it with a [`Refusal`]: any HTTP
    /// status, with headers and a body of its choosing. A refused upgrade is answered
    /// with the refusal and closed, and no session is created or resumed. As
    /// [`Server::on_request`](crate::Server::on_request).
    pub fn on_request(
        mut self,
        hook: impl Fn(&Request) -> std::result::Result<(), Refusal> + Send + Sync + 'static,
    ) -> Self {
        self.policy.hook = Arc::new(hook);
        self
    }

    /// Allows at most `max` connections open at once: over it, an upgrade is answered
    /// 503 (before the origin policy and the accept hook see it, and before a session is
    /// attached) and the connections already open are unaffected. A connection counts
    /// from its upgrade until its [`ReliableConnection::run`](crate::ReliableConnection::run)
    /// ends (a client that does not offer `sockeye.v1`: until it is closed). Connections
    /// upgraded by [`SessionRegistry::upgrade`] on threads of your own do not count.
    pub fn max_connections(self, max: usize) -> Self {
        self.registry.connections().set_max(max);
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The sessions, for the application (a clone shares them).
    pub fn registry(&self) -> SessionRegistry {
        self.registry.clone()
    }

    /// Runs the accept loop on a background thread, a thread per connection that
    /// performs the handshake and then drives the connection. Clients that do not offer
    /// `sockeye.v1` are closed with 1008.
    ///
    /// Dropping the handle stops accepting; connections run on. Its
    /// [`shutdown`](ServerHandle::shutdown) also closes every open connection with 1001
    /// (going away) and waits for them (at most twice `Config::close_timeout`); their
    /// sessions stay in the registry, detached, for a resume until `session_expiry`.
    pub fn spawn(self) -> Result<ServerHandle> {
        let ReliableServer {
            listener,
            config,
            registry,
            policy,
        } = self;
        let connections = Arc::clone(registry.connections());
        let grace = config.close_timeout * 2;
        let on_stream = move |stream| match registry.upgrade_as(stream, &config, Some(&policy)) {
            Ok(Upgrade::Reliable(conn)) => {
                let _ = conn.run();
            }
            Ok(Upgrade::Plain(mut ws)) => {
                if ws
                    .close(CloseCode::POLICY_VIOLATION, "sockeye.v1 required")
                    .is_ok()
                {
                    while let Ok(Some(_)) = ws.recv() {}
                }
            }
            Err(_) => {}
        };
        Ok(spawn_accept_loop(
            listener,
            on_stream,
            Some(connections),
            grace,
        )?)
    }
}
