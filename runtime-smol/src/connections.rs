//! How many connections a [`Server`](crate::Server) has open, against its limit, and the
//! ids it gives them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use sockeye_std::{ConnectionId, Refusal};

/// The open connections of one server.
#[derive(Debug)]
pub(crate) struct Connections {
    next_id: AtomicU64,
    open: AtomicUsize,
    max: AtomicUsize,
}

impl Connections {
    /// No connection yet, no limit.
    pub(crate) fn new() -> Arc<Connections> {
        Arc::new(Connections {
            next_id: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            max: AtomicUsize::new(usize::MAX),
        })
    }

    /// The next connection's id.
    pub(crate) fn next_id(&self) -> ConnectionId {
        ConnectionId::new(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// At most `max` connections open at once.
    pub(crate) fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Takes a place for connection `id`, or refuses it with 503 when `max` are open.
    /// The place is freed when the returned [`Slot`] is dropped.
    pub(crate) fn admit(self: &Arc<Self>, id: ConnectionId) -> Result<Slot, Refusal> {
        let max = self.max.load(Ordering::Relaxed);
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            });
        match taken {
            Ok(_) => Ok(Slot {
                id,
                connections: Arc::clone(self),
            }),
            Err(_) => Err(Refusal::new(503).with_body("too many connections\n")),
        }
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
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
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
}
