//! What each side does when a connection starts: the client's resume request and its
//! reading of the WELCOME, the server's attach (resume, new session, or refusal), and
//! the end of a server session at expiry.
//!
//! On every connection both sides drop what the peer says it delivered and resend the
//! rest in order; messages over their tries or age are dead-lettered at that moment
//! (the peer's count is exact then: no byte of the old connection survives) and their
//! sequence numbers go out void. A refused resume gives the client's application every
//! unacknowledged message back as a dead letter (`SessionLost`), then a fresh session.

use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;

use super::envelope::{self, Envelope, Resume, Welcome, WelcomeStatus};
use super::receive::Receiver;
use super::token::{SessionId, SessionToken};
use super::{
    ClientSession, DeadLetterReason, Endpoint, Link, LostReason, Seq, ServerSession, SessionEvent,
};
use crate::config::SessionConfig;
use crate::entropy::Entropy;
use crate::error::SessionProtocolError;
use crate::time::Instant;

impl ClientSession {
    /// The RESUME to put in the next upgrade request, if there is a session to resume.
    pub fn resume_request(&self) -> Option<Resume> {
        let (session_id, token) = self.session?;
        Some(Resume {
            session_id,
            token,
            last_delivered: self.ep.receiver.delivered(),
        })
    }

    /// The same as the value of the `Sockeye-Resume` header (or of the `sockeye_resume`
    /// query parameter): unpadded base64url of the RESUME envelope.
    pub fn resume_header_value(&self) -> Option<String> {
        self.resume_request()
            .map(|r| envelope::resume_header_value(&r))
    }

    /// The upgrade succeeded (101, `sockeye.v1` selected), with the request built from
    /// [`resume_request`](Self::resume_request) at this moment. The session now waits
    /// for the server's WELCOME; nothing is sent before it.
    pub fn handle_connected(&mut self, now: Instant) {
        if self.ep.link != Link::Down {
            self.ep.handle_disconnected(now);
        }
        self.ep.observe(now);
        self.asked = self.session.map(|(id, _)| id);
        self.ep.link = Link::AwaitingWelcome;
    }

    pub(super) fn on_welcome(&mut self, w: Welcome) {
        let now = self.ep.now;
        self.server_expiry = Some(core::time::Duration::from_secs(w.expiry_secs));
        match (w.status, self.asked) {
            (WelcomeStatus::Resumed, Some(asked)) if asked == w.session_id => {
                self.ep.link = super::Link::Up;
                self.ep.receiver.handle_connected();
                let result =
                    self.ep
                        .sender
                        .handle_connected(now, w.last_delivered, &mut self.ep.events);
                self.ep
                    .events
                    .push_back(SessionEvent::Resumed { session_id: asked });
                if let Err(e) = result {
                    self.ep.fail(e);
                }
            }
            (WelcomeStatus::Resumed, _) => self.ep.fail(SessionProtocolError::SessionMismatch),
            (status, Some(old)) => {
                // Refused (a `New` answer to a resume counts as "unknown"). Only for an
                // expired session does the server still know how far it delivered.
                let (known, reason) = match status {
                    WelcomeStatus::RefusedExpired => (true, LostReason::Expired),
                    _ => (false, LostReason::Unknown),
                };
                // The next session's numbers continue after the last one given out.
                let used = self.ep.sender.next_seq().0 - 1;
                self.ep.sender.lose_session(
                    w.last_delivered,
                    known,
                    DeadLetterReason::SessionLost,
                    &mut self.ep.events,
                );
                self.ep.events.push_back(SessionEvent::SessionLost {
                    session_id: old,
                    reason,
                });
                self.send_base += used;
                self.next_bases.push_back(self.send_base);
                self.start_new(now, w.session_id, w.token);
            }
            (_, None) => self.start_new(now, w.session_id, w.token),
        }
    }

    fn start_new(&mut self, now: Instant, id: SessionId, token: SessionToken) {
        self.session = Some((id, token));
        self.asked = Some(id);
        self.ep.receiver = Receiver::new(&self.ep.config).without_confirmations();
        self.ep.link = Link::Up;
        // A new session: the server has delivered nothing of ours.
        let result = self
            .ep
            .sender
            .handle_connected(now, Seq(0), &mut self.ep.events);
        debug_assert!(result.is_ok(), "acking 0 cannot fail");
        self.ep
            .events
            .push_back(SessionEvent::Established { session_id: id });
    }
}

impl ServerSession {
    /// A new session with a fresh id and token from `entropy`.
    pub(super) fn create(
        config: SessionConfig,
        now: Instant,
        id: SessionId,
        entropy: &mut dyn Entropy,
    ) -> Self {
        ServerSession {
            ep: Endpoint::new(config, now),
            id,
            token: SessionToken::generate(entropy),
            disconnected_at: Some(now),
            epoch: 0,
            held_welcome: None,
        }
    }

    /// Checks a resume token in constant time.
    pub(super) fn token_matches(&self, token: &SessionToken) -> bool {
        self.token.ct_eq(token)
    }

    /// The last client sequence number this session delivered (and, with
    /// `SessionConfig::confirm_deliveries`, the application confirmed): what a WELCOME
    /// reports and what the journal keeps.
    pub fn client_delivered(&self) -> Seq {
        self.ep.receiver.confirmed()
    }

    /// The last client sequence number handed to the application, confirmed or not.
    pub(super) fn client_handed_over(&self) -> Seq {
        self.ep.receiver.delivered()
    }

    /// The application has acted on the client's messages up to `upto` (see
    /// `SessionConfig::confirm_deliveries`): they may be acknowledged now, and a resume
    /// held for them gets its WELCOME. Without `confirm_deliveries` every delivery is
    /// confirmed already and this does nothing.
    pub fn confirm(&mut self, now: Instant, upto: Seq) {
        let now = self.ep.observe(now);
        self.ep.receiver.confirm(now, upto);
        if let (Link::Confirming, Some(client_has)) = (self.ep.link, self.held_welcome) {
            if !self.ep.receiver.has_unconfirmed() {
                self.held_welcome = None;
                self.welcome(
                    now,
                    WelcomeStatus::Resumed,
                    self.client_delivered(),
                    client_has,
                );
            }
        }
    }

    /// The secret that resumes this session: for the server's journal, never for logs.
    pub fn token(&self) -> SessionToken {
        self.token
    }

    /// Attaches a new connection: queues the WELCOME (first on the wire), settles what
    /// the client says it delivered, queues the rest for resending.
    pub(super) fn attach(
        &mut self,
        now: Instant,
        status: WelcomeStatus,
        reported_delivered: Seq,
        client_has: Seq,
    ) {
        if self.ep.link != Link::Down {
            // A resume while the old connection still looks alive: it is dead to us now.
            self.ep.handle_disconnected(now);
        }
        let now = self.ep.observe(now);
        self.epoch += 1;
        self.disconnected_at = None;
        self.held_welcome = None;
        if status == WelcomeStatus::Resumed && self.ep.receiver.has_unconfirmed() {
            // The client would drop what we report and may give up the rest: report
            // only what the application has, once it has all we delivered.
            self.ep.link = Link::Confirming;
            self.held_welcome = Some(client_has);
            return;
        }
        self.welcome(now, status, reported_delivered, client_has);
    }

    /// Queues the WELCOME, settles what the client says it delivered, queues the rest
    /// for resending: the connection is established.
    fn welcome(
        &mut self,
        now: Instant,
        status: WelcomeStatus,
        reported_delivered: Seq,
        client_has: Seq,
    ) {
        self.ep.link = Link::Up;
        self.ep.receiver.handle_connected();
        let welcome = Envelope::Welcome(Welcome {
            status,
            session_id: self.id,
            token: self.token,
            last_delivered: reported_delivered,
            expiry_secs: self.ep.config.session_expiry.as_secs(),
        });
        let mut buf = Vec::with_capacity(64);
        envelope::encode(&welcome, &mut buf);
        self.ep.control.push_back(Bytes::from(buf));
        let result = self
            .ep
            .sender
            .handle_connected(now, client_has, &mut self.ep.events);
        self.ep.events.push_back(match status {
            WelcomeStatus::Resumed => SessionEvent::Resumed {
                session_id: self.id,
            },
            _ => SessionEvent::Established {
                session_id: self.id,
            },
        });
        if let Err(e) = result {
            self.ep.fail(e);
        }
    }

    /// Since when the session has had no connection, if it has none.
    pub(super) fn disconnected_at(&self) -> Option<Instant> {
        self.disconnected_at
    }

    /// The session expired: every unacknowledged message becomes a dead letter (those the
    /// client may have received say so), then `SessionLost`. Returns every pending event.
    pub(super) fn expire(mut self) -> Vec<SessionEvent> {
        self.ep.sender.lose_session(
            Seq(0),
            false,
            DeadLetterReason::SessionLost,
            &mut self.ep.events,
        );
        self.ep.events.push_back(SessionEvent::SessionLost {
            session_id: self.id,
            reason: LostReason::Expired,
        });
        self.ep.events.drain(..).collect()
    }

    pub(super) fn take_events(&mut self) -> impl Iterator<Item = SessionEvent> + '_ {
        self.ep.events.drain(..)
    }
}
