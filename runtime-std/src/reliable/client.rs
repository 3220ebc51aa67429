//! [`ReliableClient`]: a [`ClientSession`] carried over WebSocket connections that it
//! opens, loses and reopens by itself.
//!
//! The driver is single-threaded: all work happens inside [`ReliableClient::send`],
//! [`ReliableClient::next_event`] and [`ReliableClient::wait_acked`], on the caller's
//! thread. Every decision (what to resend, when an ack is due, when the peer is
//! unresponsive, how long to wait before reconnecting) is the core's
//! ([`ClientSession`], [`Reconnect`]); this file only moves bytes and reads the clock.

use std::time::Duration;

use bytes::Bytes;
use sockeye_core::session::{RESUME_HEADER, SUBPROTOCOL};
use sockeye_core::time::earliest;
use sockeye_core::{
    ClientSession, Config, Event, Instant, Reconnect, ReconnectConfig, Seq, SessionConfig,
    SessionEvent, SessionId, SessionSendError,
};

use super::ReliableError;
use crate::client::{Client, ClientOptions};
use crate::entropy::OsEntropy;
use crate::error::{Error, Result};
use crate::stream::MaybeTlsStream;
use crate::time::Clock;
use crate::url::WsUrl;
use crate::websocket::{Recv, WebSocket};

/// How a [`ReliableClient`] connects, and the limits of its session.
#[derive(Clone, Debug)]
pub struct ReliableOptions {
    /// Limits and timings of each WebSocket connection (handshake timeout, keepalive…).
    pub config: Config,
    /// The session's window, acks, retransmission and age limits.
    pub session: SessionConfig,
    /// How long to wait between connection attempts.
    pub reconnect: ReconnectConfig,
    /// How long [`ReliableClient::connect`] tries to establish the first session.
    pub connect_timeout: Duration,
    /// Extra header fields for every upgrade request, such as
    /// `("Sockeye-Token", "<user token>")`.
    pub headers: Vec<(String, String)>,
    /// The TLS configuration for a `wss://` URL (`None`, the default: the platform's
    /// trust store). With the `tls` feature only.
    #[cfg(feature = "tls")]
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Default for ReliableOptions {
    fn default() -> Self {
        ReliableOptions {
            config: Config::default(),
            session: SessionConfig::default(),
            reconnect: ReconnectConfig::default(),
            connect_timeout: Duration::from_secs(10),
            headers: Vec::new(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// A reliable (`sockeye.v1`) client that reconnects and resumes by itself.
///
/// A message handed to [`send`](Self::send) reaches the server's application exactly once
/// and in order, across dropped connections, or comes back as a
/// [`SessionEvent::DeadLetter`]. After any drop the client waits (exponential backoff
/// with jitter, [`ReconnectConfig`]), reconnects with its session's RESUME in the
/// `Sockeye-Resume` header, and both sides resend what the other lacks.
///
/// Nothing happens in the background: the client does its I/O inside `send`,
/// [`next_event`](Self::next_event) and [`wait_acked`](Self::wait_acked), so call
/// `next_event` whenever the application is idle. Events (one `Acked` per message among
/// them) wait in the session until `next_event` takes them, so take them regularly.
///
/// ```no_run
/// use bytes::Bytes;
/// use sockeye_std::{Error, ReliableClient, ReliableOptions, SessionEvent, SessionSendError};
/// use std::time::Duration;
///
/// let mut client = ReliableClient::connect("ws://127.0.0.1:9001/", ReliableOptions::default())?;
/// let mut next = 0;
/// while next < 100 {
///     match client.send(Bytes::from(next.to_string()), true) {
///         Ok(_) => next += 1,
///         // The window is full: drive the connection until acks make room.
///         Err(Error::Reliable(e)) if e.is_full() => {
///             client.next_event(Some(Duration::from_millis(10)))?;
///         }
///         Err(e) => return Err(e),
///     }
/// }
/// client.wait_acked(Some(Duration::from_secs(30)))?;
/// while let Some(event) = client.next_event(Some(Duration::ZERO))? {
///     if let SessionEvent::DeadLetter { seq, reason, .. } = event {
///         eprintln!("{seq} was not delivered: {reason}");
///     }
/// }
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
pub struct ReliableClient {
    url: String,
    options: ReliableOptions,
    session: ClientSession,
    ws: Option<WebSocket<MaybeTlsStream>>,
    reconnect: Reconnect,
    entropy: OsEntropy,
    /// The reconnect policy already knows the current connection established the session.
    established_noted: bool,
    /// Why the last attempt failed, for [`ReliableError::GaveUp`].
    last_error: Option<Error>,
    /// Connections opened so far.
    connections: u64,
    /// The clock of the session and of every connection it rides on.
    clock: Clock,
}

impl ReliableClient {
    /// A client for `url` (`ws://host[:port][/path][?query]`, or `wss://…` with the `tls`
    /// feature) that has not connected yet:
    /// it connects at the first [`send`](Self::send), [`next_event`](Self::next_event) or
    /// [`wait_acked`](Self::wait_acked). Fails only for an unusable URL or no entropy.
    pub fn new(url: &str, options: ReliableOptions) -> Result<Self> {
        WsUrl::parse(url)?;
        let clock = Clock::new();
        Ok(ReliableClient {
            url: url.to_string(),
            session: ClientSession::new(options.session.clone(), clock.now()),
            reconnect: Reconnect::new(options.reconnect.clone()),
            options,
            ws: None,
            entropy: OsEntropy::new()?,
            established_noted: false,
            last_error: None,
            connections: 0,
            clock,
        })
    }

    /// Connects to `url` and waits until the server has established the session
    /// (retrying per `options.reconnect`), at most `options.connect_timeout`
    /// ([`ReliableError::Timeout`], which keeps why the last attempt failed). The `Established` event is still there for
    /// [`next_event`](Self::next_event).
    pub fn connect(url: &str, options: ReliableOptions) -> Result<Self> {
        let timeout = options.connect_timeout;
        let mut client = ReliableClient::new(url, options)?;
        let deadline = client.clock.now() + timeout;
        while !client.session.is_established() {
            if client.clock.now() >= deadline {
                let last = client.last_error.take().map(Box::new);
                return Err(ReliableError::Timeout { last }.into());
            }
            client.pump(Some(deadline))?;
        }
        Ok(client)
    }

    /// Queues a message for the server and writes it if connected. Returns its sequence
    /// number; its fate comes later as [`SessionEvent::Acked`] or
    /// [`SessionEvent::DeadLetter`].
    ///
    /// [`Error::Reliable`]`(`[`ReliableError::Send`]`(`[`SessionSendError::Full`](sockeye_core::SessionSendError::Full)`)`
    /// is backpressure: the window holds as many unacknowledged messages (or bytes) as
    /// it may; call [`next_event`](Self::next_event) to let acks arrive, then retry.
    /// Nothing is queued beyond the window.
    /// The payload is not handed back; [`try_send`](Self::try_send) hands it back.
    pub fn send(&mut self, payload: Bytes, is_text: bool) -> Result<Seq> {
        // An application waiting for room calls this once per `next_event`; while the
        // window is full, answer without reading the clock (text that is not UTF-8 still
        // gets `InvalidUtf8` from the session, as before).
        if self.session.is_full_for(payload.len())
            && (!is_text || std::str::from_utf8(&payload).is_ok())
        {
            return Err(SessionSendError::Full.into());
        }
        let now = self.clock.now();
        let seq = self.session.send(now, payload, is_text)?;
        self.write_outgoing_at(now);
        Ok(seq)
    }

    /// [`send`](Self::send) for a [`Message`](sockeye_core::Message) that comes back
    /// on backpressure: a full window answers [`Error::Full`] with the message, to
    /// retry after acks arrive, where `send` answers `ReliableError::Send(Full)` and the
    /// payload is gone. Other refusals are `send`'s. (The payload is shared with the
    /// session, not copied.)
    pub fn try_send(&mut self, message: sockeye_core::Message) -> Result<Seq> {
        let is_text = message.kind() == sockeye_core::MessageKind::Text;
        match self.send(message.payload().clone(), is_text) {
            Err(Error::Reliable(ReliableError::Send(SessionSendError::Full))) => {
                Err(Error::Full(message))
            }
            other => other,
        }
    }

    /// The next session event, driving the connection (reading, writing, timers,
    /// reconnecting) while it waits. Waits at most `timeout` (`None`: until an event);
    /// `Ok(None)` when the time is up.
    ///
    /// Errors: [`ReliableError::GaveUp`] once reconnecting gave up
    /// ([`ReconnectConfig::max_attempts`]), [`ReliableError::NotReliable`] if the server does
    /// not speak `sockeye.v1`. Connection failures are not errors: the client reconnects,
    /// and says so with [`SessionEvent::Disconnected`] when a connection ends and
    /// [`SessionEvent::Reconnecting`] for each attempt it schedules (with its number and
    /// delay), before `Resumed` (or `SessionLost` and `Established`). Message numbers
    /// ([`send`](Self::send)'s, in `Acked` and `DeadLetter`) stay unique across sessions.
    pub fn next_event(&mut self, timeout: Option<Duration>) -> Result<Option<SessionEvent>> {
        // An event already waiting (one `Acked` per message) needs no clock reading.
        if let Some(event) = self.session.poll_event() {
            return Ok(Some(event));
        }
        let deadline = timeout.map(|t| self.clock.now() + t);
        loop {
            if let Some(event) = self.session.poll_event() {
                return Ok(Some(event));
            }
            if deadline.is_some_and(|d| self.clock.now() >= d) {
                return Ok(None);
            }
            self.pump(deadline)?;
        }
    }

    /// Drives the connection until every message sent so far is acknowledged or
    /// dead-lettered (`true`), or `timeout` passes (`false`). Events that arrive
    /// meanwhile wait for [`next_event`](Self::next_event).
    pub fn wait_acked(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| self.clock.now() + t);
        loop {
            if self.session.unacked_messages() == 0 {
                return Ok(true);
            }
            if deadline.is_some_and(|d| self.clock.now() >= d) {
                return Ok(false);
            }
            self.pump(deadline)?;
        }
    }

    /// Closes the current connection with a normal closure. The session itself ends
    /// with the client: the server keeps it until it expires.
    pub fn close(mut self) -> Result<()> {
        self.write_outgoing();
        if let Some(mut ws) = self.ws.take() {
            ws.close(sockeye_core::CloseCode::NORMAL, "bye")?;
            let deadline = self.clock.now() + self.options.config.close_timeout;
            while let Ok(Recv::Ready(event)) = ws.recv_event_until(Some(deadline)) {
                if matches!(event, Event::Closed(_)) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The session in force, once the server named one.
    pub fn session_id(&self) -> Option<SessionId> {
        self.session.session_id()
    }

    /// Connected and past the server's WELCOME.
    pub fn is_established(&self) -> bool {
        self.session.is_established()
    }

    /// Messages sent and not yet acknowledged (or dead-lettered).
    pub fn unacked_messages(&self) -> usize {
        self.session.unacked_messages()
    }

    /// WebSocket connections opened so far (1 + reconnects).
    pub fn connections(&self) -> u64 {
        self.connections
    }

    /// The session itself, to look at it.
    pub fn session(&self) -> &ClientSession {
        &self.session
    }

    /// The current WebSocket, if connected (for addresses and socket options; reading
    /// or writing it directly would corrupt the session).
    pub fn websocket(&self) -> Option<&WebSocket<MaybeTlsStream>> {
        self.ws.as_ref()
    }

    /// One round of work, waiting at most until `deadline`: connect if due, write what
    /// the session queued, read one event or wait for the session's next deadline,
    /// fire due timers.
    fn pump(&mut self, deadline: Option<Instant>) -> Result<()> {
        if self.ws.is_none() {
            return self.pump_disconnected(deadline);
        }
        self.write_outgoing();
        let Some(ws) = self.ws.as_mut() else {
            return Ok(());
        };
        if let Some(code) = self.session.wants_disconnect() {
            let _ = ws.close(code, "");
            self.disconnected();
            return Ok(());
        }
        let wait = earliest(self.session.poll_timeout(), deadline);
        match ws.recv_event_until(wait) {
            Ok(Recv::Ready(Event::Message(message))) => {
                self.session
                    .handle_message(self.clock.now(), message.into_payload());
            }
            Ok(Recv::Ready(Event::Pong { rtt: Some(rtt), .. })) => {
                self.session.handle_rtt_sample(self.clock.now(), rtt)
            }
            Ok(Recv::Ready(Event::Closed(_)) | Recv::Closed) => self.disconnected(),
            Ok(Recv::Ready(_) | Recv::TimedOut) => {}
            Err(e) => {
                self.last_error = Some(e);
                self.disconnected();
            }
        }
        self.fire_timers();
        if self.session.is_established() && !self.established_noted {
            self.established_noted = true;
            self.reconnect.handle_established(self.clock.now());
        }
        self.write_outgoing();
        Ok(())
    }

    /// No connection: connect if the policy says it is time, else sleep until then (or
    /// the session's next deadline, or `deadline`).
    fn pump_disconnected(&mut self, deadline: Option<Instant>) -> Result<()> {
        let now = self.clock.now();
        if self.connections == 0 && self.reconnect.poll_timeout().is_none() {
            return self.attempt();
        }
        if self.reconnect.poll_timeout().is_some_and(|at| now >= at) {
            return self.attempt();
        }
        let Some(at) = self.reconnect.poll_timeout() else {
            let attempts = self.reconnect.failures();
            let last = self.last_error.take().map(Box::new);
            let gave_up = ReliableError::GaveUp { attempts, last };
            log::warn!("{gave_up}");
            return Err(gave_up.into());
        };
        let wake = earliest(Some(at), earliest(self.session.poll_timeout(), deadline));
        if let Some(wake) = wake {
            std::thread::sleep(wake.saturating_duration_since(now));
        }
        self.fire_timers();
        Ok(())
    }

    /// One connection attempt, offering `sockeye.v1` and the session's RESUME.
    fn attempt(&mut self) -> Result<()> {
        self.reconnect.handle_attempt(self.clock.now());
        self.connections += 1;
        let resume = self.session.resume_header_value();
        let mut headers: Vec<(&str, &str)> = self
            .options
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(resume) = &resume {
            headers.push((RESUME_HEADER, resume));
        }
        // No compression offered; the `..` fills `deflate` when that feature is on.
        #[allow(clippy::needless_update)]
        let options = ClientOptions {
            protocols: &[SUBPROTOCOL],
            origin: None,
            headers: &headers,
            #[cfg(feature = "tls")]
            tls: self.options.tls.as_ref(),
            ..ClientOptions::default()
        };
        match Client::open_on(&self.url, self.options.config.clone(), options, self.clock) {
            Ok(ws) if ws.protocol() == Some(SUBPROTOCOL) => {
                self.session.handle_connected(self.clock.now());
                self.established_noted = false;
                // A cause from before this connection would be stale for the next failure.
                self.last_error = None;
                self.ws = Some(ws);
                Ok(())
            }
            Ok(_) => Err(ReliableError::NotReliable.into()),
            Err(e) => {
                self.last_error = Some(e);
                self.schedule_reconnect();
                Ok(())
            }
        }
    }

    /// Writes every envelope the session has for the current connection. A failed
    /// write ends the connection; the messages stay in the window for the next one.
    fn write_outgoing(&mut self) {
        self.write_outgoing_at(self.clock.now());
    }

    /// [`write_outgoing`](Self::write_outgoing) with the time the caller already read.
    fn write_outgoing_at(&mut self, now: Instant) {
        let Some(ws) = self.ws.as_mut() else {
            return;
        };
        while let Some(envelope) = self.session.poll_outgoing_parts() {
            if let Err(e) = ws.send_parts_at(now, envelope.head(), envelope.payload()) {
                self.last_error = Some(e);
                self.disconnected();
                return;
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = self.clock.now();
        if self.session.poll_timeout().is_some_and(|t| t <= now) {
            self.session.handle_timeout(now);
        }
    }

    /// The connection is gone: tell the session and schedule the next attempt.
    fn disconnected(&mut self) {
        self.ws = None;
        self.session.handle_disconnected(self.clock.now());
        self.schedule_reconnect();
    }

    fn schedule_reconnect(&mut self) {
        let now = self.clock.now();
        let scheduled = self.reconnect.poll_timeout().is_some();
        // `None` (gave up) is reported by the next `pump_disconnected`.
        if let Some(at) = self.reconnect.handle_disconnected(now, &mut self.entropy) {
            if !scheduled {
                let attempt = self.reconnect.failures();
                let delay = at.saturating_duration_since(now);
                log::info!("reconnect attempt {attempt} in {delay:?}");
                self.session.report_reconnect(attempt, delay);
            }
        }
    }
}
