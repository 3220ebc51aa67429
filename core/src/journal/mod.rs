//! The server's journal: an append-only log that lets sessions, mailboxes and
//! unacknowledged messages survive a restart (`sockeye --journal PATH`).
//!
//! The core only defines the records, their byte format and how a log replays into
//! state; the runtime owns the file. Its duties, in order, for every change it makes:
//!
//! 1. append the [`Record`] ([`encode_record`]);
//! 2. at each commit, append a [`Record::Commit`] and make everything durable
//!    (`fsync`/`sync_data`) **before** acknowledging anything that depends on it: the `202` of a push, or the `ACK` envelope that tells a publishing client its
//!    message is safe. A runtime that drains a session's events (and journals them)
//!    before draining its outgoing envelopes gets this order for free;
//! 3. at start, [`replay`] the file, truncate it to [`Replayed::valid_len`] (a crash may
//!    leave half a record, or half a batch, at the end), and restore the state: sessions with
//!    [`SessionStore::restore`](crate::session::SessionStore::restore), mailboxes with
//!    [`Hub::restore_mail`](crate::hub::Hub::restore_mail);
//! 4. now and then, compact: write [`JournalState::records`] to a new file and rename it
//!    over the old one.
//!
//! Why exactly once survives a crash: every message the server acknowledged is in the
//! journal, either in a recipient's mailbox or in a recipient session's window; a
//! restored session resends what its client has not acknowledged, and the client, which
//! kept its own session, drops what it already delivered (sequence numbers). The client's
//! own messages the server delivered are recorded ([`Record::ClientDelivered`]), so a
//! client resending them after the restart is deduplicated too.
//!
//! ```
//! use bytes::Bytes;
//! use sockeye_core::journal::{encode_record, replay, Record};
//!
//! let mut file = Vec::new();
//! encode_record(&Record::MailQueued {
//!     user: "alice".into(),
//!     from: None,
//!     queued_unix_ms: 1_700_000_000_000,
//!     payload: Bytes::from_static(b"{\"hi\":1}"),
//! }, &mut file);
//! encode_record(&Record::Commit, &mut file); // the batch is whole
//! file.extend_from_slice(&[7, 0, 0]); // a crash in the middle of the next record
//!
//! let replayed = replay(&file);
//! assert_eq!(replayed.valid_len, file.len() - 3);
//! assert_eq!(replayed.state.mailbox("alice").count(), 1);
//! ```

mod codec;
mod replay;

pub use codec::{crc32, decode_record, encode_record, JournalError, MAX_RECORD_BYTES};
pub use replay::{replay, JournalState, MailRecord, Replayed, SentRecord, SessionSnapshot};

use alloc::string::String;
use bytes::Bytes;

use crate::session::{Seq, SessionId, SessionToken};

/// One change of durable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A reliable session enters the journal: created for `user`, or rewritten by a
    /// compaction with the numbering it had then (a new session has both at 0).
    SessionOpened {
        /// Its id.
        id: SessionId,
        /// The secret that resumes it.
        token: SessionToken,
        /// The user it belongs to.
        user: String,
        /// Every message to the client up to here is settled; the next is `acked + 1`.
        acked: Seq,
        /// The last client message delivered.
        client_delivered: Seq,
    },
    /// A message for the client was queued in the session as `seq` (the next number).
    ServerSent {
        /// The session.
        id: SessionId,
        /// Its sequence number.
        seq: Seq,
        /// Whether it is text.
        is_text: bool,
        /// The message.
        payload: Bytes,
    },
    /// The client acknowledged every message up to `seq`.
    ClientAcked {
        /// The session.
        id: SessionId,
        /// The cumulative ack.
        seq: Seq,
    },
    /// The session gave up the message `seq` (a dead letter its application was told
    /// about): after a restart it is not resent.
    ServerVoided {
        /// The session.
        id: SessionId,
        /// The given-up message.
        seq: Seq,
    },
    /// The server delivered (and acted on) every client message up to `seq`.
    ClientDelivered {
        /// The session.
        id: SessionId,
        /// The last delivered sequence number.
        seq: Seq,
    },
    /// The session ended (expired or lost); its remaining messages were dead-lettered.
    SessionClosed {
        /// The session.
        id: SessionId,
    },
    /// The session joined `room` (a `join` command it sent): after a restart it is still
    /// a member, as it is across a resume.
    SessionJoined {
        /// The session.
        id: SessionId,
        /// The room.
        room: String,
    },
    /// The session left `room`.
    SessionLeft {
        /// The session.
        id: SessionId,
        /// The room.
        room: String,
    },
    /// A message waits in `user`'s offline mailbox.
    MailQueued {
        /// The addressee.
        user: String,
        /// The sending user, if any (`None`: the push API).
        from: Option<String>,
        /// Wall-clock time it was queued, in milliseconds since the Unix epoch (the
        /// monotonic `Instant` does not survive a restart).
        queued_unix_ms: u64,
        /// The message.
        payload: Bytes,
    },
    /// The oldest `count` messages of `user`'s mailbox left it (delivered, expired or
    /// dead-lettered).
    MailTaken {
        /// The addressee.
        user: String,
        /// How many left.
        count: u32,
    },
    /// Every record before this one was committed together: the end of a batch. A
    /// runtime appends it at each commit, before `fsync`; [`replay`] applies only whole
    /// batches, so a crash that left part of a batch on disk (any prefix of one write)
    /// loses exactly what was never acknowledged, and never half of an operation.
    Commit,
}
