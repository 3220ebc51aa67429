//! The hub's limits, with defaults that work for a small server on one host.

use core::time::Duration;

/// Every bound the [`Hub`](super::Hub) enforces. Each one caps memory: the hub never
/// holds more connections, rooms, members or mail than these allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// Live connections in total; over it, [`Refusal::TooManyConnections`](super::Refusal).
    pub max_connections: usize,
    /// Live connections of one user; over it, [`Refusal::TooManyForUser`](super::Refusal).
    pub max_connections_per_user: usize,
    /// Rooms one connection may be in at once; over it, [`HubError::TooManyRooms`](super::HubError).
    pub max_rooms_per_connection: usize,
    /// Connections one room may hold at once; over it, [`HubError::RoomFull`](super::HubError).
    pub max_room_members: usize,
    /// Longest room name, in bytes (names are 1..=this, without control characters).
    pub max_room_name_bytes: usize,
    /// Messages one offline user's mailbox may hold; more become
    /// [`MailDropReason::MailboxFull`](super::MailDropReason) dead letters.
    pub mailbox_max_messages: usize,
    /// How long a message may wait in a mailbox before it becomes an
    /// [`MailDropReason::Expired`](super::MailDropReason) dead letter.
    pub mailbox_max_age: Duration,
    /// Offline users that may have mail at once; mail for one more becomes a
    /// [`MailDropReason::TooManyMailboxes`](super::MailDropReason) dead letter.
    pub max_users_with_mail: usize,
    /// Bytes all mailboxes may hold together, each message counted as its payload plus
    /// [`MAIL_OVERHEAD_BYTES`](super::MAIL_OVERHEAD_BYTES); over it,
    /// [`MailDropReason::OverBudget`](super::MailDropReason).
    pub mailbox_max_bytes: usize,
    /// Messages one sending user may have waiting in mailboxes at once (server pushes have
    /// no sending user and are not counted); over it,
    /// [`MailDropReason::SenderOverShare`](super::MailDropReason).
    pub mailbox_sender_max_messages: usize,
    /// Bytes (counted as for `mailbox_max_bytes`) one sending user may have waiting in
    /// mailboxes at once; over it, [`MailDropReason::SenderOverShare`](super::MailDropReason).
    pub mailbox_sender_max_bytes: usize,
    /// A join or leave is announced ([`OutMessage::Presence`](super::OutMessage)) only to
    /// rooms where it would reach at most this many other connections; larger rooms go
    /// without presence, so filling a room costs messages linear in its size.
    pub presence_max_recipients: usize,
    /// Record what changed in who is where ([`HubChange`](super::HubChange), drained with
    /// [`Hub::poll_change`](super::Hub::poll_change)): a backend that spans nodes
    /// subscribes and announces by it. Off by default, so nothing accumulates.
    pub report_changes: bool,
}

impl Default for HubConfig {
    /// Sized for a constrained host: 10,000 connections, 8 per user, 32 rooms per
    /// connection, 10,000 connections per room, room names up to 64 bytes, and mailboxes of
    /// 100 messages kept for a day for up to 10,000 users, 64 MiB in all, of which one
    /// sending user may hold 1,000 messages and 4 MiB; presence in rooms of up to 256 other
    /// connections.
    fn default() -> Self {
        HubConfig {
            max_connections: 10_000,
            max_connections_per_user: 8,
            max_rooms_per_connection: 32,
            max_room_members: 10_000,
            max_room_name_bytes: 64,
            mailbox_max_messages: 100,
            mailbox_max_age: Duration::from_secs(24 * 60 * 60),
            max_users_with_mail: 10_000,
            mailbox_max_bytes: 64 << 20,
            mailbox_sender_max_messages: 1_000,
            mailbox_sender_max_bytes: 4 << 20,
            presence_max_recipients: 256,
            report_changes: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_allow_some_of_everything() {
        let c = HubConfig::default();
        assert!(c.max_connections >= c.max_connections_per_user);
        assert!(c.max_connections_per_user > 0);
        assert!(c.max_rooms_per_connection > 0);
        assert!(c.max_room_members > 0);
        assert!(c.max_room_name_bytes > 0);
        assert!(c.mailbox_max_messages > 0);
        assert!(c.mailbox_max_age > Duration::ZERO);
        assert!(c.max_users_with_mail > 0);
        // One sender's share is a fraction of what everyone shares.
        assert!(c.mailbox_sender_max_messages < c.max_users_with_mail);
        assert!(c.mailbox_sender_max_bytes < c.mailbox_max_bytes);
    }
}
