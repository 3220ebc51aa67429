//! One WebSocket connection driven by async methods: each reads the socket (racing the
//! core's next deadline on an `async-io` timer), feeds the core, and writes what it
//! queued.

use std::cell::{OnceCell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_io::{Async, Timer};
use bytes::{Buf, Bytes};
use futures_lite::{future, AsyncWriteExt};
use sockeye_core::time::earliest;
use sockeye_core::{
    Close, CloseCode, Compression, Connection, ConnectionError, Event, Instant, Message,
    MessageKind, State,
};
use sockeye_std::{Clock, ConnectionId, Error, Recv, Result};

use crate::connections::Slot;
use crate::handshake_io::Input;
use crate::sender::{Command, Outbox, OwnerHold, Sender};
use crate::stream::{poll_read_after_short, AsyncStream};

/// Size of the read buffer: one `read` hands the core at most this many bytes.
///
/// One buffer per thread, so its size costs no connection anything. A 64 KiB message
/// and its header never fit a 64 KiB read, so the echo of a peer that keeps several in
/// flight took two reads and one write per message; a read of 256 KiB (as the raw TCP
/// echo of the load benchmark makes) takes several messages, and their answers leave in
/// one write.
const READ_BUF_BYTES: usize = 256 * 1024;

thread_local! {
    /// The read buffer every connection on this thread shares: a read hands its bytes to
    /// the core in the same poll, so the buffer is free again before any other task runs.
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BUF_BYTES].into_boxed_slice());
}

/// Most chunks passed to one vectored write.
const MAX_IOVECS: usize = 64;

/// Reads in a row that found bytes before a connection's task yields to the executor.
const READS_BEFORE_YIELD: u32 = 16;

/// A reactor timer kept for the life of a connection and only ever moved earlier.
///
/// Every wait for the peer races the core's next deadline, which on a busy connection
/// moves later with each message (the keepalive counts from the last bytes received).
/// A timer made for each wait costs an insertion and a removal in the reactor (and a
/// wake-up of its thread) per wait; this one stays armed while the deadline moves
/// later, fires at the earlier instant, and is then armed again for the deadline of
/// that moment, so a busy connection touches the reactor's timers about once per
/// keepalive interval.
struct LazyTimer {
    timer: Timer,
    /// When `timer` fires, if it is armed.
    armed: Option<Instant>,
}

impl Default for LazyTimer {
    fn default() -> Self {
        LazyTimer {
            timer: Timer::never(),
            armed: None,
        }
    }
}

impl LazyTimer {
    /// Whether `deadline` has passed; if not, the task is woken when it does (or
    /// earlier, harmlessly, when it was armed for an earlier deadline).
    fn poll_passed(&mut self, cx: &mut Context<'_>, deadline: Instant, clock: Clock) -> bool {
        loop {
            if self.armed.is_none_or(|at| at > deadline) {
                self.timer.set_at(clock.to_std(deadline));
                self.armed = Some(deadline);
            }
            match Pin::new(&mut self.timer).poll(cx) {
                Poll::Ready(_) => {
                    let fired = self.armed.take();
                    if fired.is_some_and(|at| at >= deadline) {
                        return true;
                    }
                    // Armed for a deadline that has since moved later: arm for this one.
                }
                Poll::Pending => return false,
            }
        }
    }
}

/// An open WebSocket connection over `Async<TcpStream>`, or over any other
/// [`AsyncStream`] (an `Async<UnixStream>`, a TLS session: see
/// [`WebSocket::client`] and [`WebSocket::server`]).
///
/// Nothing runs in the background: the connection makes progress while one of its async
/// methods is awaited. A task that only sends should still call [`recv`](Self::recv)
/// (or [`recv_event`](Self::recv_event)) regularly, or the peer's pings and close go
/// unanswered.
///
/// ## Cancel safety
///
/// - [`recv`](Self::recv), [`recv_event`](Self::recv_event),
///   [`recv_event_until`](Self::recv_event_until), [`ready`](Self::ready) and
///   [`flush`](Self::flush) are cancel-safe: dropping one loses no byte and no event (a
///   partial write is remembered; a read hands its bytes to the core in the same poll).
/// - [`try_send`](Self::try_send) is not async: the message is queued, or handed back.
/// - [`send`](Self::send) queues the message before its first `await` when the queue has
///   room, so a dropped `send` future has either queued it (it goes out with the next
///   call that drives the connection) or, when the queue was full, never taken it into
///   the connection: to be told, await [`ready`](Self::ready) and call
///   [`try_send`](Self::try_send).
///
/// To send from other tasks or threads while this one awaits `recv`, take a [`Sender`]
/// from [`sender`](Self::sender).
pub struct WebSocket<S = Async<TcpStream>> {
    conn: Connection,
    stream: S,
    clock: Clock,
    /// Chunks taken from the core and not yet fully written.
    pending: VecDeque<Bytes>,
    pending_bytes: usize,
    /// The most bytes `try_send` lets wait (the core's `max_send_queue_bytes`).
    max_queue_bytes: usize,
    /// How long a write may wait for the peer to read (the core's `pong_timeout`).
    write_timeout: Duration,
    events: VecDeque<Event>,
    /// Reads that found bytes since this task last let others run.
    reads_in_a_row: u32,
    /// The last read did not fill the read buffer: the socket is likely empty.
    short_read: bool,
    /// The reactor timer for the core's deadlines, kept between waits.
    timer: LazyTimer,
    /// An event was returned since the last write: a `send` now answers it.
    answering: bool,
    /// `events` ends with a message the application has not taken yet.
    holding_message: bool,
    close: Option<Close>,
    /// Why the socket failed, when the core cannot know it (a write that timed out):
    /// the `Closed` event reports this instead of the end of stream the core saw.
    failure: Option<ConnectionError>,
    /// The socket is shut down; nothing more will happen.
    done: bool,
    linger: Duration,
    path: Option<String>,
    protocol: Option<String>,
    /// On a server's connection, its id and its place among the server's connections.
    slot: Option<Slot>,
    /// The queue [`Sender`]s feed, once [`sender`](Self::sender) made one.
    outbox: OnceCell<OwnerHold>,
    /// The owner is sending a fragmented message: senders' messages wait for its end.
    mid_fragments: bool,
}

impl<S> fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("state", &self.conn.state())
            .field("path", &self.path)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// What the connection was made with, besides the core machine and the socket.
pub(crate) struct Parts {
    pub(crate) clock: Clock,
    pub(crate) max_queue_bytes: usize,
    pub(crate) write_timeout: Duration,
    pub(crate) linger: Duration,
    pub(crate) path: Option<String>,
    pub(crate) protocol: Option<String>,
    /// On a server's connection, its id and its place among the server's connections.
    pub(crate) slot: Option<Slot>,
}

impl<S: AsyncStream> WebSocket<S> {
    /// Wraps a connection fresh from its handshake; what it already queued (a server's
    /// 101) goes out with the first call that drives it, or at once with `flush`.
    pub(crate) fn new(conn: Connection, stream: S, parts: Parts) -> WebSocket<S> {
        WebSocket {
            conn,
            stream,
            clock: parts.clock,
            pending: VecDeque::new(),
            pending_bytes: 0,
            max_queue_bytes: parts.max_queue_bytes,
            write_timeout: parts.write_timeout,
            events: VecDeque::new(),
            reads_in_a_row: 0,
            short_read: false,
            timer: LazyTimer::default(),
            answering: false,
            holding_message: false,
            close: None,
            failure: None,
            done: false,
            linger: parts.linger,
            path: parts.path,
            protocol: parts.protocol,
            slot: parts.slot,
            outbox: OnceCell::new(),
            mid_fragments: false,
        }
    }

    /// The id its [`Server`](crate::Server) gave this connection (unique among that
    /// server's connections); `None` on a client, or a
    /// [`WebSocket::server`](Self::server) upgraded without a server.
    pub fn id(&self) -> Option<ConnectionId> {
        self.slot.as_ref().map(Slot::id)
    }

    /// The current time on the clock this connection's deadlines count from (for
    /// [`recv_event_until`](Self::recv_event_until)).
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Receives the next message. Pings are answered and pongs recorded on the way.
    /// Returns `Ok(None)` once the closing handshake has completed and the socket is shut
    /// down; an abnormal end is an error. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<Message>> {
        loop {
            match self.recv_event().await? {
                Some(Event::Message(message)) => return Ok(Some(message)),
                Some(Event::Closed(close)) => {
                    return match close.error {
                        Some(e) => Err(Error::Connection(e)),
                        None => Ok(None),
                    };
                }
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// The next event: a message, a pong (with its round-trip time), or the close.
    /// [`Event::Closed`] comes once the socket is shut down; after it, `Ok(None)`
    /// forever. Cancel-safe.
    pub async fn recv_event(&mut self) -> Result<Option<Event>> {
        match self.recv_event_until(None).await? {
            Recv::Ready(event) => Ok(Some(event)),
            Recv::TimedOut | Recv::Closed => Ok(None),
        }
    }

    /// Like [`recv`](Self::recv), waiting at most `timeout`: [`Recv::Ready`] with the next
    /// message, [`Recv::TimedOut`] if none arrived in time (still open), or
    /// [`Recv::Closed`] once the closing handshake has completed (and on every call
    /// after). A connection that failed is reported once as [`Error::Connection`], then
    /// as `Closed`, so a loop that retries on `TimedOut` ends with the connection.
    /// Cancel-safe.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Recv<Message>> {
        let deadline = self.clock.now() + timeout;
        loop {
            match self.recv_event_until(Some(deadline)).await? {
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

    /// Like [`recv_event`](Self::recv_event), waiting at most `timeout` (the answers of
    /// [`recv_event_until`](Self::recv_event_until)). Cancel-safe.
    pub async fn recv_event_timeout(&mut self, timeout: Duration) -> Result<Recv<Event>> {
        let deadline = self.clock.now() + timeout;
        self.recv_event_until(Some(deadline)).await
    }

    /// Like [`recv_event`](Self::recv_event), waiting until `deadline` at most (on this
    /// connection's clock, [`now`](Self::now); `None`: for ever). Answers
    /// [`Recv::Ready`] with the next event ([`Event::Closed`] once, at the end),
    /// [`Recv::TimedOut`] when `deadline` passes first (still open), and [`Recv::Closed`]
    /// on every call after the end was returned. The core's own timers keep firing
    /// meanwhile. Cancel-safe.
    pub async fn recv_event_until(&mut self, deadline: Option<Instant>) -> Result<Recv<Event>> {
        loop {
            match self.events.pop_front() {
                Some(Event::Closed(mut close)) => {
                    if let Some(error) = self.failure.take() {
                        close.code = error.close_code();
                        close.error = Some(error);
                    }
                    if let Some(outbox) = self.outbox.get() {
                        outbox.0.close();
                    }
                    // Finish the socket first, so a returned `Closed` means it is over.
                    while !self.done {
                        let _ = self.step(None).await;
                    }
                    self.close = Some(close.clone());
                    return Ok(Recv::Ready(Event::Closed(close)));
                }
                Some(event) => {
                    if matches!(event, Event::Message(_)) {
                        self.holding_message = false;
                    }
                    self.answering = true;
                    return Ok(Recv::Ready(event));
                }
                None if self.done => return Ok(Recv::Closed),
                None => {
                    // Take what the senders queued, then write it before reading more.
                    self.pump_outbox();
                    self.flush().await?;
                    if self.events.is_empty() {
                        if deadline.is_some_and(|d| self.clock.now() >= d) {
                            return Ok(Recv::TimedOut);
                        }
                        self.step(deadline).await?;
                    }
                }
            }
        }
    }

    /// Queues `message` as one frame if the write queue has room, without waiting;
    /// otherwise hands it back as [`Error::Full`]: await [`ready`](Self::ready), then
    /// try again. Any other error means the connection cannot send any more (closed, or
    /// its socket failed). The bytes go out with the next call that drives the
    /// connection ([`flush`](Self::flush) to push them now).
    pub fn try_send(&mut self, message: Message) -> Result<()> {
        self.try_send_with(message, Compression::Auto)
    }

    /// [`try_send`](Self::try_send), choosing whether this message may be compressed
    /// when permessage-deflate was negotiated: [`Compression::Never`] for a message
    /// that holds a secret next to text an attacker controls (see [`Compression`]).
    pub fn try_send_with(&mut self, message: Message, compression: Compression) -> Result<()> {
        let len = message.payload().len();
        // Queued bytes wait here or, until the next write takes them, in the core.
        let queued = self.pending_bytes + self.conn.queued_bytes();
        if queued > 0 && queued + len > self.max_queue_bytes {
            return Err(Error::Full(message));
        }
        match self.conn.send_with(self.clock.now(), message, compression) {
            Ok(()) => {
                // The frame stays in the core until the next write drains it: small
                // answers to one read then leave as one chunk, not one per message.
                self.drain_events();
                Ok(())
            }
            Err(e) => Err(Error::Send(e)),
        }
    }

    /// Waits until [`try_send`](Self::try_send) of a message of any size would queue it:
    /// every queued byte is written. Cancel-safe.
    pub async fn ready(&mut self) -> Result<()> {
        self.flush().await
    }

    /// Sends `message` as one frame and waits until it is written to the socket; when
    /// the queue is full, first waits for room. This is the backpressure: no queue grows
    /// past `Config::max_send_queue_bytes`. See the type's docs for cancel safety.
    ///
    /// One exception keeps a busy connection to one write per batch: a `send` after a
    /// [`recv`](Self::recv) (since the last write) while more messages the connection
    /// already read wait for `recv` returns once the message is queued, and it goes out
    /// with the next `recv` (which writes every queued byte before it waits for the
    /// peer), [`ready`](Self::ready) or [`flush`](Self::flush). A task that only sends
    /// has every message written before `send` returns.
    pub async fn send(&mut self, message: Message) -> Result<()> {
        self.send_with(message, Compression::Auto).await
    }

    /// [`send`](Self::send), choosing whether this message may be compressed, as
    /// [`try_send_with`](Self::try_send_with) does. Cancel safety as for `send`.
    pub async fn send_with(&mut self, message: Message, compression: Compression) -> Result<()> {
        let mut message = message;
        loop {
            match self.try_send_with(message, compression) {
                // The application answers what it received, and more it read waits:
                // the write joins theirs (an echo loop writes once per batch), as `recv`
                // writes before it waits. A task that only sends writes every message.
                Ok(()) if self.answering && !self.events.is_empty() => return Ok(()),
                Ok(()) => return self.flush().await,
                Err(Error::Full(back)) => {
                    message = back;
                    self.flush().await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends one fragment of a message (RFC 6455 §5.4); `fin` marks the last one.
    pub async fn send_fragment(
        &mut self,
        kind: MessageKind,
        payload: Bytes,
        fin: bool,
    ) -> Result<()> {
        self.send_fragment_with(kind, payload, fin, Compression::Auto)
            .await
    }

    /// [`send_fragment`](Self::send_fragment), choosing whether the message may be
    /// compressed; the choice made with its first fragment holds for the whole message.
    pub async fn send_fragment_with(
        &mut self,
        kind: MessageKind,
        payload: Bytes,
        fin: bool,
        compression: Compression,
    ) -> Result<()> {
        self.flush().await?;
        self.conn
            .send_fragment_with(self.clock.now(), kind, payload, fin, compression)?;
        self.mid_fragments = !fin;
        self.flush().await
    }

    /// Sends a ping (payload at most 125 bytes); its pong comes back as [`Event::Pong`].
    pub async fn ping(&mut self, payload: impl Into<Bytes>) -> Result<()> {
        self.conn.ping(self.clock.now(), payload.into())?;
        self.flush().await
    }

    /// Starts the closing handshake with `code` and `reason` (at most 123 bytes) and
    /// writes the close frame. Keep calling [`recv`](Self::recv) until `Ok(None)`: the
    /// peer's close completes the handshake (or `close_timeout` expires).
    ///
    /// Messages that [`Sender`]s queued before this call are sent first; senders fail
    /// with [`SendError::Closed`](sockeye_core::SendError::Closed) from now on.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        if let Some(outbox) = self.outbox.get().map(|hold| Arc::clone(&hold.0)) {
            outbox.seal();
            loop {
                // Room first: with everything written, each pump moves at least one
                // message unless our own fragmented message holds them back.
                self.flush().await?;
                let before = outbox.lock().commands.len();
                self.pump_outbox();
                let after = outbox.lock().commands.len();
                if after == 0 || after == before || self.conn.state() != State::Open {
                    break;
                }
            }
        }
        self.conn.close(self.clock.now(), code, reason)?;
        self.flush().await
    }

    /// A handle that sends on this connection from other tasks or threads while this
    /// one awaits [`recv`](Self::recv); see [`Sender`] (its cost, its cancel safety).
    /// Every call returns a handle on the same queue.
    pub fn sender(&self) -> Sender {
        let hold = self.outbox.get_or_init(|| {
            let outbox = Arc::new(Outbox::new(self.max_queue_bytes));
            if self.conn.state() != State::Open || self.done {
                outbox.close();
            }
            OwnerHold(outbox)
        });
        Sender::new(Arc::clone(&hold.0))
    }

    /// Moves what the senders queued into the core, in order, while the core takes it;
    /// the rest waits for the next call. Closes the outbox once the connection no longer
    /// sends.
    fn pump_outbox(&mut self) {
        let Some(outbox) = self.outbox.get().map(|hold| Arc::clone(&hold.0)) else {
            return;
        };
        let mut queue = outbox.lock();
        let before = queue.commands.len();
        while let Some(command) = queue.commands.pop_front() {
            let now = self.clock.now();
            match command {
                Command::Send(message, compression) => {
                    let len = message.payload().len();
                    // The core's rule, over the bytes written or not: while some wait, a
                    // message goes on only if it fits under the limit.
                    let waiting = self.pending_bytes + self.conn.queued_bytes();
                    if waiting > 0 && waiting + len > outbox.limit() {
                        queue
                            .commands
                            .push_front(Command::Send(message, compression));
                        break;
                    }
                    match self.conn.try_send_with(now, message, compression) {
                        Ok(()) => Outbox::took(&mut queue, len),
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
        let moved = queue.commands.len() != before;
        outbox.taken(queue, moved);
        if self.conn.state() != State::Open {
            outbox.close();
        }
        self.drain_events();
    }

    /// Writes every queued byte (shutting the socket down once the core is done with
    /// it). A peer that takes nothing for `pong_timeout` fails the write with
    /// [`Error::Connection`]`(`[`ConnectionError::WriteTimeout`]`)`, and the next
    /// [`recv`](Self::recv) says the same. Cancel-safe: a partial write is remembered.
    pub async fn flush(&mut self) -> Result<()> {
        self.answering = false;
        self.drain();
        if self.done {
            return Ok(());
        }
        if let Err(e) = self.write_pending().await {
            // A failed write ends the socket: the core hears it as an EOF. If it had
            // closed already, its `Closed` event says what happened.
            let was_closed = self.conn.is_closed();
            self.done = true;
            self.conn.handle_eof(self.clock.now());
            self.drain();
            if was_closed {
                return Ok(());
            }
            if e.kind() == io::ErrorKind::TimedOut {
                // Reported now and again by the `Closed` event, for the next `recv`.
                self.failure = Some(ConnectionError::WriteTimeout);
                return Err(Error::Connection(ConnectionError::WriteTimeout));
            }
            return Err(Error::Io(e));
        }
        if self.conn.wants_disconnect() && self.pending.is_empty() {
            self.shutdown().await;
        }
        Ok(())
    }

    /// Queues one binary message made of `head` then `payload` (a reliable session's
    /// envelope) without waiting: the session's window bounds how much that is.
    pub(crate) fn queue_parts(&mut self, now: Instant, head: &[u8], payload: &[u8]) -> Result<()> {
        self.conn
            .send_parts(now, MessageKind::Binary, head, payload)?;
        self.drain();
        Ok(())
    }

    /// How the connection ended, once [`recv`](Self::recv) reported it.
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

    /// The stream the connection runs over (a TLS session's details, socket options).
    /// Reading or writing it directly would corrupt the connection.
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// One input for the core (bytes, EOF, or a passed deadline), then its timers. The
    /// read races the core's next deadline and `until`, whichever is first.
    async fn step(&mut self, until: Option<Instant>) -> Result<()> {
        // Every queued byte goes out before the task waits for the peer: a deferred
        // answer (see `send`) must not wait for bytes the peer only sends after it.
        self.flush().await?;
        if self.done {
            return Ok(());
        }
        let deadline = earliest(self.conn.poll_timeout(), until);
        // Bytes already waiting are read at once; else wait for some, or the deadline.
        let input = self.read_until(deadline).await;
        let result = match input {
            // Senders queued commands: the caller's loop takes them.
            Ok(None) => Ok(()),
            Ok(Some(Input::Bytes(_))) => {
                // A peer that keeps the socket full would never let the read wait, and
                // this task would never let the executor run the others.
                self.reads_in_a_row += 1;
                if self.reads_in_a_row >= READS_BEFORE_YIELD {
                    self.reads_in_a_row = 0;
                    future::yield_now().await;
                }
                Ok(())
            }
            Ok(Some(Input::Eof)) => {
                self.conn.handle_eof(self.clock.now());
                Ok(())
            }
            Err(e) => {
                self.conn.handle_eof(self.clock.now());
                Err(Error::Io(e))
            }
            Ok(Some(Input::Timeout)) => Ok(()),
        };
        self.drain();
        let now = self.clock.now();
        if self.conn.poll_timeout().is_some_and(|d| d <= now) {
            self.conn.handle_timeout(now);
        }
        let flushed = self.flush().await;
        result.and(flushed)
    }

    /// Takes what the core has: events up to and including the next message (so the
    /// application can answer it before the core acts on later frames), and chunks.
    fn drain(&mut self) {
        loop {
            let mut progressed = self.drain_events();
            while let Some(chunk) = self.conn.poll_transmit() {
                if !chunk.is_empty() {
                    self.pending_bytes += chunk.len();
                    self.pending.push_back(chunk);
                }
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
    }

    /// Takes the core's events up to and including the next message; whether it took
    /// any. Chunks they queue (a pong) stay in the core for the next [`drain`](Self::drain).
    fn drain_events(&mut self) -> bool {
        let mut progressed = false;
        while !self.holding_message {
            let Some(event) = self.conn.poll_event() else {
                break;
            };
            self.holding_message = matches!(event, Event::Message(_));
            self.events.push_back(event);
            progressed = true;
        }
        progressed
    }

    /// Writes `pending` with vectored writes, each bounded by `write_timeout`.
    async fn write_pending(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (slot, chunk) in slices.iter_mut().zip(&self.pending) {
                *slot = IoSlice::new(chunk);
                count += 1;
            }
            let write = self.stream.write_vectored(&slices[..count]);
            let timeout = async {
                Timer::after(self.write_timeout).await;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer took no bytes for pong_timeout",
                ))
            };
            let written = match future::or(write, timeout).await {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.consume(written);
        }
        // A stream that buffers (TLS) writes what it holds; a socket's flush does nothing.
        let timeout = async {
            Timer::after(self.write_timeout).await;
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer took no bytes for pong_timeout",
            ))
        };
        future::or(self.stream.flush(), timeout).await
    }

    /// Drops `n` written bytes from the front of `pending`.
    fn consume(&mut self, mut n: usize) {
        self.pending_bytes -= n;
        while n > 0 {
            let Some(front) = self.pending.front_mut() else {
                return;
            };
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.pending.pop_front();
        }
    }

    /// Reads once, or gives up at `deadline` (`Timeout`), or returns `None` as soon as
    /// [`Sender`]s have queued commands (unless the owner's own fragmented message holds
    /// them back). What the stream has goes into
    /// this thread's read buffer and to the core within the same poll, so no connection
    /// keeps a buffer between reads and a cancelled read loses nothing.
    ///
    /// After a read that did not fill the buffer the socket is most likely empty, so the
    /// next one waits for readiness first (see `poll_read_after_short`) instead of
    /// asking the socket in vain.
    async fn read_until(&mut self, deadline: Option<Instant>) -> io::Result<Option<Input>> {
        let clock = self.clock;
        // Only an open connection takes commands (a closing one closes the outbox at the
        // next pump): waking for them otherwise would spin while the close finishes.
        let outbox = match self.outbox.get() {
            Some(hold) if !self.mid_fragments && self.conn.state() == State::Open => Some(&*hold.0),
            _ => None,
        };
        let conn = &mut self.conn;
        let stream = &mut self.stream;
        let short_read = &mut self.short_read;
        let timer = &mut self.timer;
        future::poll_fn(|cx| {
            let read = READ_BUF.with(|buf| {
                let mut buf = buf.borrow_mut();
                loop {
                    let polled = if *short_read {
                        let polled = poll_read_after_short(&mut *stream, cx, &mut buf[..]);
                        // Waiting now: once woken, read (asking for readiness again would
                        // only re-arm it, for ever).
                        *short_read = polled.is_ready();
                        polled
                    } else {
                        Pin::new(&mut *stream).poll_read(cx, &mut buf[..])
                    };
                    return match polled {
                        Poll::Ready(Ok(0)) => Poll::Ready(Ok(Input::Eof)),
                        Poll::Ready(Ok(n)) => {
                            *short_read = n < buf.len();
                            conn.handle_bytes(clock.now(), &buf[..n]);
                            Poll::Ready(Ok(Input::Bytes(n)))
                        }
                        Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                        Poll::Pending => Poll::Pending,
                    };
                }
            });
            if read.is_ready() {
                return read.map(|read| read.map(Some));
            }
            if outbox.is_some_and(|outbox| outbox.poll_commands(cx)) {
                return Poll::Ready(Ok(None));
            }
            match deadline {
                Some(at) if timer.poll_passed(cx, at, clock) => {
                    Poll::Ready(Ok(Some(Input::Timeout)))
                }
                _ => Poll::Pending,
            }
        })
        .await
    }

    /// Closes our direction (a TLS `close_notify`, then FIN), then reads and discards
    /// until the peer closes too or `linger` passes, so unread bytes do not turn into a
    /// reset that eats our close frame.
    async fn shutdown(&mut self) {
        self.done = true;
        self.pending.clear();
        self.pending_bytes = 0;
        let linger = self.linger;
        let stream = &mut self.stream;
        let finish = async {
            if stream.close().await.is_err() || stream.shutdown_write().is_err() {
                return;
            }
            loop {
                let read = future::poll_fn(|cx| {
                    READ_BUF
                        .with(|buf| Pin::new(&mut *stream).poll_read(cx, &mut buf.borrow_mut()[..]))
                })
                .await;
                match read {
                    Ok(0) => break,
                    Err(e) if e.kind() != io::ErrorKind::Interrupted => break,
                    _ => {}
                }
            }
        };
        future::or(finish, async {
            Timer::after(linger).await;
        })
        .await;
    }
}

impl WebSocket<Async<TcpStream>> {
    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.get_ref().peer_addr()
    }

    /// Our address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.get_ref().local_addr()
    }

    /// The underlying socket, for socket options. Reading or writing it directly would
    /// corrupt the connection.
    pub fn get_ref(&self) -> &TcpStream {
        self.stream.get_ref()
    }
}
