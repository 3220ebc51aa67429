//! [`ServerHandle`]: a server's accept loop running on a background thread, and the
//! shutdown that stops it and closes the connections it opened.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::accept;
use crate::connections::Connections;

/// A server running on a background thread (see [`Server::spawn`](crate::Server::spawn)
/// and [`ReliableServer::spawn`](crate::ReliableServer::spawn)). Dropping it stops the
/// accept loop and leaves open connections to run to their end;
/// [`shutdown`](Self::shutdown) also closes them.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The connections a shutdown closes (a `Server`'s, or a `ReliableServer`'s
    /// registry's); `None` for an accept loop without any.
    connections: Option<Arc<Connections>>,
    /// How long [`shutdown`](Self::shutdown) waits for them.
    grace: Duration,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, then closes every open connection with 1001 (going away) and
    /// waits until each has ended or twice `Config::close_timeout` has passed (time for
    /// the closing handshake and the FIN that follows). Returns how many connections
    /// were still open when the wait ended: 0 when all closed.
    ///
    /// Upgrades still in their handshake are refused with 503. A connection ends when its
    /// handler drops its [`WebSocket`](crate::WebSocket); the close reaches a handler
    /// through its next `recv`, which returns `Ok(None)` once the handshake completes. A
    /// peer that does not answer the close keeps its connection until
    /// `Config::close_timeout`, then for the FIN's linger.
    ///
    /// A [`ReliableServer`](crate::ReliableServer)'s connections are closed the same way
    /// (as [`SessionRegistry::disconnect`](crate::SessionRegistry::disconnect) does),
    /// and one ends when its driver has wound it down; no application code need call
    /// anything. Their sessions stay in the registry, detached, for a resume until
    /// `SessionConfig::session_expiry`: the registry is the application's. Connections
    /// the application upgraded itself with
    /// [`SessionRegistry::upgrade`](crate::SessionRegistry::upgrade) are not the
    /// server's and stay open.
    pub fn shutdown(self) -> usize {
        let grace = self.grace;
        self.shutdown_within(grace)
    }

    /// [`shutdown`](Self::shutdown), waiting at most `grace` for the connections.
    pub fn shutdown_within(mut self, grace: Duration) -> usize {
        self.stop_now();
        match self.connections.take() {
            Some(connections) => connections.close_all(grace),
            None => 0,
        }
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

/// Runs [`accept_loop`] on a background thread; the handle stops it when dropped, and
/// its shutdown closes `connections` within `grace`.
pub(crate) fn spawn_accept_loop(
    listener: TcpListener,
    on_stream: impl Fn(TcpStream) + Send + Sync + 'static,
    connections: Option<Arc<Connections>>,
    grace: Duration,
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
        connections,
        grace,
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
