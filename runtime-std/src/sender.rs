//! [`Sender`]: send on a [`WebSocket`](crate::WebSocket) from other threads while its
//! owner blocks in `recv`.
//!
//! # Design
//!
//! The core [`Connection`](sockeye_core::Connection) stays single-owner: only the thread
//! that holds the `WebSocket` ever touches it. A `Sender` does not frame or write
//! anything itself; it puts a command (a message, or the close) into an *outbox* shared
//! with the owner, a queue behind a `Mutex`, and writes a byte to a wake-up pair
//! (`UnixStream::pair`) whose other end the owner's `poll(2)` waits on next to the
//! socket. The owner, inside `recv`, wakes at once, moves the commands into the core
//! in order, and writes the frames without blocking, still reading while the peer
//! drains them. So the core needs no lock, no second thread writes the socket, and
//! frames from the owner and from every `Sender` never interleave.
//!
//! The outbox is bounded like the core's own queue: it takes a message while it holds
//! fewer than `Config::max_send_queue_bytes` payload bytes (an empty outbox takes any
//! message). Past that, [`Sender::try_send`] hands the message back as
//! [`Error::Full`] and [`Sender::send`] blocks until the owner has moved messages on.
//! Commands move on only while the owner is inside a receive (`recv`, `recv_event`,
//! `recv_timeout`, `recv_event_until`) or `close`, so the owner must keep receiving (a
//! reader thread does) for a `Sender` to make progress; its own blocking `send`s go
//! first meanwhile.
//!
//! # What `Ok` means
//!
//! [`Sender::send`] and [`Sender::try_send`] answer `Ok` once the message is *accepted
//! into the outbox*, not once it is written, let alone received: a plain WebSocket
//! never confirms delivery (use the reliable mode, `sockeye.v1`, for that). Nothing is
//! lost silently, though: when the connection ends with messages still in the outbox
//! (never moved into the connection), the outbox keeps them, in order, and
//! [`Sender::take_unsent`] gives them back. Messages already moved into the connection
//! are the connection's: like the owner's own sends, they are written unless the
//! connection ends first.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use sockeye_core::{CloseCode, Compression, Message, SendError};

use crate::error::{Error, Result};

/// Most bytes of a close reason: the close frame's payload is at most 125 bytes, two of
/// them the code.
const MAX_CLOSE_REASON: usize = 123;

/// What a [`Sender`] asked the owner to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send a message.
    Send(Message, Compression),
    /// Start the closing handshake.
    Close(CloseCode, String),
}

/// The commands waiting for the owner, and whether any more may come.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub(crate) commands: VecDeque<Command>,
    /// Payload bytes of the messages in `commands`.
    bytes: usize,
    /// The connection takes no more commands: it is closing, closed, or its owner is
    /// gone.
    closed: bool,
    /// The connection ended: the messages in `commands` never left and wait for
    /// [`Sender::take_unsent`]; the owner takes nothing more.
    ended: bool,
}

/// The outbox shared by a `WebSocket` and its senders.
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    /// Signalled whenever the owner takes commands or closes the outbox.
    room: Condvar,
    /// The write end of the owner's wake-up pair.
    wake: UnixStream,
    /// The payload bytes the queue takes before it is full.
    limit: usize,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// An outbox that wakes its owner through `wake` and holds about `limit` bytes.
    pub(crate) fn new(wake: UnixStream, limit: usize) -> Outbox {
        Outbox {
            queue: Mutex::new(Queue::default()),
            room: Condvar::new(),
            wake,
            limit,
        }
    }

    /// The payload bytes the queue takes before it is full.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The queue, for the owner to take commands (then [`took`](Self::took)).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Queue> {
        // A sender that panicked while holding the lock left the queue consistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The owner took a message of `len` payload bytes from the queue: they are free
    /// again.
    pub(crate) fn took(&self, queue: &mut Queue, len: usize) {
        queue.bytes -= len;
        self.room.notify_all();
    }

    /// Takes no more commands, keeping those already queued for the owner.
    pub(crate) fn seal(&self) {
        self.lock().closed = true;
        self.room.notify_all();
    }

    /// The connection ended: no more commands will be taken and every sender fails; the
    /// messages still waiting are kept, in order, for [`take_unsent`](Self::take_unsent)
    /// (a close waiting is dropped: the connection is over anyway).
    pub(crate) fn close(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.ended = true;
        queue
            .commands
            .retain(|command| matches!(command, Command::Send(..)));
        if queue.commands.is_empty() {
            queue.commands = VecDeque::new();
        }
        queue.bytes = 0;
        self.room.notify_all();
    }

    /// Once the connection ended, the messages it never took, in order (removed); none
    /// before.
    fn take_unsent(&self) -> Vec<Message> {
        let mut queue = self.lock();
        if !queue.ended {
            return Vec::new();
        }
        std::mem::take(&mut queue.commands)
            .into_iter()
            .filter_map(|command| match command {
                Command::Send(message, _) => Some(message),
                Command::Close(..) => None,
            })
            .collect()
    }

    /// Queues `command` if there is room; `block` waits for room. Hands the message
    /// back when full.
    fn push(&self, command: Command, block: bool) -> Result<()> {
        let len = match &command {
            Command::Send(message, _) => message.payload().len(),
            Command::Close(..) => 0,
        };
        let mut queue = self.lock();
        loop {
            if queue.closed {
                return Err(Error::Send(SendError::Closed));
            }
            // A close takes no room, so it never waits (a shutdown closing many
            // connections must not stall on one whose queue is over the limit).
            let close = matches!(command, Command::Close(..));
            if close || queue.bytes == 0 || queue.bytes + len <= self.limit {
                break;
            }
            if !block {
                return match command {
                    Command::Send(message, _) => Err(Error::Full(message)),
                    Command::Close(..) => unreachable!("a close takes no room"),
                };
            }
            queue = self.room.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
        if matches!(command, Command::Close(..)) {
            // Nothing may follow the close.
            queue.closed = true;
        }
        queue.bytes += len;
        queue.commands.push_back(command);
        drop(queue);
        self.wake()
    }

    /// Wakes the owner's wait. A full pair already holds a wake-up, so that is fine.
    fn wake(&self) -> Result<()> {
        match (&self.wake).write(&[1]) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            // The owner is gone: the queue is closed, or is about to be.
            Err(_) => Err(Error::Send(SendError::Closed)),
        }
    }
}

/// A handle that sends on a [`WebSocket`](crate::WebSocket) from any thread, made by
/// [`WebSocket::sender`](crate::WebSocket::sender). Clone it freely: every clone feeds
/// the same connection, and messages from one thread go out in the order it sent them.
///
/// Messages reach the wire while the `WebSocket`'s owner is receiving, normally blocked
/// in [`recv`](crate::WebSocket::recv): each send wakes it at once. A message the handle
/// accepted is sent unless the connection ends first; if it ends before the owner moved
/// the message into the connection, [`take_unsent`](Self::take_unsent) gives it back.
/// Once the connection is closing or over, or the `WebSocket` is dropped, every call
/// fails with [`SendError::Closed`] (as [`Error::Send`]).
///
/// `Ok` from [`send`](Self::send) or [`try_send`](Self::try_send) means the message was
/// accepted into the handle's queue, no more: a plain WebSocket does not confirm
/// delivery, so a message the connection wrote may still never be read (use the
/// reliable mode, `sockeye.v1`, for that).
///
/// The handle's queue is bounded by `Config::max_send_queue_bytes`:
/// [`try_send`](Self::try_send) hands a message back as [`Error::Full`] when it is
/// full, [`send`](Self::send) waits for room.
#[derive(Clone, Debug)]
pub struct Sender {
    outbox: Arc<Outbox>,
}

impl Sender {
    pub(crate) fn new(outbox: Arc<Outbox>) -> Sender {
        Sender { outbox }
    }

    /// Sends a message, waiting while the handle's queue is full.
    ///
    /// `Ok` means the message was accepted into the queue: the owner moves it into the
    /// connection and writes it, unless the connection ends first. It does not mean the
    /// peer received it (a plain WebSocket does not confirm delivery; the reliable mode
    /// does). After the connection ended, [`take_unsent`](Self::take_unsent) gives back
    /// the accepted messages that never left.
    pub fn send(&self, message: Message) -> Result<()> {
        self.outbox
            .push(Command::Send(message, Compression::Auto), true)
    }

    /// [`send`](Self::send), choosing whether the message may be compressed (see
    /// [`WebSocket::send_with`](crate::WebSocket::send_with)).
    pub fn send_with(&self, message: Message, compression: Compression) -> Result<()> {
        self.outbox.push(Command::Send(message, compression), true)
    }

    /// Sends a message if the handle's queue has room, without waiting: a full queue
    /// answers [`Error::Full`] with the message, to retry later.
    ///
    /// `Ok` means what it means for [`send`](Self::send): accepted into the queue, not
    /// delivered; [`take_unsent`](Self::take_unsent) gives back what never left.
    pub fn try_send(&self, message: Message) -> Result<()> {
        self.outbox
            .push(Command::Send(message, Compression::Auto), false)
    }

    /// Once the connection ended, returns (and removes) the messages any `Sender` of
    /// this connection accepted ([`send`](Self::send) or [`try_send`](Self::try_send)
    /// answered `Ok`) that were never moved into the connection, in the order they were
    /// accepted; a second call returns none. The connection ended when its owner's
    /// receive reported the end, or its `WebSocket` was dropped (then every send fails
    /// with [`SendError::Closed`]). Before that it returns none: what is queued may still
    /// go out.
    ///
    /// The outbox keeps these messages (at most about `Config::max_send_queue_bytes`
    /// payload bytes, plus one message) until they are taken or the last `Sender` is
    /// dropped.
    pub fn take_unsent(&self) -> Vec<Message> {
        self.outbox.take_unsent()
    }

    /// Starts the closing handshake with `code` and `reason` (at most 123 bytes), after
    /// the messages already queued. The owner's `recv` then returns what the peer still
    /// sends, and `Ok(None)` once the handshake completes. Nothing can be sent after it.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<()> {
        if !code.is_sendable() {
            return Err(Error::Send(SendError::InvalidCloseCode(code.as_u16())));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(Error::Send(SendError::ControlPayloadTooLong));
        }
        self.outbox
            .push(Command::Close(code, reason.to_string()), true)
    }
}
