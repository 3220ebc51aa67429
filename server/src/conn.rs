//! One connection as the layer sees it: what phase it is in, and the bytes waiting for
//! the runtime to write.

use std::collections::VecDeque;

use bytes::Bytes;
use sockeye_core::handshake::{HttpRequest, RequestReader};
use sockeye_core::time::earliest;
use sockeye_core::{Connection, Instant, SessionId};

/// Where a connection is.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Reading its request head.
    Head(RequestReader),
    /// Reading the `Content-Length` body of a push, due by `deadline`.
    Body {
        request: Box<HttpRequest>,
        length: usize,
        body: Vec<u8>,
        deadline: Instant,
    },
    /// A push acted on, its 202 waiting for journal commit `ticket`.
    AwaitingCommit { ticket: u64, answer: Vec<u8> },
    /// A push acted on here and published, its answer waiting for the cluster backend's
    /// answers (see `cluster.rs`).
    AwaitingCluster {
        waits: Vec<(sockeye_core::hub::Target, crate::cluster_push::PushWait)>,
        batch: bool,
        failed: bool,
    },
    /// A WebSocket upgrade of `user` waiting for Redis to say how many connections the
    /// user has on the other nodes (`cluster_conns.rs`).
    AwaitingAdmission {
        upgrade: Box<sockeye_core::handshake::Request>,
        user: sockeye_core::auth::UserId,
    },
    /// Plain JSON mode (`docs/PROTOCOL.md` §10).
    Plain { ws: Box<Connection> },
    /// `sockeye.v1`: a session of the store, attached as `epoch`.
    Reliable {
        ws: Box<Connection>,
        session: SessionId,
        epoch: u64,
    },
    /// Over: what is queued is written, then the runtime closes the socket.
    Done,
}

/// A connection: its phase and its outgoing bytes.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) phase: Phase,
    /// Chunks for the runtime to write, in order.
    out: VecDeque<Bytes>,
    out_bytes: usize,
    /// The runtime was told about bytes it has not taken yet ([`crate::Action::Wake`]).
    pub(crate) woken: bool,
    /// [`crate::Action::Close`] was emitted.
    pub(crate) close_sent: bool,
    /// The deadline it is filed under in the server's index.
    pub(crate) armed: Option<Instant>,
    /// Listed among the connections to settle after the current input.
    pub(crate) touched: bool,
    /// Listed among the reliable connections whose session to drive before settling.
    pub(crate) drive_pending: bool,
    /// A reliable connection's session deadline, from its last turn.
    pub(crate) session_deadline: Option<Instant>,
    /// Plain-mode texts whose cause (a reliable client's command, a push) waits for
    /// journal commit `ticket`: a crash before it would have the cause done again, so
    /// they must not reach the client before. Later texts queue behind them, in order.
    pub(crate) held: VecDeque<(u64, Bytes, bool, Option<sockeye_core::SessionId>)>,
    held_bytes: usize,
    /// A reliable connection's session has envelopes it did not take yet, or a plain
    /// connection has [`mail`](Self::mail), because the queue was at `max_queue_bytes`:
    /// taken as the runtime drains the queue.
    pub(crate) backlog: bool,
    /// A plain connection's mailbox, handed out at connect, framed as the queue drains
    /// (a long mailbox is no slow consumer), and the live texts that came after it (each
    /// `true`, and counted in `mail_live_bytes` for the slow-consumer rule).
    pub(crate) mail: VecDeque<(Bytes, bool, bool)>,
    pub(crate) mail_live_bytes: usize,
}

impl Conn {
    pub(crate) fn new(phase: Phase) -> Self {
        Conn {
            phase,
            out: VecDeque::new(),
            out_bytes: 0,
            woken: false,
            close_sent: false,
            armed: None,
            touched: false,
            drive_pending: false,
            session_deadline: None,
            held: VecDeque::new(),
            held_bytes: 0,
            backlog: false,
            mail: VecDeque::new(),
            mail_live_bytes: 0,
        }
    }

    /// Holds a plain-mode text (a `message`, or a reply) until commit `ticket` is done;
    /// `cause`: the reliable session whose command sent it.
    pub(crate) fn hold(
        &mut self,
        ticket: u64,
        text: Bytes,
        is_message: bool,
        cause: Option<sockeye_core::SessionId>,
    ) {
        self.held_bytes += text.len();
        self.held.push_back((ticket, text, is_message, cause));
    }

    /// Drops the held texts a command of `session` sent that wait for commit `from` or
    /// later: another node took the session over before those commits, and acts on the
    /// command itself.
    pub(crate) fn drop_caused_by(&mut self, session: sockeye_core::SessionId, from: u64) {
        let mut bytes = self.held_bytes;
        self.held.retain(|(ticket, text, _, cause)| {
            let keep = *cause != Some(session) || *ticket < from;
            if !keep {
                bytes -= text.len();
            }
            keep
        });
        self.held_bytes = bytes;
    }

    /// The held texts whose commit `done` finished, in order.
    pub(crate) fn release_held(&mut self, done: u64) -> Vec<(Bytes, bool)> {
        let mut out = Vec::new();
        while self
            .held
            .front()
            .is_some_and(|(ticket, ..)| *ticket <= done)
        {
            let (_, text, is_message, _) = self.held.pop_front().expect("checked");
            self.held_bytes -= text.len();
            out.push((text, is_message));
        }
        out
    }

    /// Queues bytes for the runtime.
    pub(crate) fn queue(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.out_bytes += chunk.len();
            self.out.push_back(chunk);
        }
    }

    /// The next chunk to write.
    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        let chunk = self.out.pop_front()?;
        self.out_bytes -= chunk.len();
        if self.out.is_empty() {
            // An idle connection keeps no queue (thousands of idle ones add up).
            self.out = VecDeque::new();
        }
        Some(chunk)
    }

    /// Bytes waiting for the runtime, including those still inside the WebSocket and
    /// those held for a commit.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.out_bytes + self.held_bytes + self.ws().map_or(0, Connection::queued_bytes)
    }

    pub(crate) fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Drops what waits (the socket is gone).
    pub(crate) fn clear(&mut self) {
        self.out.clear();
        self.out_bytes = 0;
    }

    pub(crate) fn ws(&self) -> Option<&Connection> {
        match &self.phase {
            Phase::Plain { ws, .. } | Phase::Reliable { ws, .. } => Some(ws),
            _ => None,
        }
    }

    pub(crate) fn ws_mut(&mut self) -> Option<&mut Connection> {
        match &mut self.phase {
            Phase::Plain { ws, .. } | Phase::Reliable { ws, .. } => Some(ws),
            _ => None,
        }
    }

    /// Moves the WebSocket's outgoing chunks into the queue.
    pub(crate) fn take_transmits(&mut self) {
        let mut chunks = Vec::new();
        if let Some(ws) = self.ws_mut() {
            while let Some(chunk) = ws.poll_transmit() {
                chunks.push(chunk);
            }
        }
        for chunk in chunks {
            self.queue(chunk);
        }
    }

    /// The connection's own next deadline.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Head(reader) => reader.poll_timeout(),
            Phase::Body { deadline, .. } => Some(*deadline),
            Phase::Plain { ws, .. } => ws.poll_timeout(),
            Phase::Reliable { ws, .. } => earliest(ws.poll_timeout(), self.session_deadline),
            Phase::AwaitingCommit { .. }
            | Phase::AwaitingCluster { .. }
            | Phase::AwaitingAdmission { .. }
            | Phase::Done => None,
        }
    }
}
