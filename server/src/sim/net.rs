//! One TCP connection between a simulated peer and the server: two byte queues, a
//! bounded send buffer on the server's side, and the ways it ends.

use std::collections::VecDeque;

use sockeye_core::hub::ConnId;
use sockeye_core::Instant;

/// A simulated TCP connection.
#[derive(Debug)]
pub(crate) struct Pipe {
    /// The server's id for it.
    pub(crate) conn: ConnId,
    /// Bytes the peer wrote that the server has not read.
    pub(crate) up: VecDeque<u8>,
    /// The peer shut its side: after `up` the server reads end of stream.
    pub(crate) up_eof: bool,
    /// The server was told of that end of stream.
    pub(crate) eof_told: bool,
    /// Bytes the server wrote that the peer has not read.
    pub(crate) down: VecDeque<u8>,
    /// The server shut its side: after `down` the peer reads end of stream.
    pub(crate) down_eof: bool,
    /// The layer said bytes wait ([`crate::Action::Wake`]) and has not run dry since.
    pub(crate) wants_write: bool,
    /// The layer forgot the connection ([`crate::Server::handle_closed`] was called).
    pub(crate) server_gone: bool,
    /// The peer stopped using it.
    pub(crate) peer_gone: bool,
    /// Most bytes `down` holds before the server's writes stop: the socket buffer.
    pub(crate) capacity: usize,
    /// The peer reads nothing before this (a slow reader).
    pub(crate) stalled_until: Instant,
    /// Cut: every byte in flight is lost, both ways.
    pub(crate) dead: bool,
}

impl Pipe {
    pub(crate) fn new(conn: ConnId, capacity: usize) -> Pipe {
        Pipe {
            conn,
            up: VecDeque::new(),
            up_eof: false,
            eof_told: false,
            down: VecDeque::new(),
            down_eof: false,
            wants_write: false,
            server_gone: false,
            peer_gone: false,
            capacity,
            stalled_until: Instant::ZERO,
            dead: false,
        }
    }

    /// The peer writes.
    pub(crate) fn write_up(&mut self, bytes: &[u8]) {
        if !self.dead && !self.up_eof {
            self.up.extend(bytes);
        }
    }

    /// The server writes (the caller respects `capacity`).
    pub(crate) fn write_down(&mut self, bytes: &[u8]) {
        if !self.dead && !self.peer_gone {
            self.down.extend(bytes);
        }
    }

    /// Whether the server's socket can take more bytes.
    pub(crate) fn has_room(&self) -> bool {
        self.down.len() < self.capacity
    }

    /// Takes up to `n` bytes from a queue.
    pub(crate) fn take(queue: &mut VecDeque<u8>, n: usize) -> Vec<u8> {
        let n = n.min(queue.len());
        queue.drain(..n).collect()
    }

    /// Nothing more can happen on it.
    pub(crate) fn is_finished(&self) -> bool {
        self.server_gone && (self.peer_gone || self.dead)
    }
}
