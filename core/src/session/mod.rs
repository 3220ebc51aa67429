//! Reliable delivery over WebSocket: the `sockeye.v1` session layer.
//!
//! A message handed to `send` reaches the other application exactly once and in order,
//! across dropped connections and reconnects, or its sender gets it back as a
//! [`SessionEvent::DeadLetter`]. The wire format and the rules are in `docs/PROTOCOL.md`.
//!
//! A session sits *above* a [`Connection`](crate::Connection): every envelope is one
//! binary WebSocket message. The runtime feeds each binary message's payload to
//! `handle_message`, sends whatever `poll_outgoing` returns as a binary message on the
//! current connection, and tells the session when a connection comes and goes. The same
//! drive loop as the connection's applies: after every input (`handle_message`,
//! `handle_timeout`, `send`, `handle_connected`, `handle_disconnected`) drain
//! [`poll_event`](ClientSession::poll_event) and
//! [`poll_outgoing`](ClientSession::poll_outgoing) until both are empty, then re-arm the
//! timer from [`poll_timeout`](ClientSession::poll_timeout). Early or repeated
//! `handle_timeout` calls are harmless.
//!
//! ```text
//!  client                                                   server (SessionStore)
//!  ClientSession ── upgrade + Sockeye-Resume: <RESUME> ──▶  SessionStore::accept
//!      handle_connected        ◀────────── 101, WELCOME ──────  ServerSession (queued WELCOME)
//!      DATA / ACK          ◀──────────────────────────────▶ DATA / ACK
//!      handle_disconnected     ✂ cut: both keep their windows; the server session waits
//!                            `session_expiry` for a resume, then dead-letters and goes
//! ```
//!
//! The smallest drive loop, envelopes carried by hand instead of by a WebSocket:
//!
//! ```
//! use bytes::Bytes;
//! use sockeye_core::{ClientSession, Instant, SeededEntropy, SessionConfig, SessionEvent, SessionStore};
//!
//! let now = Instant::ZERO;
//! let mut client = ClientSession::new(SessionConfig::default(), now);
//! let mut store = SessionStore::new(SessionConfig::default(), now);
//! let mut entropy = SeededEntropy::new(1); // a real server draws tokens from the OS
//!
//! // The upgrade request carries the client's RESUME (none yet); the server attaches a
//! // session to the new connection and queues its WELCOME; the client learns of the 101.
//! let resume = client.resume_header_value();
//! let id = store.accept(now, resume.as_deref().map(str::as_bytes), &mut entropy)?;
//! client.handle_connected(now);
//!
//! let seq = client.send(now, Bytes::from_static(b"hello"), true)?;
//! let server = store.get_mut(id).expect("accept just attached it");
//! loop {
//!     // Each envelope is one binary WebSocket message, in real life.
//!     let mut moved = false;
//!     while let Some(m) = server.poll_outgoing() { client.handle_message(now, m); moved = true; }
//!     while let Some(m) = client.poll_outgoing() { server.handle_message(now, m); moved = true; }
//!     if !moved { break; }
//! }
//! let delivered = std::iter::from_fn(|| server.poll_event())
//!     .any(|e| matches!(e, SessionEvent::Delivered { payload, .. } if payload[..] == b"hello"[..]));
//! assert!(delivered);
//! // The server's ack is delayed (`ack_delay`), hoping to ride on a reply.
//! assert_eq!(server.poll_timeout(), Some(now + SessionConfig::default().ack_delay));
//! # let _ = seq;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Sessions states (client; the server's are the same minus "awaiting welcome"):
//!
//! ```text
//!   +--------------+  handle_connected   +------------------+  WELCOME   +-------------+
//!   | Disconnected | --------------> | Awaiting WELCOME | ---------> | Established |
//!   +--------------+                 +------------------+            +-------------+
//!          ^   ^  handle_disconnected             |                        |    |
//!          |   +------------------------------+------------------------+    | peer violation /
//!          |                                                                | unresponsive
//!          |            handle_disconnected        +--------+   (ERROR sent,    |
//!          +---------------------------------- | Failed | <-----------------+
//!                                              +--------+  wants_disconnect)
//! ```
//!
//! Modules: [`envelope`] (codec), [`send_window`] (unacked messages, RTO, dead letters),
//! [`receive`] (dedup, in-order delivery, delayed acks), [`token`] (ids and secrets),
//! [`reconnect`] (a client's backoff with jitter between connection attempts),
//! `resume` (what each side does on connect), [`store`] (the server's sessions).

pub mod envelope;
mod outgoing;
pub mod receive;
pub mod reconnect;
mod restore;
mod resume;
pub mod send_window;
pub mod store;
pub mod token;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;
use core::fmt;
use core::time::Duration;

use crate::config::SessionConfig;
use crate::error::{SessionProtocolError, SessionSendError};
use crate::frame::CloseCode;
use crate::time::{earliest, Clock, Instant};
use envelope::{Data, Envelope};
use receive::Receiver;
use send_window::{SendWindow, TimeoutOutcome};

pub use outgoing::OutgoingEnvelope;
pub use reconnect::{Reconnect, ReconnectConfig};
pub use store::SessionStore;
pub use token::{SessionId, SessionToken};

/// The subprotocol name negotiated with `Sec-WebSocket-Protocol`.
pub const SUBPROTOCOL: &str = "sockeye.v1";
/// The upgrade request header that carries a RESUME envelope (unpadded base64url).
pub const RESUME_HEADER: &str = "Sockeye-Resume";
/// The query parameter that carries it for clients that cannot set headers.
pub const RESUME_QUERY: &str = "sockeye_resume";

/// A sequence number of one direction, counting from 1; `Seq(0)` means "none yet". On the
/// wire the numbers are per session (a new session starts again at 1); the numbers a
/// client's `send` returns (and its `Acked`/`DeadLetter` events carry) go on counting
/// across the sessions of the client's life, so each names one message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a message became a dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// It was transmitted on `resend_max_tries` connections of its session (each
    /// connection's retransmissions counting once) without an acknowledgement.
    ResendMaxTries,
    /// It stayed unacknowledged for `message_max_age`.
    MessageMaxAge,
    /// Its session ended: a refused resume (client) or an expired session (server).
    SessionLost,
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeadLetterReason::ResendMaxTries => "resend limit reached",
            DeadLetterReason::MessageMaxAge => "message too old",
            DeadLetterReason::SessionLost => "session lost",
        })
    }
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LostReason {
    /// The server does not know the session (or the token did not match).
    Unknown,
    /// The session expired: nobody resumed it within `session_expiry`.
    Expired,
}

/// Something that happened to a session, for its application.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A message from the peer, delivered exactly once and in order.
    Delivered {
        /// Its sequence number in the peer's direction.
        seq: Seq,
        /// The message.
        payload: Bytes,
        /// It is UTF-8 text (checked).
        is_text: bool,
    },
    /// The peer's application has the message we sent as `seq`.
    Acked {
        /// The sequence number `send` returned.
        seq: Seq,
    },
    /// We give this message back: the peer's application did not get it (unless
    /// `possibly_delivered`), and never will.
    DeadLetter {
        /// The sequence number `send` returned.
        seq: Seq,
        /// The message.
        payload: Bytes,
        /// It was sent as text.
        is_text: bool,
        /// Why it was given up.
        reason: DeadLetterReason,
        /// The session ended while a copy may have reached the peer, so we cannot tell
        /// whether it was delivered. `false`: it certainly was not.
        possibly_delivered: bool,
    },
    /// A new session is in force (the first connection, or after [`SessionEvent::SessionLost`]).
    Established {
        /// Its id.
        session_id: SessionId,
    },
    /// The session survived a reconnect: what the peer lacked is being resent.
    Resumed {
        /// Its id.
        session_id: SessionId,
    },
    /// The session is gone; its unacknowledged messages came back as dead letters just
    /// before this event. A client continues in a new session ([`SessionEvent::Established`]).
    SessionLost {
        /// The lost session.
        session_id: SessionId,
        /// Why.
        reason: LostReason,
    },
    /// The peer broke the protocol. An ERROR envelope is queued; close the connection with
    /// [`ClientSession::wants_disconnect`]'s code once `poll_outgoing` is drained. The
    /// session is kept.
    ProtocolViolation(SessionProtocolError),
    /// The peer says we broke the protocol (an ERROR envelope); it will close.
    PeerError {
        /// The ERROR code.
        code: u16,
        /// Its reason.
        reason: String,
    },
    /// A message the peer may hold went unacknowledged past `resend_max_tries` or
    /// `message_max_age`: close this connection; a resume will settle the message.
    Unresponsive,
    /// (Client) The connection that carried the session ended. Messages sent from now on
    /// wait in the window (it still answers `Full` when full) until the runtime
    /// reconnects and the session resumes ([`SessionEvent::Resumed`]) or is replaced
    /// ([`SessionEvent::SessionLost`], then [`SessionEvent::Established`]).
    Disconnected,
    /// (Client) The runtime tries to connect again after `delay`: the `attempt`-th
    /// attempt since the session's last connection (a [`Reconnect`] policy's decision,
    /// reported through [`ClientSession::report_reconnect`]).
    Reconnecting {
        /// 1 for the first attempt after a drop (or after the first connection failed).
        attempt: u32,
        /// How long until it.
        delay: Duration,
    },
}

/// Where one side's link to the peer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// No connection.
    Down,
    /// Connected; the client waits for the WELCOME before anything else.
    AwaitingWelcome,
    /// Connected and established.
    Up,
    /// (Server) connected for a resume, but the WELCOME waits until the application
    /// confirmed every delivery (`SessionConfig::confirm_deliveries`), so it reports
    /// exactly what the application has.
    Confirming,
    /// Connected, but we stopped talking: an ERROR went out or the peer is unresponsive.
    Failed,
}

/// What both sides share: windows, events, the outgoing control queue, timers.
#[derive(Debug)]
struct Endpoint {
    config: SessionConfig,
    clock: Clock,
    now: Instant,
    sender: SendWindow,
    receiver: Receiver,
    events: VecDeque<SessionEvent>,
    /// WELCOME or ERROR, ahead of everything else.
    control: VecDeque<Bytes>,
    link: Link,
    disconnect: Option<CloseCode>,
}

impl Endpoint {
    fn new(config: SessionConfig, now: Instant) -> Self {
        Endpoint {
            sender: SendWindow::new(config.clone()),
            receiver: Receiver::new(&config),
            config,
            clock: Clock::new(now),
            now,
            events: VecDeque::new(),
            control: VecDeque::new(),
            link: Link::Down,
            disconnect: None,
        }
    }

    fn observe(&mut self, now: Instant) -> Instant {
        self.now = self.clock.observe(now);
        self.now
    }

    fn send(
        &mut self,
        now: Instant,
        payload: Bytes,
        is_text: bool,
    ) -> Result<Seq, SessionSendError> {
        let now = self.observe(now);
        if is_text && core::str::from_utf8(&payload).is_err() {
            return Err(SessionSendError::InvalidUtf8);
        }
        self.sender.push(now, payload, is_text)
    }

    /// DATA, ACK, ERROR, or a RESUME that has no business in-band.
    fn on_envelope(&mut self, message: &Bytes, envelope: Envelope<'_>) {
        let now = self.now;
        let result = match envelope {
            Envelope::Data(data) => self.handle_data(now, &data, message),
            Envelope::Ack { ack } => self.sender.ack(now, ack, &mut self.events),
            Envelope::Error { code, reason } => {
                self.events.push_back(SessionEvent::PeerError {
                    code,
                    reason: String::from(reason),
                });
                self.link = Link::Failed;
                Ok(())
            }
            Envelope::Welcome(_) => Err(SessionProtocolError::UnexpectedEnvelope(
                envelope::KIND_WELCOME,
            )),
            Envelope::Resume(_) => Err(SessionProtocolError::UnexpectedEnvelope(
                envelope::KIND_RESUME,
            )),
        };
        if let Err(e) = result {
            self.fail(e);
        }
    }

    fn handle_data(
        &mut self,
        now: Instant,
        data: &Data<'_>,
        message: &Bytes,
    ) -> Result<(), SessionProtocolError> {
        self.sender.ack(now, data.ack, &mut self.events)?;
        if let Some(d) = self.receiver.handle_data(now, data, message)? {
            self.events.push_back(SessionEvent::Delivered {
                seq: d.seq,
                payload: d.payload,
                is_text: d.is_text,
            });
        }
        Ok(())
    }

    /// The peer broke the protocol: report it, tell the peer, stop talking, ask for the
    /// connection to be closed. The session itself is kept.
    fn fail(&mut self, error: SessionProtocolError) {
        if matches!(self.link, Link::Down | Link::Failed) {
            return;
        }
        let reason = alloc::format!("{error}");
        let mut buf = Vec::new();
        envelope::encode(
            &Envelope::Error {
                code: error.wire_code(),
                reason: envelope::truncate_reason(&reason),
            },
            &mut buf,
        );
        self.control.push_back(Bytes::from(buf));
        self.disconnect = Some(error.close_code());
        self.link = Link::Failed;
        self.events
            .push_back(SessionEvent::ProtocolViolation(error));
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = self.observe(now);
        let outcome = self.sender.handle_timeout(now, &mut self.events);
        if outcome == TimeoutOutcome::Unresponsive && self.link == Link::Up {
            self.link = Link::Failed;
            self.disconnect = Some(CloseCode::GOING_AWAY);
            self.events.push_back(SessionEvent::Unresponsive);
        }
    }

    fn poll_outgoing(&mut self) -> Option<OutgoingEnvelope> {
        if self.link == Link::Down {
            return None;
        }
        if let Some(control) = self.control.pop_front() {
            return Some(OutgoingEnvelope::whole(control));
        }
        if self.link != Link::Up {
            return None;
        }
        if let Some(out) = self.sender.next_to_send(self.now) {
            let ack = self.receiver.take_ack();
            let data = Data {
                is_text: out.is_text && out.payload.is_some(),
                is_void: out.payload.is_none(),
                seq: out.seq,
                ack,
                payload: &[],
            };
            return Some(OutgoingEnvelope::with_head(
                |head| envelope::encode(&Envelope::Data(data), head),
                out.payload.unwrap_or_default(),
            ));
        }
        if self.receiver.ack_due(self.now) {
            let ack = self.receiver.take_ack();
            return Some(OutgoingEnvelope::with_head(
                |head| envelope::encode(&Envelope::Ack { ack }, head),
                Bytes::new(),
            ));
        }
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let ack = match self.link {
            Link::Up => self.receiver.poll_timeout(),
            _ => None,
        };
        earliest(self.sender.poll_timeout(), ack)
    }

    fn handle_disconnected(&mut self, now: Instant) {
        self.observe(now);
        self.link = Link::Down;
        self.disconnect = None;
        self.control.clear();
        self.sender.handle_disconnected();
        self.receiver.handle_disconnected();
    }
}

/// The client's side of a reliable session: one per logical client, kept across
/// reconnects. See the [module docs](self) for the drive loop.
#[derive(Debug)]
pub struct ClientSession {
    ep: Endpoint,
    /// The session in force, once a WELCOME named it.
    session: Option<(SessionId, SessionToken)>,
    /// The session we asked to resume on the current connection.
    asked: Option<SessionId>,
    /// The server's `session_expiry`, from the last WELCOME.
    server_expiry: Option<Duration>,
    /// Numbers given out in sessions before the current one: `send` answers and events
    /// report `base + seq`, so a number names one message for the client's life although
    /// each session's own numbers start at 1 on the wire.
    send_base: u64,
    /// The base of the events `poll_event` hands out next, and the base each lost
    /// session's successor starts with, in the order their `SessionLost` events wait.
    poll_base: u64,
    next_bases: VecDeque<u64>,
}

impl ClientSession {
    /// A client with no session yet; messages sent before the first connection wait.
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        let mut ep = Endpoint::new(config, now);
        ep.receiver = ep.receiver.without_confirmations();
        ClientSession {
            ep,
            session: None,
            asked: None,
            server_expiry: None,
            send_base: 0,
            poll_base: 0,
            next_bases: VecDeque::new(),
        }
    }

    /// The session in force, once the server named one.
    pub fn session_id(&self) -> Option<SessionId> {
        self.session.map(|(id, _)| id)
    }

    /// How long the server keeps this session after a disconnect, as it said.
    pub fn server_expiry(&self) -> Option<Duration> {
        self.server_expiry
    }

    /// Queues a message for the server. Returns its number, or `Full` when the flow
    /// window is full (backpressure: retry after an `Acked` or `DeadLetter`). Keeps
    /// `payload` as is until acknowledged; each transmission copies it once into an
    /// envelope. Call [`poll_outgoing`](Self::poll_outgoing) afterwards.
    ///
    /// The number names this message in its `Acked` or `DeadLetter` event and is unique
    /// for the client's life: each session numbers its messages from 1 on the wire
    /// (`docs/PROTOCOL.md` §4), and a session that replaces a lost one continues the
    /// count here (the first session's numbers are the wire's).
    pub fn send(
        &mut self,
        now: Instant,
        payload: Bytes,
        is_text: bool,
    ) -> Result<Seq, SessionSendError> {
        let seq = self.ep.send(now, payload, is_text)?;
        Ok(Seq(self.send_base + seq.0))
    }

    /// The runtime's [`Reconnect`] policy scheduled connection attempt `attempt` in
    /// `delay`: reported to the application as [`SessionEvent::Reconnecting`].
    pub fn report_reconnect(&mut self, attempt: u32, delay: Duration) {
        self.ep
            .events
            .push_back(SessionEvent::Reconnecting { attempt, delay });
    }

    /// Takes the payload of one binary WebSocket message from the server. Call
    /// [`poll_event`](Self::poll_event) and [`poll_outgoing`](Self::poll_outgoing) after.
    /// Ignored while disconnected or after a violation on this connection.
    pub fn handle_message(&mut self, now: Instant, message: Bytes) {
        self.ep.observe(now);
        if matches!(self.ep.link, Link::Down | Link::Failed) {
            return;
        }
        let envelope = match envelope::decode_message(&message) {
            Ok(e) => e,
            Err(e) => return self.ep.fail(e.into()),
        };
        match (self.ep.link, envelope) {
            (Link::AwaitingWelcome, Envelope::Welcome(w)) => self.on_welcome(w),
            (Link::AwaitingWelcome, Envelope::Error { .. }) | (Link::Up, _) => {
                self.ep.on_envelope(&message, envelope)
            }
            (_, other) => self
                .ep
                .fail(SessionProtocolError::UnexpectedEnvelope(kind_of(&other))),
        }
    }

    /// Acts on passed deadlines (delayed ack, retransmission, message age). Early or
    /// repeated calls are harmless. Drain events and outgoing envelopes after.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
    }

    /// Feeds a round-trip time the connection's keepalive measured at `now`.
    pub fn handle_rtt_sample(&mut self, now: Instant, rtt: Duration) {
        self.ep.observe(now);
        self.ep.sender.handle_rtt_sample(rtt);
    }

    /// The connection went away (EOF, error, close). Nothing is lost: unacknowledged
    /// messages wait for the next connection. Call before reconnecting.
    pub fn handle_disconnected(&mut self, now: Instant) {
        if self.ep.link != Link::Down {
            self.ep.events.push_back(SessionEvent::Disconnected);
        }
        self.ep.handle_disconnected(now);
        self.asked = None;
    }

    /// The next envelope to send as a binary WebSocket message on the current
    /// connection. Call after every input until it returns `None`.
    #[must_use]
    pub fn poll_outgoing(&mut self) -> Option<Bytes> {
        self.ep.poll_outgoing().map(OutgoingEnvelope::into_bytes)
    }

    /// [`poll_outgoing`](Self::poll_outgoing) in two parts, the envelope's head and the
    /// message it carries, for [`Connection::send_parts`](crate::Connection::send_parts):
    /// the message is then copied once, into the frame, instead of into the envelope
    /// first.
    #[must_use]
    pub fn poll_outgoing_parts(&mut self) -> Option<OutgoingEnvelope> {
        self.ep.poll_outgoing()
    }

    /// The next event for the application. Call after every input until `None`.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        let mut event = self.ep.events.pop_front()?;
        match &mut event {
            SessionEvent::Acked { seq } | SessionEvent::DeadLetter { seq, .. } => {
                seq.0 += self.poll_base;
            }
            SessionEvent::SessionLost { .. } => {
                // What follows belongs to the session that replaced the lost one.
                self.poll_base = self.next_bases.pop_front().unwrap_or(self.send_base);
            }
            _ => {}
        }
        Some(event)
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ep.poll_timeout()
    }

    /// `Some(code)`: close the current WebSocket with `code` once
    /// [`poll_outgoing`](Self::poll_outgoing) is drained, then call
    /// [`handle_disconnected`](Self::handle_disconnected) and reconnect.
    pub fn wants_disconnect(&self) -> Option<CloseCode> {
        self.ep.disconnect
    }

    /// Connected and past the WELCOME.
    pub fn is_established(&self) -> bool {
        self.ep.link == Link::Up
    }

    /// Messages held until acknowledged (the flow window's use in messages).
    pub fn unacked_messages(&self) -> usize {
        self.ep.sender.len()
    }

    /// [`send`](Self::send) of a `len`-byte payload would answer `Full` now. Lets a
    /// caller that is about to read the clock for `send` skip that while the window is
    /// full; `send` itself checks the same rule.
    pub fn is_full_for(&self, len: usize) -> bool {
        self.ep.sender.is_full_for(len)
    }

    /// Payload bytes held until acknowledged.
    pub fn unacked_bytes(&self) -> usize {
        self.ep.sender.bytes()
    }
}

/// The server's side of one session, kept in a [`SessionStore`] across reconnects.
///
/// [`SessionStore::accept`] creates it or attaches it to a new connection (the server's
/// `handle_connected`); the connection's driver feeds it and calls
/// [`SessionStore::detach`] (or [`handle_disconnected`](Self::handle_disconnected)) when the
/// connection ends. See the [module docs](self) for the drive loop.
#[derive(Debug)]
pub struct ServerSession {
    ep: Endpoint,
    id: SessionId,
    token: SessionToken,
    /// Since when no connection is attached (expiry counts from here).
    disconnected_at: Option<Instant>,
    /// Counts attached connections; see [`ServerSession::epoch`].
    epoch: u64,
    /// A resume's WELCOME waits for the application's confirmations
    /// ([`Link::Confirming`]): what the client said it has.
    held_welcome: Option<Seq>,
}

impl ServerSession {
    /// This session's id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Which connection the session is attached to: it grows by one at every
    /// [`SessionStore::accept`] that attaches it. A resume can arrive before the server
    /// noticed that the old connection died, so a connection's driver remembers the epoch
    /// it was given and stops driving the session once the epoch moved on (or detaches
    /// through [`SessionStore::detach`], which checks it).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Queues a message for the client, connected or not. Returns its sequence number,
    /// or `Full` (backpressure). Call [`poll_outgoing`](Self::poll_outgoing) afterwards.
    pub fn send(
        &mut self,
        now: Instant,
        payload: Bytes,
        is_text: bool,
    ) -> Result<Seq, SessionSendError> {
        self.ep.send(now, payload, is_text)
    }

    /// Takes back message `seq` if it was never transmitted: the client gets a void
    /// sequence number in its place and the application no dead letter (it asked). For
    /// a server that learns the message should not exist after all (a message whose
    /// cause another node acts on again). Returns its payload, or `None` if it may have
    /// reached the client, was settled or is void already.
    pub fn void_untransmitted(&mut self, seq: Seq) -> Option<Bytes> {
        self.ep.sender.void_untransmitted(seq)
    }

    /// Takes the payload of one binary WebSocket message from the client. Drain events
    /// and outgoing envelopes after.
    pub fn handle_message(&mut self, now: Instant, message: Bytes) {
        self.ep.observe(now);
        if self.ep.link != Link::Up {
            return;
        }
        match envelope::decode_message(&message) {
            Ok(e) => self.ep.on_envelope(&message, e),
            Err(e) => self.ep.fail(e.into()),
        }
    }

    /// Acts on passed deadlines. Early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
    }

    /// Feeds a round-trip time the connection's keepalive measured at `now`.
    pub fn handle_rtt_sample(&mut self, now: Instant, rtt: Duration) {
        self.ep.observe(now);
        self.ep.sender.handle_rtt_sample(rtt);
    }

    /// The connection went away; the session waits `session_expiry` for a resume.
    pub fn handle_disconnected(&mut self, now: Instant) {
        self.ep.handle_disconnected(now);
        self.held_welcome = None;
        self.disconnected_at = Some(self.ep.now);
    }

    /// The next envelope to send (the WELCOME first on each connection). Call after
    /// every input until `None`.
    #[must_use]
    pub fn poll_outgoing(&mut self) -> Option<Bytes> {
        self.ep.poll_outgoing().map(OutgoingEnvelope::into_bytes)
    }

    /// [`poll_outgoing`](Self::poll_outgoing) in two parts, the envelope's head and the
    /// message it carries, for [`Connection::send_parts`](crate::Connection::send_parts):
    /// the message is then copied once, into the frame, instead of into the envelope
    /// first.
    #[must_use]
    pub fn poll_outgoing_parts(&mut self) -> Option<OutgoingEnvelope> {
        self.ep.poll_outgoing()
    }

    /// The next event for the application. Call after every input until `None`.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.ep.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ep.poll_timeout()
    }

    /// `Some(code)`: close the WebSocket with `code` once `poll_outgoing` is drained,
    /// then call [`handle_disconnected`](Self::handle_disconnected).
    pub fn wants_disconnect(&self) -> Option<CloseCode> {
        self.ep.disconnect
    }

    /// A connection is attached.
    pub fn is_connected(&self) -> bool {
        self.ep.link != Link::Down
    }

    /// Messages resent so far (retransmissions and resends after a resume), for metrics
    /// ([`SendWindow::resent`](send_window::SendWindow::resent)).
    pub fn resent_messages(&self) -> u64 {
        self.ep.sender.resent()
    }

    /// Messages held until acknowledged.
    pub fn unacked_messages(&self) -> usize {
        self.ep.sender.len()
    }

    /// Payload bytes held until acknowledged.
    pub fn unacked_bytes(&self) -> usize {
        self.ep.sender.bytes()
    }
}

fn kind_of(envelope: &Envelope<'_>) -> u8 {
    match envelope {
        Envelope::Data(_) => envelope::KIND_DATA,
        Envelope::Ack { .. } => envelope::KIND_ACK,
        Envelope::Welcome(_) => envelope::KIND_WELCOME,
        Envelope::Resume(_) => envelope::KIND_RESUME,
        Envelope::Error { .. } => envelope::KIND_ERROR,
    }
}

#[cfg(test)]
mod tests;
