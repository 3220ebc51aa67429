//! One WebSocket connection of the server, shared between its own thread (which reads)
//! and whoever delivers to it (other connections' threads, the push API, the hub timer).
//!
//! The core's `Connection` sits behind a mutex with the write half of the socket and a
//! bounded queue of chunks not yet written. Anyone may queue a message; writes are *tries*:
//! the socket's send timeout is a few milliseconds, so a full kernel buffer never holds a
//! deliverer for long, and what was not written stays queued for the connection's own
//! thread to retry on a short tick. When a consumer lets more than `max_queue_bytes` pile
//! up it is a **slow consumer**: the message is not queued, the connection is closed with
//! 1008 (policy violation: the client broke the server's rule of reading what it is
//! sent), and its thread drops the socket once the closing handshake ends or times out.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use sockeye_core::auth::UserId;
use sockeye_core::hub::ConnId;
use sockeye_core::{CloseCode, Connection, Event, Instant, Message};

use crate::time;
use crate::transport::drop_written;

/// How long one write may block on a full socket before it is left for later.
pub(crate) const WRITE_TRY: Duration = Duration::from_millis(2);

/// How soon the connection's thread retries writing a queue left unwritten.
pub(crate) const FLUSH_RETRY: Duration = Duration::from_millis(10);

/// Most chunks handed to one `write_vectored`.
const MAX_IOVECS: usize = 32;

/// The answer to queuing a message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Queued (and probably written already).
    Yes,
    /// The connection is closing or closed; the message was not queued.
    Closed,
    /// The queue was full: the connection is now being closed as a slow consumer.
    SlowConsumer,
}

/// The shared half of a connection.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    pub(crate) id: ConnId,
    pub(crate) user: UserId,
    writer: Mutex<Writer>,
}

/// Everything behind the connection's lock.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) conn: Connection,
    stream: TcpStream,
    pending: VecDeque<Bytes>,
    pending_bytes: usize,
    max_queue_bytes: usize,
    /// The socket has been shut down; nothing more is written.
    dead: bool,
}

impl ConnHandle {
    /// Wraps a connection fresh from `Request::accept` (its 101 response queued) and the
    /// socket's write half. Out of line, so the handle is built in a frame of its own,
    /// not beside the `Connection` in the caller's (the server's connection threads keep
    /// every stack page they touch).
    #[inline(never)]
    pub(crate) fn new(
        id: ConnId,
        user: UserId,
        conn: Connection,
        stream: TcpStream,
        max_queue_bytes: usize,
    ) -> io::Result<Arc<ConnHandle>> {
        stream.set_write_timeout(Some(WRITE_TRY))?;
        Ok(Arc::new(ConnHandle {
            id,
            user,
            writer: Mutex::new(Writer {
                conn,
                stream,
                pending: VecDeque::new(),
                pending_bytes: 0,
                max_queue_bytes,
                dead: false,
            }),
        }))
    }

    /// Locks the connection. A thread that panicked while holding the lock leaves a
    /// connection that is only ever closed, so a poisoned lock is still usable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a text message and tries to write it.
    pub(crate) fn send_text(&self, text: String) -> Queued {
        self.lock().send(Message::text(text))
    }

    /// Starts the closing handshake (a no-op if it has started already).
    pub(crate) fn close(&self, code: CloseCode, reason: &str) {
        self.lock().close(code, reason);
    }
}

impl Writer {
    /// Queues `message` unless the queue is over its limit (see [`Queued`]).
    pub(crate) fn send(&mut self, message: Message) -> Queued {
        if self.dead || !matches!(self.conn.state(), sockeye_core::State::Open) {
            return Queued::Closed;
        }
        let len = message.payload().len();
        if self.pending_bytes + len > self.max_queue_bytes && self.pending_bytes > 0 {
            self.close(CloseCode::POLICY_VIOLATION, "slow consumer");
            return Queued::SlowConsumer;
        }
        if self.conn.send(time::now(), message).is_err() {
            return Queued::Closed;
        }
        let was_idle = self.pending.is_empty();
        self.take_transmits();
        // A queue that was already waiting is retried by the connection's thread; trying
        // here too would only block the deliverer on a socket we know is full.
        if was_idle {
            self.try_flush();
        }
        Queued::Yes
    }

    /// Starts the closing handshake with `code` and queues the close frame.
    pub(crate) fn close(&mut self, code: CloseCode, reason: &str) {
        if self.conn.close(time::now(), code, reason).is_ok() {
            self.take_transmits();
            self.try_flush();
        }
    }

    /// Moves the core's outgoing chunks into the write queue.
    pub(crate) fn take_transmits(&mut self) {
        while let Some(chunk) = self.conn.poll_transmit() {
            if !chunk.is_empty() && !self.dead {
                self.pending_bytes += chunk.len();
                self.pending.push_back(chunk);
            }
        }
    }

    /// Drains events from the core: messages go to `messages`; returns whether the
    /// connection reported itself closed.
    pub(crate) fn take_events(&mut self, messages: &mut Vec<Message>) -> bool {
        let mut closed = false;
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::Message(m) => messages.push(m),
                Event::Closed(_) => closed = true,
                _ => {}
            }
        }
        self.take_transmits();
        closed
    }

    /// Writes as much of the queue as the socket takes within [`WRITE_TRY`] per write.
    pub(crate) fn try_flush(&mut self) {
        while !self.pending.is_empty() && !self.dead {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let count = self.pending.len().min(MAX_IOVECS);
            for (slot, chunk) in slices.iter_mut().zip(&self.pending) {
                *slot = IoSlice::new(chunk);
            }
            match self.stream.write_vectored(&slices[..count]) {
                Ok(0) => self.kill(),
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return
                }
                Err(_) => self.kill(),
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.pending_bytes -= n;
        drop_written(&mut self.pending, n);
    }

    /// Whether chunks wait to be written.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// When the connection's thread must next act: the core's deadline, or soon if the
    /// queue waits to be written.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let retry = self.has_pending().then(|| time::now() + FLUSH_RETRY);
        match (self.conn.poll_timeout(), retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The connection is over: the core wants the transport gone and has nothing left to
    /// say, or the socket failed.
    pub(crate) fn is_finished(&self) -> bool {
        self.dead
            || (self.conn.wants_disconnect() && (!self.has_pending() || self.conn.is_closed()))
    }

    /// Shuts the socket down in both directions, which also wakes the reading thread.
    pub(crate) fn kill(&mut self) {
        self.dead = true;
        self.pending.clear();
        self.pending_bytes = 0;
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Shuts down our sending side once everything is written (the polite end of a
    /// connection: the server closes the TCP connection first, RFC 6455 §7.1.1).
    pub(crate) fn finish(&mut self) {
        if !self.dead {
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        self.dead = true;
    }
}
