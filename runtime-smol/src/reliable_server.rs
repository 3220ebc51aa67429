//! [`SessionRegistry`]: the server's `sockeye.v1` sessions, shared by the connection tasks
//! and the application, on the async runtime.
//!
//! Every decision is the core's [`SessionStore`] and `ServerSession`'s; this file holds
//! them behind one lock (never held across an `await`), moves envelopes between them and
//! the connections, and wakes whoever waits.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_channel::{Receiver, Sender};
use async_io::Timer;
use bytes::Bytes;
use futures_lite::future;
use sockeye_core::handshake::Request;
use sockeye_core::session::SUBPROTOCOL;
use sockeye_core::time::earliest;
use sockeye_core::{
    CloseCode, Event, Instant, Seq, SessionConfig, SessionEvent, SessionId, SessionStore,
};
use sockeye_std::{Clock, Error, OsEntropy, Recv, Refusal, ReliableError, Result};

use crate::server::{Incoming, Refuse};
use crate::websocket::WebSocket;

/// Events waiting for the application before connections stop reading (their peers then
/// feel TCP backpressure) until [`SessionRegistry::next_event`] takes some.
pub const DEFAULT_MAX_PENDING_EVENTS: usize = 64 * 1024;

/// The server's reliable sessions: clone it freely, clones share one store. The async
/// twin of `sockeye_std::SessionRegistry`.
///
/// ```no_run
/// use sockeye_smol::{Config, Server, SessionConfig, SessionEvent, SessionRegistry, Upgrade};
///
/// smol::block_on(async {
///     let server = Server::bind("127.0.0.1:9001", Config::default())?;
///     let registry = SessionRegistry::new(SessionConfig::default())?;
///     let sessions = registry.clone();
///     smol::spawn(async move {
///         while let Ok(incoming) = server.accept().await {
///             let registry = registry.clone();
///             smol::spawn(async move {
///                 if let Ok(Upgrade::Reliable(conn)) = registry.upgrade(incoming).await {
///                     let _ = conn.run().await;
///                 }
///             })
///             .detach();
///         }
///     })
///     .detach();
///     while let Some((id, event)) = sessions.next_event(None).await {
///         if let SessionEvent::Delivered { payload, .. } = event {
///             println!("{id:?}: {payload:?}");
///         }
///     }
///     Ok::<(), sockeye_smol::Error>(())
/// })?;
/// # Ok::<(), sockeye_smol::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SessionRegistry {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// The clock of every session and connection of this registry.
    clock: Clock,
    max_pending_events: usize,
    /// Signalled (lossily: one pending signal is enough) when events are queued or the
    /// store's next deadline may have moved earlier.
    event_ready: (Sender<()>, Receiver<()>),
    /// Signalled when the application took events.
    room: (Sender<()>, Receiver<()>),
}

#[derive(Debug)]
struct State {
    store: SessionStore,
    entropy: OsEntropy,
    events: VecDeque<(SessionId, SessionEvent)>,
    /// The connection that carries each session now: its epoch and how to wake it.
    drivers: HashMap<SessionId, (u64, Sender<()>)>,
}

/// What an upgrade produced.
#[derive(Debug)]
pub enum Upgrade {
    /// `sockeye.v1` was selected and a session attached: await
    /// [`ReliableConnection::run`].
    Reliable(ReliableConnection),
    /// The client did not offer `sockeye.v1`.
    Plain(WebSocket),
}

/// One `sockeye.v1` connection with its session attached.
#[derive(Debug)]
pub struct ReliableConnection {
    registry: SessionRegistry,
    id: SessionId,
    epoch: u64,
    ws: WebSocket,
    wake: Receiver<()>,
}

/// A lossy wake-up: one pending signal is enough for the waiter to look again.
fn signal(channel: &Sender<()>) {
    let _ = channel.try_send(());
}

impl SessionRegistry {
    /// An empty registry whose sessions follow `config`.
    pub fn new(config: SessionConfig) -> Result<Self> {
        SessionRegistry::with_event_limit(config, DEFAULT_MAX_PENDING_EVENTS)
    }

    /// Like [`new`](Self::new), with at most `max_pending_events` events waiting for the
    /// application before connections stop reading.
    pub fn with_event_limit(config: SessionConfig, max_pending_events: usize) -> Result<Self> {
        let clock = Clock::new();
        Ok(SessionRegistry {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    store: SessionStore::new(config, clock.now()),
                    entropy: OsEntropy::new()?,
                    events: VecDeque::new(),
                    drivers: HashMap::new(),
                }),
                clock,
                max_pending_events: max_pending_events.max(1),
                event_ready: async_channel::bounded(1),
                room: async_channel::bounded(1),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the store as consistent as the core left
        // it; keep serving rather than poisoning every connection.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Performs the handshake of `incoming`. If the client offers `sockeye.v1`, selects
    /// it and attaches a session (`SessionStore::accept` with the `Sockeye-Resume`
    /// header or `sockeye_resume` query value): a malformed value is answered 400 and a
    /// full store 503 ([`ReliableError::Store`]).
    pub async fn upgrade(&self, incoming: Incoming) -> Result<Upgrade> {
        self.upgrade_with(incoming, |_| Ok(())).await
    }

    /// Like [`upgrade`](Self::upgrade), with `check` looking at the request (path and
    /// query, headers, origin) first, before a session is attached or resumed: `Err`
    /// answers the [`Refusal`] (any HTTP status, with headers and a body) and returns
    /// [`Error::Refused`](crate::Error::Refused), and no session is created or touched.
    ///
    /// ```no_run
    /// use sockeye_smol::{Config, Refusal, Server, SessionConfig, SessionRegistry, Upgrade};
    ///
    /// smol::block_on(async {
    ///     let server = Server::bind("127.0.0.1:9001", Config::default())?;
    ///     let registry = SessionRegistry::new(SessionConfig::default())?;
    ///     let incoming = server.accept().await?;
    ///     let upgraded = registry
    ///         .upgrade_with(incoming, |request| match request.header("sockeye-token") {
    ///             Some(b"let-me-in") => Ok(()),
    ///             _ => Err(Refusal::new(401).with_header("WWW-Authenticate", "Bearer")),
    ///         })
    ///         .await?;
    ///     if let Upgrade::Reliable(conn) = upgraded {
    ///         conn.run().await?;
    ///     }
    ///     Ok::<(), sockeye_smol::Error>(())
    /// })?;
    /// # Ok::<(), sockeye_smol::Error>(())
    /// ```
    pub async fn upgrade_with(
        &self,
        incoming: Incoming,
        check: impl FnOnce(&Request) -> std::result::Result<(), Refusal>,
    ) -> Result<Upgrade> {
        let mut attached = None;
        let decide = |request: &sockeye_core::handshake::Request| {
            check(request).map_err(Refuse::Policy)?;
            if !request.protocols().any(|p| p == SUBPROTOCOL) {
                return Ok(None);
            }
            let (tx, rx) = async_channel::bounded(1);
            let mut guard = self.lock();
            let state = &mut *guard;
            let now = self.shared.clock.now();
            let accepted = state
                .store
                .accept(now, request.resume_value(), &mut state.entropy);
            let moved = drain_store(state);
            drop(guard);
            if moved {
                signal(&self.shared.event_ready.0);
            }
            match accepted {
                Ok(id) => {
                    let mut state = self.lock();
                    let epoch = state.store.get(id).map_or(0, |s| s.epoch());
                    if let Some((_, old)) = state.drivers.insert(id, (epoch, tx)) {
                        // The connection that carried it finds itself superseded.
                        signal(&old);
                    }
                    attached = Some((id, epoch, rx));
                    Ok(Some(SUBPROTOCOL.to_string()))
                }
                Err(e) => Err(Refuse::Answer {
                    answer: e.response(),
                    error: e.into(),
                }),
            }
        };
        let ws = incoming.upgrade_on(self.shared.clock, decide).await;
        let ws = match (ws, attached) {
            (Ok(ws), Some((id, epoch, wake))) => {
                return Ok(Upgrade::Reliable(ReliableConnection {
                    registry: self.clone(),
                    id,
                    epoch,
                    ws,
                    wake,
                }));
            }
            (ws, Some((id, epoch, _))) => {
                // Attached, but the 101 could not be written: the session waits for a
                // resume like after any drop.
                self.lock().store.detach(self.shared.clock.now(), id, epoch);
                ws?
            }
            (ws, None) => ws?,
        };
        Ok(Upgrade::Plain(ws))
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

    /// Queues a message for session `id`, connected or not, and wakes its connection.
    /// `Full` ([`ReliableError::Send`]) is backpressure; [`ReliableError::UnknownSession`] if the
    /// session is gone. The payload is not handed back; [`try_send`](Self::try_send)
    /// hands it back.
    pub fn send(&self, id: SessionId, payload: Bytes, is_text: bool) -> Result<Seq> {
        let mut state = self.lock();
        let now = self.shared.clock.now();
        let session = state
            .store
            .get_mut(id)
            .ok_or(ReliableError::UnknownSession)?;
        let seq = session.send(now, payload, is_text)?;
        if let Some((_, wake)) = state.drivers.get(&id) {
            signal(wake);
        }
        drop(state);
        // A detached session's message has an age deadline the store now watches.
        signal(&self.shared.event_ready.0);
        Ok(seq)
    }

    /// The next event of any session, waiting at most `timeout` (`None`: forever);
    /// `None` when the time is up. Drives the timers of disconnected sessions (expiry,
    /// message age) meanwhile. Cancel-safe.
    pub async fn next_event(&self, timeout: Option<Duration>) -> Option<(SessionId, SessionEvent)> {
        let deadline = timeout.map(|t| self.shared.clock.now() + t);
        loop {
            let wake = {
                let mut guard = self.lock();
                let state = &mut *guard;
                let now = self.shared.clock.now();
                if state.store.poll_timeout().is_some_and(|at| at <= now) {
                    state.store.handle_timeout(now);
                    drain_store(state);
                }
                if let Some(event) = state.events.pop_front() {
                    if state.events.len() + 1 >= self.shared.max_pending_events {
                        signal(&self.shared.room.0);
                    }
                    return Some(event);
                }
                if deadline.is_some_and(|d| now >= d) {
                    return None;
                }
                earliest(state.store.poll_timeout(), deadline)
            };
            let signalled = async {
                let _ = self.shared.event_ready.1.recv().await;
            };
            match wake {
                Some(at) => {
                    future::or(signalled, async {
                        Timer::at(self.shared.clock.to_std(at)).await;
                    })
                    .await
                }
                None => signalled.await,
            }
        }
    }

    /// Closes session `id`'s connection with 1001 (the client may resume later). Returns
    /// whether it had one.
    pub fn disconnect(&self, id: SessionId) -> bool {
        let mut state = self.lock();
        match state.drivers.remove(&id) {
            Some((_, wake)) => {
                // Its task sees itself superseded and closes with 1001.
                signal(&wake);
                true
            }
            None => false,
        }
    }

    /// Live sessions (connected or waiting for a resume).
    pub fn len(&self) -> usize {
        self.lock().store.len()
    }

    /// No live session.
    pub fn is_empty(&self) -> bool {
        self.lock().store.is_empty()
    }

    /// Whether session `id` has a connection now.
    pub fn is_connected(&self, id: SessionId) -> bool {
        self.lock().store.get(id).is_some_and(|s| s.is_connected())
    }

    /// Messages to session `id` not yet acknowledged, if it is live.
    pub fn unacked_messages(&self, id: SessionId) -> Option<usize> {
        self.lock().store.get(id).map(|s| s.unacked_messages())
    }
}

/// Moves the store's own events (expiry, dead letters of detached sessions) to the
/// application's queue. Returns whether any moved.
fn drain_store(state: &mut State) -> bool {
    let mut any = false;
    while let Some(event) = state.store.poll_event() {
        state.events.push_back(event);
        any = true;
    }
    any
}

/// What one turn of a connection found out, under the registry's lock.
struct Turn {
    /// End the connection with this close: the session is no longer this connection's
    /// (resumed elsewhere, disconnected by the application), or asks to drop it.
    close: Option<(CloseCode, &'static str)>,
    /// The session's next deadline.
    deadline: Option<Instant>,
    /// The application's queue is full: stop reading until it takes some.
    events_full: bool,
}

impl ReliableConnection {
    /// The session this connection carries.
    pub fn session_id(&self) -> SessionId {
        self.id
    }

    /// The path and query the client requested.
    pub fn path(&self) -> &str {
        self.ws.path().unwrap_or("/")
    }

    /// Carries the session until the connection ends: envelopes between the socket and
    /// the session, its timers, and what the application queued with
    /// [`SessionRegistry::send`]. The session then waits for a resume. Returns the
    /// transport's error, if the connection ended with one.
    pub async fn run(mut self) -> Result<()> {
        let result = self.carry().await;
        let registry = &self.registry;
        let mut state = registry.lock();
        let now = registry.shared.clock.now();
        let detached = state.store.detach(now, self.id, self.epoch);
        if state
            .drivers
            .get(&self.id)
            .is_some_and(|(e, _)| *e == self.epoch)
        {
            state.drivers.remove(&self.id);
        }
        drop(state);
        if detached {
            // The session's expiry is a new deadline for a waiting `next_event`.
            signal(&registry.shared.event_ready.0);
        }
        result
    }

    async fn carry(&mut self) -> Result<()> {
        let mut messages: Vec<Bytes> = Vec::new();
        let mut rtt = None;
        loop {
            let turn = self.turn(&mut messages, &mut rtt);
            if let Some((code, reason)) = turn.close {
                let _ = self.ws.close(code, reason).await;
                while let Ok(Some(_)) = self.ws.recv_event().await {}
                return Ok(());
            }
            self.ws.flush().await?;
            if turn.events_full {
                // Read nothing until the application takes events (or a second passes).
                let room = async {
                    let _ = self.registry.shared.room.1.recv().await;
                };
                future::or(room, async {
                    Timer::after(Duration::from_secs(1)).await;
                })
                .await;
                continue;
            }
            let woken = async {
                let _ = self.wake.recv().await;
                None
            };
            let received = async { Some(self.ws.recv_event_until(turn.deadline).await) };
            match future::or(received, woken).await {
                None => {}
                Some(Ok(Recv::Ready(Event::Message(message)))) => {
                    messages.push(message.into_payload())
                }
                Some(Ok(Recv::Ready(Event::Pong {
                    rtt: Some(sample), ..
                }))) => rtt = Some(sample),
                Some(Ok(Recv::Ready(Event::Closed(_)) | Recv::Closed)) => return Ok(()),
                Some(Ok(Recv::Ready(_) | Recv::TimedOut)) => {}
                Some(Err(e)) => return Err(e),
            }
        }
    }

    /// Feeds the session what arrived, fires its timers, and hands its envelopes to the
    /// connection and its events to the application, under the registry's lock.
    fn turn(&mut self, messages: &mut Vec<Bytes>, rtt: &mut Option<Duration>) -> Turn {
        let shared = &self.registry.shared;
        let mut guard = self.registry.lock();
        let state = &mut *guard;
        let current = state
            .drivers
            .get(&self.id)
            .is_some_and(|(epoch, _)| *epoch == self.epoch);
        let Some(session) = state
            .store
            .get_mut(self.id)
            .filter(|s| current && s.epoch() == self.epoch && s.is_connected())
        else {
            messages.clear();
            return Turn {
                close: Some((CloseCode::GOING_AWAY, "session resumed elsewhere")),
                deadline: None,
                events_full: false,
            };
        };
        let now = shared.clock.now();
        for message in messages.drain(..) {
            session.handle_message(now, message);
        }
        if let Some(sample) = rtt.take() {
            session.handle_rtt_sample(now, sample);
        }
        if session.poll_timeout().is_some_and(|t| t <= now) {
            session.handle_timeout(now);
        }
        let mut queued = false;
        while let Some(event) = session.poll_event() {
            state.events.push_back((self.id, event));
            queued = true;
        }
        let mut failed = false;
        while let Some(envelope) = session.poll_outgoing_parts() {
            if self
                .ws
                .queue_parts(now, envelope.head(), envelope.payload())
                .is_err()
            {
                failed = true;
                break;
            }
        }
        let wants_disconnect = session.wants_disconnect();
        let deadline = session.poll_timeout();
        let events_full = state.events.len() >= shared.max_pending_events;
        drop(guard);
        if queued {
            signal(&shared.event_ready.0);
        }
        // The session asks to drop the connection (unresponsive peer, protocol error), or
        // the connection cannot take its envelopes: end it; the session resumes later.
        let close = match (wants_disconnect, failed) {
            (Some(code), _) => Some((code, "")),
            (None, true) => Some((CloseCode::INTERNAL_ERROR, "")),
            (None, false) => None,
        };
        Turn {
            close,
            deadline,
            events_full,
        }
    }
}
