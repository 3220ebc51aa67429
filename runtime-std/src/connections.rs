//! The connections a [`Server`](crate::Server) (or a
//! [`ReliableServer`](crate::ReliableServer)'s registry) has open: their ids, the limit on
//! how many there may be, and, for a spawned server, the handles its shutdown closes them
//! with.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sockeye_core::CloseCode;

use crate::refusal::Refusal;
use crate::reliable::SessionKick;
use crate::sender::Sender;

/// The reason a shutdown's close frames carry.
const SHUTDOWN_REASON: &str = "server shutting down";

/// The id a server gives each connection it accepts: unique among that server's
/// connections, counting from 1 in the order they were accepted. A
/// [`ReliableServer`](crate::ReliableServer)'s come from its
/// [`SessionRegistry`](crate::SessionRegistry), which numbers every connection it
/// upgrades, with or without the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// The id numbered `n`, for a server that hands out ids of its own (sockeye-smol's
    /// `Server` does).
    pub fn new(n: u64) -> ConnectionId {
        ConnectionId(n)
    }

    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a shutdown closes one open connection.
#[derive(Clone, Debug)]
pub(crate) enum Closer {
    /// A [`WebSocket`](crate::WebSocket)'s: a [`Sender`] of its own.
    Sender(Sender),
    /// A reliable connection's: its registry asks the connection's driver to close.
    Session(SessionKick),
}

impl Closer {
    /// Asks the connection to close with 1001 (going away); one already closing is fine.
    fn close(&self) {
        match self {
            Closer::Sender(sender) => {
                let _ = sender.close(CloseCode::GOING_AWAY, SHUTDOWN_REASON);
            }
            Closer::Session(kick) => kick.close(CloseCode::GOING_AWAY, SHUTDOWN_REASON),
        }
    }
}

/// The open connections of one server (of a [`Server`](crate::Server), or of the
/// [`SessionRegistry`](crate::SessionRegistry) behind a
/// [`ReliableServer`](crate::ReliableServer)).
#[derive(Debug)]
pub(crate) struct Connections {
    next_id: AtomicU64,
    max: AtomicUsize,
    /// Each open WebSocket gets a [`Sender`] so a shutdown can close it: set by
    /// `Server::spawn`, the only plain server with a shutdown. (A reliable connection's
    /// [`Closer`] costs no descriptor; it always has one.)
    closable: AtomicBool,
    open: Mutex<Open>,
    /// Signalled whenever a connection ends.
    ended: Condvar,
}

#[derive(Debug, Default)]
struct Open {
    /// Every open connection, with its closer once it has one.
    conns: HashMap<ConnectionId, Option<Closer>>,
    /// A shutdown began: no more upgrades.
    stopping: bool,
}

impl Connections {
    /// No connection yet, no limit.
    pub(crate) fn new() -> Arc<Connections> {
        Arc::new(Connections {
            next_id: AtomicU64::new(1),
            max: AtomicUsize::new(usize::MAX),
            closable: AtomicBool::new(false),
            open: Mutex::new(Open::default()),
            ended: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next connection's id.
    pub(crate) fn next_id(&self) -> ConnectionId {
        ConnectionId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// At most `max` connections open at once.
    pub(crate) fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Each WebSocket from now on gets a sender, for [`close_all`](Self::close_all).
    pub(crate) fn make_closable(&self) {
        self.closable.store(true, Ordering::Relaxed);
    }

    /// Whether WebSockets need a sender for [`close_all`](Self::close_all).
    pub(crate) fn closable(&self) -> bool {
        self.closable.load(Ordering::Relaxed)
    }

    /// Takes a place for connection `id`, or says why there is none (503: the limit, or
    /// a shutdown). The place is freed when the returned [`Slot`] is dropped.
    pub(crate) fn admit(self: &Arc<Self>, id: ConnectionId) -> Result<Slot, Refusal> {
        let mut open = self.lock();
        if open.stopping {
            return Err(Refusal::shutting_down());
        }
        if open.conns.len() >= self.max.load(Ordering::Relaxed) {
            return Err(Refusal::too_many_connections());
        }
        open.conns.insert(id, None);
        Ok(Slot {
            id,
            connections: Arc::clone(self),
        })
    }

    /// Hands over the closer a shutdown closes connection `id` with; if the shutdown
    /// already began, closes it at once.
    pub(crate) fn register(&self, id: ConnectionId, closer: Closer) {
        let mut open = self.lock();
        if open.stopping {
            drop(open);
            closer.close();
        } else if let Some(slot) = open.conns.get_mut(&id) {
            *slot = Some(closer);
        }
    }

    /// Refuses every upgrade from now on, asks every open connection to close with 1001
    /// (going away), and waits until they have all ended or `grace` has passed. Returns
    /// how many are still open.
    pub(crate) fn close_all(&self, grace: Duration) -> usize {
        // Closed outside the lock: a reliable connection's closer takes its registry's.
        let closers: Vec<Closer> = {
            let mut open = self.lock();
            open.stopping = true;
            open.conns.values().flatten().cloned().collect()
        };
        for closer in closers {
            closer.close();
        }
        let deadline = Instant::now() + grace;
        let mut open = self.lock();
        while !open.conns.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            open = self
                .ended
                .wait_timeout(open, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        open.conns.len()
    }

    fn end(&self, id: ConnectionId) {
        self.lock().conns.remove(&id);
        self.ended.notify_all();
    }
}

/// A connection's place among its server's open connections, held by its
/// [`WebSocket`](crate::WebSocket); dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Slot {
    id: ConnectionId,
    connections: Arc<Connections>,
}

impl Slot {
    /// The connection's id.
    pub(crate) fn id(&self) -> ConnectionId {
        self.id
    }

    /// The server's connections, to [`register`](Connections::register) a closer.
    pub(crate) fn connections(&self) -> &Connections {
        &self.connections
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.end(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_open_slots_and_a_dropped_one_frees_its_place() {
        let connections = Connections::new();
        connections.set_max(1);
        let first = connections.admit(connections.next_id()).unwrap();
        let refused = connections.admit(connections.next_id()).unwrap_err();
        assert_eq!(refused.status(), 503);
        assert_eq!(first.id().get(), 1);
        drop(first);
        let third = connections.admit(connections.next_id()).unwrap();
        assert_eq!(third.id().get(), 3);
    }

    #[test]
    fn close_all_refuses_new_slots_and_waits_for_open_ones() {
        let connections = Connections::new();
        let slot = connections.admit(connections.next_id()).unwrap();
        let ender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(slot);
        });
        assert_eq!(connections.close_all(Duration::from_secs(30)), 0);
        ender.join().unwrap();
        assert!(connections.admit(connections.next_id()).is_err());
    }

    #[test]
    fn close_all_gives_up_after_the_grace_and_counts_what_is_left() {
        let connections = Connections::new();
        let _slot = connections.admit(connections.next_id()).unwrap();
        assert_eq!(connections.close_all(Duration::from_millis(10)), 1);
    }
}
