//! The server's sessions: one [`ServerSession`] per session id, kept across reconnects
//! until it expires, bounded by `max_sessions`.
//!
//! The runtime owns the store. At each upgrade it calls [`SessionStore::accept`] with the
//! `Sockeye-Resume` value (if any) and drives the returned session over the new
//! connection; when the connection ends it calls
//! [`ServerSession::handle_disconnected`]. The store itself drives sessions that have no
//! connection ([`handle_timeout`](SessionStore::handle_timeout)): their age timers and
//! their expiry. An expired session leaves a small tombstone (id, token,
//! how far it delivered the client's messages) for another `session_expiry`, so a late
//! resume is refused as *expired* with an exact count, and the client learns precisely
//! which of its messages never arrived.
//!
//! Sessions without a connection sit in a deadline index (earliest first), so
//! [`poll_timeout`](SessionStore::poll_timeout) answers at once and
//! [`handle_timeout`](SessionStore::handle_timeout) touches only the sessions that are due,
//! however many are stored: a runtime sleeps until the store's next deadline, with no
//! periodic tick. A session handed out by [`get_mut`](SessionStore::get_mut) may change its
//! deadlines; it is re-indexed at the store's next `&mut` call (the borrow has ended by
//! then), and [`poll_timeout`](SessionStore::poll_timeout) looks at it fresh until then.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};

use super::envelope::{self, WelcomeStatus};
use super::token::{SessionId, SessionToken};
use super::{Seq, ServerSession, SessionEvent};
use crate::config::SessionConfig;
use crate::entropy::Entropy;
use crate::error::StoreError;
use crate::journal::SessionSnapshot;
use crate::time::{Clock, Instant};

/// What is left of an expired session.
#[derive(Debug)]
struct Tombstone {
    token: SessionToken,
    client_delivered: Seq,
    until: Instant,
}

/// The server's sessions, with expiry and a bound on their number.
#[derive(Debug)]
pub struct SessionStore {
    config: SessionConfig,
    clock: Clock,
    sessions: BTreeMap<SessionId, ServerSession>,
    tombstones: BTreeMap<SessionId, Tombstone>,
    /// Tombstones in order of creation, for expiry and eviction.
    tomb_order: VecDeque<(Instant, SessionId)>,
    events: VecDeque<(SessionId, SessionEvent)>,
    /// The next deadline of every session without a connection, earliest first.
    due: BTreeSet<(Instant, SessionId)>,
    /// Each indexed session's entry in `due`.
    due_of: BTreeMap<SessionId, Instant>,
    /// The session last handed out by `get_mut`, to re-index.
    lent: Option<SessionId>,
}

impl SessionStore {
    /// An empty store.
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        SessionStore {
            config,
            clock: Clock::new(now),
            sessions: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            tomb_order: VecDeque::new(),
            events: VecDeque::new(),
            due: BTreeSet::new(),
            due_of: BTreeMap::new(),
            lent: None,
        }
    }

    /// When the store must next drive `session`: its own next deadline or its expiry,
    /// while it has no connection.
    fn deadline(&self, session: &ServerSession) -> Option<Instant> {
        let since = session.disconnected_at()?;
        let own = session.poll_timeout().unwrap_or(Instant::MAX);
        Some(own.min(since + self.config.session_expiry))
    }

    /// Puts `id`'s entry in the deadline index right (or removes it).
    fn reindex(&mut self, id: SessionId) {
        if let Some(old) = self.due_of.remove(&id) {
            self.due.remove(&(old, id));
        }
        if let Some(at) = self.sessions.get(&id).and_then(|s| self.deadline(s)) {
            self.due.insert((at, id));
            self.due_of.insert(id, at);
        }
    }

    /// Re-indexes the session `get_mut` lent out: its borrow has ended.
    fn settle(&mut self) {
        if let Some(id) = self.lent.take() {
            self.reindex(id);
        }
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// No live session.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// A session, to drive it over its connection.
    pub fn get_mut(&mut self, id: SessionId) -> Option<&mut ServerSession> {
        self.settle();
        self.lent = Some(id);
        self.sessions.get_mut(&id)
    }

    /// A session, to look at it.
    pub fn get(&self, id: SessionId) -> Option<&ServerSession> {
        self.sessions.get(&id)
    }

    /// The connection of `epoch` ended: detaches the session if that connection is still
    /// the one attached (a newer resume may have taken it over). Returns whether it did.
    pub fn detach(&mut self, now: Instant, id: SessionId, epoch: u64) -> bool {
        let now = self.clock.observe(now);
        self.settle();
        let detached = match self.sessions.get_mut(&id) {
            Some(s) if s.epoch() == epoch && s.is_connected() => {
                s.handle_disconnected(now);
                true
            }
            _ => false,
        };
        self.reindex(id);
        detached
    }

    /// A new connection arrived with `resume`, the `Sockeye-Resume` header (or
    /// `sockeye_resume` query) value, if the client sent one. Resumes that session if its
    /// token matches (compared in constant time); otherwise starts a new one, whose
    /// WELCOME says why the resume was refused. Returns the id of the session now
    /// attached to the connection, with its WELCOME queued first in `poll_outgoing`.
    ///
    /// Errors: a malformed value (answer 400), or `max_sessions` live sessions (503).
    pub fn accept(
        &mut self,
        now: Instant,
        resume: Option<&[u8]>,
        entropy: &mut dyn Entropy,
    ) -> Result<SessionId, StoreError> {
        self.accept_checked(now, resume, entropy, true)
    }

    /// Like [`accept`](Self::accept), for a resume the application refuses whatever its
    /// token (the session belongs to another user): answered exactly as an unknown
    /// session is (`docs/PROTOCOL.md` §6.3), a new session whose WELCOME says
    /// "refused: unknown", so nobody learns that the id exists. The claimed session is
    /// left as it was.
    pub fn accept_as_unknown(
        &mut self,
        now: Instant,
        resume: Option<&[u8]>,
        entropy: &mut dyn Entropy,
    ) -> Result<SessionId, StoreError> {
        self.accept_checked(now, resume, entropy, false)
    }

    fn accept_checked(
        &mut self,
        now: Instant,
        resume: Option<&[u8]>,
        entropy: &mut dyn Entropy,
        may_resume: bool,
    ) -> Result<SessionId, StoreError> {
        let now = self.clock.observe(now);
        self.settle();
        let resume = resume
            .map(envelope::parse_resume_header)
            .transpose()
            .map_err(StoreError::MalformedResume)?;
        let (status, reported) = match resume {
            Some(r) => {
                if let Some(session) = self
                    .sessions
                    .get_mut(&r.session_id)
                    .filter(|s| may_resume && s.token_matches(&r.token))
                {
                    let delivered = session.client_delivered();
                    session.attach(now, WelcomeStatus::Resumed, delivered, r.last_delivered);
                    self.reindex(r.session_id);
                    return Ok(r.session_id);
                }
                match self.tombstones.get(&r.session_id) {
                    Some(t) if may_resume && t.token.ct_eq(&r.token) => {
                        (WelcomeStatus::RefusedExpired, t.client_delivered)
                    }
                    _ => (WelcomeStatus::RefusedUnknown, Seq(0)),
                }
            }
            None => (WelcomeStatus::New, Seq(0)),
        };
        self.handle_timeout(now);
        if self.sessions.len() >= self.config.max_sessions {
            return Err(StoreError::Full);
        }
        // 128 random bits do not collide in practice; a broken entropy source might.
        let id = (0..4)
            .map(|_| SessionId::generate(entropy))
            .find(|id| !self.sessions.contains_key(id) && !self.tombstones.contains_key(id))
            .ok_or(StoreError::Full)?;
        if let Some(r) = resume {
            // The refusal is final: forget the tombstone.
            self.tombstones.remove(&r.session_id);
        }
        let mut session = ServerSession::create(self.config.clone(), now, id, entropy);
        session.attach(now, status, reported, Seq(0));
        self.sessions.insert(id, session);
        Ok(id)
    }

    /// Restores a session from its journal snapshot ([`crate::journal`]) after a
    /// restart, without a connection: it waits `session_expiry` from `now` for its client
    /// to resume, then resends every message the client has not acknowledged (as possibly
    /// delivered: the client drops what it already has) and tells the client, in the
    /// WELCOME, which of its messages were delivered before the restart. A session with
    /// the same id is replaced.
    ///
    /// Errors: `Full` when the store holds `max_sessions` other sessions.
    pub fn restore(&mut self, now: Instant, snapshot: &SessionSnapshot) -> Result<(), StoreError> {
        let now = self.clock.observe(now);
        self.settle();
        if !self.sessions.contains_key(&snapshot.id)
            && self.sessions.len() >= self.config.max_sessions
        {
            return Err(StoreError::Full);
        }
        self.tombstones.remove(&snapshot.id);
        let session = ServerSession::restored(&self.config, now, snapshot);
        self.sessions.insert(snapshot.id, session);
        self.reindex(snapshot.id);
        Ok(())
    }

    /// Forgets `id` at once, with no event, no dead letter and no tombstone: the session
    /// lives on elsewhere (another node took it over) and this copy must go quietly.
    /// Returns whether it was here.
    pub fn forget(&mut self, id: SessionId) -> bool {
        self.settle();
        let was = self.sessions.remove(&id).is_some();
        self.reindex(id);
        self.events.retain(|(of, _)| *of != id);
        was
    }

    /// Drives the sessions that have no connection: their timers, and expiry after
    /// `session_expiry` (dead letters and `SessionLost` come out of
    /// [`poll_event`](Self::poll_event)); forgets old tombstones. Early calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.observe(now);
        self.settle();
        let expiry = self.config.session_expiry;
        // Each due session once: one that is due again at `now` waits for the next call.
        let mut due = alloc::vec::Vec::new();
        while let Some(&(at, id)) = self.due.first() {
            if at > now {
                break;
            }
            self.due.pop_first();
            self.due_of.remove(&id);
            due.push(id);
        }
        for id in due {
            let Some(session) = self.sessions.get_mut(&id) else {
                continue;
            };
            let Some(since) = session.disconnected_at() else {
                continue;
            };
            session.handle_timeout(now);
            self.events.extend(session.take_events().map(|e| (id, e)));
            if now < since + expiry {
                self.reindex(id);
                continue;
            }
            let Some(session) = self.sessions.remove(&id) else {
                continue;
            };
            let tombstone = Tombstone {
                token: session.token(),
                // Everything handed to the application, confirmed or not: it has them,
                // and the session ends here, so nothing more will be confirmed.
                client_delivered: session.client_handed_over(),
                until: now + expiry,
            };
            self.events
                .extend(session.expire().into_iter().map(|e| (id, e)));
            self.tombstones.insert(id, tombstone);
            self.tomb_order.push_back((now + expiry, id));
        }
        while let Some(&(until, id)) = self.tomb_order.front() {
            if until > now && self.tomb_order.len() <= self.config.max_sessions {
                break;
            }
            self.tomb_order.pop_front();
            if self.tombstones.get(&id).is_some_and(|t| t.until == until) {
                self.tombstones.remove(&id);
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let lent = self
            .lent
            .and_then(|id| self.sessions.get(&id))
            .and_then(|s| self.deadline(s));
        // The lent session's index entry may be stale: it counts only as freshly computed.
        let indexed = self
            .due
            .iter()
            .find(|(_, id)| Some(*id) != self.lent)
            .map(|(at, _)| *at);
        [
            lent,
            indexed,
            self.tomb_order.front().map(|(until, _)| *until),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Events of sessions that have no connection (dead letters, expiry), with their
    /// session's id. Call after every `handle_timeout` and `accept` until `None`.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<(SessionId, SessionEvent)> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;
    use alloc::vec::Vec;
    use bytes::Bytes;
    use core::time::Duration;
    use proptest::prelude::*;

    /// The next deadline found the slow way: every session looked at.
    fn walked(store: &SessionStore) -> Option<Instant> {
        store
            .sessions
            .values()
            .filter_map(|s| store.deadline(s))
            .chain(store.tomb_order.front().map(|(until, _)| *until))
            .min()
    }

    proptest! {
        /// The deadline index answers what walking every session would, whatever the
        /// store went through: accepts, detaches, resumes, messages queued into detached
        /// sessions through `get_mut`, time passing, expiry.
        #[test]
        fn the_deadline_index_agrees_with_walking_every_session(
            ops in proptest::collection::vec((0u8..5, 0usize..8, 0u64..90_000), 1..120)
        ) {
            let config = SessionConfig {
                message_max_age: Duration::from_secs(20),
                session_expiry: Duration::from_secs(60),
                max_sessions: 6,
                ..SessionConfig::default()
            };
            let mut now = Instant::ZERO;
            let mut store = SessionStore::new(config, now);
            let mut entropy = SeededEntropy::new(9);
            let mut ids: Vec<SessionId> = Vec::new();
            for (op, pick, ms) in ops {
                let id = (!ids.is_empty()).then(|| ids[pick % ids.len()]);
                match (op, id) {
                    (0, _) | (_, None) => {
                        if let Ok(id) = store.accept(now, None, &mut entropy) {
                            ids.push(id);
                        }
                    }
                    (1, Some(id)) => {
                        if let Some(epoch) = store.get(id).map(ServerSession::epoch) {
                            store.detach(now, id, epoch);
                        }
                    }
                    (2, Some(id)) => {
                        if let Some(s) = store.get_mut(id) {
                            let _ = s.send(now, Bytes::from_static(b"m"), true);
                        }
                    }
                    (3, _) => {
                        now = now + Duration::from_millis(ms);
                        store.handle_timeout(now);
                        while store.poll_event().is_some() {}
                    }
                    (_, Some(id)) => {
                        let resume = store.get(id).map(|s| {
                            envelope::resume_header_value(&envelope::Resume {
                                session_id: id,
                                token: s.token(),
                                last_delivered: Seq(0),
                            })
                        });
                        if let Some(resume) = resume {
                            let _ = store.accept(now, Some(resume.as_bytes()), &mut entropy);
                        }
                    }
                }
                prop_assert_eq!(store.poll_timeout(), walked(&store));
            }
        }
    }
}
