//! The registry's journal hook: what a session change means for the server's journal
//! (`sockeye_core::journal`), and where the registry writes it.

use sockeye_core::journal::Record;
use sockeye_core::{SessionEvent, SessionId};

/// A durable record of the sessions' changes (`sockeye_core::journal`): the registry
/// appends a [`Record`] for every change and commits before it acknowledges a client's
/// message (the ACK envelope goes out after the turn that journaled the delivery).
pub(crate) trait SessionLog: Send + Sync {
    /// Appends a record (not yet durable).
    fn append(&self, record: Record);
    /// Makes every appended record durable; `false` if it could not (the records stay
    /// pending for the next commit), and then the registry acknowledges nothing and
    /// sends no DATA that depended on them. The registry never calls it while holding
    /// its own lock, so an implementation may wait here for an application operation
    /// that uses the registry (the `sockeye` server holds commits back while an
    /// operation appends, so the operation's records are committed whole).
    fn commit(&self) -> bool;
}

/// The journal record for a session event, if it changes durable state. With
/// `confirming` (`SessionConfig::confirm_deliveries`) a delivery is journaled when the
/// application confirms it ([`SessionRegistry::confirm`](super::SessionRegistry::confirm)),
/// not when it is handed over.
pub(crate) fn record_of(id: SessionId, event: &SessionEvent, confirming: bool) -> Option<Record> {
    match event {
        SessionEvent::Delivered { seq, .. } if !confirming => {
            Some(Record::ClientDelivered { id, seq: *seq })
        }
        SessionEvent::Acked { seq } => Some(Record::ClientAcked { id, seq: *seq }),
        SessionEvent::DeadLetter { seq, .. } => Some(Record::ServerVoided { id, seq: *seq }),
        SessionEvent::SessionLost { .. } => Some(Record::SessionClosed { id }),
        _ => None,
    }
}
