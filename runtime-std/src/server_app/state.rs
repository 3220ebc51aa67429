//! The hub and the connections it routes to, behind one lock.
//!
//! Every hub call is followed, under the same lock, by delivering what the hub handed out
//! ([`Hub::poll_outbound`]) to the connections' queues, so deliveries keep the hub's
//! order. Queuing never blocks for long (see [`conn`](super::conn)); a reliable
//! connection's deliveries go into its session ([`SessionRegistry::send`]), which never
//! blocks. Lock order: the state, then a connection or the registry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use sockeye_core::auth::UserId;
use sockeye_core::hub::Mail;
use sockeye_core::hub::{
    ConnId, Delivery, Hub, HubConfig, HubError, OutMessage, PushReceipt, Refusal, Target,
};
use sockeye_core::{CloseCode, Seq, SessionId, SessionSendError};

use super::config::ServerConfig;
use super::conn::{ConnHandle, Queued};
use super::durable::{CommitGate, Journal, Opened};
use super::log::log_at;
use super::metrics::{HubGauges, Metrics};
use super::plain;
use crate::error::Error;
use crate::time;
use crate::SessionRegistry;

/// The hub plus a handle for each of its connections.
pub(super) struct State {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    /// With `--journal`: held with `inner` through every operation, so what one
    /// operation journals is committed whole (see `durable::SharedFile`).
    gate: Option<CommitGate>,
}

/// The state, locked for one operation (with the journal's commit gate, if any).
struct Locked<'a> {
    inner: MutexGuard<'a, Inner>,
    _gate: Option<MutexGuard<'a, ()>>,
}

impl std::ops::Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }
}

struct Inner {
    hub: Hub,
    conns: HashMap<u64, Peer>,
    /// The reliable sessions (`sockeye.v1`), shared with their connections' threads.
    registry: SessionRegistry,
    /// Who owns each live reliable session, and which hub connection carries it now.
    sessions: HashMap<SessionId, Owner>,
    /// With `--journal`: the durable record of the mailboxes.
    journal: Option<Journal>,
}

/// How the hub's deliveries reach one connection. Two words: the map of them has a slot
/// per connection (and spare ones), most of them plain.
enum Peer {
    /// Plain JSON mode: queued on the WebSocket itself.
    Plain(Arc<ConnHandle>),
    /// `sockeye.v1`: queued in the session ([`SessionRegistry::send`]).
    Reliable(Box<ReliablePeer>),
}

/// A reliable connection's user and the session it carries.
struct ReliablePeer {
    user: UserId,
    session: SessionId,
}

/// The user a reliable session belongs to, its current hub connection, and the rooms it
/// was in when its last connection ended (a resume joins them again).
struct Owner {
    user: UserId,
    conn: Option<ConnId>,
    rooms: Vec<String>,
}

impl State {
    pub(super) fn new(
        config: &ServerConfig,
        registry: SessionRegistry,
        journal: Option<Opened>,
    ) -> State {
        let hub_config = HubConfig {
            max_connections: config.max_connections,
            max_connections_per_user: config.max_connections_per_user,
            mailbox_max_messages: config.mailbox_size,
            mailbox_max_age: config.mailbox_age,
            ..HubConfig::default()
        };
        let gate = journal.as_ref().map(|opened| opened.journal.gate());
        let state = State {
            gate,
            inner: Mutex::new(Inner {
                hub: Hub::new(hub_config),
                conns: HashMap::new(),
                registry,
                sessions: HashMap::new(),
                journal: None,
            }),
            next_id: AtomicU64::new(1),
        };
        if let Some(Opened {
            journal,
            mail,
            sessions,
        }) = journal
        {
            let mut inner = state.lock();
            let inner = &mut *inner;
            for snapshot in &sessions {
                match inner.registry.restore(snapshot) {
                    Ok(()) => {
                        inner.sessions.insert(
                            snapshot.id,
                            Owner {
                                user: UserId(snapshot.user.clone()),
                                conn: None,
                                rooms: Vec::new(),
                            },
                        );
                    }
                    Err(e) => log_at!(Warn, "journal: a session could not be restored: {e}"),
                }
            }
            inner.registry.set_log(journal.session_log());
            let count = mail.len();
            for mail in mail {
                let restored = Mail::new(mail.queued_at, mail.from, mail.payload);
                inner.hub.restore_mail(time::now(), &mail.user, restored);
            }
            inner.journal = Some(journal);
            log_at!(
                Info,
                "journal: {} session(s) and {count} mailbox message(s) restored",
                sessions.len()
            );
        }
        state
    }

    fn lock(&self) -> Locked<'_> {
        // Hub calls do not panic on any input; if one ever did, the hub is still the best
        // state we have, so keep serving rather than poison every later request.
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let gate = self
            .gate
            .as_ref()
            .map(|g| g.lock().unwrap_or_else(|p| p.into_inner()));
        Locked { inner, _gate: gate }
    }

    /// A fresh connection id.
    pub(super) fn next_conn_id(&self) -> ConnId {
        ConnId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether `user` may open one more connection now (checked before the upgrade;
    /// [`connect`](Self::connect) checks again atomically).
    pub(super) fn admit(&self, user: &UserId) -> Result<(), Refusal> {
        self.lock().hub.admit(user)
    }

    /// Registers an upgraded connection: queues `first` (the welcome) ahead of anything the
    /// hub delivers on connect (the user's mailbox).
    pub(super) fn connect(
        &self,
        handle: &Arc<ConnHandle>,
        first: String,
        metrics: &Metrics,
    ) -> Result<(), Refusal> {
        let mut inner = self.lock();
        inner.hub.connect(
            time::now(),
            handle.id,
            handle.user.clone(),
            Delivery::AtMostOnce,
        )?;
        if let Some(journal) = &mut inner.journal {
            journal.mailbox_emptied(&handle.user);
        }
        inner
            .conns
            .insert(handle.id.0, Peer::Plain(Arc::clone(handle)));
        // Counted before the client can hear of it, so a scrape after the welcome sees it.
        Metrics::add(&metrics.connections_opened, 1);
        handle.send_text(first);
        let _ = inner.deliver(metrics);
        Ok(())
    }

    /// Registers a reliable connection `id` of `user` carrying `session`. A connection that
    /// carried the session before (a resume overtook it) leaves the hub first, so nothing
    /// is delivered twice. A new session hears the JSON welcome first.
    pub(super) fn connect_reliable(
        &self,
        id: ConnId,
        user: &UserId,
        session: SessionId,
        metrics: &Metrics,
    ) -> Result<(), Refusal> {
        let mut inner = self.lock();
        let now = time::now();
        let inner = &mut *inner;
        let (fresh, rooms) = match inner.sessions.get_mut(&session) {
            Some(owner) => {
                let mut rooms = std::mem::take(&mut owner.rooms);
                if let Some(old) = owner.conn.take() {
                    rooms = inner.hub.rooms_of(old);
                    inner.conns.remove(&old.0);
                    inner.hub.disconnect(now, old);
                }
                (false, rooms)
            }
            None => (true, Vec::new()),
        };
        if let Err(refusal) = inner.hub.connect(now, id, user.clone(), Delivery::Reliable) {
            if let Some(owner) = inner.sessions.get_mut(&session) {
                owner.rooms = rooms;
            }
            return Err(refusal);
        }
        if let Some(journal) = &mut inner.journal {
            journal.mailbox_emptied(user);
        }
        for room in &rooms {
            // The session stays in its rooms across a resume.
            let _ = inner.hub.join(id, room);
        }
        inner.conns.insert(
            id.0,
            Peer::Reliable(Box::new(ReliablePeer {
                user: user.clone(),
                session,
            })),
        );
        inner.sessions.insert(
            session,
            Owner {
                user: user.clone(),
                conn: Some(id),
                rooms: Vec::new(),
            },
        );
        Metrics::add(&metrics.connections_opened, 1);
        if fresh {
            let welcome = Bytes::from(plain::welcome(user.as_str()));
            if let Err(e) = inner.registry.send(session, welcome, true) {
                log_at!(Debug, "no welcome for a new session: {e}");
            }
        }
        let _ = inner.deliver(metrics);
        Ok(())
    }

    /// The user who owns reliable session `session`, if it is live.
    pub(super) fn session_owner(&self, session: SessionId) -> Option<UserId> {
        self.lock().sessions.get(&session).map(|o| o.user.clone())
    }

    /// The hub connection carrying reliable session `session` now.
    pub(super) fn session_conn(&self, session: SessionId) -> Option<ConnId> {
        self.lock().sessions.get(&session).and_then(|o| o.conn)
    }

    /// Reliable session `session` is gone (expired or replaced).
    pub(super) fn forget_session(&self, session: SessionId) {
        self.lock().sessions.remove(&session);
    }

    /// Removes a connection: its rooms see it leave.
    pub(super) fn disconnect(&self, id: ConnId, metrics: &Metrics) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(Peer::Reliable(peer)) = inner.conns.remove(&id.0) {
            if let Some(owner) = inner.sessions.get_mut(&peer.session) {
                if owner.conn == Some(id) {
                    owner.conn = None;
                    owner.rooms = inner.hub.rooms_of(id);
                }
            }
        }
        inner.hub.disconnect(time::now(), id);
        let _ = inner.deliver(metrics);
    }

    /// `id` joins `room`; returns who is in it now.
    pub(super) fn join(
        &self,
        id: ConnId,
        room: &str,
        origin: Origin,
        metrics: &Metrics,
    ) -> Result<Vec<UserId>, HubError> {
        let mut inner = self.lock();
        inner.journal_origin(origin);
        let result = inner.hub.join(id, room).map(|()| inner.hub.members(room));
        let _ = inner.deliver(metrics);
        result
    }

    /// `id` leaves `room`.
    pub(super) fn leave(
        &self,
        id: ConnId,
        room: &str,
        origin: Origin,
        metrics: &Metrics,
    ) -> Result<(), HubError> {
        let mut inner = self.lock();
        inner.journal_origin(origin);
        let result = inner.hub.leave(id, room);
        let _ = inner.deliver(metrics);
        result
    }

    /// `id` publishes `data` (JSON text) to `room`.
    pub(super) fn publish(
        &self,
        id: ConnId,
        room: &str,
        data: Bytes,
        origin: Origin,
        metrics: &Metrics,
    ) -> Result<usize, HubError> {
        let mut inner = self.lock();
        inner.journal_origin(origin);
        let result = inner.hub.publish(time::now(), id, room, data);
        let _ = inner.deliver(metrics);
        result
    }

    /// `id` sends `data` (JSON text) to every connection of `to`.
    pub(super) fn send_to_user(
        &self,
        id: ConnId,
        to: &UserId,
        data: Bytes,
        origin: Origin,
        metrics: &Metrics,
    ) -> Result<PushReceipt, HubError> {
        let mut inner = self.lock();
        inner.journal_origin(origin);
        let inner = &mut *inner;
        let result = inner.hub.send_to_user(time::now(), id, to, data.clone());
        if let (Ok(receipt), Some(journal)) = (&result, &mut inner.journal) {
            if receipt.mailboxed > 0 {
                journal.mail_queued(to, inner.hub.user_of(id), &data);
            }
        }
        let _ = inner.deliver(metrics);
        result
    }

    /// A push from the backend (`POST /api/push`). With a journal, `Err` means the
    /// commit that would make the push durable failed: it must not be answered 202 (the
    /// records stay pending, so it may still be kept and delivered).
    pub(super) fn push(
        &self,
        target: Target,
        data: Bytes,
        metrics: &Metrics,
    ) -> std::io::Result<PushReceipt> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let user = match &target {
            Target::User(user) => Some(user.clone()),
            _ => None,
        };
        let receipt = inner.hub.push(time::now(), target, data.clone());
        if let (Some(user), Some(journal)) = (user, &mut inner.journal) {
            if receipt.mailboxed > 0 {
                journal.mail_queued(&user, None, &data);
            }
        }
        // `deliver` commits the journal: the 202 comes after, and only if it held.
        inner.deliver(metrics).map(|()| receipt)
    }

    /// Acts on the hub's deadlines; returns how long until the next one.
    pub(super) fn handle_timeout(&self, metrics: &Metrics) -> Duration {
        let mut inner = self.lock();
        let now = time::now();
        inner.hub.handle_timeout(now);
        let _ = inner.deliver(metrics);
        inner
            .hub
            .poll_timeout()
            .map(|at| at.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(1))
    }

    /// Starts closing every connection with 1001; returns how many there were.
    pub(super) fn close_all(&self) -> usize {
        let inner = self.lock();
        for peer in inner.conns.values() {
            match peer {
                Peer::Plain(handle) => handle.close(CloseCode::GOING_AWAY, "server shutting down"),
                Peer::Reliable(peer) => {
                    inner
                        .registry
                        .disconnect(peer.session, CloseCode::GOING_AWAY);
                }
            }
        }
        inner.conns.len()
    }

    /// Makes everything appended to the journal durable (at shutdown).
    pub(super) fn flush_journal(&self) {
        if let Some(journal) = &mut self.lock().journal {
            if let Err(e) = journal.commit() {
                log_at!(Error, "journal flush failed: {e}");
            }
        }
    }

    /// The hub's gauges for `/metrics`.
    pub(super) fn gauges(&self) -> HubGauges {
        let inner = self.lock();
        let stats = inner.hub.stats();
        HubGauges {
            users: stats.users as u64,
            rooms: stats.rooms as u64,
            mailbox_depth: stats.mailbox_messages as u64,
            mailbox_drops: stats.mail_expired + stats.mail_overflowed,
        }
    }
}

/// The reliable client message a hub operation carries out, if any: its session and
/// sequence number.
pub(super) type Origin = Option<(SessionId, Seq)>;

impl Inner {
    /// With a journal: records that `origin` was delivered ahead of what the operation
    /// journals, in the same commit (the state holds the commit gate), so after a crash
    /// the client resends the message exactly when its effects were lost too.
    fn journal_origin(&self, origin: Origin) {
        if let (Some((session, seq)), Some(_)) = (origin, &self.journal) {
            self.registry.journal_delivered(session, seq);
        }
    }

    /// A message a reliable connection could not take: a user-addressed one goes back to
    /// the hub (the user's other connections, or the mailbox); a room message is a dead
    /// letter.
    fn hand_back(&mut self, user: &UserId, message: OutMessage, metrics: &Metrics) {
        let OutMessage::Message {
            from,
            room,
            payload,
        } = message
        else {
            return;
        };
        if room.is_some() {
            Metrics::add(&metrics.dead_letters, 1);
            log_at!(Debug, "dead letter: a room message for a slow consumer");
            return;
        }
        let now = time::now();
        let receipt =
            self.hub
                .restore_mail(now, user, Mail::new(now, from.clone(), payload.clone()));
        if let (true, Some(journal)) = (receipt.mailboxed > 0, &mut self.journal) {
            journal.mail_queued(user, from.as_ref(), &payload);
        }
    }

    /// Queues everything the hub handed out to its connections, counts dead letters, and
    /// commits what the operation journaled; `Err` if that commit failed.
    fn deliver(&mut self, metrics: &Metrics) -> std::io::Result<()> {
        // Reliable connections dropped as slow consumers during this call: what the hub
        // still had queued for them is handed back too.
        let mut dropped: Vec<(ConnId, UserId)> = Vec::new();
        while let Some(out) = self.hub.poll_outbound() {
            if let Some((_, user)) = dropped.iter().find(|(id, _)| *id == out.to) {
                let user = user.clone();
                self.hand_back(&user, out.message, metrics);
                continue;
            }
            let Some(peer) = self.conns.get(&out.to.0) else {
                continue;
            };
            let text = match &out.message {
                OutMessage::Message {
                    from,
                    room,
                    payload,
                } => plain::message(room.as_deref(), from.as_ref().map(UserId::as_str), payload),
                OutMessage::Presence { room, user, joined } => {
                    plain::presence(room, user.as_str(), *joined)
                }
            };
            let is_message = matches!(out.message, OutMessage::Message { .. });
            match peer {
                Peer::Plain(handle) => {
                    if is_message {
                        Metrics::add(&metrics.messages_out, 1);
                    }
                    if handle.send_text(text) == Queued::SlowConsumer {
                        Metrics::add(&metrics.slow_consumers, 1);
                        log_at!(
                            Info,
                            "closing slow consumer: connection {} of user {:?}",
                            handle.id.0,
                            handle.user.as_str()
                        );
                    }
                }
                Peer::Reliable(peer) => {
                    let (user, session) = (peer.user.clone(), peer.session);
                    match self.registry.send(session, Bytes::from(text), true) {
                        Ok(_) => {
                            if is_message {
                                Metrics::add(&metrics.messages_out, 1);
                            }
                        }
                        Err(e) => {
                            if matches!(e, Error::Session(SessionSendError::Full)) {
                                Metrics::add(&metrics.slow_consumers, 1);
                                log_at!(
                                    Info,
                                    "closing slow consumer: reliable connection {} of user {:?}",
                                    out.to.0,
                                    user.as_str()
                                );
                            } else {
                                log_at!(Debug, "reliable session refused a delivery: {e}");
                            }
                            // The session keeps what it has for a resume; this connection
                            // leaves the hub, and the message goes back to it.
                            self.registry
                                .disconnect(session, CloseCode::POLICY_VIOLATION);
                            self.conns.remove(&out.to.0);
                            if let Some(owner) = self.sessions.get_mut(&session) {
                                owner.conn = None;
                                owner.rooms = self.hub.rooms_of(out.to);
                            }
                            self.hub.disconnect(time::now(), out.to);
                            self.hand_back(&user, out.message, metrics);
                            dropped.push((out.to, user));
                        }
                    }
                }
            }
        }
        while let Some(dead) = self.hub.poll_dead_letter() {
            Metrics::add(&metrics.dead_letters, 1);
            log_at!(
                Debug,
                "dead letter for user {:?}: {}",
                dead.user.as_str(),
                dead.reason
            );
        }
        if let Some(journal) = &mut self.journal {
            if let Err(e) = journal.commit() {
                Metrics::add(&metrics.journal_failures, 1);
                log_at!(Error, "journal commit failed: {e}");
                return Err(e);
            }
        }
        Ok(())
    }
}
