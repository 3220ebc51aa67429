//! [`ReliableServer`]: a listener whose accept loop drives each reliable connection on
//! its own thread, around one [`SessionRegistry`].

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::time::Duration;

use sockeye_core::{CloseCode, Config, SessionConfig};

use super::server::{SessionRegistry, Upgrade};
use crate::error::Result;
use crate::server_handle::{spawn_accept_loop, ServerHandle};

/// A listening reliable server: a [`SessionRegistry`] and an accept loop that drives
/// each reliable connection on its own thread.
///
/// ```no_run
/// use sockeye_std::{Config, ReliableServer, SessionConfig, SessionEvent};
///
/// let server = ReliableServer::bind("127.0.0.1:9001", Config::default(), SessionConfig::default())?;
/// let sessions = server.registry();
/// let _handle = server.spawn()?;
/// while let Some((id, event)) = sessions.next_event(None) {
///     if let SessionEvent::Delivered { payload, is_text, .. } = event {
///         let _ = sessions.send(id, payload, is_text); // echo, reliably
///     }
/// }
/// # Ok::<(), sockeye_std::Error>(())
/// ```
#[derive(Debug)]
pub struct ReliableServer {
    listener: TcpListener,
    config: Config,
    registry: SessionRegistry,
}

impl ReliableServer {
    /// Listens on `addr` with a fresh registry whose sessions follow `session`.
    pub fn bind(
        addr: impl ToSocketAddrs,
        config: Config,
        session: SessionConfig,
    ) -> Result<ReliableServer> {
        Ok(ReliableServer {
            listener: TcpListener::bind(addr)?,
            config,
            registry: SessionRegistry::new(session)?,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The sessions, for the application (a clone shares them).
    pub fn registry(&self) -> SessionRegistry {
        self.registry.clone()
    }

    /// Runs the accept loop on a background thread, a thread per connection. Clients
    /// that do not offer `sockeye.v1` are closed with 1008. Dropping the handle, or its
    /// [`shutdown`](ServerHandle::shutdown), stops accepting; connections run on and
    /// sessions stay in the registry.
    pub fn spawn(self) -> Result<ServerHandle> {
        let ReliableServer {
            listener,
            config,
            registry,
        } = self;
        let on_stream = move |stream| match registry.upgrade(stream, &config) {
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
            None,
            Duration::ZERO,
        )?)
    }
}
