//! # sockeye
//!
//! The `sockeye` push/chat server. Its every decision is the sans-IO layer
//! [`sockeye_server`] (routing, answers, both modes, the hub, limits, keepalive, shutdown,
//! journal records and commit order); this crate is what a runtime needs around it to be
//! a program: the flags ([`parse`], [`help`], [`version`]), the log, the journal file
//! ([`journal_file::JournalFile`]), signals, and the two runtimes that drive the layer
//! ([`Runtime`]):
//!
//! - **smol** (the default): one thread runs an `async-io` reactor and a single-thread
//!   executor that owns the layer; every connection is a task, reads go into one buffer
//!   shared by all, and bytes are taken from the layer only when the socket can take
//!   them, so an idle connection holds no buffer.
//! - **threads**: one driver thread owns the layer and sleeps until its next deadline or
//!   input; each connection has a reader thread and a writer thread (one job at a time, so
//!   a slow socket leaves its bytes queued in the layer where the slow-consumer rule sees
//!   them).
//!
//! On both, one thread appends and syncs the journal (`--journal`), so an `fsync` never
//! stalls the layer, and what arrives while it runs shares the next one.
//!
//! Why a crate of its own: an application that only uses `sockeye-std`'s client or
//! server does not build the server's JSON or signal handling, and the flags, log and
//! journal file are not tied to one runtime.
//!
//! ```no_run
//! use sockeye::{start, ServerConfig};
//!
//! let mut config = ServerConfig::default();
//! config.listen = "127.0.0.1:0".into();
//! let server = start(config)?;
//! println!("listening on {}", server.local_addr());
//! server.shutdown();
//! # Ok::<(), std::io::Error>(())
//! ```

mod config;
mod descriptors;
mod driver;
mod io;
mod journal;
pub mod journal_file;
pub(crate) mod log;
mod redis;
mod smol;
mod threads;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use config::{help, parse, version, Command, Runtime, ServerConfig};
pub use log::Level;

/// Stack size of every thread the server starts. RSS counts only touched pages, so this
/// bounds the worst case rather than costing memory per idle connection.
const THREAD_STACK_BYTES: usize = 128 * 1024;

/// How long a closed connection waits for the peer's FIN before the socket closes, so
/// unread request bytes do not turn into a reset that eats the answer.
const LINGER: Duration = Duration::from_secs(2);

/// A running server (see [`start`]).
pub struct RunningServer {
    addr: SocketAddr,
    runtime: Running,
}

/// The runtime-specific half of a [`RunningServer`].
enum Running {
    Threads(threads::Handle),
    Smol(smol::Handle),
    Stopped,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The layer's configuration from the flags.
fn layer_config(config: &ServerConfig) -> sockeye_server::Config {
    let mut layer = sockeye_server::Config::default();
    layer.secret = config.secret.clone();
    layer.api_key = config.api_key.clone();
    layer.max_connections = config.max_connections;
    layer.max_connections_per_user = config.max_connections_per_user;
    layer.max_frame_bytes = config.max_frame_bytes;
    layer.max_message_bytes = config.max_message_bytes;
    layer.max_queue_bytes = config.max_queue_bytes;
    layer.ping_interval = config.ping_interval;
    layer.pong_timeout = config.pong_timeout;
    layer.session_expiry = config.session_expiry;
    layer.mailbox_size = config.mailbox_size;
    layer.mailbox_age = config.mailbox_age;
    layer.mailbox_bytes = config.mailbox_bytes;
    layer.mailbox_sender_messages = config.mailbox_sender_messages;
    layer.mailbox_sender_bytes = config.mailbox_sender_bytes;
    layer.presence_max_recipients = config.presence_max_recipients;
    layer.max_head_bytes = config.max_head_bytes;
    layer.head_timeout = config.head_timeout;
    layer.shutdown_grace = config.shutdown_grace;
    layer.journal = config.journal.is_some();
    layer.cluster = config
        .redis
        .as_ref()
        .map(|_| sockeye_server::ClusterConfig::new(&config.redis_prefix));
    #[cfg(feature = "deflate")]
    if config.deflate {
        let mut deflate = sockeye_core::handshake::DeflateConfig::on();
        deflate.max_window_bits = config.deflate_window_bits;
        deflate.allow_context_takeover = !config.deflate_no_context_takeover;
        deflate.keep_compressor = !config.deflate_no_context_takeover;
        deflate.min_compress_bytes = config.deflate_min_bytes;
        deflate.level = config.deflate_level;
        layer.deflate = deflate;
    }
    layer
}

/// The TLS configuration connections are served with, if any: rustls is sans-IO, so each
/// runtime moves ciphertext between the socket and a `rustls::ServerConnection` and only
/// plaintext reaches the server layer.
#[cfg(feature = "tls")]
type TlsConfig = Option<std::sync::Arc<rustls::ServerConfig>>;
/// Without the `tls` feature there is never a TLS configuration.
#[cfg(not(feature = "tls"))]
type TlsConfig = Option<std::convert::Infallible>;

/// Loads `--tls-cert` and `--tls-key`, naming the file at fault.
fn tls_config(config: &ServerConfig) -> std::io::Result<TlsConfig> {
    match (&config.tls_cert, &config.tls_key) {
        #[cfg(feature = "tls")]
        (Some(cert), Some(key)) => Ok(Some(sockeye_std::tls::server_config_from_pem(cert, key)?)),
        #[cfg(not(feature = "tls"))]
        (Some(_), Some(_)) => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "--tls-cert: this build has no TLS (feature `tls`)",
        )),
        _ => Ok(None),
    }
}

/// Everything a runtime needs to serve: the bound listener, the layer restored from the
/// journal, the clock its instants count from, and the journal file.
struct Parts {
    listener: TcpListener,
    server: sockeye_server::Server,
    clock: sockeye_std::Clock,
    journal: Option<journal_file::JournalFile>,
    /// TLS for every connection (`--tls-cert`, `--tls-key`), if configured.
    tls: TlsConfig,
    grace: Duration,
    write_timeout: Duration,
    /// Where the cluster backend connects (`--redis`, `--redis-ca-cert`).
    redis: Option<crate::redis::Settings>,
}

/// Binds `config.listen` and serves on background threads (the runtime
/// `config.runtime` names) until [`RunningServer::shutdown`].
///
/// The server logs through the `log` facade; unless the program installed a logger of
/// its own first, this installs sockeye's stderr logger at `config.log_level`.
pub fn start(config: ServerConfig) -> std::io::Result<RunningServer> {
    log::install(config.log_level);
    let listener = TcpListener::bind(&config.listen)?;
    let addr = listener.local_addr()?;
    let (journal, restored) = match &config.journal {
        Some(path) => {
            let (file, state) = journal::open(path, config.journal_compact_bytes as u64)?;
            (Some(file), Some(state))
        }
        None => (None, None),
    };
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let clock = sockeye_std::Clock::new();
    let server = sockeye_server::Server::new(
        layer_config(&config),
        clock.now(),
        unix_ms,
        Box::new(sockeye_std::OsEntropy::new()?),
        restored.as_ref(),
    );
    let parts = Parts {
        listener,
        server,
        clock,
        journal,
        tls: tls_config(&config)?,
        grace: config.shutdown_grace,
        // A write blocked this long on a peer that reads nothing fails, and the
        // connection ends; keepalive would have ended it by then.
        write_timeout: (config.ping_interval + config.pong_timeout).max(Duration::from_secs(1)),
        redis: config.redis.clone().map(|url| crate::redis::Settings {
            url,
            ca_cert: config.redis_ca_cert.clone(),
        }),
    };
    let runtime = match config.runtime {
        Runtime::Threads => Running::Threads(threads::start(parts)?),
        Runtime::Smol => Running::Smol(smol::start(parts)?),
    };
    Ok(RunningServer { addr, runtime })
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Graceful shutdown: stops accepting, closes every WebSocket with 1001, and waits
    /// until every connection has ended and the journal holds everything, or
    /// `shutdown_grace` has passed. Returns how many connections were still open when it
    /// gave up waiting (0 if all ended).
    pub fn shutdown(mut self) -> usize {
        self.stop()
    }

    fn stop(&mut self) -> usize {
        match std::mem::replace(&mut self.runtime, Running::Stopped) {
            Running::Threads(handle) => handle.stop(self.addr),
            Running::Smol(handle) => handle.stop(),
            Running::Stopped => 0,
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the server until SIGINT or SIGTERM, then shuts down gracefully. Returns the
/// process exit status: 0 after a clean shutdown, 1 if the server could not start.
pub fn run(config: ServerConfig) -> i32 {
    log::install(config.log_level);
    let signals = match shutdown_signal() {
        Ok(signals) => signals,
        Err(e) => {
            ::log::error!("cannot install signal handlers: {e}");
            return 1;
        }
    };
    announce(&config);
    let runtime = config.runtime;
    let (ws, http) = match config.tls_cert {
        Some(_) => ("wss", "https"),
        None => ("ws", "http"),
    };
    let server = match start(config) {
        Ok(server) => server,
        Err(e) => {
            ::log::error!("cannot start: {e}");
            return 1;
        }
    };
    ::log::info!(
        "listening on {} ({ws}://{}/ws, demo at {http}://{}/) on the {} runtime",
        server.addr,
        server.addr,
        server.addr,
        match runtime {
            Runtime::Threads => "threads",
            Runtime::Smol => "smol",
        }
    );
    let signal = signals.wait();
    ::log::info!("{signal} received");
    let left = server.shutdown();
    if left > 0 {
        ::log::warn!("{left} connection(s) did not close in time; exiting anyway");
    }
    ::log::info!("bye");
    0
}

/// Logs the mode the server runs in, so an operator sees at once what is open.
fn announce(config: &ServerConfig) {
    match &config.secret {
        None => ::log::warn!(
            "DEVELOPMENT MODE: no --secret, so /ws accepts anyone: users get generated ids \
             (or the name in ?user=). Set --secret (SOCKEYE_SECRET) in production."
        ),
        Some(_) => ::log::info!("user tokens required on /ws (HMAC-SHA256)"),
    }
    match (&config.api_key, &config.secret) {
        (Some(_), _) => ::log::info!("push API requires the API key"),
        (None, None) => ::log::warn!(
            "push API is OPEN: no --api-key in development mode, anyone can POST /api/push"
        ),
        (None, Some(_)) => {
            ::log::warn!("push API disabled: no --api-key (SOCKEYE_API_KEY) configured")
        }
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        ::log::info!(
            "TLS on: certificate {}, key {}",
            cert.display(),
            key.display()
        );
    }
    if let Some(url) = &config.redis {
        // The URL may carry a password: only its scheme and host part are logged.
        let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
        let host = rest.rsplit('@').next().unwrap_or(rest);
        let tls = match (scheme, &config.redis_ca_cert) {
            ("rediss", Some(ca)) => format!(" (TLS, verified with {})", ca.display()),
            ("rediss", None) => " (TLS, verified with the platform's roots)".to_string(),
            _ => String::new(),
        };
        ::log::info!(
            "--redis {scheme}://{host}{tls}: pushes, rooms, presence, mailboxes and reliable sessions span every node on it (keys and channels {:?}*)",
            config.redis_prefix
        );
    }
    if let Some(path) = &config.journal {
        ::log::warn!(
            "--journal {}: offline mailboxes and reliable sessions survive a restart",
            path.display()
        );
    }
    #[cfg(feature = "deflate")]
    if config.deflate {
        let held = if config.deflate_no_context_takeover {
            "nothing kept between messages".to_string()
        } else {
            format!(
                "up to {} KiB kept per connection that sends and receives compressed",
                (sockeye_core::COMPRESSOR_BYTES
                    + sockeye_core::INFLATER_STATE_BYTES
                    + (1 << config.deflate_window_bits))
                    / 1024
            )
        };
        ::log::info!(
            "permessage-deflate on: client window {} bits, messages from {} bytes; {held}",
            config.deflate_window_bits,
            config.deflate_min_bytes
        );
    }
}

/// SIGINT and SIGTERM, turned into a byte on a socket pair so a thread can wait for them.
struct ShutdownSignal {
    read: std::os::unix::net::UnixStream,
}

fn shutdown_signal() -> std::io::Result<ShutdownSignal> {
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
