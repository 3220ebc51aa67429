//! The operations the hub check applies, and the limits it runs under.

use alloc::format;
use core::time::Duration;

use crate::auth::UserId;
use crate::entropy::SeededEntropy;
use crate::hub::HubConfig;

/// Users the operations pick from.
pub(super) const USERS: u8 = 6;
/// Connection ids the operations pick from (more than fit, so some are unknown).
pub(super) const CONNS: u8 = 12;
/// Room names the operations pick from: four valid ones, an empty one, a long one.
pub(super) const ROOMS: [&str; 6] = ["r0", "r1", "r2", "r3", "", "r-too-long"];

/// One thing that happens to the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A connection of `user` is accepted (after `admit`).
    Connect {
        /// Connection id.
        conn: u8,
        /// User index.
        user: u8,
        /// `sockeye.v1` or plain JSON.
        reliable: bool,
    },
    /// A connection drops.
    Disconnect {
        /// Connection id.
        conn: u8,
    },
    /// A connection joins a room.
    Join {
        /// Connection id.
        conn: u8,
        /// Index into the room names.
        room: u8,
    },
    /// A connection leaves a room.
    Leave {
        /// Connection id.
        conn: u8,
        /// Index into the room names.
        room: u8,
    },
    /// A connection publishes to a room.
    Publish {
        /// Connection id.
        conn: u8,
        /// Index into the room names.
        room: u8,
    },
    /// A connection sends to a user.
    Send {
        /// Connection id.
        conn: u8,
        /// User index.
        to: u8,
    },
    /// The backend pushes to a user.
    PushUser {
        /// User index.
        to: u8,
    },
    /// The backend pushes to a room.
    PushRoom {
        /// Index into the room names.
        room: u8,
    },
    /// The backend pushes to everyone.
    PushEveryone,
    /// A connection's place (user, rooms) passes to another id, as a resume does.
    Transfer {
        /// Connection id now.
        conn: u8,
        /// The id it gets.
        to: u8,
    },
    /// The clock moves on and the timer fires.
    Advance {
        /// How far, in milliseconds.
        millis: u16,
    },
}

impl Op {
    /// An operation from three bytes; every triple is a valid operation.
    pub fn decode(a: u8, b: u8, c: u8) -> Op {
        let conn = b % CONNS;
        let room = c % ROOMS.len() as u8;
        match a % 16 {
            0..=2 => Op::Connect {
                conn,
                user: c % USERS,
                reliable: a & 0x80 != 0,
            },
            3 | 4 => Op::Disconnect { conn },
            5..=7 => Op::Join { conn, room },
            8 => Op::Leave { conn, room },
            9 | 10 => Op::Publish { conn, room },
            11 => Op::Send {
                conn,
                to: c % USERS,
            },
            12 => Op::PushUser { to: c % USERS },
            13 => {
                if b % 2 == 0 {
                    Op::PushRoom { room }
                } else {
                    Op::PushEveryone
                }
            }
            15 => Op::Transfer {
                conn,
                to: c % CONNS,
            },
            _ => Op::Advance {
                millis: u16::from(b) * 2 + u16::from(c % 2),
            },
        }
    }
}

/// What one simulated message (an 8-byte payload) costs against the mailbox byte bounds.
pub(super) const MAIL_COST: usize = 8 + crate::hub::MAIL_OVERHEAD_BYTES;

/// The limits the checks run under: small, so every limit is reached often.
pub fn small_config() -> HubConfig {
    HubConfig {
        max_connections: 8,
        max_connections_per_user: 3,
        max_rooms_per_connection: 2,
        max_room_members: 4,
        max_room_name_bytes: 4,
        mailbox_max_messages: 3,
        mailbox_max_age: Duration::from_millis(500),
        max_users_with_mail: 3,
        mailbox_max_bytes: 5 * MAIL_COST,
        mailbox_sender_max_messages: 2,
        mailbox_sender_max_bytes: 3 * MAIL_COST,
        presence_max_recipients: 2,
        report_changes: true,
    }
}

/// Limits drawn from `rng`, zeros included (a zero limit refuses everything it bounds).
pub fn random_config(rng: &mut SeededEntropy) -> HubConfig {
    let mut pick = |n: u64| (rng.next_u64() % n) as usize;
    HubConfig {
        max_connections: pick(11),
        max_connections_per_user: pick(5),
        max_rooms_per_connection: pick(4),
        max_room_members: pick(6),
        max_room_name_bytes: pick(5),
        mailbox_max_messages: pick(5),
        mailbox_max_age: Duration::from_millis(pick(1_000) as u64),
        max_users_with_mail: pick(5),
        mailbox_max_bytes: pick(8) * MAIL_COST,
        mailbox_sender_max_messages: pick(4),
        mailbox_sender_max_bytes: pick(5) * MAIL_COST,
        presence_max_recipients: pick(4),
        report_changes: false,
    }
}

/// The name of user number `i`.
pub(super) fn user(i: u8) -> UserId {
    UserId(format!("u{i}"))
}
