//! The `sockeye` push/chat server: users, rooms and push over WebSocket, with an HTTP API
//! on the same port. The hub logic (who is connected, rooms, routing, mailboxes) is the
//! core's sans-IO `Hub` (`sockeye_core::hub`); this module owns sockets, threads,
//! the clock, flags and signals.
//!
//! One thread per connection (small stacks: RSS counts only the pages a thread touches;
//! a reliable connection adds a reader thread), one accept thread, one timer thread for
//! the hub's deadlines, one thread for the reliable sessions' events. All hub state sits behind
//! one mutex ([`State`]); deliveries the hub hands out are queued to connections while it
//! is held, so every receiver sees messages in the hub's order. Lock order: the state,
//! then a connection; a connection's own thread never takes the state while it holds its
//! connection.
//!
//! ```no_run
//! use sockeye_std::server_app::{start, ServerConfig};
//!
//! let mut config = ServerConfig::default();
//! config.listen = "127.0.0.1:0".into();
//! let server = start(config)?;
//! println!("listening on {}", server.local_addr());
//! server.shutdown();
//! # Ok::<(), std::io::Error>(())
//! ```

mod api;
mod config;
mod conn;
mod durable;
mod events;
mod http;
mod identity;
pub(crate) mod log;
mod metrics;
mod plain;
mod state;
mod ws;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use config::{help, parse, Command, ServerConfig};
pub use log::Level;

use log::log_at;
use metrics::Metrics;
use state::State;

use crate::SessionRegistry;
use sockeye_core::SessionConfig;

/// Stack size of every thread the server starts. RSS counts only touched pages, so this
/// bounds the worst case rather than costing memory per idle connection; 128 KiB leaves
/// room for the deepest path (JSON nested [`plain::MAX_JSON_DEPTH`] levels, in a debug
/// build).
const THREAD_STACK_BYTES: usize = 128 * 1024;

/// How long the accept loop pauses after `accept` fails (out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What every thread of one server shares.
struct Shared {
    config: ServerConfig,
    /// Limits and timings for each WebSocket connection, from `config`.
    ws_config: sockeye_core::Config,
    state: State,
    metrics: Metrics,
    shutting_down: AtomicBool,
    /// Threads serving a connection (HTTP or WebSocket) right now.
    live_threads: AtomicUsize,
    /// The reliable sessions (`sockeye.v1` connections), also known to `state`.
    registry: SessionRegistry,
    /// Shutdown is over: the session event thread stops.
    stopped: AtomicBool,
    /// Reliable connections that ended, for the session event thread to take out of the
    /// hub once it has acted on everything their sessions delivered before.
    ended: std::sync::Mutex<Vec<sockeye_core::hub::ConnId>>,
    /// Out of file descriptors, and said so in the log.
    starved: AtomicBool,
}

/// A running server (see [`start`]).
pub struct RunningServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    timer: Option<JoinHandle<()>>,
    events: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Binds `config.listen` and serves on background threads until
/// [`RunningServer::shutdown`].
pub fn start(config: ServerConfig) -> io::Result<RunningServer> {
    log::set_level(config.log_level);
    let listener = TcpListener::bind(&config.listen)?;
    let addr = listener.local_addr()?;
    let mut ws_config = sockeye_core::Config::default();
    ws_config.max_handshake_bytes = config.max_head_bytes;
    ws_config.handshake_timeout = config.head_timeout;
    ws_config.max_frame_bytes = config.max_frame_bytes as u64;
    ws_config.max_message_bytes = config.max_message_bytes;
    ws_config.max_send_queue_bytes = config.max_queue_bytes;
    ws_config.ping_interval = Some(config.ping_interval);
    ws_config.pong_timeout = config.pong_timeout;
    ws_config.close_timeout = config.shutdown_grace;
    let mut session_config = SessionConfig::default();
    session_config.session_expiry = config.session_expiry;
    // A client's command is acknowledged once the hub acted on it (`events`).
    session_config.confirm_deliveries = true;
    let registry = SessionRegistry::new(session_config)?;
    let journal = match &config.journal {
        Some(path) => Some(durable::Journal::open(
            path,
            config.journal_compact_bytes as u64,
            crate::time::now(),
        )?),
        None => None,
    };
    let shared = Arc::new(Shared {
        state: State::new(&config, registry.clone(), journal),
        registry,
        stopped: AtomicBool::new(false),
        ended: std::sync::Mutex::new(Vec::new()),
        ws_config,
        config,
        metrics: Metrics::default(),
        shutting_down: AtomicBool::new(false),
        live_threads: AtomicUsize::new(0),
        starved: AtomicBool::new(false),
    });
    let accept = {
        let shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("sockeye-accept".into())
            .stack_size(THREAD_STACK_BYTES)
            .spawn(move || accept_loop(&shared, listener))?
    };
    let timer = {
        let shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("sockeye-timer".into())
            .stack_size(THREAD_STACK_BYTES)
            .spawn(move || timer_loop(&shared))?
    };
    let events = {
        let shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("sockeye-sessions".into())
            .stack_size(THREAD_STACK_BYTES)
            .spawn(move || events::event_loop(&shared))?
    };
    Ok(RunningServer {
        addr,
        shared,
        accept: Some(accept),
        timer: Some(timer),
        events: Some(events),
    })
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Graceful shutdown: stops accepting, closes every WebSocket with 1001, and waits
    /// until every connection has ended or `shutdown_grace` has passed. Returns how many
    /// connection threads were still running when it gave up waiting (0 if all ended).
    pub fn shutdown(mut self) -> usize {
        self.stop()
    }

    fn stop(&mut self) -> usize {
        let Some(accept) = self.accept.take() else {
            return 0;
        };
        let shared = &self.shared;
        shared.shutting_down.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own.
        let _ = TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_secs(1));
        let _ = accept.join();
        let closing = shared.state.close_all();
        log_at!(
            Info,
            "shutting down: closing {closing} connection(s) with 1001"
        );
        let deadline = Instant::now() + shared.config.shutdown_grace;
        while shared.live_threads.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        if let Some(timer) = self.timer.take() {
            let _ = timer.join();
        }
        shared.stopped.store(true, Ordering::SeqCst);
        if let Some(events) = self.events.take() {
            let _ = events.join();
        }
        shared.state.flush_journal();
        shared.live_threads.load(Ordering::SeqCst)
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An address that reaches a listener bound to `addr` (a wildcard bind is reached on
/// loopback).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    // A descriptor held in reserve: out of descriptors, the accept loop gives it up for a
    // moment to take the waiting connection and answer it 503, instead of leaving it
    // unanswered in the backlog while `accept` fails in a loop.
    let mut spare = std::fs::File::open("/dev/null").ok();
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => return,
            Err(e) if is_out_of_descriptors(&e) => {
                shared.out_of_descriptors(&e);
                drop(spare.take());
                if let Ok((stream, _)) = listener.accept() {
                    shared.metrics.reject(metrics::Rejection::from_status(503));
                    http::answer_now(stream, &http::text(503, "server out of file descriptors"));
                }
                spare = std::fs::File::open("/dev/null").ok();
                if shared.shutting_down.load(Ordering::SeqCst) {
                    return; // that was the wake-up of `stop`
                }
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
            Err(e) => {
                log_at!(Warn, "accept failed: {e}");
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        if shared.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        shared.live_threads.fetch_add(1, Ordering::SeqCst);
        let for_thread = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("sockeye-conn".into())
            .stack_size(THREAD_STACK_BYTES)
            .spawn(move || {
                api::serve(&for_thread, stream);
                for_thread.live_threads.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            // The stream went down with the closure.
            shared.live_threads.fetch_sub(1, Ordering::SeqCst);
            log_at!(Warn, "cannot start a connection thread: {e}");
            thread::sleep(ACCEPT_BACKOFF);
        }
    }
}

impl Shared {
    /// Out of file descriptors: logged once until a connection is set up again
    /// ([`descriptors_again`](Self::descriptors_again)), not once per refused client.
    fn out_of_descriptors(&self, e: &io::Error) {
        if !self.starved.swap(true, Ordering::Relaxed) {
            log_at!(
                Warn,
                "out of file descriptors ({e}): new connections are answered 503 until some \
                 close (raise `ulimit -n` or lower --max-connections)"
            );
        }
    }

    /// A connection was set up: descriptors are to be had again.
    fn descriptors_again(&self) {
        if self.starved.load(Ordering::Relaxed) && self.starved.swap(false, Ordering::Relaxed) {
            log_at!(Info, "file descriptors available again");
        }
    }
}

/// Whether a call failed for want of file descriptors (the process's or the system's).
fn is_out_of_descriptors(e: &io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(e.raw_os_error(), Some(ENFILE | EMFILE))
}

/// Drives the hub's deadlines (mailbox expiry) until shutdown.
fn timer_loop(shared: &Shared) {
    while !shared.shutting_down.load(Ordering::SeqCst) {
        let wait = shared.state.handle_timeout(&shared.metrics);
        thread::sleep(wait.clamp(Duration::from_millis(10), Duration::from_millis(250)));
    }
}

/// Runs the server until SIGINT or SIGTERM, then shuts down gracefully. Returns the
/// process exit status: 0 after a clean shutdown, 1 if the server could not start.
pub fn run(config: ServerConfig) -> i32 {
    log::set_level(config.log_level);
    let signals = match shutdown_signal() {
        Ok(signals) => signals,
        Err(e) => {
            log_at!(Error, "cannot install signal handlers: {e}");
            return 1;
        }
    };
    announce(&config);
    let server = match start(config) {
        Ok(server) => server,
        Err(e) => {
            log_at!(Error, "cannot start: {e}");
            return 1;
        }
    };
    log_at!(
        Info,
        "listening on {} (ws://{}/ws, demo at http://{}/)",
        server.addr,
        server.addr,
        server.addr
    );
    let signal = signals.wait();
    log_at!(Info, "{signal} received");
    let left = server.shutdown();
    if left > 0 {
        log_at!(
            Warn,
            "{left} connection(s) did not close in time; exiting anyway"
        );
    }
    log_at!(Info, "bye");
    0
}

/// Logs the mode the server runs in, so an operator sees at once what is open.
fn announce(config: &ServerConfig) {
    match &config.secret {
        None => log_at!(
            Warn,
            "DEVELOPMENT MODE: no --secret, so /ws accepts anyone: users get generated ids \
             (or the name in ?user=). Set --secret (SOCKEYE_SECRET) in production."
        ),
        Some(_) => log_at!(Info, "user tokens required on /ws (HMAC-SHA256)"),
    }
    match (&config.api_key, &config.secret) {
        (Some(_), _) => log_at!(Info, "push API requires the API key"),
        (None, None) => log_at!(
            Warn,
            "push API is OPEN: no --api-key in development mode, anyone can POST /api/push"
        ),
        (None, Some(_)) => log_at!(
            Warn,
            "push API disabled: no --api-key (SOCKEYE_API_KEY) configured"
        ),
    }
    if let Some(path) = &config.journal {
        log_at!(
            Warn,
            "--journal {}: offline mailboxes and reliable sessions survive a restart",
            path.display()
        );
    }
}

/// SIGINT and SIGTERM, turned into a byte on a socket pair so a thread can wait for them.
struct ShutdownSignal {
    read: std::os::unix::net::UnixStream,
}

fn shutdown_signal() -> io::Result<ShutdownSignal> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let (read, write) = std::os::unix::net::UnixStream::pair()?;
    // The handler writes one byte (async-signal-safe) for each signal.
    signal_hook::low_level::pipe::register(SIGINT, write.try_clone()?)?;
    signal_hook::low_level::pipe::register(SIGTERM, write)?;
    Ok(ShutdownSignal { read })
}

impl ShutdownSignal {
    fn wait(mut self) -> &'static str {
        use std::io::Read;
        let mut byte = [0u8; 1];
        let _ = self.read.read(&mut byte);
        "shutdown signal (SIGINT/SIGTERM)"
    }
}
