//! [`Server`]: the drive contract, and what happens to one connection from its first
//! byte to its end.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use sockeye_core::auth::UserId;
use sockeye_core::handshake::{HttpRequest, Request, RequestReader};
use sockeye_core::hub::{ConnId, Delivery, Hub, Mail};
use sockeye_core::journal::JournalState;
use sockeye_core::session::envelope::parse_resume_header;
use sockeye_core::session::{SessionStore, SUBPROTOCOL};
use sockeye_core::{CloseCode, Entropy, Event, Instant, SessionId};

use crate::answer;
use crate::assets;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::conn::{Conn, Phase};
use crate::durable::Durable;
use crate::identity::{identify, push_access, PushAccess};
use crate::metrics::{HubGauges, Metrics, Rejection};
use crate::plain;
use crate::push::parse_pushes;
use crate::Action;

/// The demo page served at `/`.
const DEMO_PAGE: &str = include_str!("demo.html");

/// How long after a failed journal commit the layer asks for another.
const COMMIT_RETRY: core::time::Duration = core::time::Duration::from_secs(1);

/// The user a reliable session belongs to, the connection carrying it now, the hub
/// member standing in for it while it has none, and the rooms it was in when it left
/// the hub (a resume joins them again).
#[derive(Debug)]
pub(crate) struct Owner {
    pub(crate) user: UserId,
    pub(crate) conn: Option<ConnId>,
    /// While the session has no connection: the hub id that keeps its place in its rooms
    /// and takes its deliveries into the session's window (no socket behind it), so a
    /// message published during a cut reaches the client on resume. A resume transfers
    /// it to the new connection; expiry or a full window removes it.
    pub(crate) ghost: Option<ConnId>,
    /// The rooms to join again on resume, when the session has no ghost.
    pub(crate) rooms: Vec<String>,
    /// How far records appended to the journal cover the client's stream.
    pub(crate) journaled: sockeye_core::Seq,
    /// How far acks may report the client's stream: what durable records cover. An ack
    /// beyond it would let the client drop numbers a restart still expects.
    pub(crate) released: sockeye_core::Seq,
}

/// Something that waits for a journal commit.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// A client command acted on: acknowledge it once durable.
    Confirm {
        session: SessionId,
        seq: sockeye_core::Seq,
    },
}

/// The `sockeye` server as a sans-IO state machine: see the [crate docs](crate).
pub struct Server {
    pub(crate) config: Config,
    pub(crate) ws_config: sockeye_core::Config,
    /// `now` at construction and the Unix time it was then, in milliseconds: the one
    /// clock epoch (tokens and mailbox ages need wall-clock time).
    epoch: (Instant, u64),
    pub(crate) entropy: Box<dyn Entropy + Send>,
    pub(crate) hub: Hub,
    pub(crate) store: SessionStore,
    pub(crate) owners: BTreeMap<SessionId, Owner>,
    /// Boxed: a B-tree node holds eleven entries and is about half full, so inline
    /// connections would cost twice their size.
    pub(crate) conns: BTreeMap<ConnId, Box<Conn>>,
    /// Hub members without a connection, standing in for detached sessions
    /// ([`Owner::ghost`]).
    pub(crate) ghosts: BTreeMap<ConnId, SessionId>,
    /// Users whose session left its rooms without asking (for the simulator's ledger:
    /// room messages published then do not reach it).
    #[cfg(feature = "sim")]
    pub(crate) evicted: BTreeSet<String>,
    next_conn: u64,
    pub(crate) durable: Durable,
    /// Waiting for the commit numbered by the key.
    pub(crate) waiters: VecDeque<(u64, Waiter)>,
    /// Sessions whose outgoing envelopes wait for commit `ticket` (a DATA whose record
    /// is not durable must not reach the client).
    pub(crate) held: BTreeMap<SessionId, u64>,
    commit_retry: Option<Instant>,
    pub(crate) metrics: Metrics,
    /// The cluster backend's state, with [`Config::cluster`].
    pub(crate) cluster: Option<Cluster>,
    /// While an upgrade admitted by Redis is carried out: its user's connections on the
    /// other nodes (`cluster_conns.rs`).
    pub(crate) remote_conns: usize,
    /// The session whose client command is being acted on: what it publishes is skipped
    /// if Redis finds the session taken over (`cluster_sessions.rs`).
    pub(crate) cause: Option<SessionId>,
    pub(crate) actions: VecDeque<Action>,
    deadlines: BTreeSet<(Instant, ConnId)>,
    /// Connections changed by the current input, to settle before it returns.
    touched: Vec<ConnId>,
    /// Reliable connections whose session to drive before settling.
    drive: Vec<ConnId>,
    /// The plain connection whose mailbox [`Server::deliver`] is handing out.
    pub(crate) mail_flush: Option<ConnId>,
    /// Graceful shutdown began.
    stopping: bool,
    /// Connections left at this deadline of the shutdown are cut.
    shutdown: Option<Instant>,
    stopped: bool,
    pub(crate) now: Instant,
}

impl core::fmt::Debug for Server {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("connections", &self.conns.len())
            .field("sessions", &self.store.len())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server started at `now`, when the wall clock read `unix_ms` (milliseconds since
    /// the Unix epoch); `entropy` makes session ids, tokens and development user ids.
    /// `journal` is the state replayed from the journal at start (with
    /// [`Config::journal`]): its sessions wait for their clients to resume and its
    /// mailboxes are restored with their original ages.
    pub fn new(
        config: Config,
        now: Instant,
        unix_ms: u64,
        entropy: Box<dyn Entropy + Send>,
        journal: Option<&JournalState>,
    ) -> Server {
        let mut entropy = entropy;
        let cluster = config.cluster.clone().map(|cluster| {
            let mut id = [0u8; 8];
            entropy.fill(&mut id);
            let node: String = id.iter().map(|b| format!("{b:02x}")).collect();
            Cluster::new(cluster, node)
        });
        let mut server = Server {
            cluster,
            remote_conns: 0,
            cause: None,
            ws_config: config.ws_config(),
            hub: Hub::new(config.hub_config()),
            store: SessionStore::new(config.session_config(), now),
            durable: Durable::new(config.journal, config.cluster.is_some()),
            config,
            epoch: (now, unix_ms),
            entropy,
            owners: BTreeMap::new(),
            conns: BTreeMap::new(),
            ghosts: BTreeMap::new(),
            #[cfg(feature = "sim")]
            evicted: BTreeSet::new(),
            next_conn: 1,
            waiters: VecDeque::new(),
            held: BTreeMap::new(),
            commit_retry: None,
            metrics: Metrics::default(),
            actions: VecDeque::new(),
            deadlines: BTreeSet::new(),
            touched: Vec::new(),
            drive: Vec::new(),
            mail_flush: None,
            stopping: false,
            shutdown: None,
            stopped: false,
            now,
        };
        if let Some(state) = journal {
            server.restore(now, state);
        }
        server
    }

    fn restore(&mut self, now: Instant, state: &JournalState) {
        let mut sessions = 0;
        for snapshot in state.sessions() {
            match self.store.restore(now, snapshot) {
                Ok(()) => {
                    sessions += 1;
                    self.durable.seed(snapshot);
                    self.owners.insert(
                        snapshot.id,
                        Owner {
                            user: UserId(snapshot.user.clone()),
                            conn: None,
                            ghost: None,
                            rooms: snapshot.rooms.iter().cloned().collect(),
                            journaled: snapshot.client_delivered,
                            released: snapshot.client_delivered,
                        },
                    );
                }
                Err(e) => self.log(
                    crate::Level::Warn,
                    format!("journal: a session could not be restored: {e}"),
                ),
            }
        }
        let mut mail = 0;
        let now_ms = self.unix_ms(now);
        for (user, records) in state.mailboxes() {
            let user = UserId(user.to_string());
            self.durable.mail_restored(&user, records.len() as u32);
            for record in records {
                let age_ns = now_ms.saturating_sub(record.queued_unix_ms) * 1_000_000;
                let queued_at = Instant::from_nanos(now.as_nanos().saturating_sub(age_ns));
                let restored = Mail::new(
                    queued_at,
                    record.from.clone().map(UserId),
                    record.payload.clone(),
                );
                self.hub.restore_mail(now, &user, restored);
                mail += 1;
            }
        }
        self.log(
            crate::Level::Info,
            format!("journal: {sessions} session(s) and {mail} mailbox message(s) restored"),
        );
        // Restored sessions take their rooms' messages from now on, as a detached one does.
        let restored: Vec<SessionId> = self.owners.keys().copied().collect();
        for session in restored {
            self.stand_in(session);
        }
        self.deliver();
        self.settle();
    }

    /// Wall-clock time at `now`, in milliseconds since the Unix epoch.
    pub(crate) fn unix_ms(&self, now: Instant) -> u64 {
        let (start, unix) = self.epoch;
        unix + now.as_nanos().saturating_sub(start.as_nanos()) / 1_000_000
    }

    pub(crate) fn log(&mut self, level: crate::Level, text: String) {
        self.actions.push_back(Action::Log(level, text));
    }

    /// `session` left its rooms without asking (a slow consumer): noted for the
    /// simulator.
    pub(crate) fn note_eviction(&mut self, session: SessionId) {
        #[cfg(feature = "sim")]
        if let Some(owner) = self.owners.get(&session) {
            self.evicted.insert(owner.user.as_str().to_string());
        }
        #[cfg(not(feature = "sim"))]
        let _ = session;
    }

    /// A fresh connection id (never reused).
    pub(crate) fn next_id(&mut self) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        id
    }

    // ----- the drive contract: inputs -----

    /// A TCP connection was accepted at `now`: its id, for every later call about it.
    pub fn handle_accept(&mut self, now: Instant) -> ConnId {
        self.observe(now);
        let id = self.next_id();
        let reader = RequestReader::new(&self.ws_config, now);
        self.conns
            .insert(id, Box::new(Conn::new(Phase::Head(reader))));
        self.touch(id);
        self.settle();
        id
    }

    /// Bytes read from connection `conn`, in chunks of any size.
    pub fn handle_bytes(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        self.observe(now);
        if self.conns.contains_key(&conn) {
            self.touch(conn);
            self.on_bytes(conn, data);
        }
        self.settle();
    }

    /// Connection `conn`'s peer closed its side, or the socket failed: no more bytes
    /// will come. The layer finishes it and asks for it to be closed.
    pub fn handle_eof(&mut self, now: Instant, conn: ConnId) {
        self.observe(now);
        if self.conns.contains_key(&conn) {
            self.touch(conn);
            if let Some(ws) = self.conns.get_mut(&conn).and_then(|c| c.ws_mut()) {
                ws.handle_eof(now);
                self.drain_ws(conn);
            }
            self.finish(conn);
        }
        self.settle();
    }

    /// The socket of `conn` is gone (the runtime closed it after
    /// [`Action::Close`], or writing failed): forget it.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        self.observe(now);
        if self.conns.contains_key(&conn) {
            self.touch(conn);
            self.finish(conn);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.clear();
            }
            self.forget(conn);
        }
        self.settle();
    }

    /// Time passed: act on every deadline up to `now`. Early calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        while let Some(&(at, conn)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.remove(&(at, conn));
            if let Some(c) = self.conns.get_mut(&conn) {
                c.armed = None;
            }
            self.touch(conn);
            self.on_conn_timeout(conn);
        }
        if self.hub.poll_timeout().is_some_and(|at| at <= now) {
            self.hub.handle_timeout(now);
            self.deliver();
        }
        if self.store.poll_timeout().is_some_and(|at| at <= now) {
            self.store.handle_timeout(now);
            self.drain_store();
        }
        self.cluster_timeout(now);
        if self.commit_retry.is_some_and(|at| at <= now) {
            self.commit_retry = None;
            self.durable.force_dirty();
        }
        if self.shutdown.is_some_and(|at| at <= now) {
            self.shutdown = None;
            let left: Vec<ConnId> = self.conns.keys().copied().collect();
            for conn in left {
                self.touch(conn);
                self.finish(conn);
            }
        }
        self.settle();
    }

    /// The journal commit asked for by the oldest outstanding [`Action::Commit`]
    /// finished: `Ok` once every record appended before it is durable. What waited for
    /// it is released (ACKs, 202s), or on `Err` answered as failed (503, no ACK).
    pub fn handle_committed(&mut self, now: Instant, result: Result<(), String>) {
        self.observe(now);
        if !self.durable.in_flight() {
            return;
        }
        if let Err(e) = &result {
            self.metrics.journal_failures += 1;
            self.log(crate::Level::Error, format!("journal commit failed: {e}"));
        }
        self.commit_part_done(result.is_ok());
        self.settle();
    }

    /// One part of the commit in flight (the journal file's, or Redis's) reported: once
    /// every part has, what waited for it is released, or answered as failed.
    pub(crate) fn commit_part_done(&mut self, ok: bool) {
        let Some((done, ok)) = self.durable.part_done(ok) else {
            return;
        };
        if !ok {
            self.commit_retry = Some(self.now + COMMIT_RETRY);
        }
        self.release(done, ok);
    }

    /// Begins the graceful shutdown: new upgrades are refused 503, every WebSocket is
    /// closed with 1001, and connections still open after `shutdown_grace` are cut.
    /// [`Action::Stopped`] follows once every connection is gone and the journal holds
    /// everything.
    pub fn handle_shutdown(&mut self, now: Instant) {
        self.observe(now);
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.cluster_bye();
        self.shutdown = Some(now + self.config.shutdown_grace);
        let open: Vec<ConnId> = self.conns.keys().copied().collect();
        let count = open
            .iter()
            .filter(|c| self.conns.get(c).is_some_and(|c| c.ws().is_some()))
            .count();
        self.log(
            crate::Level::Info,
            format!("shutting down: closing {count} connection(s) with 1001"),
        );
        for conn in open {
            self.touch(conn);
            if let Some(ws) = self.conns.get_mut(&conn).and_then(|c| c.ws_mut()) {
                let _ = ws.close(now, CloseCode::GOING_AWAY, "server shutting down");
            }
        }
        self.settle();
    }

    // ----- the drive contract: outputs -----

    /// The next chunk to write to `conn`, once its socket can take bytes. Call until
    /// `None` after each [`Action::Wake`] (and each time the socket is writable again);
    /// bytes taken and not yet written stay the runtime's to write.
    #[must_use]
    pub fn poll_transmit(&mut self, conn: ConnId) -> Option<Bytes> {
        let mut chunk = self.conns.get_mut(&conn)?.pop();
        if chunk.is_none() && self.conns.get(&conn).is_some_and(|c| c.backlog) {
            self.refill(conn);
            chunk = self.conns.get_mut(&conn)?.pop();
        }
        let c = self.conns.get_mut(&conn)?;
        if chunk.is_none() {
            c.woken = false;
        }
        if !c.has_output() {
            if let Some(ws) = c.ws_mut() {
                // Most connections sit idle for long: keep no buffer while they do.
                ws.release_idle_buffers();
            }
        }
        chunk
    }

    /// The next thing the runtime must do (see [`Action`]). Call after every input until
    /// `None`.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.deadlines.first().map(|(at, _)| *at);
        [
            conns,
            self.hub.poll_timeout(),
            self.store.poll_timeout(),
            self.commit_retry,
            self.shutdown,
            self.cluster.as_ref().and_then(|c| c.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Which part holds each deadline, for a simulator's failure message.
    #[cfg(feature = "sim")]
    pub fn describe_deadlines(&self) -> String {
        let conns: Vec<String> = self
            .deadlines
            .iter()
            .take(4)
            .map(|(at, conn)| {
                let phase = self.conns.get(conn).map(|c| match &c.phase {
                    Phase::Head(_) => "head",
                    Phase::Body { .. } => "body",
                    Phase::AwaitingCommit { .. } => "awaiting commit",
                    Phase::AwaitingCluster { .. } => "awaiting cluster",
                    Phase::AwaitingAdmission { .. } => "awaiting admission",
                    Phase::Plain { .. } => "plain",
                    Phase::Reliable { .. } => "reliable",
                    Phase::Done => "done",
                });
                let parts = self.conns.get(conn).map(|c| {
                    let ws = c.ws().and_then(|ws| ws.poll_timeout());
                    (ws, c.session_deadline)
                });
                format!("{at:?} conn {} {phase:?} (ws, session) {parts:?}", conn.0)
            })
            .collect();
        format!(
            "conns {conns:?}, hub {:?}, store {:?}, commit retry {:?}, shutdown {:?}",
            self.hub.poll_timeout(),
            self.store.poll_timeout(),
            self.commit_retry,
            self.shutdown
        )
    }

    /// Connections the layer tracks (accepted and not yet forgotten).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Bytes waiting for the runtime to take on `conn` (the slow-consumer rule counts
    /// these against `max_queue_bytes`).
    pub fn queued_bytes(&self, conn: ConnId) -> usize {
        self.conns.get(&conn).map_or(0, |c| c.queued_bytes())
    }

    /// The `/metrics` page as it would be served now.
    pub fn metrics_text(&self) -> String {
        let stats = self.hub.stats();
        #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
        let mut gauges = HubGauges {
            users: stats.users as u64,
            sessions: self.store.len() as u64,
            rooms: stats.rooms as u64,
            mailbox_depth: stats.mailbox_messages as u64,
            mailbox_bytes: stats.mailbox_bytes as u64,
            mailbox_drops: stats.mail_expired + stats.mail_overflowed,
            cluster: self.cluster_gauges(),
            ..HubGauges::default()
        };
        #[cfg(feature = "deflate")]
        for ws in self.conns.values().filter_map(|c| c.ws()) {
            if ws.deflate_params().is_some() {
                gauges.deflate_connections += 1;
                gauges.deflate_bytes += ws.deflate_memory().total() as u64;
            }
        }
        self.metrics.render(&gauges)
    }

    // ----- internals -----

    pub(crate) fn observe(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// Drives `conn`'s session before the current input returns (not at once: a fan-out
    /// to many sessions must not recurse into each).
    pub(crate) fn schedule_drive(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.is_reliable() && !c.drive_pending {
                c.drive_pending = true;
                self.drive.push(conn);
            }
        }
    }

    pub(crate) fn touch(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if !c.touched {
                c.touched = true;
                self.touched.push(conn);
            }
        }
    }

    /// After an input: moves every touched connection's WebSocket output into its queue,
    /// tells the runtime who has bytes or is over, re-files deadlines, asks for a commit
    /// when records wait, and notices the end of a shutdown.
    pub(crate) fn settle(&mut self) {
        loop {
            if let Some(conn) = self.drive.pop() {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.drive_pending = false;
                }
                self.drive_session(conn);
                continue;
            }
            let Some(conn) = self.touched.pop() else {
                break;
            };
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            c.touched = false;
            c.take_transmits();
            if c.has_output() && !c.woken {
                c.woken = true;
                self.actions.push_back(Action::Wake(conn));
            }
            let over = match &c.phase {
                Phase::Done => true,
                Phase::Plain { ws, .. } | Phase::Reliable { ws, .. } => ws.wants_disconnect(),
                _ => false,
            };
            if over && !c.close_sent {
                // Everything queued so far goes out before the socket is closed.
                c.close_sent = true;
                self.actions.push_back(Action::Close(conn));
            }
            self.rearm(conn);
            if over {
                // The WebSocket's part is over: the hub and session let go now.
                self.finish(conn);
            }
        }
        self.cluster_changes();
        if let Some(batch) = self.durable.take_commit(self.now) {
            if let Some(bytes) = batch.journal {
                self.actions.push_back(Action::Append(bytes));
                self.actions.push_back(Action::Commit);
            }
            if let Some(sessions) = batch.redis {
                self.commit_sessions(sessions);
            }
        }
        if self.stopping && !self.stopped && self.conns.is_empty() && self.durable.is_settled() {
            self.stopped = true;
            self.actions.push_back(Action::Stopped);
        }
    }

    /// Files `conn`'s deadline in the index anew.
    pub(crate) fn rearm(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let deadline = if c.close_sent { None } else { c.deadline() };
        if c.armed != deadline {
            if let Some(old) = c.armed.take() {
                self.deadlines.remove(&(old, conn));
            }
            if let Some(at) = deadline {
                self.deadlines.insert((at, conn));
            }
            c.armed = deadline;
        }
    }

    /// Forgets a connection whose socket is gone.
    fn forget(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            if let Some(at) = c.armed {
                self.deadlines.remove(&(at, conn));
            }
        }
    }

    fn on_bytes(&mut self, conn: ConnId, data: &[u8]) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match &mut c.phase {
            Phase::Head(reader) => match reader.handle_bytes(now, data) {
                Ok(None) => {}
                Ok(Some(request)) => self.on_request(conn, request),
                Err(e) => {
                    self.metrics.reject(Rejection::from_status(e.status()));
                    self.answer(conn, e.response().to_vec());
                }
            },
            Phase::Body {
                length, body: buf, ..
            } => {
                let take = (*length - buf.len()).min(data.len());
                buf.extend_from_slice(&data[..take]);
                if buf.len() == *length {
                    let Phase::Body { request, body, .. } =
                        std::mem::replace(&mut c.phase, Phase::Done)
                    else {
                        return;
                    };
                    self.on_push(conn, &request, &body);
                }
            }
            Phase::Plain { ws, .. } | Phase::Reliable { ws, .. } => {
                ws.handle_bytes(now, data);
                self.drain_ws(conn);
            }
            // The request was answered (or is being): later bytes mean nothing.
            Phase::AwaitingCommit { .. }
            | Phase::AwaitingCluster { .. }
            | Phase::AwaitingAdmission { .. }
            | Phase::Done => {}
        }
    }

    fn on_conn_timeout(&mut self, conn: ConnId) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match &mut c.phase {
            Phase::Head(reader) => {
                if let Err(e) = reader.handle_timeout(now) {
                    self.metrics.reject(Rejection::from_status(e.status()));
                    self.answer(conn, e.response().to_vec());
                }
            }
            Phase::Body { deadline, .. } if *deadline <= now => {
                self.answer(
                    conn,
                    answer::json_error(408, "body incomplete before the deadline"),
                );
            }
            Phase::Plain { ws, .. } => {
                ws.handle_timeout(now);
                self.drain_ws(conn);
            }
            Phase::Reliable { ws, .. } => {
                ws.handle_timeout(now);
                // The deadline may be the session's: its turn runs its timers.
                if c.session_deadline.is_some_and(|at| at <= now) {
                    self.schedule_drive(conn);
                }
                self.drain_ws(conn);
            }
            _ => {}
        }
    }

    /// Queues a whole HTTP answer and ends the connection after it.
    pub(crate) fn answer(&mut self, conn: ConnId, bytes: Vec<u8>) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.queue(Bytes::from(bytes));
            c.phase = Phase::Done;
            self.touch(conn);
        }
    }

    /// A whole request head arrived on `conn`.
    fn on_request(&mut self, conn: ConnId, request: HttpRequest) {
        if request.path() == "/ws" {
            return self.on_upgrade(conn, request);
        }
        self.metrics.http_requests += 1;
        let head = request.method() == "HEAD";
        let request_line = (request.method().to_string(), request.path().to_string());
        let routed = match (request.method(), request.path()) {
            ("GET" | "HEAD", "/") => Some(answer::response(
                200,
                "text/html; charset=utf-8",
                "",
                DEMO_PAGE.as_bytes(),
            )),
            ("GET" | "HEAD", "/healthz") if self.cluster_down() => Some(answer::response(
                503,
                "text/plain",
                "",
                b"redis unreachable: serving this node's connections only; pushes refused\n",
            )),
            ("GET" | "HEAD", "/healthz") => Some(answer::response(200, "text/plain", "", b"ok\n")),
            ("GET" | "HEAD", "/metrics") => {
                let page = self.metrics_text();
                Some(answer::response(
                    200,
                    "text/plain; version=0.0.4",
                    "",
                    page.as_bytes(),
                ))
            }
            ("POST", "/api/push") => self.start_push(conn, request),
            (_, "/" | "/healthz" | "/metrics") => Some(method_not_allowed("GET, HEAD")),
            (_, "/api/push") => Some(method_not_allowed("POST")),
            // The JavaScript client (`assets`); a `HEAD` is cut below like every route's.
            (method, path) => Some(match assets::find(path) {
                Some(asset) if matches!(method, "GET" | "HEAD") => asset.answer(&request),
                Some(_) => method_not_allowed("GET, HEAD"),
                None => answer::json_error(404, "no such path"),
            }),
        };
        if let Some(mut bytes) = routed {
            if head {
                bytes = answer::without_body(bytes);
            }
            let line = format!(
                "{} {} -> {}",
                request_line.0,
                request_line.1,
                answer::status_of(&bytes)
            );
            self.log(crate::Level::Debug, line);
            self.answer(conn, bytes);
        }
    }

    /// `POST /api/push`: checks access and the body's length, then reads the body (the
    /// answer comes once it is whole). `Some`: the answer now.
    fn start_push(&mut self, conn: ConnId, mut request: HttpRequest) -> Option<Vec<u8>> {
        match push_access(&self.config, &request) {
            PushAccess::Allowed => {}
            PushAccess::Unauthorized(why) => {
                return Some(answer::response(
                    401,
                    "application/json",
                    "WWW-Authenticate: Bearer\r\n",
                    serde_json::json!({ "error": why }).to_string().as_bytes(),
                ))
            }
            PushAccess::Disabled => {
                return Some(answer::json_error(
                    403,
                    "push API disabled: the server has no --api-key",
                ))
            }
        }
        let max = self.config.max_message_bytes;
        let length = match request.content_length() {
            Ok(Some(length)) => length,
            Ok(None) => return Some(answer::json_error(411, "Content-Length required")),
            Err(e) => return Some(answer::json_error(e.status(), &e.to_string())),
        };
        if length > max as u64 {
            return Some(answer::json_error(
                413,
                &format!("body larger than {max} bytes (--max-message-bytes)"),
            ));
        }
        let length = length as usize;
        let mut body = request.take_trailing();
        body.truncate(length);
        if body.len() == length {
            self.on_push(conn, &request, &body);
            return None;
        }
        let deadline = self.now + self.config.head_timeout;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.phase = Phase::Body {
                request: Box::new(request),
                length,
                body,
                deadline,
            };
        }
        None
    }

    /// A whole push body: acts on it, and answers 202 once the journal holds what it
    /// queued (at once without a journal).
    fn on_push(&mut self, conn: ConnId, _request: &HttpRequest, body: &[u8]) {
        let (pushes, batch) = match parse_pushes(body) {
            Ok(parsed) => parsed,
            Err(why) => return self.answer(conn, answer::json_error(400, why)),
        };
        if self.cluster.is_some() {
            return self.cluster_push(conn, pushes, batch);
        }
        let now = self.now;
        let mut receipts = Vec::with_capacity(pushes.len());
        for (target, data) in pushes {
            let user = match &target {
                sockeye_core::hub::Target::User(user) => Some(user.clone()),
                _ => None,
            };
            let receipt = self.hub.push(now, target, data.clone());
            if let (Some(user), true) = (user, receipt.mailboxed > 0) {
                let unix = self.unix_ms(now);
                self.durable.mail_queued(&user, None, &data, unix);
            }
            self.metrics.pushes += 1;
            receipts.push(serde_json::json!({
                "connections": receipt.connections,
                "mailboxed": receipt.mailboxed,
                "dead_lettered": receipt.dead_lettered,
            }));
        }
        // Once for the whole batch: its messages to one connection leave together.
        self.deliver();
        self.finish_push(conn, receipts, batch);
    }

    /// The 202 of a push request whose pushes were acted on, once the journal holds
    /// what they queued (at once without a journal).
    pub(crate) fn finish_push(
        &mut self,
        conn: ConnId,
        mut receipts: Vec<serde_json::Value>,
        batch: bool,
    ) {
        let queued = if batch {
            serde_json::Value::Array(receipts)
        } else {
            receipts.remove(0)
        };
        let ok = answer::json(202, &serde_json::json!({ "queued": queued }));
        let ticket = self.durable.ticket();
        if self.durable.is_finished(ticket) {
            return self.answer(conn, ok);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.phase = Phase::AwaitingCommit { ticket, answer: ok };
        }
    }

    /// Releases what waited for commit `done`: on success the ACKs and 202s; on failure
    /// 503s, and commands stay unacknowledged for a later commit.
    fn release(&mut self, done: u64, ok: bool) {
        let waiting: Vec<ConnId> = self
            .conns
            .iter()
            .filter(
                |(_, c)| matches!(c.phase, Phase::AwaitingCommit { ticket, .. } if ticket <= done),
            )
            .map(|(id, _)| *id)
            .collect();
        for conn in waiting {
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            let Phase::AwaitingCommit {
                answer: ok_answer, ..
            } = std::mem::replace(&mut c.phase, Phase::Done)
            else {
                continue;
            };
            let bytes = if ok {
                ok_answer
            } else {
                answer::json_error(503, "push not accepted: the journal could not record it")
            };
            self.answer(conn, bytes);
        }
        self.release_sessions(done, ok);
        self.release_plain(done, ok);
        self.release_confirmations(done, ok);
    }

    /// Drops a connection's part in the hub and its session, once.
    pub(crate) fn finish(&mut self, conn: ConnId) {
        if self.conns.get(&conn).is_some_and(|c| c.is_reliable()) {
            // Its last commands, delivered just before the end, still count as its own.
            self.drive_session(conn);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let phase = std::mem::replace(&mut c.phase, Phase::Done);
        if !c.close_sent {
            c.close_sent = true;
            self.actions.push_back(Action::Close(conn));
        }
        match phase {
            Phase::Plain { .. } => {
                self.hub.disconnect(self.now, conn);
                self.metrics.connections_closed += 1;
                self.deliver();
            }
            Phase::Reliable { session, epoch, .. } => {
                self.detach_session(conn, session, epoch);
                self.metrics.connections_closed += 1;
            }
            Phase::AwaitingCommit { .. } => {
                // The client left before its answer: the push stands; nobody to tell.
            }
            _ => {}
        }
    }

    /// Drains a WebSocket's events: messages to the mode's handler, RTT samples to the
    /// session.
    pub(crate) fn drain_ws(&mut self, conn: ConnId) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let reliable = matches!(c.phase, Phase::Reliable { .. });
            let Some(ws) = c.ws_mut() else {
                return;
            };
            let Some(event) = ws.poll_event() else {
                break;
            };
            match event {
                Event::Message(message) if reliable => self.on_reliable_message(conn, message),
                Event::Message(message) => self.on_plain_message(conn, message),
                Event::Pong { rtt: Some(rtt), .. } if reliable => self.on_rtt(conn, rtt),
                _ => {}
            }
        }
        self.schedule_drive(conn);
    }

    /// `GET /ws`: the upgrade (validated from the same parsed head), auth, limits, mode.
    fn on_upgrade(&mut self, conn: ConnId, request: HttpRequest) {
        if self.stopping {
            self.metrics.reject(Rejection::OverLimit);
            return self.answer(conn, answer::text(503, "server shutting down"));
        }
        let unix_secs = self.unix_ms(self.now) / 1000;
        let user = identify(&self.config, &request, unix_secs, &mut *self.entropy);
        let upgrade = match request.into_upgrade() {
            Ok(upgrade) => upgrade,
            Err(e) => {
                self.metrics.reject(Rejection::from_status(e.status()));
                return self.answer(conn, e.response().to_vec());
            }
        };
        let user = match user {
            Ok(user) => user,
            Err(why) => {
                self.metrics.reject(Rejection::Unauthorized);
                return self.answer(conn, answer::text(401, &why));
            }
        };
        if self.cluster_up() {
            // The user's connections on the other nodes count too: Redis first.
            return self.ask_admission(conn, upgrade, user);
        }
        self.upgrade_as(conn, upgrade, user);
    }

    /// The upgrade of an authenticated `user`, admitted so far: the mode, the limits.
    pub(crate) fn upgrade_as(&mut self, conn: ConnId, upgrade: Request, user: UserId) {
        if upgrade.protocols().any(|p| p == SUBPROTOCOL) {
            return self.upgrade_reliable(conn, upgrade, user);
        }
        if let Err(refusal) = self.admit(&user) {
            self.metrics.reject(Rejection::OverLimit);
            return self.answer(conn, answer::text(503, &refusal.to_string()));
        }
        let now = self.now;
        let ws = self.accept_upgrade(upgrade, None);
        if let Err(refusal) = self
            .hub
            .connect(now, conn, user.clone(), Delivery::AtMostOnce)
        {
            self.metrics.reject(Rejection::OverLimit);
            return self.answer(conn, answer::text(503, &refusal.to_string()));
        }
        self.metrics.connections_opened += 1;
        let welcome = plain::welcome(user.as_str());
        if let Some(c) = self.conns.get_mut(&conn) {
            c.phase = Phase::Plain { ws: Box::new(ws) };
        }
        self.send_plain(conn, Bytes::from(welcome), false);
        // The mailbox the hub handed out goes before its record is taken: plain mode
        // delivers mail at least once across a crash, and a failing disk does not hold
        // it back. It is framed as the queue drains.
        self.mail_flush = Some(conn);
        self.deliver();
        self.mail_flush = None;
        self.pull_mail(conn);
        self.durable.mailbox_emptied(&user);
        // Frames that came with the head.
        self.drain_ws(conn);
    }

    /// A `sockeye.v1` upgrade of authenticated `user`: resumes the session it names if
    /// the user owns it (someone else's looks unknown, `docs/PROTOCOL.md` §6.3), or
    /// starts a new one, then joins the hub.
    fn upgrade_reliable(&mut self, conn: ConnId, upgrade: Request, user: UserId) {
        let resume = upgrade
            .resume_value()
            .and_then(|v| parse_resume_header(v).ok());
        if let Some(resume) = resume {
            if self.must_claim(resume.session_id) {
                // Another node may hold it: Redis first (`cluster_sessions.rs`).
                return self.claim(conn, upgrade, user, resume.session_id, resume.token);
            }
            if self.claim_unreachable(resume.session_id) {
                // Redis, which may hold it, is down: not refused as unknown.
                self.metrics.reject(Rejection::OverLimit);
                let why = "session store unreachable: try again";
                return self.answer(conn, answer::text(503, why));
            }
        }
        self.resume_or_start(conn, upgrade, user);
    }

    /// [`upgrade_reliable`](Self::upgrade_reliable) with the session, if this node can
    /// have it, here.
    pub(crate) fn resume_or_start(&mut self, conn: ConnId, upgrade: Request, user: UserId) {
        let now = self.now;
        let resume = upgrade.resume_value().map(<[u8]>::to_vec);
        let claimed = resume
            .as_deref()
            .and_then(|v| parse_resume_header(v).ok())
            .map(|r| r.session_id);
        let mut may_resume = true;
        let mut takes_over = None;
        let mut has_ghost = false;
        if let Some(owner) = claimed.and_then(|id| self.owners.get(&id)) {
            may_resume = owner.user == user;
            if may_resume {
                takes_over = owner.conn;
                has_ghost = owner.ghost.is_some();
            }
        }
        // A resume that takes over a connection the server has not seen drop yet, or the
        // ghost of its session, replaces it rather than adding one.
        if takes_over.is_none() && !has_ghost {
            if let Err(refusal) = self.admit(&user) {
                self.metrics.reject(Rejection::OverLimit);
                return self.answer(conn, answer::text(503, &refusal.to_string()));
            }
        }
        let accepted = if may_resume {
            self.store
                .accept(now, resume.as_deref(), &mut *self.entropy)
        } else {
            self.store
                .accept_as_unknown(now, resume.as_deref(), &mut *self.entropy)
        };
        let session = match accepted {
            Ok(session) => session,
            Err(e) => {
                self.metrics.reject(Rejection::from_status(e.status()));
                return self.answer(conn, e.response().to_vec());
            }
        };
        if let Some(old) = takes_over {
            self.touch(old);
            if let Some(ws) = self.conns.get_mut(&old).and_then(|c| c.ws_mut()) {
                let _ = ws.close(now, CloseCode::GOING_AWAY, "session resumed elsewhere");
            }
            // Its hub place passes to the new connection below, rooms and all.
            self.become_ghost(old, session);
        }
        let ws = self.accept_upgrade(upgrade, Some(SUBPROTOCOL));
        self.attach_session(conn, ws, user, session);
    }

    /// The 101 for `upgrade` with `protocol`, answering its permessage-deflate offers by
    /// the policy (`Config::deflate`, with that feature).
    fn accept_upgrade(&self, upgrade: Request, protocol: Option<&str>) -> sockeye_core::Connection {
        let config = self.ws_config.clone();
        #[cfg(feature = "deflate")]
        return upgrade.accept_deflate(self.now, protocol, config, &self.config.deflate);
        #[cfg(not(feature = "deflate"))]
        upgrade.accept(self.now, protocol, config)
    }
}

fn method_not_allowed(allow: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": format!("method not allowed (use {allow})") });
    answer::response(
        405,
        "application/json",
        &format!("Allow: {allow}\r\n"),
        body.to_string().as_bytes(),
    )
}
