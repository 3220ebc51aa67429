//! [`ReliableClient`]: a `sockeye.v1` [`ClientSession`] carried over async WebSocket
//! connections that it opens, loses and reopens by itself.
//!
//! Every decision (what to resend, when an ack is due, when the peer is unresponsive,
//! how long to wait before reconnecting) is the core's ([`ClientSession`],
//! [`Reconnect`]); this file only moves bytes, reads the clock and sleeps on a timer.

use std::time::Duration;

use async_io::Timer;
use bytes::Bytes;
use sockeye_core::session::{RESUME_HEADER, SUBPROTOCOL};
use sockeye_core::time::earliest;
use sockeye_core::{
    ClientSession, CloseCode, Event, Instant, Reconnect, Seq, SessionEvent, SessionId,
    SessionSendError,
};
use sockeye_std::{
    ClientOptions, Clock, Error, OsEntropy, Recv, ReliableError, ReliableOptions, Result, WsUrl,
};

use crate::client::Client;
use crate::stream::MaybeTlsStream;
use crate::websocket::WebSocket;

/// A reliable (`sockeye.v1`) client that reconnects and resumes by itself: the async
/// twin of `sockeye_std::ReliableClient`, with the same options and events.
///
/// A message handed to [`send`](Self::send) reaches the server's application exactly once
/// and in order, across dropped connections, or comes back as a
/// [`SessionEvent::DeadLetter`]. Nothing runs in the background: the client does its I/O
/// while [`next_event`](Self::next_event), [`wait_acked`](Self::wait_acked) or
/// [`flush`](Self::flush) is awaited.
///
/// ## Cancel safety
///
/// [`send`](Self::send) is not async: the message is in the session's window when it
/// returns `Ok` (and goes out, and is resent, as needed), or it was refused. Every async
/// method is cancel-safe: dropping its future loses no message and no event, since all
/// state lives in the session and the connection, not in the future.
///
/// ```no_run
/// use bytes::Bytes;
/// use std::time::Duration;
/// use sockeye_smol::{Error, ReliableClient, ReliableOptions, SessionEvent, SessionSendError};
///
/// smol::block_on(async {
///     let mut client = ReliableClient::connect("ws://127.0.0.1:9001/", ReliableOptions::default()).await?;
///     let mut next = 0;
///     while next < 100 {
///         match client.send(Bytes::from(next.to_string()), true) {
///             Ok(_) => next += 1,
///             // The window is full: drive the connection until acks make room.
///             Err(Error::Reliable(e)) if e.is_full() => {
///                 client.next_event(Some(Duration::from_millis(10))).await?;
///             }
///             Err(e) => return Err(e),
///         }
///     }
///     client.wait_acked(Some(Duration::from_secs(30))).await?;
///     while let Some(event) = client.next_event(Some(Duration::ZERO)).await? {
///         if let SessionEvent::DeadLetter { seq, reason, .. } = event {
///             eprintln!("{seq} was not delivered: {reason}");
///         }
///     }
///     client.close().await
/// })?;
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
    connections: u64,
    /// The reconnect policy gave up (`max_attempts` failures in a row).
    gave_up: bool,
    /// The clock of the session and of every connection it rides on.
    clock: Clock,
}

impl ReliableClient {
    /// A client for `url` that has not connected yet: it connects when first driven.
    /// Fails only for an unusable URL or no entropy.
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
            gave_up: false,
            clock,
        })
    }

    /// Connects and waits until the server has established the session (retrying per
    /// `options.reconnect`), at most `options.connect_timeout` ([`ReliableError::Timeout`], which keeps why the last attempt failed).
    pub async fn connect(url: &str, options: ReliableOptions) -> Result<Self> {
        let timeout = options.connect_timeout;
        let mut client = ReliableClient::new(url, options)?;
        let deadline = client.clock.now() + timeout;
        while !client.session.is_established() {
            if client.clock.now() >= deadline {
                let last = client.last_error.take().map(Box::new);
                return Err(ReliableError::Timeout { last }.into());
            }
            client.pump(Some(deadline)).await?;
        }
        Ok(client)
    }

    /// Queues a message for the server in the session's window and returns its
    /// sequence number; it is written while the client is next driven. Its fate comes
    /// later as [`SessionEvent::Acked`] or [`SessionEvent::DeadLetter`].
    ///
    /// [`Error::Reliable`]`(`[`ReliableError::Send`]`(`[`SessionSendError::Full`]`)` is backpressure: await
    /// [`next_event`](Self::next_event) to let acks arrive, then retry.
    /// The payload is not handed back; [`try_send`](Self::try_send) hands it back.
    pub fn send(&mut self, payload: Bytes, is_text: bool) -> Result<Seq> {
        if self.session.is_full_for(payload.len())
            && (!is_text || std::str::from_utf8(&payload).is_ok())
        {
            return Err(SessionSendError::Full.into());
        }
        let now = self.clock.now();
        let seq = self.session.send(now, payload, is_text)?;
        self.queue_outgoing(now);
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

    /// Writes what the session has queued for the current connection (nothing while
    /// disconnected: the session resends on the next one). Cancel-safe.
    pub async fn flush(&mut self) -> Result<()> {
        self.queue_outgoing(self.clock.now());
        if let Some(ws) = self.ws.as_mut() {
            if let Err(e) = ws.flush().await {
                self.last_error = Some(e);
                self.disconnected();
            }
        }
        Ok(())
    }

    /// The next session event, driving the connection (reading, writing, timers,
    /// reconnecting) while it waits at most `timeout` (`None`: until an event);
    /// `Ok(None)` when the time is up. Cancel-safe.
    ///
    /// Errors: [`ReliableError::GaveUp`] once reconnecting gave up, [`ReliableError::NotReliable`] if
    /// the server does not speak `sockeye.v1`. A lost connection is not an error: the
    /// client reconnects, and says so with [`SessionEvent::Disconnected`] when a
    /// connection ends and [`SessionEvent::Reconnecting`] for each attempt it schedules,
    /// before `Resumed` (or `SessionLost` and `Established`). Message numbers stay unique
    /// across sessions.
    pub async fn next_event(&mut self, timeout: Option<Duration>) -> Result<Option<SessionEvent>> {
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
            self.pump(deadline).await?;
        }
    }

    /// Drives the connection until every message sent so far is acknowledged or
    /// dead-lettered (`true`), or `timeout` passes (`false`). Events wait for
    /// [`next_event`](Self::next_event). Cancel-safe.
    pub async fn wait_acked(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| self.clock.now() + t);
        loop {
            if self.session.unacked_messages() == 0 {
                return Ok(true);
            }
            if deadline.is_some_and(|d| self.clock.now() >= d) {
                return Ok(false);
            }
            self.pump(deadline).await?;
        }
    }

    /// Closes the current connection with a normal closure, waiting for the server's
    /// answer at most `close_timeout`. The server keeps the session until it expires.
    pub async fn close(mut self) -> Result<()> {
        self.queue_outgoing(self.clock.now());
        if let Some(mut ws) = self.ws.take() {
            ws.close(CloseCode::NORMAL, "bye").await?;
            let deadline = self.clock.now() + self.options.config.close_timeout;
            while let Ok(Recv::Ready(event)) = ws.recv_event_until(Some(deadline)).await {
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

    /// One round of work, waiting at most until `deadline`: connect if due, write what
    /// the session queued, read one event or wait for the session's next deadline,
    /// fire due timers.
    async fn pump(&mut self, deadline: Option<Instant>) -> Result<()> {
        if self.ws.is_none() {
            return self.pump_disconnected(deadline).await;
        }
        self.flush().await?;
        let Some(ws) = self.ws.as_mut() else {
            return Ok(());
        };
        if let Some(code) = self.session.wants_disconnect() {
            let _ = ws.close(code, "").await;
            self.disconnected();
            return Ok(());
        }
        let wait = earliest(self.session.poll_timeout(), deadline);
        match ws.recv_event_until(wait).await {
            Ok(Recv::Ready(Event::Message(message))) => {
                self.session
                    .handle_message(self.clock.now(), message.into_payload());
            }
            Ok(Recv::Ready(Event::Pong { rtt: Some(rtt), .. })) => {
                self.session.handle_rtt_sample(self.clock.now(), rtt);
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
        self.flush().await
    }

    /// No connection: connect if the policy says it is time, else sleep until then (or
    /// the session's next deadline, or `deadline`).
    async fn pump_disconnected(&mut self, deadline: Option<Instant>) -> Result<()> {
        if self.gave_up {
            let attempts = self.reconnect.failures();
            let last = self.last_error.take().map(Box::new);
            let gave_up = ReliableError::GaveUp { attempts, last };
            log::warn!("{gave_up}");
            return Err(gave_up.into());
        }
        let now = self.clock.now();
        // No attempt scheduled: the first one, or one whose future was dropped mid-way.
        let Some(at) = self.reconnect.poll_timeout().filter(|at| now < *at) else {
            return self.attempt().await;
        };
        if let Some(wake) = earliest(Some(at), earliest(self.session.poll_timeout(), deadline)) {
            Timer::at(self.clock.to_std(wake)).await;
        }
        self.fire_timers();
        Ok(())
    }

    /// One connection attempt, offering `sockeye.v1` and the session's RESUME.
    async fn attempt(&mut self) -> Result<()> {
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
        let config = self.options.config.clone();
        match Client::open_on(&self.url, config, options, self.clock).await {
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

    /// Hands every envelope the session has for the current connection to it. A
    /// refused one ends the connection; the messages stay in the window for the next.
    fn queue_outgoing(&mut self, now: Instant) {
        let Some(ws) = self.ws.as_mut() else {
            return;
        };
        while let Some(envelope) = self.session.poll_outgoing_parts() {
            if let Err(e) = ws.queue_parts(now, envelope.head(), envelope.payload()) {
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
        // Giving up is reported by the next `pump_disconnected`.
        match self.reconnect.handle_disconnected(now, &mut self.entropy) {
            None => self.gave_up = true,
            Some(at) => {
                self.gave_up = false;
                if !scheduled {
                    let attempt = self.reconnect.failures();
                    let delay = at.saturating_duration_since(now);
                    log::info!("reconnect attempt {attempt} in {delay:?}");
                    self.session.report_reconnect(attempt, delay);
                }
            }
        }
    }
}
