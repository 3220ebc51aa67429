//! [`ShutdownHandle`]: ends a [`Server`](crate::Server)'s accept loop and closes its open
//! connections with 1001.

use std::sync::Arc;
use std::time::Duration;

use crate::connections::Connections;

/// Shuts a [`Server`](crate::Server) down from any task or thread, made by
/// [`Server::shutdown_handle`](crate::Server::shutdown_handle). Clone it freely.
///
/// Once [`shutdown`](Self::shutdown) began, a pending
/// [`Server::accept`](crate::Server::accept) and every later one answer
/// [`Error::ShutDown`](crate::Error::ShutDown), so the application's accept loop ends,
/// and every upgrade is answered 503. The socket keeps listening until the `Server` is
/// dropped: drop it once the loop ended.
///
/// ```
/// use sockeye_smol::{Config, Error, Server};
///
/// smol::block_on(async {
///     let server = Server::bind("127.0.0.1:0", Config::default())?;
///     let handle = server.shutdown_handle();
///     // Another task shuts the server down, as a signal handler would.
///     smol::spawn(async move { handle.shutdown().await }).detach();
///     let ended = loop {
///         match server.accept().await {
///             Ok(incoming) => smol::spawn(async move {
///                 let Ok(mut ws) = incoming.upgrade().await else { return };
///                 while let Ok(Some(message)) = ws.recv().await {
///                     if ws.send(message).await.is_err() {
///                         break;
///                     }
///                 }
///             })
///             .detach(),
///             Err(e) => break e,
///         }
///     };
///     assert!(matches!(ended, Error::ShutDown));
///     Ok::<(), Error>(())
/// })?;
/// # Ok::<(), sockeye_smol::Error>(())
/// ```
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

    /// Ends the accept loop ([`Server::accept`](crate::Server::accept) answers
    /// [`Error::ShutDown`](crate::Error::ShutDown) from now on, a pending one at once),
    /// refuses every upgrade from now on (503), closes every open connection with 1001
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
