//! A seeded two-peer network in one process (unstable; `cfg(test)` or feature `sim`).
//!
//! A [`Pair`] holds a client and a server [`Connection`], two one-way links and a virtual
//! clock. [`Pair::drive`] moves bytes until both sides are quiet; a seed chooses how the
//! links chunk the byte stream, so the same seed always gives the same run. Inside one
//! TCP connection bytes are never lost or reordered: a link can only stall (stop
//! delivering) or be cut (both ends see EOF).

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use crate::config::Config;
use crate::connection::{Connection, Event};
use crate::entropy::SeededEntropy;
use crate::time::Instant;

pub mod hub;
pub mod reliable;
pub mod session_ops;

/// One direction of a byte stream between the peers.
#[derive(Debug, Default)]
pub struct Link {
    in_flight: VecDeque<Bytes>,
    /// While set, nothing is delivered (a stalled network or a reader that stopped).
    pub stalled: bool,
    /// The writer closed its end: once `in_flight` drains, the reader sees EOF.
    closed: bool,
    eof_delivered: bool,
}

impl Link {
    /// Bytes written and not yet delivered.
    pub fn in_flight_bytes(&self) -> usize {
        self.in_flight.iter().map(Bytes::len).sum()
    }
}

/// What happened on each side, in order.
#[derive(Debug, Default)]
pub struct Log {
    /// Events from the client connection.
    pub client: Vec<Event>,
    /// Events from the server connection.
    pub server: Vec<Event>,
}

/// A client and a server connection over two in-memory links.
pub struct Pair {
    /// The client side.
    pub client: Connection,
    /// The server side.
    pub server: Connection,
    /// Client to server.
    pub to_server: Link,
    /// Server to client.
    pub to_client: Link,
    /// The virtual clock.
    pub now: Instant,
    /// Every event so far.
    pub log: Log,
    chunking: Option<SeededEntropy>,
    /// Upper bound on drive iterations before the harness declares a livelock.
    pub max_steps: usize,
}

impl Pair {
    /// Two open connections (as after a handshake) with the same config, delivering
    /// each written chunk whole.
    pub fn new(config: Config) -> Self {
        Pair::build(config, None)
    }

    /// Like [`new`](Self::new), but the links split the stream at points chosen by `seed`.
    pub fn seeded(config: Config, seed: u64) -> Self {
        Pair::build(config, Some(seed))
    }

    fn build(config: Config, seed: Option<u64>) -> Self {
        let entropy = SeededEntropy::new(seed.unwrap_or(1));
        let client = Connection::client(config.clone(), Instant::ZERO, entropy);
        let server = Connection::server(config, Instant::ZERO);
        Pair::with_connections(client, server, seed)
    }

    /// A pair from connections the caller built (after a real handshake, say).
    pub fn with_connections(client: Connection, server: Connection, seed: Option<u64>) -> Self {
        Pair {
            client,
            server,
            to_server: Link::default(),
            to_client: Link::default(),
            now: Instant::ZERO,
            log: Log::default(),
            chunking: seed.map(|s| SeededEntropy::new(s ^ 0x5EED)),
            max_steps: 1_000_000,
        }
    }

    /// Moves bytes and events until neither side has anything left to do now.
    /// Panics if that takes more than `max_steps` iterations (a livelock is a bug).
    pub fn drive(&mut self) {
        for _ in 0..self.max_steps {
            let mut progress = false;
            progress |= drain(&mut self.client, &mut self.to_server, &mut self.log.client);
            progress |= drain(&mut self.server, &mut self.to_client, &mut self.log.server);
            // A side that closed its transport reads no more.
            let (server_gone, client_gone) = (self.to_client.closed, self.to_server.closed);
            progress |= deliver(
                &mut self.to_server,
                &mut self.server,
                server_gone,
                self.now,
                &mut self.chunking,
            );
            progress |= deliver(
                &mut self.to_client,
                &mut self.client,
                client_gone,
                self.now,
                &mut self.chunking,
            );
            if !progress {
                return;
            }
        }
        panic!("pair did not settle within {} steps", self.max_steps);
    }

    /// Moves the clock forward by `d`, firing every deadline on the way, and drives.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.drive();
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|t| *t <= end)
                .min();
            let Some(t) = next else { break };
            self.now = self.now.max(t);
            self.client.handle_timeout(self.now);
            self.server.handle_timeout(self.now);
        }
        self.now = end;
        self.drive();
    }

    /// Cuts both directions: bytes in flight vanish and both sides see EOF.
    pub fn cut(&mut self) {
        for link in [&mut self.to_server, &mut self.to_client] {
            link.in_flight.clear();
            link.closed = true;
        }
        self.drive();
    }
}

/// Takes everything a connection has to say; closes its link once it wants to disconnect.
fn drain(conn: &mut Connection, link: &mut Link, events: &mut Vec<Event>) -> bool {
    let mut progress = false;
    while let Some(event) = conn.poll_event() {
        events.push(event);
        progress = true;
    }
    while let Some(chunk) = conn.poll_transmit() {
        if !link.closed {
            link.in_flight.push_back(chunk);
        }
        progress = true;
    }
    if conn.wants_disconnect() && !link.closed {
        link.closed = true;
        progress = true;
    }
    progress
}

/// Delivers what is in flight (in seeded chunks), then EOF once the writer has closed.
fn deliver(
    link: &mut Link,
    to: &mut Connection,
    reader_gone: bool,
    now: Instant,
    chunking: &mut Option<SeededEntropy>,
) -> bool {
    if reader_gone {
        let had_bytes = !link.in_flight.is_empty();
        link.in_flight.clear();
        return had_bytes;
    }
    if link.stalled {
        return false;
    }
    let mut progress = false;
    while let Some(front) = link.in_flight.front_mut() {
        let n = match chunking {
            Some(rng) => 1 + (rng.next_u64() % front.len().max(1) as u64) as usize,
            None => front.len(),
        }
        .min(front.len());
        let piece = front.split_to(n);
        if front.is_empty() {
            link.in_flight.pop_front();
        }
        to.handle_bytes(now, &piece);
        progress = true;
        if chunking.is_some() {
            // One piece per step, so the two directions interleave.
            break;
        }
    }
    if link.closed && link.in_flight.is_empty() && !link.eof_delivered {
        link.eof_delivered = true;
        to.handle_eof(now);
        progress = true;
    }
    progress
}
