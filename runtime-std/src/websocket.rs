//! [`WebSocket`]: one open connection, driven on the calling thread.
//!
//! The driver loop mirrors the core's contract: wait for bytes or the core's next
//! deadline (the socket's read timeout is the timer), feed that one input, drain events to
//! the application and chunks to the socket, re-arm the timer. It makes no protocol
//! decision of its own: pongs, close echoes, keepalive pings and error closes are all the
//! core's, and come out of `poll_transmit` like everything else.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sockeye_core::time::earliest;
use sockeye_core::{
    Close, CloseCode, Compression, Connection, ConnectionError, Event, Instant, Message,
    MessageKind, State,
};

use crate::connections::{ConnectionId, Slot};
use crate::error::{Error, Result};
use crate::sender::{Command, Outbox, Sender};
use crate::stream::{OverTcp, Stream};
use crate::transport::{is_write_stall, Input, Transport};

/// While answers to messages that already arrived wait to go out together, at most this
/// many bytes wait; past it a send writes at once (a burst of small messages answered
/// with large ones must not pile up).
const ANSWER_BATCH_BYTES: usize = 64 * 1024;

/// What a receive with a deadline answered ([`WebSocket::recv_timeout`],
/// [`WebSocket::recv_event_until`]): each case has its own variant, so "nothing yet" and
/// "nothing ever again" cannot be confused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Recv<T> {
    /// The next message or event.
    Ready(T),
    /// The deadline passed first; the connection is still open.
    TimedOut,
    /// The connection is over and its end was already reported: nothing more will come.
    Closed,
}

impl<T> Recv<T> {
    /// The message or event, if one came.
    pub fn ready(self) -> Option<T> {
        match self {
            Recv::Ready(item) => Some(item),
            Recv::TimedOut | Recv::Closed => None,
        }
    }
}

/// An open WebSocket over a blocking stream (a `TcpStream` unless said otherwise; any
/// [`Stream`], such as a [`UnixStream`](std::os::unix::net::UnixStream) or a TLS
/// session), client or server side.
///
/// It does its work on the calling thread, inside its methods: [`recv`](Self::recv) is
/// where bytes are read, pings answered and keepalive timers fire, so call it whenever
/// the application is idle. [`send`](Self::send) blocks until the kernel has taken the
/// whole message; once the peer has taken no byte for `Config::pong_timeout` the send
/// fails with [`Error::Connection`]`(`[`ConnectionError::WriteTimeout`]`)` rather than
/// blocking the thread forever, and so does the next [`recv`](Self::recv) (the
/// connection is over). Like other blocking WebSocket APIs, two peers that only write
/// and never read can fill each other's buffers; read while you write large amounts.
///
/// To send from other threads while one blocks in `recv`, take a [`Sender`] from
/// [`sender`](Self::sender).
///
/// Obtain one from [`Client::connect`](crate::Client::connect) or a
/// [`Server`](crate::Server).
#[derive(Debug)]
pub struct WebSocket<S = TcpStream> {
    conn: Connection,
    transport: Transport<S>,
    /// Events drained from the core and not yet returned to the application: never more
    /// than one message, the last of them (see [`drain`](Self::drain)).
    events: VecDeque<Event>,
    /// `events` ends with a message the application has not taken yet.
    holding_message: bool,
    /// How the connection ended, once the core reported it.
    close: Option<Close>,
    /// The transport has been shut down; nothing more will happen.
    done: bool,
    /// Why the transport failed, when the core cannot know it (a write stall): the
    /// `Closed` event reports this instead of the end of stream the core saw.
    failure: Option<ConnectionError>,
    /// How long to wait for the peer's FIN after ours.
    linger: Duration,
    path: Option<String>,
    protocol: Option<String>,
    /// The queue [`Sender`]s feed, once [`sender`](Self::sender) made one.
    outbox: Option<Arc<Outbox>>,
    /// On a server's connection, its id and its place among the server's connections.
    slot: Option<Slot>,
}

impl<S: Stream> WebSocket<S> {
    /// Wraps a connection fresh from its handshake and writes what it already queued (a
    /// server's 101 response, answers to frames that followed the handshake).
    pub(crate) fn new(
        conn: Connection,
        transport: Transport<S>,
        linger: Duration,
        path: Option<String>,
        protocol: Option<String>,
    ) -> Result<Self> {
        let mut ws = WebSocket {
            conn,
            transport,
            events: VecDeque::new(),
            holding_message: false,
            close: None,
            done: false,
            failure: None,
            linger,
            path,
            protocol,
            outbox: None,
            slot: None,
        };
        ws.drain_and_flush()?;
        Ok(ws)
    }

    /// Makes this a server's connection `slot.id()`, counted among its connections until
    /// dropped.
    pub(crate) fn set_slot(&mut self, slot: Slot) {
        self.slot = Some(slot);
    }

    /// The id its [`Server`](crate::Server) gave this connection (unique among that
    /// server's connections); `None` on a client, or a
    /// [`WebSocket::server`](Self::server) upgraded without a server.
    pub fn id(&self) -> Option<ConnectionId> {
        self.slot.as_ref().map(Slot::id)
    }

    /// The current time on the clock this connection's deadlines count from: build the
    /// deadline for [`recv_event_until`](Self::recv_event_until) from it
    /// (`ws.now() + Duration::from_millis(50)`).
    pub fn now(&self) -> Instant {
        self.transport.clock().now()
    }

    /// Receives the next message, blocking.
    ///
    /// Pings are answered and pongs recorded on the way (see [`recv_event`](Self::recv_event)
    /// to see them). Returns `Ok(None)` once the closing handshake has completed and the
    /// transport is closed ([`close_info`](Self::close_info) says how), and
    /// [`Error::Connection`] if the connection failed instead (protocol error, limit,
    /// timeout, or the peer vanishing without a close frame).
    pub fn recv(&mut self) -> Result<Option<Message>> {
        loop {
            match self.recv_event()? {
                Some(Event::Message(message)) => return Ok(Some(message)),
                Some(Event::Closed(close)) => match close.error {
                    Some(error) => return Err(Error::Connection(error)),
                    None => return Ok(None),
                },
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Receives the next event of any kind, blocking: a message, a ping the core already
    /// answered, a pong (with its round-trip time when it answers a keepalive ping), or the
    /// close. [`Event::Closed`] is returned once the transport is shut down; after it,
    /// `Ok(None)` forever.
    pub fn recv_event(&mut self) -> Result<Option<Event>> {
        match self.recv_event_until(None)? {
            Recv::Ready(event) => Ok(Some(event)),
            Recv::TimedOut | Recv::Closed => Ok(None),
        }
    }

    /// Like [`recv`](Self::recv), waiting at most `timeout`: [`Recv::Ready`] with the next
    /// message, [`Recv::TimedOut`] if none arrived in time (the connection is still
    /// open: call again), or [`Recv::Closed`] once the closing handshake has completed
    /// (and on every call after that). A connection that failed is reported once as
    /// [`Error::Connection`], then as `Closed`. The three answers never overlap, so a
    /// loop that retries on `TimedOut` ends when the connection does.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Recv<Message>> {
        let deadline = self.now() + timeout;
        loop {
            match self.recv_event_until(Some(deadline))? {
                Recv::Ready(Event::Message(message)) => return Ok(Recv::Ready(message)),
                Recv::Ready(Event::Closed(close)) => match close.error {
                    Some(error) => return Err(Error::Connection(error)),
                    None => return Ok(Recv::Closed),
                },
                Recv::Ready(_) => continue,
                Recv::TimedOut => return Ok(Recv::TimedOut),
                Recv::Closed => return Ok(Recv::Closed),
            }
        }
    }

    /// Like [`recv_event`](Self::recv_event), waiting at most `timeout` (see
    /// [`recv_event_until`](Self::recv_event_until) for the answers).
    pub fn recv_event_timeout(&mut self, timeout: Duration) -> Result<Recv<Event>> {
        let deadline = self.now() + timeout;
        self.recv_event_until(Some(deadline))
    }

    /// Like [`recv_event`](Self::recv_event), waiting until `deadline` at most (`None`:
    /// for ever). Answers [`Recv::Ready`] with the next event ([`Event::Closed`] once,
    /// when the connection ends), [`Recv::TimedOut`] when `deadline` passes first (the
    /// connection is still open), and [`Recv::Closed`] on every call after the
    /// connection's end was returned. The core's own timers still fire while waiting.
    /// `deadline` counts on this connection's clock ([`now`](Self::now)).
    pub fn recv_event_until(&mut self, deadline: Option<Instant>) -> Result<Recv<Event>> {
        loop {
            match self.events.pop_front() {
                Some(Event::Closed(mut close)) => {
                    if let Some(error) = self.failure.take() {
                        close.code = error.close_code();
                        close.error = Some(error);
                    }
                    // Finish the transport first (a client waits for the server's FIN, §7.1.1)
                    // so that a returned `Closed` means the connection is entirely over.
                    // Errors here cannot change how the connection ended; the core bounds
                    // this wait by `close_timeout`.
                    while !self.done {
                        let _ = self.step(None);
                    }
                    self.close = Some(close.clone());
                    if let Some(outbox) = &self.outbox {
                        outbox.close();
                    }
                    return Ok(Recv::Ready(Event::Closed(close)));
                }
                Some(event) => {
                    if matches!(event, Event::Message(_)) {
                        self.holding_message = false;
                    }
                    return Ok(Recv::Ready(event));
                }
                None if self.done => return Ok(Recv::Closed),
                None => {
                    // Let the core act on frames it already holds, and take what the
                    // senders queued, before reading more.
                    self.pump_outbox();
                    self.drain_and_write()?;
                    if self.events.is_empty() {
                        if deadline.is_some_and(|d| self.transport.clock().now() >= d) {
                            return Ok(Recv::TimedOut);
                        }
                        self.step(deadline)?;
                    }
                }
            }
        }
    }

    /// Sends a whole message as one frame, blocking until it is written.
    ///
    /// One exception batches answers: while messages that already arrived wait to be
    /// received (a read brought several), the frame waits in the write queue and goes out
    /// with the answers to them, in one write, when the last of them is answered (a
    /// `send` with nothing left waiting), when [`recv`](Self::recv) next waits for the
    /// network, or at [`flush`](Self::flush) or [`close`](Self::close). An echo loop
    /// then makes one write per read, not one per message.
    ///
    /// Fails with [`SendError::Closed`](sockeye_core::SendError::Closed) (as [`Error::Send`]) once the closing handshake
    /// has started. With permessage-deflate negotiated the message is compressed when it
    /// is at least the policy's `min_compress_bytes` long ([`Compression::Auto`]).
    pub fn send(&mut self, message: Message) -> Result<()> {
        self.send_with(message, Compression::Auto)
    }

    /// [`send`](Self::send), choosing whether this message may be compressed:
    /// [`Compression::Never`] for a message that holds a secret next to text an attacker
    /// controls (CRIME/BREACH; see [`Compression`]). Without permessage-deflate every
    /// message goes uncompressed whatever `compression` says.
    pub fn send_with(&mut self, message: Message, compression: Compression) -> Result<()> {
        self.send_at(self.transport.clock().now(), message, compression)
    }

    /// [`send_with`](Self::send_with) with the time already read by the caller (the
    /// reliable client reads the clock once per message for both its session and this).
    pub(crate) fn send_at(
        &mut self,
        now: Instant,
        message: Message,
        compression: Compression,
    ) -> Result<()> {
        self.make_room()?;
        self.conn.send_with(now, message, compression)?;
        self.drain_and_answer()
    }

    /// Writes everything queued, blocking until the kernel has taken it: what
    /// [`send`](Self::send) left waiting to go out with later answers, and what the core
    /// queued itself (pongs, a close).
    pub fn flush(&mut self) -> Result<()> {
        self.drain_and_flush()
    }

    /// After a send: writes now, unless a message that already arrived waits for the
    /// application (its answer will follow), and the write queue is still small.
    fn drain_and_answer(&mut self) -> Result<()> {
        self.drain();
        let waiting = self.events.iter().any(|e| matches!(e, Event::Message(_)));
        if waiting && self.transport.pending_bytes() < ANSWER_BATCH_BYTES && !self.done {
            return Ok(());
        }
        self.drain_and_flush()
    }

    /// Sends one binary message made of `head` then `payload` (a reliable session's
    /// envelope), copying each byte once, into the frame.
    pub(crate) fn send_parts_at(
        &mut self,
        now: Instant,
        head: &[u8],
        payload: &[u8],
    ) -> Result<()> {
        self.make_room()?;
        self.conn
            .send_parts(now, MessageKind::Binary, head, payload)?;
        self.drain_and_answer()
    }

    /// Sends one fragment of a message (RFC 6455 §5.4); `fin` marks the last one. Every
    /// fragment of a message names the same `kind`. With permessage-deflate negotiated
    /// the message is compressed, each fragment as it is sent.
    pub fn send_fragment(&mut self, kind: MessageKind, payload: Bytes, fin: bool) -> Result<()> {
        self.send_fragment_with(kind, payload, fin, Compression::Auto)
    }

    /// [`send_fragment`](Self::send_fragment), choosing whether the message may be
    /// compressed; the choice made with its first fragment holds for the whole message.
    pub fn send_fragment_with(
        &mut self,
        kind: MessageKind,
        payload: Bytes,
        fin: bool,
        compression: Compression,
    ) -> Result<()> {
        self.make_room()?;
        let now = self.transport.clock().now();
        self.conn
            .send_fragment_with(now, kind, payload, fin, compression)?;
        self.drain_and_flush()
    }

    /// Sends a ping (payload at most 125 bytes). Its pong comes back as [`Event::Pong`]
    /// from [`recv_event`](Self::recv_event).
    pub fn ping(&mut self, payload: impl Into<Bytes>) -> Result<()> {
        self.conn
            .ping(self.transport.clock().now(), payload.into())?;
        self.drain_and_flush()
    }

    /// Starts the closing handshake with `code` and `reason` (at most 123 bytes).
    ///
    /// Returns once the close frame is written. Keep calling [`recv`](Self::recv) until
    /// it returns `Ok(None)`: messages the peer sent before it saw our close still arrive,
    /// then the peer's close completes the handshake (or `close_timeout` expires).
    ///
    /// Messages that [`Sender`]s queued before this call are sent first; senders fail
    /// with [`SendError::Closed`](sockeye_core::SendError::Closed) from now on.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        if let Some(outbox) = self.outbox.clone() {
            outbox.seal();
            loop {
                // Room first: with everything written, a pump that moves nothing waits
                // for the end of our own fragmented message, which the close cuts short.
                self.drain_and_flush()?;
                let before = outbox.lock().commands.len();
                self.pump_outbox();
                let after = outbox.lock().commands.len();
                if after == 0 || after == before || self.conn.state() != State::Open {
                    break;
                }
            }
        }
        self.conn
            .close(self.transport.clock().now(), code, reason)?;
        self.drain_and_flush()
    }

    /// A handle that sends on this connection from other threads while this one blocks
    /// in [`recv`](Self::recv); see [`Sender`]. Every call returns a handle on the same
    /// queue. Fails only if the wake-up pair cannot be made (out of descriptors).
    pub fn sender(&mut self) -> Result<Sender> {
        if let Some(outbox) = &self.outbox {
            return Ok(Sender::new(Arc::clone(outbox)));
        }
        let wake = self.transport.waker()?;
        let outbox = Arc::new(Outbox::new(wake, self.conn.config().max_send_queue_bytes));
        if self.conn.state() != State::Open || self.done {
            outbox.close();
        }
        self.outbox = Some(Arc::clone(&outbox));
        Ok(Sender::new(outbox))
    }

    /// Moves what the senders queued into the core, in order, while the core takes it;
    /// the rest waits for the next call. Closes the outbox once the connection no longer
    /// sends.
    fn pump_outbox(&mut self) {
        let Some(outbox) = self.outbox.clone() else {
            return;
        };
        let mut queue = outbox.lock();
        while let Some(command) = queue.commands.pop_front() {
            let now = self.transport.clock().now();
            match command {
                Command::Send(message, compression) => {
                    let len = message.payload().len();
                    // The core's rule, over the bytes written or not: while some wait, a
                    // message goes on only if it fits under the limit. Without it, each
                    // pump would hand the transport another queue's worth.
                    let waiting = self.transport.pending_bytes() + self.conn.queued_bytes();
                    if waiting > 0 && waiting + len > outbox.limit() {
                        queue
                            .commands
                            .push_front(Command::Send(message, compression));
                        break;
                    }
                    match self.conn.try_send_with(now, message, compression) {
                        Ok(()) => outbox.took(&mut queue, len),
                        // Full or mid-fragments: room comes as the socket takes bytes,
                        // and the owner's own fragmented message ends: try again then.
                        // Closing: nothing more goes out, and the outbox's close below
                        // keeps the message for `Sender::take_unsent`.
                        Err((_, message)) => {
                            queue
                                .commands
                                .push_front(Command::Send(message, compression));
                            break;
                        }
                    }
                }
                Command::Close(code, reason) => {
                    // Already closing is fine: the connection ends all the same.
                    let _ = self.conn.close(now, code, &reason);
                }
            }
        }
        let over = self.conn.state() != State::Open;
        drop(queue);
        if over {
            outbox.close();
        }
    }

    /// How the connection ended, once [`recv`](Self::recv) or
    /// [`recv_event`](Self::recv_event) has reported it.
    pub fn close_info(&self) -> Option<&Close> {
        self.close.as_ref()
    }

    /// Where the connection is in its life.
    pub fn state(&self) -> State {
        self.conn.state()
    }

    /// The subprotocol agreed in the handshake, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The permessage-deflate parameters agreed in the handshake (RFC 7692), if any.
    #[cfg(feature = "deflate")]
    pub fn deflate_params(&self) -> Option<&sockeye_core::handshake::DeflateParams> {
        self.conn.deflate_params()
    }

    /// The memory the permessage-deflate codec holds now (see
    /// [`Connection::deflate_memory`]).
    #[cfg(feature = "deflate")]
    pub fn deflate_memory(&self) -> sockeye_core::DeflateMemory {
        self.conn.deflate_memory()
    }

    /// On a server, the path and query the client requested (`/chat?room=1`).
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// The latest round-trip time measured by a keepalive ping.
    pub fn rtt(&self) -> Option<Duration> {
        self.conn.rtt()
    }

    /// The underlying stream, for socket options. It is in non-blocking mode and must
    /// stay so; reading or writing it directly would corrupt the connection.
    pub fn get_ref(&self) -> &S {
        self.transport.stream()
    }

    /// Writes whatever the core still has queued, so that the next send finds its queue
    /// empty: the core answers [`SendError::Full`](sockeye_core::SendError::Full) only
    /// while bytes wait, and an empty queue accepts any message. Checking first, rather than retrying after `Full`,
    /// spares a clone of every message (for a payload fresh from a `Vec`, that clone
    /// allocates).
    fn make_room(&mut self) -> Result<()> {
        if self.conn.queued_bytes() > 0 {
            self.drain_and_flush()?;
        }
        Ok(())
    }

    /// Feeds the core one input (bytes, EOF, or a passed deadline), then drains it. The
    /// read waits at most until the core's next deadline or `until`, whichever is first.
    fn step(&mut self, until: Option<Instant>) -> Result<()> {
        let deadline = earliest(self.conn.poll_timeout(), until);
        let clock = self.transport.clock();
        let result = match self.transport.read(deadline) {
            Ok(Input::Bytes(data)) => {
                self.conn.handle_bytes(clock.now(), data);
                Ok(())
            }
            Ok(Input::Eof) => {
                self.conn.handle_eof(clock.now());
                Ok(())
            }
            Ok(Input::Timeout | Input::Woken | Input::Flushed) => Ok(()),
            Err(e) if is_write_stall(&e) => {
                // The peer reads nothing: the connection is over, and its `Closed` event
                // says why.
                self.done = true;
                self.failure = Some(ConnectionError::WriteTimeout);
                self.conn.handle_eof(clock.now());
                Ok(())
            }
            Err(e) => {
                // The transport is gone: tell the core, as for an EOF, so it reports the
                // connection closed, then surface the cause.
                self.conn.handle_eof(clock.now());
                Err(Error::Io(e))
            }
        };
        self.drain();
        // The timer: a deadline that passed is acted on whether the read timed out or
        // bytes kept arriving (a spurious call is a no-op for the core).
        let now = clock.now();
        if self.conn.poll_timeout().is_some_and(|d| d <= now) {
            self.conn.handle_timeout(now);
        }
        let flushed = self.drain_and_write();
        result.and(flushed)
    }

    /// Takes what the core has for us: events into the application's queue, up to and
    /// including the next message, and chunks into the write queue. Called after every
    /// input.
    ///
    /// Stopping at a message matters: the core acts on frames received after a message
    /// only once that message has been taken, so the application can answer it (an echo)
    /// before, say, a protocol violation that followed it in the same read closes the
    /// connection.
    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while !self.holding_message {
                let Some(event) = self.conn.poll_event() else {
                    break;
                };
                self.holding_message = matches!(event, Event::Message(_));
                self.events.push_back(event);
                progressed = true;
            }
            while let Some(chunk) = self.conn.poll_transmit() {
                self.transport.queue(chunk);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
    }

    /// [`drain`](Self::drain)s the core, writes the chunks (blocking until the kernel has
    /// taken them all), and shuts the transport down once the core wants to disconnect
    /// and everything is written.
    fn drain_and_flush(&mut self) -> Result<()> {
        self.drain_then(Transport::flush)
    }

    /// [`drain_and_flush`](Self::drain_and_flush) writing only what the socket takes
    /// now: the rest goes out while [`step`](Self::step) waits for input.
    fn drain_and_write(&mut self) -> Result<()> {
        self.drain_then(Transport::write_some)
    }

    fn drain_then(&mut self, write: fn(&mut Transport<S>) -> io::Result<()>) -> Result<()> {
        self.drain();
        if self.done {
            return Ok(());
        }
        if let Err(e) = write(&mut self.transport) {
            // A write failure ends the transport: let the core report it as an EOF. If the
            // core had already closed (we were writing its close frame to a peer that
            // vanished), its `Closed` event already says what happened.
            let was_closed = self.conn.is_closed();
            self.done = true;
            self.conn.handle_eof(self.transport.clock().now());
            self.drain();
            if was_closed {
                return Ok(());
            }
            if is_write_stall(&e) {
                // Reported now and again by the `Closed` event, for the next `recv`.
                self.failure = Some(ConnectionError::WriteTimeout);
                return Err(Error::Connection(ConnectionError::WriteTimeout));
            }
            return Err(Error::Io(e));
        }
        if self.conn.wants_disconnect() && self.transport.is_flushed() {
            self.transport.shutdown(self.linger);
            self.done = true;
        }
        Ok(())
    }
}

impl<S: Stream> WebSocket<S>
where
    S: OverTcp,
{
    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.transport.stream().tcp_stream().peer_addr()
    }

    /// Our address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.transport.stream().tcp_stream().local_addr()
    }
}

impl<S> Drop for WebSocket<S> {
    fn drop(&mut self) {
        // Senders fail from now on instead of waiting for an owner that is gone.
        if let Some(outbox) = &self.outbox {
            outbox.close();
        }
    }
}
