//! [`ShutdownHandle`]: closes a [`Server`](crate::Server)'s open connections with 1001.

use std::sync::Arc;
use std::time::Duration;

use crate::connections::Connections;

/// Shuts a [`Server`](crate::Server) down from any task or thread, made by
/// [`Server::shutdown_handle`](crate::Server::shutdown_handle). Clone it freely.
///
/// The accept loop is the application's: after [`shutdown`](Self::shutdown) every
/// upgrade is answered 503, so stop awaiting [`Server::accept`](crate::Server::accept)
/// and drop the `Server` to stop listening.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    connections: Arc<Connections>,
    grace: Duration,
}

impl ShutdownHandle {
    pub(crate) fn new(connections: Arc<Connections>, grace: Duration) -> ShutdownHandle {
        connections.make_closable();
        ShutdownHandle { connections, grace }
    }

    /// Refuses every upgrade from now on (503), closes every open connection with 1001
    /// (going away), and waits until each has ended or twice `Config::close_timeout`
    /// has passed (time for the closing handshake and the FIN that follows). Returns how
    /// many connections were still open when the wait ended: 0 when all closed.
    ///
    /// A connection ends when its task drops its [`WebSocket`](crate::WebSocket); the
    /// close reaches the task through its `recv`, which returns `Ok(None)` once the
    /// handshake completes. Connections upgraded before the first
    /// [`Server::shutdown_handle`](crate::Server::shutdown_handle) call are waited for
    /// but not closed (they hold no sender), so make the handle before accepting.
    /// Cancel-safe: a dropped `shutdown` has still begun it.
    pub async fn shutdown(&self) -> usize {
        self.shutdown_within(self.grace).await
    }

    /// [`shutdown`](Self::shutdown), waiting at most `grace` for the connections.
    pub async fn shutdown_within(&self, grace: Duration) -> usize {
        self.connections.close_all(grace).await
    }
}
