//! The server's sessions: one [`ServerSession`] per session id, kept across reconnects
//! until it expires, bounded by `max_sessions`.
//!
//! The runtime owns the store. At each upgrade it calls [`SessionStore::accept`] with the
//! `Sockeye-Resume` value (if any) and drives the returned session over the new
//! connection; when the connection ends it calls
//! [`ServerSession::on_disconnected`]. The store itself drives sessions that have no
//! connection ([`handle_timeout`](SessionStore::handle_timeout)): their age timers and
//! their expiry. An expired session leaves a small tombstone (id, token,
//! how far it delivered the client's messages) for another `session_expiry`, so a late
//! resume is refused as *expired* with an exact count, and the client learns precisely
//! which of its messages never arrived.

use alloc::collections::{BTreeMap, VecDeque};

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
        match self.sessions.get_mut(&id) {
            Some(s) if s.epoch() == epoch && s.is_connected() => {
                s.on_disconnected(now);
                true
            }
            _ => false,
        }
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
        if !self.sessions.contains_key(&snapshot.id)
            && self.sessions.len() >= self.config.max_sessions
        {
            return Err(StoreError::Full);
        }
        self.tombstones.remove(&snapshot.id);
        let session = ServerSession::restored(&self.config, now, snapshot);
        self.sessions.insert(snapshot.id, session);
        Ok(())
    }

    /// Drives the sessions that have no connection: their timers, and expiry after
    /// `session_expiry` (dead letters and `SessionLost` come out of
    /// [`poll_event`](Self::poll_event)); forgets old tombstones. Early calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.observe(now);
        let expiry = self.config.session_expiry;
        let mut expired = alloc::vec::Vec::new();
        for (id, session) in self.sessions.iter_mut() {
            let Some(since) = session.disconnected_at() else {
                continue;
            };
            session.handle_timeout(now);
            self.events.extend(session.take_events().map(|e| (*id, e)));
            if now >= since + expiry {
                expired.push(*id);
            }
        }
        for id in expired {
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
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.config.session_expiry;
        self.sessions
            .values()
            .filter_map(|s| {
                let since = s.disconnected_at()?;
                let own = s.poll_timeout().unwrap_or(Instant::MAX);
                Some(own.min(since + expiry))
            })
            .chain(self.tomb_order.front().map(|(until, _)| *until))
            .min()
    }

    /// Events of sessions that have no connection (dead letters, expiry), with their
    /// session's id. Call after every `handle_timeout` and `accept` until `None`.
    pub fn poll_event(&mut self) -> Option<(SessionId, SessionEvent)> {
        self.events.pop_front()
    }
}
