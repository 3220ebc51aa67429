//! The reliable mode's glue: a `sockeye.v1` connection carries a session of the store;
//! the session's deliveries are the same JSON commands as plain mode, acknowledged only
//! once acted on and (with a journal) durable; its records go to the journal, and its
//! envelopes wait for the commit that covers them.

use core::time::Duration;

use sockeye_core::auth::UserId;
use sockeye_core::hub::{ConnId, Delivery};
use sockeye_core::journal::Record;
use sockeye_core::{
    CloseCode, Connection, Instant, Message, MessageKind, Seq, ServerSession, SessionEvent,
    SessionId,
};

use crate::answer;
use crate::conn::{Conn, Phase};
use crate::metrics::Rejection;
use crate::plain;
use crate::server::{Owner, Server, Waiter};
use crate::Level;

impl Server {
    /// Attaches the accepted upgrade `ws` of `user` carrying `session` to the hub.
    pub(crate) fn attach_session(
        &mut self,
        conn: ConnId,
        ws: Connection,
        user: UserId,
        session: SessionId,
    ) {
        let now = self.now;
        let fresh = !self.owners.contains_key(&session);
        let ghost = self.owners.get_mut(&session).and_then(|o| o.ghost.take());
        if let Some(ghost) = ghost {
            // The session's stand-in hands its place over: the same rooms, no presence
            // change, and whatever it took is in the session's window, resent below.
            self.ghosts.remove(&ghost);
            self.hub.transfer(ghost, conn);
        } else {
            let rooms = self
                .owners
                .get_mut(&session)
                .map(|o| std::mem::take(&mut o.rooms))
                .unwrap_or_default();
            let epoch = self.store.get(session).map_or(0, |s| s.epoch());
            if let Err(refusal) = self
                .hub
                .connect(now, conn, user.clone(), Delivery::Reliable)
            {
                // The 101 is still only queued in `ws`, which is dropped: the client hears 503.
                if let Some(owner) = self.owners.get_mut(&session) {
                    owner.rooms = rooms;
                }
                self.store.detach(now, session, epoch);
                self.note_eviction(session);
                self.drain_store();
                self.metrics.reject(Rejection::OverLimit);
                return self.answer(conn, answer::text(503, &refusal.to_string()));
            }
            for room in &rooms {
                // The session stays in its rooms across a resume.
                let _ = self.hub.join(conn, room);
            }
        }
        let epoch = self.store.get(session).map_or(0, |s| s.epoch());
        self.durable.mailbox_emptied(&user);
        self.metrics.connections_opened += 1;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.phase = Phase::Reliable {
                ws: Box::new(ws),
                session,
                epoch,
            };
        }
        if fresh {
            if let Some(s) = self.store.get(session) {
                self.durable.append(&Record::SessionOpened {
                    id: session,
                    token: s.token(),
                    user: user.as_str().into(),
                    acked: Seq(0),
                    client_delivered: Seq(0),
                });
                self.hold(session);
            }
            self.owners.insert(
                session,
                Owner {
                    user: user.clone(),
                    conn: Some(conn),
                    ghost: None,
                    rooms: Vec::new(),
                    journaled: Seq(0),
                    released: Seq(0),
                },
            );
            self.reply_reliable(conn, session, plain::welcome(user.as_str()));
        } else if let Some(owner) = self.owners.get_mut(&session) {
            owner.conn = Some(conn);
        }
        self.log(
            Level::Debug,
            format!(
                "connection {} open for user {:?} (reliable mode)",
                conn.0,
                user.as_str()
            ),
        );
        self.drain_ws(conn);
        self.deliver();
    }

    /// A binary message on a reliable connection: an envelope for its session.
    pub(crate) fn on_reliable_message(&mut self, conn: ConnId, message: Message) {
        let Some((session, epoch)) = self.session_of(conn) else {
            return;
        };
        let now = self.now;
        match self.store.get_mut(session) {
            Some(s) if s.epoch() == epoch && s.is_connected() => {
                s.handle_message(now, message.into_payload());
            }
            _ => {}
        }
        self.schedule_drive(conn);
    }

    pub(crate) fn on_rtt(&mut self, conn: ConnId, rtt: Duration) {
        let now = self.now;
        if let Some((session, epoch)) = self.session_of(conn) {
            if let Some(s) = self.store.get_mut(session).filter(|s| s.epoch() == epoch) {
                s.handle_rtt_sample(now, rtt);
            }
        }
    }

    pub(crate) fn session_of(&self, conn: ConnId) -> Option<(SessionId, u64)> {
        match self.conns.get(&conn).map(|c| &c.phase) {
            Some(Phase::Reliable { session, epoch, .. }) => Some((*session, *epoch)),
            _ => None,
        }
    }

    /// One turn of a reliable connection's session: its timers, its events (commands to
    /// the hub, records to the journal), and its envelopes to the WebSocket unless they
    /// wait for a commit.
    pub(crate) fn drive_session(&mut self, conn: ConnId) {
        let Some((session, epoch)) = self.session_of(conn) else {
            return;
        };
        let now = self.now;
        let current = self
            .store
            .get(session)
            .is_some_and(|s| s.epoch() == epoch && s.is_connected());
        if !current {
            // A newer connection took the session over (or it ended): its timers are no
            // longer this connection's.
            if let Some(c) = self.conns.get_mut(&conn) {
                c.session_deadline = None;
            }
            return self.close_ws(conn, CloseCode::GOING_AWAY, "session resumed elsewhere");
        }
        let mut events = Vec::new();
        let resent_before;
        {
            let Some(s) = self.store.get_mut(session) else {
                return;
            };
            resent_before = s.resent_messages();
            if s.poll_timeout().is_some_and(|at| at <= now) {
                s.handle_timeout(now);
            }
            while let Some(event) = s.poll_event() {
                events.push(event);
            }
        }
        for event in events {
            self.on_session_event(Some(conn), session, event);
        }
        self.journal_skips(session);
        let held = self.is_held(session);
        let (Some(s), Some(c)) = (self.store.get_mut(session), self.conns.get_mut(&conn)) else {
            return;
        };
        if !held {
            self.held.remove(&session);
            pull_envelopes(s, c, now, self.config.max_queue_bytes);
        }
        self.metrics.resends += s.resent_messages().saturating_sub(resent_before);
        if let Some(code) = s.wants_disconnect() {
            if let Some(ws) = c.ws_mut() {
                let _ = ws.close(now, code, "");
            }
        }
        // While held or backlogged, what is due now is the output itself: the commit's
        // release or the drained queue takes it, so only later timers count.
        let waiting = held || c.backlog;
        c.session_deadline = s.poll_timeout().filter(|&at| !waiting || at > now);
        self.touch(conn);
    }

    /// What a session event means for the hub, the journal and the metrics.
    fn on_session_event(&mut self, conn: Option<ConnId>, session: SessionId, event: SessionEvent) {
        match event {
            SessionEvent::Delivered {
                seq,
                payload,
                is_text,
            } => {
                // Acted on (or refused for good): acknowledged once that is durable. The
                // record goes first, so what the command sends waits for the same commit.
                self.durable
                    .append(&Record::ClientDelivered { id: session, seq });
                if let Some(owner) = self.owners.get_mut(&session) {
                    owner.journaled = owner.journaled.max(seq);
                }
                match conn {
                    Some(conn) if is_text => {
                        self.cause = Some(session);
                        let done = self.on_command(conn, &payload);
                        self.cause = None;
                        match done {
                            Err(why) => self.close_ws(conn, CloseCode::POLICY_VIOLATION, why),
                            Ok(Some(reply)) => self.reply_reliable(conn, session, reply),
                            Ok(None) => {}
                        }
                    }
                    Some(conn) => {
                        self.metrics.messages_in += 1;
                        self.close_ws(conn, CloseCode::UNSUPPORTED_DATA, "commands are JSON text");
                    }
                    None => {}
                }
                self.confirm(session, seq);
            }
            SessionEvent::Acked { seq } => {
                self.durable
                    .append(&Record::ClientAcked { id: session, seq });
            }
            SessionEvent::DeadLetter {
                seq,
                payload,
                reason,
                possibly_delivered,
                ..
            } => {
                self.durable
                    .append(&Record::ServerVoided { id: session, seq });
                let user = self
                    .owners
                    .get(&session)
                    .map(|o| o.user.as_str().to_string())
                    .unwrap_or_default();
                let reason = format!("reliable session: {reason}");
                self.dead_letter(&user, payload, &reason, possibly_delivered);
            }
            SessionEvent::Resumed { .. } => self.metrics.resumes += 1,
            SessionEvent::SessionLost { session_id, .. } => {
                self.durable
                    .append(&Record::SessionClosed { id: session_id });
                if let Some(ghost) = self.owners.remove(&session_id).and_then(|o| o.ghost) {
                    // Its stand-in leaves its rooms (the others see it go).
                    self.ghosts.remove(&ghost);
                    self.hub.disconnect(self.now, ghost);
                    self.deliver();
                }
                self.held.remove(&session_id);
            }
            _ => {}
        }
    }

    /// Confirms `seq` to its session now, or once the journal holds what it did.
    fn confirm(&mut self, session: SessionId, seq: Seq) {
        let ticket = self.durable.ticket();
        if self.durable.is_finished(ticket) {
            self.confirm_durable(session, seq);
        } else {
            self.waiters
                .push_back((ticket, Waiter::Confirm { session, seq }));
        }
    }

    /// Commit `done` finished: confirms what waited for it and lets held envelopes go,
    /// or, if it failed, keeps both for a later commit and closes the connections that
    /// carried them (1011: their clients resume and learn what was kept).
    pub(crate) fn release_sessions(&mut self, done: u64, ok: bool) {
        let next = self.durable.next_ticket();
        let mut again = std::collections::VecDeque::new();
        while let Some((ticket, waiter)) = self.waiters.pop_front() {
            if ticket > done {
                again.push_back((ticket, waiter));
                continue;
            }
            let Waiter::Confirm { session, seq } = waiter;
            if ok {
                self.confirm_durable(session, seq);
            } else {
                again.push_back((next, Waiter::Confirm { session, seq }));
                if let Some(conn) = self.owners.get(&session).and_then(|o| o.conn) {
                    self.close_ws(conn, CloseCode::INTERNAL_ERROR, "journal unavailable");
                }
            }
            self.touch_session(session);
        }
        self.waiters = again;
        let held: Vec<(SessionId, u64)> = self.held.iter().map(|(s, t)| (*s, *t)).collect();
        for (session, ticket) in held {
            if ticket <= done {
                if ok {
                    self.held.remove(&session);
                } else {
                    self.held.insert(session, next);
                }
                self.touch_session(session);
            }
        }
    }

    /// The client's message `seq` is acted on and its record durable: the session may
    /// acknowledge it (and what came before).
    fn confirm_durable(&mut self, session: SessionId, seq: Seq) {
        if let Some(s) = self.store.get_mut(session) {
            s.confirm(self.now, seq);
        }
        if let Some(owner) = self.owners.get_mut(&session) {
            owner.released = owner.released.max(seq);
        }
    }

    /// The client's voids (messages its session gave up) move the session's count of the
    /// client's stream past its last durable delivery without a delivery, hence without a
    /// record of their own: journals the count if no record covers it yet, and holds the
    /// envelopes (whose acks report it) until what covers it is durable, so a restart
    /// never expects a number the client already dropped as acknowledged.
    fn journal_skips(&mut self, session: SessionId) {
        let Some(confirmed) = self.store.get(session).map(|s| s.client_delivered()) else {
            return;
        };
        let Some(owner) = self.owners.get_mut(&session) else {
            return;
        };
        if confirmed <= owner.released {
            return;
        }
        owner.released = confirmed;
        if confirmed > owner.journaled {
            owner.journaled = confirmed;
            self.durable.append(&Record::ClientDelivered {
                id: session,
                seq: confirmed,
            });
        }
        self.hold(session);
    }

    /// Whether `session`'s envelopes wait for a commit not yet done.
    fn is_held(&self, session: SessionId) -> bool {
        self.held
            .get(&session)
            .is_some_and(|&ticket| !self.durable.is_finished(ticket))
    }

    /// The runtime drained `conn`'s queue while its session held back envelopes: takes
    /// the next ones (no events, no actions: only bytes and the session's timers).
    pub(crate) fn refill(&mut self, conn: ConnId) {
        let Some((session, epoch)) = self.session_of(conn) else {
            return self.pull_mail(conn);
        };
        // Before the timers is as good as after: they never move the client's count.
        self.journal_skips(session);
        let held = self.is_held(session);
        let (Some(s), Some(c)) = (self.store.get_mut(session), self.conns.get_mut(&conn)) else {
            return;
        };
        c.backlog = false;
        if held || s.epoch() != epoch || !s.is_connected() {
            return;
        }
        let now = self.now;
        if s.poll_timeout().is_some_and(|at| at <= now) {
            // Its timers (resends, the delayed ACK) add to what it sends; any events wait
            // in the session for its next turn.
            s.handle_timeout(now);
        }
        let resent_before = s.resent_messages();
        pull_envelopes(s, c, now, self.config.max_queue_bytes);
        self.metrics.resends += s.resent_messages().saturating_sub(resent_before);
        c.session_deadline = s.poll_timeout().filter(|&at| !c.backlog || at > now);
        self.rearm(conn);
    }

    /// Drives the connection that carries `session` now, if any.
    fn touch_session(&mut self, session: SessionId) {
        if let Some(conn) = self.owners.get(&session).and_then(|o| o.conn) {
            self.schedule_drive(conn);
        }
    }

    /// `conn` (a connection or a ghost) stops standing for `session` in the hub (a slow
    /// consumer, or its window is full): the session keeps its rooms for the next
    /// connection.
    pub(crate) fn leave_hub(&mut self, conn: ConnId, session: SessionId) {
        if let Some(owner) = self.owners.get_mut(&session) {
            if owner.conn == Some(conn) || owner.ghost == Some(conn) {
                owner.conn = owner.conn.filter(|&c| c != conn);
                owner.ghost = owner.ghost.filter(|&c| c != conn);
                owner.rooms = self.hub.rooms_of(conn);
            }
        }
        self.ghosts.remove(&conn);
        self.hub.disconnect(self.now, conn);
    }

    /// The connection `conn` carrying `session` goes (it ended, or a resume takes over):
    /// its hub id stays as the session's ghost, in its rooms, until a resume or expiry.
    pub(crate) fn become_ghost(&mut self, conn: ConnId, session: SessionId) {
        let Some(owner) = self.owners.get_mut(&session) else {
            return self.hub.disconnect(self.now, conn);
        };
        if owner.conn != Some(conn) {
            // It no longer stood for the session (evicted, or taken over already).
            return self.hub.disconnect(self.now, conn);
        }
        owner.conn = None;
        owner.ghost = Some(conn);
        self.ghosts.insert(conn, session);
    }

    /// Gives `session`, which has no connection and no ghost, a ghost of its own in its
    /// rooms (a restored session, or one whose resume was refused by the limits). Without
    /// room under the hub's limits, it stays out of the hub and joins on resume.
    pub(crate) fn stand_in(&mut self, session: SessionId) {
        let now = self.now;
        let Some(owner) = self.owners.get(&session) else {
            return;
        };
        if owner.conn.is_some() || owner.ghost.is_some() {
            return;
        }
        let user = owner.user.clone();
        let ghost = self.next_id();
        if let Err(refusal) = self
            .hub
            .connect(now, ghost, user.clone(), Delivery::Reliable)
        {
            self.note_eviction(session);
            return self.log(
                Level::Warn,
                format!(
                    "a session of user {:?} stays out of its rooms until it resumes: {refusal}",
                    user.as_str()
                ),
            );
        }
        // What waited in the user's mailbox goes into the session, as on a resume.
        self.durable.mailbox_emptied(&user);
        let rooms = self
            .owners
            .get_mut(&session)
            .map(|o| {
                o.ghost = Some(ghost);
                std::mem::take(&mut o.rooms)
            })
            .unwrap_or_default();
        self.ghosts.insert(ghost, session);
        for room in &rooms {
            let _ = self.hub.join(ghost, room);
        }
    }

    /// Connection `conn` carrying `session` as `epoch` ended.
    pub(crate) fn detach_session(&mut self, conn: ConnId, session: SessionId, epoch: u64) {
        let now = self.now;
        if self.store.detach(now, session, epoch) {
            // Its resume window starts now, in Redis too.
            self.durable.touch(session);
            self.become_ghost(conn, session);
        } else {
            self.leave_hub(conn, session);
        }
        self.drain_store();
        self.deliver();
    }

    /// Events of sessions without a connection (dead letters, expiry).
    pub(crate) fn drain_store(&mut self) {
        while let Some((session, event)) = self.store.poll_event() {
            self.on_session_event(None, session, event);
        }
    }
}

impl Conn {
    /// Whether this connection carries a reliable session.
    pub(crate) fn is_reliable(&self) -> bool {
        matches!(self.phase, Phase::Reliable { .. })
    }
}

/// Moves a session's envelopes into its connection's queue while that holds less than
/// `max` bytes; the rest stay in the session's window, to be pulled as the runtime
/// drains the queue ([`Conn::backlog`]). What the WebSocket framed is moved to the queue
/// before each envelope, so its send is never refused as full: an envelope the session
/// counts as sent always reaches the wire, or the connection ends and it is resent.
pub(crate) fn pull_envelopes(s: &mut ServerSession, c: &mut Conn, now: Instant, max: usize) {
    loop {
        c.take_transmits();
        if c.queued_bytes() >= max {
            c.backlog = true;
            return;
        }
        let Some(envelope) = s.poll_outgoing_parts() else {
            c.backlog = false;
            return;
        };
        if let Some(ws) = c.ws_mut() {
            let _ = ws.send_parts(
                now,
                MessageKind::Binary,
                envelope.head(),
                envelope.payload(),
            );
        }
    }
}
