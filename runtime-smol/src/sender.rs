//! [`Sender`]: send on a [`WebSocket`](crate::WebSocket) from other tasks or threads
//! while its owner awaits `recv`.
//!
//! # Design
//!
//! The core [`Connection`](sockeye_core::Connection) stays single-owner: only the task
//! that holds the `WebSocket` touches it. A `Sender` frames and writes nothing itself; it
//! puts a command (a message, or the close) into an *outbox* shared with the owner, a
//! queue behind a `Mutex`, and wakes the owner's task through the [`Waker`] the owner
//! left there while it waited for the socket. The owner, inside `recv`, moves the
//! commands into the core in order and writes the frames, so frames from the owner and
//! from every `Sender` never interleave.
//!
//! The outbox is bounded like the core's own queue (`Config::max_send_queue_bytes`
//! payload bytes; an empty outbox takes any message). Senders waiting for room wait on an
//! [`event_listener::Event`] the owner notifies whenever it takes messages or the outbox
//! closes.
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
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};

use event_listener::Event;
use sockeye_core::{CloseCode, Compression, Message, SendError};
use sockeye_std::{Error, Result};

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
    /// The owner's task, while it waits for the socket.
    owner: Option<Waker>,
}

/// Why [`Outbox::try_push`] did not queue a command.
enum Refused {
    /// The outbox takes no more commands.
    Closed,
    /// No room: the command back.
    Full(Command),
}

/// The outbox shared by a `WebSocket` and its senders.
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    /// Notified whenever the owner takes messages or closes the outbox.
    room: Event,
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
    /// An empty outbox that holds about `limit` payload bytes.
    pub(crate) fn new(limit: usize) -> Outbox {
        Outbox {
            queue: Mutex::new(Queue::default()),
            room: Event::new(),
            limit,
        }
    }

    /// The payload bytes the queue takes before it is full.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The queue, for the owner to take commands (then [`took`](Self::took) and
    /// [`taken`](Self::taken)).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Queue> {
        // A sender that panicked while holding the lock left the queue consistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The owner took a message of `len` payload bytes from the queue.
    pub(crate) fn took(queue: &mut Queue, len: usize) {
        queue.bytes -= len;
    }

    /// The owner is done taking for now: if it `moved` any command, senders waiting
    /// for room try again (none is woken for nothing), and an emptied queue gives its
    /// memory back (an idle connection holds no buffer).
    pub(crate) fn taken(&self, mut queue: MutexGuard<'_, Queue>, moved: bool) {
        if queue.commands.is_empty() {
            queue.commands = VecDeque::new();
        }
        drop(queue);
        if moved {
            self.room.notify(usize::MAX);
        }
    }

    /// Whether commands wait for the owner; if none, the owner's task (`cx`) is woken
    /// when one comes.
    pub(crate) fn poll_commands(&self, cx: &mut Context<'_>) -> bool {
        let mut queue = self.lock();
        if !queue.commands.is_empty() {
            return true;
        }
        match &queue.owner {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => queue.owner = Some(cx.waker().clone()),
        }
        false
    }

    /// Takes no more commands, keeping those already queued for the owner.
    pub(crate) fn seal(&self) {
        self.lock().closed = true;
        self.room.notify(usize::MAX);
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
        queue.owner = None;
        drop(queue);
        self.room.notify(usize::MAX);
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

    /// Queues `command` if there is room, or hands it back.
    fn try_push(&self, command: Command) -> std::result::Result<(), Refused> {
        let mut queue = self.lock();
        if queue.closed {
            return Err(Refused::Closed);
        }
        let len = match &command {
            Command::Send(message, _) => message.payload().len(),
            // A close takes no room, so it never waits (a shutdown closing many
            // connections must not stall on one whose queue is over the limit), and
            // nothing may follow it.
            Command::Close(..) => {
                queue.closed = true;
                0
            }
        };
        if len > 0 && queue.bytes > 0 && queue.bytes + len > self.limit {
            return Err(Refused::Full(command));
        }
        queue.bytes += len;
        queue.commands.push_back(command);
        let owner = queue.owner.take();
        drop(queue);
        if let Some(owner) = owner {
            owner.wake();
        }
        Ok(())
    }

    /// Queues `command`, waiting for room.
    async fn push(&self, mut command: Command) -> Result<()> {
        loop {
            let listener = self.room.listen();
            match self.try_push(command) {
                Ok(()) => return Ok(()),
                Err(Refused::Full(back)) => command = back,
                Err(Refused::Closed) => return Err(Error::Send(SendError::Closed)),
            }
            listener.await;
        }
    }
}

/// A handle that sends on a [`WebSocket`](crate::WebSocket) from any task or thread,
/// made by [`WebSocket::sender`](crate::WebSocket::sender). Clone it freely: every clone
/// feeds the same connection, and messages from one handle go out in the order it sent
/// them.
///
/// Messages reach the wire while the `WebSocket`'s owner awaits a receive
/// ([`recv`](crate::WebSocket::recv) and the other `recv_*` methods): each send wakes its
/// task at once. A message the handle accepted is sent unless the connection ends first;
/// if it ends before the owner moved the message into the connection,
/// [`take_unsent`](Self::take_unsent) gives it back. Once the connection is closing or
/// over, or the `WebSocket` is dropped, every call fails with [`SendError::Closed`] (as
/// [`Error::Send`]).
///
/// `Ok` from [`send`](Self::send) or [`try_send`](Self::try_send) means the message was
/// accepted into the handle's queue, no more: a plain WebSocket does not confirm
/// delivery, so a message the connection wrote may still never be read (use the
/// reliable mode, `sockeye.v1`, for that).
///
/// The handle's queue is bounded by `Config::max_send_queue_bytes` payload bytes:
/// [`try_send`](Self::try_send) hands a message back as [`Error::Full`] when it is full,
/// [`send`](Self::send) waits for room.
///
/// ## Cost
///
/// A connection without senders pays nothing. The first
/// [`WebSocket::sender`](crate::WebSocket::sender) call allocates one shared outbox of
/// about a hundred bytes (a mutex, an empty queue, the owner's waker); the list of
/// senders waiting for room is allocated the first time one waits, and kept. An idle
/// queue holds no buffer: it gives its memory back whenever the owner empties it.
///
/// ## Cancel safety
///
/// [`send`](Self::send) queues the message in the same poll that completes it, so a
/// `send` future dropped before it completed never queued its message: the message is
/// dropped with the future (nothing half-sent). To keep the message, use
/// [`try_send`](Self::try_send), which hands it back. [`close`](Self::close) never
/// waits.
#[derive(Clone, Debug)]
pub struct Sender {
    outbox: Arc<Outbox>,
}

impl Sender {
    pub(crate) fn new(outbox: Arc<Outbox>) -> Sender {
        Sender { outbox }
    }

    /// Sends a message, waiting while the handle's queue is full. See the type's docs
    /// for cancel safety.
    ///
    /// `Ok` means the message was accepted into the queue: the owner moves it into the
    /// connection and writes it, unless the connection ends first. It does not mean the
    /// peer received it (a plain WebSocket does not confirm delivery; the reliable mode
    /// does). After the connection ended, [`take_unsent`](Self::take_unsent) gives back
    /// the accepted messages that never left.
    pub async fn send(&self, message: Message) -> Result<()> {
        self.send_with(message, Compression::Auto).await
    }

    /// [`send`](Self::send), choosing whether the message may be compressed (see
    /// [`WebSocket::send_with`](crate::WebSocket::send_with)).
    pub async fn send_with(&self, message: Message, compression: Compression) -> Result<()> {
        self.outbox.push(Command::Send(message, compression)).await
    }

    /// Sends a message if the handle's queue has room, without waiting: a full queue
    /// answers [`Error::Full`] with the message, to retry later.
    ///
    /// `Ok` means what it means for [`send`](Self::send): accepted into the queue, not
    /// delivered; [`take_unsent`](Self::take_unsent) gives back what never left.
    pub fn try_send(&self, message: Message) -> Result<()> {
        self.try_send_with(message, Compression::Auto)
    }

    /// [`try_send`](Self::try_send), choosing whether the message may be compressed.
    pub fn try_send_with(&self, message: Message, compression: Compression) -> Result<()> {
        match self.outbox.try_push(Command::Send(message, compression)) {
            Ok(()) => Ok(()),
            Err(Refused::Full(Command::Send(message, _))) => Err(Error::Full(message)),
            Err(_) => Err(Error::Send(SendError::Closed)),
        }
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
    /// Never waits: a close takes no room in the queue.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<()> {
        if !code.is_sendable() {
            return Err(Error::Send(SendError::InvalidCloseCode(code.as_u16())));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(Error::Send(SendError::ControlPayloadTooLong));
        }
        match self
            .outbox
            .try_push(Command::Close(code, reason.to_string()))
        {
            Ok(()) => Ok(()),
            // A close is never refused for room.
            Err(_) => Err(Error::Send(SendError::Closed)),
        }
    }
}

/// The owner's hold on the outbox: closes it when the `WebSocket` is dropped, so senders
/// fail instead of waiting for an owner that is gone (and what they queued waits for
/// [`Sender::take_unsent`]).
#[derive(Debug)]
pub(crate) struct OwnerHold(pub(crate) Arc<Outbox>);

impl Drop for OwnerHold {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_goes_to_any_thread() {
        fn shared<T: Send + Sync + Clone>() {}
        shared::<Sender>();
    }

    #[test]
    fn the_outbox_is_small_and_an_emptied_queue_holds_no_buffer() {
        // What the docs promise a connection with senders pays while idle.
        assert!(std::mem::size_of::<Outbox>() <= 112);
        let outbox = Outbox::new(1000);
        for _ in 0..10 {
            let pushed = outbox.try_push(Command::Send(Message::text("x"), Compression::Auto));
            assert!(pushed.is_ok());
        }
        let mut queue = outbox.lock();
        queue.commands.clear();
        outbox.taken(queue, true);
        assert_eq!(outbox.lock().commands.capacity(), 0);
    }

    #[test]
    fn a_closed_outbox_keeps_its_messages_in_order_for_take_unsent_and_drops_a_close() {
        let outbox = Arc::new(Outbox::new(1000));
        let sender = Sender::new(Arc::clone(&outbox));
        sender.try_send(Message::text("one")).unwrap();
        sender.try_send(Message::binary(vec![2])).unwrap();
        sender.close(CloseCode::NORMAL, "bye").unwrap();
        // Still the connection's to send.
        assert!(sender.take_unsent().is_empty());
        outbox.close();
        assert!(sender.try_send(Message::text("late")).is_err());
        assert_eq!(
            sender.take_unsent(),
            vec![Message::text("one"), Message::binary(vec![2])]
        );
        assert!(sender.take_unsent().is_empty());
        assert_eq!(outbox.lock().commands.capacity(), 0);
    }
}
