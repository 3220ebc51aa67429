//! What the hub hands back to the runtime: deliveries to make, and receipts for pushes.

use alloc::string::String;
use alloc::sync::Arc;
use bytes::Bytes;

use super::registry::ConnId;
use crate::auth::UserId;

/// Who a server push ([`Hub::push`](super::Hub::push)) is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every live connection of the user; their mailbox if they have none.
    User(UserId),
    /// Every connection in the room at the moment of the push (no mailbox).
    Room(String),
    /// Every live connection (no mailbox).
    Everyone,
}

/// One delivery to make: send `message` on connection `to`. Drained with
/// [`Hub::poll_outbound`](super::Hub::poll_outbound).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// The connection to send on.
    pub to: ConnId,
    /// What to send; the runtime encodes it (JSON text in plain mode, a `sockeye.v1`
    /// data envelope on a reliable session). Every delivery of one fan-out shares it,
    /// so a runtime can encode it once ([`Arc::ptr_eq`] tells it is the same).
    pub message: Arc<OutMessage>,
}

/// The content of a delivery. Payloads are opaque: the hub never looks inside them, and
/// every recipient of one message shares the same [`Bytes`] (no copies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutMessage {
    /// A message from a user or from the server.
    Message {
        /// The sending user; `None` for a server push from the backend API.
        from: Option<UserId>,
        /// The room it was published to; `None` for a direct message or a push to a user
        /// or to everyone.
        room: Option<String>,
        /// The payload, as given to the hub.
        payload: Bytes,
    },
    /// A user became present in a room (their first connection joined) or stopped being
    /// present (their last connection left or disconnected).
    Presence {
        /// The room.
        room: String,
        /// The user who arrived or left.
        user: UserId,
        /// `true` on arrival, `false` on departure.
        joined: bool,
    },
}

/// What one push or direct message turned into, for the push API's 202 answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PushReceipt {
    /// Live connections a delivery was queued for.
    pub connections: usize,
    /// Messages put into an offline user's mailbox (0 or 1 for a user target).
    pub mailboxed: usize,
    /// Messages that could not be mailboxed and came back at once as a
    /// [`MailDeadLetter`](super::MailDeadLetter) (0 or 1 for a user target).
    pub dead_lettered: usize,
}

impl PushReceipt {
    /// Whether the message reached no one and waits nowhere.
    pub fn is_empty(&self) -> bool {
        self.connections == 0 && self.mailboxed == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_receipt_is_empty() {
        assert!(PushReceipt::default().is_empty());
        let mailboxed = PushReceipt {
            mailboxed: 1,
            ..PushReceipt::default()
        };
        assert!(!mailboxed.is_empty());
        let dead = PushReceipt {
            dead_lettered: 1,
            ..PushReceipt::default()
        };
        assert!(dead.is_empty());
    }
}
