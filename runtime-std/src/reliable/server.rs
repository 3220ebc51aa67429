//! The reliable server side: a [`SessionRegistry`] shared by every connection thread,
//! the upgrade that attaches a session ([`SessionRegistry::upgrade`]), and the
//! per-connection driver ([`ReliableConnection::run`]).
//!
//! Each reliable connection has two threads that share its state behind a mutex: a
//! reader that blocks on the socket and handles each read at once (feeding the session,
//! writing acks and replies), and a timer thread ([`ReliableConnection::run`]'s caller)
//! that sleeps until the next deadline or until woken. The application wakes it when it
//! queues a message for the session from another thread ([`SessionRegistry::send`]), so
//! a push goes out at once without polling. Sessions live in one [`SessionStore`]
//! behind the registry's mutex; a connection holds that only to feed and drain its
//! session, never while it writes.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use sockeye_core::handshake::Request;
use sockeye_core::session::{OutgoingEnvelope, SUBPROTOCOL};
use sockeye_core::time::earliest;
use sockeye_core::{
    CloseCode, Config, Connection, Event, Instant, MessageKind, Seq, SessionConfig, SessionEvent,
    SessionId, SessionStore,
};

use super::ReliableError;
use crate::connections::{Closer, ConnectionId, Connections, Slot};
use crate::entropy::OsEntropy;
use crate::error::{Error, Result};
use crate::incoming::{admit, read_request, refuse, Policy};
use crate::time::Clock;
use crate::transport::{wait_readable, Transport, READ_BUF_BYTES};
use crate::websocket::WebSocket;

/// Wake-ups that may wait for a connection's timer thread (one is enough).
const CHANNEL_DEPTH: usize = 1;

/// Events waiting for the application before connection drivers stop reading (their
/// peers then feel TCP backpressure) until [`SessionRegistry::next_event`] takes some.
pub const DEFAULT_MAX_PENDING_EVENTS: usize = 64 * 1024;

/// A connection driver that owns a session now.
struct Driver {
    epoch: u64,
    /// The connection's id among the registry's connections.
    conn_id: ConnectionId,
    /// Wakes the connection's timer thread to carry what the application queued.
    wake: SyncSender<()>,
    /// The application (or a shutdown) asked to close this connection with this code
    /// and reason.
    kick: Option<(CloseCode, &'static str)>,
}

struct State {
    store: SessionStore,
    entropy: OsEntropy,
    events: VecDeque<(SessionId, SessionEvent)>,
    drivers: HashMap<SessionId, Driver>,
    /// Application threads asleep in `next_events`. A connection signals `event_ready`
    /// only when this is non-zero: a signal is a system call even with nobody waiting,
    /// and a busy application finds the new events on its next call anyway.
    app_waiting: usize,
    /// Messages resent by every session so far (retransmissions, resends after resume).
    resent: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when events are queued for the application.
    event_ready: Condvar,
    /// Signalled when the application took events.
    room: Condvar,
    max_pending_events: usize,
    /// The clock of every session and connection of this registry.
    clock: Clock,
}

/// The server's reliable sessions, shared by every connection thread and the
/// application (clone it freely: clones share one store).
///
/// - Connection threads call [`upgrade`](Self::upgrade) with each accepted stream, then
///   [`ReliableConnection::run`] on the result. Each connection gets a
///   [`ConnectionId`] from the registry's one counter
///   ([`ReliableConnection::connection_id`], [`connection_id`](Self::connection_id)),
///   so ids stay unique whether a [`ReliableServer`](crate::ReliableServer) or your own
///   threads upgraded it.
/// - The application takes [`SessionEvent`]s (deliveries, acks, dead letters, sessions
///   established, resumed and lost) from [`next_event`](Self::next_event), tagged with
///   their session, and queues messages with [`send`](Self::send), connected or not.
///
/// Sessions are kept in memory for `SessionConfig::session_expiry` after their
/// connection drops. `next_event` also drives that expiry: an expired session's
/// unacknowledged messages come out of it as dead letters, so keep calling it (or call
/// [`handle_timeouts`](Self::handle_timeouts) from a thread of your own).
#[derive(Clone)]
pub struct SessionRegistry {
    shared: Arc<Shared>,
    /// The registry's connections: every upgrade's id; for a
    /// [`ReliableServer`](crate::ReliableServer), also its limit and its shutdown's
    /// closers. Kept out of [`Shared`], which a closer points to.
    connections: Arc<Connections>,
}

impl std::fmt::Debug for SessionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRegistry").finish_non_exhaustive()
    }
}

/// What an upgrade produced: a reliable connection, or a plain WebSocket for a client
/// that did not offer `sockeye.v1` (the plain JSON mode of `docs/PROTOCOL.md` §10 is
/// the application's business).
#[derive(Debug)]
pub enum Upgrade {
    /// `sockeye.v1` was selected and a session attached; drive it with
    /// [`ReliableConnection::run`].
    Reliable(ReliableConnection),
    /// The client did not offer `sockeye.v1`.
    Plain(WebSocket),
}

/// One `sockeye.v1` connection with its session attached, ready to be driven.
pub struct ReliableConnection {
    registry: SessionRegistry,
    id: SessionId,
    epoch: u64,
    conn_id: ConnectionId,
    /// A server's connection: its place among the registry's connections, held until
    /// [`run`](Self::run) ends.
    slot: Option<Slot>,
    conn: Connection,
    transport: Transport,
    rx: Receiver<()>,
    wake: SyncSender<()>,
    close_timeout: Duration,
    path: String,
}

impl std::fmt::Debug for ReliableConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReliableConnection")
            .field("id", &self.conn_id)
            .field("session", &self.id)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl SessionRegistry {
    /// An empty registry whose sessions follow `config`.
    pub fn new(config: SessionConfig) -> Result<Self> {
        SessionRegistry::with_event_limit(config, DEFAULT_MAX_PENDING_EVENTS)
    }

    /// Like [`new`](Self::new), with at most `max_pending_events` events waiting for
    /// the application before connections stop reading.
    pub fn with_event_limit(config: SessionConfig, max_pending_events: usize) -> Result<Self> {
        let clock = Clock::new();
        Ok(SessionRegistry {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    store: SessionStore::new(config, clock.now()),
                    entropy: OsEntropy::new()?,
                    events: VecDeque::new(),
                    drivers: HashMap::new(),
                    app_waiting: 0,
                    resent: 0,
                }),
                event_ready: Condvar::new(),
                room: Condvar::new(),
                max_pending_events: max_pending_events.max(1),
                clock,
            }),
            connections: Connections::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// The registry's connections, for a [`ReliableServer`](crate::ReliableServer)'s
    /// limit and shutdown.
    pub(crate) fn connections(&self) -> &Arc<Connections> {
        &self.connections
    }

    /// Performs the server handshake on `stream`. If the client offers `sockeye.v1`,
    /// selects it and attaches a session ([`SessionStore::accept`] with the
    /// `Sockeye-Resume` header or `sockeye_resume` query value): a malformed value is
    /// answered 400 and a full store 503 ([`ReliableError::Store`]). The 101 and then the
    /// session's WELCOME are the first things [`ReliableConnection::run`] writes.
    ///
    /// Every origin and request is allowed, and the connection is not counted towards a
    /// [`ReliableServer`](crate::ReliableServer)'s `max_connections` nor closed by its
    /// shutdown (those are the server's, for the connections it accepted); it still
    /// gets an id from this registry's counter ([`ReliableConnection::connection_id`]).
    /// A [`Upgrade::Plain`] WebSocket of this call has no id ([`WebSocket::id`]).
    pub fn upgrade(&self, stream: TcpStream, config: &Config) -> Result<Upgrade> {
        self.upgrade_as(stream, config, None)
    }

    /// [`upgrade`](Self::upgrade), as a [`ReliableServer`](crate::ReliableServer)'s
    /// connection when `server` gives its policy: before anything else the connection
    /// takes a place among the registry's connections (503 over the limit or once a
    /// shutdown began), then the origin policy (403) and the accept hook may refuse it.
    /// The place, and the connection's id, go with the [`ReliableConnection`] (until its
    /// `run` ends) or the plain [`WebSocket`] (until it is dropped); a reliable
    /// connection's closer is registered for the shutdown.
    pub(crate) fn upgrade_as(
        &self,
        stream: TcpStream,
        config: &Config,
        server: Option<&Policy>,
    ) -> Result<Upgrade> {
        let (transport, request) = read_request(stream, config, self.shared.clock)?;
        let (transport, slot) = match server {
            Some(policy) => {
                let id = self.connections.next_id();
                let place = Some((&self.connections, id));
                admit(transport, &request, config, policy, place)?
            }
            None => (transport, None),
        };
        if !request.protocols().any(|p| p == SUBPROTOCOL) {
            let path = request.path().to_string();
            let conn = request.accept(self.shared.clock.now(), None, config.clone());
            let mut ws = WebSocket::new(conn, transport, config.close_timeout, Some(path), None)?;
            if let Some(slot) = slot {
                ws.set_slot(slot);
            }
            return Ok(Upgrade::Plain(ws));
        }
        let conn = self.attach(transport, request, config, slot)?;
        if let Some(slot) = &conn.slot {
            let kick = SessionKick {
                shared: Arc::clone(&self.shared),
                id: conn.id,
                epoch: conn.epoch,
            };
            slot.connections()
                .register(slot.id(), Closer::Session(kick));
        }
        Ok(Upgrade::Reliable(conn))
    }

    /// The second half of [`upgrade`](Self::upgrade): attaches a session and selects
    /// `sockeye.v1`, as connection `slot`'s id (or a fresh one of the registry's). A
    /// malformed resume value is answered 400, a full store 503.
    fn attach(
        &self,
        mut transport: Transport,
        request: Request,
        config: &Config,
        slot: Option<Slot>,
    ) -> Result<ReliableConnection> {
        let conn_id = slot
            .as_ref()
            .map_or_else(|| self.connections.next_id(), Slot::id);
        let path = request.path().to_string();
        let resume = request.resume_value().map(<[u8]>::to_vec);
        let (tx, rx) = mpsc::sync_channel(CHANNEL_DEPTH);
        let attached = {
            let mut guard = self.lock();
            let state = &mut *guard;
            let now = self.shared.clock.now();
            let accepted = state
                .store
                .accept(now, resume.as_deref(), &mut state.entropy);
            let drained = self.drain_store(state);
            accepted.map(|id| {
                let epoch = state.store.get(id).map_or(0, |s| s.epoch());
                state.drivers.insert(
                    id,
                    Driver {
                        epoch,
                        conn_id,
                        wake: tx.clone(),
                        kick: None,
                    },
                );
                (id, epoch, drained)
            })
        };
        let (id, epoch) = match attached {
            Ok((id, epoch, drained)) => {
                if drained {
                    self.shared.event_ready.notify_all();
                }
                (id, epoch)
            }
            Err(e) => {
                transport.queue(e.response());
                return Err(refuse(transport, e, config));
            }
        };
        let conn = request.accept(self.shared.clock.now(), Some(SUBPROTOCOL), config.clone());
        Ok(ReliableConnection {
            registry: self.clone(),
            id,
            epoch,
            conn_id,
            slot,
            conn,
            transport,
            rx,
            wake: tx,
            close_timeout: config.close_timeout,
            path,
        })
    }

    /// Moves the store's own events (expiry, dead letters of detached sessions) to the
    /// application's queue. Returns whether any moved.
    fn drain_store(&self, state: &mut State) -> bool {
        let mut any = false;
        while let Some((id, event)) = state.store.poll_event() {
            state.events.push_back((id, event));
            any = true;
        }
        any
    }

    /// Queues a message for session `id`, connected or not, and wakes its connection.
    /// Returns its sequence number; [`ReliableError::Send`] with `Full` is backpressure, and
    /// [`ReliableError::UnknownSession`] means the session is gone (its messages came back as
    /// dead letters when it expired).
    /// The payload is not handed back; [`try_send`](Self::try_send) hands it back.
    pub fn send(&self, id: SessionId, payload: Bytes, is_text: bool) -> Result<Seq> {
        let state = &mut *self.lock();
        let session = state
            .store
            .get_mut(id)
            .ok_or(ReliableError::UnknownSession)?;
        let seq = session.send(self.shared.clock.now(), payload, is_text)?;
        if let Some(driver) = state.drivers.get(&id) {
            // A full channel means the driver has input to wake it anyway.
            let _ = driver.wake.try_send(());
        }
        Ok(seq)
    }

    /// [`send`](Self::send) for a [`Message`](sockeye_core::Message) that comes back
    /// on backpressure: a full window answers [`Error::Full`] with the message, to
    /// retry after acks arrive, where `send` answers `ReliableError::Send(Full)` and the
    /// payload is gone. Other refusals are `send`'s. (The payload is shared with the
    /// session, not copied.)
    pub fn try_send(&self, id: SessionId, message: sockeye_core::Message) -> Result<Seq> {
        let is_text = message.kind() == sockeye_core::MessageKind::Text;
        match self.send(id, message.payload().clone(), is_text) {
            Err(Error::Reliable(e)) if e.is_full() => Err(Error::Full(message)),
            other => other,
        }
    }

    /// With `SessionConfig::confirm_deliveries`: the application has acted on the
    /// client messages it was given (`Delivered`), up to each pair's sequence number.
    /// They are journaled as delivered (durably, before anything else), then
    /// acknowledged; a resume that waited for them gets its WELCOME. Unknown sessions
    /// are skipped. Without `confirm_deliveries` this does nothing.
    pub fn confirm(&self, confirmed: &[(SessionId, Seq)]) {
        let mut wake = Vec::new();
        {
            let state = &mut *self.lock();
            let now = self.shared.clock.now();
            // Each session whose count moved is journaled once, with its final count:
            // a pair at a time could go back behind what `journal_delivered` recorded.
            let mut moved: Vec<SessionId> = Vec::new();
            for &(id, seq) in confirmed {
                let Some(session) = state.store.get_mut(id) else {
                    continue;
                };
                let before = session.client_delivered();
                session.confirm(now, seq);
                if session.client_delivered() != before && !moved.contains(&id) {
                    moved.push(id);
                }
            }
            for id in moved {
                if let Some(driver) = state.drivers.get(&id) {
                    wake.push(driver.wake.clone());
                }
            }
        };
        for driver in wake {
            let _ = driver.try_send(());
        }
    }

    /// Closes the connection that carries session `id` now, if any, with `code` (a slow
    /// consumer, a shutdown); the session stays for a resume. Returns whether a
    /// connection was carrying it.
    pub fn disconnect(&self, id: SessionId, code: CloseCode) -> bool {
        let state = &mut *self.lock();
        let Some(driver) = state.drivers.get_mut(&id) else {
            return false;
        };
        driver.kick = Some((code, ""));
        let _ = driver.wake.try_send(());
        true
    }

    /// The id of the connection that carries session `id` now, if any (the one its
    /// [`ReliableConnection::connection_id`] gives).
    pub fn connection_id(&self, id: SessionId) -> Option<ConnectionId> {
        self.lock().drivers.get(&id).map(|d| d.conn_id)
    }

    /// The next event of any session, with the session's id, waiting at most `timeout`
    /// (`None`: until one comes). Also drives the expiry of disconnected sessions.
    pub fn next_event(&self, timeout: Option<Duration>) -> Option<(SessionId, SessionEvent)> {
        let mut one = Vec::with_capacity(1);
        self.next_events(timeout, 1, &mut one);
        one.pop()
    }

    /// Like [`next_event`](Self::next_event), but appends up to `max` events that are
    /// ready to `out` at once (one lock, one wake-up), waiting at most `timeout` for the
    /// first. Returns how many it appended.
    pub fn next_events(
        &self,
        timeout: Option<Duration>,
        max: usize,
        out: &mut Vec<(SessionId, SessionEvent)>,
    ) -> usize {
        let deadline = timeout.map(|t| self.shared.clock.now() + t);
        let mut guard = self.lock();
        loop {
            let now = self.shared.clock.now();
            if guard.store.poll_timeout().is_some_and(|at| at <= now) {
                guard.store.handle_timeout(now);
                self.drain_store(&mut guard);
            }
            if !guard.events.is_empty() && max > 0 {
                let was_full = guard.events.len() >= self.shared.max_pending_events;
                let n = max.min(guard.events.len());
                out.extend(guard.events.drain(..n));
                if was_full {
                    self.shared.room.notify_all();
                }
                return n;
            }
            if deadline.is_some_and(|d| now >= d) {
                return 0;
            }
            // A session that loses its connection meanwhile wakes this wait (its deadline
            // may come first).
            guard.app_waiting += 1;
            guard = match earliest(guard.store.poll_timeout(), deadline) {
                Some(wake) => {
                    self.shared
                        .event_ready
                        .wait_timeout(guard, self.shared.clock.until(wake))
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => self
                    .shared
                    .event_ready
                    .wait(guard)
                    .unwrap_or_else(|p| p.into_inner()),
            };
            guard.app_waiting -= 1;
        }
    }

    /// Drives the expiry and timers of disconnected sessions now; their events go to
    /// [`next_event`](Self::next_event). For applications that do not call `next_event`
    /// regularly. Returns when it should next be called, if ever.
    pub fn handle_timeouts(&self) -> Option<Instant> {
        let state = &mut *self.lock();
        state.store.handle_timeout(self.shared.clock.now());
        if self.drain_store(state) {
            self.shared.event_ready.notify_all();
        }
        state.store.poll_timeout()
    }

    /// Live sessions (connected or waiting for a resume).
    pub fn len(&self) -> usize {
        self.lock().store.len()
    }

    /// No live session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether session `id` is live and has a connection attached.
    pub fn is_connected(&self, id: SessionId) -> bool {
        self.lock().store.get(id).is_some_and(|s| s.is_connected())
    }

    /// Messages queued for session `id` and not yet acknowledged, if it is live.
    pub fn unacked_messages(&self, id: SessionId) -> Option<usize> {
        self.lock().store.get(id).map(|s| s.unacked_messages())
    }

    /// Messages resent so far by every session (retransmissions after a timeout, and
    /// resends after a resume), for metrics.
    pub fn resent_messages(&self) -> u64 {
        self.lock().resent
    }

    /// Events waiting for [`next_event`](Self::next_event).
    pub fn pending_events(&self) -> usize {
        self.lock().events.len()
    }
}

/// What a connection learned from its session while holding the registry's lock.
struct SessionTurn {
    outgoing: Vec<OutgoingEnvelope>,
    /// Close the connection with this code and reason.
    disconnect: Option<(CloseCode, &'static str)>,
    deadline: Option<Instant>,
    /// A newer connection took the session over (or it is gone).
    superseded: bool,
    /// The application's event queue is full: stop reading for a while.
    events_full: bool,
    /// Events were queued while an application thread sleeps in `next_events`: signal
    /// it once the registry's lock is released.
    wake_app: bool,
}

/// Which session a connection carries, and how to wake its timer thread.
struct Link {
    registry: SessionRegistry,
    id: SessionId,
    epoch: u64,
    wake: SyncSender<()>,
}

impl Link {
    /// Feeds the session what the connection received, fires its timers, and takes its
    /// outgoing envelopes and events, under the registry's lock.
    fn session_turn(&self, messages: &mut Vec<Bytes>, rtt: &mut Option<Duration>) -> SessionTurn {
        let shared = &self.registry.shared;
        let mut guard = self.registry.lock();
        let state = &mut *guard;
        let mut turn = SessionTurn {
            outgoing: Vec::new(),
            disconnect: None,
            deadline: None,
            superseded: false,
            events_full: false,
            wake_app: false,
        };
        let Some(session) = state
            .store
            .get_mut(self.id)
            .filter(|s| s.epoch() == self.epoch && s.is_connected())
        else {
            messages.clear();
            turn.superseded = true;
            return turn;
        };
        let now = shared.clock.now();
        let resent_before = session.resent_messages();
        for message in messages.drain(..) {
            session.handle_message(now, message);
        }
        if let Some(rtt) = rtt.take() {
            session.handle_rtt_sample(now, rtt);
        }
        if session.poll_timeout().is_some_and(|t| t <= now) {
            session.handle_timeout(now);
        }
        while let Some(event) = session.poll_event() {
            state.events.push_back((self.id, event));
        }
        while let Some(envelope) = session.poll_outgoing_parts() {
            turn.outgoing.push(envelope);
        }
        state.resent += session.resent_messages().saturating_sub(resent_before);
        turn.disconnect = session.wants_disconnect().map(|c| (c, "")).or_else(|| {
            state
                .drivers
                .get(&self.id)
                .filter(|d| d.epoch == self.epoch)
                .and_then(|d| d.kick)
        });
        turn.deadline = session.poll_timeout();
        turn.events_full = state.events.len() >= shared.max_pending_events;
        turn.wake_app = state.app_waiting > 0 && !state.events.is_empty();
        drop(guard);
        // Signalled after unlocking, so the woken thread does not at once block on the
        // lock we still held. No wake-up is lost: a waiter counted in `app_waiting` was
        // already inside `wait_timeout` when we took the lock.
        if turn.wake_app {
            shared.event_ready.notify_all();
        }
        turn
    }

    /// Blocks while the application's event queue is full (at most `limit`).
    fn wait_for_room(&self, limit: Duration) {
        let shared = &self.registry.shared;
        let guard = self.registry.lock();
        if guard.events.len() >= shared.max_pending_events {
            let _ = shared.room.wait_timeout(guard, limit);
        }
    }
}

/// The connection's state, shared by its reader thread and its timer thread.
struct ConnCore {
    conn: Connection,
    transport: Transport,
    messages: Vec<Bytes>,
    rtt: Option<Duration>,
    /// We started the closing handshake.
    closing: bool,
    /// The connection is over: the timer thread winds it down.
    over: bool,
    /// Why the transport failed, if it did.
    error: Option<io::Error>,
    /// The session's next deadline, from the last turn.
    session_deadline: Option<Instant>,
    /// The deadline the timer thread sleeps until.
    armed: Option<Instant>,
}

impl ConnCore {
    /// One turn after any input: the connection's events to the session, the session's
    /// envelopes to the connection, chunks to the socket. Wakes the timer thread if the
    /// next deadline moved earlier. Returns whether the application's queue is full.
    fn turn(&mut self, link: &Link) -> bool {
        let now = link.registry.shared.clock.now();
        if self.conn.poll_timeout().is_some_and(|t| t <= now) {
            self.conn.handle_timeout(now);
        }
        self.drain_conn();
        let turn = link.session_turn(&mut self.messages, &mut self.rtt);
        if turn.superseded && !self.closing {
            let _ = self
                .conn
                .close(now, CloseCode::GOING_AWAY, "session resumed elsewhere");
            self.closing = true;
        }
        for envelope in turn.outgoing {
            // The core's queue is full only while chunks wait, and `drain_conn` moves
            // them all on, so this send cannot answer `Full`.
            self.drain_conn();
            let _ = self.conn.send_parts(
                now,
                MessageKind::Binary,
                envelope.head(),
                envelope.payload(),
            );
        }
        if let Some((code, reason)) = turn.disconnect.filter(|_| !self.closing) {
            let _ = self.conn.close(now, code, reason);
            self.closing = true;
        }
        self.drain_conn();
        if let Err(e) = self.transport.flush() {
            self.error = Some(e);
            self.over = true;
        }
        // Messages that came with a close still reach the session: on the next turn.
        if self.conn.is_closed() || self.conn.wants_disconnect() {
            self.over = self.over || self.messages.is_empty();
        }
        self.session_deadline = turn.deadline;
        let next = earliest(self.conn.poll_timeout(), self.session_deadline);
        let sooner = match (next, self.armed) {
            (Some(n), Some(a)) => n < a,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if sooner || self.over {
            let _ = link.wake.try_send(());
        }
        turn.events_full
    }

    /// Takes the core's events (messages for the session, RTT samples) and chunks (into
    /// the write queue).
    fn drain_conn(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::Message(m) => self.messages.push(m.into_payload()),
                Event::Pong { rtt: Some(r), .. } => self.rtt = Some(r),
                _ => {}
            }
        }
        while let Some(chunk) = self.conn.poll_transmit() {
            self.transport.queue(chunk);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the store as consistent as the core
        // left it; keep serving rather than poisoning every connection.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How a [`ReliableServer`](crate::ReliableServer)'s shutdown closes one of its
/// connections: it asks the driver of that connection (session `id` at `epoch`, so not
/// a newer connection that resumed the session) to close, as
/// [`SessionRegistry::disconnect`] does; the session stays for a resume.
#[derive(Clone)]
pub(crate) struct SessionKick {
    shared: Arc<Shared>,
    id: SessionId,
    epoch: u64,
}

impl std::fmt::Debug for SessionKick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKick")
            .field("session", &self.id)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl SessionKick {
    /// Asks the connection to close with `code` and `reason`; nothing if it is gone.
    pub(crate) fn close(&self, code: CloseCode, reason: &'static str) {
        let state = &mut *self.shared.lock();
        if let Some(driver) = state
            .drivers
            .get_mut(&self.id)
            .filter(|d| d.epoch == self.epoch)
        {
            driver.kick = Some((code, reason));
            let _ = driver.wake.try_send(());
        }
    }
}

fn lock_core(core: &Mutex<ConnCore>) -> MutexGuard<'_, ConnCore> {
    core.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReliableConnection {
    /// The session attached to this connection.
    pub fn session_id(&self) -> SessionId {
        self.id
    }

    /// The connection's id: unique among its registry's connections (numbered from 1 as
    /// their requests arrive), whether a [`ReliableServer`](crate::ReliableServer) or
    /// [`SessionRegistry::upgrade`] alone upgraded it. The registry tells it by session
    /// too ([`SessionRegistry::connection_id`]).
    pub fn connection_id(&self) -> ConnectionId {
        self.conn_id
    }

    /// The path and query the client requested.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.transport.stream().peer_addr()
    }

    /// Drives the connection until it ends (the peer left, the transport failed, the
    /// session asked to disconnect, or a resume on another connection took the session
    /// over), then detaches the session, which waits `session_expiry` for a resume.
    ///
    /// Blocks the calling thread, which fires timers and carries messages the
    /// application queued with [`SessionRegistry::send`]; a reader thread it spawns
    /// reads the socket and handles what arrives at once.
    pub fn run(self) -> Result<()> {
        let ReliableConnection {
            registry,
            id,
            epoch,
            conn_id: _,
            slot,
            conn,
            transport,
            rx,
            wake,
            close_timeout,
            path: _,
        } = self;
        let clock = registry.shared.clock;
        let stream = transport.stream().try_clone()?;
        let reader_stream = stream.try_clone()?;
        let link = Arc::new(Link {
            registry,
            id,
            epoch,
            wake,
        });
        let core = Arc::new(Mutex::new(ConnCore {
            conn,
            transport,
            messages: Vec::new(),
            rtt: None,
            closing: false,
            over: false,
            error: None,
            session_deadline: None,
            armed: None,
        }));
        // The 101 and the WELCOME.
        lock_core(&core).turn(&link);
        let reader_done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (core, link, done) = (
                Arc::clone(&core),
                Arc::clone(&link),
                Arc::clone(&reader_done),
            );
            thread::Builder::new()
                .name("sockeye-reader".into())
                .spawn(move || {
                    read_loop(reader_stream, &core, &link);
                    done.store(true, Ordering::Release);
                    let _ = link.wake.try_send(());
                })?
        };
        loop {
            let deadline = {
                let mut c = lock_core(&core);
                if c.over {
                    break;
                }
                let d = earliest(c.conn.poll_timeout(), c.session_deadline);
                c.armed = d;
                d
            };
            let _ = match deadline {
                Some(d) => rx.recv_timeout(clock.until(d)).map_err(|_| ()),
                None => rx.recv().map_err(|_| ()),
            };
            lock_core(&core).turn(&link);
        }
        // Wind down: our FIN, then give the peer `close_timeout` to finish.
        let error = {
            let mut c = lock_core(&core);
            let _ = c.transport.flush();
            c.error.take()
        };
        let _ = stream.shutdown(Shutdown::Write);
        let until = clock.now() + close_timeout;
        while !reader_done.load(Ordering::Acquire) && clock.now() < until {
            let _ = rx.recv_timeout(clock.until(until));
        }
        {
            let state = &mut *link.registry.lock();
            if state.store.detach(clock.now(), link.id, link.epoch) && state.app_waiting > 0 {
                // The session's expiry is a new deadline for a waiting `next_events`.
                link.registry.shared.event_ready.notify_all();
            }
            if state
                .drivers
                .get(&link.id)
                .is_some_and(|d| d.epoch == link.epoch)
            {
                state.drivers.remove(&link.id);
            }
        }
        let _ = stream.shutdown(Shutdown::Both);
        let _ = reader.join();
        // Counted among the server's connections until here.
        drop(slot);
        error.map_or(Ok(()), |e| Err(Error::Io(e)))
    }
}

/// The reader thread: each read is handed to the connection core at once, with a turn,
/// until EOF or an error.
fn read_loop(mut stream: TcpStream, core: &Mutex<ConnCore>, link: &Link) {
    let mut buf = vec![0u8; READ_BUF_BYTES];
    loop {
        let read = stream.read(&mut buf);
        let mut c = lock_core(core);
        let now = link.registry.shared.clock.now();
        let last = match read {
            Ok(0) => {
                c.conn.handle_eof(now);
                true
            }
            Ok(n) => {
                c.conn.handle_bytes(now, &buf[..n]);
                false
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // The stream is non-blocking (the transport's, shared): wait for bytes.
                drop(c);
                if let Err(e) = wait_readable(&stream) {
                    let mut c = lock_core(core);
                    c.conn.handle_eof(link.registry.shared.clock.now());
                    c.error.get_or_insert(e);
                    c.turn(link);
                    c.over = true;
                    return;
                }
                continue;
            }
            Err(e) => {
                c.conn.handle_eof(now);
                c.error.get_or_insert(e);
                true
            }
        };
        let full = c.turn(link);
        if last {
            // Messages that came just before the EOF still reach the session.
            while !c.messages.is_empty() {
                c.turn(link);
            }
            c.over = true;
            return;
        }
        drop(c);
        if full {
            link.wait_for_room(Duration::from_millis(50));
        }
    }
}
