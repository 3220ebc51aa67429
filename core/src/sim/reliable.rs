//! Reliable sessions over real connections, cut at any byte (unstable; `cfg(test)` or
//! feature `sim`).
//!
//! A [`ReliableSim`] holds a [`ClientSession`] and a server [`SessionStore`], each talking
//! through a [`Connection`] over two in-memory one-way byte links, a virtual clock, and two
//! applications that send numbered messages and record what they get. One seed drives
//! everything: message sizes, chunking, delays, stalls (slow readers), cuts at any byte
//! offset, reconnect delays (some past the session expiry), and the session limits.
//!
//! A cut drops both connections: bytes in flight vanish and both sessions are told the
//! transport is gone; after a delay the client reconnects. Reconnecting needs a new
//! WebSocket handshake; the simulation builds a fresh `Connection` pair directly and
//! hands the client's RESUME to [`SessionStore::accept`] the way the real runtime does
//! from the `Sockeye-Resume` upgrade header, so the WELCOME is the first message on the
//! new connection.
//!
//! [`Ledger`]s check, after every step, that every message an application submitted is
//! delivered at most once, in order, never after being dead-lettered, never both
//! delivered and certainly-undelivered, and acknowledged only once delivered; that windows
//! stay within their limits; and, at the end, that every message settled: acknowledged
//! or dead-lettered.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use crate::config::{Config, SessionConfig};
use crate::connection::{Connection, Event, Message};
use crate::entropy::SeededEntropy;
use crate::session::{ClientSession, Seq, SessionEvent, SessionId, SessionStore};
use crate::time::Instant;

mod ledger;
pub use ledger::Ledger;
use ledger::{on_event, SessionKey};

/// One WebSocket connection's worth of state: both ends and the bytes between them.
struct Wire {
    client: Connection,
    server: Connection,
    to_server: VecDeque<Bytes>,
    to_client: VecDeque<Bytes>,
    sid: SessionId,
}

/// What happened in a run, for the sweep's summary.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Steps taken.
    pub steps: u64,
    /// Cuts.
    pub cuts: u64,
    /// Connections made.
    pub connects: u64,
    /// Messages each way (client→server, server→client).
    pub messages: (u64, u64),
    /// `send` answered `Full`.
    pub backpressure: u64,
    /// Dead letters that certainly were not delivered.
    pub certain_dead: u64,
    /// Dead letters that may have been delivered (a session ended with its fate open).
    pub possibly_delivered_dead: u64,
    /// Sessions lost (refused resumes, expiries).
    pub sessions_lost: u64,
    /// Virtual time at the end.
    pub end: Instant,
    /// Why the connection was last dropped by one of the sides (not by a cut).
    pub last_break: String,
}

/// A client session and a server store over cuttable connections, driven by one seed.
pub struct ReliableSim {
    /// The seeded generator behind every choice.
    pub rng: SeededEntropy,
    /// The virtual clock.
    pub now: Instant,
    /// The session limits both sides use.
    pub config: SessionConfig,
    /// The client.
    pub client: ClientSession,
    /// The server's sessions.
    pub store: SessionStore,
    /// The server session the client's app talks to (from the last accept).
    pub sid: Option<SessionId>,
    wire: Option<Wire>,
    /// Client → server bookkeeping.
    pub c2s: Ledger,
    /// Server → client bookkeeping.
    pub s2c: Ledger,
    client_gen: u32,
    /// When the client reconnects, while disconnected.
    pub reconnect_at: Option<Instant>,
    stall_to_server: Instant,
    stall_to_client: Instant,
    /// Server sessions still attached to a connection only the client saw die, with
    /// that connection's epoch: driven by their timers, their output goes nowhere.
    half_open: Vec<(SessionId, u64)>,
    /// Counters.
    pub stats: Stats,
    /// Every event each side's application saw, for scenario tests.
    pub client_log: Vec<SessionEvent>,
    /// Every server-side event (all sessions).
    pub server_log: Vec<SessionEvent>,
    /// Deliveries the server's app has not confirmed yet (`confirm_deliveries`).
    pub unconfirmed: VecDeque<(SessionId, Seq)>,
}

impl ReliableSim {
    /// A disconnected client, an empty store, the clock at zero.
    pub fn new(config: SessionConfig, seed: u64) -> Self {
        ReliableSim {
            rng: SeededEntropy::new(seed),
            now: Instant::ZERO,
            client: ClientSession::new(config.clone(), Instant::ZERO),
            store: SessionStore::new(config.clone(), Instant::ZERO),
            config,
            sid: None,
            wire: None,
            c2s: Ledger::default(),
            s2c: Ledger::default(),
            client_gen: 0,
            reconnect_at: None,
            stall_to_server: Instant::ZERO,
            stall_to_client: Instant::ZERO,
            half_open: Vec::new(),
            stats: Stats::default(),
            client_log: Vec::new(),
            server_log: Vec::new(),
            unconfirmed: VecDeque::new(),
        }
    }

    /// Whether a connection is up.
    pub fn is_connected(&self) -> bool {
        self.wire.is_some()
    }

    /// Bytes in flight towards the server and towards the client.
    pub fn in_flight(&self) -> (usize, usize) {
        self.wire.as_ref().map_or((0, 0), |w| {
            (
                w.to_server.iter().map(Bytes::len).sum(),
                w.to_client.iter().map(Bytes::len).sum(),
            )
        })
    }

    /// Opens a new connection: the upgrade carries the client's RESUME (if any) to the
    /// store, which answers with the session now in force and queues its WELCOME.
    pub fn connect(&mut self) -> Result<(), String> {
        if self.wire.is_some() {
            return Ok(());
        }
        let header = self.client.resume_header_value();
        let mut entropy = SeededEntropy::new(self.rng.next_u64());
        let sid = self
            .store
            .accept(self.now, header.as_deref().map(str::as_bytes), &mut entropy)
            .map_err(|e| format!("accept failed: {e}"))?;
        self.client.handle_connected(self.now);
        let conn_config = Config {
            ping_interval: None,
            ..Config::default()
        };
        let client_entropy = SeededEntropy::new(self.rng.next_u64());
        self.wire = Some(Wire {
            client: Connection::client(conn_config.clone(), self.now, client_entropy),
            server: Connection::server(conn_config, self.now),
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            sid,
        });
        self.sid = Some(sid);
        self.reconnect_at = None;
        self.stats.connects += 1;
        self.pump()
    }

    /// Cuts the connection: bytes in flight vanish, both sides see the transport end.
    pub fn cut(&mut self) -> Result<(), String> {
        self.cut_inner(true)
    }

    /// Cuts the connection, but only the client notices (a half-open TCP connection):
    /// the server session stays attached to a dead connection until the client's resume
    /// takes it over.
    pub fn cut_half_open(&mut self) -> Result<(), String> {
        self.cut_inner(false)
    }

    fn cut_inner(&mut self, server_notices: bool) -> Result<(), String> {
        let Some(wire) = self.wire.take() else {
            return Ok(());
        };
        self.stats.cuts += 1;
        self.client.handle_disconnected(self.now);
        let epoch = self.store.get(wire.sid).map(|s| s.epoch());
        if let Some(epoch) = epoch {
            if server_notices {
                self.store.detach(self.now, wire.sid, epoch);
            } else {
                self.half_open.push((wire.sid, epoch));
            }
        }
        self.pump()
    }

    /// A random length from 8 to `max_len`, within the window.
    fn random_len(&mut self, max_len: usize) -> usize {
        let max_len = max_len.min(self.config.window_bytes).max(8);
        8 + (self.rng.next_u64() % (max_len as u64 - 7)) as usize
    }

    /// The client app sends a message of 8 to `max_len` bytes; `Ok(false)` if `Full`.
    pub fn client_send(&mut self, max_len: usize, text: bool) -> Result<bool, String> {
        let len = self.random_len(max_len);
        self.client_send_len(len, text)
    }

    /// The client app sends a message of exactly `len` bytes (at least 8).
    pub fn client_send_len(&mut self, len: usize, text: bool) -> Result<bool, String> {
        let payload = self.c2s.new_payload(len, text);
        match self.client.send(self.now, payload, text) {
            Ok(seq) => {
                self.c2s
                    .submitted(SessionKey::Client(self.client_gen), seq.0);
                self.stats.messages.0 += 1;
                self.pump()?;
                Ok(true)
            }
            Err(crate::error::SessionSendError::Full) => {
                self.stats.backpressure += 1;
                Ok(false)
            }
            Err(e) => Err(format!("client send: {e}")),
        }
    }

    /// The server app sends 8 to `max_len` bytes to the client's current session, if it
    /// exists; `Ok(false)` if there is none or it is `Full`.
    pub fn server_send(&mut self, max_len: usize, text: bool) -> Result<bool, String> {
        let len = self.random_len(max_len);
        self.server_send_len(len, text)
    }

    /// The server app sends exactly `len` bytes (at least 8).
    pub fn server_send_len(&mut self, len: usize, text: bool) -> Result<bool, String> {
        let Some(sid) = self.sid else {
            return Ok(false);
        };
        let payload = self.s2c.new_payload(len, text);
        let Some(session) = self.store.get_mut(sid) else {
            return Ok(false);
        };
        match session.send(self.now, payload, text) {
            Ok(seq) => {
                self.s2c.submitted(SessionKey::Server(sid), seq.0);
                self.stats.messages.1 += 1;
                self.pump()?;
                Ok(true)
            }
            Err(crate::error::SessionSendError::Full) => {
                self.stats.backpressure += 1;
                Ok(false)
            }
            Err(e) => Err(format!("server send: {e}")),
        }
    }

    /// Stops delivery towards the client (a slow reader) until `now + d`.
    pub fn stall_client_reader(&mut self, d: Duration) {
        self.stall_to_client = self.now + d;
    }

    /// Stops delivery towards the server until `now + d`.
    pub fn stall_server_reader(&mut self, d: Duration) {
        self.stall_to_server = self.now + d;
    }

    /// Delivers up to `max_bytes` of what is in flight towards the server (`to_server`)
    /// or the client; returns the bytes delivered.
    pub fn deliver(&mut self, to_server: bool, max_bytes: usize) -> Result<usize, String> {
        let now = self.now;
        let stalled = if to_server {
            now < self.stall_to_server
        } else {
            now < self.stall_to_client
        };
        let Some(wire) = self.wire.as_mut() else {
            return Ok(0);
        };
        if stalled {
            return Ok(0);
        }
        let (queue, conn) = if to_server {
            (&mut wire.to_server, &mut wire.server)
        } else {
            (&mut wire.to_client, &mut wire.client)
        };
        let mut done = 0;
        while done < max_bytes {
            let Some(front) = queue.front_mut() else {
                break;
            };
            let piece = front.split_to((max_bytes - done).min(front.len()));
            if front.is_empty() {
                queue.pop_front();
            }
            done += piece.len();
            conn.handle_bytes(now, &piece);
        }
        self.pump()?;
        Ok(done)
    }

    /// Delivers everything in flight, whole, until both sides are quiet.
    pub fn settle_links(&mut self) -> Result<(), String> {
        for _ in 0..10_000 {
            let a = self.deliver(true, usize::MAX)?;
            let b = self.deliver(false, usize::MAX)?;
            if a == 0 && b == 0 {
                return Ok(());
            }
        }
        Err("links did not settle".into())
    }

    /// The earliest deadline of anything in the simulation.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next = [
            self.client.poll_timeout(),
            self.store.poll_timeout(),
            self.reconnect_at,
            Some(self.stall_to_client).filter(|t| *t > self.now),
            Some(self.stall_to_server).filter(|t| *t > self.now),
        ]
        .into_iter()
        .flatten()
        .min();
        for &(sid, epoch) in &self.half_open {
            let t = self
                .store
                .get(sid)
                .filter(|s| s.epoch() == epoch)
                .and_then(|s| s.poll_timeout());
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        }
        if let Some(w) = &self.wire {
            let server = self.store.get(w.sid).and_then(|s| s.poll_timeout());
            for t in [server, w.client.poll_timeout(), w.server.poll_timeout()]
                .into_iter()
                .flatten()
            {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        }
        next
    }

    /// Moves the clock to `to` (never backwards), firing every timer due, reconnecting
    /// if it is time.
    pub fn advance_to(&mut self, to: Instant) -> Result<(), String> {
        self.now = self.now.max(to);
        let now = self.now;
        self.client.handle_timeout(now);
        self.store.handle_timeout(now);
        for &(sid, epoch) in &self.half_open {
            if let Some(s) = self.store.get_mut(sid).filter(|s| s.epoch() == epoch) {
                s.handle_timeout(now);
            }
        }
        if let Some(w) = self.wire.as_mut() {
            w.client.handle_timeout(now);
            w.server.handle_timeout(now);
            if let Some(s) = self.store.get_mut(w.sid) {
                s.handle_timeout(now);
            }
        }
        self.pump()?;
        if self.reconnect_at.is_some_and(|t| now >= t) {
            self.connect()?;
        }
        Ok(())
    }

    /// Moves the clock forward by `d`, stopping at every deadline on the way, delivering
    /// what is in flight whole as it goes.
    pub fn advance(&mut self, d: Duration) -> Result<(), String> {
        let end = self.now + d;
        for _ in 0..100_000 {
            self.settle_links()?;
            match self.next_deadline().filter(|t| *t <= end) {
                Some(t) => self.advance_to(t.max(self.now + Duration::from_nanos(1)))?,
                None => {
                    self.advance_to(end)?;
                    return self.settle_links();
                }
            }
        }
        Err("advance did not reach its end".into())
    }

    /// Moves envelopes between sessions and connections, and events to the apps, until
    /// nothing moves; checks the ledgers on every event and the limits at the end.
    fn pump(&mut self) -> Result<(), String> {
        for _ in 0..100_000 {
            let mut progress = false;
            let mut broken = false;
            if let Some(w) = self.wire.as_mut() {
                let now = self.now;
                let server = self.store.get_mut(w.sid);
                let Some(server) = server else {
                    return Err("connected session vanished from the store".into());
                };
                while let Some(ev) = w.client.poll_event() {
                    progress = true;
                    match ev {
                        Event::Message(Message::Binary(b)) => self.client.handle_message(now, b),
                        Event::Closed(c) => {
                            broken = true;
                            self.stats.last_break = format!("client conn closed: {c:?}");
                        }
                        _ => {}
                    }
                }
                while let Some(ev) = w.server.poll_event() {
                    progress = true;
                    match ev {
                        Event::Message(Message::Binary(b)) => server.handle_message(now, b),
                        Event::Closed(c) => {
                            broken = true;
                            self.stats.last_break = format!("server conn closed: {c:?}");
                        }
                        _ => {}
                    }
                }
                while let Some(env) = self.client.poll_outgoing() {
                    progress = true;
                    w.client
                        .send(now, Message::Binary(env))
                        .map_err(|e| format!("client connection refused a message: {e}"))?;
                    while let Some(chunk) = w.client.poll_transmit() {
                        w.to_server.push_back(chunk);
                    }
                }
                while let Some(env) = server.poll_outgoing() {
                    progress = true;
                    w.server
                        .send(now, Message::Binary(env))
                        .map_err(|e| format!("server connection refused a message: {e}"))?;
                    while let Some(chunk) = w.server.poll_transmit() {
                        w.to_client.push_back(chunk);
                    }
                }
                while let Some(ev) = server.poll_event() {
                    progress = true;
                    if let (true, SessionEvent::Delivered { seq, .. }) =
                        (self.config.confirm_deliveries, &ev)
                    {
                        self.unconfirmed.push_back((w.sid, *seq));
                    }
                    let key = SessionKey::Server(w.sid);
                    on_event(&mut self.s2c, &mut self.c2s, key, &ev, &mut self.stats)?;
                    self.server_log.push(ev);
                }
                if let Some(code) = self.client.wants_disconnect() {
                    broken = true;
                    self.stats.last_break = format!("client session wants {code:?}");
                }
                if let Some(code) = server.wants_disconnect() {
                    broken = true;
                    self.stats.last_break = format!("server session wants {code:?}");
                }
            }
            while let Some(ev) = self.client.poll_event() {
                progress = true;
                let key = SessionKey::Client(self.client_gen);
                on_event(&mut self.c2s, &mut self.s2c, key, &ev, &mut self.stats)?;
                if matches!(ev, SessionEvent::SessionLost { .. }) {
                    self.client_gen += 1;
                }
                self.client_log.push(ev);
            }
            progress |= self.drive_half_open()?;
            while let Some((sid, ev)) = self.store.poll_event() {
                progress = true;
                let key = SessionKey::Server(sid);
                on_event(&mut self.s2c, &mut self.c2s, key, &ev, &mut self.stats)?;
                self.server_log.push(ev);
            }
            if broken {
                // A violation, an unresponsive peer or a failed connection: the runtime
                // closes the transport, which the other side sees as a cut.
                self.cut_and_schedule(Duration::from_millis(10))?;
                progress = true;
            }
            if !progress {
                return self.check_limits();
            }
        }
        Err("pump did not settle".into())
    }

    /// The server's app confirms its `n` oldest unconfirmed deliveries (it acted on
    /// them), so their acks, and a WELCOME held for them, can go out.
    pub fn confirm(&mut self, n: usize) -> Result<(), String> {
        let now = self.now;
        for _ in 0..n {
            let Some((sid, seq)) = self.unconfirmed.pop_front() else {
                break;
            };
            if let Some(session) = self.store.get_mut(sid) {
                session.confirm(now, seq);
            }
        }
        self.pump()
    }

    /// Drains the half-open server sessions: output into the void, events to the app,
    /// and a detach once the session gives up on its dead connection (`Unresponsive`).
    fn drive_half_open(&mut self) -> Result<bool, String> {
        let mut progress = false;
        let now = self.now;
        let mut keep = Vec::new();
        for (sid, epoch) in core::mem::take(&mut self.half_open) {
            let Some(s) = self.store.get_mut(sid).filter(|s| s.epoch() == epoch) else {
                progress = true; // resumed on a new connection, or gone
                continue;
            };
            while s.poll_outgoing().is_some() {
                progress = true;
            }
            while let Some(ev) = s.poll_event() {
                progress = true;
                on_event(
                    &mut self.s2c,
                    &mut self.c2s,
                    SessionKey::Server(sid),
                    &ev,
                    &mut self.stats,
                )?;
                self.server_log.push(ev);
            }
            if s.wants_disconnect().is_some() {
                self.store.detach(now, sid, epoch);
                progress = true;
            } else {
                keep.push((sid, epoch));
            }
        }
        self.half_open = keep;
        Ok(progress)
    }

    fn cut_and_schedule(&mut self, delay: Duration) -> Result<(), String> {
        if self.wire.is_some() {
            self.cut()?;
        }
        if self.reconnect_at.is_none() {
            self.reconnect_at = Some(self.now + delay);
        }
        Ok(())
    }

    fn check_limits(&self) -> Result<(), String> {
        let c = &self.config;
        let over = |m: usize, b: usize| m > c.window_messages || b > c.window_bytes;
        if over(self.client.unacked_messages(), self.client.unacked_bytes()) {
            return Err("client window over its limits".into());
        }
        if let Some(s) = self.sid.and_then(|id| self.store.get(id)) {
            if over(s.unacked_messages(), s.unacked_bytes()) {
                return Err("server window over its limits".into());
            }
        }
        // What can be in flight: each window's messages, a few times over (resends),
        // plus acks and control envelopes.
        let bound = (c.window_bytes + 64 * c.window_messages) * (c.resend_max_tries as usize + 2)
            + 64 * 1024;
        let (a, b) = self.in_flight();
        if a > bound || b > bound {
            return Err(format!("{a}/{b} bytes in flight, over {bound}"));
        }
        if self.store.len() > c.max_sessions {
            return Err("store over max_sessions".into());
        }
        Ok(())
    }

    /// Everything either app sent was acknowledged or dead-lettered.
    pub fn is_settled(&self) -> bool {
        self.c2s.settled() && self.s2c.settled()
    }

    /// A one-paragraph picture of the state, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "now={:?} connected={} established={} reconnect_at={:?} in_flight={:?} next_deadline={:?} \
             client_unacked={} c2s_pending={:?} s2c_pending={:?} store_len={} sid={:?} server_unacked={:?} stats={:?}",
            self.now,
            self.is_connected(),
            self.client.is_established(),
            self.reconnect_at,
            self.in_flight(),
            self.next_deadline(),
            self.client.unacked_messages(),
            self.c2s.pending.iter().take(4).collect::<Vec<_>>(),
            self.s2c.pending.iter().take(4).collect::<Vec<_>>(),
            self.store.len(),
            self.sid,
            self.sid.and_then(|id| self.store.get(id)).map(|s| (s.unacked_messages(), s.is_connected())),
            self.stats,
        )
    }

    /// Checks that every message settled; fills the stats.
    pub fn finish(&mut self) -> Result<Stats, String> {
        self.c2s.check_settled()?;
        self.s2c.check_settled()?;
        self.stats.certain_dead = self.c2s.certain_dead + self.s2c.certain_dead;
        self.stats.possibly_delivered_dead =
            self.c2s.possibly_delivered_dead + self.s2c.possibly_delivered_dead;
        self.stats.end = self.now;
        Ok(self.stats.clone())
    }
}

/// A session configuration drawn from the seed: small windows to hit backpressure, short
/// timers to hit resends, dead letters and expiry.
pub fn random_config(rng: &mut SeededEntropy) -> SessionConfig {
    let mut pick = |lo: u64, hi: u64| lo + rng.next_u64() % (hi - lo + 1);
    let ack_delay = pick(0, 40);
    SessionConfig {
        window_messages: pick(2, 48) as usize,
        window_bytes: pick(256, 64 * 1024) as usize,
        ack_delay: Duration::from_millis(ack_delay),
        ack_every_messages: pick(1, 16) as u32,
        rto_initial: Duration::from_millis(pick(50, 300)),
        // As with TCP's 200 ms delayed ack and 1 s minimum RTO: the timer must outlast
        // the peer's ack delay, or every first transmission is resent.
        rto_min: Duration::from_millis(2 * ack_delay + 10),
        rto_max: Duration::from_millis(pick(300, 2_000)),
        resend_max_tries: pick(2, 8) as u32,
        message_max_age: Duration::from_millis(pick(1_000, 20_000)),
        session_expiry: Duration::from_millis(pick(1_000, 8_000)),
        max_sessions: 64,
        confirm_deliveries: rng.next_u64() % 2 == 0,
    }
}

/// One random run: both apps send up to `quota` messages while the network chunks,
/// stalls and cuts; then the network calms down and everything must settle.
pub fn run_seed(seed: u64) -> Result<Stats, String> {
    let mut rng = SeededEntropy::new(seed);
    let config = random_config(&mut rng);
    let mut sim = ReliableSim::new(config.clone(), rng.next_u64());
    let quota = rng.next_u64() % 60;
    let max_len = (rng.next_u64() as usize % config.window_bytes).max(8);
    let mut cuts_left = rng.next_u64() % 6;
    let (mut sent_c, mut sent_s) = (0u64, 0u64);
    sim.reconnect_at = Some(Instant::from_millis(rng.next_u64() % 50));
    const MAX_STEPS: u64 = 50_000;
    for step in 0..MAX_STEPS {
        sim.stats.steps = step;
        let calm = sent_c >= quota && sent_s >= quota;
        if calm {
            // The server's app keeps up once the test stops sending.
            sim.confirm(usize::MAX)?;
        }
        if calm && sim.is_settled() && sim.in_flight() == (0, 0) {
            return sim.finish();
        }
        let roll = sim.rng.next_u64() % 100;
        let text = sim.rng.next_u64() % 2 == 0;
        match roll {
            0..=14 if sent_c < quota => {
                let len = 8 + sim.rng.next_u64() as usize % max_len;
                sent_c += sim.client_send(len, text)? as u64;
            }
            15..=29 if sent_s < quota => {
                let len = 8 + sim.rng.next_u64() as usize % max_len;
                sent_s += sim.server_send(len, text)? as u64;
            }
            30..=69 => {
                let to_server = sim.rng.next_u64() % 2 == 0;
                let n = 1 + sim.rng.next_u64() as usize % 4096;
                sim.deliver(to_server, n)?;
            }
            70..=71 if cuts_left > 0 && sim.is_connected() => {
                cuts_left -= 1;
                if sim.rng.next_u64() % 10 < 3 {
                    sim.cut_half_open()?;
                } else {
                    sim.cut()?;
                }
                // Mostly quick reconnects; sometimes longer than the session lasts.
                let delay = match sim.rng.next_u64() % 10 {
                    0 => config.session_expiry + Duration::from_millis(sim.rng.next_u64() % 3000),
                    1..=3 => Duration::from_millis(500 + sim.rng.next_u64() % 2_500),
                    _ => Duration::from_millis(1 + sim.rng.next_u64() % 200),
                };
                sim.reconnect_at = Some(sim.now + delay);
            }
            73..=79 if !sim.unconfirmed.is_empty() => {
                let n = 1 + sim.rng.next_u64() as usize % 4;
                sim.confirm(n)?;
            }
            72 if !calm && sim.rng.next_u64() % 8 == 0 => {
                let d = Duration::from_millis(sim.rng.next_u64() % 1_500);
                if sim.rng.next_u64() % 2 == 0 {
                    sim.stall_client_reader(d);
                } else {
                    sim.stall_server_reader(d);
                }
            }
            _ => {
                // Time passes: a little, or up to the next deadline when idle.
                let idle = sim.in_flight() == (0, 0) || !sim.is_connected();
                let small = sim.now + Duration::from_micros(sim.rng.next_u64() % 5_000);
                let to = match sim.next_deadline() {
                    Some(t) if idle || t < small => t.max(sim.now),
                    _ => small,
                };
                sim.advance_to(to)?;
                if calm && !sim.is_connected() && sim.reconnect_at.is_none() {
                    sim.reconnect_at = Some(sim.now);
                }
            }
        }
    }
    Err(format!(
        "did not settle within {MAX_STEPS} steps: {}",
        sim.describe()
    ))
}

#[cfg(test)]
mod tests;
