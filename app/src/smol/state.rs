//! The state the smol runtime's tasks share on their one thread: the server layer, and
//! for each connection its socket and the bytes taken from the layer but not yet
//! written. Every method runs an input through the layer and carries out its actions
//! at once, so the layer's order is the order things happen in.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::sync::mpsc;
use std::task::Waker;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use async_io::Async;
use bytes::Bytes;
use sockeye_core::Instant;
use sockeye_server::{Action, ConnId, Server};
use sockeye_std::Clock;

use crate::descriptors::descriptors_again;
use crate::driver::{level_of, log_dead_letter};

/// The state, shared by the tasks.
pub(super) type Shared = Rc<RefCell<State>>;

/// A new connection's TLS session, when the server serves TLS.
#[cfg(feature = "tls")]
pub(super) type Tls = Option<rustls::ServerConnection>;
/// Without the `tls` feature there is never a session.
#[cfg(not(feature = "tls"))]
pub(super) type Tls = Option<std::convert::Infallible>;

/// Bytes read at most per read, into the one buffer every connection shares.
const READ_CHUNK: usize = 64 * 1024;

/// Bytes taken from the layer at most per write: what a full socket cannot take stays
/// in the layer, where the slow-consumer rule counts it.
const MAX_WRITE_BATCH: usize = 256 * 1024;

/// One connection, as the runtime sees it.
pub(super) struct Link {
    pub(super) stream: Async<TcpStream>,
    /// The connection's task, woken to look at its link again.
    task: Option<Waker>,
    /// Taken from the layer, not yet written; empty (and unallocated) while idle.
    pending: VecDeque<Bytes>,
    /// Bytes of `pending`'s front already written.
    written: usize,
    /// The layer said [`Action::Close`]: after the queued bytes, FIN.
    closing: bool,
    /// FIN sent and the layer told: the task only waits out the linger now.
    pub(super) finished: bool,
    /// The last write hit a full socket: the task waits until it is writable.
    pub(super) blocked: bool,
    /// Listed in [`State::dirty`], to be written by the flusher.
    dirty: bool,
    /// The TLS session the bytes go through, when the server serves TLS: reads feed it
    /// ciphertext and hand the layer its plaintext; writes hand it the layer's bytes and
    /// write its ciphertext.
    #[cfg(feature = "tls")]
    tls: Option<Box<rustls::ServerConnection>>,
    /// `close_notify` is queued in `tls` (before FIN).
    #[cfg(feature = "tls")]
    close_notified: bool,
}

impl Link {
    /// The task leaves its waker, to be [`poke`](Self::poke)d.
    pub(super) fn listen(&mut self, waker: &Waker) {
        if !self.task.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.task = Some(waker.clone());
        }
    }

    /// Wakes the task to look at the link again.
    fn poke(&mut self) {
        if let Some(task) = self.task.take() {
            task.wake();
        }
    }
}

pub(super) struct State {
    server: Server,
    clock: Clock,
    links: HashMap<ConnId, Link>,
    journal: Option<mpsc::Sender<Vec<u8>>>,
    /// Records the layer appended since the last commit was handed to the journal.
    appended: Vec<u8>,
    read_buf: Box<[u8]>,
    /// The deadline the timer task sleeps until, and how to wake it when it changes.
    timer_at: Option<Instant>,
    timer_poke: (Sender<()>, Receiver<()>),
    /// Told once the layer has stopped.
    done: Sender<()>,
    /// Connections the layer has bytes for, written by the flusher task once the tasks
    /// woken before it have run: pushes that arrive together share one write per
    /// connection instead of one write per push.
    dirty: Vec<ConnId>,
    flusher: Option<Waker>,
    pub(super) write_timeout: Duration,
    /// The Redis threads (`--redis`).
    backend: Option<crate::redis::Backend>,
}

impl State {
    pub(super) fn new(
        server: Server,
        clock: Clock,
        journal: Option<mpsc::Sender<Vec<u8>>>,
        write_timeout: Duration,
        backend: Option<crate::redis::Backend>,
    ) -> (Shared, Receiver<()>) {
        let (done, stopped) = async_channel::bounded(1);
        let state = State {
            server,
            clock,
            links: HashMap::new(),
            journal,
            appended: Vec::new(),
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            timer_at: None,
            timer_poke: async_channel::bounded(1),
            done,
            dirty: Vec::new(),
            flusher: None,
            write_timeout,
            backend,
        };
        (Rc::new(RefCell::new(state)), stopped)
    }

    /// Connections the layer still has (not those only waiting out their linger).
    pub(super) fn open_connections(&self) -> usize {
        self.links.values().filter(|l| !l.finished).count()
    }

    pub(super) fn timer_poke(&self) -> Receiver<()> {
        self.timer_poke.1.clone()
    }

    /// What the timer task should sleep for, remembering the deadline it sleeps to.
    pub(super) fn arm_timer(&mut self) -> Option<Duration> {
        self.timer_at = self.server.poll_timeout();
        self.timer_at.map(|at| self.clock.until(at))
    }

    pub(super) fn handle_timeout(&mut self) {
        let now = self.clock.now();
        if self.server.poll_timeout().is_some_and(|at| at <= now) {
            self.server.handle_timeout(now);
        }
        self.act();
    }

    /// A connection was accepted: the layer's id for it. Its task finds its socket in
    /// its link.
    pub(super) fn accept(&mut self, stream: Async<TcpStream>, tls: Tls) -> ConnId {
        let conn = self.server.handle_accept(self.clock.now());
        descriptors_again();
        self.links.insert(
            conn,
            Link {
                stream,
                task: None,
                pending: VecDeque::new(),
                written: 0,
                closing: false,
                finished: false,
                blocked: false,
                dirty: false,
                #[cfg(feature = "tls")]
                tls: tls.map(Box::new),
                #[cfg(feature = "tls")]
                close_notified: false,
            },
        );
        #[cfg(not(feature = "tls"))]
        let _ = tls;
        self.act();
        conn
    }

    pub(super) fn link(&self, conn: ConnId) -> Option<&Link> {
        self.links.get(&conn)
    }

    pub(super) fn link_mut(&mut self, conn: ConnId) -> Option<&mut Link> {
        self.links.get_mut(&conn)
    }

    /// The connection's task is done with it.
    pub(super) fn forget(&mut self, conn: ConnId) {
        self.links.remove(&conn);
    }

    /// The socket is readable: reads what it has into the shared buffer and hands it to
    /// the layer. Returns `false` once the read side is over (end of stream or error).
    pub(super) fn read(&mut self, conn: ConnId) -> bool {
        let Some(link) = self.links.get(&conn) else {
            return false;
        };
        #[cfg(feature = "tls")]
        if link.tls.is_some() {
            return self.read_tls(conn);
        }
        let finished = link.finished;
        let mut failed = false;
        let open = loop {
            match link.stream.get_ref().read(&mut self.read_buf) {
                Ok(0) => {
                    if !finished {
                        self.server.handle_eof(self.clock.now(), conn);
                    }
                    break false;
                }
                Ok(n) => {
                    if !finished {
                        self.server
                            .handle_bytes(self.clock.now(), conn, &self.read_buf[..n]);
                    }
                    // A short read took everything the socket had.
                    if n < self.read_buf.len() {
                        break true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    failed = true;
                    break false;
                }
            }
        };
        if failed {
            self.gone(conn);
        }
        self.act();
        open
    }

    /// [`read`](Self::read) through the connection's TLS session: ciphertext in, the
    /// plaintext to the layer, and what the session must answer (its handshake flights,
    /// an alert) out at once.
    #[cfg(feature = "tls")]
    fn read_tls(&mut self, conn: ConnId) -> bool {
        let Some(link) = self.links.get_mut(&conn) else {
            return false;
        };
        let finished = link.finished;
        let Some(tls) = link.tls.as_mut() else {
            return false;
        };
        let mut sock = link.stream.get_ref();
        let mut failed = false;
        let mut ended = false;
        let open = loop {
            match tls.read_tls(&mut sock) {
                Ok(0) => {
                    ended = true;
                    break false;
                }
                Ok(_) => {
                    let state = match tls.process_new_packets() {
                        Ok(state) => state,
                        Err(_) => {
                            failed = true; // its alert goes out below
                            break false;
                        }
                    };
                    let mut left = state.plaintext_bytes_to_read();
                    while left > 0 {
                        let n = left.min(self.read_buf.len());
                        if tls.reader().read_exact(&mut self.read_buf[..n]).is_err() {
                            break;
                        }
                        left -= n;
                        if !finished {
                            self.server
                                .handle_bytes(self.clock.now(), conn, &self.read_buf[..n]);
                        }
                    }
                    if state.peer_has_closed() {
                        ended = true;
                        break false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    failed = true;
                    break false;
                }
            }
        };
        if failed {
            let _ = tls.write_tls(&mut sock);
            self.gone(conn);
        } else {
            if ended && !finished {
                self.server.handle_eof(self.clock.now(), conn);
            }
            if tls.wants_write() {
                self.flush(conn);
            }
        }
        self.act();
        open
    }

    /// The socket can take bytes again.
    pub(super) fn writable(&mut self, conn: ConnId) {
        if let Some(link) = self.links.get_mut(&conn) {
            link.blocked = false;
        }
        self.flush(conn);
        self.act();
    }

    /// The socket is gone (an error, or a write that waited too long): the layer forgets
    /// the connection.
    pub(super) fn gone(&mut self, conn: ConnId) {
        if let Some(link) = self.links.remove(&conn) {
            let _ = link.stream.get_ref().shutdown(Shutdown::Both);
            if !link.finished {
                self.server.handle_closed(self.clock.now(), conn);
            }
        }
    }

    pub(super) fn committed(&mut self, result: Result<(), String>) {
        if let Err(e) = &result {
            log::error!("journal commit failed: {e}");
        }
        self.server.handle_committed(self.clock.now(), result);
        self.act();
    }

    /// What the Redis threads reported.
    pub(super) fn cluster(&mut self, report: crate::redis::Report) {
        crate::redis::hand_over(&mut self.server, self.clock.now(), report);
        self.act();
    }

    pub(super) fn shutdown(&mut self) {
        self.server.handle_shutdown(self.clock.now());
        self.act();
    }

    /// Writes what the layer has for `conn` until the socket is full; after the last
    /// bytes of a closing connection, FIN.
    fn flush(&mut self, conn: ConnId) {
        loop {
            let Some(link) = self.links.get_mut(&conn) else {
                return;
            };
            if link.blocked || link.finished {
                return;
            }
            #[cfg(feature = "tls")]
            if link.tls.is_some() {
                return self.flush_tls(conn);
            }
            if link.pending.is_empty() {
                let mut bytes = 0;
                while bytes < MAX_WRITE_BATCH {
                    let Some(chunk) = self.server.poll_transmit(conn) else {
                        break;
                    };
                    bytes += chunk.len();
                    link.pending.push_back(chunk);
                }
                link.written = 0;
            }
            if link.pending.is_empty() {
                // An idle connection holds no queue.
                link.pending = VecDeque::new();
                if link.closing {
                    let _ = link.stream.get_ref().shutdown(Shutdown::Write);
                    link.finished = true;
                    link.poke();
                    self.server.handle_closed(self.clock.now(), conn);
                }
                return;
            }
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(link.pending.len());
            for (i, chunk) in link.pending.iter().enumerate() {
                let from = if i == 0 { link.written } else { 0 };
                slices.push(IoSlice::new(&chunk[from..]));
            }
            match link.stream.get_ref().write_vectored(&slices) {
                Ok(mut n) => {
                    drop(slices);
                    while n > 0 {
                        let Some(front) = link.pending.front() else {
                            break;
                        };
                        let left = front.len() - link.written;
                        if n >= left {
                            n -= left;
                            link.pending.pop_front();
                            link.written = 0;
                        } else {
                            link.written += n;
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    link.blocked = true;
                    link.poke();
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.gone(conn);
                    return;
                }
            }
        }
    }

    /// [`flush`](Self::flush) through the connection's TLS session: its ciphertext
    /// first, then the layer's next bytes into it (only once it holds none, so it holds
    /// at most one batch), and `close_notify` before FIN.
    #[cfg(feature = "tls")]
    fn flush_tls(&mut self, conn: ConnId) {
        loop {
            let Some(link) = self.links.get_mut(&conn) else {
                return;
            };
            if link.blocked || link.finished {
                return;
            }
            let Some(tls) = link.tls.as_mut() else {
                return;
            };
            let mut sock = link.stream.get_ref();
            if tls.wants_write() {
                match tls.write_tls(&mut sock) {
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        link.blocked = true;
                        link.poke();
                        return;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        self.gone(conn);
                        return;
                    }
                }
            }
            let mut taken = 0;
            while taken < MAX_WRITE_BATCH {
                let Some(chunk) = self.server.poll_transmit(conn) else {
                    break;
                };
                taken += chunk.len();
                if tls.writer().write_all(&chunk).is_err() {
                    self.gone(conn);
                    return;
                }
            }
            if taken > 0 {
                continue;
            }
            if !link.closing {
                return;
            }
            if !link.close_notified {
                tls.send_close_notify();
                link.close_notified = true;
                continue;
            }
            let _ = link.stream.get_ref().shutdown(Shutdown::Write);
            link.finished = true;
            link.poke();
            self.server.handle_closed(self.clock.now(), conn);
            return;
        }
    }

    /// The flusher task leaves its waker here.
    pub(super) fn listen_flusher(&mut self, waker: &Waker) {
        if !self.flusher.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.flusher = Some(waker.clone());
        }
    }

    /// Lists `conn` for the flusher.
    fn mark(&mut self, conn: ConnId) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        if !link.dirty {
            link.dirty = true;
            self.dirty.push(conn);
            if let Some(flusher) = self.flusher.take() {
                flusher.wake();
            }
        }
    }

    /// The flusher's turn: writes every listed connection, until none is listed.
    pub(super) fn flush_dirty(&mut self) {
        while !self.dirty.is_empty() {
            for conn in std::mem::take(&mut self.dirty) {
                if let Some(link) = self.links.get_mut(&conn) {
                    link.dirty = false;
                    self.flush(conn);
                }
            }
            self.act();
        }
    }

    /// Carries out the layer's actions until there are none, then wakes the timer task
    /// if the layer's deadline moved.
    fn act(&mut self) {
        while let Some(action) = self.server.poll_action() {
            match action {
                Action::Wake(conn) => self.mark(conn),
                Action::Close(conn) => {
                    if let Some(link) = self.links.get_mut(&conn) {
                        link.closing = true;
                    }
                    self.mark(conn);
                }
                Action::Append(bytes) => self.appended.extend_from_slice(&bytes),
                Action::Commit => {
                    let batch = std::mem::take(&mut self.appended);
                    let sent = self.journal.as_ref().is_some_and(|j| j.send(batch).is_ok());
                    if !sent {
                        let result = Err("the journal thread is gone".to_string());
                        self.server.handle_committed(self.clock.now(), result);
                    }
                }
                Action::Log(level, line) => {
                    log::log!(target: "sockeye_server", level_of(level), "{line}")
                }
                Action::DeadLetter(letter) => log_dead_letter(&letter),
                Action::Stopped => {
                    let _ = self.done.try_send(());
                }
                Action::Publish { .. }
                | Action::Command { .. }
                | Action::Subscribe(_)
                | Action::Unsubscribe(_) => crate::redis::carry_out(
                    self.backend.as_ref(),
                    &mut self.server,
                    self.clock.now(),
                    action,
                ),
                _ => {}
            }
        }
        if self.server.poll_timeout() != self.timer_at {
            let _ = self.timer_poke.0.try_send(());
        }
    }
}
