//! The driver: one thread that owns the server layer ([`sockeye_server::Server`]) and
//! feeds it every input with the time — accepted sockets, bytes read, ends of stream,
//! writes done, commits done, the shutdown — then carries out its actions. The layer
//! decides everything; this loop only moves bytes between it and the connections'
//! threads, and sleeps until its next deadline.

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};
use std::time::Duration;

use sockeye_server::{Action, ConnId, DeadLetter, Level as LayerLevel, Server};

use super::io::{self, WriteJob};
use sockeye_std::Clock;

/// What reaches the driver from the other threads.
pub(super) enum Input {
    /// The accept thread took a connection.
    Accepted(TcpStream),
    /// A connection's reader read bytes.
    Read(ConnId, Vec<u8>),
    /// The peer closed its side.
    Eof(ConnId),
    /// Reading failed: the socket is gone.
    Gone(ConnId),
    /// A connection's writer finished its job (`false`: the write failed).
    Written(ConnId, bool),
    /// The journal thread finished a commit.
    Committed(Result<(), String>),
    /// The Redis threads reported something (`--redis`).
    Cluster(crate::redis::Report),
    /// Shut down gracefully (SIGINT, SIGTERM, or [`super::RunningServer::shutdown`]).
    Shutdown,
}

/// Bytes handed to a writer at most per job: a slow socket does not take everything the
/// layer queued at once, so the slow-consumer rule still sees what waits.
const MAX_WRITE_JOB: usize = 256 * 1024;

/// One connection's threads, as the driver sees them.
struct Link {
    writer: Sender<WriteJob>,
    /// A write job is out.
    busy: bool,
    /// The layer said [`Action::Close`]: after the queued bytes, FIN.
    closing: bool,
}

/// The driver's state.
pub(super) struct Driver {
    server: Server,
    /// The epoch every instant given to `server` counts from.
    clock: Clock,
    inputs: SyncSender<Input>,
    journal: Option<Sender<Vec<u8>>>,
    /// Records the layer appended since the last commit was handed to the journal.
    appended: Vec<u8>,
    links: HashMap<ConnId, Link>,
    write_timeout: Duration,
    /// TLS for every connection, if configured.
    tls: crate::TlsConfig,
    /// When a shutdown gives up waiting for the layer.
    give_up: Option<std::time::Instant>,
    grace: Duration,
    /// The Redis threads (`--redis`).
    backend: Option<crate::redis::Backend>,
}

/// How the driver treats its connections.
pub(super) struct Policy {
    /// How long a write may wait for a peer that reads nothing.
    pub(super) write_timeout: Duration,
    /// How long a graceful shutdown waits for connections to close.
    pub(super) grace: Duration,
    /// TLS for every connection, if configured.
    pub(super) tls: crate::TlsConfig,
}

impl Driver {
    pub(super) fn new(
        server: Server,
        clock: Clock,
        inputs: SyncSender<Input>,
        journal: Option<Sender<Vec<u8>>>,
        policy: Policy,
        backend: Option<crate::redis::Backend>,
    ) -> Driver {
        let Policy {
            write_timeout,
            grace,
            tls,
        } = policy;
        Driver {
            server,
            clock,
            inputs,
            journal,
            appended: Vec::new(),
            links: HashMap::new(),
            write_timeout,
            tls,
            give_up: None,
            grace,
            backend,
        }
    }

    /// Runs until the layer has stopped after a shutdown (or the shutdown gave up
    /// waiting). Returns how many connections were still open.
    pub(super) fn run(mut self, inputs: &Receiver<Input>) -> usize {
        loop {
            let now = self.clock.now();
            if self.server.poll_timeout().is_some_and(|at| at <= now) {
                self.server.handle_timeout(now);
            }
            if self.act() {
                break;
            }
            if self
                .give_up
                .is_some_and(|at| std::time::Instant::now() >= at)
            {
                break;
            }
            match inputs.recv_timeout(self.wait()) {
                Ok(input) => self.handle(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // Dropping the writers' queues ends every connection's socket.
        self.links.len()
    }

    /// How long to sleep: until the layer's deadline or the shutdown's.
    fn wait(&self) -> Duration {
        let layer = self.server.poll_timeout().map(|at| self.clock.until(at));
        let give_up = self
            .give_up
            .map(|at| at.saturating_duration_since(std::time::Instant::now()));
        [layer, give_up]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Duration::from_secs(3600))
    }

    fn handle(&mut self, input: Input) {
        let now = self.clock.now();
        match input {
            Input::Accepted(stream) => self.accept(stream),
            Input::Read(conn, bytes) => {
                if self.links.contains_key(&conn) {
                    self.server.handle_bytes(now, conn, &bytes);
                }
            }
            Input::Eof(conn) => {
                if self.links.contains_key(&conn) {
                    self.server.handle_eof(now, conn);
                }
            }
            Input::Gone(conn) => self.gone(conn),
            Input::Written(conn, ok) => {
                if let Some(link) = self.links.get_mut(&conn) {
                    link.busy = false;
                }
                if ok {
                    self.write(conn);
                } else {
                    self.gone(conn);
                }
            }
            Input::Committed(result) => {
                if let Err(e) = &result {
                    log::error!("journal commit failed: {e}");
                }
                self.server.handle_committed(now, result);
            }
            Input::Cluster(report) => crate::redis::hand_over(&mut self.server, now, report),
            Input::Shutdown => {
                if self.give_up.is_none() {
                    // The layer cuts what is left after the grace; this is the backstop.
                    self.give_up = Some(std::time::Instant::now() + self.grace * 2);
                    self.server.handle_shutdown(now);
                }
            }
        }
    }

    fn accept(&mut self, stream: TcpStream) {
        let now = self.clock.now();
        let _ = stream.set_nodelay(true);
        let conn = self.server.handle_accept(now);
        match io::spawn(conn, stream, &self.inputs, self.write_timeout, &self.tls) {
            Ok(writer) => {
                crate::descriptors::descriptors_again();
                self.links.insert(
                    conn,
                    Link {
                        writer,
                        busy: false,
                        closing: false,
                    },
                );
            }
            Err((e, stream)) => {
                self.server.handle_closed(now, conn);
                if sockeye_std::accept::is_out_of_descriptors(&e) {
                    crate::descriptors::out_of_descriptors(&e);
                } else {
                    log::warn!("cannot start a connection's threads: {e}");
                }
                if let Some(stream) = stream {
                    sockeye_std::accept::answer_503(stream);
                }
            }
        }
    }

    /// The socket is gone: the layer forgets the connection.
    fn gone(&mut self, conn: ConnId) {
        if let Some(link) = self.links.remove(&conn) {
            let _ = link.writer.send(WriteJob::Close);
            self.server.handle_closed(self.clock.now(), conn);
        }
    }

    /// Hands the connection's writer what the layer has for it, if it is idle; after the
    /// last bytes of a closing connection, FIN.
    fn write(&mut self, conn: ConnId) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        if link.busy {
            return;
        }
        let mut chunks = Vec::new();
        let mut bytes = 0;
        while bytes < MAX_WRITE_JOB {
            match self.server.poll_transmit(conn) {
                Some(chunk) => {
                    bytes += chunk.len();
                    chunks.push(chunk);
                }
                None => break,
            }
        }
        if !chunks.is_empty() {
            link.busy = link.writer.send(WriteJob::Chunks(chunks)).is_ok();
            return;
        }
        if link.closing {
            let _ = link.writer.send(WriteJob::Close);
            self.links.remove(&conn);
            self.server.handle_closed(self.clock.now(), conn);
        }
    }

    /// Carries out the layer's actions until there are none; `true` once it stopped.
    fn act(&mut self) -> bool {
        let mut stopped = false;
        while let Some(action) = self.server.poll_action() {
            match action {
                Action::Wake(conn) => self.write(conn),
                Action::Close(conn) => {
                    if let Some(link) = self.links.get_mut(&conn) {
                        link.closing = true;
                    }
                    self.write(conn);
                }
                Action::Append(bytes) => self.appended.extend_from_slice(&bytes),
                Action::Commit => self.commit(),
                Action::Log(level, line) => {
                    log::log!(target: "sockeye_server", level_of(level), "{line}")
                }
                Action::DeadLetter(letter) => log_dead_letter(&letter),
                Action::Stopped => stopped = true,
                Action::Publish { .. }
                | Action::Command { .. }
                | Action::Subscribe(_)
                | Action::Unsubscribe(_) => {
                    let now = self.clock.now();
                    crate::redis::carry_out(self.backend.as_ref(), &mut self.server, now, action)
                }
                _ => {}
            }
        }
        stopped
    }

    fn commit(&mut self) {
        let batch = std::mem::take(&mut self.appended);
        let sent = self
            .journal
            .as_ref()
            .is_some_and(|journal| journal.send(batch).is_ok());
        if !sent {
            let now = self.clock.now();
            let result = Err("the journal thread is gone".to_string());
            self.server.handle_committed(now, result);
        }
    }
}

/// The log line of a message the layer gave up on (the application's way to hear of it).
pub(crate) fn log_dead_letter(letter: &DeadLetter) {
    log::info!(
        "dead letter for user {:?} ({}{}): {} bytes",
        letter.user,
        letter.reason,
        if letter.possibly_delivered {
            ", possibly delivered"
        } else {
            ""
        },
        letter.message.len()
    );
}

/// The `log` level of one of the layer's `Action::Log` lines (logged with the target
/// `sockeye_server`).
pub(crate) fn level_of(level: LayerLevel) -> log::Level {
    match level {
        LayerLevel::Error => log::Level::Error,
        LayerLevel::Warn => log::Level::Warn,
        LayerLevel::Info => log::Level::Info,
        _ => log::Level::Debug,
    }
}
