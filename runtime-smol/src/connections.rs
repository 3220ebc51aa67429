//! How many connections a [`Server`](crate::Server) has open, against its limit, the
//! ids it gives them, and, once a [`ShutdownHandle`](crate::ShutdownHandle) exists, the
//! senders its shutdown closes them with.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use event_listener::Event;
use futures_lite::future;
use sockeye_core::CloseCode;
use sockeye_std::{ConnectionId, Refusal};

use crate::sender::Sender;

/// The reason a shutdown's close frames carry.
const SHUTDOWN_REASON: &str = "server shutting down";

/// The open connections of one server.
#[derive(Debug)]
pub(crate) struct Connections {
    next_id: AtomicU64,
    max: AtomicUsize,
    /// Each open connection registers a [`Sender`] so a shutdown can close it: set once
    /// a shutdown handle exists.
    closable: AtomicBool,
    open: Mutex<Open>,
    /// Notified whenever a connection ends.
    ended: Event,
    /// Notified once, when a shutdown begins: wakes a pending `Server::accept`.
    stopped: Event,
}

#[derive(Debug, Default)]
struct Open {
    /// Every open connection, with its sender when the server is closable.
    conns: HashMap<ConnectionId, Option<Sender>>,
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
            ended: Event::new(),
            stopped: Event::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next connection's id.
    pub(crate) fn next_id(&self) -> ConnectionId {
        ConnectionId::new(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// At most `max` connections open at once.
    pub(crate) fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Each connection from now on registers a sender, for
    /// [`close_all`](Self::close_all).
    pub(crate) fn make_closable(&self) {
        self.closable.store(true, Ordering::Relaxed);
    }

    /// Whether connections register a sender for [`close_all`](Self::close_all).
    pub(crate) fn closable(&self) -> bool {
        self.closable.load(Ordering::Relaxed)
    }

    /// Takes a place for connection `id`, or refuses it with 503 when `max` are open or
    /// a shutdown began. The place is freed when the returned [`Slot`] is dropped.
    pub(crate) fn admit(self: &Arc<Self>, id: ConnectionId) -> Result<Slot, Refusal> {
        let mut open = self.lock();
        if open.stopping {
            return Err(Refusal::new(503).with_body("server shutting down\n"));
        }
        if open.conns.len() >= self.max.load(Ordering::Relaxed) {
            return Err(Refusal::new(503).with_body("too many connections\n"));
        }
        open.conns.insert(id, None);
        Ok(Slot {
            id,
            connections: Arc::clone(self),
        })
    }

    /// Hands over the sender a shutdown closes connection `id` with; if the shutdown
    /// already began, closes it at once.
    pub(crate) fn register(&self, id: ConnectionId, sender: Sender) {
        let mut open = self.lock();
        if open.stopping {
            drop(open);
            let _ = sender.close(CloseCode::GOING_AWAY, SHUTDOWN_REASON);
        } else if let Some(slot) = open.conns.get_mut(&id) {
            *slot = Some(sender);
        }
    }

    /// Whether a shutdown began.
    pub(crate) fn stopping(&self) -> bool {
        self.lock().stopping
    }

    /// Completes once a shutdown began (at once if it already has). Cancel-safe.
    pub(crate) async fn stopped(&self) {
        loop {
            // Listen before looking, so a shutdown between the two is not missed.
            let listener = self.stopped.listen();
            if self.stopping() {
                return;
            }
            listener.await;
        }
    }

    /// Refuses every upgrade from now on, ends every [`stopped`](Self::stopped) wait
    /// (so `Server::accept` answers `Error::ShutDown`), asks every open connection to
    /// close with 1001 (going away), and waits until they have all ended or `grace` has passed. Returns
    /// how many are still open.
    pub(crate) async fn close_all(&self, grace: Duration) -> usize {
        let senders: Vec<Sender> = {
            let mut open = self.lock();
            open.stopping = true;
            open.conns.values().flatten().cloned().collect()
        };
        self.stopped.notify(usize::MAX);
        for sender in senders {
            // A connection already closing is fine.
            let _ = sender.close(CloseCode::GOING_AWAY, SHUTDOWN_REASON);
        }
        let all_ended = async {
            loop {
                let listener = self.ended.listen();
                if self.lock().conns.is_empty() {
                    return;
                }
                listener.await;
            }
        };
        future::or(all_ended, async {
            async_io::Timer::after(grace).await;
        })
        .await;
        self.lock().conns.len()
    }

    fn end(&self, id: ConnectionId) {
        self.lock().conns.remove(&id);
        self.ended.notify(usize::MAX);
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
        assert_eq!(
            connections
                .admit(connections.next_id())
                .unwrap_err()
                .status(),
            503
        );
        assert_eq!(first.id().get(), 1);
        drop(first);
        assert_eq!(
            connections.admit(connections.next_id()).unwrap().id().get(),
            3
        );
    }

    #[test]
    fn close_all_refuses_new_slots_and_waits_for_open_ones() {
        let connections = Connections::new();
        let slot = connections.admit(connections.next_id()).unwrap();
        let left = async_io::block_on(future::zip(
            connections.close_all(Duration::from_secs(60)),
            async move {
                future::yield_now().await;
                drop(slot);
            },
        ))
        .0;
        assert_eq!(left, 0);
        assert!(connections.admit(connections.next_id()).is_err());
    }

    #[test]
    fn close_all_ends_a_stopped_wait_begun_before_it_and_any_begun_after() {
        let connections = Connections::new();
        let mut waiting = Box::pin(connections.stopped());
        assert!(async_io::block_on(future::poll_once(&mut waiting)).is_none());
        assert_eq!(
            async_io::block_on(connections.close_all(Duration::from_secs(60))),
            0
        );
        assert!(async_io::block_on(future::poll_once(&mut waiting)).is_some());
        assert!(async_io::block_on(future::poll_once(connections.stopped())).is_some());
    }

    #[test]
    fn close_all_gives_up_after_the_grace_and_counts_what_is_left() {
        let connections = Connections::new();
        let _slot = connections.admit(connections.next_id()).unwrap();
        let left = async_io::block_on(connections.close_all(Duration::from_millis(10)));
        assert_eq!(left, 1);
    }
}
