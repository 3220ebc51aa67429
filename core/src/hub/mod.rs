//! The server's hub, sans-IO: who is connected, who is in which room, and where each
//! message goes.
//!
//! The runtime tells the hub what happened (a connection was accepted or dropped, a
//! client joined a room or published, the backend pushed) and drains what to deliver.
//! The hub knows nothing about sockets or JSON: payloads are opaque [`Bytes`] the runtime
//! fills (JSON text in plain mode) and shares between recipients without copying.
//!
//! ## The drive loop
//!
//! After **every** call that takes `now` or changes membership (`connect`, `disconnect`,
//! `join`, `leave`, `publish`, `send_to_user`, `push`, `restore_mail`, `handle_timeout`),
//! drain [`Hub::poll_outbound`] (deliveries: hand each to the connection it names) and
//! [`Hub::poll_dead_letter`] (mail that will never be delivered: count it, log it) until
//! both return `None`, then re-arm the timer from [`Hub::poll_timeout`]. Calling
//! `handle_timeout` early, late or twice is harmless.
//!
//! ```
//! use bytes::Bytes;
//! use sockeye_core::auth::UserId;
//! use sockeye_core::hub::{ConnId, Delivery, Hub, HubConfig, OutMessage, Target};
//! use sockeye_core::Instant;
//!
//! let now = Instant::ZERO;
//! let mut hub = Hub::new(HubConfig::default());
//! let alice = UserId("alice".into());
//! // Before answering the upgrade with 101 (over a limit: 503).
//! hub.admit(&alice)?;
//! hub.connect(now, ConnId(1), alice.clone(), Delivery::AtMostOnce)?;
//!
//! // Bob is offline: a push to him waits in his mailbox.
//! let bob = UserId("bob".into());
//! let receipt = hub.push(now, Target::User(bob.clone()), Bytes::from_static(b"\"hi\""));
//! assert_eq!((receipt.connections, receipt.mailboxed), (0, 1));
//!
//! // He connects: the mailbox comes out as deliveries to his new connection.
//! hub.connect(now, ConnId(2), bob.clone(), Delivery::Reliable)?;
//! let out = hub.poll_outbound().unwrap();
//! assert_eq!(out.to, ConnId(2));
//! assert!(matches!(*out.message, OutMessage::Message { from: None, room: None, .. }));
//!
//! // Rooms: a join tells the members already there; a publish reaches every member.
//! hub.join(ConnId(1), "lobby")?;
//! hub.join(ConnId(2), "lobby")?;
//! let presence = hub.poll_outbound().unwrap();
//! assert_eq!(presence.to, ConnId(1)); // alice learns that bob arrived
//! let reached = hub.publish(now, ConnId(1), "lobby", Bytes::from_static(b"\"hello\""))?;
//! assert_eq!(reached, 2); // bob, and alice's own connection
//! assert_eq!(std::iter::from_fn(|| hub.poll_outbound()).count(), 2);
//! assert!(hub.poll_dead_letter().is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Rules
//!
//! - **Users and connections.** One user may hold many connections. A message to a user
//!   reaches every live connection of theirs; a user with none gets it in their bounded
//!   mailbox ([`HubConfig::mailbox_max_messages`], [`HubConfig::mailbox_max_age`],
//!   [`HubConfig::max_users_with_mail`], [`HubConfig::mailbox_max_bytes`]), of which one
//!   sending user may take only a share ([`HubConfig::mailbox_sender_max_messages`],
//!   [`HubConfig::mailbox_sender_max_bytes`]), so one client cannot fill the mailboxes of
//!   everyone with messages to made-up names. The next connection of theirs, of either
//!   [`Delivery`], receives the whole mailbox in order, before anything else: the hub
//!   routes the same way for both kinds, and the delivery kind only says what the
//!   transport guarantees afterwards.
//! - **Nothing is lost silently.** Mail that does not fit or waits too long comes back as
//!   a [`MailDeadLetter`] and is counted in [`HubStats`]. A full mailbox refuses the *new*
//!   message, so what a [`PushReceipt`] reported as mailboxed stays there until it is
//!   delivered or expires.
//! - **Rooms.** A connection joins and leaves rooms by name (1..=
//!   [`HubConfig::max_room_name_bytes`] bytes, no control characters); membership ends
//!   with the connection; an empty room is removed. A publish needs membership and
//!   reaches every member connection **including the sender's own** (a chat client
//!   shows its message when the room echoes it, the same way on every tab). Rooms have
//!   no mailbox: a room message reaches who is there.
//! - **Presence** is per user: [`OutMessage::Presence`] goes to the room's other member
//!   connections when a user's first connection joins and when their last one leaves or
//!   disconnects, as long as those are at most [`HubConfig::presence_max_recipients`]
//!   (large rooms go without, so filling one costs linear, not quadratic, messages). [`Hub::members`] lists the users present.
//! - **Errors, not panics.** An unknown [`ConnId`] gives [`HubError::NotConnected`] (or
//!   nothing, for `disconnect` and the queries); no call sequence panics.

mod config;
mod error;
mod mailbox;
mod outbound;
mod registry;
mod rooms;
#[cfg(test)]
mod tests;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use bytes::Bytes;

use crate::auth::UserId;
use crate::time::{Clock, Instant};
use mailbox::{MailLimits, Mailboxes, Put};
use registry::Registry;
use rooms::{Joined, Rooms};

pub use config::HubConfig;
pub use error::{HubError, Refusal};
pub use mailbox::{Mail, MailDeadLetter, MailDropReason, MAIL_OVERHEAD_BYTES};
pub use outbound::{OutMessage, Outbound, PushReceipt, Target};
pub use registry::{ConnId, Delivery};

/// Counts for `/metrics` and the health check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HubStats {
    /// Live connections.
    pub connections: usize,
    /// Users with at least one live connection.
    pub users: usize,
    /// Non-empty rooms.
    pub rooms: usize,
    /// Messages waiting in mailboxes.
    pub mailbox_messages: usize,
    /// Users with mail waiting.
    pub mailbox_users: usize,
    /// What the waiting mail counts for against [`HubConfig::mailbox_max_bytes`].
    pub mailbox_bytes: usize,
    /// Mail dead-lettered because it waited too long, since the hub started.
    pub mail_expired: u64,
    /// Mail dead-lettered because it did not fit (mailbox full, too many users with mail,
    /// the byte budget, the sender's share), since the hub started.
    pub mail_overflowed: u64,
    /// Mail handed to a connection when its user connected, since the hub started.
    pub mail_delivered: u64,
}

/// The registry of connections, rooms and mailboxes. See the [module docs](self) for the
/// drive loop and the routing rules.
#[derive(Debug)]
pub struct Hub {
    config: HubConfig,
    clock: Clock,
    registry: Registry,
    rooms: Rooms,
    /// Per room, the users present only on other nodes (set by a backend that spans
    /// nodes): they count toward the room's size for the presence rule.
    elsewhere: BTreeMap<String, usize>,
    mail: Mailboxes,
    outbound: VecDeque<Outbound>,
    changes: VecDeque<HubChange>,
}

/// A change in who is where, recorded with [`HubConfig::report_changes`]: what a
/// backend that spans nodes must hear of to subscribe, unsubscribe and announce presence.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubChange {
    /// The user's first live connection arrived.
    UserOnline(UserId),
    /// The user's last live connection is gone.
    UserOffline(UserId),
    /// The user has this many live connections now (after every connect and
    /// disconnect; 0 comes before [`UserOffline`](Self::UserOffline)).
    Connections {
        /// The user.
        user: UserId,
        /// Their live connections on this hub.
        count: usize,
    },
    /// The room got its first member connection.
    RoomOpened(String),
    /// The room lost its last member connection.
    RoomClosed(String),
    /// The user's first connection in the room joined it.
    Arrived {
        /// The room.
        room: String,
        /// The user now present.
        user: UserId,
    },
    /// The user's last connection in the room left it.
    Departed {
        /// The room.
        room: String,
        /// The user no longer present.
        user: UserId,
    },
}

impl Default for Hub {
    /// An empty hub with [`HubConfig::default`] limits.
    fn default() -> Self {
        Hub::new(HubConfig::default())
    }
}

impl Hub {
    /// An empty hub with these limits.
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            registry: Registry::new(config.max_connections, config.max_connections_per_user),
            rooms: Rooms::new(config.max_room_members),
            elsewhere: BTreeMap::new(),
            mail: Mailboxes::new(MailLimits {
                max_messages: config.mailbox_max_messages,
                max_age: config.mailbox_max_age,
                max_users: config.max_users_with_mail,
                max_bytes: config.mailbox_max_bytes,
                sender_max_messages: config.mailbox_sender_max_messages,
                sender_max_bytes: config.mailbox_sender_max_bytes,
            }),
            clock: Clock::new(Instant::ZERO),
            outbound: VecDeque::new(),
            changes: VecDeque::new(),
            config,
        }
    }

    /// The limits this hub enforces.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// Whether a new connection of `user` would be accepted now. Call it before
    /// answering the upgrade with 101; on `Err`, answer
    /// [`Refusal::http_status`] (503). [`connect`](Self::connect) checks again.
    pub fn admit(&self, user: &UserId) -> Result<(), Refusal> {
        self.registry.admit(user)
    }

    /// Registers a new live connection `conn` of `user`. The user's mailbox, if any,
    /// comes out of [`poll_outbound`](Self::poll_outbound) as deliveries to `conn`, oldest
    /// first (mail that expired by `now` comes out as dead letters instead). Drain both
    /// afterwards. Allocates the connection's entry.
    pub fn connect(
        &mut self,
        now: Instant,
        conn: ConnId,
        user: UserId,
        delivery: Delivery,
    ) -> Result<(), Refusal> {
        self.tick(now);
        let was_online = self.registry.is_online(&user);
        self.registry.insert(conn, user.clone(), delivery)?;
        if self.config.report_changes {
            if !was_online {
                self.change(HubChange::UserOnline(user.clone()));
            }
            let count = self.registry.conns_of(&user).count();
            self.change(HubChange::Connections {
                user: user.clone(),
                count,
            });
        }
        for mail in self.mail.take(&user) {
            self.outbound.push_back(Outbound {
                to: conn,
                message: Arc::new(OutMessage::Message {
                    from: mail.from,
                    room: None,
                    payload: mail.payload,
                }),
            });
        }
        Ok(())
    }

    /// The connection `conn` is gone: it leaves every room (the remaining members see
    /// [`OutMessage::Presence`] if it was its user's last connection there) and is
    /// forgotten. Deliveries already queued for it still come out of `poll_outbound`;
    /// the runtime drops them. Unknown ids are ignored. Drain afterwards.
    pub fn disconnect(&mut self, now: Instant, conn: ConnId) {
        self.tick(now);
        let Some(entry) = self.registry.remove(conn) else {
            return;
        };
        for room in entry.rooms {
            if let Ok(true) = self.rooms.leave(&room, conn, &entry.user) {
                self.presence(&room, &entry.user, false, conn);
                self.departed(&room, &entry.user);
            }
        }
        if self.config.report_changes {
            let count = self.registry.conns_of(&entry.user).count();
            self.change(HubChange::Connections {
                user: entry.user.clone(),
                count,
            });
            if count == 0 {
                self.change(HubChange::UserOffline(entry.user));
            }
        }
    }

    /// Hands connection `old`'s place to the new id `new`: the same user, rooms and
    /// delivery, with no presence change and no new connection counted against the
    /// limits. For a session that moves to a new connection (a reliable client's
    /// resume) while its old one still stands in for it. Deliveries already queued for
    /// `old` still come out addressed to it (drain before calling). Returns `false`, and
    /// changes nothing, if `old` is not live or `new` is.
    pub fn transfer(&mut self, old: ConnId, new: ConnId) -> bool {
        let Some(rooms) = self.registry.rekey(old, new) else {
            return false;
        };
        let rooms: Vec<String> = rooms.iter().cloned().collect();
        for room in &rooms {
            self.rooms.rekey(room, old, new);
        }
        true
    }

    /// Adds `conn` to `room`, creating the room if needed. Joining a room the connection
    /// is already in changes nothing and is `Ok`. When it is the user's first connection
    /// there, the other members get [`OutMessage::Presence`]; drain afterwards. The
    /// joining connection itself gets nothing: to tell it who is there, answer it with
    /// [`members`](Self::members).
    pub fn join(&mut self, conn: ConnId, room: &str) -> Result<(), HubError> {
        let entry = self.registry.get(conn).ok_or(HubError::NotConnected)?;
        rooms::validate_name(room, self.config.max_room_name_bytes)?;
        if entry.rooms.contains(room) {
            return Ok(());
        }
        if entry.rooms.len() >= self.config.max_rooms_per_connection {
            return Err(HubError::TooManyRooms);
        }
        let user = entry.user.clone();
        if let Joined::New { arrived } = self.rooms.join(room, conn, &user)? {
            if let Some(entry) = self.registry.get_mut(conn) {
                entry.rooms.insert(String::from(room));
            }
            if self.rooms.conn_count(room) == 1 {
                self.change(HubChange::RoomOpened(String::from(room)));
            }
            if arrived {
                self.presence(room, &user, true, conn);
                self.change(HubChange::Arrived {
                    room: String::from(room),
                    user,
                });
            }
        }
        Ok(())
    }

    /// Removes `conn` from `room`; [`HubError::NotAMember`] if it was not in it. When it
    /// was the user's last connection there, the remaining members get
    /// [`OutMessage::Presence`]; drain afterwards.
    pub fn leave(&mut self, conn: ConnId, room: &str) -> Result<(), HubError> {
        let entry = self.registry.get_mut(conn).ok_or(HubError::NotConnected)?;
        rooms::validate_name(room, self.config.max_room_name_bytes)?;
        if !entry.rooms.remove(room) {
            return Err(HubError::NotAMember);
        }
        let user = entry.user.clone();
        if self.rooms.leave(room, conn, &user)? {
            self.presence(room, &user, false, conn);
            self.departed(room, &user);
        }
        Ok(())
    }

    /// Publishes `payload` from `conn` to `room`, which `conn` must be in. Every member
    /// connection gets it, the sender's own included, as an [`OutMessage::Message`] with
    /// `from` the sender's user and `room` set. Returns how many connections that is.
    /// Drain afterwards.
    pub fn publish(
        &mut self,
        now: Instant,
        conn: ConnId,
        room: &str,
        payload: Bytes,
    ) -> Result<usize, HubError> {
        self.tick(now);
        let entry = self.registry.get(conn).ok_or(HubError::NotConnected)?;
        rooms::validate_name(room, self.config.max_room_name_bytes)?;
        if !self.rooms.is_member(room, conn) {
            return Err(HubError::NotAMember);
        }
        let message = Arc::new(OutMessage::Message {
            from: Some(entry.user.clone()),
            room: Some(String::from(room)),
            payload,
        });
        let mut count = 0;
        for to in self.rooms.conns(room) {
            self.outbound.push_back(Outbound {
                to,
                message: Arc::clone(&message),
            });
            count += 1;
        }
        Ok(count)
    }

    /// A direct message from the user of `conn` to user `to`: every live connection of
    /// `to` gets it (including `conn` itself when users write to themselves); if `to` has
    /// none, it goes to their mailbox. Drain afterwards.
    pub fn send_to_user(
        &mut self,
        now: Instant,
        conn: ConnId,
        to: &UserId,
        payload: Bytes,
    ) -> Result<PushReceipt, HubError> {
        let now = self.tick(now);
        let from = self.registry.get(conn).ok_or(HubError::NotConnected)?;
        let from = Some(from.user.clone());
        Ok(self.route_to_user(now, from, to, payload))
    }

    /// A push from the backend (`from` is `None`): to a user (their connections, or their
    /// mailbox), to a room's members, or to every live connection. The receipt says what
    /// was queued, for the push API's 202 answer. Drain afterwards.
    pub fn push(&mut self, now: Instant, target: Target, payload: Bytes) -> PushReceipt {
        let now = self.tick(now);
        match target {
            Target::User(user) => self.route_to_user(now, None, &user, payload),
            Target::Room(room) => {
                let mut connections = 0;
                let message = Arc::new(OutMessage::Message {
                    from: None,
                    room: Some(room.clone()),
                    payload,
                });
                for to in self.rooms.conns(&room) {
                    self.outbound.push_back(Outbound {
                        to,
                        message: Arc::clone(&message),
                    });
                    connections += 1;
                }
                PushReceipt {
                    connections,
                    ..PushReceipt::default()
                }
            }
            Target::Everyone => {
                let mut connections = 0;
                let message = Arc::new(OutMessage::Message {
                    from: None,
                    room: None,
                    payload,
                });
                for to in self.registry.all() {
                    self.outbound.push_back(Outbound {
                        to,
                        message: Arc::clone(&message),
                    });
                    connections += 1;
                }
                PushReceipt {
                    connections,
                    ..PushReceipt::default()
                }
            }
        }
    }

    /// Puts back mail exported earlier with [`mailbox`](Self::mailbox) (from a journal,
    /// after a restart), keeping its original `queued_at` so it expires on time. Routed
    /// like any message to `user`: delivered at once if they are online, mailboxed
    /// otherwise; mail already too old comes out as a dead letter. Drain afterwards.
    ///
    /// The same call hands back a user-addressed message the runtime could not pass on
    /// (a reliable session's window was full and the slow connection is being dropped):
    /// [`disconnect`](Self::disconnect) that connection first, then restore the message
    /// with `queued_at` = `now`, so it reaches the user's other connections or waits for
    /// the next one instead of vanishing.
    pub fn restore_mail(&mut self, now: Instant, user: &UserId, mail: Mail) -> PushReceipt {
        let now = self.tick(now);
        if self.registry.is_online(user) {
            return self.route_to_user(now, mail.from, user, mail.payload);
        }
        let receipt = self.mailbox_put(user, mail);
        self.mail.expire(now);
        receipt
    }

    /// The users present in `room` (at least one member connection), in order. Allocates.
    pub fn members(&self, room: &str) -> Vec<UserId> {
        self.rooms.members(room)
    }

    /// The first `limit` users present in `room` (in order) and how many there are: the
    /// answer to a join of a large room, without listing everyone.
    pub fn members_page(&self, room: &str, limit: usize) -> (Vec<UserId>, usize) {
        self.rooms.members_page(room, limit)
    }

    /// The users present in `room`, in order, without allocating.
    pub fn users_in(&self, room: &str) -> impl Iterator<Item = &UserId> + '_ {
        self.rooms.users(room)
    }

    /// How many users are present in `room` on this hub.
    pub fn user_count(&self, room: &str) -> usize {
        self.rooms.user_count(room)
    }

    /// Tells the hub that `count` users are present in `room` only on other nodes (a
    /// backend that spans nodes keeps it current; 0 forgets the room). They count toward
    /// the room's size for [`HubConfig::presence_max_recipients`], so a room that is
    /// large across nodes stays without presence on every node, however few of its
    /// members are here: a node whose room opens while another holds thousands of its
    /// users would otherwise queue thousands of presence frames to each early member.
    pub fn set_present_elsewhere(&mut self, room: &str, count: usize) {
        if count == 0 {
            self.elsewhere.remove(room);
        } else if let Some(n) = self.elsewhere.get_mut(room) {
            *n = count;
        } else {
            self.elsewhere.insert(String::from(room), count);
        }
    }

    /// Presence recipients beyond this hub's own in `room` (see
    /// [`set_present_elsewhere`](Self::set_present_elsewhere)).
    fn present_elsewhere(&self, room: &str) -> usize {
        self.elsewhere.get(room).copied().unwrap_or(0)
    }

    /// The rooms `conn` is in, in order (empty for an unknown id). Allocates.
    pub fn rooms_of(&self, conn: ConnId) -> Vec<String> {
        self.registry
            .get(conn)
            .map(|e| e.rooms.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The user a live connection belongs to.
    pub fn user_of(&self, conn: ConnId) -> Option<&UserId> {
        self.registry.get(conn).map(|e| &e.user)
    }

    /// How a live connection receives messages.
    pub fn delivery_of(&self, conn: ConnId) -> Option<Delivery> {
        self.registry.get(conn).map(|e| e.delivery)
    }

    /// The live connections of `user`, in id order.
    pub fn connections_of<'a>(&'a self, user: &UserId) -> impl Iterator<Item = ConnId> + 'a {
        self.registry.conns_of(user)
    }

    /// Every live connection, in id order (for a graceful shutdown, say).
    pub fn connections(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.registry.all()
    }

    /// Whether `user` has at least one live connection.
    pub fn is_online(&self, user: &UserId) -> bool {
        self.registry.is_online(user)
    }

    /// A message that arrived from another node, for this node's live connections only:
    /// to `user`'s connections (no mailbox: the node that sent it decides about mail), a
    /// room's member connections, or every connection, with `from` as the sender. Returns
    /// how many connections that is. Drain afterwards.
    pub fn relay(
        &mut self,
        now: Instant,
        target: &Target,
        from: Option<UserId>,
        payload: Bytes,
    ) -> usize {
        self.tick(now);
        let room = match target {
            Target::Room(room) => Some(room.clone()),
            _ => None,
        };
        let message = Arc::new(OutMessage::Message {
            from,
            room,
            payload,
        });
        let recipients: Vec<ConnId> = match target {
            Target::User(user) => self.registry.conns_of(user).collect(),
            Target::Room(room) => self.rooms.conns(room).collect(),
            Target::Everyone => self.registry.all().collect(),
        };
        let count = recipients.len();
        for to in recipients {
            self.outbound.push_back(Outbound {
                to,
                message: Arc::clone(&message),
            });
        }
        count
    }

    /// Tells `room`'s member connections that `user` arrived or left somewhere else (on
    /// another node), under the same [`HubConfig::presence_max_recipients`] rule as a
    /// local join. Drain afterwards.
    pub fn announce_presence(&mut self, room: &str, user: &UserId, joined: bool) {
        let size = self.rooms.conn_count(room) + self.present_elsewhere(room);
        if size > self.config.presence_max_recipients {
            return;
        }
        let message = Arc::new(OutMessage::Presence {
            room: String::from(room),
            user: user.clone(),
            joined,
        });
        for to in self.rooms.conns(room) {
            self.outbound.push_back(Outbound {
                to,
                message: Arc::clone(&message),
            });
        }
    }

    /// Whether `user` has a member connection in `room`.
    pub fn is_present(&self, room: &str, user: &UserId) -> bool {
        self.rooms.is_present(room, user)
    }

    /// The next change in who is where, with [`HubConfig::report_changes`], in the order
    /// they happened. Call after every input until `None`.
    #[must_use]
    pub fn poll_change(&mut self) -> Option<HubChange> {
        self.changes.pop_front()
    }

    /// The changes [`poll_change`](Self::poll_change) has yet to hand out, oldest
    /// first: for a backend that must answer in the middle of an input with what it
    /// will have accounted once it drained them.
    pub fn pending_changes(&self) -> impl Iterator<Item = &HubChange> + '_ {
        self.changes.iter()
    }

    /// The next delivery to make, in the order the hub decided them. Call after every
    /// input until it returns `None`. The queue grows by at most one entry per recipient
    /// of each call (a push to everyone: one per live connection; a connect: one per
    /// mailboxed message), so draining after every call keeps it bounded. Deliveries to
    /// one connection come out in the order the hub decided them: a connection's mailbox
    /// before anything published after it connected.
    #[must_use]
    pub fn poll_outbound(&mut self) -> Option<Outbound> {
        self.outbound.pop_front()
    }

    /// The next message for an offline user that will never be delivered. Call after
    /// every input until it returns `None`.
    #[must_use]
    pub fn poll_dead_letter(&mut self) -> Option<MailDeadLetter> {
        self.mail.poll_dead_letter()
    }

    /// Time passed: mail that waited [`HubConfig::mailbox_max_age`] becomes dead letters.
    /// Early, late or repeated calls are harmless. Drain afterwards.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: the moment the oldest
    /// mail expires, or `None` with no mail waiting.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.mail.next_expiry()
    }

    /// Current counts, for metrics.
    pub fn stats(&self) -> HubStats {
        HubStats {
            connections: self.registry.len(),
            users: self.registry.users_len(),
            rooms: self.rooms.len(),
            mailbox_messages: self.mail.messages(),
            mailbox_users: self.mail.users_len(),
            mailbox_bytes: self.mail.bytes(),
            mail_expired: self.mail.expired,
            mail_overflowed: self.mail.overflowed,
            mail_delivered: self.mail.delivered,
        }
    }

    /// The mail waiting for `user`, oldest first, for a journal to write down; put it
    /// back after a restart with [`restore_mail`](Self::restore_mail).
    pub fn mailbox<'a>(&'a self, user: &UserId) -> impl Iterator<Item = &'a Mail> + 'a {
        self.mail.iter(user)
    }

    /// The users with mail waiting, in order.
    pub fn mailbox_users(&self) -> impl Iterator<Item = &UserId> + '_ {
        self.mail.users()
    }

    /// Takes `now` from a call: keeps the latest instant seen and expires old mail.
    fn tick(&mut self, now: Instant) -> Instant {
        let now = self.clock.observe(now);
        self.mail.expire(now);
        now
    }

    fn change(&mut self, change: HubChange) {
        if self.config.report_changes {
            self.changes.push_back(change);
        }
    }

    /// `user` left `room` for good: recorded, and the room's end if it is empty now.
    fn departed(&mut self, room: &str, user: &UserId) {
        self.change(HubChange::Departed {
            room: String::from(room),
            user: user.clone(),
        });
        if self.rooms.conn_count(room) == 0 {
            self.change(HubChange::RoomClosed(String::from(room)));
        }
    }

    fn route_to_user(
        &mut self,
        now: Instant,
        from: Option<UserId>,
        to: &UserId,
        payload: Bytes,
    ) -> PushReceipt {
        let mut connections = 0;
        let message = Arc::new(OutMessage::Message {
            from: from.clone(),
            room: None,
            payload: payload.clone(),
        });
        for conn in self.registry.conns_of(to) {
            self.outbound.push_back(Outbound {
                to: conn,
                message: Arc::clone(&message),
            });
            connections += 1;
        }
        if connections > 0 {
            return PushReceipt {
                connections,
                ..PushReceipt::default()
            };
        }
        let mail = Mail {
            queued_at: now,
            from,
            payload,
        };
        self.mailbox_put(to, mail)
    }

    fn mailbox_put(&mut self, user: &UserId, mail: Mail) -> PushReceipt {
        match self.mail.put(user, mail) {
            Put::Kept => PushReceipt {
                mailboxed: 1,
                ..PushReceipt::default()
            },
            Put::DeadLettered => PushReceipt {
                dead_lettered: 1,
                ..PushReceipt::default()
            },
        }
    }

    /// Tells every member connection of `room` except `except` that `user` arrived or left,
    /// unless they are more than [`HubConfig::presence_max_recipients`]: a room of `n`
    /// members whose joins each told everyone would cost `n²/2` messages to fill.
    fn presence(&mut self, room: &str, user: &UserId, joined: bool, except: ConnId) {
        let recipients =
            self.rooms.conn_count(room) - usize::from(self.rooms.is_member(room, except));
        if recipients + self.present_elsewhere(room) > self.config.presence_max_recipients {
            return;
        }
        let message = Arc::new(OutMessage::Presence {
            room: String::from(room),
            user: user.clone(),
            joined,
        });
        for to in self.rooms.conns(room).filter(|c| *c != except) {
            self.outbound.push_back(Outbound {
                to,
                message: Arc::clone(&message),
            });
        }
    }
}
