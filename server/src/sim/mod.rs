//! The whole server under seeded simulation (unstable; feature `sim`).
//!
//! A [`World`] holds one [`Server`](crate::Server), a simulated journal disk, simulated
//! TCP pipes, and peers that speak to it with the core's real client machines: reliable
//! (`sockeye.v1`, resuming their sessions), plain JSON, and a backend pushing over HTTP.
//! One seed drives every choice: who sends what to whom (direct and room messages,
//! pushes), how bytes are chunked and when they move, slow readers, cuts (the server
//! told at once, or only by its keepalive), commits that finish late or fail, server
//! crashes at any point between an append and its commit (the disk keeps what was
//! synced and any prefix of the write in flight; the server restarts from the replayed
//! journal), and the clock, which moves to the next deadline at most.
//!
//! Checked on every step: every receiver sees each sender's messages strictly in order,
//! never twice; a connection's queue stays within `max_queue_bytes` plus one message;
//! after `handle_timeout(now)` the next deadline is later than `now`; at most one commit
//! is outstanding. At the end, with the network calm and every peer connected: every
//! promise (a 202 for a push to a user, the ACK of a reliable client's direct message)
//! was delivered to that user or reported as a dead letter, across every crash; then a
//! graceful shutdown stops with every connection gone.

mod disk;
mod fuzz;
mod ledger;
mod net;
mod peers;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use sockeye_core::hub::ConnId;
use sockeye_core::journal::replay;
use sockeye_core::{Instant, SeededEntropy};

use crate::{Action, Config, Server};
use disk::Disk;
use ledger::Ledger;
use net::Pipe;
use peers::{Peer, Pusher, To};

pub use fuzz::server_ops;

/// A number below `n` (0 when `n` is 0).
pub(crate) fn below(rng: &mut SeededEntropy, n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        rng.next_u64() % n
    }
}

/// True with probability `percent` / 100.
fn chance(rng: &mut SeededEntropy, percent: u64) -> bool {
    below(rng, 100) < percent
}

/// Wall-clock milliseconds at the simulation's start.
const UNIX_START_MS: u64 = 1_700_000_000_000;

/// What a run did, for the sweep's summary.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Steps taken.
    pub steps: u64,
    /// Server crashes and restarts from the journal.
    pub crashes: u64,
    /// Pipes cut.
    pub cuts: u64,
    /// Commits asked for, done, failed.
    pub commits: (u64, u64, u64),
    /// Messages delivered (direct and room).
    pub deliveries: u64,
    /// Promises made (202s to a user, ACKs of direct messages).
    pub promises: u64,
    /// Dead letters reported.
    pub dead_letters: u64,
    /// Pushes answered 202, 503 or 408, or cut before an answer.
    pub pushes: (u64, u64, u64),
    /// Sessions established or resumed, connections made, handshakes refused or cut.
    pub peers: (u64, u64, u64),
    /// Virtual time at the end.
    pub end: Duration,
}

/// The server, its disk, the network and the peers, driven by one seed.
pub struct World {
    rng: SeededEntropy,
    now: Instant,
    config: Config,
    server: Server,
    disk: Disk,
    pipes: BTreeMap<u64, Pipe>,
    next_pipe: u64,
    by_conn: HashMap<ConnId, u64>,
    peers: Vec<Peer>,
    pusher: Pusher,
    ledger: Ledger,
    /// The end: no more faults or new messages, everyone connects.
    calm: bool,
    /// A graceful shutdown was asked for: nobody reconnects.
    shutting_down: bool,
    stopped: bool,
    stats: Stats,
    /// Print every step (`SOCKEYE_SIM_TRACE=1`), to follow a failing seed.
    trace: bool,
}

/// A seed's server configuration: small limits and short timings, so that the limits
/// and timers are reached.
fn random_config(rng: &mut SeededEntropy, peers: usize) -> Config {
    let secs = |rng: &mut SeededEntropy, lo: u64, hi: u64| {
        Duration::from_millis(lo * 1000 + below(rng, (hi - lo) * 1000))
    };
    Config {
        journal: chance(rng, 80),
        max_connections: peers + below(rng, 3) as usize,
        max_connections_per_user: 1 + below(rng, 3) as usize,
        max_queue_bytes: [8 * 1024, 64 * 1024, 256 * 1024][below(rng, 3) as usize],
        ping_interval: secs(rng, 2, 20),
        pong_timeout: secs(rng, 1, 10),
        session_expiry: secs(rng, 5, 60),
        mailbox_size: 2 + below(rng, 20) as usize,
        mailbox_age: secs(rng, 5, 120),
        head_timeout: secs(rng, 1, 10),
        shutdown_grace: secs(rng, 1, 5),
        ..Config::default()
    }
}

impl World {
    /// A world for `seed`: 2–5 reliable peers, 0–2 plain ones, rooms `a` and `b`.
    pub fn new(seed: u64) -> World {
        let mut rng = SeededEntropy::new(seed);
        let reliable = 2 + below(&mut rng, 4) as usize;
        let plain = below(&mut rng, 3) as usize;
        let config = random_config(&mut rng, reliable + plain);
        let now = Instant::from_millis(1_000);
        let server = Server::new(
            config.clone(),
            now,
            UNIX_START_MS,
            Box::new(SeededEntropy::new(rng.next_u64())),
            None,
        );
        let mut peers = Vec::new();
        for i in 0..reliable + plain {
            let rooms: Vec<String> = ["a", "b"]
                .into_iter()
                .filter(|_| chance(&mut rng, 50))
                .map(String::from)
                .collect();
            let (name, is_reliable) = if i < reliable {
                (format!("r{i}"), true)
            } else {
                (format!("p{i}"), false)
            };
            peers.push(Peer::new(name, is_reliable, now, rooms));
        }
        let trace = std::env::var_os("SOCKEYE_SIM_TRACE").is_some();
        for peer in &mut peers {
            peer.trace = trace;
        }
        let mut ledger = Ledger::default();
        ledger.plain = peers
            .iter()
            .filter(|p| !p.reliable)
            .map(|p| p.user.clone())
            .collect();
        World {
            rng,
            now,
            config,
            server,
            disk: Disk::default(),
            pipes: BTreeMap::new(),
            next_pipe: 1,
            by_conn: HashMap::new(),
            peers,
            pusher: Pusher::default(),
            ledger,
            calm: false,
            shutting_down: false,
            stopped: false,
            stats: Stats::default(),
            trace,
        }
    }

    /// Runs `steps` steps of traffic and faults, then calms down and checks that every
    /// promise was kept, then shuts the server down gracefully.
    pub fn run(&mut self, steps: u64) -> Result<Stats, String> {
        self.settle()?;
        for _ in 0..steps {
            self.step()?;
        }
        self.calm = true;
        let mut calm_steps = 0u64;
        while !self.is_settled() {
            calm_steps += 1;
            if calm_steps > 200_000 {
                return Err(format!("not settled after the calm: {}", self.describe()));
            }
            self.step()?;
        }
        self.shutting_down = true;
        self.server.handle_shutdown(self.now);
        self.settle()?;
        let mut shutdown_steps = 0u64;
        while !self.stopped {
            shutdown_steps += 1;
            if shutdown_steps > 100_000 {
                return Err(format!("no Stopped after a shutdown: {}", self.describe()));
            }
            self.step()?;
        }
        if self.server.connections() != 0 {
            return Err(format!(
                "stopped with {} connections",
                self.server.connections()
            ));
        }
        let mut stats = self.stats.clone();
        stats.commits = self.disk.commits;
        stats.deliveries = self.ledger.deliveries;
        stats.promises = self.ledger.promises() as u64;
        stats.dead_letters = self.ledger.dead_letters;
        stats.pushes = self.pusher.stats;
        for peer in &self.peers {
            stats.peers.0 += peer.stats.0;
            stats.peers.1 += peer.stats.1;
            stats.peers.2 += peer.stats.2;
        }
        stats.end = self.now.saturating_duration_since(Instant::ZERO);
        Ok(stats)
    }

    /// Every promise kept, every reliable message acknowledged, nothing in flight.
    fn is_settled(&self) -> bool {
        self.ledger.open_promises().next().is_none()
            && self.peers.iter().all(|p| p.unacked() == 0 && p.is_open())
            && self.pusher.in_flight.is_none()
            && !self.disk.is_committing()
    }

    fn describe(&self) -> String {
        let open: Vec<String> = self
            .ledger
            .open_promises()
            .take(5)
            .map(|(r, s, n)| format!("{s}:{n} to {r}"))
            .collect();
        let peers: Vec<String> = self
            .peers
            .iter()
            .map(|p| {
                format!(
                    "{} open={} unacked={} reconnect_at={:?}",
                    p.user,
                    p.is_open(),
                    p.unacked(),
                    p.reconnect_at
                )
            })
            .collect();
        format!(
            "at {:?}: open promises {open:?}; peers {peers:?}; pipes {}; server connections {}; \
             committing {}",
            self.now,
            self.pipes.len(),
            self.server.connections(),
            self.disk.is_committing()
        )
    }

    /// One random step, then everything it set off.
    fn step(&mut self) -> Result<(), String> {
        self.stats.steps += 1;
        let calm = self.calm || self.shutting_down;
        let up: Vec<u64> = self
            .pipes
            .iter()
            .filter(|(_, p)| !p.server_gone && (!p.up.is_empty() || (p.up_eof && !p.eof_told)))
            .map(|(id, _)| *id)
            .collect();
        let down: Vec<u64> = self
            .pipes
            .iter()
            .filter(|(_, p)| {
                !p.peer_gone
                    && !p.dead
                    && p.stalled_until <= self.now
                    && (!p.down.is_empty() || p.down_eof)
            })
            .map(|(id, _)| *id)
            .collect();
        let roll = below(&mut self.rng, 100);
        if self.trace {
            eprintln!("{:?} step {} roll {roll}", self.now, self.stats.steps);
        }
        match roll {
            0..=29 if !up.is_empty() => {
                let id = up[below(&mut self.rng, up.len() as u64) as usize];
                self.move_up(id);
            }
            30..=64 if !down.is_empty() => {
                let id = down[below(&mut self.rng, down.len() as u64) as usize];
                self.move_down(id)?;
            }
            65..=74 if !calm => self.peer_sends(),
            75..=77 if !calm && self.pusher.in_flight.is_none() => self.start_push(),
            78..=83 if self.disk.is_committing() => {
                let ok = calm || chance(&mut self.rng, 90);
                self.finish_commit(ok);
            }
            84 if !calm => self.cut(),
            85 if !calm => self.stall(),
            86 if !calm && self.config.journal && chance(&mut self.rng, 10) => self.crash()?,
            _ => {
                // Time moves when nothing else is due, or now and then.
                if (up.is_empty() && down.is_empty()) || chance(&mut self.rng, 30) {
                    self.advance()?;
                }
            }
        }
        self.settle()?;
        self.check_limits()
    }

    fn move_up(&mut self, id: u64) {
        let now = self.now;
        let n = 1 + below(&mut self.rng, 1500) as usize;
        let Some(pipe) = self.pipes.get_mut(&id) else {
            return;
        };
        let conn = pipe.conn;
        let bytes = Pipe::take(&mut pipe.up, n);
        let eof = pipe.up.is_empty() && pipe.up_eof && !pipe.eof_told;
        if eof {
            pipe.eof_told = true;
        }
        if !bytes.is_empty() {
            self.server.handle_bytes(now, conn, &bytes);
        }
        if eof {
            self.server.handle_eof(now, conn);
        }
    }

    fn move_down(&mut self, id: u64) -> Result<(), String> {
        let now = self.now;
        let n = 1 + below(&mut self.rng, 3000) as usize;
        let Some(pipe) = self.pipes.get_mut(&id) else {
            return Ok(());
        };
        let bytes = Pipe::take(&mut pipe.down, n);
        let eof = pipe.down.is_empty() && pipe.down_eof;
        if eof {
            pipe.peer_gone = true;
            pipe.up_eof = true;
        }
        if let Some(push) = self.pusher.in_flight.as_mut().filter(|p| p.0 == id) {
            push.3.extend_from_slice(&bytes);
            if eof {
                self.pusher.finish(&mut self.ledger, false)?;
            }
            return Ok(());
        }
        let Some(peer) = self.peers.iter_mut().find(|p| p.pipe == Some(id)) else {
            return Ok(());
        };
        if !bytes.is_empty() {
            peer.feed(now, &bytes, &mut self.rng)?;
        }
        if eof {
            peer.feed_eof(now);
        }
        Ok(())
    }

    /// A random peer sends a direct message to another user, or a room message.
    fn peer_sends(&mut self) {
        let now = self.now;
        let from = below(&mut self.rng, self.peers.len() as u64) as usize;
        let to = if chance(&mut self.rng, 70) {
            let mut other = below(&mut self.rng, self.peers.len() as u64 - 1) as usize;
            if other >= from {
                other += 1;
            }
            To::User(self.peers[other].user.clone())
        } else {
            To::Room(["a", "b"][below(&mut self.rng, 2) as usize].to_string())
        };
        let pad = self.pad();
        self.peers[from].send(now, &to, pad, &mut self.ledger);
    }

    /// Mostly small messages, sometimes a few KiB (to reach the queue limits).
    fn pad(&mut self) -> usize {
        if chance(&mut self.rng, 10) {
            below(&mut self.rng, 4096) as usize
        } else {
            0
        }
    }

    fn start_push(&mut self) {
        let to = if chance(&mut self.rng, 75) {
            let i = below(&mut self.rng, self.peers.len() as u64) as usize;
            To::User(self.peers[i].user.clone())
        } else {
            To::Room("a".to_string())
        };
        let pad = self.pad();
        let (n, request) = self.pusher.request(&to, pad);
        let id = self.open_pipe();
        if let Some(pipe) = self.pipes.get_mut(&id) {
            pipe.write_up(&request);
        }
        let user = match to {
            To::User(user) => Some(user),
            To::Room(_) => None,
        };
        self.pusher.in_flight = Some((id, n, user, Vec::new()));
    }

    /// Accepts a new TCP connection.
    fn open_pipe(&mut self) -> u64 {
        let conn = self.server.handle_accept(self.now);
        let id = self.next_pipe;
        self.next_pipe += 1;
        let capacity = [1024, 16 * 1024, 256 * 1024][below(&mut self.rng, 3) as usize];
        self.pipes.insert(id, Pipe::new(conn, capacity));
        self.by_conn.insert(conn, id);
        id
    }

    fn finish_commit(&mut self, ok: bool) {
        if self.trace {
            eprintln!("{:?} commit done ok={ok}", self.now);
        }
        self.disk.finish_commit(ok);
        let result = if ok {
            Ok(())
        } else {
            Err("sim: the disk refused the write".to_string())
        };
        self.server.handle_committed(self.now, result);
    }

    /// Cuts a random pipe: its bytes vanish, its peer notices; the server notices at
    /// once (a reset) or only by its own timers (a half-open connection).
    fn cut(&mut self) {
        let ids: Vec<u64> = self
            .pipes
            .iter()
            .filter(|(_, p)| !p.dead)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        let id = ids[below(&mut self.rng, ids.len() as u64) as usize];
        self.stats.cuts += 1;
        let told = chance(&mut self.rng, 70);
        let pipe = self.pipes.get_mut(&id).expect("listed");
        pipe.dead = true;
        pipe.up.clear();
        pipe.down.clear();
        let conn = pipe.conn;
        let tell = told && !pipe.server_gone;
        if tell {
            pipe.server_gone = true;
        }
        if tell {
            self.server.handle_closed(self.now, conn);
        }
        self.peer_lost(id);
    }

    /// Whoever used pipe `id` lost it.
    fn peer_lost(&mut self, id: u64) {
        let now = self.now;
        if self.pusher.in_flight.as_ref().is_some_and(|p| p.0 == id) {
            // Cut before the whole answer: not a promise unless a 202 got through.
            let _ = self.pusher.finish(&mut self.ledger, true);
        }
        let delay = self.reconnect_delay();
        if let Some(peer) = self.peers.iter_mut().find(|p| p.pipe == Some(id)) {
            peer.disconnected(now, now + delay);
        }
    }

    /// How long a peer waits to reconnect: mostly soon, sometimes past a session's expiry.
    fn reconnect_delay(&mut self) -> Duration {
        if self.calm || !chance(&mut self.rng, 5) {
            Duration::from_millis(below(&mut self.rng, 2000))
        } else {
            Duration::from_millis(below(&mut self.rng, 90_000))
        }
    }

    /// A random pipe's peer stops reading for a while.
    fn stall(&mut self) {
        let ids: Vec<u64> = self.pipes.keys().copied().collect();
        if ids.is_empty() {
            return;
        }
        let id = ids[below(&mut self.rng, ids.len() as u64) as usize];
        let until = self.now + Duration::from_millis(below(&mut self.rng, 30_000));
        if let Some(pipe) = self.pipes.get_mut(&id) {
            pipe.stalled_until = until;
        }
    }

    /// The server process dies: every connection with it; the disk keeps what it keeps;
    /// a new server starts from the replayed journal.
    fn crash(&mut self) -> Result<(), String> {
        self.stats.crashes += 1;
        self.ledger.on_crash();
        if self.trace {
            eprintln!("{:?} CRASH", self.now);
        }
        let file = self.disk.crash(&mut self.rng);
        let replayed = replay(&file);
        if let Some(e) = replayed.error {
            return Err(format!("the journal does not replay after a crash: {e:?}"));
        }
        let commits = self.disk.commits;
        self.disk = Disk::from_file(file[..replayed.valid_len].to_vec());
        self.disk.commits = commits;
        let ids: Vec<u64> = self.pipes.keys().copied().collect();
        self.pipes.clear();
        self.by_conn.clear();
        for id in ids {
            self.peer_lost(id);
        }
        let unix = UNIX_START_MS + self.now.as_nanos() / 1_000_000;
        self.server = Server::new(
            self.config.clone(),
            self.now,
            unix,
            Box::new(SeededEntropy::new(self.rng.next_u64())),
            Some(&replayed.state),
        );
        Ok(())
    }

    /// Moves the clock forward, never past the earliest deadline, and fires what is due.
    fn advance(&mut self) -> Result<(), String> {
        let dt = match below(&mut self.rng, 100) {
            0..=69 => below(&mut self.rng, 50),
            70..=94 => below(&mut self.rng, 2_000),
            _ => below(&mut self.rng, 30_000),
        };
        let earliest = self.next_deadline();
        let mut to = self.now + Duration::from_millis(dt);
        if let Some(at) = earliest {
            to = to.min(at.max(self.now));
        }
        self.now = to;
        let now = self.now;
        if self.server.poll_timeout().is_some_and(|at| at <= now) {
            self.server.handle_timeout(now);
            if let Some(next) = self.server.poll_timeout().filter(|at| *at <= now) {
                return Err(format!(
                    "after handle_timeout({now:?}) the next deadline is {next:?}: {}",
                    self.server.describe_deadlines()
                ));
            }
        }
        let mut lost = Vec::new();
        for peer in &mut self.peers {
            if peer.deadline().is_some_and(|at| at <= now) && peer.handle_timeout(now) {
                lost.extend(peer.pipe);
            }
        }
        for id in lost {
            self.hang_up(id);
        }
        Ok(())
    }

    /// The peer on pipe `id` closes it.
    fn hang_up(&mut self, id: u64) {
        if let Some(pipe) = self.pipes.get_mut(&id) {
            pipe.up_eof = true;
            pipe.peer_gone = true;
        }
        let now = self.now;
        let delay = self.reconnect_delay();
        if let Some(peer) = self.peers.iter_mut().find(|p| p.pipe == Some(id)) {
            peer.disconnected(now, now + delay);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let peers = self.peers.iter().filter_map(Peer::deadline);
        let stalls = self
            .pipes
            .values()
            .map(|p| p.stalled_until)
            .filter(|at| *at > self.now);
        self.server
            .poll_timeout()
            .into_iter()
            .chain(peers)
            .chain(stalls)
            .min()
    }

    /// Runs every consequence of the last input: the server's actions and writes, the
    /// peers' machines, reconnections.
    fn settle(&mut self) -> Result<(), String> {
        for _round in 0..64 {
            let mut progress = self.server_actions()?;
            progress |= self.server_writes();
            progress |= self.pump_peers()?;
            progress |= self.reconnect();
            self.pipes.retain(|_, p| !p.is_finished());
            if !progress {
                return Ok(());
            }
        }
        Ok(())
    }

    fn server_actions(&mut self) -> Result<bool, String> {
        let mut any = false;
        while let Some(action) = self.server.poll_action() {
            any = true;
            match action {
                Action::Wake(conn) => {
                    if let Some(pipe) = self
                        .by_conn
                        .get(&conn)
                        .and_then(|id| self.pipes.get_mut(id))
                    {
                        pipe.wants_write = true;
                    }
                }
                Action::Close(conn) => {
                    if let Some(pipe) = self
                        .by_conn
                        .get(&conn)
                        .and_then(|id| self.pipes.get_mut(id))
                    {
                        while let Some(bytes) = self.server.poll_transmit(conn) {
                            pipe.write_down(&bytes);
                        }
                        pipe.down_eof = true;
                        pipe.server_gone = true;
                        pipe.wants_write = false;
                    }
                    self.by_conn.remove(&conn);
                    self.server.handle_closed(self.now, conn);
                }
                Action::Append(bytes) => self.disk.append(&bytes),
                Action::Commit => self.disk.begin_commit()?,
                Action::DeadLetter(letter) => {
                    self.ledger.on_dead_letter(&letter.user, &letter.message)?;
                }
                Action::Stopped => self.stopped = true,
                // One node, no cluster backend (`cluster_tests` drives many).
                Action::Publish { .. }
                | Action::Command { .. }
                | Action::Subscribe(_)
                | Action::Unsubscribe(_) => {}
                Action::Log(level, line) => {
                    if self.trace {
                        eprintln!("{:?} log {level:?}: {line}", self.now);
                    }
                }
            }
        }
        Ok(any)
    }

    /// The server writes to every pipe that wants it, as far as the socket takes.
    fn server_writes(&mut self) -> bool {
        let mut any = false;
        for pipe in self.pipes.values_mut() {
            while pipe.wants_write && !pipe.server_gone && pipe.has_room() {
                match self.server.poll_transmit(pipe.conn) {
                    Some(bytes) => {
                        pipe.write_down(&bytes);
                        any = true;
                    }
                    None => pipe.wants_write = false,
                }
            }
        }
        any
    }

    fn pump_peers(&mut self) -> Result<bool, String> {
        let now = self.now;
        let mut ended = Vec::new();
        self.ledger
            .evicted
            .extend(self.server.evicted.iter().cloned());
        for (i, peer) in self.peers.iter_mut().enumerate() {
            let pipe = peer.pipe.and_then(|id| self.pipes.get_mut(&id));
            if peer.pump(now, pipe, &mut self.ledger)? {
                ended.push(i);
            }
        }
        let any = !ended.is_empty();
        for i in ended {
            let delay = self.reconnect_delay();
            self.peers[i].disconnected(now, now + delay);
        }
        Ok(any)
    }

    /// Peers whose reconnect time came connect.
    fn reconnect(&mut self) -> bool {
        if self.shutting_down {
            for peer in &mut self.peers {
                peer.reconnect_at = None;
            }
            return false;
        }
        let now = self.now;
        let due: Vec<usize> = (0..self.peers.len())
            .filter(|&i| {
                let p = &self.peers[i];
                p.pipe.is_none() && p.reconnect_at.is_some_and(|at| at <= now)
            })
            .collect();
        for &i in &due {
            let id = self.open_pipe();
            let pipe = self.pipes.get_mut(&id).expect("just opened");
            self.peers[i].connect(now, id, pipe, &mut self.rng);
        }
        !due.is_empty()
    }

    fn check_limits(&self) -> Result<(), String> {
        let bound = self.config.max_queue_bytes + self.config.max_message_bytes + 1024;
        for pipe in self.pipes.values() {
            let queued = self.server.queued_bytes(pipe.conn);
            if !pipe.server_gone && queued > bound {
                return Err(format!(
                    "connection {} queues {queued} bytes (max_queue_bytes {})",
                    pipe.conn.0, self.config.max_queue_bytes
                ));
            }
        }
        Ok(())
    }
}

/// Runs one seed: a random amount of traffic and faults, then the calm and the checks.
pub fn run_seed(seed: u64) -> Result<Stats, String> {
    let mut world = World::new(seed);
    let steps = 200 + below(&mut world.rng, 1500);
    world.run(steps).map_err(|e| format!("seed {seed}: {e}"))
}
